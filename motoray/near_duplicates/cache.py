"""The hash sidecar: `<output root>/.motoray/near_duplicates/<source>.parquet`.

One row per image hashed from the source (hashing.SCHEMA), keyed by the item and its
object's identity, shared by every job on the source: a rerun, or another request on the
same source, decodes only what changed. A sidecar that cannot be read is ignored (hashed
again); two jobs writing at once each leave a whole file (the later one's).
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from motoray.config import Config
from motoray.jobs.folder import STATE
from motoray.near_duplicates.hashing import SCHEMA
from motoray.storage import Storage, open_storage
from motoray.storage.keys import safe_name

HASH_VERSION = 1  # in the file's name: a change to the hash makes a new sidecar


def sidecar(config: Config, source_name: str) -> tuple[Storage, str]:
    """Where the source's hashes are kept: a storage and a key in it."""
    root = open_storage(config.output.uri, config.output_s3())
    folder = root.child(f"{STATE}/near_duplicates")
    return folder, f"{safe_name(source_name)}.v{HASH_VERSION}.parquet"


def load(storage: Storage, key: str) -> pa.Table:
    """The cached rows, or none (no sidecar yet, or one that cannot be read)."""
    try:
        table = pq.ParquetFile(io.BytesIO(storage.read(key))).read(
            use_threads=False
        )  # no pyarrow.dataset import
        return table.select(SCHEMA.names).cast(SCHEMA)
    except Exception:  # missing, damaged or of another layout: hash again
        return SCHEMA.empty_table()


def save(storage: Storage, key: str, old: pa.Table, fresh: pa.Table) -> None:
    """The rows of this job's items, and the old rows of items this job did not list."""
    others = old.filter(pc.invert(pc.is_in(old["item"], fresh["item"].unique())))
    table = pa.concat_tables([others, fresh]).sort_by([("item", "ascending"), ("key", "ascending")])
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    storage.write(key, buffer.getvalue())
