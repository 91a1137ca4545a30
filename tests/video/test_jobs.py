"""Video jobs on a real local Ray: leakage-free splits, segments, lineage, bad files."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motoray.pipeline.job import JobFailed
from tests.conftest import run_job
from tests.video.conftest import request, shown_ms, video_config

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

SPLIT = {"train_ratio": 67, "test_ratio": 33}


def manifest(record: dict) -> list[dict]:
    return pq.read_table(Path(record["output"]) / "manifest.parquet").to_pylist()


def test_three_videos_no_video_in_two_splits(clips, tmp_path):
    config = video_config(clips, tmp_path / "out", every_s=0.5, range_s=3)
    body = request(
        augmentations=[{"RANDOM_CROP": {"crop_dimensions": [40, 40], "target_count": 2}}],
        train_test_split=SPLIT,
    )
    record = run_job(body, config, "three")
    assert record["state"] == "SUCCEEDED" and record["failures"] == []
    rows = manifest(record)
    splits_of = defaultdict(set)
    for row in rows:
        splits_of[row["video"]].add(row["split"])
        assert row["group"] == row["video"]  # group_by defaults to the video
        assert row["source_path"] == f"{row['video']}#t={row['time_ms']}"
        assert row["output_path"].startswith(f"{row['split']}/clip00")
    assert sorted(splits_of) == ["clip000.mp4", "clip001.mp4", "clip002.mp4"]
    assert all(len(splits) == 1 for splits in splits_of.values())  # zero leaks
    assert {s for splits in splits_of.values() for s in splits} == {"train", "test"}
    counts = record["counts"]
    assert counts["images_total"] == counts["images_done"] == 60 and counts["outputs"] == 120
    assert counts["videos"] == 3 and counts["videos_failed"] == 0
    report = record["split"]
    assert report["group_by"] == "video"
    assert report["splits"]["train"]["groups"] + report["splits"]["test"]["groups"] == 3
    # The manifest lists the frames in time order, video by video.
    assert [(r["video"], r["time_ms"]) for r in rows[::2]] == sorted(
        (r["video"], r["time_ms"]) for r in rows[::2]
    )


def test_segments_are_assigned_whole(clips, tmp_path):
    config = video_config(clips, tmp_path / "out", every_s=0.5, range_s=4)
    body = request(train_test_split={**SPLIT, "group_by": "segment:2.5"}, seed=3)
    record = run_job(body, config, "segments")
    assert record["state"] == "SUCCEEDED"
    rows = manifest(record)
    by_segment = defaultdict(set)
    for row in rows:
        start, end = (float(x) for x in row["group"].rpartition("#t=")[2].split(","))
        assert row["group"].startswith(row["video"] + "#t=")
        assert start * 1000 <= row["time_ms"] < end * 1000 and end - start == 2.5
        by_segment[row["group"]].add(row["split"])
    assert len(by_segment) == 12  # 3 videos x 4 segments of 2.5 s
    assert all(len(splits) == 1 for splits in by_segment.values())
    # Segments, not videos, are the unit: some video has segments in both splits.
    per_video = defaultdict(set)
    for row in rows:
        per_video[row["video"]].add(row["split"])
    assert any(len(splits) == 2 for splits in per_video.values())
    assert record["split"]["group_by"] == "segment:2.5"
    assert sum(s["groups"] for s in record["split"]["splits"].values()) == 12


def test_bad_files_are_recorded_and_the_job_goes_on(clips, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("clip000.mp4", "clip001.mp4"):
        shutil.copy(clips / name, folder / name)
    data = (clips / "clip002.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    (folder / "readme.mp4").write_text("not a video")
    config = video_config(folder, tmp_path / "out", every_s=0.5, range_s=2)
    record = run_job(request(), config, "mixed")
    assert record["state"] == "SUCCEEDED"
    failures = {f["source_path"]: f["reason"] for f in record["failures"]}
    assert failures.pop("readme.mp4").startswith("not a readable video")
    [(where, reason)] = failures.items()
    assert where.startswith("cut.mp4#t=") and "at t=" in reason
    rows = manifest(record)
    assert {r["video"] for r in rows} == {"clip000.mp4", "clip001.mp4", "cut.mp4"}
    assert record["counts"]["videos"] == 4 and record["counts"]["videos_failed"] == 1
    files = {
        r["output_path"]: (Path(record["output"]) / r["output_path"]).read_bytes() for r in rows
    }
    assert all(shown_ms(files[r["output_path"]]) == r["time_ms"] for r in rows)
    job = json.loads((Path(record["output"]) / "job.json").read_text())
    assert job["counts"]["images_failed"] == 2


def test_a_source_of_non_videos_fails_the_job(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.mp4").write_text("plain text")
    config = video_config(folder, tmp_path / "out")
    with pytest.raises(JobFailed, match="no image could be processed"):
        run_job(request(), config, "texts")


def test_group_by_image_is_refused_on_a_video_source(clips, tmp_path):
    config = video_config(clips, tmp_path / "out")
    body = request(train_test_split={**SPLIT, "group_by": "image"})
    with pytest.raises(ValueError, match="frames of one video in several splits"):
        run_job(body, config, "leaky")


def test_webdataset_shards_of_a_video_source(clips, tmp_path):
    config = video_config(clips, tmp_path / "out", every_s=1, range_s=5)
    body = request(train_test_split=SPLIT, output={"format": "webdataset", "shard_size_mb": 1})
    record = run_job(body, config, "shards")
    assert record["state"] == "SUCCEEDED" and record["counts"]["images_done"] == 30
    rows = manifest(record)
    assert {r["shard"] for r in rows} == {f"{s}/shard-000000.tar" for s in ("train", "test")}
    assert all(r["source_path"] == f"{r['video']}#t={r['time_ms']}" for r in rows)
    import tarfile

    with tarfile.open(Path(record["output"]) / rows[0]["shard"]) as tar:
        sample = json.loads(tar.extractfile(tar.getmembers()[1]).read())
    assert sample["video"] == rows[0]["video"] and sample["time_ms"] == rows[0]["time_ms"]
