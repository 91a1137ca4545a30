"""A local tree's keys listed by Ray tasks, one task per few folder subtrees (os.walk in
each), the keys in Ray blocks. The driver walks only the top levels, until it has enough
subtrees for every CPU. A job's listing (local_versions) walks a tree that looks smaller
than LOCAL_TASKS_FROM keys (or than the number at which the job runs spread) in this
process, where tasks do not pay. Same keys and refusals as LocalStorage.list: hidden
entries skipped, links to folders not followed, a folder that cannot be listed fails the
listing."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import ray

from motoray.pipeline.listing import Listed, held
from motoray.storage.keyfile import KEY
from motoray.storage.local import LocalStorage, _unlistable, level_keys, walk_keys

SUBTREES_PER_CPU = 4  # uneven subtrees: a few per CPU keep both busy to the end
TOP_LEVELS = 3  # the driver looks no deeper for subtrees
# Keys. Measured on 2 CPUs, a local disk, frames 100 to a folder: tasks took 0.7-0.8x the
# speed of one walk here at 10^5 keys, 0.8-0.9x at 10^6 (a job's keys come back to this
# process either way). They pay where a walk waits (a network filesystem) or on more CPUs.
LOCAL_TASKS_FROM = 10_000_000


def local_keys(storage: LocalStorage, extensions: tuple[str, ...]) -> ray.data.Dataset:
    """The tree's keys as a `key` column: the files of its top levels in one block, each
    group of subtrees' keys in one block (sorted within it, each key once overall)."""
    if not storage.root.is_dir():
        raise FileNotFoundError(f"source folder does not exist: {storage.root}")
    wanted = tuple(e.lower() for e in extensions)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    top, subtrees = _top_levels(storage.root, wanted, cpus * SUBTREES_PER_CPU)
    groups = [subtrees[i :: cpus * SUBTREES_PER_CPU] for i in range(cpus * SUBTREES_PER_CPU)]
    refs = [_listed.remote(storage.root, group, wanted) for group in groups if group]
    return ray.data.from_arrow_refs([ray.put(_block(top)), *refs])


def _top_levels(root: Path, wanted: tuple[str, ...], enough: int) -> tuple[list[str], list[Path]]:
    """The keys of the files in the top levels, and the folders below them (each a subtree
    a task walks): level by level until there are `enough` folders."""
    keys: list[str] = []
    frontier = [root]
    for _ in range(TOP_LEVELS):
        below: list[Path] = []
        for folder in frontier:
            # One level of os.walk: the same files and folders as LocalStorage.list sees.
            dirpath, dirnames, filenames = next(os.walk(folder, onerror=_unlistable))
            keys += level_keys(root, dirpath, filenames, wanted)
            for name in dirnames:
                path = folder / name
                # Hidden folders skipped, links to folders not followed, as os.walk does.
                if not name.startswith(".") and not path.is_symlink():
                    below.append(path)
        frontier = below
        if len(frontier) >= enough or not frontier:
            break
    return keys, frontier


@ray.remote(num_cpus=1)
def _listed(root: Path, subtrees: list[Path], wanted: tuple[str, ...]) -> pa.Table:
    return _block([key for top in subtrees for key in walk_keys(root, top, wanted)])


def _block(keys: list[str]) -> pa.Table:
    return pa.table({KEY: pa.array(sorted(set(keys)), pa.string())})


def local_versions(
    storage: LocalStorage, extensions: tuple[str, ...], spread_from: int | None = None
) -> dict[str, str | None] | Listed:
    """The tree's keys, sorted (no versions: a local file is read as it is), for a job.
    Subtrees are walked here one after another while the tree looks smaller than
    LOCAL_TASKS_FROM keys, or `spread_from` (keys so far, scaled by the subtrees left); past
    that, the subtrees left are walked by tasks. Nothing is walked twice either way. At
    `spread_from` keys or more (None: never) they stay in Ray's blocks, sorted, a `Listed`;
    else they come back as a dict."""
    if not ray.is_initialized():
        return storage.list_versions(extensions)
    if not storage.root.is_dir():
        raise FileNotFoundError(f"source folder does not exist: {storage.root}")
    wanted = tuple(e.lower() for e in extensions)
    walk_here_below = min(LOCAL_TASKS_FROM, spread_from or LOCAL_TASKS_FROM)
    # This node's CPUs, not the cluster's: no call to Ray for a tree walked here (a preview
    # lists in a task whose memory is bounded; a first GCS call there costs threads).
    cpus = os.cpu_count() or 1
    keys, subtrees = _top_levels(storage.root, wanted, cpus * SUBTREES_PER_CPU)
    walked = 0
    while walked < len(subtrees):
        keys += walk_keys(storage.root, subtrees[walked], wanted)
        walked += 1
        if len(keys) * len(subtrees) // walked >= walk_here_below:
            break
    rest = subtrees[walked:]
    groups = [rest[i :: cpus * SUBTREES_PER_CPU] for i in range(cpus * SUBTREES_PER_CPU)]
    refs = [_listed.remote(storage.root, g, wanted) for g in groups if g]
    if spread_from is None or (not refs and len(keys) < spread_from):
        tables = ray.get(refs)
    else:
        listed = held(ray.data.from_arrow_refs([ray.put(_block(keys)), *refs]))
        if listed.count >= spread_from:
            # One global order whatever the cluster's size: a spread job's blocks (and
            # manifest parts) are cut from it.
            return held(listed.keys.sort(KEY))
        keys, tables = [], listed.keys.iter_batches(batch_size=None, batch_format="pyarrow")
    for table in tables:
        keys += table[KEY].to_pylist()
    return dict.fromkeys(sorted(set(keys)))
