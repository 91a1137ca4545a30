"""A listed S3 prefix or local folder of at least SPREAD_FROM keys runs spread
(pipeline/spread.py): its listing stays in Ray's blocks, its manifest is a `manifest/`
folder. Lowered here, so that a few frames cross it: the job makes what the driver's path
makes of the same keys, and reads each S3 object at the ETag listed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.pipeline import listing, local_listing, spread
from tests.conftest import manifest_rows, run_job
from tests.s3server import S3Endpoint, s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("ray_local")

REQUEST = {
    "name": "src",
    "input_image_size": [64, 36],
    "train_test_split": {"train_ratio": 70, "validation_ratio": 10, "test_ratio": 20},
}


def _outputs(job: Path) -> dict[str, str]:
    return {
        p.relative_to(job).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(job.rglob("*"))
        if p.is_file() and p.name not in ("job.json", "manifest.parquet")
        and p.parent.name != "manifest"
    }  # fmt: skip


def _folder(frames: Path, folder: Path) -> Path:
    """32 keys: 30 frames in cam*/lap*/ (subtrees a task may walk), a damaged one, and one at
    the top level."""
    for n, path in enumerate(sorted(frames.glob("*.jpg"))[:30]):
        key = folder / f"cam{n % 3}" / f"lap{n % 2}" / path.name
        key.parent.mkdir(parents=True, exist_ok=True)
        key.hardlink_to(path)
    (folder / "cam0" / "empty.jpg").write_bytes(b"")  # damaged: one failure either way
    (folder / "top.jpg").hardlink_to(sorted(frames.glob("*.jpg"))[30])
    return folder


def test_a_large_local_folder_runs_spread_as_the_driver_would(frames, tmp_path, monkeypatch):
    folder = _folder(frames, tmp_path / "src")
    body = {**REQUEST, "train_test_split": {**REQUEST["train_test_split"], "group_by": "folder"}}
    config = Config(
        sources={"src": SourceConfig(uri=str(folder))},
        output=OutputConfig(uri=str(tmp_path / "out")),
    )

    driver = run_job(body, config, "driver")  # 32 keys: below SPREAD_FROM
    monkeypatch.setattr(spread, "SPREAD_FROM", 32)
    spread_job = run_job(body, config, "spread")

    root = tmp_path / "out" / "src"
    assert (root / "driver" / "manifest.parquet").exists()
    assert not (root / "driver" / "manifest").exists()
    assert not (root / "spread" / "manifest.parquet").exists()
    assert driver["state"] == spread_job["state"] == "SUCCEEDED"
    assert driver["counts"] == spread_job["counts"]
    assert spread_job["counts"]["images_total"] == 32
    assert spread_job["counts"]["images_failed"] == 1
    assert driver["split"] == spread_job["split"]
    assert driver["failures"] == spread_job["failures"]
    assert [f["source_path"] for f in spread_job["failures"]] == ["cam0/empty.jpg"]
    assert _outputs(root / "driver") == _outputs(root / "spread")
    expected = pq.read_table(root / "driver" / "manifest.parquet")
    assert manifest_rows(ds.dataset(root / "spread" / "manifest").to_table()) == manifest_rows(
        expected
    )
    assert json.loads((root / "spread" / "job.json").read_text()) == spread_job


def test_a_large_s3_prefix_runs_spread_and_refuses_an_object_changed_since_listed(
    frames,
    tmp_path,
    monkeypatch,
    s3_endpoint: S3Endpoint,  # noqa: F811
):
    bucket = s3_endpoint.new_bucket()
    client = s3_endpoint.client()
    paths = sorted(frames.glob("*.jpg"))[:24]
    for n, path in enumerate(paths):
        client.put_object(Bucket=bucket, Key=f"raw/cam{n % 2}/{path.name}", Body=path.read_bytes())
    out = tmp_path / "out"
    config = Config(
        sources={"src": SourceConfig(uri=f"s3://{bucket}/raw")},
        output=OutputConfig(uri=str(out)),
        s3=s3_endpoint.settings(),
    )
    driver = run_job(REQUEST, config, "driver")  # 24 keys: below SPREAD_FROM

    changed = f"cam1/{paths[1].name}"
    placed = spread.placed

    def replaced_after_the_listing(*args):
        client.put_object(Bucket=bucket, Key=f"raw/{changed}", Body=paths[0].read_bytes())
        return placed(*args)

    monkeypatch.setattr(spread, "SPREAD_FROM", 24)
    monkeypatch.setattr(listing, "LIST_PAGE_KEYS", 5)  # a first page cut short: ranges in tasks
    monkeypatch.setattr(spread, "placed", replaced_after_the_listing)
    spread_job = run_job(REQUEST, config, "spread")

    root = out / "src"
    assert not (root / "spread" / "manifest.parquet").exists()
    assert driver["state"] == spread_job["state"] == "SUCCEEDED"
    assert driver["split"] == spread_job["split"]
    [failure] = spread_job["failures"]
    assert failure["source_path"] == changed
    assert failure["reason"].startswith(
        f"changed during the job: s3://{bucket}/raw/{changed} is no longer the object listed"
    )
    counts = spread_job["counts"]
    assert counts["images_total"] == counts["images_done"] == 24
    assert counts["images_failed"] == 1
    assert counts["outputs"] == driver["counts"]["outputs"] - 1
    split_of_changed = next(
        row["split"]
        for row in pq.read_table(root / "driver" / "manifest.parquet").to_pylist()
        if row["source_path"] == changed
    )
    for name, split in driver["counts"]["splits"].items():
        less = int(name == split_of_changed)
        assert counts["splits"][name] == {
            "images": split["images"] - less,
            "outputs": split["outputs"] - less,
        }
    expected = pq.read_table(root / "driver" / "manifest.parquet")
    expected = expected.filter(pc.not_equal(expected["source_path"], changed))
    assert manifest_rows(ds.dataset(root / "spread" / "manifest").to_table()) == manifest_rows(
        expected
    )
    made = _outputs(root / "spread")
    assert made == {path: digest for path, digest in _outputs(root / "driver").items()
                    if path in made}  # fmt: skip
    assert len(made) == len(_outputs(root / "driver")) - 1


def test_a_spread_jobs_files_are_the_same_however_its_listing_was_cut(
    frames, tmp_path, monkeypatch
):
    """Few subtrees, walked by tasks, or none, the tree walked here: the blocks of the job
    (7 of 5 keys) and so its manifest parts are cut from one order, byte for byte."""
    config = Config(
        sources={"src": SourceConfig(uri=str(_folder(frames, tmp_path / "src")))},
        output=OutputConfig(uri=str(tmp_path / "out")),
    )
    monkeypatch.setattr(spread, "SPREAD_FROM", 32)
    monkeypatch.setattr(spread, "IMAGES_PER_BLOCK", 5)
    made = {}
    for subtrees_per_cpu in (1, 16):  # 2 CPUs: 3 top folders are enough; 16: none below
        monkeypatch.setattr(local_listing, "SUBTREES_PER_CPU", subtrees_per_cpu)
        job = f"cut-{subtrees_per_cpu}"
        assert run_job(REQUEST, config, job)["state"] == "SUCCEEDED"
        root = tmp_path / "out" / "src" / job
        made[job] = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "job.json"
        }
    parts = [path for path in made["cut-1"] if path.startswith("manifest/part-")]
    assert len(parts) == 7
    assert made["cut-1"] == made["cut-16"]


def test_a_resumed_spread_job_keeps_no_part_an_earlier_run_left(frames, tmp_path, monkeypatch):
    """An earlier run's part (a listing since changed cuts other blocks) is removed: the
    manifest lists this run's outputs, once."""
    from motoray.jobs.record import accept
    from motoray.pipeline import job
    from tests.conftest import parse_one

    config = Config(
        sources={"src": SourceConfig(uri=str(_folder(frames, tmp_path / "src")))},
        output=OutputConfig(uri=str(tmp_path / "out")),
    )
    monkeypatch.setattr(spread, "SPREAD_FROM", 32)
    [inputs] = accept([parse_one(REQUEST, config)], config, "resumed")
    manifest = tmp_path / "out" / "src" / "resumed" / "manifest"
    manifest.mkdir(parents=True, exist_ok=True)
    stale = manifest / "part-0123456789abcdef.parquet"
    pq.write_table(pa.table({"output_path": ["train/top.0.jpg"]}), stale)

    record = job.run_job(inputs, run=1)

    assert record.state == "SUCCEEDED" and record.resumed == 1
    assert not stale.exists()
    rows = ds.dataset(manifest).to_table()
    assert rows.num_rows == record.counts.outputs == 31
    assert len(set(rows["output_path"].to_pylist())) == 31


