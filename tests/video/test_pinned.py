"""An object read by a job is the version listed or probed, whatever happens to it meanwhile:
a change is one recorded failure naming it, never frames of two versions, never a read that
makes no progress. Against moto's real S3 server (If-Match, VersionId) and local files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.pipeline import source, worker
from motoray.pipeline.jobspec import job_spec
from motoray.storage import Changed, MemoryStorage
from motoray.storage.ranged import RangedReader
from motoray.video.sample import write_sample_videos
from tests.conftest import parse_one
from tests.s3server import S3Endpoint
from tests.video.conftest import shown_ms

FRAMES = {"every_s": 0.5, "range_s": 2}


def test_a_short_block_is_an_error_not_a_read_that_never_ends():
    data = bytes(range(256)) * 40  # 10 KiB object, blocks of 4 KiB
    reader = RangedReader(
        lambda first, last: data[first : min(last + 1, 5000)],
        10_240,
        "s3://b/v.mp4",
        block_bytes=4096,
    )
    assert len(reader.read(4096)) == 4096
    started = time.monotonic()
    with pytest.raises(Changed, match=r"s3://b/v.mp4 gave 904 bytes at offset 4096 where 4096"):
        reader.read()
    assert time.monotonic() - started < 1


def _config(uri: str, out: Path, settings=None, **kind) -> Config:
    source_config = SourceConfig(uri=uri, s3=settings, **kind)
    return Config(sources={"src": source_config}, output=OutputConfig(uri=str(out)))


def _made_after(config: Config, change) -> list[dict]:
    """A job's steps in this process: list and probe, then `change()`, then the worker."""
    request = parse_one({"name": "src", "input_image_size": [160, 90]}, config)
    storage, versions = source.list_versions(request, config)
    keys = list(versions)
    videos = source.probe(request, config, storage, keys, versions)
    placed = source.place(request, config, keys, videos=videos)
    items = source.items(keys, placed, videos=videos, versions=versions)
    change()
    made = list(worker.outputs(job_spec(request, config, storage, MemoryStorage()), items))
    return [row for row, _ in made], {row["output_path"]: data for row, data in made if data}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Two clips that differ in every frame: a.mp4 and, to replace it, b.mp4."""
    folder = tmp_path_factory.mktemp("versions")
    first = write_sample_videos(folder / "a", 1, (320, 180), seconds=6)[0]
    second = write_sample_videos(folder / "b", 1, (320, 180), seconds=6, seed=7)[0]
    return [first, second]


def test_an_s3_image_replaced_after_the_listing_is_recorded_as_changed(
    s3_endpoint: S3Endpoint, tmp_path
):
    from motoray.sample_data import write_sample_frames

    bucket = s3_endpoint.new_bucket()
    client = s3_endpoint.client()
    for path in write_sample_frames(tmp_path / "frames", 3, (64, 36)):
        client.put_object(Bucket=bucket, Key=f"f/{path.name}", Body=path.read_bytes())
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    config = _config(f"s3://{bucket}/f", tmp_path / "out", s3_endpoint.settings())
    replaced = keys[1]

    def change() -> None:
        client.put_object(Bucket=bucket, Key=replaced, Body=client.get_object(
            Bucket=bucket, Key=keys[0])["Body"].read())  # fmt: skip

    rows, _ = _made_after(config, change)
    failures = {row["source_path"]: row["error"] for row in rows if row.get("error")}
    name = replaced.removeprefix("f/")
    assert list(failures) == [name]
    assert failures[name].startswith(
        f"changed during the job: s3://{bucket}/f/{name} is no longer the object listed (ETag"
    )
    assert len([row for row in rows if not row.get("error")]) == 2


@pytest.mark.parametrize("replacement", ["shorter", "same size"])
def test_an_s3_video_replaced_after_the_probe_is_one_failure_and_no_mixed_frames(
    s3_endpoint: S3Endpoint, tmp_path, clips, replacement
):
    bucket = s3_endpoint.new_bucket()
    client = s3_endpoint.client()
    original = clips[0].read_bytes()
    client.put_object(Bucket=bucket, Key="v/race.mp4", Body=original)
    other = clips[1].read_bytes()
    body = other[: len(original) // 2] if replacement == "shorter" else other[: len(original)]
    body += bytes(len(original) - len(body)) if replacement == "same size" else b""
    config = _config(f"s3://{bucket}/v", tmp_path / "out", s3_endpoint.settings(),
                     kind="video", frames=FRAMES)  # fmt: skip

    started = time.monotonic()
    rows, files = _made_after(
        config, lambda: client.put_object(Bucket=bucket, Key="v/race.mp4", Body=body)
    )
    assert time.monotonic() - started < 30
    failures = [row for row in rows if row.get("error")]
    assert failures and {row["source_path"].partition("#")[0] for row in failures} == {"race.mp4"}
    assert all(
        row["error"].startswith(f"changed during the job: s3://{bucket}/v/race.mp4 is no longer")
        for row in failures
    )
    for row in rows:  # nothing decoded from the new object
        assert row.get("error") or shown_ms(files[row["output_path"]]) == row["time_ms"]


def test_an_s3_video_in_a_versioned_bucket_is_read_as_probed_even_when_replaced(
    s3_endpoint: S3Endpoint, tmp_path, clips
):
    bucket = s3_endpoint.new_bucket()
    client = s3_endpoint.client()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=bucket, Key="v/race.mp4", Body=clips[0].read_bytes())
    config = _config(f"s3://{bucket}/v", tmp_path / "out", s3_endpoint.settings(),
                     kind="video", frames=FRAMES)  # fmt: skip
    replace = clips[1].read_bytes()
    rows, files = _made_after(
        config, lambda: client.put_object(Bucket=bucket, Key="v/race.mp4", Body=replace)
    )
    assert len(rows) == 12 and not [row for row in rows if row.get("error")]
    assert all(shown_ms(files[row["output_path"]]) == row["time_ms"] for row in rows)


@pytest.mark.parametrize("change", ["rewritten in place", "replaced by another file"])
def test_a_local_video_changed_after_the_probe_is_recorded(tmp_path, clips, change):
    folder = tmp_path / "videos"
    folder.mkdir()
    target = folder / "race.mp4"
    target.write_bytes(clips[0].read_bytes())
    config = _config(str(folder), tmp_path / "out", kind="video", frames=FRAMES)

    def modify() -> None:
        if change == "rewritten in place":
            with open(target, "r+b") as f:
                f.seek(5000)
                f.write(b"\0" * 100)
            os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
        else:
            (folder / "new.tmp").write_bytes(clips[1].read_bytes())
            os.replace(folder / "new.tmp", target)

    rows, _ = _made_after(config, modify)
    assert rows and all(row["error"].startswith("changed during the job: ") for row in rows)
