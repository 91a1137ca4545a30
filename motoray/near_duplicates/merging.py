"""From every image's hash to what the split needs: pairs within max_distance bits, found by
banded hashing (lsh.py; here for a small job, in tasks for a large one), and the groups
group_by made that hold such a pair merged, over the groups that have one (union-find): the
merged group is named by its smallest group name. With dedupe, one image per cluster of
near-duplicates is kept: the one with the most pixels, ties to the smallest key."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from motoray.near_duplicates import lsh
from motoray.priority import as_batch_work

# Images hashed up to which the pairs are found in this process (lsh's passes over 2x10^4
# hashes take a few ms each and hold a few MB; a band whose value ~1,500 distinct hashes
# share reaches ~50 MB of temporaries, bounded by lsh.COMPARED_AT_ONCE), in tasks above.
IN_PROCESS_UP_TO = 20_000


@dataclasses.dataclass(frozen=True)
class Found:
    """What the pass found: group name -> merged group name (the groups merged only), image
    -> the image kept in its stead (dedupe), and job.json's report."""

    merged: dict[str, str]
    dropped: dict[str, str]
    report: dict


def merge(table: pa.Table, options) -> Found:
    """The merges (and drops) of every image's row: hashing.SCHEMA, with its item's group
    and split (what group_by gave it) and `fresh` (decoded by this job, not cached)."""
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
