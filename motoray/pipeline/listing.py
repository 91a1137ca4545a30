"""A source's keys as a Ray dataset (one `key` column), read by tasks: the driver never holds
them in one list. A `kind: manifest` source reads its key file (or every data file of an S3
Inventory report) in tasks, one file per task."""

from __future__ import annotations

import pickle

import pyarrow as pa
import ray

from motoray.config import Config
from motoray.storage import open_storage
from motoray.storage.keyfile import KEY, KeyFile, key_files, read_keys


def manifest_files(config: Config, name: str) -> list[KeyFile]:
    """The files that hold a `kind: manifest` source's keys (an inventory's manifest.json
    is read here: it is small)."""
    source = config.sources[name]
    folder, _, file = source.manifest.rpartition("/")
    storage = open_storage(folder or "/", config.source_s3(name))
    return key_files(storage, file, source.uri)


def manifest_keys(config: Config, name: str) -> ray.data.Dataset:
    """A `kind: manifest` source's keys, one block per key file, each sorted and once."""
    extensions = tuple(config.sources[name].extensions)
    rows = [{"file": pickle.dumps(file)} for file in manifest_files(config, name)]
    if not rows:
        return ray.data.from_arrow(pa.table({KEY: pa.array([], pa.string())}))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
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
