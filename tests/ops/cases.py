"""One list of operator cases, shared by the geometry, determinism and serialisation checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    id: str
    operator: str
    params: dict
    image_hw: tuple[int, int]
    outputs_hw: list[tuple[int, int]]  # expected (height, width) of each output, in order


CASES = [
    Case(
        "crop-seed",
        "CROP",
        {"crop_dimensions": [[270, 270]], "crop_type": "left_down_center"},
        (270, 480),
        [(270, 270)],
    ),
    Case(
        "crop-two-sizes",
        "CROP",
        {"crop_dimensions": [[10, 20], [5, 7]], "crop_type": "center"},
        (33, 51),
        [(10, 20), (5, 7)],
    ),
    Case(
        "crop-bottom-right-full",
        "CROP",
        {"crop_dimensions": [[33, 51]], "crop_type": "bottom_right"},
        (33, 51),
        [(33, 51)],
    ),
    Case(
        "random-seed",
        "RANDOM_CROP",
        {"crop_dimensions": [80, 80], "target_count": 3},
        (270, 480),
        [(80, 80)] * 3,
    ),
    Case(
        "random-tall",
        "RANDOM_CROP",
        {"crop_dimensions": [31, 2], "target_count": 5},
        (33, 51),
        [(31, 2)] * 5,
    ),
    Case(
        "random-whole-image",
        "RANDOM_CROP",
        {"crop_dimensions": [33, 51], "target_count": 2},
        (33, 51),
        [(33, 51)] * 2,
    ),
]
