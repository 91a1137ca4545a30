"""Near-duplicate-aware splits: what names cannot show (replays, re-encodes, re-exports).

`place` is `source.place` with `train_test_split.near_duplicates`: every image (every
sampled frame) is hashed in tasks (phash.py; cached: cache.py), pairs within max_distance
bits are found by banded hashing (lsh.py; here for a small job, in tasks for a large one),
and the groups group_by made that hold such a pair are merged, on the driver, over the
groups that have one (union-find): the merged group is named by its smallest group name.
The split then places merged groups as it places any group. With dedupe, one image per
cluster of near-duplicates is kept: the one with the most pixels, ties to the smallest key;
the others are listed, not processed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from motoray.near_duplicates import cache, lsh
from motoray.near_duplicates.hashing import SCHEMA, hash_items, identity, item_id
from motoray.pipeline import ray_data, source
from motoray.pipeline.jobspec import JobSpec
from motoray.priority import as_batch_work

__all__ = ["Found", "place"]

IDENTITY_THREADS = 8  # a local file's identity is an lstat, which waits on a network disk
IDENTITY_SLICE = 1000
# Images hashed up to which the pairs are found in this process (lsh's passes over 2x10^4
# hashes take a few ms each and hold a few MB; a band whose value ~1,500 distinct hashes
# share reaches ~50 MB of temporaries, bounded by lsh.COMPARED_AT_ONCE), in tasks above.
IN_PROCESS_UP_TO = 20_000
# Hashing an image costs ~2 ms of CPU, a fifth of processing it: blocks of 5x the images
# make tasks as long as the processing's (~1 s), and a fifth as many task overheads.
HASHED_PER_BLOCK = 5 * ray_data.IMAGES_PER_BLOCK


@dataclasses.dataclass(frozen=True)
class Found:
    """What the pass found: group name -> merged group name (the groups merged only), image
    -> the image kept in its stead (dedupe), and job.json's report."""

    merged: dict[str, str]
    dropped: dict[str, str]
    report: dict


def place(request, config, spec: JobSpec, keys, boxes=None, videos=None, versions=None, until=None):
    """`source.place`, then near-duplicates merged into groups when the request asks for
    it. Returns the assignment and image -> kept image (dedupe; else empty). `until`
    wraps the hash tasks' results: it raises once the job is stopped or out of time."""
    assignment = source.place(request, config, keys, boxes=boxes, videos=videos)
    split = request.train_test_split
    if split is None or split.near_duplicates is None:
        return assignment, {}
    items = source.items(keys, assignment, boxes=boxes, videos=videos, versions=versions)
    sidecar = cache.sidecar(config, request.name)
    found = find(spec, items, split.near_duplicates, sidecar, until or iter)
    merged = source.place(request, config, keys, boxes, videos, merged=found.merged)
    report = merged.report | {"near_duplicates": found.report}
    return dataclasses.replace(merged, report=report), found.dropped


def find(spec: JobSpec, items: list[source.Item], options, sidecar, until=iter) -> Found:
    """Hash every item's images (cached ones excepted), find the near-duplicate pairs, merge."""
    folder, key = sidecar
    old = cache.load(folder, key)
    table = _hashes(spec, items, old, until)
    cache.save(folder, key, old, table.select(SCHEMA.names))
    hashed = table.filter(table["hash"].is_valid())
    groups = pc.dictionary_encode(hashed["group"]).combine_chunks()
    names = groups.dictionary.to_pylist()  # one per group: the driver's only per-group list
    codes = pc.index_in(hashed["split"], pa.array(lsh.SPLIT_CODES)).to_numpy()
    unique, a, b, across, bands = _pairs(
        hashed["hash"].to_numpy(), groups.indices.to_numpy(), codes, options.max_distance
    )
    union = lsh.UnionFind()
    for x, y in zip(a.tolist(), b.tolist()):
        union.union(names[x], names[y])
    pairs = []
    for edges_a, edges_b, hash_a, hash_b, found_across in bands:
        across += found_across
        for x, y in zip(edges_a.tolist(), edges_b.tolist()):
            union.union(names[x], names[y])
        pairs.append((hash_a, hash_b))
    merged = union.components()
    dropped = _dropped(hashed, unique, pairs) if options.dedupe else {}
    decoded = len(table.filter(table["fresh"])["item"].unique())
    report = _report(names, groups, merged, across, decoded, len(dropped))
    return Found(merged, dropped, report)


