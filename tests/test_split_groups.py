"""Grouped, three-way and stratified splits: no group in two splits, counts, determinism."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from motoray.ops import operators_for
from motoray.seeding import stable_hash
from motoray.spec import RequestError, TrainTestSplit, parse_requests
from motoray.split import assign

# 20 videos x 10 frames, named like the real ones: <video id>_main_<frame>.jpeg
VIDEOS = [f"{stable_hash('video', v):x}"[:26] for v in range(20)]
FRAMES = [f"{video}_main_{frame}.jpeg" for video in VIDEOS for frame in range(400, 410)]
BY_VIDEO = r"regex:^([a-z0-9]+)_main_"


def _split(train=80, test=20, **extra) -> TrainTestSplit:
    return TrainTestSplit(train_ratio=train, test_ratio=test, **extra)


def _splits_of(groups: dict[str, str], splits: dict[str, str]) -> dict[str, set[str]]:
    found = defaultdict(set)
    for key, split in splits.items():
        found[groups[key]].add(split)
    return found


def test_no_video_in_two_splits_sizes_reported_and_deterministic():
    split = _split(group_by=BY_VIDEO)
    result = assign(FRAMES, split, seed=7)
    video_of = {key: key.split("_")[0] for key in FRAMES}
    assert all(len(s) == 1 for s in _splits_of(video_of, result.split).values())
    assert result.group == video_of
    assert result.report["splits"] == {
        "train": {"images": 160, "groups": 16, "ratio": 0.8, "target_ratio": 0.8},
        "test": {"images": 40, "groups": 4, "ratio": 0.2, "target_ratio": 0.2},
    }
    assert result.report["group_by"] == BY_VIDEO and result.report["ungrouped_images"] == 0

    shuffled = FRAMES[:]
    random.Random(1).shuffle(shuffled)
    assert assign(shuffled, split, seed=7).split == result.split
    assert assign(FRAMES, split, seed=8).split != result.split


def test_regex_without_capture_group_uses_the_whole_match_and_unmatched_stand_alone():
    keys = ["a1_x.jpg", "a1_y.jpg", "b2_x.jpg", "stray.jpg"]
    result = assign(keys, _split(50, 50, group_by=r"regex:^[a-z]\d"), seed=0)
    assert result.group == {"a1_x.jpg": "a1", "a1_y.jpg": "a1", "b2_x.jpg": "b2", "stray.jpg": None}
    assert result.split["a1_x.jpg"] == result.split["a1_y.jpg"]
    assert result.report["ungrouped_images"] == 1


def test_folder_groups_stay_together_and_counts_come_close():
    sizes = [1, 2, 3, 5, 8, 13, 4, 6, 7, 9, 2, 3]  # 63 images in 12 folders, unequal
    keys = [f"shoot{f:02d}/img{i}.jpg" for f, n in enumerate(sizes) for i in range(n)]
    keys += ["loose.jpg"]  # directly under the root: the "." group
    result = assign(keys, _split(70, 30, group_by="folder"), seed=3)
    assert all(len(s) == 1 for s in _splits_of(result.group, result.split).values())
    assert result.group["loose.jpg"] == "."
    train = result.report["splits"]["train"]["images"]
    assert abs(train - round(64 * 0.7)) <= max(sizes)
    assert sum(s["groups"] for s in result.report["splits"].values()) == 13


def test_one_image_groups_give_exact_counts():
    keys = [f"f{i:03d}/only.jpg" for i in range(101)]
    result = assign(keys, _split(80, 20, group_by="folder"), seed=0)
    assert Counter(result.split.values()) == {"train": 81, "test": 20}


def test_the_default_is_unchanged_byte_for_byte():
    # The original algorithm: sort by seeded hash, the first round(n * train) are train.
    split = _split(80, 20)
    order = sorted(FRAMES, key=lambda key: (stable_hash(5, "split", key), key))
    expected = {key: "train" if i < 160 else "test" for i, key in enumerate(order)}
    assert assign(FRAMES, split, seed=5).split == expected
    assert assign(FRAMES, split, seed=5).group == dict.fromkeys(FRAMES)


def test_validation_split_exact_per_image_and_whole_videos_when_grouped():
    split = _split(70, 15, validation_ratio=15)
    assert Counter(assign(FRAMES, split, seed=0).split.values()) == {
        "train": 140,
        "validation": 30,
        "test": 30,
    }
    grouped = assign(FRAMES, _split(0.7, 0.15, validation_ratio=0.15, group_by=BY_VIDEO), seed=0)
    assert all(len(s) == 1 for s in _splits_of(grouped.group, grouped.split).values())
    assert {n: s["groups"] for n, s in grouped.report["splits"].items()} == {
        "train": 14,
        "validation": 3,
        "test": 3,
    }


# Unbalanced classes: 61 cats, 23 dogs, 9 birds, 4 frogs.
CLASSES = {"cat": 61, "dog": 23, "bird": 9, "frog": 4}
LABELLED = [f"{label}/img{i:03d}.jpg" for label, n in CLASSES.items() for i in range(n)]
LABELS = {key: key.split("/")[0] for key in LABELLED}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_splits_keep_every_class_within_one_image_of_its_ratio(seed):
    ratios = {"train": 0.7, "validation": 0.2, "test": 0.1}
    split = _split(70, 10, validation_ratio=20, stratify=True)
    result = assign(LABELLED, split, seed, LABELS)
    per_split = result.report["splits"]
    for label, n in CLASSES.items():
        for name, ratio in ratios.items():
            assert abs(per_split[name]["labels"].get(label, 0) - n * ratio) <= 1, (label, name)
    assert sum(s["images"] for s in per_split.values()) == len(LABELLED)


def test_stratified_groups_never_straddle_splits():
    # Each class has videos of 5 frames; grouping wins over exact proportions.
    keys = [
        f"{label}/v{v}_f{f}.jpg" for label, n in CLASSES.items() for v in range(n) for f in range(5)
    ]
    labels = {key: key.split("/")[0] for key in keys}
    split = _split(80, 20, stratify=True, group_by=r"regex:^(\w+/v\d+)_")
    result = assign(keys, split, 4, labels)
    assert all(len(s) == 1 for s in _splits_of(result.group, result.split).values())
    for label, n in CLASSES.items():
        train = result.report["splits"]["train"]["labels"][label]
        assert abs(train - 5 * n * 0.8) <= 5  # within one video of the class's share


def test_stratify_needs_labels():
    with pytest.raises(ValueError, match="stratify needs a labelled source"):
        assign(LABELLED, _split(stratify=True), 0, labels=None)


OPS = operators_for()


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"group_by": "regex:(["}, "train_test_split.group_by", "invalid regular expression"),
        ({"group_by": "clip"}, "train_test_split.group_by", '"image", "folder"'),
        ({"group_by": "segment:0"}, "train_test_split.group_by", '"segment:<seconds>" needs'),
        ({"group_by": "regex:"}, "train_test_split.group_by", "needs a pattern"),
        ({"validation_ratio": 10}, "train_test_split", "validation_ratio must sum to 100"),
        ({"stratify": "yes"}, "train_test_split.stratify", "boolean"),
    ],
)
def test_bad_split_fields_are_422_naming_the_field(fields, loc, words):
    body = {"name": "MotoGP", "train_test_split": {"train_ratio": 80, "test_ratio": 20, **fields}}
    with pytest.raises(RequestError) as info:
        parse_requests(body, OPS, ["MotoGP"])
    assert info.value.status == 422
    messages = [e["msg"] for e in info.value.errors if ".".join(map(str, e["loc"])) == loc]
    assert any(words in m for m in messages), info.value.errors


def test_new_fields_are_optional_and_accept_fractions():
    [old] = parse_requests(
        {"name": "MotoGP", "train_test_split": {"train_ratio": 80, "test_ratio": 20}}, OPS
    )
    assert old.train_test_split.group_by == "image" and not old.train_test_split.stratify
    assert list(old.train_test_split.fractions) == ["train", "test"]
    [new] = parse_requests(
        {
            "name": "MotoGP",
            "train_test_split": {
                "train_ratio": 0.6,
                "test_ratio": 0.2,
                "validation_ratio": 0.2,
                "group_by": "folder",
                "stratify": True,
            },
        },
        OPS,
    )
    assert [float(f) for f in new.train_test_split.fractions.values()] == [0.6, 0.2, 0.2]
