"""One list of operator cases, shared by the geometry, determinism and serialisation checks.

CASES are valid requests with the output shapes they must give; INVALID are
parameters that must be rejected, each naming the field the error points at.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    id: str
    operator: str
    params: dict
    image_hw: tuple[int, int]
    outputs_hw: list[tuple[int, int]]  # expected (height, width) of each output, in order
    one_outcome: bool = False  # random operator, but these parameters allow a single result


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
        one_outcome=True,
    ),
    Case("flip-default", "FLIP", {}, (33, 51), [(33, 51)]),
    Case("flip-vertical", "FLIP", {"direction": "vertical"}, (270, 480), [(270, 480)]),
    Case("rotate-90", "ROTATE", {"angle": 90}, (33, 51), [(51, 33)]),
    Case("rotate-180", "ROTATE", {"angle": 180}, (33, 51), [(33, 51)]),
    Case("rotate-270", "ROTATE", {"angle": 270}, (270, 480), [(480, 270)]),
    Case("grayscale", "GRAYSCALE", {}, (33, 51), [(33, 51)]),
    Case("grayscale-one-pixel", "GRAYSCALE", {}, (1, 1), [(1, 1)]),
    Case("jitter-identity", "COLOR_JITTER", {}, (33, 51), [(33, 51)], one_outcome=True),
    Case(
        "jitter-seed",
        "COLOR_JITTER",
        {"brightness": [0.6, 1.4], "contrast": [0.6, 1.4], "saturation": [0, 2], "target_count": 4},
        (270, 480),
        [(270, 480)] * 4,
    ),
    Case(
        "jitter-extremes",
        "COLOR_JITTER",
        {"brightness": [0, 3], "contrast": [3, 3], "saturation": [0, 0], "target_count": 2},
        (33, 51),
        [(33, 51)] * 2,
    ),
    Case(
        "rrc-defaults",
        "RANDOM_RESIZED_CROP",
        {"size": [224, 224], "target_count": 3},
        (270, 480),
        [(224, 224)] * 3,
    ),
    Case(
        "rrc-upscale-wide",
        "RANDOM_RESIZED_CROP",
        {"size": [40, 100], "scale": [0.5, 1], "ratio": [2, 3], "target_count": 2},
        (33, 51),
        [(40, 100)] * 2,
    ),
    Case(
        "rrc-one-pixel-image",
        "RANDOM_RESIZED_CROP",
        {"size": [7, 5]},
        (1, 1),
        [(7, 5)],
        one_outcome=True,
    ),
    Case(
        "rrc-always-fallback",
        "RANDOM_RESIZED_CROP",
        {"size": [16, 16], "scale": [0.9, 1], "ratio": [1, 1]},
        (10, 100),  # a square of 90% of the area cannot fit: centre crop 10 x 10
        [(16, 16)],
        one_outcome=True,
    ),
]


@dataclass(frozen=True)
class Invalid:
    id: str
    operator: str
    params: dict
    field: str  # the first element of the error's location


INVALID = [
    Invalid("flip-direction", "FLIP", {"direction": "diagonal"}, "direction"),
    Invalid("flip-extra", "FLIP", {"direction": "vertical", "angle": 90}, "angle"),
    Invalid("rotate-missing", "ROTATE", {}, "angle"),
    Invalid("rotate-45", "ROTATE", {"angle": 45}, "angle"),
    Invalid("rotate-float", "ROTATE", {"angle": 90.0}, "angle"),
    Invalid("rotate-string", "ROTATE", {"angle": "90"}, "angle"),
    Invalid("rotate-bool", "ROTATE", {"angle": True}, "angle"),
    Invalid("grayscale-extra", "GRAYSCALE", {"weights": [1, 1, 1]}, "weights"),
    Invalid("jitter-reversed", "COLOR_JITTER", {"brightness": [1.5, 0.5]}, "brightness"),
    Invalid("jitter-negative", "COLOR_JITTER", {"contrast": [-0.1, 1]}, "contrast"),
    Invalid("jitter-too-high", "COLOR_JITTER", {"saturation": [1, 3.5]}, "saturation"),
    Invalid("jitter-nan", "COLOR_JITTER", {"saturation": [float("nan"), 1]}, "saturation"),
    Invalid("jitter-string", "COLOR_JITTER", {"brightness": ["1", 1]}, "brightness"),
    Invalid("jitter-bool", "COLOR_JITTER", {"brightness": [True, 1]}, "brightness"),
    Invalid("jitter-scalar", "COLOR_JITTER", {"brightness": 0.2}, "brightness"),
    Invalid("jitter-three", "COLOR_JITTER", {"contrast": [0.5, 1, 1.5]}, "contrast"),
    Invalid("jitter-count-zero", "COLOR_JITTER", {"target_count": 0}, "target_count"),
    Invalid("jitter-count-float", "COLOR_JITTER", {"target_count": 2.0}, "target_count"),
    Invalid("jitter-hue", "COLOR_JITTER", {"hue": [0, 0.1]}, "hue"),
    Invalid("rrc-missing-size", "RANDOM_RESIZED_CROP", {}, "size"),
    Invalid("rrc-size-zero", "RANDOM_RESIZED_CROP", {"size": [0, 10]}, "size"),
    Invalid("rrc-size-huge", "RANDOM_RESIZED_CROP", {"size": [10, 4097]}, "size"),
    Invalid("rrc-size-float", "RANDOM_RESIZED_CROP", {"size": [10.0, 10]}, "size"),
    Invalid("rrc-scale-zero", "RANDOM_RESIZED_CROP", {"size": [8, 8], "scale": [0, 1]}, "scale"),
    Invalid(
        "rrc-scale-above-1", "RANDOM_RESIZED_CROP", {"size": [8, 8], "scale": [0.5, 2]}, "scale"
    ),
    Invalid(
        "rrc-scale-reversed", "RANDOM_RESIZED_CROP", {"size": [8, 8], "scale": [1, 0.5]}, "scale"
    ),
    Invalid("rrc-ratio-zero", "RANDOM_RESIZED_CROP", {"size": [8, 8], "ratio": [0, 1]}, "ratio"),
    Invalid(
        "rrc-ratio-reversed", "RANDOM_RESIZED_CROP", {"size": [8, 8], "ratio": [2, 1]}, "ratio"
    ),
    Invalid(
        "rrc-count", "RANDOM_RESIZED_CROP", {"size": [8, 8], "target_count": 1001}, "target_count"
    ),
]
