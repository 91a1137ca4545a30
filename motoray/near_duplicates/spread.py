"""Near-duplicates for a job whose keys stay in Ray's blocks (pipeline/spread.py).

    key blocks -> per block, in a task: group_by's placement (the Cut), each key's identity,
    its cached row or its hash (decoded at 1/8 scale) -> the rows (Arrow) -> merge ->
    the merged groups, which the split then places as any group

The driver holds the hash rows as one Arrow table (no Python object per image); the merge
names each group once, its pairs' passes run in tasks above 2x10^4 images (merging.py); what
it keeps is the merges (one entry per group merged). Hashed first, not as processed: a
spread job's outputs and manifest parts are written by the tasks that process them, so
moving them after the merge would be another pass of tasks over every block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import ray

from motoray.near_duplicates import cache
from motoray.near_duplicates.hashing import hash_items
from motoray.near_duplicates.merging import Found, merge
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.listing import VERSION
from motoray.pipeline.source import Item
from motoray.priority import as_batch_work
from motoray.split_cut import Cut
from motoray.storage.keyfile import KEY


def found(
    spec: JobSpec,
    blocks: ray.data.Dataset,
    cut: Cut,
    options,
    sidecar,
    until: Callable[[Iterator[pa.Table]], Iterator[pa.Table]],
) -> Found:
    """The merges (and drops) of every key's image in `blocks` (a task's keys each), placed
    by `cut` (group_by's), hashed in tasks unless cached in `sidecar`; the sidecar saved
    with this job's rows."""
    old = cache.load(*sidecar)
    shared = {"spec": spec, "cut": ray.put(cut), "old": ray.put(old)}
    rows = blocks.map_batches(_rows, fn_kwargs=shared, batch_size=None, batch_format="pyarrow")
    table = pa.concat_tables(until(rows.iter_batches(batch_size=None, batch_format="pyarrow")))
    cache.save(*sidecar, old, table.select(cache.SCHEMA.names))
    return merge(table, options)


def _rows(batch: pa.Table, spec: JobSpec, cut, old) -> pa.Table:
    """A block's rows for the merge: cached or hashed now, with group_by's group and split."""
    as_batch_work()
    listed = batch[VERSION].to_pylist() if VERSION in batch.column_names else None
    keys = batch[KEY].to_pylist()
    splits, groups = ray.get(cut).place(keys)
    items = [
        Item(key, split, group=group, version=version)
        for key, split, group, version in zip(keys, splits, groups, listed or [None] * len(keys))
    ]
    old = ray.get(old)
    known = cache.known(spec, items, old.filter(pc.is_in(old["item"], batch[KEY])))
    return pa.concat_tables([known.rows, known.placed(hash_items(spec, known.stale))])
