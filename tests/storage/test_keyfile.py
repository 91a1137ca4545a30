"""`kind: manifest` sources: keys read from a Parquet or CSV file, or from an S3 Inventory
report (manifest.json + its gzipped CSV or Parquet data files) on a real S3-protocol server."""

from __future__ import annotations

import gzip
import io
import json
import urllib.parse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from motoray.config import Config, SourceConfig
from motoray.pipeline.listing import manifest_key_list
from motoray.storage import LocalStorage, keyfile
from motoray.storage.keyfile import KeyFileError, key_files, read_keys

KEYS = ["a/1.jpg", "a/2.JPG", "b/3.png", "b/.hidden.jpg", ".cache/4.jpg", "c/notes.txt",
        "d/with, comma.jpg", "a/1.jpg"]  # fmt: skip
WANTED = ["a/1.jpg", "a/2.JPG", "b/3.png", "d/with, comma.jpg"]


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def keys_of(storage, key: str, source_uri: str) -> list[str]:
    found = [read_keys(file)["key"].to_pylist() for file in key_files(storage, key, source_uri)]
    return sorted(k for keys in found for k in keys)


def test_a_parquet_file_key_column_filtered_and_once(tmp_path):
    table = pa.table({"size": list(range(len(KEYS))), "key": KEYS})
    (tmp_path / "keys.parquet").write_bytes(parquet_bytes(table))
    assert keys_of(LocalStorage(tmp_path), "keys.parquet", "/src") == WANTED


def test_a_csv_with_a_header_or_one_key_a_line(tmp_path):
    quoted = "".join(f'"{k}",1\n' for k in KEYS)
    (tmp_path / "header.csv").write_text("key,size\n" + quoted)
    (tmp_path / "bare.csv").write_text("".join(f"{k}\n" for k in KEYS))
    storage = LocalStorage(tmp_path)
    assert keys_of(storage, "header.csv", "/src") == WANTED
    assert keys_of(storage, "bare.csv", "/src") == WANTED  # a comma in a key is no field break


def test_a_file_without_a_key_column_or_of_another_format_is_refused(tmp_path):
    (tmp_path / "k.parquet").write_bytes(parquet_bytes(pa.table({"a": ["x"], "b": ["y"]})))
    (tmp_path / "k.txt").write_text("a.jpg\n")
    storage = LocalStorage(tmp_path)
    with pytest.raises(KeyFileError, match="no `key` column"):
        keys_of(storage, "k.parquet", "/src")
    with pytest.raises(KeyFileError, match=r"\.parquet, \.csv"):
        key_files(storage, "k.txt", "/src")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(KeyFileError, match=r"bad\.parquet"):
        keys_of(storage, "bad.parquet", "/src")


def inventory(s3_endpoint, source_bucket: str, file_format: str, rows: list[dict]) -> str:
    """An S3 Inventory report of `rows` in a bucket of its own: its manifest.json URI."""
    destination = s3_endpoint.storage()
    base = f"inventory/{source_bucket}/daily/2026-12-07T01-00Z"
    if file_format == "CSV":
        schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size"
        lines = "".join(
            ",".join(f'"{v}"' for v in (r["bucket"], urllib.parse.quote_plus(r["key"], "/"),
                                        "v1", r["latest"], r["deleted"], "10"))
            + "\n"
            for r in rows
        )  # fmt: skip
        half = len(lines.splitlines(True)) // 2
        parts = [lines.splitlines(True)[:half], lines.splitlines(True)[half:]]
        files = []
        for n, part in enumerate(parts):
            key = f"{base}/data/part{n}.csv.gz"
            destination.write(key, gzip.compress("".join(part).encode()))
            files.append({"key": key, "size": 1, "MD5checksum": "x"})
    else:
        schema = "message s3.inventory { required binary bucket (STRING); ... }"
        table = pa.table({
            "bucket": [r["bucket"] for r in rows],
            "key": [r["key"] for r in rows],
            "is_latest": [r["latest"] == "true" for r in rows],
            "is_delete_marker": [r["deleted"] == "true" for r in rows],
        })  # fmt: skip
        key = f"{base}/data/part0.parquet"
        destination.write(key, parquet_bytes(table))
        files = [{"key": key, "size": 1, "MD5checksum": "x"}]
    report = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{destination.bucket}",
        "version": "2016-11-30",
        "fileFormat": file_format,
        "fileSchema": schema,
        "files": files,
    }
    destination.write(f"{base}/manifest.json", json.dumps(report).encode())
    return f"s3://{destination.bucket}/{base}/manifest.json"


