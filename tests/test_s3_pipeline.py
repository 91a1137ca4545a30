"""Jobs whose frames and results live in S3: moto's real server on 127.0.0.1 over HTTP and
HTTPS (with a CA made here), a real local Ray, and SSE-KMS on every object motoray writes."""

from __future__ import annotations

import io
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from botocore.exceptions import SSLError

from motoray.config import Config, OutputConfig, SourceConfig, load_config
from motoray.imageio import encode_jpeg
from tests.conftest import run_job
from tests.s3server import S3Endpoint, s3_endpoint, s3_https_endpoint  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("ray_local")

THREADS = 16  # the server shares our GIL; more threads only queue
FRAMES = 120  # in the listed-whole test


def _run(config: Config, body: dict, job_id: str) -> dict:
    return run_job(body, config, job_id)


def _upload(client: Any, bucket: str, objects: dict[str, bytes]) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects.items()
            )
        )


def _keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", ()))


def _read(client: Any, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _assert_all_encrypted(client: Any, bucket: str, keys: list[str], kms_key: str) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        heads = dict(zip(keys, pool.map(lambda k: client.head_object(Bucket=bucket, Key=k), keys)))
    wrong = {
        key: (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"))
        for key, head in heads.items()
        if (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) != ("aws:kms", kms_key)
    }
    assert not wrong, f"{len(wrong)} of {len(keys)} objects not SSE-KMS with {kms_key}: {wrong}"


def _job_objects(client: Any, bucket: str, job_prefix: str, record: dict) -> list[str]:
    """Every object of a finished job: exactly its manifest's outputs, manifest and job.json."""
    assert json.loads(_read(client, bucket, f"{job_prefix}/job.json")) == record
    manifest = pq.read_table(io.BytesIO(_read(client, bucket, f"{job_prefix}/manifest.parquet")))
    outputs = manifest.column("output_path").to_pylist()
    keys = _keys(client, bucket, f"{job_prefix}/")
    expected = [f"{job_prefix}/{p}" for p in (*outputs, "manifest.parquet", "job.json")]
    assert keys == sorted(expected)
    return keys


@pytest.fixture(scope="module")
def kms_key(s3_endpoint: S3Endpoint) -> str:  # noqa: F811
    return s3_endpoint.client("kms").create_key(Description="motoray outputs")["KeyMetadata"]["Arn"]


def _tiny_frame(i: int) -> bytes:
    """A 48x27 frame (the seed size / 10) that is unlike every other one."""
    rng = np.random.default_rng(i)
    return encode_jpeg(rng.integers(0, 256, (27, 48, 3), dtype=np.uint8), quality=80)


def test_an_s3_source_is_listed_whole_and_every_output_encrypted(
    s3_endpoint: S3Endpoint,  # noqa: F811
    kms_key: str,
) -> None:
    s3 = s3_endpoint.client()
    source, out = s3_endpoint.new_bucket("motoray-src"), s3_endpoint.new_bucket("motoray-out")
    # Listing beyond 1000 keys (two ListObjectsV2 pages) is tests/storage/test_s3.py's.
    frames = {f"raw/MotoGP/cam{i % 4}/frame{i:04d}.jpg": _tiny_frame(i) for i in range(FRAMES)}
    sidecars = {f"raw/MotoGP/cam{i % 4}/frame{i:04d}.json": b"{}" for i in range(0, FRAMES, 10)}
    _upload(s3, source, frames | sidecars | {"raw/MotoGPX/not-this-source.jpg": _tiny_frame(0)})
    config = Config(
        sources={"MotoGP": SourceConfig(uri=f"s3://{source}/raw/MotoGP")},
        output=OutputConfig(uri=f"s3://{out}/datasets"),
        s3=s3_endpoint.settings(kms_key_id=kms_key),
    )
    # The seed request scaled down tenfold, with one output per frame.
    request = {
        "name": "MotoGP",
        "input_image_size": [48, 27],
        "augmentations": [
            {"CROP": {"crop_dimensions": [[27, 27]], "crop_type": "left_down_center"}}
        ],
        "train_test_split": {"train_ratio": 80, "test_ratio": 20},
    }
    record = _run(config, request, "paged")

    assert record["state"] == "SUCCEEDED", record.get("error")
    assert record["output"] == f"s3://{out}/datasets/MotoGP/paged"
    assert record["counts"] == {
        "images_total": FRAMES,  # the .json sidecars filtered out
        "images_done": FRAMES,
        "images_failed": 0,
        "outputs": FRAMES,
        "splits": {
            "test": {"images": FRAMES // 5, "outputs": FRAMES // 5},
            "train": {"images": FRAMES * 4 // 5, "outputs": FRAMES * 4 // 5},
        },
    }
    keys = _job_objects(s3, out, "datasets/MotoGP/paged", record)
    manifest = pq.read_table(io.BytesIO(_read(s3, out, "datasets/MotoGP/paged/manifest.parquet")))
    assert sorted(manifest.column("source_path").to_pylist()) == sorted(
        k.removeprefix("raw/MotoGP/") for k in frames
    )
    assert {
        (r["width"], r["height"]) for r in manifest.select(["width", "height"]).to_pylist()
    } == {(27, 27)}
    assert _keys(s3, out) == keys  # nothing written anywhere else
    _assert_all_encrypted(s3, out, keys, kms_key)


def test_seed_request_on_s3_matches_the_local_run_byte_for_byte(
    s3_endpoint: S3Endpoint,  # noqa: F811
    kms_key: str,
    frames: Path,
    seed_request: dict,
    make_config,
) -> None:
    s3 = s3_endpoint.client()
    source, out = s3_endpoint.new_bucket("motoray-src"), s3_endpoint.new_bucket("motoray-out")
    _upload(s3, source, {f"MotoGP/{p.name}": p.read_bytes() for p in sorted(frames.glob("*.jpg"))})
    on_s3 = Config(
        sources={"MotoGP": SourceConfig(uri=f"s3://{source}/MotoGP")},
        output=OutputConfig(uri=f"s3://{out}"),
        s3=s3_endpoint.settings(kms_key_id=kms_key),
    )
    local = make_config(MotoGP=frames)

    record = _run(on_s3, seed_request, "seed")
    local_record = _run(local, seed_request, "seed")

    assert record["state"] == local_record["state"] == "SUCCEEDED"
    assert record["counts"] == local_record["counts"]
    assert record["counts"]["outputs"] == 200 and record["failures"] == []
    keys = _job_objects(s3, out, "MotoGP/seed", record)
    local_dir = Path(local.output.uri) / "MotoGP" / "seed"
    local_files = sorted(
        p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file()
    )
    assert [k.removeprefix("MotoGP/seed/") for k in keys] == local_files
    with ThreadPoolExecutor(THREADS) as pool:
        remote = dict(zip(keys, pool.map(lambda k: _read(s3, out, k), keys)))
    for name in local_files:
        if name != "job.json":  # timings differ
            assert remote[f"MotoGP/seed/{name}"] == (local_dir / name).read_bytes(), name
    _assert_all_encrypted(s3, out, keys, kms_key)


def _write_config(path: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_https_endpoint_with_the_ca_bundle_and_refused_without(
    s3_https_endpoint: S3Endpoint,  # noqa: F811
    s3_endpoint: S3Endpoint,  # noqa: F811
    kms_key: str,
    frames: Path,
    seed_request: dict,
    tmp_path: Path,
) -> None:
    endpoint, ca = s3_https_endpoint.endpoint_url, s3_https_endpoint.ca_bundle
    assert endpoint.startswith("https://127.0.0.1:") and ca

    # boto3 itself: our CA makes the endpoint trusted; the default trust store refuses it.
    plain = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")
    with pytest.raises(SSLError):
        plain.list_buckets()
    https = s3_https_endpoint.client()
    source, out = s3_https_endpoint.new_bucket("motoray-src"), s3_https_endpoint.new_bucket()
    some = sorted(frames.glob("*.jpg"))[:5]
    _upload(https, source, {f"soccer/frames/{p.name}": p.read_bytes() for p in some})

    # A config a user would write: a local source, an S3 source, outputs in S3 with KMS, and
    # the CA bundle given relative to the config file.
    home = tmp_path / "deploy"
    (home / "tls").mkdir(parents=True)
    shutil.copy(ca, home / "tls" / "private-ca.pem")
    (home / "frames").mkdir()
    for path in some:
        shutil.copy(path, home / "frames" / path.name)
    body = {
        "sources": {
            "MotoGP": {"uri": "./frames"},
            "soccer": {"uri": f"s3://{source}/soccer/frames", "extensions": [".jpg"]},
        },
        "output": {"uri": f"s3://{out}/datasets"},
        "s3": {
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "ca_bundle": "tls/private-ca.pem",
            "kms_key_id": kms_key,
        },
    }
    config = load_config(_write_config(home / "motoray.yaml", body))
    assert config.s3.ca_bundle == str(home / "tls" / "private-ca.pem")

    for name in ("soccer", "MotoGP"):
        record = _run(config, {**seed_request, "name": name}, f"{name}-tls")
        assert record["state"] == "SUCCEEDED", record.get("error")
        assert record["counts"]["images_total"] == len(some) and record["failures"] == []
        keys = _job_objects(https, out, f"datasets/{name}/{name}-tls", record)
        assert len(keys) == 4 * len(some) + 2
        _assert_all_encrypted(https, out, keys, kms_key)

    # The same config without the CA bundle: refused on the first request, nothing written.
    del body["s3"]["ca_bundle"]
    untrusted = load_config(_write_config(home / "no-ca.yaml", body))
    with pytest.raises(SSLError):
        _run(untrusted, {**seed_request, "name": "soccer"}, "no-ca")
    assert _keys(https, out, "datasets/soccer/no-ca") == []

    # Per-source override: the service defaults to the plain-HTTP endpoint, only `soccer`
    # lives behind TLS, and only the output is encrypted.
    body["s3"] = {"endpoint_url": s3_endpoint.endpoint_url, "region": "us-east-1"}
    body["sources"]["soccer"]["s3"] = {"endpoint_url": endpoint, "ca_bundle": "tls/private-ca.pem"}
    body["output"]["s3"] = {"kms_key_id": kms_key}
    mixed = load_config(_write_config(home / "mixed.yaml", body))
    assert mixed.source_s3("soccer").ca_bundle == str(home / "tls" / "private-ca.pem")
    assert mixed.output_s3().endpoint_url == s3_endpoint.endpoint_url
    record = _run(mixed, {**seed_request, "name": "soccer"}, "mixed")
    assert record["state"] == "SUCCEEDED" and record["counts"]["outputs"] == 4 * len(some)
    _assert_all_encrypted(https, out, _keys(https, out, "datasets/soccer/mixed/"), kms_key)


@pytest.mark.parametrize(
    ("s3", "error"),
    [
        ({"kms_key_id": ""}, "kms_key_id"),  # an empty key must not mean "no encryption"
        ({"endpoint_url": "s3.internal.example:9000"}, "endpoint_url"),  # no scheme
        ({"endpoint": "https://s3.internal.example"}, "endpoint"),  # misspelt option
    ],
)
def test_s3_settings_are_checked_when_the_config_loads(
    tmp_path: Path, s3: dict, error: str
) -> None:
    path = _write_config(tmp_path / "motoray.yaml", {"sources": {}, "s3": s3})
    with pytest.raises(ValueError, match=error):
        load_config(path)
