"""Near-duplicate-aware splits: what names cannot show (replays, re-encodes, re-exports).

`place` is `source.place` with `train_test_split.near_duplicates`: every image (every
sampled frame) gets a hash (phash.py; cached: cache.py), pairs within max_distance bits merge
the groups group_by made (merging.py), and the split places merged groups as it places any
group. The hashes of a first run are taken one of two ways:
- as the job processes its images (as_processed.py), where its outputs can be moved: no
  image is decoded twice;
- before, by a pass of hash tasks (hashing.py) that decode each image at reduced scale:
  video frames, boxes, shards, dedupe (its dropped images are never processed), outputs
  on S3.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from motoray.near_duplicates import as_processed, cache
from motoray.near_duplicates.hashing import hash_items
from motoray.near_duplicates.merging import Found, merge
from motoray.pipeline import ray_data, source
from motoray.pipeline.jobspec import JobSpec
from motoray.priority import as_batch_work
from motoray.split import Assignment

__all__ = ["Found", "Placed", "find", "place"]

# Hashing an image costs ~2 ms of CPU, a fifth of processing it: blocks of 5x the images
# make tasks as long as the processing's (~1 s), and a fifth as many task overheads.
HASHED_PER_BLOCK = 5 * ray_data.IMAGES_PER_BLOCK


@dataclasses.dataclass(frozen=True)
class Placed:
    """Where a job's images go: the assignment, image -> the image kept in its stead
    (dedupe), the version of each key to read, and, for a job whose hashes are taken as
    it processes its images, what settles the split once they are (the assignment is then
    group_by's alone)."""

    assignment: Assignment
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)
    versions: dict[str, str | None] | None = None
    pending: as_processed.Pending | None = None

    def items(self, keys: list[str], boxes=None, videos=None) -> list[source.Item]:
        """Every image (every video range) with where it goes, and the version to read."""
        return source.items(keys, self.assignment, boxes, videos, self.versions, self.dropped)


def place(
    request, config, spec: JobSpec, keys, boxes=None, videos=None, versions=None, until=None
) -> Placed:
    """`source.place`, then near-duplicates merged into groups when the request asks for
    it. `until` wraps the hash tasks' results: it raises once the job is stopped or out of
    time."""
    assignment = source.place(request, config, keys, boxes=boxes, videos=videos)
    split = request.train_test_split
    if split is None or split.near_duplicates is None:
        return Placed(assignment, versions=versions)
    options = split.near_duplicates
    items = source.items(keys, assignment, boxes=boxes, videos=videos, versions=versions)
    if as_processed.applies(spec, options):
        sidecar = cache.sidecar(config, request.name, as_processed.kind(spec))
        old = cache.load(*sidecar)
        known = cache.known(spec, items, old)
        versions = known.versions  # what is hashed is what is read
        if known.stale:
            pending = as_processed.Pending(request, config, keys, known, old, sidecar)
            return Placed(assignment, versions=versions, pending=pending)
        found = merge(known.rows, options)
    else:
        found = find(spec, items, options, cache.sidecar(config, request.name), until or iter)
    merged = source.place(request, config, keys, boxes, videos, merged=found.merged)
    report = merged.report | {"near_duplicates": found.report}
    return Placed(dataclasses.replace(merged, report=report), found.dropped, versions)


def find(spec: JobSpec, items: list[source.Item], options, sidecar, until=iter) -> Found:
    """Hash every item's images (cached ones excepted) in tasks, find the pairs, merge."""
    old = cache.load(*sidecar)
    known = cache.known(spec, items, old)
    table = known.rows
    if known.stale:  # only items whose object is not cached as it is now go to tasks
        rows = [
            {"items": ray_data.packed(block)}
            for block in ray_data.blocks(spec, known.stale, HASHED_PER_BLOCK)
        ]
        fresh = until(ray_data.map_blocks(_hash_block, spec, rows, len(known.stale)))
        table = pa.concat_tables([table, known.placed(pa.concat_tables(fresh))])
    cache.save(*sidecar, old, table.select(cache.SCHEMA.names))
    return merge(table, options)


def _hash_block(batch: pa.Table, spec: JobSpec) -> pa.Table:
    as_batch_work()
    return hash_items(spec, ray_data.unpacked(batch))