def inventory_rows(bucket: str) -> list[dict]:
    def row(key, latest="true", deleted="false"):
        return {"bucket": bucket, "key": key, "latest": latest, "deleted": deleted}

    return [
        row("frames/race 1/0001.jpg"),  # a space: "+" in the CSV
        row("frames/race+1/0002.jpg"),  # a plus: "%2B" in the CSV
        row("frames/old.jpg", latest="false"),  # an older version
        row("frames/gone.jpg", deleted="true"),  # a delete marker
        row("frames/.thumbs/x.jpg"),
        row("other/0003.jpg"),  # outside the source's prefix
        row("frames/ü/0004.png"),
    ]


@pytest.mark.parametrize("file_format", ["CSV", "Parquet"])
def test_an_s3_inventory_report_lists_the_current_keys_below_the_prefix(s3_endpoint, file_format):
    bucket = s3_endpoint.new_bucket()
    uri = inventory(s3_endpoint, bucket, file_format, inventory_rows(bucket))
    config = Config(
        s3=s3_endpoint.settings(),
        sources={"big": SourceConfig(uri=f"s3://{bucket}/frames", kind="manifest", manifest=uri)},
    )
    assert manifest_key_list(config, "big") == ["race 1/0001.jpg", "race+1/0002.jpg", "ü/0004.png"]


def test_an_inventory_of_another_bucket_is_refused(s3_endpoint):
    uri = inventory(s3_endpoint, "someone-elses", "CSV", inventory_rows("someone-elses"))
    source = SourceConfig(uri="s3://mine/frames", kind="manifest", manifest=uri)
    config = Config(s3=s3_endpoint.settings(), sources={"big": source})
    with pytest.raises(KeyFileError, match="inventory of bucket 'someone-elses'"):
        manifest_key_list(config, "big")


def test_a_manifest_source_needs_its_file_and_only_it_has_one():
    with pytest.raises(ValueError, match="names its key file"):
        SourceConfig(uri="/x", kind="manifest")
    with pytest.raises(ValueError, match="names its key file"):
        SourceConfig(uri="/x", manifest="/keys.parquet")


def test_a_key_file_that_expands_past_the_limit_is_refused(tmp_path, monkeypatch):
    """A gzip bomb or a Parquet file of more data than a task holds fails with the limit,
    not with a task out of memory; damaged gzip is the key file's error."""
    monkeypatch.setattr(keyfile, "MAX_KEY_FILE_BYTES", 10_000)
    lines = "".join(f"folder/frame_{n:06d}.jpg\n" for n in range(2000)).encode()
    (tmp_path / "keys.csv.gz").write_bytes(gzip.compress(lines))
    assert len((tmp_path / "keys.csv.gz").read_bytes()) < 10_000  # small as stored
    with pytest.raises(KeyFileError, match="over 10000 bytes decompressed"):
        keys_of(LocalStorage(tmp_path), "keys.csv.gz", "/src")
    table = pa.table({"key": ["f" * 300 + f"/{n:06d}.jpg" for n in range(2000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False)  # 5 KB for 630 KB
    (tmp_path / "keys.parquet").write_bytes(sink.getvalue())
    with pytest.raises(KeyFileError, match="over 10000 bytes of data"):
        keys_of(LocalStorage(tmp_path), "keys.parquet", "/src")
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(lines)[:-20])
    with pytest.raises(KeyFileError, match=r"cut\.csv\.gz"):
        keys_of(LocalStorage(tmp_path), "cut.csv.gz", "/src")