def test_a_note_in_a_later_part_reaches_whoever_reads_the_folder(frames, tmp_path, monkeypatch):
    """A reader of `manifest/` takes the first part's columns: every part has `notes`, so
    the note of an image repaired from its header (in the last block) is not lost."""
    from tests.test_imageio_oddities import HEADER_CASES

    folder = _folder(frames, tmp_path / "src")
    top = folder / "top.jpg"  # the last key: in the last block
    odd, _, words = HEADER_CASES["junk_before_dqt"](top.read_bytes())
    top.unlink()  # a hard link to the shared frame: not written through
    top.write_bytes(odd)
    config = Config(
        sources={"src": SourceConfig(uri=str(folder))},
        output=OutputConfig(uri=str(tmp_path / "out")),
    )
    driver = run_job(REQUEST, config, "driver")
    monkeypatch.setattr(spread, "SPREAD_FROM", 32)
    monkeypatch.setattr(spread, "IMAGES_PER_BLOCK", 5)
    spread_job = run_job(REQUEST, config, "spread")

    assert driver["counts"] == spread_job["counts"]
    root = tmp_path / "out" / "src"
    parts = ds.dataset(root / "spread" / "manifest").to_table()
    notes = {row["source_path"]: row["notes"] for row in parts.to_pylist()}
    assert words in notes["top.jpg"] and {k for k, v in notes.items() if v} == {"top.jpg"}
    assert manifest_rows(parts) == manifest_rows(
        pq.read_table(root / "driver" / "manifest.parquet")
    )


