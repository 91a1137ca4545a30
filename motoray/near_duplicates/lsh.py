"""Which hashes lie within `max_distance` bits of each other, without comparing all pairs.

Pure NumPy. The 64 bits are cut into max_distance + 1 bands: two hashes that differ in at
most max_distance bits agree exactly on at least one band (pigeonhole), so sorting by one
band's value puts every such pair in one run of equal values. Each run is compared in full
(Hamming distance), and a pair counts only in the first band its hashes agree on, so no pair
is found twice. Identical hashes are collapsed first: a frame exported ten times is one
hash, not 45 pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motoray.near_duplicates.phash import BITS, hamming

SPLIT_CODES = ("train", "validation", "test", "all")  # columns of Unique.splits
COMPARED_AT_ONCE = 2**21  # hash pairs compared in one NumPy pass: ~50 MB of temporaries


def bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of each of the max_distance + 1 bands, widths differing by one at most."""
    count = max_distance + 1
    if not 1 <= count <= BITS:
        raise ValueError(f"max_distance must be 0 to {BITS - 1}, got {max_distance}")
    size, extra = divmod(BITS, count)
    cut, start = [], 0
    for band in range(count):
        width = size + (band < extra)
        cut.append((start, width))
        start += width
    return cut


def band_values(hashes: np.ndarray, band: tuple[int, int]) -> np.ndarray:
    shift, width = band
    mask = np.uint64((1 << width) - 1)
    return (hashes >> np.uint64(shift)) & mask


@dataclass(frozen=True)
class Unique:
    """The distinct hashes of a source, each with the first group holding it (by group id)
    and its images per split (columns: SPLIT_CODES)."""

    hashes: np.ndarray  # uint64, sorted
    group: np.ndarray  # int64: the smallest group id among the images of this hash
    splits: np.ndarray  # int64 (U x len(SPLIT_CODES)): its images per split


def collapse(
    hashes: np.ndarray, groups: np.ndarray, splits: np.ndarray
) -> tuple[Unique, np.ndarray, np.ndarray, int]:
    """Identical hashes collapsed. Also returns the group edges they make ((a, b) id arrays:
    every other group holding a hash joined to its first) and the image pairs of identical
    hashes that group_by alone put in different splits."""
    if len(hashes) == 0:
        empty = np.empty(0, dtype=np.int64)
        none = Unique(np.empty(0, np.uint64), empty, np.empty((0, len(SPLIT_CODES)), np.int64))
        return none, empty, empty, 0
    order = np.lexsort((groups, hashes))
    hashes, groups, splits = hashes[order], groups[order], splits[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(hashes)]))
    first = groups[starts][run]
    joined = groups != first
    counts = np.zeros((len(starts), len(SPLIT_CODES)), dtype=np.int64)
    np.add.at(counts, (run, splits), 1)
    total = counts.sum(axis=1)
    across = int(((total**2 - (counts**2).sum(axis=1)) // 2).sum())
    unique = Unique(hashes[starts], groups[starts], counts)
    return unique, first[joined], groups[joined], across


def band_pairs(unique: Unique, band: int, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, of distinct hashes within max_distance bits whose first
    agreeing band is `band`. A run of equal band values is compared in slices of at most
    COMPARED_AT_ONCE pairs, so memory stays bounded however many hashes share a value."""
    cut = bands(max_distance)
    values = band_values(unique.hashes, cut[band])
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    left, right = [], []
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        members = np.sort(order[start:end])
        rows = max(1, COMPARED_AT_ONCE // len(members))
        for top in range(0, len(members) - 1, rows):
            mine = members[top : top + rows]
            others = members[top + 1 :]
            a = np.repeat(mine, len(others))
            b = np.tile(others, len(mine))
            upper = a < b
            a, b = a[upper], b[upper]
            ha, hb = unique.hashes[a], unique.hashes[b]
            keep = hamming(ha, hb) <= max_distance
            for earlier in range(band):  # found in an earlier band already
                keep &= band_values(ha, cut[earlier]) != band_values(hb, cut[earlier])
            left.append(a[keep])
            right.append(b[keep])
    if not left:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(left), np.concatenate(right)


def band_edges(unique: Unique, band: int, max_distance: int):
    """One band's pairs: as group edges (first groups of the two hashes, where they differ),
    as hash pairs (for dedupe), and the image pairs across splits behind them."""
    a, b = band_pairs(unique, band, max_distance)
    across = pairs_across(unique, a, b)
    ga, gb = unique.group[a], unique.group[b]
    apart = ga != gb
    # Each pair of groups once: a replay of 500 frames is one edge, not 500.
    edges = np.unique(np.stack([ga[apart], gb[apart]], axis=1), axis=0).reshape(-1, 2)
    return edges[:, 0], edges[:, 1], unique.hashes[a], unique.hashes[b], across


def pairs_across(unique: Unique, a: np.ndarray, b: np.ndarray) -> int:
    """Image pairs behind the hash pairs (a, b) that group_by alone put in different splits."""
    sa, sb = unique.splits[a], unique.splits[b]
    return int((sa.sum(axis=1) * sb.sum(axis=1) - (sa * sb).sum(axis=1)).sum())


class UnionFind:
    """Components over the nodes that have an edge; a component is named by its smallest
    node, so names never depend on the order edges come in."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, node):
        root = self.parent.setdefault(node, node)
        while self.parent[root] != root:
            root = self.parent[root]
        while node != root:  # path compression, without recursion (chains can be long)
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            low, high = (ra, rb) if ra < rb else (rb, ra)
            self.parent[high] = low

    def components(self) -> dict:
        """node -> the smallest node of its component."""
        return {node: self.find(node) for node in list(self.parent)}
