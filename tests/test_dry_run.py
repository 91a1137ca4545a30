"""The dry run's counts are the real job's counts; its estimates are sane."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motoray.cli import main
from motoray.dry_run import dry_run
from motoray.sample_data import write_sample_frames
from tests.conftest import parse_one, run_job

REQUEST = {
    "name": "clips",
    "input_image_size": [160, 90],
    "augmentations": [
        {
            "CROP": {"crop_dimensions": [[90, 90], [40, 60]], "crop_type": "center"},
            "RANDOM_CROP": {"crop_dimensions": [32, 32], "target_count": 3},
        }
    ],
    "train_test_split": {
        "train_ratio": 60,
        "test_ratio": 20,
        "validation_ratio": 20,
        "group_by": r"regex:^(clip\d+)_",
    },
}


@pytest.fixture
def clips(tmp_path) -> Path:
    folder = tmp_path / "clips"
    write_sample_frames(folder, 28, (320, 180), frames_per_clip=4)  # 7 clips of 4 frames
    return folder


@pytest.mark.usefixtures("ray_local")
def test_plan_counts_equal_the_real_jobs(clips, make_config):
    config = make_config(clips=clips)
    request = parse_one(REQUEST, config)
    planned = dry_run(request, config)
    record = run_job(request, config, "after-plan")

    assert planned["counts"] == {
        k: record["counts"][k] for k in ("images_total", "outputs", "splits")
    }
    assert planned["counts"]["outputs"] == 28 * 5
    assert planned["split"] == record["split"]
    assert set(planned["counts"]["splits"]) == {"train", "validation", "test"}

    manifest = pq.read_table(Path(record["output"]) / "manifest.parquet")
    actual_bytes = sum(manifest["bytes"].to_pylist())
    estimate = planned["estimate"]
    assert 0.7 < estimate["bytes"] / actual_bytes < 1.3
    assert estimate["sample"] == {"images": 7, "failed": 0}
    assert estimate["cpus"] == 2 and estimate["duration_s"] > 0
    cost = estimate["cost_usd"]
    assert 0 < cost["compute"]["spot"] < cost["compute"]["on_demand"]
    assert cost["output_objects"] == {"per_file": 140 + 2, "sharded": 1 + 2}
    assert cost["total"]["sharded_spot"] <= cost["total"]["per_file_spot"]


def test_cli_prints_json_and_rejects_stratify_without_labels(clips, tmp_path, capsys):
    (tmp_path / "motoray.yaml").write_text(f"sources:\n  clips:\n    uri: {clips}\n")
    (tmp_path / "request.json").write_text(json.dumps([REQUEST]))
    argv = ["plan", str(tmp_path / "request.json"), "--config", str(tmp_path / "motoray.yaml")]
    assert main([*argv, "--cpus", "8"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"]["images_total"] == 28 and printed["estimate"]["cpus"] == 8

    stratified = {**REQUEST, "train_test_split": {**REQUEST["train_test_split"], "stratify": True}}
    (tmp_path / "request.json").write_text(json.dumps(stratified))
    assert main(argv) == 2
    assert "stratify needs a labelled source" in capsys.readouterr().err
