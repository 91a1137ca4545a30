"""Train/test assignment, decided per source image before any augmentation.

Exact counts (train = round(n * train_ratio)) and deterministic: images are
ordered by a seeded stable hash of their key, so the result depends only on
the seed and the set of keys, never on listing order, workers or retries.
"""

from __future__ import annotations

from collections.abc import Sequence

from motoray.seeding import stable_hash
from motoray.spec import TrainTestSplit

ALL = "all"


def assign_splits(keys: Sequence[str], split: TrainTestSplit | None, seed: int) -> dict[str, str]:
    """key -> "train" | "test" (or "all" when no split is requested)."""
    if split is None:
        return dict.fromkeys(keys, ALL)
    shuffled = sorted(keys, key=lambda key: (stable_hash(seed, "split", key), key))
    n_train = round(len(shuffled) * split.train_fraction)
    return {key: "train" if i < n_train else "test" for i, key in enumerate(shuffled)}
