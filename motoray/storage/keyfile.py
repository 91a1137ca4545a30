"""Keys listed by a file instead of a LIST: a source too large to list (`kind: manifest`).

The file is one of:
- a Parquet or CSV file with a `key` column (or a single column; a CSV's first line is its
  header only if it says `key`), keys relative to the source's uri;
- an S3 Inventory report: its `manifest.json`, which names the CSV (gzipped) or Parquet data
  files holding the source bucket's keys. Keys below the source's prefix are kept (relative to
  it), the rest skipped; versions not the latest and delete markers are skipped.

Pure parsing, no Ray: `key_files` reads the small part (what files hold keys) where the job
starts; `read_keys` reads one of those files, in a task (pipeline/listing.py).
"""

from __future__ import annotations

import io
import json
import urllib.parse
import zlib
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from motoray.storage.base import IMAGE_EXTENSIONS, Refused, Storage

KEY = "key"
MANIFEST_JSON = "manifest.json"
MAX_MANIFEST_JSON_BYTES = 64 << 20  # an inventory of 10^9 objects lists ~10^4 files: ~2 MB
# One key file, as stored and as read (a gzip or Parquet file expands): 10^7 keys of 100
# bytes is ~1 GB of text. Past it a task would run out of memory, retried, then fail the job
# without saying why; the limit says why.
MAX_KEY_FILE_BYTES = 4 << 30


class KeyFileError(ValueError):
    """The key file (or inventory report) is not one motoray reads: says which and why."""


@dataclass(frozen=True)
class KeyFile:
    """One file of keys and how to read it."""

    storage: Storage  # where the file is
    key: str
    format: str  # "parquet" | "csv"
    # An inventory's CSV has no header: its columns, from the manifest's fileSchema.
    columns: tuple[str, ...] | None = None
    # An inventory: keys are whole bucket keys, kept below this prefix ("" whole bucket),
    # URL-decoded (its CSV encodes them), versions not the latest skipped.
    inventory_prefix: str | None = field(default=None)

    @property
    def uri(self) -> str:
        return f"{self.storage.uri}/{self.key}"


def key_files(storage: Storage, key: str, source_uri: str) -> list[KeyFile]:
    """The files holding the keys: `key` itself (Parquet or CSV), or the data files an S3
    Inventory `manifest.json` lists (their bucket with `storage`'s settings)."""
    name = key.lower()
    if name.endswith(".parquet"):
        return [KeyFile(storage, key, "parquet")]
    if name.endswith((".csv", ".csv.gz")):
        return [KeyFile(storage, key, "csv")]
    if name.endswith(".json"):
        return _inventory(storage, key, source_uri)
    raise KeyFileError(
        f"manifest {storage.uri}/{key}: a .parquet, .csv (.csv.gz) or an S3 Inventory "
        "manifest.json is read"
    )


def _inventory(storage: Storage, key: str, source_uri: str) -> list[KeyFile]:
    where = f"{storage.uri}/{key}"
    try:
        report = json.loads(storage.read(key, MAX_MANIFEST_JSON_BYTES))
        source_bucket = report["sourceBucket"]
        destination = report["destinationBucket"].removeprefix("arn:aws:s3:::")
        file_format = report["fileFormat"].lower()
        schema = report.get("fileSchema", "")
        files = list(dict.fromkeys(entry["key"] for entry in report["files"]))  # each once
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise KeyFileError(f"manifest {where}: not an S3 Inventory manifest.json ({e})") from e
    if not source_uri.startswith("s3://"):
        raise KeyFileError(f"manifest {where}: an S3 Inventory lists an S3 source's keys")
    bucket, _, prefix = source_uri.removeprefix("s3://").partition("/")
    if source_bucket != bucket:
        raise KeyFileError(
            f"manifest {where}: an inventory of bucket {source_bucket!r}, not of the "
            f"source's {bucket!r}"
        )
    if file_format not in ("csv", "parquet"):
        found = report["fileFormat"]
        raise KeyFileError(f"manifest {where}: {found} inventories are not read (CSV, Parquet)")
    columns = None
    if file_format == "csv":
        columns = tuple(column.strip() for column in schema.split(","))
        if "Key" not in columns:
            raise KeyFileError(f"manifest {where}: its fileSchema has no Key column")
    from motoray.storage import open_storage  # the destination bucket, same settings

    settings = getattr(storage, "settings", None)
    data = open_storage(f"s3://{destination}", settings) if settings else storage
    root = prefix.strip("/")
    return [KeyFile(data, file, file_format, columns, root) for file in files]


