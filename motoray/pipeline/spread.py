"""A job whose keys never sit on the driver: images without annotations, in files (not
WebDataset) format, from a `kind: manifest` source (always) or from an S3 prefix or a local
folder whose listing holds at least SPREAD_FROM keys.

    key blocks (pipeline/listing.py, local_listing.py) -> split (placing.plan: a Cut;
    with near_duplicates, its groups merged first: near_duplicates/spread.py) ->
    per block of keys, in a task: placement from the Cut, read, process, write, the
    block's manifest part (manifest/part-<hash of its first key>.parquet), its outputs
    checked -> one row of sums

The driver holds the Cut (thresholds, or one entry per group), the merges (and what dedupe
drops, as Arrow), the sums the tasks report and the failures. The manifest is the
`manifest/` folder, read whole by `pyarrow.dataset.dataset(path)` or
`ray.data.read_parquet(path)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from motoray.config import Config
from motoray.jobs.record import Counts, Failure, SplitCounts
from motoray.labels import label_of
from motoray.near_duplicates import HASHED_PER_BLOCK, cache
from motoray.near_duplicates import spread as near_duplicates
from motoray.pipeline import manifest, placing, worker
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.layout import MANIFEST_FOLDER
from motoray.pipeline.listing import VERSION, Listed
from motoray.pipeline.manifest import manifest_columns, rows_table
from motoray.pipeline.ray_data import _board_says_ended
from motoray.pipeline.source import Item
from motoray.priority import as_batch_work
from motoray.seeding import stable_hash
from motoray.spec import RequestBase
from motoray.split_cut import Cut, Rules
from motoray.storage import Storage
from motoray.storage.keyfile import KEY

IMAGES_PER_BLOCK = 100  # as ray_data's: ~1 s of work per task
MAX_BLOCKS = 1024  # 10^7 keys: blocks of ~10^4 (a task of ~100 s); ~60 KiB of driver each
# Keys of a listed prefix or folder from which its job runs spread. Below, the driver holds
# ~40 MB of keys and items and splits them in ~5 s (issue 31 measured 0.4 GB and 45 s at
# 10^6), and the job keeps one manifest.parquet; the spread path's extra passes over the
# blocks cost a few seconds, small beside a job of this size (~4 min on 2 CPUs).
SPREAD_FROM = 100_000
DROPPED = pa.schema([(KEY, pa.string()), ("kept", pa.string())])  # image -> kept in its stead


def spread_from(request: RequestBase, config: Config) -> int | None:
    """How many keys the listing must hold for the job to run spread (None: it never does).
    Only images without boxes, in files format run spread: a `kind: manifest` source's
    whatever their number, a listed prefix's or folder's from SPREAD_FROM keys."""
    source = config.sources[request.name]
    sharded = request.output is not None and request.output.format == "webdataset"
    if source.annotations is not None or sharded:
        return None
    return {"manifest": 0, "images": SPREAD_FROM}.get(source.kind)


def in_blocks(keys: ray.data.Dataset, count: int, per_block: int | None = None) -> ray.data.Dataset:
    """`keys` cut into the tasks' blocks: `per_block` keys each (IMAGES_PER_BLOCK unless
    told), or more for a very large job, so that the driver holds at most MAX_BLOCKS block
    references. (The split's passes run over the listing's few large blocks: a pass over
    10^5 blocks of 100 keys costs more in per-task overhead than in hashing.)"""
    blocks = min(MAX_BLOCKS, max(1, -(-count // (per_block or IMAGES_PER_BLOCK))))
    return keys.repartition(blocks)


def placed(
    request: RequestBase, config: Config, spec: JobSpec, listed: Listed, until: Callable
) -> tuple[Cut, dict, pa.Table | None]:
    """The Cut, the split's report and, with dedupe, the images dropped (DROPPED). With
    near_duplicates, the near-duplicate groups are merged first (`until` wraps the hash
    tasks' results: it raises once the job ends)."""
    split = request.train_test_split
    group_by = split.group_by if split is not None else "image"
    rules = Rules(split, request.seed, group_by, config.sources[request.name].labels)
    cut, report = placing.plan(listed.keys, rules)
    if split is None or split.near_duplicates is None or not listed.count:  # nothing to hash
        return cut, report, None
    options = split.near_duplicates
    sidecar = cache.sidecar(config, request.name)
    blocks = in_blocks(listed.keys, listed.count, HASHED_PER_BLOCK)
    near = near_duplicates.found(spec, blocks, cut, options, sidecar, until)
    del cut  # group_by's: one entry per group, as the merged one's
    cut, report = placing.plan(listed.keys, dataclasses.replace(rules, merged=near.merged))
    dropped = None
    if options.dedupe:  # Arrow: a task finds its keys' in it without unpickling a dict
        dropped = pa.table([list(near.dropped), list(near.dropped.values())], schema=DROPPED)
    return cut, report | {"near_duplicates": near.report}, dropped


def processed(
    spec: JobSpec, keys: ray.data.Dataset, count: int, cut: Cut, dropped: pa.Table | None = None
) -> Iterator[pa.Table]:
    """One row of sums per block (see `_block`), as tasks finish. `dropped`: see `placed`."""
    keys = in_blocks(keys, count)
    context = keys.context
    context.op_resource_reservation_enabled = False  # as ray_data._mapped says why
    context.raise_original_map_exception = True
    context.enable_progress_bars = False
    keys.set_name(spec.job_id or None)
    dropped = None if dropped is None else ray.put(dropped)
    shared = {"spec": spec, "cut": ray.put(cut), "dropped": dropped}
    done = keys.map_batches(_block, fn_kwargs=shared, batch_size=None, batch_format="pyarrow")
    yield from done.iter_batches(batch_size=None, batch_format="pyarrow")


def drop_earlier_parts(job_dir: Storage) -> None:
    """A resumed job's manifest parts from its earlier runs, removed before this run writes
    its own: blocks are cut the same way from the same listing, but a listing that changed
    between runs (a live bucket) cuts others, and a part left over would list rows twice."""
    parts = job_dir.child(MANIFEST_FOLDER)
    with contextlib.suppress(FileNotFoundError):  # no part yet (a local folder not made)
        for name in parts.list((".parquet",)):
            parts.delete(name)


def _block(batch: pa.Table, spec: JobSpec, cut, dropped) -> pa.Table:
    """A block of keys placed, processed and written, with its manifest part; its outputs
    checked on storage. Returns its sums: images per split, outputs per split, failures.
    `dropped`: see `placed`."""
    as_batch_work()
    # An S3 key's ETag, as listed: its read is pinned to it (If-Match), as the driver's is.
    listed = batch[VERSION].to_pylist() if VERSION in batch.column_names else None
    versions = dict(zip(batch[KEY].to_pylist(), listed or []))
    keys = sorted(batch[KEY].to_pylist())
    cut = ray.get(cut)
    splits, groups = cut.place(keys)
    rule = cut.rules.labels
    kept = [None] * len(keys)
    if dropped is not None:
        dropped = ray.get(dropped)
        at = pc.index_in(pa.array(keys, pa.string()), dropped[KEY])  # typed: a block may be empty
        kept = dropped["kept"].take(at).to_pylist()
    items = [Item(k, s, label_of(k, rule), g, version=versions.get(k), duplicate_of=d)
             for k, s, g, d in zip(keys, splits, groups, kept)]  # fmt: skip
    rows = worker.write_files(spec, items, _board_says_ended(spec.job_id))
    table = rows_table(rows)
    made = table.filter(pc.and_(table["error"].is_null(), table["skipped"].is_null()))
    failed = table.filter(table["error"].is_valid())
    kept_rows = table.filter(manifest.listed(table))  # made, and dropped as near-duplicates
    if keys:
        part = f"{MANIFEST_FOLDER}/part-{stable_hash(keys[0], bits=64):016x}.parquet"
        spec.job_dir.write(part, _parquet(kept_rows.select(part_columns(dropped is not None))))
    missing = [path for path in made["output_path"].to_pylist() if not spec.job_dir.exists(path)]
    images = kept_rows.group_by(["source_path", "split"]).aggregate([]).column("split")
    failures = list(zip(failed["source_path"].to_pylist(), failed["error"].to_pylist()))
    sums = {
        "images": json.dumps(Counter(images.to_pylist())),
        "outputs": json.dumps(Counter(made["split"].to_pylist())),
        "failures": json.dumps(failures),
        "missing": len(missing),
        "missing_example": missing[0] if missing else None,
        "bytes": pc.sum(made["bytes"]).as_py() or 0,
    }
    return pa.Table.from_pylist([sums])


def part_columns(dedupe: bool) -> list[str]:
    """A manifest part's columns: the same in every part of a job (a reader of the folder
    takes the first part's), so the optional columns are always there, null where a row has
    no value: `notes`, and `duplicate_of` with dedupe."""
    return manifest_columns(False) + ["notes"] + (["duplicate_of"] if dedupe else [])


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def summed(
    sums: Iterator[pa.Table],
    counts: Counts,
    failures: list[Failure],
    on_block: Callable[[int, int, int, int], None],
) -> dict[str, SplitCounts]:
    """The tasks' sums added up into `counts` and `failures`; per split counts. A block
    whose outputs are not all on storage fails the job (JobFailed, via `missing`)."""
    per_split: dict[str, SplitCounts] = {}
    for table in sums:
        for row in table.to_pylist():
            images, outputs = json.loads(row["images"]), json.loads(row["outputs"])
            failed = json.loads(row["failures"])
            if row["missing"]:
                raise MissingOutputs(
                    f"the job folder does not hold what the manifest lists: {row['missing']} "
                    f"missing (e.g. {row['missing_example']})"
                )
            for name, n in images.items():
                per_split.setdefault(name, SplitCounts()).images += n
            for name, n in outputs.items():
                per_split.setdefault(name, SplitCounts()).outputs += n
            failures += [Failure(source_path=k, reason=r) for k, r in failed]
            done = sum(images.values()) + len(failed)
            counts.images_done += done
            counts.images_failed += len(failed)
            counts.outputs += sum(outputs.values())
            on_block(done, len(failed), sum(outputs.values()), row["bytes"])
    return per_split


class MissingOutputs(RuntimeError):
    """A task's outputs are not all on storage after it wrote them."""
