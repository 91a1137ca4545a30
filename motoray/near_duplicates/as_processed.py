"""Hashes taken as a job processes its images: a first run decodes each image once.

A job whose hashes are not all cached, and whose outputs can be moved (`applies`), does not
wait for a hash pass. Its images are placed by group_by alone; its tasks hash each image
from the pixels they decode for it (at the request's size: hashes of their own kind, cached
apart); once every image is processed, the driver merges near-duplicate groups as a hash
pass would have them merged, places the merged groups, renames the outputs of the images
whose split changed and rewrites their manifest rows. What is left is what a job that knew
every hash beforehand (its rerun) writes, byte for byte: names, seeds and pixels depend on
keys alone, not on splits.
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc

from motoray.jobs.record import SplitCounts
from motoray.near_duplicates import cache
from motoray.near_duplicates.merging import merge
from motoray.pipeline import source
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.manifest import rewritten
from motoray.storage import LocalStorage


def applies(spec: JobSpec, options) -> bool:
    """Outputs that are files on this machine's disk (moved by a rename), of images (not
    video frames), without label files beside them (boxes), none dropped (dedupe never
    processes what it drops)."""
    plain = spec.frames is None and spec.boxes is None and not spec.sharded
    return plain and not options.dedupe and isinstance(spec.job_dir, LocalStorage)


def kind(spec: JobSpec) -> str:
    """The hashes' kind in the cache: of the image decoded at the request's size."""
    return "decoded" if spec.size is None else "decoded-{}x{}".format(*spec.size)


class Pending:
    """The near-duplicate split of a job whose tasks hash its images: `collect` every
    result table, then `settle`."""

    def __init__(self, request, config, keys: list[str], known: cache.Known, old, sidecar):
        self._request, self._config, self._keys = request, config, keys
        self._known, self._old, self._sidecar = known, old, sidecar
        self._hashes: list[pa.Table] = []
        self.report: dict = {}  # job.json's split, once settled

    def collect(self, rows: pa.Table) -> None:
        """The hashes in a result table (an image's first row carries its hash)."""
        self._hashes.append(rows.filter(rows["phash"].is_valid()).select(["source_path", "phash"]))

    def settle(
        self, job_dir: LocalStorage, manifest: bytes, failed: set[str]
    ) -> tuple[bytes, dict[str, SplitCounts], list[pa.Array]]:
        """Merge, place, move: the manifest as it is then, the counts per split and every
        output's path. The sidecar is saved last: a job cut short before then runs this
        way again when resumed, and finds its outputs where this run left them."""
        wanted = self._known.wanted
        found = pa.concat_tables(self._hashes) if self._hashes else None
        if found is None:
            hashes = pa.nulls(len(wanted), pa.uint64())
        else:
            hashes = found["phash"].take(pc.index_in(wanted["item"], found["source_path"]))
        rows = pa.table(  # every image a row; no hash where it failed (nobody's near-duplicate)
            [wanted["item"], wanted["version"], wanted["item"], hashes, pa.repeat(0, len(wanted))],
            schema=cache.SCHEMA,
        )
        self._hashes = []
        near = merge(self._known.placed(rows), self._request.train_test_split.near_duplicates)
        final = source.place(self._request, self._config, self._keys, merged=near.merged)
        self.report = final.report | {"near_duplicates": near.report}
        splits = pa.array([final.split[key] for key in self._keys], pa.string())
        groups = pa.array([final.group[key] for key in self._keys], pa.string())
        del near, final  # per-image dicts, not needed past here
        keys = pa.array(self._keys)
        per_split: dict[str, SplitCounts] = defaultdict(SplitCounts)
        done = splits.filter(pc.invert(pc.is_in(keys, pa.array(list(failed), pa.string()))))
        for name, count in zip(*pc.value_counts(done).flatten()):
            per_split[name.as_py()].images += count.as_py()
        outputs = []

        def placed(table: pa.Table) -> pa.Table:  # a row group's rows, its outputs moved
            at = pc.index_in(table["source_path"], keys)
            split = splits.take(at)
            rest = pc.replace_substring_regex(table["output_path"], "^[^/]*", "")
            path = pc.binary_join_element_wise(split, rest, "")  # `<split>[/<label>]/<name>`
            moved = pc.not_equal(table["split"], split)
            froms, tos = table["output_path"].filter(moved), path.filter(moved)
            job_dir.move(list(zip(froms.to_pylist(), tos.to_pylist())))
            for name, count in zip(*pc.value_counts(split).flatten()):
                per_split[name.as_py()].outputs += count.as_py()
            outputs.extend(path.chunks)
            changed = {"split": split, "group": groups.take(at), "output_path": path}
            for column, values in changed.items():
                index = table.schema.get_field_index(column)
                table = table.set_column(index, table.field(index), values)
            return table

        manifest = rewritten(manifest, placed)
        cache.save(*self._sidecar, self._old, rows)
        return manifest, dict(per_split), outputs
