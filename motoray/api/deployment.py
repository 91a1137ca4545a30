"""The Serve deployment wrapping the FastAPI app, and how to build the application."""

from __future__ import annotations

import os

from ray import serve
from ray.serve import Application

from motoray.config import TOKEN_ENV, load_config

APP_NAME = "motoray"


@serve.deployment(
    name="MotorayAPI",
    # No CPU: it answers from Ray and storage, leaving the CPUs to jobs. On the head, with
    # the runner (whose job folders it reads), and no spot node.
    ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}},
    max_ongoing_requests=32,
    # Beyond this many queued requests Serve answers 429 + Retry-After itself.
    max_queued_requests=256,
    backpressure_config={"status_code": 429, "retry_after_s": 1},
)
@serve.ingress()
class MotorayAPI:
    def __init__(self, config_path: str, token: str | None) -> None:
        self._config_path = config_path
        self._token = token

    def __serve_build_asgi_app__(self):
        # Built inside the replica, where Ray is up for the job service.
        from motoray.api import offload
        from motoray.api.app import create_app

        app = create_app(self._config_path, self._token)
        # The job board and the warm runner, now, not on a POST; the runner resumes what
        # the config's output root lists as unended.
        app.state.jobs.connect(app.state.config_file.get())
        offload.warm_up()  # and a worker for previews and plans
        return app


def build_app(config_path: str | None = None) -> Application:
    """The application for `serve.run`; fails here, not in a replica, on a bad config.

    The token is taken from MOTORAY_API_TOKEN in this process; without it, the
    replicas use the config's `server.auth_token`.
    """
    config = load_config(config_path)
    config.api_token()  # none: fail here, not in a replica
    return MotorayAPI.bind(config.path, os.environ.get(TOKEN_ENV))
