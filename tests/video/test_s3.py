"""A video source on S3 (moto's real server on 127.0.0.1): the same dataset as from a local
folder, read with ranged GETs (`recording_s3`, tests/video/conftest.py, records them)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from motoray.config import Config, OutputConfig, S3Settings, SourceConfig
from motoray.storage.ranged import BLOCK_BYTES
from motoray.video.sample import write_sample_videos
from tests.conftest import run_job
from tests.s3server import S3Endpoint
from tests.video import footage
from tests.video.conftest import request, shown_ms

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def test_an_s3_video_source_gives_the_local_dataset_with_ranged_reads(recording_s3, tmp_path):
    endpoint, recorder = recording_s3
    folder = tmp_path / "broadcast"
    # High quality, so that each clip is several read blocks long.
    paths = write_sample_videos(folder, 2, (480, 270), seconds=8, crf=6)
    sizes = {path.name: path.stat().st_size for path in paths}
    assert min(sizes.values()) > 2 * BLOCK_BYTES
    bucket = endpoint.new_bucket("videos")
    client = endpoint.client()
    for path in paths:
        client.put_object(Bucket=bucket, Key=f"broadcast/{path.name}", Body=path.read_bytes())

    frames = {"every_s": 0.5, "range_s": 3}
    body = request(
        augmentations=[{"RANDOM_CROP": {"crop_dimensions": [40, 40], "target_count": 2}}],
        train_test_split={"train_ratio": 50, "test_ratio": 50},
    )

    def config(uri: str, s3: S3Settings | None = None) -> Config:
        source = SourceConfig(uri=uri, kind="video", frames=frames, s3=s3)
        return Config(sources={"broadcast": source}, output=OutputConfig(uri=str(tmp_path / "out")))

    recorder.gets.clear()
    remote = run_job(body, config(f"s3://{bucket}/broadcast", endpoint.settings()), "s3")
    local = run_job(body, config(str(folder)), "local")
    assert remote["state"] == local["state"] == "SUCCEEDED"
    assert remote["counts"] == local["counts"] and remote["counts"]["images_done"] == 32

    remote_dir, local_dir = Path(remote["output"]), Path(local["output"])
    assert pq.read_table(remote_dir / "manifest.parquet") == pq.read_table(
        local_dir / "manifest.parquet"
    )
    outputs = sorted(p.relative_to(local_dir) for p in local_dir.rglob("*.jpg"))
    assert outputs == sorted(p.relative_to(remote_dir) for p in remote_dir.rglob("*.jpg"))
    assert all((remote_dir / p).read_bytes() == (local_dir / p).read_bytes() for p in outputs)

    # Every read of a video was a ranged GET of at most one block: no task (nor the driver,
    # probing) downloaded a whole clip.
    video_gets = [get for get in recorder.gets if get[0].endswith(".mp4")]
    assert len(video_gets) >= 2 * len(paths)  # driver probes + 3 ranges per clip
    for path, byte_range, sent in video_gets:
        assert byte_range is not None and byte_range.startswith("bytes="), (path, byte_range)
        assert sent <= BLOCK_BYTES < sizes[path.rpartition("/")[2]]
    print(f"{len(video_gets)} ranged GETs, {sum(g[2] for g in video_gets)} bytes for "
          f"{sum(sizes.values())} bytes of video")  # fmt: skip


class ReplaceAfterGets:
    """WSGI middleware: once `after` GETs of `key` have been answered, the object is
    replaced by `body` (through `client`, another server on the same moto backend), as a
    user re-uploading a video while a job reads it."""

    def __init__(self, app, key: str, after: int, client, bucket: str, body: bytes) -> None:
        self.app, self.key, self.after = app, key, after
        self.client, self.bucket, self.body = client, bucket, body
        self.gets, self.lock = 0, threading.Lock()

    def __call__(self, environ, start_response):
        answer = list(self.app(environ, start_response))
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].endswith(self.key):
            with self.lock:
                self.gets += 1
                if self.gets == self.after:
                    self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self.body)
        return answer


@pytest.mark.parametrize("replacement", ["shorter", "same size"])
def test_an_s3_video_replaced_mid_job_is_one_failure_naming_it(s3_endpoint, tmp_path, replacement):
    """The clip is read by its ranges' tasks in 1 MiB GETs; after the third, the object is
    replaced. The job ends in seconds (it once hung until its time limit on a shorter one),
    records one failure naming the video, and no output shows a frame of the new one."""
    folder = tmp_path / "broadcast"
    [path] = write_sample_videos(folder, 1, (480, 270), seconds=8, crf=6)
    original = path.read_bytes()
    assert len(original) > 3 * BLOCK_BYTES
    # The same motion numbered from 5000: a frame of it shows its own number.
    frames = footage.progressive_frames(200, (480, 270), numbered_from=5000)
    other = footage.encode(tmp_path / "other.mp4", frames, options={"crf": "6"}).read_bytes()
    body = other[: len(original) // 3] if replacement == "shorter" else other[: len(original)]
    body = body.ljust(len(original), b"\0") if replacement == "same size" else body
    bucket = s3_endpoint.new_bucket("videos")
    client = s3_endpoint.client()
    client.put_object(Bucket=bucket, Key="broadcast/clip000.mp4", Body=original)
    app = ReplaceAfterGets(
        DomainDispatcherApplication(create_backend_app), "broadcast/clip000.mp4", 3, client,
        bucket, body,
    )  # fmt: skip
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = S3Endpoint(f"http://127.0.0.1:{server.server_port}", s3_endpoint.env)
        frames = {"every_s": 0.5, "range_s": 3}
        uri = f"s3://{bucket}/broadcast"
        source = SourceConfig(uri=uri, kind="video", frames=frames, s3=endpoint.settings())
        config = Config(
            sources={"broadcast": source}, output=OutputConfig(uri=str(tmp_path / "out"))
        )
        started = time.monotonic()
        record = run_job(request(), config, f"replaced-{replacement.replace(' ', '-')}")
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert app.gets >= 3 and took < 120, took
    [failure] = record["failures"]
    assert failure["source_path"].startswith("clip000.mp4")
    assert failure["reason"].startswith(
        f"changed during the job: s3://{bucket}/broadcast/clip000.mp4 is no longer the object"
    )
    out = Path(record["output"])
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    for row in manifest:  # every output from the version the job probed
        assert shown_ms((out / row["output_path"]).read_bytes()) == row["time_ms"]
    assert record["counts"]["images_failed"] == 1
