"""Labelled folders end to end on a real local Ray: paths, manifest columns, grouped splits."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.sample_data import write_sample_frames
from tests.conftest import run_job

pytestmark = pytest.mark.usefixtures("ray_local")

# Unbalanced classes of small frames, 3 per clip: cat 4 clips, dog 2, bird 1.
CLIPS = {"cat": 4, "dog": 2, "bird": 1}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("animals")
    for label, clips in CLIPS.items():
        write_sample_frames(root / label, 3 * clips, (96, 54), frames_per_clip=3)
    return root


def _config(source: Path, tmp_path: Path, labels: str | None = "folder") -> Config:
    return Config(
        sources={"animals": SourceConfig(uri=str(source), labels=labels)},
        output=OutputConfig(uri=str(tmp_path / "out")),
    )


def _run(config: Config, split: dict, job_id: str) -> tuple[dict, Path]:
    body = {
        "name": "animals",
        "input_image_size": [64, 36],
        "augmentations": [{"CROP": {"crop_dimensions": [[32, 32]], "crop_type": "center"}}],
        "train_test_split": split,
    }
    record = run_job(body, config, job_id)
    return record, Path(config.output.uri) / "animals" / job_id


def test_labelled_folders_grouped_and_stratified(labelled, tmp_path):
    split = {
        "train_ratio": 50,
        "test_ratio": 50,
        "group_by": r"regex:^(\w+/clip\d+)_",  # a clip is one video: never in two splits
        "stratify": True,
    }
    record, job_dir = _run(_config(labelled, tmp_path), split, "labelled")

    assert record["state"] == "SUCCEEDED" and record["counts"]["images_failed"] == 0
    rows = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert len(rows) == 21
    splits_of_group = defaultdict(set)
    for row in rows:
        label = row["source_path"].split("/")[0]
        assert row["label"] == label
        assert row["group"] == row["source_path"].split("_")[0]  # e.g. cat/clip001
        assert row["output_path"].startswith(f"{row['split']}/{label}/")
        assert (job_dir / row["output_path"]).is_file()
        splits_of_group[row["group"]].add(row["split"])
    assert all(len(s) == 1 for s in splits_of_group.values())

    # Stratified by clip: cats 2 + 2 clips, dogs 1 + 1, the lone bird clip on one side.
    report = record["split"]["splits"]
    assert report["train"]["labels"]["cat"] == report["test"]["labels"]["cat"] == 6
    assert report["train"]["labels"]["dog"] == report["test"]["labels"]["dog"] == 3
    assert report["train"]["groups"] + report["test"]["groups"] == 7
    assert {s: c["images"] for s, c in record["counts"]["splits"].items()} == {
        s: c["images"] for s, c in report.items()
    }
    assert json.loads((job_dir / "job.json").read_text())["split"] == record["split"]


def test_unlabelled_source_has_null_label_and_group(labelled, tmp_path):
    config = _config(labelled, tmp_path, labels=None)
    _, job_dir = _run(config, {"train_ratio": 50, "test_ratio": 50}, "plain")
    rows = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert {(row["label"], row["group"]) for row in rows} == {(None, None)}
    assert all(row["output_path"].count("/") == 1 for row in rows)  # <split>/<name>
