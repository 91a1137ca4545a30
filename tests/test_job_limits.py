"""A job's end state tells the truth: a stuck job ends FAILED at its time limit (and its
process ends, freeing its slot); a commit marker whose PUT was retried after it landed
still means SUCCEEDED; a read the storage refuses fails the job, it is no image's failure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from motoray.storage.s3 import s3_client
from tests.conftest import EXAMPLES, run_job
from tests.s3server import FAKE_AWS_ENV, S3Endpoint, s3_endpoint  # noqa: F401  (fixture)


class BlackHole:
    """An endpoint that accepts connections and never answers: storage stuck for good."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.socket.accept()[0])
            except OSError:
                return


@pytest.mark.slow
def test_a_stuck_job_ends_failed_at_its_time_limit(tmp_path):
    hole = BlackHole()
    config = tmp_path / "motoray.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": {"MotoGP": {"uri": "s3://frames/in"}},
                "s3": {"endpoint_url": f"http://127.0.0.1:{hole.port}"},
                "output": {"uri": str(tmp_path / "out")},
                "limits": {"job_timeout_s": 3},
            }
        )
    )
    env = {**os.environ, **FAKE_AWS_ENV}
    env.pop("RAY_ADDRESS", None)
    motoray = Path(sys.executable).with_name("motoray")
    command = [str(motoray), "run", str(EXAMPLES / "seed_sample.json"), "--config", str(config)]
    command += ["--job-id", "stuck", "--address", "local", "--quiet"]
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start

    assert done.returncode == 3, done.stderr[-2000:]
    assert "stuck past limits.job_timeout_s (3 s)" in done.stderr
    record = json.loads((tmp_path / "out" / "MotoGP" / "stuck" / "job.json").read_text())
    assert record["state"] == "FAILED" and "job_timeout_s" in record["error"]
    assert took < 50  # botocore alone would wait 60 s per attempt, five attempts
    assert hole.held  # it really was stuck on the endpoint


@pytest.mark.usefixtures("ray_local")
def test_a_commit_marker_put_retried_after_it_landed(
    s3_endpoint: S3Endpoint,  # noqa: F811
    frames,
    make_config,
):
    """botocore retries a PUT whose answer it lost; the retry finds the object there (412).
    That is our own job.json: the job SUCCEEDED, and says so."""
    bucket = s3_endpoint.new_bucket()
    config = make_config(MotoGP=frames)
    config.output.uri = f"s3://{bucket}/out"
    config.s3 = s3_endpoint.settings()
    client = s3_client(config.output_s3())
    landed = []

    def lose_the_answer(response, attempts, request_dict, **kwargs):
        """botocore's `needs-retry`: retry job.json's first PUT although it succeeded."""
        if attempts == 1 and response and request_dict["url_path"].endswith("/job.json"):
            landed.append(response[0].status_code)
            return 0  # retry now
        return None

    client.meta.events.register("needs-retry.s3.PutObject", lose_the_answer)
    try:
        body = {"name": "MotoGP", "input_image_size": [64, 36], "augmentations": [{"FLIP": {}}]}
        record = run_job(body, config, "retried")
    finally:
        client.meta.events.unregister("needs-retry.s3.PutObject", lose_the_answer)

    assert landed == [200]  # the first PUT did land; its retry met 412
    assert record["state"] == "SUCCEEDED"
    stored = client.get_object(Bucket=bucket, Key="out/MotoGP/retried/job.json")["Body"].read()
    assert json.loads(stored) == record


ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


@contextmanager
def s3_refusing(paths: set[str]) -> Iterator[str]:
    """moto on 127.0.0.1 (the same in-process backend as `s3_endpoint`) behind a front that
    answers a GET of any of `paths` ("/bucket/key") 403 AccessDenied, as S3 does for a key a
    bucket policy or its KMS key refuses; yields the endpoint URL."""
    moto = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"] in paths:
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [ACCESS_DENIED]
        return moto(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.usefixtures("ray_local")
def test_an_s3_read_refused_fails_the_job(
    s3_endpoint: S3Endpoint,  # noqa: F811
    frames,
    make_config,
):
    """One GET answered 403 in the middle of a job: the job ends FAILED saying so, not
    SUCCEEDED with one failed image."""
    bucket = s3_endpoint.new_bucket()
    client = s3_endpoint.client()
    paths = sorted(frames.glob("*.jpg"))[:6]
    for path in paths:
        client.put_object(Bucket=bucket, Key=f"in/{path.name}", Body=path.read_bytes())
    refused = f"in/{paths[3].name}"
    config = make_config(MotoGP=f"s3://{bucket}/in")
    body = {"name": "MotoGP", "input_image_size": [64, 36]}

    with s3_refusing({f"/{bucket}/{refused}"}) as url:
        config.s3 = s3_endpoint.settings(endpoint_url=url)
        with pytest.raises(Exception, match="access denied on S3"):
            run_job(body, config, "refused")

    record = json.loads((Path(config.output.uri) / "MotoGP" / "refused" / "job.json").read_text())
    assert record["state"] == "FAILED", record
    # The reason itself, not Ray's wrapping of the task that met it.
    where = f"s3://{bucket}/{refused}"
    assert record["error"] == f"PermissionError: access denied on S3: {where} (in a pipeline task)"
    assert not record.get("failures")  # the storage's error, not an image's
