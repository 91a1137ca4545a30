"""A job's end state tells the truth: a stuck job ends FAILED at its time limit (and its
process ends, freeing its slot); a commit marker whose PUT was retried after it landed
still means SUCCEEDED."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

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