def read_keys(file: KeyFile, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> pa.Table:
    """The file's keys (one column, `key`) that end with one of `extensions` and are not
    hidden, each once, sorted."""
    try:
        data = file.storage.read(file.key, MAX_KEY_FILE_BYTES)
        if file.key.lower().endswith(".gz"):
            data = _gunzipped(data, file)
        table = _parsed(data, file)
    except (Refused, pa.ArrowInvalid, OSError, UnicodeDecodeError, EOFError, zlib.error) as e:
        raise KeyFileError(f"manifest {file.uri}: {e}") from e
    keys = _key_column(table, file)
    if file.inventory_prefix is not None:
        keys = _below(keys, _current(table), file)
    keys = pc.drop_null(keys.cast(pa.string()))
    wanted = [e.lower() for e in extensions]
    lower = pc.utf8_lower(keys)
    ends = [pc.ends_with(lower, e) for e in wanted]
    keep = ends[0] if ends else pa.array([False] * len(keys))
    for more in ends[1:]:
        keep = pc.or_(keep, more)
    # Hidden names (a part starting with "."), as a LIST of the source skips them.
    hidden = pc.match_substring_regex(keys, r"(^|/)\.[^/]")
    keys = pc.filter(keys, pc.and_(keep, pc.invert(hidden)))
    return pa.table({KEY: pc.unique(keys)}).sort_by(KEY)


def _gunzipped(data: bytes, file: KeyFile) -> bytes:
    """Decompressed, at most MAX_KEY_FILE_BYTES of it (a gzip bomb is refused, not expanded)."""
    stream = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # gzip framing
    out = stream.decompress(data, MAX_KEY_FILE_BYTES + 1)
    if len(out) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"manifest {file.uri}: over {MAX_KEY_FILE_BYTES} bytes decompressed")
    return out


def _parsed(data: bytes, file: KeyFile) -> pa.Table:
    if file.format == "parquet":
        parquet = pq.ParquetFile(io.BytesIO(data))
        expands_to = sum(
            parquet.metadata.row_group(i).total_byte_size
            for i in range(parquet.metadata.num_row_groups)
        )
        if expands_to > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"manifest {file.uri}: over {MAX_KEY_FILE_BYTES} bytes of data")
        return parquet.read()
    if file.columns is not None:  # an inventory's CSV: no header, every field quoted text
        names = list(file.columns)
        return pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(column_names=names),
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
    first = data.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    if KEY not in [name.strip().strip('"') for name in first.split(",")]:
        # No header: one key a line, as it is (a comma or a quote is part of the key).
        lines = data.decode("utf-8").split("\n")
        return pa.table({KEY: [line.removesuffix("\r") for line in lines if line.strip()]})
    return pa_csv.read_csv(
        io.BytesIO(data), convert_options=pa_csv.ConvertOptions(column_types={KEY: pa.string()})
    )


def _key_column(table: pa.Table, file: KeyFile) -> pa.ChunkedArray:
    for name in (KEY, "Key"):
        if name in table.column_names:
            return table[name]
    if table.num_columns == 1 and file.inventory_prefix is None:
        return table.column(0)
    raise KeyFileError(
        f"manifest {file.uri}: no `key` column (columns: {', '.join(table.column_names)})"
    )


def _current(table: pa.Table) -> pa.ChunkedArray | None:
    """Rows that are an object's current version (an inventory of a versioned bucket also
    lists older versions and delete markers); None where the report does not say."""
    names = {name.lower().replace("_", ""): name for name in table.column_names}
    keep = None
    for column, wanted in (("islatest", "true"), ("isdeletemarker", "false")):
        if column in names:
            values = pc.utf8_lower(table[names[column]].cast(pa.string()))
            match = pc.fill_null(pc.equal(values, wanted), wanted == "false")
            keep = match if keep is None else pc.and_(keep, match)
    return keep


def _below(keys: pa.ChunkedArray, current, file: KeyFile) -> pa.ChunkedArray:
    """An inventory's bucket keys below the source's prefix, relative to it."""
    if current is not None:
        keys = pc.filter(keys, current)
    if file.format == "csv":  # S3 Inventory CSVs URL-encode keys (a space as +, a + as %2B)
        decoded = [None if k is None else urllib.parse.unquote_plus(k) for k in keys.to_pylist()]
        keys = pa.chunked_array([pa.array(decoded, pa.string())])
    root = f"{file.inventory_prefix}/" if file.inventory_prefix else ""
    if root:
        keys = pc.filter(keys, pc.starts_with(keys, root))
        keys = pc.utf8_slice_codeunits(keys, len(root))
    return keys
