"""manifest.parquet: one row per output image, in a fixed order with fixed row groups, so
its bytes depend on the request and the input alone, never on how the work was cut."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 65_536  # fixed, so the manifest's bytes do not depend on block sizes

# Every column a row may carry, with what it holds (the docs' manifest reference).
COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("output_path", pa.string(), "the output, relative to the job folder"),
    ("source_path", pa.string(), "the source image's key (a frame's: `<video>#t=<ms>`)"),
    ("split", pa.string(), "train, validation, test, or all"),
    ("label", pa.string(), "the image's class; null: the source is not labelled"),
    ("group", pa.string(), "the image's split group; null: a group of its own"),
    ("operator", pa.string(), "what made it: CROP, RANDOM_CROP+FLIP (a CHAIN), ORIGINAL"),
    ("params", pa.string(), "JSON: the concrete parameters (crop box, factors, seed)"),
    ("width", pa.int32(), "output width, pixels"),
    ("height", pa.int32(), "output height, pixels"),
    ("bytes", pa.int64(), "size of the encoded output"),
    ("boxes", pa.string(), 'JSON [{"bbox": [x, y, w, h], "category": name}], output pixels'),
    ("boxes_dropped", pa.int32(), "the image's boxes this output dropped (min_visibility...)"),
    ("shard", pa.string(), "the tar that holds output_path (a member name)"),
    ("video", pa.string(), "the frame's video"),
    ("time_ms", pa.int64(), "the frame's presentation time, ms from the video's start"),
    (
        "display",
        pa.string(),
        "JSON: what was done to show the frame as a player does (deinterlace, orientation,"
        " sar, square_pixels)",
    ),
    ("notes", pa.string(), "what was odd in a source file kept whole (its JPEG header)"),
    (
        "duplicate_of",
        pa.string(),
        "set on the row of an image dropped as a near-duplicate (dedupe): the key of the image"
        " kept in its stead; the row has no output",
    ),
    ("error", pa.string(), "set on the one row of an image that failed (not in the manifest)"),
    ("skipped", pa.string(), "an output not made, and why (not in the manifest)"),
    (
        "phash",
        pa.uint64(),
        "the image's near-duplicate hash, taken as it was processed (not in the manifest)",
    ),
]
ROWS_SCHEMA = pa.schema([(name, kind) for name, kind, _ in COLUMNS])
BOX_COLUMNS = ["boxes", "boxes_dropped"]
VIDEO_COLUMNS = ["video", "time_ms", "display"]
# Present once a row has a value, last: a manifest without notes is byte for byte as before.
OPTIONAL_COLUMNS = ["notes", "duplicate_of"]
MANIFEST_COLUMNS = [
    f.name
    for f in ROWS_SCHEMA
    if f.name
    not in ("shard", "error", "skipped", "phash", *BOX_COLUMNS, *VIDEO_COLUMNS, *OPTIONAL_COLUMNS)
]


def manifest_columns(sharded: bool, boxed: bool = False, video: bool = False) -> list[str]:
    """The manifest's columns: box columns only for a source with annotations, the frame's
    video and time only for a video source, so that every other manifest stays as it was."""
    return [
        *MANIFEST_COLUMNS,
        *(BOX_COLUMNS if boxed else ()),
        *(["shard"] if sharded else ()),
        *(VIDEO_COLUMNS if video else ()),
    ]


def listed(rows: pa.Table) -> pa.Array:
    """Which result rows the manifest lists: outputs made, and images dropped as
    near-duplicates (not failures, not outputs skipped)."""
    kept = pc.or_(rows["skipped"].is_null(), rows["duplicate_of"].is_valid())
    return pc.and_(rows["error"].is_null(), kept)


def rows_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROWS_SCHEMA)


def sample_record(row: dict) -> bytes:
    """A shard sample's .json: its manifest row, with params as an object."""
    fields = ("source_path", "split", "label", "group", "operator", "width", "height")
    record = {field: row[field] for field in fields} | {"params": json.loads(row["params"])}
    if "boxes" in row:
        record |= {"boxes": json.loads(row["boxes"]), "boxes_dropped": row["boxes_dropped"]}
    record |= {field: row[field] for field in ("video", "time_ms") if row.get(field) is not None}
    if row.get("display"):
        record["display"] = json.loads(row["display"])
    record |= {field: row[field] for field in OPTIONAL_COLUMNS if row.get(field) is not None}
    return json.dumps(record, sort_keys=True).encode()


class ManifestWriter:
    """Parquet with fixed-size row groups, whatever sizes the blocks come in. An optional
    column joins once a row has a value; row groups written before are written again with
    it (nulls), so the bytes are those of a manifest that had it from the start."""

    def __init__(self, columns: list[str]) -> None:
        self._columns = list(columns)
        self._open()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def _open(self) -> None:
        self._buffer = io.BytesIO()
        self._writer = pq.ParquetWriter(
            self._buffer, pa.schema([ROWS_SCHEMA.field(c) for c in self._columns])
        )

    def add(self, table: pa.Table) -> None:
        for name in OPTIONAL_COLUMNS:
            if name not in self._columns and table[name].null_count < table.num_rows:
                self._join(name)
        self._pending.append(table.select(self._columns))
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush(final=False)

    def _join(self, name: str) -> None:
        self._writer.close()
        written = pq.ParquetFile(io.BytesIO(self._buffer.getvalue()))
        self._columns.append(name)
        self._open()
        for group in range(written.num_row_groups):
            self._write(_with_nulls(written.read_row_group(group), name))
        self._pending = [_with_nulls(table, name) for table in self._pending]

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def _flush(self, final: bool) -> None:
        table = pa.concat_tables(self._pending) if self._pending else None
        self._pending, self._pending_rows = [], 0
        if table is None:
            return
        cut = table.num_rows if final else table.num_rows - table.num_rows % ROW_GROUP_ROWS
        if cut:
            self._write(table.slice(0, cut))
        if cut < table.num_rows:
            self._pending, self._pending_rows = [table.slice(cut)], table.num_rows - cut

    def finish(self) -> bytes:
        self._flush(final=True)
        self._writer.close()
        return self._buffer.getvalue()


def rewritten(data: bytes, change: Callable[[pa.Table], pa.Table]) -> bytes:
    """A manifest with `change` applied to each of its row groups (same rows, same order):
    the bytes of a manifest whose rows had the changed values from the start."""
    written = pq.ParquetFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, written.schema_arrow) as writer:
        for group in range(written.num_row_groups):
            # One thread, and the freed memory given back: on 4x10^5 rows, threads' buffers
            # and what Arrow's allocator kept after left ~100 MB more on the driver.
            table = change(written.read_row_group(group, use_threads=False))
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    pa.default_memory_pool().release_unused()
    return buffer.getvalue()


def _with_nulls(table: pa.Table, name: str) -> pa.Table:
    field = ROWS_SCHEMA.field(name)
    return table.append_column(field, pa.nulls(table.num_rows, field.type))
