"""`split.assign`'s result without the keys in one place: per-block parts that the driver
combines into a `Cut`, small whatever the number of keys, that tasks apply to their keys.

Single-image groups (`group_by: image`, nothing merged): first fit in hash order puts the
first round(n * train) images of the (hash, key) order in train, the next in validation,
the rest in test (per label with `stratify`). So the split is a rank threshold: the driver
sums 2^16-bucket histograms of the hashes, then takes the (hash, key) at each cut rank from
the one bucket it falls in. The driver holds a histogram per label and a bucket's keys.

Larger groups: the driver holds one (size, label counts) entry per group, never per key,
and runs `split.first_fit` on them, as `assign` does. Pure Python, no Ray
(pipeline/placing.py runs the passes).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from motoray.labels import LabelRule, label_of
from motoray.seeding import stable_hash
from motoray.spec import TrainTestSplit
from motoray.split import ALL, first_fit, grouper, majority, split_targets

BUCKET_BITS = 16
_AFTER_ALL = (1 << 64, "")  # a cut no key reaches: every key is below it


def hashes(keys: Sequence[str], seed: int) -> np.ndarray:
    """The seeded hash that orders split groups (a single image is the group of its key)."""
    return np.fromiter((stable_hash(seed, "split", k) for k in keys), np.uint64, len(keys))


def by_rank(split: TrainTestSplit | None, group_by: str, merged: Mapping | None) -> bool:
    """Whether the split is a rank threshold (every group a single image)."""
    return split is not None and group_by == "image" and not merged


@dataclass(frozen=True)
class Rules:
    """What a task needs to know to count or place its keys."""

    split: TrainTestSplit | None
    seed: int
    group_by: str = "image"
    labels: LabelRule = None
    merged: Mapping[str, str] | None = None

    @property
    def stratify(self) -> bool:
        return self.split is not None and self.split.stratify

    def strata(self, keys: Sequence[str]) -> list[str | None]:
        return [label_of(k, self.labels) for k in keys] if self.stratify else [None] * len(keys)


def histogram(keys: Sequence[str], rules: Rules) -> dict[str | None, np.ndarray]:
    """Per stratum: how many of `keys` fall in each hash bucket (the hash's top bits)."""
    buckets = (hashes(keys, rules.seed) >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)
    size = 1 << BUCKET_BITS
    if not rules.stratify:
        return {None: np.bincount(buckets, minlength=size)}
    strata = np.array(rules.strata(keys), dtype=object)
    return {
        stratum: np.bincount(buckets[strata == stratum], minlength=size)
        for stratum in set(strata.tolist())
    }


@dataclass(frozen=True)
class Wanted:
    """Where each cut rank falls: stratum -> [(bucket, rank within it) or None (past all)]."""

    at: dict[str | None, list[tuple[int, int] | None]]

    def buckets(self) -> dict[str | None, set[int]]:
        return {s: {w[0] for w in ranks if w is not None} for s, ranks in self.at.items()}


def wanted(histograms: Mapping[str | None, np.ndarray], split: TrainTestSplit) -> Wanted:
    """The bucket (and rank in it) of each cut: after train, after validation..."""
    at = {}
    for stratum, counts in histograms.items():
        total = int(counts.sum())
        cumulative = np.cumsum(counts)
        ranks, rank = [], 0
        for target in list(split_targets(total, split.fractions).values())[:-1]:
            rank += target
            if rank >= total:
                ranks.append(None)
                continue
            bucket = int(np.searchsorted(cumulative, rank, side="right"))
            before = int(cumulative[bucket - 1]) if bucket else 0
            ranks.append((bucket, rank - before))
        at[stratum] = ranks
    return Wanted(at)


def in_buckets(
    keys: Sequence[str], rules: Rules, buckets: Mapping[str | None, set[int]]
) -> list[tuple[str | None, int, str]]:
    """(stratum, hash, key) of the keys in the wanted buckets of their stratum."""
    shift = 64 - BUCKET_BITS
    return [
        (stratum, int(h), key)
        for key, h, stratum in zip(keys, hashes(keys, rules.seed), rules.strata(keys))
        if int(h) >> shift in buckets.get(stratum, ())
    ]


@dataclass(frozen=True)
class Cut:
    """Where every key goes: from rank thresholds, or from its group's split."""

    rules: Rules
    # Single-image groups: stratum -> the (hash, key) each split after the first starts at.
    thresholds: dict[str | None, tuple[tuple[int, str], ...]] | None = None
    # Larger groups: group name (a key, for an image of its own) -> split.
    chosen: dict[str, str] | None = None

    def place(self, keys: Sequence[str]) -> tuple[list[str], list[str | None]]:
        """Each key's split and group, as `split.assign` gives them."""
        group_of = grouper(self.rules.group_by, self.rules.merged)
        groups = [group_of(k) for k in keys]
        split = self.rules.split
        if split is None:
            return [ALL] * len(keys), groups
        if self.chosen is not None:
            return [self.chosen[g or k] for k, g in zip(keys, groups)], groups
        names = list(split.fractions)
        strata = self.rules.strata(keys)
        placed = [
            names[bisect.bisect_right(self.thresholds[s], (int(h), k))]
            for k, h, s in zip(keys, hashes(keys, self.rules.seed), strata)
        ]
        return placed, groups

    def groups_per_split(self, images: Mapping[str, int]) -> dict[str, int]:
        """Groups each split holds, from the images it holds (`images`, from `tally`)."""
        if self.chosen is not None:
            return dict(Counter(self.chosen.values()))
        return dict(images)  # every group a single image


def tally(keys: Sequence[str], cut: Cut) -> Counter:
    """(split, label, ungrouped) -> images: what a report counts, for some keys."""
    splits, groups = cut.place(keys)
    labels = [label_of(k, cut.rules.labels) for k in keys]
    return Counter(zip(splits, labels, (g is None for g in groups)))


def report(cut: Cut, counted: Counter, groups: int | None = None) -> dict:
    """What `split.assign` reports, from the tallies of every key (`groups`: how many there
    are, for a job without a split)."""
    rules, split = cut.rules, cut.rules.split
    names = list(split.fractions) if split is not None else [ALL]
    fractions = split.fractions if split is not None else {ALL: Fraction(1)}
    images: Counter[str] = Counter()
    per_label: dict[str, Counter] = {name: Counter() for name in names}
    ungrouped = 0
    for (name, label, alone), n in counted.items():
        images[name] += n
        ungrouped += n if alone else 0
        if label is not None:
            per_label[name][label] += n
    total = images.total()
    if split is None:
        per_split = {ALL: total if groups is None else groups}
    else:
        per_split = cut.groups_per_split(images)
    splits = {}
    for name in names:
        splits[name] = {
            "images": images[name],
            "groups": per_split.get(name, 0),
            "ratio": round(images[name] / total, 4) if total else 0.0,
            "target_ratio": round(float(fractions[name]), 4),
        }
        if rules.labels is not None and total:
            splits[name]["labels"] = dict(sorted(per_label[name].items()))
    regex = rules.group_by.startswith("regex:")
    return {
        "group_by": rules.group_by,
        "stratify": rules.stratify,
        "ungrouped_images": ungrouped if regex else 0,
        "splits": splits,
    }


def rank_cut(rules: Rules, found: Wanted, entries: Iterable[tuple[str | None, int, str]]) -> Cut:
    """The cut from the wanted buckets' entries (`in_buckets` of every block)."""
    by_bucket: dict[tuple[str | None, int], list[tuple[int, str]]] = defaultdict(list)
    shift = 64 - BUCKET_BITS
    for stratum, h, key in entries:
        by_bucket[stratum, h >> shift].append((h, key))
    thresholds = {}
    for stratum, ranks in found.at.items():
        cuts = []
        for where in ranks:
            if where is None:
                cuts.append(_AFTER_ALL)
                continue
            bucket, rank = where
            cuts.append(sorted(by_bucket[stratum, bucket])[rank])
        thresholds[stratum] = tuple(cuts)
    return Cut(rules, thresholds=thresholds)


def group_sizes(keys: Sequence[str], rules: Rules) -> dict[str, Counter]:
    """Per group (a key, for an image of its own): its images per label (None: none)."""
    group_of = grouper(rules.group_by, rules.merged)
    labels = [label_of(k, rules.labels) for k in keys]
    found: dict[str, Counter] = defaultdict(Counter)
    for key, label in zip(keys, labels):
        found[group_of(key) or key][label] += 1
    return found


def group_cut(rules: Rules, groups: Mapping[str, Counter]) -> Cut:
    """First fit of the groups, per stratum (a group's most common label), as `assign`."""
    split = rules.split
    if split is None:
        return Cut(rules, chosen={})
    strata: dict[str | None, dict[str, int]] = defaultdict(dict)
    for group, labels in groups.items():
        stratum = majority(labels) if split.stratify else None
        strata[stratum][group] = labels.total()
    chosen: dict[str, str] = {}
    for sizes in strata.values():
        chosen.update(first_fit(sizes, split.fractions, rules.seed))
    return Cut(rules, chosen=chosen)
