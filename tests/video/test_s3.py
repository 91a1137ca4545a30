"""A video source on S3 (moto's real server on 127.0.0.1): the same dataset as from a local
folder, read with ranged GETs (`recording_s3`, tests/video/conftest.py, records them)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motoray.config import Config, OutputConfig, S3Settings, SourceConfig
from motoray.storage.ranged import BLOCK_BYTES
from motoray.video.sample import write_sample_videos
from tests.conftest import run_job
from tests.video.conftest import request

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
