"""Today's split of 10^5 keys, pinned as digests: any change to how keys are split (the
driver's algorithm, or a distributed one that must give the same result) is caught here.
Keys are shaped like broadcast frame exports, `video000123/frame_000456.jpg`."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import pytest

from motoray.config import FrameSampling
from motoray.labels import labels_of
from motoray.spec import TrainTestSplit
from motoray.split import assign
from motoray.video.decoder import VideoInfo
from motoray.video.plan import VideoPlan

KEYS = [f"video{v:06d}/frame_{f:06d}.jpg" for v in range(1000) for f in range(100)]
SPLIT = {"train_ratio": 70, "validation_ratio": 10, "test_ratio": 20}
PINNED = {
    "image": "32f447609f3ca9120055bb39eceeb4328e2b8387f8a756a70f23feb85c8c0ab5",
    "folder": "846a5b47c00aa3e441d3e3661a64b86399ee18e0e6d091568dc822f204866d6c",
    "regex": "3c074e8b103910438f78bdc99aec7a5981646293fac5940f28ae42753ed36d9f",
    "stratify": "71a6972ed67235b55a220d192ca665fc3b3063c46c41c7ee589df6e66d545fe9",
    "video": "eaee05d1c3b43dfa611820c8f0238bf9c863c9ce72e7f58b0b655f886f5a4950",
}


def digest(keys, assignment) -> str:
    lines = (f"{k}\t{assignment.split[k]}\t{assignment.group[k]}\n" for k in sorted(keys))
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def split_of(case: str):
    if case == "video":  # 1000 videos of 40 s, a frame every 0.5 s: 80 frames each
        info = VideoInfo(40_000, Fraction(25), 640, 360, "h264")
        videos = [f"race{v:04d}.mp4" for v in range(1000)]
        plan = VideoPlan(dict.fromkeys(videos, info), FrameSampling(every_s=0.5), None)
        split = TrainTestSplit(**SPLIT, group_by="video")
        return plan.units(), plan.assign(split, 7, None, "video")
    # regex: some keys in groups of up to 10 (a video number with a 5), the rest alone
    group_by = {"image": "image", "folder": "folder", "stratify": "image"}.get(
        case, r"regex:^video(\d+)5"
    )
    split = TrainTestSplit(**SPLIT, group_by=group_by, stratify=case == "stratify")
    labels = labels_of(KEYS, "folder") if case == "stratify" else None
    return KEYS, assign(KEYS, split, 7, labels)


@pytest.mark.parametrize("case", sorted(PINNED))
def test_the_split_of_10_5_keys_is_what_it_was(case):
    keys, assignment = split_of(case)
    assert digest(keys, assignment) == PINNED[case]
