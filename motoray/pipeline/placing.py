"""The split of a source whose keys are a Ray dataset (pipeline/listing.py): the passes of
split_cut run as Ray Data maps over the key blocks, and only their small results reach the
driver: hash histograms and a bucket's keys, or one entry per group. The `Cut` it returns
places any key, in the tasks that process it, as `split.assign` would."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import ray

from motoray import split_cut
from motoray.split_cut import Cut, Rules
from motoray.storage.keyfile import KEY


def plan(keys: ray.data.Dataset, rules: Rules) -> tuple[Cut, dict]:
    """The cut and the split's report (what job.json says of it) for every key of `keys`,
    a dataset with a `key` column, each key once. Materialize it first: it is read by
    two to three passes."""
    if rules.stratify and rules.labels is None:
        raise ValueError(
            "train_test_split.stratify needs a labelled source: set `labels: folder` on the "
            "source in the config, or drop stratify"
        )
    groups = None
    if split_cut.by_rank(rules.split, rules.group_by, rules.merged):
        histograms: dict[str | None, np.ndarray] = {}
        for table in _mapped(keys, _histogram, rules):
            for stratum, bucket, n in _rows(table, "stratum", "bucket", "count"):
                counts = histograms.setdefault(stratum, np.zeros(1 << split_cut.BUCKET_BITS, int))
                counts[bucket] += n
        wanted = split_cut.wanted(histograms, rules.split)
        buckets = wanted.buckets()
        entries = (
            (stratum, h, key)
            for table in _mapped(keys, _in_buckets, rules, buckets=buckets)
            for stratum, h, key in _rows(table, "stratum", "hash", KEY)
        )
        cut = split_cut.rank_cut(rules, wanted, entries)
    elif rules.split is None and rules.group_by == "image" and not rules.merged:
        cut = Cut(rules, chosen={})
    else:
        sizes: dict[str, Counter] = defaultdict(Counter)
        for table in _mapped(keys, _group_sizes, rules):
            for group, label, n in _rows(table, "group", "label", "count"):
                sizes[group][label] += n
        cut = split_cut.group_cut(rules, sizes)
        groups = len(sizes)
    counted: Counter = Counter()
    shared = ray.put(cut)
    for table in _mapped(keys, _tally, rules, cut=shared):
        for name, label, alone, n in _rows(table, "split", "label", "alone", "count"):
            counted[name, label, alone] += n
    return cut, split_cut.report(cut, counted, groups)


def _mapped(
    keys: ray.data.Dataset, task: Callable[..., dict], rules: Rules, **kwargs
) -> Iterator[pa.Table]:
    """`task(keys of a block, rules, **kwargs)` over every block: its small result tables."""

    def on_block(batch: pa.Table) -> dict:
        return task(batch[KEY].to_pylist(), rules, **kwargs)

    mapped = keys.map_batches(on_block, batch_size=None, batch_format="pyarrow")
    yield from mapped.iter_batches(batch_size=None, batch_format="pyarrow")


def _rows(table: pa.Table, *columns: str) -> Iterator[tuple]:
    return zip(*(table[c].to_pylist() for c in columns))


def _histogram(keys: list[str], rules: Rules) -> dict:
    strata, buckets, counts = [], [], []
    for stratum, counted in split_cut.histogram(keys, rules).items():
        used = np.flatnonzero(counted)
        strata += [stratum] * len(used)
        buckets += used.tolist()
        counts += counted[used].tolist()
    return {
        "stratum": pa.array(strata, pa.string()),
        "bucket": pa.array(buckets, pa.int64()),
        "count": pa.array(counts, pa.int64()),
    }


def _in_buckets(keys: list[str], rules: Rules, buckets: dict) -> dict:
    found = split_cut.in_buckets(keys, rules, buckets)
    return {
        "stratum": pa.array([s for s, _, _ in found], pa.string()),
        "hash": pa.array([h for _, h, _ in found], pa.uint64()),
        KEY: pa.array([k for _, _, k in found], pa.string()),
    }


def _group_sizes(keys: list[str], rules: Rules) -> dict:
    rows = [(g, label, n) for g, labels in split_cut.group_sizes(keys, rules).items()
            for label, n in labels.items()]  # fmt: skip
    return {
        "group": pa.array([g for g, _, _ in rows], pa.string()),
        "label": pa.array([label for _, label, _ in rows], pa.string()),
        "count": pa.array([n for _, _, n in rows], pa.int64()),
    }


def _tally(keys: list[str], rules: Rules, cut) -> dict:
    counted = split_cut.tally(keys, ray.get(cut))
    return {
        "split": pa.array([s for s, _, _ in counted], pa.string()),
        "label": pa.array([label for _, label, _ in counted], pa.string()),
        "alone": pa.array([a for _, _, a in counted], pa.bool_()),
        "count": pa.array(list(counted.values()), pa.int64()),
    }
