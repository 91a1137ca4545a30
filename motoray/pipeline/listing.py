"""A source's keys as a Ray dataset (a `key` column), read by tasks: the driver never holds
them in one list. A `kind: manifest` source reads its key file (or every data file of an S3
Inventory report) in tasks, one file per task. An S3 prefix is listed in key ranges
(storage/s3_ranges.py), a few ranges per CPU, each range's requests in flight at once.
A job's listing stays in the blocks (a `Listed`) when it holds enough keys to run spread
(pipeline/spread.py); a smaller one comes back to the driver as a dict."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pyarrow as pa
import ray

from motoray.config import Config
from motoray.storage import open_storage
from motoray.storage.keyfile import KEY, KeyFile, key_files, read_keys
from motoray.storage.s3 import LIST_PAGE_KEYS, S3Storage, list_errors
from motoray.storage.s3_ranges import TOP, ahead, folder_bounds, list_range

VERSION = "version"
RANGES_PER_CPU = 2  # first ranges per CPU: cut where the prefix's folders start
FOLDER_PAGES = 4  # ranges per CPU past a first page of folders (more: the last range)
LIST_THREADS = 32  # requests in flight per range task (at ~30 ms each, I/O-bound)


@dataclass(frozen=True)
class Listed:
    """A listing held by Ray: materialized blocks of a `key` column (and `version`, an S3
    key's ETag), and how many keys."""

    keys: ray.data.Dataset
    count: int


def held(keys: ray.data.Dataset) -> Listed:
    keys = keys.materialize()
    return Listed(keys, keys.count())


def manifest_files(config: Config, name: str) -> list[KeyFile]:
    """The files that hold a `kind: manifest` source's keys (an inventory's manifest.json
    is read here: it is small)."""
    source = config.sources[name]
    folder, _, file = source.manifest.rpartition("/")
    storage = open_storage(folder or "/", config.source_s3(name))
    return key_files(storage, file, source.uri)


def manifest_keys(config: Config, name: str) -> ray.data.Dataset:
    """A `kind: manifest` source's keys, one block per key file, each sorted and once."""
    return keys_of_files(manifest_files(config, name), tuple(config.sources[name].extensions))


def keys_of_files(files: list[KeyFile], extensions: tuple[str, ...]) -> ray.data.Dataset:
    """The keys the files hold, one task and one block per file."""
    rows = [{"file": pickle.dumps(file)} for file in files]
    if not rows:
        return ray.data.from_arrow(pa.table({KEY: pa.array([], pa.string())}))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    # Blocks in file order, whatever order tasks end in: a job's blocks (and manifest parts)
    # are cut from these, and must be the same on every run.
    dataset.context.execution_options.preserve_order = True
    return dataset.map_batches(
        _read_file, fn_kwargs={"extensions": extensions}, batch_size=1, batch_format="pyarrow"
    )


def _read_file(batch: pa.Table, extensions: tuple[str, ...]) -> pa.Table:
    [packed] = batch["file"].to_pylist()
    return read_keys(pickle.loads(packed), extensions)


def manifest_key_list(config: Config, name: str) -> list[str]:
    """Every key of a `kind: manifest` source, sorted, once: for the steps that take a list
    (read by Ray tasks where Ray runs; in this process otherwise, e.g. a dry run's CLI)."""
    if ray.is_initialized():
        tables = manifest_keys(config, name).iter_batches(batch_size=None, batch_format="pyarrow")
    else:
        extensions = tuple(config.sources[name].extensions)
        tables = (read_keys(file, extensions) for file in manifest_files(config, name))
    found: set[str] = set()
    for table in tables:
        found.update(table[KEY].to_pylist())
    return sorted(found)


def s3_keys(storage: S3Storage, extensions: tuple[str, ...]) -> ray.data.Dataset:
    """An S3 prefix's keys (and ETags, `version`), listed by tasks, one block per range, the
    blocks in key order, each key once."""
    root = f"{storage.prefix}/" if storage.prefix else ""
    folders, more = folder_bounds(storage)
    ranges = max(1, int(ray.cluster_resources().get("CPU", 1)) * RANGES_PER_CPU)
    step = max(1, -(-len(folders) // ranges))
    ends = [*folders[step::step], root + TOP]
    if more:  # folders past the first page: ranges as wide as it, as far as it says
        ends[-1:] = [*ahead(folders[0], folders[-1], root + TOP, ranges * FOLDER_PAGES), root + TOP]
    starts = [None, *ends[:-1]]
    refs = [
        _listed.remote(storage, start, end, extensions, LIST_THREADS)
        for start, end in zip(starts, ends)
    ]
    return ray.data.from_arrow_refs(refs)


# Waiting on the network most of the time: a quarter CPU, so ranges run four to a CPU.
@ray.remote(num_cpus=0.25)
def _listed(
    storage: S3Storage, start: str | None, end: str, extensions: tuple[str, ...], threads: int
) -> pa.Table:
    found = list_range(storage, start, end, extensions, threads)
    keys = sorted(found)
    return pa.table({KEY: pa.array(keys, pa.string()),
                     VERSION: pa.array([found[k] for k in keys], pa.string())})  # fmt: skip


def s3_versions(
    storage: S3Storage, extensions: tuple[str, ...], spread_from: int | None = None
) -> dict[str, str | None] | Listed:
    """An S3 prefix's keys and ETags, sorted: listed by tasks where there is more than one
    page of keys (and Ray), else as one stream. At `spread_from` keys or more (None: never)
    they stay in Ray's blocks, a `Listed`; else they come back as a dict."""
    root = f"{storage.prefix}/" if storage.prefix else ""
    with list_errors(storage):
        first = storage._client.list_objects_v2(
            Bucket=storage.bucket, Prefix=root, MaxKeys=LIST_PAGE_KEYS
        )
    spreads = spread_from is not None and ray.is_initialized()
    if not first.get("IsTruncated") or not ray.is_initialized():
        found = storage.list_versions(extensions)
        if spreads and len(found) >= spread_from:
            table = pa.table({KEY: pa.array(list(found), pa.string()),
                              VERSION: pa.array(list(found.values()), pa.string())})  # fmt: skip
            return held(ray.data.from_arrow(table))
        return found
    listed = held(s3_keys(storage, extensions))
    if spreads and listed.count >= spread_from:
        return listed
    found = {}
    for table in listed.keys.iter_batches(batch_size=None, batch_format="pyarrow"):
        found.update(zip(table[KEY].to_pylist(), table[VERSION].to_pylist()))
    return found
