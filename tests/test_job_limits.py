"""A job's end state tells the truth, and its budgets hold: a stuck job ends FAILED at its
time limit (and its process ends, freeing its slot); a commit marker whose PUT was retried
after it landed still means SUCCEEDED; a read the storage refuses fails the job, it is no
image's failure; a job folder that does not hold exactly what the manifest lists fails the
job before job.json says SUCCEEDED; limits.max_outputs_per_job and limits.task_bytes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from moto.server import DomainDispatcherApplication, create_backend_app

from motoray.config import LimitsConfig
from motoray.jobs.record import Counts
from motoray.pipeline.job import JobFailed, JobTimeout, _check_files
from motoray.pipeline.jobspec import job_spec
from motoray.storage import LocalStorage
from motoray.storage.s3 import S3Storage, s3_client
from tests.conftest import (
    EXAMPLES,
    copy_frames,
    full_hd_jitter,
    outputs_in_memory,
    parse_one,
    run_job,
)
from tests.s3server import FAKE_AWS_ENV, S3Endpoint, s3_endpoint, serve_wsgi  # noqa: F401


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

    with serve_wsgi(app) as url:
        yield url


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


def test_an_s3_listing_refused_is_an_error_not_an_empty_source(s3_endpoint: S3Endpoint):  # noqa: F811
    """A LIST answered 403 (a bucket policy without s3:ListBucket): PermissionError naming
    the source, as a local folder that cannot be listed; never an empty or smaller listing."""
    bucket = s3_endpoint.new_bucket()
    s3_endpoint.client().put_object(Bucket=bucket, Key="in/a.jpg", Body=b"x")
    with s3_refusing({f"/{bucket}", f"/{bucket}/"}) as url:
        storage = S3Storage.from_uri(f"s3://{bucket}/in", s3_endpoint.settings(endpoint_url=url))
        with pytest.raises(PermissionError, match=f"cannot list s3://{bucket}/in"):
            storage.list()


SMALL = {"name": "MotoGP", "input_image_size": [64, 36], "augmentations": [{"FLIP": {}}]}


def _record(config, job_id: str) -> dict:
    return json.loads((Path(config.output.uri) / "MotoGP" / job_id / "job.json").read_text())


def _job_files(config, job_id: str) -> list[str]:
    job_dir = Path(config.output.uri) / "MotoGP" / job_id
    return sorted(p.relative_to(job_dir).as_posix() for p in job_dir.rglob("*") if p.is_file())


@pytest.mark.usefixtures("ray_local")
def test_outputs_per_job_are_checked_before_any_pixel(frames, make_config, tmp_path):
    """6 images x 4 outputs (a FLIP, three RANDOM_CROPs) = 24: a limit of 23 fails the job
    having made nothing; 24 is allowed."""
    copy_frames(frames, tmp_path / "six", 6)
    config = make_config(MotoGP=tmp_path / "six")
    body = {
        "name": "MotoGP",
        "input_image_size": [64, 36],
        "augmentations": [
            {"FLIP": {}},
            {"RANDOM_CROP": {"crop_dimensions": [16, 16], "target_count": 3}},
        ],
    }
    config.limits = LimitsConfig(max_outputs_per_job=23)
    with pytest.raises(JobFailed, match=r"limits\.max_outputs_per_job"):
        run_job(body, config, "over")
    record = _record(config, "over")
    assert record["state"] == "FAILED"
    assert "6 images x 4 outputs = 24 outputs; at most 23" in record["error"], record["error"]
    assert _job_files(config, "over") == ["job.json"]  # no pixel read, nothing written
    assert "first_result" not in record["timings"]["marks_s"]

    config.limits = LimitsConfig(max_outputs_per_job=24)
    record = run_job(body, config, "at-the-limit")
    assert record["state"] == "SUCCEEDED" and record["counts"]["outputs"] == 24


def _meddling(job_dir: Path, meddle) -> Callable[[Counts], None]:
    """An on_progress that, once the first results are on disk, does `meddle(job_dir)`:
    what another process writing into (or deleting from) the job folder does mid-job."""
    done = []

    def on_progress(counts: Counts) -> None:
        if counts.images_done and not done:
            done.append(meddle(job_dir))

    return on_progress


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(
    ("meddle", "says"),
    [
        (lambda job_dir: (job_dir / "all" / "stray.jpg").write_bytes(b"x"), "1 unexpected"),
        (lambda job_dir: next(job_dir.glob("all/*.jpg")).unlink(), "1 missing"),
    ],
    ids=["a stray file", "an output deleted"],
)
def test_a_job_folder_not_as_the_manifest_says_fails_the_job(
    meddle, says, frames, make_config, tmp_path
):
    """The end-of-job check (`_check_files`) run by a real job: job.json says FAILED, never
    SUCCEEDED, when the folder does not hold exactly the outputs the manifest lists."""
    copy_frames(frames, tmp_path / "twelve", 12)  # several blocks: the meddling is mid-job
    config = make_config(MotoGP=tmp_path / "twelve")
    job_dir = Path(config.output.uri) / "MotoGP" / "meddled"
    with pytest.raises(JobFailed, match="the job folder does not hold what the manifest lists"):
        run_job(parse_one(SMALL, config), config, "meddled", _meddling(job_dir, meddle))
    record = _record(config, "meddled")
    assert record["state"] == "FAILED" and says in record["error"], record["error"]
    assert record["counts"]["outputs"] == 12  # the job made them all: the folder is wrong


def test_output_names_used_twice_fail_the_check(frames, make_config, tmp_path):
    """64-bit key hashes leave no two keys of a real job one name to share, so the check's
    first branch is given one: two manifest rows naming the same written file."""
    config = make_config(MotoGP=frames)
    request = parse_one(SMALL, config)
    job_dir = LocalStorage(tmp_path / "job")
    spec = job_spec(request, config, LocalStorage(frames), job_dir)
    job_dir.write("all/a.jpg", b"x")
    _check_files(spec, pa.chunked_array([["all/a.jpg"]]), [])  # as written: fine
    with pytest.raises(JobFailed, match=r"1 outputs share a name, e\.g\. all/a\.jpg"):
        _check_files(spec, pa.chunked_array([["all/a.jpg"], ["all/a.jpg"]]), [])


def test_task_bytes_bounds_the_pixels_a_task_holds(frames, make_config):
    """32 frames of 1280x720 and their FLIPs, in this process by the job's own worker. With
    `task_bytes` at one image and its output, images go through one at a time: the peak of
    what Python and NumPy allocate stays a fraction of the default's, where all 32 are
    stacked at once; and the bytes made are the same."""
    config = make_config(MotoGP=frames)
    body = {"name": "MotoGP", "input_image_size": [1280, 720], "augmentations": [{"FLIP": {}}]}
    keys = sorted(path.name for path in frames.glob("*.jpg"))[:32]

    def made_and_peak(task_bytes: int) -> tuple[dict, int]:
        config.limits = LimitsConfig(task_bytes=task_bytes)
        tracemalloc.start()
        try:
            _, files = outputs_in_memory(config, body, keys)
            return files, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    loose_files, loose = made_and_peak(LimitsConfig().task_bytes)
    tight_files, tight = made_and_peak(1280 * 720 * 3 * 2)
    assert tight_files == loose_files and len(tight_files) == 32
    assert tight < loose / 2, f"peak {tight / 2**20:.0f} MiB vs {loose / 2**20:.0f} MiB"


# Two frames that each make 500 full-HD jittered outputs: many seconds of work per image, so
# one task runs far past a time limit of 4 s (which leaves a cold dataset time to start).
HEAVY = full_hd_jitter(500)


def output_files(job_dir: Path) -> set[str]:
    return {path.name for path in job_dir.rglob("*.jpg")}


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("path", ["plain tasks", "dataset"])
def test_a_job_past_its_time_limit_stops_its_tasks(
    frames, make_config, tmp_path, path, monkeypatch
):
    """The job ends FAILED at its time limit, not once its tasks have done their work, and
    nothing is written into its folder after job.json. A small job runs as plain tasks; with
    one image per block, the same job is a dataset."""
    from motoray.pipeline import ray_data

    if path == "dataset":
        monkeypatch.setattr(ray_data, "IMAGES_PER_BLOCK", 1)
    config = make_config(MotoGP=copy_frames(frames, tmp_path / "two", 2)[0].parent)
    config.limits = LimitsConfig(job_timeout_s=4)
    start = time.monotonic()
    with pytest.raises(JobTimeout):
        run_job(HEAVY, config, "late")
    took = time.monotonic() - start

    job_dir = Path(config.output.uri) / "MotoGP" / "late"
    record = json.loads((job_dir / "job.json").read_text())
    assert record["state"] == "FAILED"
    assert record["error"] == "JobTimeout: still running past limits.job_timeout_s"
    assert took < 4 + 4, took  # the outputs alone take 15 s and more here
    written = output_files(job_dir)
    assert 0 < len(written) < 1000
    time.sleep(2)  # longer than a task takes to look again
    assert output_files(job_dir) == written
