"""The split computed over key blocks by Ray tasks (pipeline/placing.py) is today's split,
byte for byte: the digests tests/test_split_pinned.py pins, the same report, and the same
result with near-duplicate groups merged."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pyarrow as pa
import pytest
import ray

from motoray.labels import labels_of
from motoray.pipeline.placing import plan
from motoray.spec import TrainTestSplit
from motoray.split import assign
from motoray.split_cut import Rules
from tests.test_split_pinned import KEYS, PINNED, SPLIT, digest

pytestmark = pytest.mark.usefixtures("ray_local")

CASES = {
    "image": ("image", False),
    "folder": ("folder", False),
    "regex": (r"regex:^video(\d+)5", False),
    "stratify": ("image", True),
}


def key_blocks(keys: list[str], blocks: int = 7) -> ray.data.Dataset:
    """`keys` shuffled into blocks: the split must not depend on listing order."""
    shuffled = random.Random(3).sample(keys, len(keys))
    size = -(-len(shuffled) // blocks)
    tables = [pa.table({"key": shuffled[i : i + size]}) for i in range(0, len(shuffled), size)]
    return ray.data.from_arrow(tables).materialize()


def placed(keys: list[str], rules: Rules):
    cut, report = plan(key_blocks(keys), rules)
    splits, groups = cut.place(keys)
    return SimpleNamespace(split=dict(zip(keys, splits)), group=dict(zip(keys, groups))), report


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_distributed_split_of_10_5_keys_is_todays(case):
    group_by, stratify = CASES[case]
    split = TrainTestSplit(**SPLIT, group_by=group_by, stratify=stratify)
    labels = "folder" if stratify else None
    assignment, report = placed(KEYS, Rules(split, 7, group_by, labels))
    assert digest(KEYS, assignment) == PINNED[case]
    today = assign(KEYS, split, 7, labels_of(KEYS, labels) if labels else None)
    assert report == today.report


@pytest.mark.parametrize("group_by", ["image", "folder"])
def test_merged_groups_split_as_assign_splits_them(group_by):
    keys = KEYS[:20_000]
    # Frames 0 and 1 of every video are near-duplicates of frame 2 of the next video.
    merged = {}
    for v in range(199):
        target = (
            f"video{v + 1:06d}/frame_000002.jpg" if group_by == "image" else f"video{v + 1:06d}"
        )
        for f in (0, 1):
            own = f"video{v:06d}/frame_{f:06d}.jpg" if group_by == "image" else f"video{v:06d}"
            merged[own] = target
    split = TrainTestSplit(**SPLIT, group_by=group_by)
    assignment, report = placed(keys, Rules(split, 7, group_by, None, merged))
    today = assign(keys, split, 7, merged=merged)
    assert assignment.split == today.split and assignment.group == today.group
    assert report == today.report
    if group_by == "image":  # a merged pair never straddles two splits
        for v in range(199):
            joined = {today.split[f"video{v:06d}/frame_000000.jpg"],
                      today.split[f"video{v + 1:06d}/frame_000002.jpg"]}  # fmt: skip
            assert len(joined) == 1


def test_no_merge_is_todays_split():
    split = TrainTestSplit(**SPLIT, group_by="folder")
    keys = KEYS[:5000]
    assert assign(keys, split, 7, merged={}).split == assign(keys, split, 7).split


def test_without_a_split_every_key_is_in_all_and_groups_are_counted():
    keys = KEYS[:3000]
    for group_by in ("image", "folder"):
        assignment, report = placed(keys, Rules(None, 7, group_by, None))
        today = assign(keys, None, 7, group_by=group_by)
        assert set(assignment.split.values()) == {"all"}
        assert report == today.report
        assert assignment.group == today.group


def test_a_split_that_puts_every_key_in_one_part_and_a_tiny_source():
    split = TrainTestSplit(train_ratio=100, validation_ratio=0, test_ratio=0)
    for keys in (KEYS[:1], KEYS[:2], KEYS[:1000]):
        assignment, report = placed(keys, Rules(split, 7))
        assert assignment.split == assign(keys, split, 7).split
        assert report == assign(keys, split, 7).report
