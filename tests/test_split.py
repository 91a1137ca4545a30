"""Split: exact counts, deterministic, independent of listing order."""

from __future__ import annotations

import random

import pytest

from motoray.spec import TrainTestSplit
from motoray.split import assign

KEYS = [f"clip{c:03d}_frame{f:04d}.jpg" for c in range(10) for f in range(7)]


@pytest.mark.parametrize(
    ("n", "train", "test", "expected_train"),
    [
        (50, 80, 20, 40),
        (70, 80, 20, 56),
        (7, 0.5, 0.5, 4),
        (3, 1, 0, 3),
        (3, 0, 100, 0),
        (1, 80, 20, 1),
    ],
)
def test_counts_are_exact(n, train, test, expected_train):
    splits = assign(KEYS[:n], TrainTestSplit(train_ratio=train, test_ratio=test), seed=0).split
    assert sum(s == "train" for s in splits.values()) == expected_train
    assert sum(s == "test" for s in splits.values()) == n - expected_train


def test_deterministic_and_independent_of_order():
    split = TrainTestSplit(train_ratio=80, test_ratio=20)
    shuffled = KEYS[:]
    random.Random(4).shuffle(shuffled)
    assert assign(KEYS, split, seed=3).split == assign(shuffled, split, seed=3).split
    assert assign(KEYS, split, seed=3).split != assign(KEYS, split, seed=4).split


def test_no_split_means_all():
    assert set(assign(KEYS, None, seed=0).split.values()) == {"all"}
