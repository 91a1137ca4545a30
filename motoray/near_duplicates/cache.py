"""The hash sidecar: `<output root>/.motoray/near_duplicates/<source>.v1[.<kind>].parquet`.

One row per image hashed from the source (hashing.SCHEMA), keyed by the item and its
object's identity, shared by every job on the source: a rerun, or another request on the
same source, decodes only what changed. Hashes of another kind (taken from the pixels a
job decodes at its size: as_processed.py) are kept in a sidecar of their own. A sidecar
that cannot be read is ignored (hashed again); two jobs writing at once each leave a whole
file (the later one's).
"""

from __future__ import annotations

import dataclasses
import io
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from motoray.config import Config
from motoray.jobs.folder import STATE
from motoray.near_duplicates.hashing import SCHEMA, identity, item_id
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.source import Item
from motoray.storage import Storage, open_storage
from motoray.storage.keys import safe_name

HASH_VERSION = 1  # in the file's name: a change to the hash makes a new sidecar
IDENTITY_THREADS = 8  # a local file's identity is an lstat, which waits on a network disk
IDENTITY_SLICE = 1000
WANTED = pa.schema([(name, pa.string()) for name in ("item", "version", "group", "split")])


def sidecar(config: Config, source_name: str, kind: str = "") -> tuple[Storage, str]:
    """Where the source's hashes (of `kind`, if not the pre-pass's) are kept: a storage and
    a key in it."""
    root = open_storage(config.output.uri, config.output_s3())
    folder = root.child(f"{STATE}/near_duplicates")
    kind = f".{kind}" if kind else ""
    return folder, f"{safe_name(source_name)}.v{HASH_VERSION}{kind}.parquet"


@dataclasses.dataclass(frozen=True)
class Known:
    """What the sidecar knows of a job's items: every item's identity, group and split
    (`wanted`), the rows cached of items as they are now (`rows`, with their group and
    split, `fresh` false), and the items whose object it does not know as it is now."""

    wanted: pa.Table
    rows: pa.Table
    stale: list[Item]

    @property
    def versions(self) -> dict[str, str | None]:
        """key -> the identity hashed (an image source's items): the version to read."""
        found = zip(self.wanted["item"].to_pylist(), self.wanted["version"].to_pylist())
        return {key: version or None for key, version in found}

    def placed(self, rows: pa.Table) -> pa.Table:
        """Rows hashed now (SCHEMA) with their item's group and split."""
        return _placed(self.wanted, rows, fresh=True)


def known(spec: JobSpec, items: list[Item], cached: pa.Table) -> Known:
    """What `cached` (a loaded sidecar) knows of `items`, each object taken as it is now."""
    # Stat calls wait on I/O, not the GIL. In slices: a future per item was 1 KB each.
    slices = [items[i : i + IDENTITY_SLICE] for i in range(0, len(items), IDENTITY_SLICE)]
    with ThreadPoolExecutor(IDENTITY_THREADS) as pool:
        found = pool.map(lambda part: [identity(spec, item) for item in part], slices)
        versions = [version for part in found for version in part]
    wanted = pa.table(
        {
            "item": [item_id(spec, item) for item in items],
            "version": versions,
            "group": [item.group or item.key for item in items],
            "split": [item.split for item in items],
        },
        schema=WANTED,  # typed, even when no item is
    )
    # Matched on "item\0version" with hash sets (is_in, index_in): an Arrow join of 10^5
    # rows held ~50 MB more on the driver than the result.
    want, have = _identity_of(wanted), _identity_of(cached)
    hits = cached.filter(pc.is_in(have, want))
    stale = pc.indices_nonzero(pc.invert(pc.is_in(want, have))).to_pylist()
    return Known(wanted, _placed(wanted, hits, fresh=False), [items[i] for i in stale])


def _placed(wanted: pa.Table, rows: pa.Table, fresh: bool) -> pa.Table:
    placed = wanted.select(["group", "split"]).take(pc.index_in(rows["item"], wanted["item"]))
    columns = [*rows.select(SCHEMA.names).columns, *placed.columns, pa.repeat(fresh, rows.num_rows)]
    return pa.Table.from_arrays(columns, [*SCHEMA.names, "group", "split", "fresh"])


def _identity_of(table: pa.Table) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(table["item"], table["version"], "\0")


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
