"""Previews and plans run as Ray tasks with bounds (motoray/api/offload.py): memory, time,
how many at once per replica, and their client's presence. On the live service, watching
the cluster's real worker processes; one test of the error handlers in process."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from ray.exceptions import OutOfMemoryError

from motoray.api.errors import install
from motoray.api.offload import KILL_AFTER_S
from motoray.waiting import wait_until

JSON = {"Content-Type": "application/json"}
TASK = "ray::_contact_sheet"  # a preview task's worker while it runs (its process title)
SMALL = {
    "name": "MotoGP",
    "input_image_size": [480, 270],
    "augmentations": [{"CROP": {"crop_dimensions": [[270, 270]]}}],
}
# CPU-heavy: 256 outputs of 1024x1024 per image, ~14 s of CPU for one image here, holding
# ~1 GB by its end. The tests that run it give it 4 GiB, so that only they stop it.
ROOMY = 4 * 1024**3
HEAVY = {
    "name": "MotoGP",
    "input_image_size": [480, 270],
    "augmentations": [{"RANDOM_RESIZED_CROP": {"size": [1024, 1024], "target_count": 4}}] * 64,
}
# ~250 MB at once in one step (20 outputs of 2048x2048, float32 on the way): 2-3 s and a
# 200 without a memory bound.
BIG = {
    "name": "MotoGP",
    "input_image_size": [480, 270],
    "augmentations": [{"RANDOM_RESIZED_CROP": {"size": [2048, 2048], "target_count": 20}}],
}


@contextmanager
def limits(service, **values):
    """The service's config with these `limits` for the duration."""
    with service.edited_config(lambda config: config.setdefault("limits", {}).update(values)):
        yield


def preview(api, body: dict, count: int = 1):
    return api.post(f"/data_prep/preview?count={count}", content=json.dumps(body), headers=JSON)


def shown(response) -> str:
    """A response for an assertion message: its text, unless it is a picture."""
    if response.headers.get("content-type", "").startswith("image/"):
        return f"{response.status_code}: a picture"
    return f"{response.status_code}: {response.text[:500]}"


class TaskWatch:
    """Every preview task process seen on the cluster while it polls (its own thread; an
    error in it reaches the test when the watch ends)."""

    def __init__(self, service) -> None:
        self.service = service
        self.seen: set[int] = set()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.seen.update(self.service.processes_with(TASK))
                self._stop.wait(0.05)
        except BaseException as e:  # re-raised in the test's thread
            self.error = e

    def __enter__(self) -> TaskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error


def no_task_left(service, within: float) -> None:
    wait_until(
        lambda: not service.processes_with(TASK),
        within,
        interval=0.1,
        what="the preview task to stop",
    )


def open_request(service, path: str, body: dict) -> socket.socket:
    """A request sent on a raw connection the test closes when it chooses: a client that
    goes away mid-request."""
    url = urlsplit(service.url)
    content = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {service.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(content)}\r\n\r\n"
    )
    connection = socket.create_connection((url.hostname, url.port))
    connection.sendall(head.encode() + content)
    return connection


def test_a_preview_over_its_memory_budget_is_a_422(service, api):
    """The bound is enforced in the task: without it this preview answers 200."""
    with limits(service, preview_memory_bytes=64 * 1024**2, preview_timeout_s=30):
        refused = preview(api, BIG)
        assert refused.status_code == 422, shown(refused)
        [error] = refused.json()["errors"]
        assert "limits.preview_memory_bytes" in error["msg"] and error["loc"] == []
        small = preview(api, SMALL)  # a modest preview fits the same budget
        assert small.status_code == 200, shown(small)


def test_a_preview_stops_at_its_time_limit(service, api):
    # 5 s: room for a worker to start (1-3 s here when none is warm) and the task to be seen.
    bounds = {"preview_timeout_s": 5, "preview_memory_bytes": ROOMY}
    with limits(service, **bounds), TaskWatch(service) as watch:
        start = time.monotonic()
        response = preview(api, HEAVY, count=2)  # ~28 s of CPU here: still running at 5 s
        took = time.monotonic() - start
        assert response.status_code == 422, shown(response)
        assert "limits.preview_timeout_s" in response.text
        assert took < 5 + 2
        assert watch.seen, "the task never ran: nothing to stop"
        stopped = time.monotonic()
        no_task_left(service, KILL_AFTER_S + 3)
    print(f"stopped {time.monotonic() - stopped:.2f} s after the 422")


def test_previews_at_once_are_capped_and_a_client_leaving_stops_its_task(service, api):
    """One slot: a second preview meanwhile is a 429 with Retry-After. The first one's
    client then goes away: its task stops long before its time limit, and frees the slot."""
    bounds = {"preview_max_running": 1, "preview_timeout_s": 60, "preview_memory_bytes": ROOMY}
    with limits(service, **bounds), TaskWatch(service) as watch:
        leaving = open_request(service, "/data_prep/preview?count=1", HEAVY)
        try:
            wait_until(lambda: watch.seen, 30, interval=0.05, what="the first preview to run")
            second = preview(api, SMALL)
            assert second.status_code == 429, shown(second)
            assert int(second.headers["Retry-After"]) > 0
            assert "limits.preview_max_running" in second.json()["error"]
        finally:
            leaving.close()
        left = time.monotonic()
        no_task_left(service, KILL_AFTER_S + 3)
        print(f"stopped {time.monotonic() - left:.2f} s after its client left")

        def answered() -> int | None:  # the slot frees once the task has ended
            response = preview(api, SMALL)
            return response.status_code if response.status_code != 429 else None

        assert wait_until(answered, 10, interval=0.2, what="a free slot") == 200


@pytest.fixture
def failing_app():
    """The API's error handlers on an app whose one route fails as Ray's memory monitor
    makes a task fail."""
    app = FastAPI()
    install(app)

    @app.get("/oom")
    def oom():
        raise OutOfMemoryError("Task was killed due to the node running low on memory.")

    return app


def test_ray_killing_work_for_memory_is_a_429_not_a_5xx(failing_app):
    from starlette.testclient import TestClient

    with TestClient(failing_app, raise_server_exceptions=False) as client:
        response = client.get("/oom")
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert "memory" in response.json()["error"]
