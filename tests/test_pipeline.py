"""The seed request end to end on a real local Ray, real JPEG files."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from motoray.imageio import load_image
from motoray.jobs.folder import JobExistsError
from motoray.pipeline import source, worker
from motoray.pipeline.jobspec import job_spec
from motoray.pipeline.layout import job_folder
from tests.conftest import copy_frames, parse_one, run_job

pytestmark = pytest.mark.usefixtures("ray_local")


def _run(config, body: dict, job_id: str, **overrides) -> tuple[dict, Path]:
    record = run_job({**body, **overrides}, config, job_id)
    job_dir = Path(config.output.uri) / body["name"] / job_id
    assert json.loads((job_dir / "job.json").read_text()) == record
    return record, job_dir


def _mean_abs_diff(output: np.ndarray, frame: np.ndarray, x: int, y: int) -> float:
    h, w = output.shape[:2]
    return float(np.abs(output.astype(float) - frame[y : y + h, x : x + w]).mean())


def _decode(path: Path) -> np.ndarray:
    return load_image(path.read_bytes())


def test_seed_sample_end_to_end(frames, make_config, seed_request):
    config = make_config(MotoGP=frames)
    record, job_dir = _run(config, seed_request, "seed")

    assert record["state"] == "SUCCEEDED"
    assert record["counts"]["images_total"] == 50
    assert record["counts"]["images_failed"] == 0
    assert record["counts"]["splits"] == {
        "test": {"images": 10, "outputs": 40},
        "train": {"images": 40, "outputs": 160},
    }
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert len(manifest) == 200
    splits_of_source = {}
    for row in manifest:
        splits_of_source.setdefault(row["source_path"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of_source.values())  # no frame in two splits
    assert sum(s == {"train"} for s in splits_of_source.values()) == 40

    resized = {}
    for row in manifest:
        output = _decode(job_dir / row["output_path"])
        assert output.shape == (row["height"], row["width"], 3)
        assert row["output_path"].startswith(row["split"] + "/")
        if row["source_path"] not in resized:
            resized[row["source_path"]] = load_image(
                (frames / row["source_path"]).read_bytes(), (480, 270)
            )
        frame = resized[row["source_path"]]
        box = json.loads(row["params"])
        x, y, w, h = box["x"], box["y"], box["width"], box["height"]
        if row["operator"] == "CROP":
            assert (x, y, w, h) == (0, 0, 270, 270)
        else:
            assert row["operator"] == "RANDOM_CROP" and (w, h) == (80, 80)
            assert "seed" in box
        error = _mean_abs_diff(output, frame, x, y)
        assert error < 5  # JPEG re-encoding tolerance
        # ...and the box is where the manifest says: a box 4 px away matches worse.
        shifted_x = x + 4 if x + 4 + w <= frame.shape[1] else x - 4
        assert _mean_abs_diff(output, frame, shifted_x, y) > error
    operators = [
        row["operator"] for row in manifest if row["source_path"] == manifest[0]["source_path"]
    ]
    assert sorted(operators) == ["CROP", "RANDOM_CROP", "RANDOM_CROP", "RANDOM_CROP"]


def _hashes(job_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(job_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(job_dir.rglob("*"))
        if p.is_file() and p.name != "job.json"
    }


def test_same_seed_byte_identical_other_seed_other_boxes(frames, make_config, seed_request):
    config = make_config(MotoGP=frames)
    _, first = _run(config, seed_request, "a", seed=11)
    _, second = _run(config, seed_request, "b", seed=11)
    _, third = _run(config, seed_request, "c", seed=12)
    assert _hashes(first) == _hashes(second)
    assert len(_hashes(first)) == 201  # 200 images + manifest

    def random_boxes(job_dir):
        rows = pq.read_table(job_dir / "manifest.parquet").to_pylist()
        return [row["params"] for row in rows if row["operator"] == "RANDOM_CROP"]

    assert random_boxes(first) != random_boxes(third)


def test_bad_files_are_recorded_and_the_rest_completes(frames, make_config, tmp_path):
    source = tmp_path / "mixed"
    good = copy_frames(frames, source, 6)
    data = good[0].read_bytes()
    (source / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (source / "empty.jpg").write_bytes(b"")
    (source / "notes.png").write_bytes(b"this is not an image at all, just text\n" * 10)
    config = make_config(MotoGP=source)
    request = {
        "name": "MotoGP",
        "input_image_size": [480, 270],
        "augmentations": [{"CROP": {"crop_dimensions": [[100, 100]], "crop_type": "center"}}],
    }
    record, job_dir = _run(config, request, "mixed")

    assert record["state"] == "SUCCEEDED"
    failures = {f["source_path"]: f["reason"] for f in record["failures"]}
    assert set(failures) == {"truncated.jpg", "empty.jpg", "notes.png"}
    assert all(reason for reason in failures.values())
    assert "empty" in failures["empty.jpg"]
    assert "truncat" in failures["truncated.jpg"].lower()
    assert record["counts"]["images_failed"] == 3
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert sorted(row["source_path"] for row in manifest) == sorted(p.name for p in good)
    assert {row["split"] for row in manifest} == {"all"}


def test_crop_larger_than_an_unresized_image_skips_that_image(frames, make_config, tmp_path):
    source = tmp_path / "sizes"
    source.mkdir()
    from motoray.sample_data import write_sample_frames

    write_sample_frames(source / "small", 2, (200, 100))
    write_sample_frames(source / "large", 2, (400, 300))
    config = make_config(MotoGP=source)
    request = {
        "name": "MotoGP",
        "augmentations": [{"CROP": {"crop_dimensions": [[150, 150]], "crop_type": "center"}}],
    }
    record, job_dir = _run(config, request, "sizes")
    assert record["state"] == "SUCCEEDED"
    assert sorted(f["source_path"] for f in record["failures"]) == [
        "small/clip000_frame0000.jpg",
        "small/clip000_frame0001.jpg",
    ]
    assert "150x150" in record["failures"][0]["reason"]
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert len(manifest) == 2 and all(r["source_path"].startswith("large/") for r in manifest)


def test_no_augmentations_writes_the_resized_originals(frames, make_config):
    config = make_config(MotoGP=frames)
    _, job_dir = _run(config, {"name": "MotoGP", "input_image_size": [64, 36]}, "orig")
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert len(manifest) == 50 and {r["operator"] for r in manifest} == {"ORIGINAL"}
    assert {(r["width"], r["height"]) for r in manifest} == {(64, 36)}


def test_a_finished_job_id_is_not_run_twice(frames, make_config):
    config = make_config(MotoGP=frames)
    _run(config, {"name": "MotoGP", "input_image_size": [32, 18]}, "once")
    with pytest.raises(JobExistsError):
        _run(config, {"name": "MotoGP", "input_image_size": [32, 18]}, "once")


def test_missing_source_folder_fails_with_job_json(make_config, tmp_path):
    config = make_config(MotoGP=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        run_job({"name": "MotoGP"}, config, "missing")
    record = json.loads((Path(config.output.uri) / "MotoGP" / "missing" / "job.json").read_text())
    assert record["state"] == "FAILED" and "does not exist" in record["error"]


def test_block_and_chunk_boundaries_change_no_byte(
    frames, make_config, seed_request, monkeypatch, tmp_path
):
    """What a Ray Data block or an in-task chunk holds depends on cluster size and settings;
    the outputs and rows must not. The worker is called here directly, no Ray."""
    folder = tmp_path / "with-a-bad-file"
    shutil.copytree(frames, folder)
    (folder / "clip000_frame0003.jpg").write_bytes(b"<html>not a frame</html>")
    config = make_config(MotoGP=folder)
    request = parse_one(seed_request, config)
    storage, keys = source.list_source(request, config)
    items = source.items(keys, source.place(request, config, keys))

    def process(job_id: str, block_images: int, chunk_images: int) -> tuple[list, Path]:
        monkeypatch.setattr(worker, "CHUNK_IMAGES", chunk_images)
        job_dir = job_folder(config, request.name, job_id)
        spec = job_spec(request, config, storage, job_dir)
        rows = []
        for start in range(0, len(items), block_images):
            rows += worker.write_files(spec, items[start : start + block_images])
        return rows, Path(job_dir.uri)

    one_block, first = process("one-block", len(items), worker.CHUNK_IMAGES)
    many_blocks, second = process("many-blocks", 9, 4)
    assert one_block == many_blocks
    assert [row["source_path"] for row in one_block if "error" in row] == ["clip000_frame0003.jpg"]
    assert _hashes(first) == _hashes(second)
    assert len(_hashes(first)) == 4 * (len(items) - 1)


def test_a_small_job_runs_as_plain_tasks_with_the_bytes_of_a_dataset(
    frames, make_config, seed_request, monkeypatch
):
    """A job of one block's worth of images skips Ray Data (its start costs a cold run ~1.2
    s); both ways must make the same files and manifest. Each run refuses the other way."""
    from motoray.pipeline import ray_data

    def refused(*args, **kwargs):
        raise AssertionError("this job must not take this path")

    config = make_config(MotoGP=frames)
    with monkeypatch.context() as patch:
        patch.setattr(ray_data, "_mapped", refused)
        _, as_tasks = _run(config, seed_request, "as-tasks")
    with monkeypatch.context() as patch:
        patch.setattr(ray_data, "_as_tasks", refused)
        patch.setattr(ray_data, "IMAGES_PER_BLOCK", 8)  # 50 frames: 7 blocks, a dataset
        _, as_dataset = _run(config, seed_request, "as-dataset")
    assert _hashes(as_tasks) == _hashes(as_dataset)
    assert len(_hashes(as_tasks)) == 4 * 50 + 1  # the outputs and the manifest

    # The dataset is named after its job: Ray's dashboard (its Data view, which reads Ray
    # Data's stats actor) shows it as that job's.
    from ray.data._internal.stats import get_or_create_stats_actor

    datasets = ray.get(get_or_create_stats_actor().get_datasets.remote())
    assert any(tag.startswith("as-dataset_") for tag in datasets), sorted(datasets)


def test_a_small_job_left_early_ends_after_its_other_tasks(ray_local, tmp_path):
    """A stopped or failed job leaves the loop over its results before reading them all: it
    ends once its other tasks have, so none writes into the job's folder after the end."""
    from motoray.pipeline import ray_data

    def block(batch, spec):
        [key] = batch["key"].to_pylist()
        if key != "first":
            time.sleep(2)
            Path(spec, key).touch()
        return batch

    rows = [{"key": key} for key in ("first", "second", "third")]
    results = ray_data._as_tasks(block, str(tmp_path), rows)
    assert next(results)["key"].to_pylist() == ["first"]
    results.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["second", "third"]
