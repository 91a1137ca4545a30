"""output.format "webdataset": tar shards per split, on a real local Ray, local and on S3.

The shards must read back with the `webdataset` package and `ray.data.read_webdataset`,
match the manifest member for member, be byte-identical run after run and whichever
worker writes them, and cut the number of objects a job writes by 100x or more.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.dry_run import dry_run
from motoray.imageio import load_image
from motoray.ops import operators_for
from motoray.pipeline import ray_data, source, worker
from motoray.pipeline.jobspec import job_spec
from motoray.sample_data import write_sample_frames
from motoray.spec import RequestError, parse_requests
from motoray.storage import LocalStorage
from tests.conftest import parse_one, run_job
from tests.s3server import S3Endpoint, s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("ray_local")

FRAMES = 120  # the seed request: 4 outputs each -> 480 files, or 2 shards


@pytest.fixture(scope="module")
def many_frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("MotoGP-120")
    write_sample_frames(folder, FRAMES, (480, 270))  # the seed request's size: no resize cost
    return folder


def _request(config: Config, body: dict):
    return parse_one(body, config)


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_object_count_falls_over_100x_on_s3(
    s3_endpoint: S3Endpoint,  # noqa: F811
    many_frames: Path,
    seed_request: dict,
):
    s3 = s3_endpoint.client()
    bucket = s3_endpoint.new_bucket("motoray-shards")
    config = Config(
        sources={"MotoGP": SourceConfig(uri=str(many_frames))},
        output=OutputConfig(uri=f"s3://{bucket}"),
        s3=s3_endpoint.settings(),
    )
    webdataset_request = {**seed_request, "output": {"format": "webdataset"}}
    files = run_job(_request(config, seed_request), config, "files")
    shards = run_job(_request(config, webdataset_request), config, "shards")

    def objects(job_id: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"MotoGP/{job_id}/"
        )
        return sorted(o["Key"].split("/", 2)[2] for page in pages for o in page.get("Contents", ()))

    per_file, sharded = objects("files"), objects("shards")
    assert files["counts"]["outputs"] == shards["counts"]["outputs"] == FRAMES * 4
    assert len(per_file) == FRAMES * 4 + 2
    assert sharded == [
        "job.json",
        "manifest.parquet",
        "test/shard-000000.tar",
        "train/shard-000000.tar",
    ]
    assert len(per_file) / len(sharded) >= 100  # 482 / 4

    # The manifest maps every output to its shard and member name, in member order.
    body = s3.get_object(Bucket=bucket, Key="MotoGP/shards/manifest.parquet")["Body"].read()
    manifest = pq.read_table(io.BytesIO(body)).to_pylist()
    assert len(manifest) == FRAMES * 4
    for shard in ("train/shard-000000.tar", "test/shard-000000.tar"):
        tar = s3.get_object(Bucket=bucket, Key=f"MotoGP/shards/{shard}")["Body"].read()
        rows = [row for row in manifest if row["shard"] == shard]
        assert {row["split"] for row in rows} == {shard.split("/")[0]}
        names = [m.name for m in _members(tar)]
        assert names[::2] == [row["output_path"] for row in rows]
        assert names[1::2] == [row["output_path"].replace(".jpg", ".json") for row in rows]


@pytest.fixture(scope="module")
def sharded_job(many_frames: Path, tmp_path_factory) -> tuple[Config, dict, dict]:
    """The seed request as ~1 MiB shards: several per split."""
    config = Config(
        sources={"MotoGP": SourceConfig(uri=str(many_frames))},
        output=OutputConfig(uri=str(tmp_path_factory.mktemp("outputs"))),
    )
    body = json.loads(
        (Path(__file__).parent.parent / "examples/requests/seed_sample.json").read_text()
    )[0]
    body["output"] = {"format": "webdataset", "shard_size_mb": 1, "quality": 85}
    return config, body, run_job(_request(config, body), config, "small-shards")


def test_shards_are_fixed_runs_of_images_in_key_order(sharded_job):
    config, body, record = sharded_job
    job_dir = Path(record["output"])
    assert record["counts"]["shards"] == {"test": 1, "train": 3}
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    order = [(row["shard"], row["source_path"]) for row in manifest]
    assert order == sorted(order)  # shard by shard, each in key order

    train = [row for row in manifest if row["split"] == "train"]
    sources = {}
    for row in train:
        sources.setdefault(row["shard"], []).append(row["source_path"])
    runs = [sorted(set(keys)) for _, keys in sorted(sources.items())]
    assert [len(run) for run in runs[:-1]] == [len(runs[0])] * (len(runs) - 1)
    assert all(a[-1] < b[0] for a, b in pairwise(runs))  # contiguous runs of keys

    # About the requested size: the images per shard were measured on a sample.
    sizes = [(job_dir / shard).stat().st_size for shard in sorted(sources)[:-1]]
    assert all(0.7 * 2**20 < size < 1.3 * 2**20 for size in sizes), sizes

    request = _request(config, body)
    planned = dry_run(request, config)
    assert planned["counts"]["shards"] == record["counts"]["shards"]
    assert planned["estimate"]["cost_usd"]["output_objects"]["sharded"] == 4 + 2


def test_shards_read_back_with_webdataset_and_ray_data(sharded_job, many_frames):
    _, _, record = sharded_job
    job_dir = Path(record["output"])
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    train = {
        row["output_path"].removesuffix(".jpg"): row for row in manifest if row["split"] == "train"
    }

    urls = str(job_dir / "train" / "shard-{000000..000002}.tar")
    samples = list(webdataset.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in samples] == list(train)
    for sample in samples[:: len(samples) // 8]:
        row = train[sample["__key__"]]
        assert sample["jpg"].shape == (row["height"], row["width"], 3)
        assert sample["json"]["params"] == json.loads(row["params"])
        assert sample["json"]["source_path"] == row["source_path"]
        if row["operator"] == "CROP":  # the seed request's fixed crop: top-left 270 x 270
            frame = load_image((many_frames / row["source_path"]).read_bytes(), (480, 270))
            assert np.abs(sample["jpg"] - frame[:270, :270].astype(float)).mean() < 5

    import ray

    ds = ray.data.read_webdataset(str(job_dir / "train"))
    assert ds.count() == len(train)


def test_same_request_same_shard_bytes_whoever_writes_them(sharded_job, tmp_path):
    config, body, record = sharded_job
    job_dir = Path(record["output"])
    again = run_job(_request(config, body), config, "small-shards-again")
    again_dir = Path(again["output"])
    files = sorted(p.relative_to(job_dir) for p in job_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again_dir) for p in again_dir.rglob("*") if p.is_file())
    for name in files:
        if name.name != "job.json":
            assert (job_dir / name).read_bytes() == (again_dir / name).read_bytes(), name

    # One shard's task run here, in this process and outside Ray: the same bytes.
    request = _request(config, body)
    storage, keys = source.list_source(request, config)
    items = source.items(keys, source.place(request, config, keys))
    spec = job_spec(request, config, storage, LocalStorage(tmp_path))
    task = next(t for t in ray_data.shards(spec, items) if t["shard"] == "train/shard-000001.tar")
    shard_items = pickle.loads(task["items"])  # as the task gets them: the Items themselves
    assert all(isinstance(item, source.Item) for item in shard_items)
    worker.write_shard(spec, task["shard"], shard_items)
    written = (tmp_path / task["shard"]).read_bytes()
    assert written == (job_dir / task["shard"]).read_bytes()
    members = _members(written)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "", "", 0o644)
    }


def test_output_options_are_checked():
    with pytest.raises(RequestError) as info:
        parse_requests({"name": "MotoGP", "output": {"shard_size_mb": 64}}, operators_for())
    assert info.value.errors == [
        {"loc": ["output"], "msg": 'Value error, shard_size_mb applies to format "webdataset" only'}
    ]
    with pytest.raises(RequestError) as info:
        parse_requests({"name": "MotoGP", "output": {"format": "tfrecord"}}, operators_for())
    assert info.value.errors[0]["loc"] == ["output", "format"]
    [request] = parse_requests({"name": "MotoGP"}, operators_for())
    assert request.output.model_dump() == {"format": "files", "shard_size_mb": 256, "quality": 90}
