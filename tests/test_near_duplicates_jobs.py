"""Near-duplicate-aware splits in real jobs on a local Ray, on `motoray sample-data
--replays`: copies are counted from the shot ids burned into the outputs' pixels, never from
the hash."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motoray.cli import main
from motoray.config import Config, OutputConfig, SourceConfig
from motoray.imageio import load_image
from motoray.near_duplicates import place
from motoray.pipeline import source, spread
from motoray.pipeline.jobspec import job_spec
from motoray.sample_replays import read_shot
from motoray.storage import LocalStorage, MemoryStorage
from tests.conftest import manifest_rows, parse_one, run_request

OUTPUT = [320, 180]  # big enough for the shot ids' cells to be read back


@pytest.fixture(scope="module")
def replays(tmp_path_factory) -> Path:
    """12 live clips of 6 frames (640x360) under live/, 6 replays of them under replays/."""
    folder = tmp_path_factory.mktemp("replays")
    args = ["sample-data", str(folder), "--count", "12", "--replays", "6", "--size", "640x360"]
    assert main(args) == 0
    return folder


def _config(uri: Path, output: Path, **source) -> Config:
    sources = {"replays": SourceConfig(uri=str(uri), **source)}
    return Config(sources=sources, output=OutputConfig(uri=str(output)))


def _body(near: dict | None = None, seed: int = 3, group_by: str | None = "folder") -> dict:
    split = {"train_ratio": 80, "test_ratio": 20}
    if group_by:
        split["group_by"] = group_by
    if near is not None:
        split["near_duplicates"] = near
    return {"name": "replays", "input_image_size": OUTPUT, "seed": seed, "train_test_split": split}


def _leak(job_dir: Path) -> float:
    """The share of test outputs whose shot (read from its pixels) is also in train."""
    shots = defaultdict(list)
    for row in _manifest(job_dir):
        if row["output_path"] is not None:
            image = load_image((job_dir / row["output_path"]).read_bytes())
            shots[row["split"]].append(read_shot(image, OUTPUT[1]))
    train = set(shots["train"])
    return sum(shot in train for shot in shots["test"]) / len(shots["test"])


def test_replays_leak_with_group_by_alone_and_not_with_near_duplicates(
    ray_local, replays, tmp_path
):
    config = _config(replays, tmp_path)
    alone, alone_dir = run_request(config, _body(), "alone")
    assert "near_duplicates" not in alone["split"]
    assert _leak(alone_dir) > 0.3  # the problem, shown by the data: 2/3 of test frames here

    record, job_dir = run_request(config, _body({}), "near")
    assert _leak(job_dir) == 0
    found = record["split"]["near_duplicates"]
    # Every replay merged with the live clip it shows again, and nothing else merged.
    assert found["groups_merged"] == 12 and found["merged_into"] == 6
    assert found["largest_group"]["images"] == 12
    assert found["pairs_across_splits"] > 0 and found["hashed"] == 108
    rows = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    group = {row["source_path"]: row["group"] for row in rows}
    for key, name in group.items():
        if key.startswith("replays/"):
            shot = read_shot(load_image((job_dir / _output(rows, key)).read_bytes()), OUTPUT[1])
            assert name == f"live/clip{shot // 4096:03d}"
    assert record["counts"]["images_total"] == alone["counts"]["images_total"] == 108


def _manifest(job_dir: Path) -> list[dict]:
    """The manifest's rows: manifest.parquet, or a spread job's manifest/ parts."""
    single = job_dir / "manifest.parquet"
    return manifest_rows(pq.read_table(single if single.exists() else job_dir / "manifest"))


def _output(rows: list[dict], key: str) -> str:
    return next(row["output_path"] for row in rows if row["source_path"] == key)


def test_distinct_shots_of_one_track_are_not_merged_at_the_default_distance(
    ray_local, replays, tmp_path
):
    # 12 live clips: one track, one palette, one leaderboard; 72 frames, 2556 pairs of
    # frames from different clips. Merge rate at the default distance: 0 of 12 clips.
    config = _config(replays / "live", tmp_path)
    record, _ = run_request(config, _body({}), "live")
    assert record["split"]["near_duplicates"]["groups_merged"] == 0
    # The threshold is what keeps them apart: at the widest distance allowed (12), clips merge.
    record, _ = run_request(config, _body({"max_distance": 12}), "wide")
    assert record["split"]["near_duplicates"]["groups_merged"] > 0


def test_a_rerun_decodes_nothing_and_makes_the_same_bytes(ray_local, replays, tmp_path):
    # A first run hashes its images as it processes them, then moves the outputs of the
    # images whose split the merges changed; a rerun knows every hash before it starts.
    source_dir = tmp_path / "source"
    shutil.copytree(replays, source_dir)
    config = _config(source_dir, tmp_path / "out")
    first, first_dir = run_request(config, _body({}), "first")
    again, again_dir = run_request(config, _body({}), "again")
    assert first["split"]["near_duplicates"]["hashed"] == 108
    assert again["split"]["near_duplicates"]["hashed"] == 0
    assert "settled" in first["timings"]["marks_s"] and "settled" not in again["timings"]["marks_s"]
    assert again["split"] == first["split"] | {"near_duplicates": again["split"]["near_duplicates"]}
    assert _files(first_dir) == _files(again_dir)  # every output, and the manifest
    # Spoil every file but keep its identity (size and mtime): the hashes still come from
    # the sidecar, so the same groups merge. Had anything been decoded, nothing would.
    _spoil(source_dir)
    placed = _place(parse_one(_body({}), config), config, LocalStorage(tmp_path / "job"))
    assert placed.pending is None
    assert placed.assignment.report["near_duplicates"]["hashed"] == 0
    assert placed.assignment.report["near_duplicates"]["groups_merged"] == 12
    # A changed object (another mtime) is not known: the job hashes as it processes again,
    # and its images start where group_by alone puts them.
    changed = source_dir / "replays/replay00/frame0000.jpg"
    os.utime(changed, ns=(0, changed.stat().st_mtime_ns + 10**9))
    placed = _place(parse_one(_body({}), config), config, LocalStorage(tmp_path / "job"))
    assert placed.pending is not None and "near_duplicates" not in placed.assignment.report


def test_a_job_resumed_after_its_outputs_moved_makes_the_same_bytes(ray_local, replays, tmp_path):
    # A run cut short after it moved outputs, before its sidecar was saved (what settle
    # does last), leaves outputs where the merged split puts them: a run again into the
    # same folder hashes as it processes, moves what it wrote again, and ends as a rerun.
    config = _config(replays, tmp_path / "out")
    _, done_dir = run_request(config, _body({}), "done")
    sidecars = tmp_path / "out/.motoray/near_duplicates"
    shutil.rmtree(sidecars)
    (done_dir / "job.json").unlink()
    (done_dir / "manifest.parquet").unlink()
    before = _files(done_dir)
    record, job_dir = run_request(config, _body({}), "done")
    assert record["split"]["near_duplicates"]["hashed"] == 108 and job_dir == done_dir
    assert _files(job_dir).keys() - {"manifest.parquet"} == before.keys()
    _, rerun_dir = run_request(config, _body({}), "rerun")
    assert _files(rerun_dir) == _files(job_dir)


def test_the_hash_pass_decodes_only_what_changed(ray_local, replays, tmp_path):
    # Where outputs cannot be moved (here: a job folder in memory), a pass of hash tasks
    # hashes the images before the split, at reduced scale, cached as a kind of its own.
    source_dir = tmp_path / "source"
    shutil.copytree(replays, source_dir)
    config = _config(source_dir, tmp_path / "out")
    request = parse_one(_body({}), config)
    first = _place(request, config, MemoryStorage()).assignment.report["near_duplicates"]
    again = _place(request, config, MemoryStorage()).assignment.report["near_duplicates"]
    assert first["hashed"] == 108 and again == first | {"hashed": 0}
    _spoil(source_dir)
    placed = _place(request, config, MemoryStorage())
    assert placed.assignment.report["near_duplicates"] == again
    changed = source_dir / "replays/replay00/frame0000.jpg"
    os.utime(changed, ns=(0, changed.stat().st_mtime_ns + 10**9))
    assert (
        _place(request, config, MemoryStorage()).assignment.report["near_duplicates"]["hashed"] == 1
    )


def test_a_source_of_spread_size_hashes_in_its_key_blocks(
    ray_local, replays, tmp_path, monkeypatch
):
    # From SPREAD_FROM keys (lowered here) the keys stay in Ray's blocks: the hash pass runs
    # over them, the driver merges; the split is the one the driver's hash pass gives.
    monkeypatch.setattr(spread, "SPREAD_FROM", 100)  # 108 images
    config = _config(replays, tmp_path / "out")
    record, job_dir = run_request(config, _body({}), "spread")
    assert (job_dir / "manifest").is_dir() and not (job_dir / "manifest.parquet").exists()
    assert _leak(job_dir) == 0
    found = record["split"]["near_duplicates"]
    assert found["groups_merged"] == 12 and found["hashed"] == 108
    assert (tmp_path / "out/.motoray/near_duplicates/replays.v1.parquet").exists()
    placed = _place(parse_one(_body({}), config), config, MemoryStorage()).assignment
    assert placed.report == record["split"] | {"near_duplicates": found | {"hashed": 0}}
    rows = _manifest(job_dir)
    assert {row["source_path"]: row["split"] for row in rows} == placed.split
    assert {row["source_path"]: row["group"] for row in rows} == {
        key: group or key for key, group in placed.group.items()
    }
    again, again_dir = run_request(config, _body({}), "again")
    assert again["split"]["near_duplicates"] == found | {"hashed": 0}
    assert _files(again_dir) == _files(job_dir)  # every output, and the manifest parts


def test_dedupe_on_a_source_of_spread_size_drops_what_the_driver_drops(
    ray_local, replays, tmp_path, monkeypatch
):
    config = _config(replays, tmp_path / "out")
    driver, driver_dir = run_request(config, _body({"dedupe": True}), "driver")
    monkeypatch.setattr(spread, "SPREAD_FROM", 100)  # 108 images
    spread_job, spread_dir = run_request(config, _body({"dedupe": True}), "spread")
    assert (spread_dir / "manifest").is_dir() and (driver_dir / "manifest.parquet").exists()
    found = driver["split"]["near_duplicates"]
    assert found["dropped"] > 0 and found["hashed"] == 108
    assert spread_job["split"] == driver["split"] | {"near_duplicates": found | {"hashed": 0}}
    assert spread_job["counts"] == driver["counts"]
    assert _manifest(spread_dir) == _manifest(driver_dir)  # dropped rows, duplicate_of
    made = {path: data for path, data in _files(spread_dir).items() if "manifest" not in path}
    assert made == {
        path: data for path, data in _files(driver_dir).items() if "manifest" not in path
    }


def _spoil(source_dir: Path) -> None:
    """Every file zeros, its size and mtime kept: the identity the cache knows it by."""
    for path in source_dir.rglob("*.jpg"):
        stat = path.stat()
        path.write_bytes(b"\0" * stat.st_size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_pairs_found_in_tasks_are_those_found_in_process(ray_local, replays, monkeypatch):
    import motoray.near_duplicates as near_duplicates
    from motoray.near_duplicates import merging

    config = _config(replays, Path("/nonexistent"))
    request = parse_one(_body({"dedupe": True}), config)
    storage, versions = source.list_versions(request, config)
    spec = job_spec(request, config, storage, MemoryStorage(), None)
    items = source.items(list(versions), source.place(request, config, list(versions)))
    options = request.train_test_split.near_duplicates
    cache = (MemoryStorage(), "hashes.parquet")
    here = near_duplicates.find(spec, items, options, cache)
    monkeypatch.setattr(merging, "IN_PROCESS_UP_TO", 0)
    in_tasks = near_duplicates.find(spec, items, options, cache)
    assert here.merged and here.dropped and here.report["pairs_across_splits"] > 0
    assert in_tasks.merged == here.merged and in_tasks.dropped == here.dropped
    assert in_tasks.report == here.report | {"hashed": 0}  # the second run read the cache


def _place(request, config, job_dir):
    storage, versions = source.list_versions(request, config)
    spec = job_spec(request, config, storage, job_dir, None)
    return place(request, config, spec, list(versions), None, None, versions)


def _files(job_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(job_dir)): path.read_bytes()
        for path in sorted(job_dir.rglob("*"))
        if path.is_file() and path.name != "job.json"
    }


def test_dedupe_keeps_the_largest_copy_and_lists_each_dropped_image(ray_local, replays, tmp_path):
    config = _config(replays, tmp_path)
    record, job_dir = run_request(config, _body({"dedupe": True}), "dedupe")
    rows = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    dropped = {row["source_path"]: row for row in rows if row["duplicate_of"] is not None}
    made = {row["source_path"]: row for row in rows if row["output_path"] is not None}
    assert dropped and len(dropped) + len(made) == 108
    assert record["split"]["near_duplicates"]["dropped"] == len(dropped)
    assert record["counts"]["outputs"] == len(made) == 108 - len(dropped)
    for key, row in dropped.items():
        kept = made[row["duplicate_of"]]
        assert row["output_path"] is None and row["split"] == kept["split"]
        assert key not in made and row["duplicate_of"] not in dropped
    # The rule: most pixels, ties to the smallest key. The 480x270 replay is never kept
    # over its 640x360 live shot; among equals the smallest key is.
    scaled = [k for k in dropped if k.startswith("replays/replay01/")]
    assert scaled and all(dropped[k]["duplicate_of"].startswith("live/") for k in scaled)
    assert all(row["duplicate_of"] < key for key, row in dropped.items() if "replay01/" not in key)
    # Each image dropped shows the clip its kept one shows (frames of one clip barely move:
    # they are near-duplicates of each other too), read from the pixels of both.
    for key, row in dropped.items():
        kept_output = load_image((job_dir / made[row["duplicate_of"]]["output_path"]).read_bytes())
        shown = read_shot(load_image((replays / key).read_bytes()), 360)
        assert read_shot(kept_output, OUTPUT[1]) // 4096 == shown // 4096


def test_video_replays_leak_with_group_by_alone_and_not_with_near_duplicates(ray_local, tmp_path):
    folder = tmp_path / "clips"
    args = ["sample-data", str(folder), "--video", "--count", "6", "--replays", "4"]
    assert main([*args, "--size", "320x180", "--seconds", "4", "--fps", "10"]) == 0
    config = _config(folder, tmp_path / "out", kind="video", frames={"every_s": 1})
    body = {"name": "replays", "input_image_size": OUTPUT, "seed": 4,
            "train_test_split": {"train_ratio": 70, "test_ratio": 30}}  # fmt: skip
    _, alone_dir = run_request(config, body, "alone")
    assert _leak(alone_dir) > 0
    body["train_test_split"]["near_duplicates"] = {}
    record, job_dir = run_request(config, body, "near")
    assert _leak(job_dir) == 0
    found = record["split"]["near_duplicates"]
    assert found["groups_merged"] == 8 and found["merged_into"] == 4  # 4 replays, 4 clips
    assert found["hashed"] == 10  # every video is one range here: 10 items decoded


@pytest.mark.parametrize("spread_from", [None, 100])  # the driver's items; key blocks
def test_a_job_stopped_while_hashing_ends_before_the_split(
    ray_local, replays, tmp_path, monkeypatch, spread_from
):
    from motoray.jobs.record import accept
    from motoray.pipeline import job

    config = _config(replays, tmp_path)
    near = {"dedupe": True}  # hashed first, on the driver's items
    if spread_from is not None:
        monkeypatch.setattr(spread, "SPREAD_FROM", spread_from)  # 108 images
        near = {}
    [inputs] = accept([parse_one(_body(near), config)], config, "stopped")
    with pytest.raises(job.JobStopped):
        job.run_job(inputs, should_stop=lambda: True)
    # Stopped at the hash tasks' first result: no sidecar saved, no output, no job.json.
    assert not (tmp_path / ".motoray/near_duplicates").exists()
    made = [p.name for p in (tmp_path / "replays").rglob("*") if p.is_file()]
    assert not [name for name in made if name.endswith((".jpg", ".json", ".parquet"))], made


def test_a_job_stopped_while_hashing_as_it_processes_saves_no_hash(ray_local, replays, tmp_path):
    from motoray.jobs.record import accept
    from motoray.pipeline import job

    config = _config(replays, tmp_path)
    [inputs] = accept([parse_one(_body({}), config)], config, "stopped")
    with pytest.raises(job.JobStopped):
        job.run_job(inputs, should_stop=lambda: True)
    # Stopped at the first result: some outputs made, where group_by put them; no sidecar
    # (a rerun hashes again), no manifest, no job.json.
    assert not (tmp_path / ".motoray/near_duplicates").exists()
    made = [p.name for p in (tmp_path / "replays").rglob("*") if p.is_file()]
    assert not [name for name in made if name.endswith((".json", ".parquet"))], made


def test_labelled_outputs_move_with_their_label(ray_local, replays, tmp_path):
    # Outputs under `<split>/<label>/`: a first run's moved outputs keep their label folder,
    # and leave no folder a split no longer holds an image of.
    config = _config(replays, tmp_path / "out", labels="folder")
    first, first_dir = run_request(config, _body({}), "first")
    _, again_dir = run_request(config, _body({}), "again")
    assert first["split"]["near_duplicates"]["pairs_across_splits"] > 0
    assert _files(first_dir) == _files(again_dir)
    rows = pq.read_table(first_dir / "manifest.parquet").to_pylist()
    assert {row["output_path"].split("/")[1] for row in rows} == {"live", "replays"}
    assert all(row["output_path"].startswith(f"{row['split']}/{row['label']}/") for row in rows)
    folders = {str(p.relative_to(first_dir)) for p in first_dir.rglob("*") if p.is_dir()}
    assert folders == {str(Path(row["output_path"]).parent) for row in rows} | {
        row["split"] for row in rows
    }
    assert _leak(first_dir) == 0


@pytest.mark.parametrize("near", [{}, {"dedupe": True}])  # hashed as processed; hashed first
def test_an_empty_source_fails_saying_so(ray_local, tmp_path, near):
    (tmp_path / "empty").mkdir()
    config = _config(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(Exception, match="lists no images"):
        run_request(config, _body(near), "empty")
