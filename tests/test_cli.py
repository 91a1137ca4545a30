"""`motoray` on the command line, as a user runs it (subprocesses, real Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import EXAMPLES, copy_frames


def motoray(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "motoray.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def _config(tmp_path: Path, frames: Path) -> Path:
    path = tmp_path / "motoray.yaml"
    path.write_text(
        yaml.safe_dump({"sources": {"MotoGP": {"uri": str(frames)}}, "output": {"uri": "out"}})
    )
    return path


@pytest.mark.slow  # `motoray run` starts (and stops) a Ray of its own
def test_run_seed_sample_prints_the_job_folder(tmp_path, frames):
    config = _config(tmp_path, copy_frames(frames, tmp_path / "frames", 10)[0].parent)
    result = motoray(
        "run",
        str(EXAMPLES / "seed_sample.json"),
        "--config",
        str(config),
        "--job-id",
        "cli",
        "--address",
        "local",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    job_dir = tmp_path / "out" / "MotoGP" / "cli"  # relative to the config file
    assert str(job_dir) in result.stdout
    assert "8 images -> 32 outputs" in result.stdout  # the train split of 10 frames
    assert json.loads((job_dir / "job.json").read_text())["state"] == "SUCCEEDED"
    assert pq.read_table(job_dir / "manifest.parquet").num_rows == 40


@pytest.mark.slow
def test_run_prints_its_own_progress_not_ray_datas(tmp_path):
    """More than one block's worth of images, so the job makes a Ray Data dataset: what the
    user reads is motoray's progress bar and summary, not Ray Data's log lines (they came
    back once, when ray.data stopped being imported before its logging level was set)."""
    from motoray.pipeline.ray_data import IMAGES_PER_BLOCK
    from motoray.sample_data import write_sample_frames

    write_sample_frames(tmp_path / "frames", IMAGES_PER_BLOCK + 1, (64, 36))
    config = _config(tmp_path, tmp_path / "frames")
    request = {"name": "MotoGP", "input_image_size": [32, 18]}
    (tmp_path / "request.json").write_text(json.dumps(request))
    result = motoray("run", str(tmp_path / "request.json"), "--config", str(config),
                     "--address", "local")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{IMAGES_PER_BLOCK + 1}/{IMAGES_PER_BLOCK + 1}" in result.stderr  # our bar
    ray_data_lines = [line for line in result.stderr.splitlines() if "ray.data" in line
                      or "Dataset" in line or "Progress bars" in line]  # fmt: skip
    assert ray_data_lines == []


def test_invalid_request_exits_2_naming_the_field_and_starts_nothing(tmp_path, frames):
    config = _config(tmp_path, frames)
    request = tmp_path / "too_big.json"
    body = json.loads((EXAMPLES / "seed_sample.json").read_text())
    body[0]["augmentations"][0]["CROP"]["crop_dimensions"] = [[300, 300]]
    request.write_text(json.dumps(body))
    result = motoray("run", str(request), "--config", str(config), "--address", "local")
    assert result.returncode == 2
    assert "0.augmentations.0.CROP: needs an image of at least 300x300" in result.stderr
    assert not (tmp_path / "out").exists()


def test_what_the_source_cannot_do_exits_2_before_any_job(tmp_path, frames):
    """Decided by the config alone (an unlabelled source of images): refused like a bad field."""
    config = _config(tmp_path, frames)
    body = json.loads((EXAMPLES / "seed_sample.json").read_text())
    body[0]["train_test_split"].update(group_by="video", stratify=True)
    (tmp_path / "grouped.json").write_text(json.dumps(body))
    result = motoray("run", str(tmp_path / "grouped.json"), "--config", str(config))
    assert result.returncode == 2
    assert '0.train_test_split.group_by: "video" is for video sources' in result.stderr
    assert "0.train_test_split.stratify: stratify needs a labelled source" in result.stderr
    assert not (tmp_path / "out").exists()


def test_verbatim_seed_text_is_a_parse_error_with_position(tmp_path, frames):
    config = _config(tmp_path, frames)
    result = motoray("run", str(EXAMPLES / "seed_sample_verbatim.txt"), "--config", str(config))
    assert result.returncode == 2
    assert "invalid JSON at line 1 column 146" in result.stderr


def test_missing_config_is_a_clear_error(tmp_path):
    result = motoray("sources", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "config file not found" in result.stderr


def test_sources_operators_and_sample_data(tmp_path, frames):
    config = _config(tmp_path, frames)
    assert "MotoGP" in motoray("sources", "--config", str(config)).stdout
    operators = motoray("operators").stdout
    assert "CROP" in operators and "RANDOM_CROP" in operators and "target_count" in operators
    result = motoray("sample-data", str(tmp_path / "s"), "--count", "3", "--size", "64x48")
    assert result.returncode == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "clip000_frame0000.jpg",
        "clip000_frame0001.jpg",
        "clip000_frame0002.jpg",
    ]


def test_preview_and_plan_from_the_command_line(tmp_path, frames):
    config = _config(tmp_path, frames)
    sheet = tmp_path / "sheet.png"
    request = str(EXAMPLES / "seed_sample.json")
    result = motoray("preview", request, "--config", str(config), "-o", str(sheet), "--count", "2")
    assert result.returncode == 0, result.stderr
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = motoray("plan", request, "--config", str(config))
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts["images_total"] == 50 and counts["outputs"] == 200


def test_sample_data_with_boxes_in_either_format(tmp_path):
    from motoray.sample_data import frame_objects

    for kind in ("coco", "yolo"):
        folder = tmp_path / kind
        args = ["sample-data", str(folder), "--count", "3", "--size", "320x180"]
        result = motoray(*args, "--annotations", kind)
        assert result.returncode == 0, result.stderr
        assert f'annotations: {{"format": "{kind}"' in result.stdout
    document = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert [i["file_name"] for i in document["images"]] == [
        f"clip000_frame000{n}.jpg" for n in range(3)
    ]
    truth = [obj for n in range(3) for obj in frame_objects(n, (320, 180))]
    assert [a["bbox"] for a in document["annotations"]] == [list(obj.box) for obj in truth]
    assert [c["name"] for c in document["categories"]] == ["bike", "rider"]
    labels = (tmp_path / "yolo" / "clip000_frame0000.txt").read_text().splitlines()
    assert len(labels) == len(frame_objects(0, (320, 180))) and all(
        len(line.split()) == 5 for line in labels
    )
