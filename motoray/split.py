"""Train/validation/test assignment, decided per group of images before any augmentation.

Every image belongs to a group: itself (`group_by: image`, the default), its folder
(`folder`), or what a regular expression finds in its key (`regex:<pattern>`, e.g. the video
id of a frame). A group never straddles two splits, so near-duplicate frames of one video
cannot leak from train into test. The algorithm:

1. target image counts by cumulative rounding: train = round(n * train), train + validation
   = round(n * (train + validation)), test = the rest;
2. groups in the order of a seeded stable hash of their name;
3. first fit: each group goes to the first split (train, validation, test) it fits in without
   passing that split's target; a group that fits nowhere goes to the split furthest below
   its target.

With one-image groups this is exact, and the same cut as always: the first round(n * train)
images in hash order are train. With bigger groups each split ends within about one group of
its target; `report` says where it ended. With `stratify`, the same runs separately per label
(a group counts under its most common label), so every split keeps each class's share within
one image when groups are single images, and as closely as groups allow otherwise.

Deterministic: the result depends only on the seed, the keys and their labels, never on
listing order, workers or retries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from motoray.regex import compile_user_regex
from motoray.seeding import stable_hash
from motoray.spec import TrainTestSplit

ALL = "all"
ROOT_FOLDER = "."  # the group of images directly under the source root, with `folder`


@dataclass(frozen=True)
class Assignment:
    """Where every key goes, and what job.json reports about it."""

    split: dict[str, str]  # key -> "train" | "validation" | "test" | "all"
    group: dict[str, str | None]  # key -> group name; None: the image is a group of its own
    label: Mapping[str, str | None]  # key -> label; empty for an unlabelled source
    report: dict

    def placement(self, key: str) -> dict[str, str | None]:
        """The per-image columns of the manifest that are decided before processing."""
        return {"split": self.split[key], "label": self.label.get(key), "group": self.group[key]}


def assign(
    keys: Sequence[str],
    split: TrainTestSplit | None,
    seed: int,
    labels: Mapping[str, str | None] | None = None,
    *,
    groups: Mapping[str, str | None] | None = None,
    sizes: Mapping[str, int] | None = None,
    group_by: str | None = None,
    merged: Mapping[str, str] | None = None,
) -> Assignment:
    """Split, group and label of every key; `labels` is None for an unlabelled source.

    A video source places units that stand for many images: `groups` names their groups
    (instead of `group_by`), `sizes` says how many images each stands for (default 1).
    `merged`: groups joined after grouping (see `grouper`), given groups included: groups
    of near-duplicates become one (motoray.near_duplicates)."""
    if split is not None and split.stratify and labels is None:
        raise ValueError(
            "train_test_split.stratify needs a labelled source: set `labels: folder` on the "
            "source in the config, or drop stratify"
        )
    labels = labels or {}
    group_by = group_by or (split.group_by if split is not None else "image")
    if groups is None:
        groups = group_names(keys, group_by, merged)
    elif merged:  # a video source's units: their groups were given
        groups = {key: merged.get(group or key, group) for key, group in groups.items()}
    else:
        groups = dict(groups)
    sizes = sizes or {}
    if split is None:
        chosen = dict.fromkeys(keys, ALL)
    else:
        # An image without a group is a group of its own, named by its key.
        members: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            members[groups[key] or key].append(key)
        strata: dict[str | None, dict[str, int]] = defaultdict(dict)
        for group, group_keys in members.items():
            stratum = _majority(labels.get(k) for k in group_keys) if split.stratify else None
            strata[stratum][group] = sum(sizes.get(k, 1) for k in group_keys)
        fill: dict[str, str] = {}
        # (Not `sizes`: that name is the units' sizes, which the report counts.)
        for group_sizes in strata.values():
            fill.update(first_fit(group_sizes, split.fractions, seed))
        chosen = {key: fill[groups[key] or key] for key in keys}
    report = _report(chosen, groups, labels, split, group_by, sizes)
    return Assignment(chosen, groups, labels, report)


def group_names(
    keys: Sequence[str], group_by: str, merged: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """key -> the name of its group, or None where the image is a group of its own."""
    if group_by == "image" and not merged:
        return dict.fromkeys(keys)
    group_of = grouper(group_by, merged)
    return {key: group_of(key) for key in keys}


def grouper(group_by: str, merged: Mapping[str, str] | None = None) -> Callable[[str], str | None]:
    """The one place a key's group is decided: key -> its group's name, or None where the
    image is a group of its own (named by its key wherever groups are counted).

    `merged` (group name -> the group it joins; an image of its own is named by its key)
    applies after `group_by`, before group sizes are summed: near-duplicates found across
    groups land in one. None or empty: `group_by` alone."""
    if group_by == "image":
        found: Callable[[str], str | None] = lambda key: None  # noqa: E731
    elif group_by == "folder":
        found = lambda key: key.rpartition("/")[0] or ROOT_FOLDER  # noqa: E731
    else:
        pattern = compile_user_regex(group_by.removeprefix("regex:"))
        found = lambda key: _match(pattern, key)  # noqa: E731
    if not merged:
        return found

    def joined(key: str) -> str | None:
        own = found(key)
        name = own or key
        into = merged.get(name, name)
        return own if into == name else into

    return joined


def _match(pattern, key: str) -> str | None:
    """The first capture group, else the whole match; None for no (or an empty) match."""
    found = pattern.search(key)
    if found is None:
        return None
    if pattern.groups and found.group(1) is not None:
        return found.group(1) or None
    return found.group(0) or None


def _majority(labels) -> str | None:
    return majority(Counter(labels))


def majority(counts: Counter) -> str | None:
    """The most common label of a group, from its label counts."""
    # Ties go to the smallest label name, so the choice never depends on listing order.
    return min(counts, key=lambda label: (-counts[label], label is not None, label or ""))


def first_fit(sizes: dict[str, int], fractions: dict[str, Fraction], seed: int) -> dict[str, str]:
    """group -> split: first fit in seeded hash order (see the module docstring)."""
    targets = split_targets(sum(sizes.values()), fractions)
    counts = dict.fromkeys(targets, 0)
    chosen = {}
    for group in sorted(sizes, key=lambda g: (stable_hash(seed, "split", g), g)):
        size = sizes[group]
        fits = [name for name in targets if counts[name] + size <= targets[name]]
        name = fits[0] if fits else max(targets, key=lambda s: targets[s] - counts[s])
        counts[name] += size
        chosen[group] = name
    return chosen


def split_targets(total: int, fractions: dict[str, Fraction]) -> dict[str, int]:
    """Images each split aims at, by cumulative rounding (step 1 of the module docstring)."""
    targets, placed, cumulative = {}, 0, Fraction(0)
    for name, share in fractions.items():
        cumulative += share
        targets[name] = round(total * cumulative) - placed
        placed += targets[name]
    return targets


def _report(
    chosen: dict[str, str],
    groups: dict[str, str | None],
    labels: Mapping[str, str | None],
    split: TrainTestSplit | None,
    group_by: str,
    sizes: Mapping[str, int],
) -> dict:
    """Planned images, groups and labels per split, with actual and requested ratios."""
    names = list(split.fractions) if split is not None else [ALL]
    fractions = split.fractions if split is not None else {ALL: Fraction(1)}
    images: Counter[str] = Counter()
    members = {name: set() for name in names}
    per_label: dict[str, Counter[str]] = {name: Counter() for name in names}
    for key, name in chosen.items():
        images[name] += sizes.get(key, 1)
        members[name].add(groups[key] or key)
        if labels.get(key) is not None:
            per_label[name][labels[key]] += sizes.get(key, 1)
    total = images.total()
    splits = {}
    for name in names:
        splits[name] = {
            "images": images[name],
            "groups": len(members[name]),
            "ratio": round(images[name] / total, 4) if total else 0.0,
            "target_ratio": round(float(fractions[name]), 4),
        }
        if labels:
            splits[name]["labels"] = dict(sorted(per_label[name].items()))
    regex = group_by.startswith("regex:")
    return {
        "group_by": group_by,
        "stratify": bool(split and split.stratify),
        # Keys the regex found no group in: each one is a group of its own.
        "ungrouped_images": sum(g is None for g in groups.values()) if regex else 0,
        "splits": splits,
    }
