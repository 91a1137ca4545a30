"""A `kind: manifest` source in a real job: its keys come from a file, not a listing, and
stay in Ray's blocks (pipeline/spread.py); the job makes what a folder source of the same
images makes, its manifest a `manifest/` folder of Parquet parts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import ray

from motoray.config import Config, OutputConfig, SourceConfig
from tests.conftest import copy_frames, manifest_rows, run_job

pytestmark = pytest.mark.usefixtures("ray_local")


def _digests(job_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(job_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(job_dir.rglob("*"))
        if p.is_file()
        and p.name != "job.json"
        and "manifest" not in p.name
        and p.parent.name != "manifest"
    }


def test_a_job_on_the_keys_a_parquet_file_lists(frames, tmp_path, seed_request):
    folder = tmp_path / "MotoGP"
    copied = copy_frames(frames, folder, 12)
    (folder / "empty.jpg").write_bytes(b"")  # damaged: recorded by both sources
    listed = [path.name for path in copied[:10]] + ["empty.jpg", "gone.jpg"]  # gone: no file
    pq.write_table(pa.table({"key": listed}), tmp_path / "keys.parquet")
    for path in copied[10:]:  # files the key file does not list are not read
        path.rename(tmp_path / path.name)
    output = OutputConfig(uri=str(tmp_path / "out"))
    keys = str(tmp_path / "keys.parquet")
    by_file = SourceConfig(uri=str(folder), kind="manifest", manifest=keys)
    record = run_job(seed_request, Config(sources={"MotoGP": by_file}, output=output), "by-file")
    assert record["state"] == "SUCCEEDED"
    assert record["counts"]["images_total"] == 12
    # An inventory is hours old: a key whose object has gone is one failure, not the job's.
    assert [f["source_path"] for f in record["failures"]] == ["empty.jpg", "gone.jpg"]

    by_listing = Config(sources={"MotoGP": SourceConfig(uri=str(folder))}, output=output)
    listed_record = run_job(seed_request, by_listing, "listed")
    assert listed_record["counts"]["splits"] == record["counts"]["splits"]
    assert listed_record["counts"]["images_failed"] == 1
    root = Path(output.uri) / "MotoGP"
    assert _digests(root / "by-file") == _digests(root / "listed")
    assert not (root / "by-file" / "manifest.parquet").exists()
    expected = pq.read_table(root / "listed" / "manifest.parquet")
    parts = ds.dataset(root / "by-file" / "manifest").to_table()
    assert manifest_rows(parts) == manifest_rows(expected)
    read = ray.data.read_parquet(str(root / "by-file" / "manifest")).take_all()
    assert sorted(row["output_path"] for row in read) == sorted(expected["output_path"].to_pylist())


def test_a_split_by_folder_with_labels_over_many_blocks(frames, tmp_path):
    """Blocks of 100 keys, groups across them: the split and counts a listed job gives."""
    folder = tmp_path / "src"
    names = []
    for n, path in enumerate(sorted(frames.glob("*.jpg"))[:6]):
        for copy in range(40):  # 240 images as hard links: 3 blocks
            key = f"class{n % 2}/video{copy % 7}/{copy:03d}-{path.name}"
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            (folder / key).hardlink_to(path)
            names.append(key)
    pq.write_table(pa.table({"key": names}), tmp_path / "keys.parquet")
    body = {"name": "src", "input_image_size": [64, 36], "train_test_split": {
        "train_ratio": 70, "validation_ratio": 10, "test_ratio": 20,
        "group_by": r"regex:^(class\d/video\d)", "stratify": True}}  # fmt: skip
    output = OutputConfig(uri=str(tmp_path / "out"))
    keys = str(tmp_path / "keys.parquet")
    spread = SourceConfig(uri=str(folder), kind="manifest", manifest=keys, labels="folder")
    listed = SourceConfig(uri=str(folder), labels="folder")
    a = run_job(body, Config(sources={"src": spread}, output=output), "spread")
    b = run_job(body, Config(sources={"src": listed}, output=output), "listed")
    assert a["state"] == b["state"] == "SUCCEEDED"
    assert a["split"] == b["split"] and a["counts"] == b["counts"]
    root = Path(output.uri) / "src"
    assert _digests(root / "spread") == _digests(root / "listed")
    assert len(list((root / "spread" / "manifest").glob("part-*.parquet"))) == 3


@pytest.mark.parametrize("near_duplicates", [False, True])
def test_a_key_file_listing_no_image_fails_the_job_saying_so(
    tmp_path, seed_request, near_duplicates
):
    if near_duplicates:  # its hash pass has no block to hash
        seed_request["train_test_split"]["near_duplicates"] = {}
    (tmp_path / "src").mkdir()
    (tmp_path / "keys.csv").write_text("key\nnotes.txt\n.hidden.jpg\n")
    source = SourceConfig(
        uri=str(tmp_path / "src"), kind="manifest", manifest=str(tmp_path / "keys.csv")
    )
    config = Config(sources={"MotoGP": source}, output=OutputConfig(uri=str(tmp_path / "out")))
    with pytest.raises(Exception, match="lists no images"):
        run_job(seed_request, config, "empty")
    record = json.loads((tmp_path / "out" / "MotoGP" / "empty" / "job.json").read_text())
    assert record["state"] == "FAILED" and "lists no images" in record["error"]
