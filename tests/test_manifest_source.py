"""A `kind: manifest` source in a real job: its keys come from a file, not a listing, and the
job makes what a folder source of the same images makes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from motoray.config import Config, OutputConfig, SourceConfig
from tests.conftest import copy_frames, run_job

pytestmark = pytest.mark.usefixtures("ray_local")


def _digests(job_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(job_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(job_dir.rglob("*"))
        if p.is_file() and p.name != "job.json"
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