def test_near_duplicates_on_a_large_s3_prefix_hash_by_etag_in_the_key_blocks(
    frames,
    tmp_path,
    monkeypatch,
    s3_endpoint: S3Endpoint,  # noqa: F811
):
    """The hash pass runs over the blocks, each object keyed by the ETag listed: a frame
    exported again under other names joins its original's split, and a rerun hashes none."""
    bucket = s3_endpoint.new_bucket()
    client = s3_endpoint.client()
    paths = sorted(frames.glob("*.jpg"))[:20]
    for n, path in enumerate(paths):
        client.put_object(Bucket=bucket, Key=f"raw/cam{n % 4}/{path.name}", Body=path.read_bytes())
    for n in range(4):  # one frame again, in every folder
        client.put_object(Bucket=bucket, Key=f"raw/cam{n}/again{n}.jpg", Body=paths[0].read_bytes())
    config = Config(
        sources={"src": SourceConfig(uri=f"s3://{bucket}/raw")},
        output=OutputConfig(uri=str(tmp_path / "out")),
        s3=s3_endpoint.settings(),
    )
    split = {**REQUEST["train_test_split"], "group_by": "folder", "near_duplicates": {}}
    body = {**REQUEST, "train_test_split": split}
    monkeypatch.setattr(spread, "SPREAD_FROM", 24)

    first = run_job(body, config, "first")
    again = run_job(body, config, "again")

    assert first["state"] == again["state"] == "SUCCEEDED"
    found = first["split"]["near_duplicates"]
    assert found["hashed"] == 24 and found["groups_merged"] == 4 and found["merged_into"] == 1
    assert again["split"] == first["split"] | {"near_duplicates": found | {"hashed": 0}}
    assert (tmp_path / "out/.motoray/near_duplicates/src.v1.parquet").exists()
    rows = ds.dataset(tmp_path / "out/src/first/manifest").to_table().to_pylist()
    assert {row["split"] for row in rows} == {"train"}  # every folder merged into one group
    assert {row["group"] for row in rows} == {"cam0"}
