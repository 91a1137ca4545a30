"""A hostile source folder: colliding names, damaged files, links out, a link loop, a device,
a FIFO, a decompression bomb, names that are not UTF-8. The job records each with its reason,
writes exactly what its manifest lists, reads nothing outside the root, and finishes; a
source of nothing but these fails."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from motoray.config import LimitsConfig
from motoray.dry_run import dry_run
from motoray.imageio import encode_jpeg, load_image
from motoray.sample_data import render_frame
from motoray.seeding import stable_hash
from tests.capabilities import can_drop, without_file_permission_override
from tests.conftest import parse_one, run_job

pytestmark = pytest.mark.usefixtures("ray_local")

SIZE = (160, 90)
# Two keys whose 32-bit name hashes collide: with the old names one overwrote the other.
COLLIDING = ["video061899/frame_000001.jpg", "video187650/frame_000001.jpg"]


def _jpeg(index: int) -> bytes:
    return encode_jpeg(render_frame(index, SIZE), quality=90)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _bad_entries(root: Path, outside: Path) -> dict[str, str]:
    """Write every hostile entry under `root`; key -> what its recorded reason must say."""
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(_jpeg(99))
    intact = _jpeg(7)
    cut = intact[: len(intact) * 6 // 10]
    (root / "cut_eoi.jpg").write_bytes(cut + b"\xff\xd9")  # an upload "repaired" by a tool
    (root / "zero_padded.jpg").write_bytes(cut + bytes(len(intact) - len(cut)))
    png = _png(render_frame(8, SIZE))
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "link_out.jpg").symlink_to(outside / "secret.jpg")
    (root / "folder_out").symlink_to(outside, target_is_directory=True)  # not walked into
    (root / "zero.jpg").symlink_to("/dev/zero")
    (root / "loop.jpg").symlink_to("loop.jpg")  # ELOOP: the entry's fault, not the storage's
    os.mkfifo(root / "fifo.jpg")  # nobody ever writes: a read would block forever
    bomb = Image.new("L", (10_000, 10_000))  # 100 MP of zeros: ~100 KB as a PNG
    buffer = io.BytesIO()
    bomb.save(buffer, format="PNG")
    (root / "bomb.png").write_bytes(buffer.getvalue())
    folder = os.fsencode(root)
    os.mkdir(os.path.join(folder, b"caf\xe9"))  # Latin-1 names, as an old share writes them
    for name in (b"bad\xff\xfename.jpg", b"caf\xe9/frame.jpg"):  # good JPEGs, bad names
        with open(os.path.join(folder, name), "wb") as f:
            f.write(_jpeg(9))
    return {
        "cut_eoi.jpg": "JPEG",
        "zero_padded.jpg": "JPEG",
        "truncated.png": "PNG",
        "link_out.jpg": "outside the source folder",
        "zero.jpg": "outside the source folder",
        "fifo.jpg": "FIFO",
        "loop.jpg": "symbolic link loop",
        "bomb.png": "image too large",
        "bad\\xff\\xfename.jpg": "not UTF-8",
        "caf\\xe9/frame.jpg": "not UTF-8",
    }


def _good_entries(root: Path, count: int) -> list[str]:
    keys = [*COLLIDING] + [f"clip/frame_{i:03d}.jpg" for i in range(count - len(COLLIDING))]
    for index, key in enumerate(keys):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(_jpeg(index))
    return keys


def test_the_old_names_collided():
    assert stable_hash(COLLIDING[0], bits=32) == stable_hash(COLLIDING[1], bits=32)


def test_a_hostile_source_is_recorded_entry_by_entry(tmp_path, make_config):
    root = tmp_path / "source"
    root.mkdir()
    bad = _bad_entries(root, tmp_path / "outside")
    good = _good_entries(root, 12)
    config = make_config(hostile=root)
    config.limits = LimitsConfig(job_timeout_s=120)
    body = {
        "name": "hostile",
        "input_image_size": list(SIZE),
        "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [32, 32], "target_count": 2}}],
    }

    record = run_job(body, config, "hostile")

    assert record["state"] == "SUCCEEDED", record.get("error")
    assert record["timings"]["duration_s"] < 120
    reasons = {f["source_path"]: f["reason"] for f in record["failures"]}
    assert set(reasons) == set(bad)  # the folder link is not walked: nothing of it listed
    for key, says in bad.items():
        assert says in reasons[key], (key, reasons[key])

    job_dir = Path(record["output"])
    rows = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert sorted({row["source_path"] for row in rows}) == sorted(good)  # no damaged, no outside
    files = sorted(
        p.relative_to(job_dir).as_posix()
        for p in job_dir.rglob("*")
        if p.is_file() and p.name not in ("manifest.parquet", "job.json")
    )
    assert files == sorted(row["output_path"] for row in rows)  # each file, one row
    assert len(files) == 2 * len(good)

    # The colliding pair: each image's crops are its own pixels, under its own names.
    for key, index in zip(COLLIDING, range(2)):
        frame = load_image(_jpeg(index), SIZE).astype(float)
        for row in (r for r in rows if r["source_path"] == key):
            crop = load_image((job_dir / row["output_path"]).read_bytes()).astype(float)
            box = json.loads(row["params"])
            x, y = box["x"], box["y"]
            assert np.abs(crop - frame[y : y + 32, x : x + 32]).mean() < 6


def test_a_plan_lists_and_splits_a_hostile_source(tmp_path, make_config):
    """/plan lists, groups and splits every entry as a job does: keys are valid text, even
    for names that are not UTF-8 (a folder group, seeds)."""
    root = tmp_path / "source"
    root.mkdir()
    bad = _bad_entries(root, tmp_path / "outside")
    good = _good_entries(root, 12)
    config = make_config(hostile=root)
    body = {
        "name": "hostile",
        "input_image_size": list(SIZE),
        "train_test_split": {
            "train_ratio": 50,
            "test_ratio": 25,
            "validation_ratio": 25,
            "group_by": "folder",
        },
    }

    plan = dry_run(parse_one(body, config), config, cpus=2)

    assert plan["counts"]["images_total"] == len(bad) + len(good)
    splits = plan["counts"]["splits"].values()
    assert sum(s["images"] for s in splits) == len(bad) + len(good)


def test_a_source_of_only_bad_entries_ends_failed(tmp_path, make_config):
    root = tmp_path / "source"
    root.mkdir()
    bad = _bad_entries(root, tmp_path / "outside")
    config = make_config(hostile=root)

    with pytest.raises(RuntimeError, match="no image could be processed"):
        run_job({"name": "hostile", "input_image_size": list(SIZE)}, config, "all-bad")

    job_json = Path(config.output.uri) / "hostile" / "all-bad" / "job.json"
    record = json.loads(job_json.read_text())
    assert record["state"] == "FAILED" and "no image could be processed" in record["error"]
    assert {f["source_path"] for f in record["failures"]} == set(bad)  # kept, not lost
    assert record["counts"]["images_failed"] == record["counts"]["images_total"] == len(bad)


def test_more_failures_than_allowed_end_failed(tmp_path, make_config):
    root = tmp_path / "source"
    root.mkdir()
    bad = _bad_entries(root, tmp_path / "outside")
    _good_entries(root, 4)  # 4 good, 7 bad: over the default half
    config = make_config(hostile=root)

    with pytest.raises(RuntimeError, match=r"limits\.max_failed_fraction"):
        run_job({"name": "hostile", "input_image_size": list(SIZE)}, config, "mostly-bad")
    config.limits = LimitsConfig(max_failed_fraction=0.9)
    record = run_job({"name": "hostile", "input_image_size": list(SIZE)}, config, "tolerated")
    assert record["state"] == "SUCCEEDED" and record["counts"]["images_failed"] == len(bad)


@pytest.mark.skipif(not can_drop(), reason="per-thread capabilities: Linux")
def test_a_folder_that_cannot_be_listed_fails_the_job(tmp_path, make_config):
    """Access errors are the storage's: the job ends FAILED naming the folder, it does not
    quietly make a dataset of the folders it could read. The driver runs on a thread that
    file permissions bind (tests run as root), as a service user's would."""
    root = tmp_path / "source"
    _good_entries(root, 6)  # video061899/, video187650/ and clip/
    (root / "clip").chmod(0)
    config = make_config(hostile=root)
    body = {"name": "hostile", "input_image_size": list(SIZE)}
    try:
        with pytest.raises(PermissionError, match="cannot list source folder"):
            without_file_permission_override(lambda: run_job(body, config, "unlistable"))
    finally:
        (root / "clip").chmod(0o755)

    job_dir = Path(config.output.uri) / "hostile" / "unlistable"
    record = json.loads((job_dir / "job.json").read_text())
    assert record["state"] == "FAILED", record
    assert "cannot list source folder" in record["error"] and str(root / "clip") in record["error"]
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.json"]  # nothing was made