def _hashes(spec: JobSpec, items: list[source.Item], cached: pa.Table, until=iter) -> pa.Table:
    """Every image's row: SCHEMA, fresh (decoded now, not cached), group and split (what
    group_by gave its item). Only items whose object is not cached as it is now go to tasks."""
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
        }
    )
    # Matched on "item\0version" with hash sets (is_in, index_in): an Arrow join of 10^5
    # rows held ~50 MB more on the driver than the result.
    want, have = _identity_of(wanted), _identity_of(cached)
    hits = cached.filter(pc.is_in(have, want))
    placed = wanted.select(["group", "split"]).take(pc.index_in(_identity_of(hits), want))
    hits = pa.Table.from_arrays(
        [*hits.columns, *placed.columns, pa.repeat(False, hits.num_rows)],
        [*hits.column_names, "group", "split", "fresh"],
    )
    tables = [hits]
    missing = pc.invert(pc.is_in(want, have))
    stale = [items[i] for i in pc.indices_nonzero(missing).to_pylist()]
    if stale:
        rows = [
            {"items": ray_data.packed(block)}
            for block in ray_data.blocks(spec, stale, HASHED_PER_BLOCK)
        ]
        fresh = pa.concat_tables(until(ray_data.map_blocks(_hash_block, spec, rows, len(stale))))
        placed = wanted.select(["group", "split"]).take(pc.index_in(fresh["item"], wanted["item"]))
        fresh = pa.Table.from_arrays(
            [*fresh.columns, *placed.columns, pa.repeat(True, fresh.num_rows)],
            [*fresh.column_names, "group", "split", "fresh"],
        )
        tables.append(fresh)
    names = [*SCHEMA.names, "group", "split", "fresh"]
    return pa.concat_tables([table.select(names) for table in tables])


def _identity_of(table: pa.Table) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(table["item"], table["version"], "\0")


def _hash_block(batch: pa.Table, spec: JobSpec) -> pa.Table:
    as_batch_work()
    return hash_items(spec, ray_data.unpacked(batch))


def _pairs(hashes: np.ndarray, groups: np.ndarray, splits: np.ndarray, max_distance: int):
    """lsh.collapse, then lsh.band_edges of every band: in this process up to
    IN_PROCESS_UP_TO images (a task's round trip, and a worker, cost more than the NumPy),
    in tasks above, where the passes' temporaries (up to ~50 MB a band) stay off the
    driver, and the bands run side by side."""
    count = range(max_distance + 1)
    if len(hashes) <= IN_PROCESS_UP_TO:
        unique, a, b, across = lsh.collapse(hashes, groups, splits)
        return unique, a, b, across, [lsh.band_edges(unique, n, max_distance) for n in count]
    unique, a, b, across = ray.get(_collapse.remote(hashes, groups, splits))
    shared = ray.put(unique)  # once, not once per band
    return unique, a, b, across, ray.get([_band.remote(shared, n, max_distance) for n in count])


@ray.remote(num_cpus=1)
def _collapse(hashes: np.ndarray, groups: np.ndarray, splits: np.ndarray):
    as_batch_work()
    return lsh.collapse(hashes, groups, splits)


@ray.remote(num_cpus=1)
def _band(unique: lsh.Unique, band: int, max_distance: int):
    as_batch_work()
    return lsh.band_edges(unique, band, max_distance)


def _dropped(hashed: pa.Table, unique: lsh.Unique, pairs) -> dict[str, str]:
    """image -> the image kept in its stead: per cluster of near-duplicates (identical
    hashes, and hashes within max_distance, joined), the one with the most pixels, ties to
    the smallest key."""
    union = lsh.UnionFind()
    for hash_a, hash_b in pairs:
        for x, y in zip(hash_a.tolist(), hash_b.tolist()):
            union.union(x, y)
    repeated = unique.hashes[unique.splits.sum(axis=1) > 1]
    clustered = pa.array(np.union1d(repeated, np.fromiter(union.parent, np.uint64)), pa.uint64())
    members = hashed.filter(pc.is_in(hashed["hash"], clustered)).select(["key", "hash", "pixels"])
    by_cluster: dict[int, list[tuple[int, str]]] = {}
    for key, value, pixels in zip(*(members[c].to_pylist() for c in ("key", "hash", "pixels"))):
        by_cluster.setdefault(union.find(value), []).append((-pixels, key))
    dropped = {}
    for images in by_cluster.values():
        images.sort()
        kept = images[0][1]
        dropped.update({key: kept for _, key in images[1:]})
    return dict(sorted(dropped.items()))


def _report(names, groups, merged, across: int, decoded: int, dropped: int) -> dict:
    """job.json's near_duplicates: groups merged, the largest merged group, the image pairs
    group_by alone would have split, how many items were decoded to hash (not cached)."""
    images = Counter()
    for code, count in zip(*pc.value_counts(groups.indices).flatten()):
        name = names[code.as_py()]
        images[merged.get(name, name)] += count.as_py()
    largest = min(images.items(), key=lambda kv: (-kv[1], kv[0])) if images else (None, 0)
    return {
        "groups_merged": len(merged),
        "merged_into": len(set(merged.values())),
        "largest_group": {"name": largest[0], "images": largest[1]},
        "pairs_across_splits": across,
        "hashed": decoded,
        "dropped": dropped,
    }
