"""RANDOM_CROP: `target_count` crops per image at uniformly random positions.

`placement: "anywhere"` (the default) draws among every position; `"contains_box"` among the
positions whose window holds at least one of the image's boxes whole (albumentations'
AtLeastOneBBoxRandomCrop), and makes no output of an image that has no such position.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from motoray.ops.boxes import shift_boxes, window_containing_a_box
from motoray.ops.functional import crop, random_box
from motoray.ops.registry import HeightWidth, Operator, Params


class RandomCropParams(Params):
    crop_dimensions: HeightWidth = Field(description="[height, width] of every crop")
    target_count: int = Field(1, strict=True, ge=1, le=1000, description="crops per image")
    placement: Literal["anywhere", "contains_box"] = Field(
        "anywhere",
        exclude_if=lambda value: value == "anywhere",  # requests dump as they did before it
        description='"anywhere": uniformly among all positions; "contains_box": among the '
        "positions that hold at least one box of the image whole (needs an annotated source; "
        "an image with no such position makes no output and is counted)",
    )


def _sample_with_boxes(
    params: RandomCropParams, rng, shape, copy: int, boxes: np.ndarray
) -> dict | None:
    if params.placement == "anywhere":
        return random_box(rng, shape, params.crop_dimensions)  # the same draw as without boxes
    return window_containing_a_box(rng, shape, params.crop_dimensions, boxes)


def _sample(params: RandomCropParams, rng, shape, copy: int) -> dict | None:
    return _sample_with_boxes(params, rng, shape, copy, np.zeros((0, 4)))


OPERATOR = Operator(
    name="RANDOM_CROP",
    params=RandomCropParams,
    copies=lambda p: p.target_count,
    sample=_sample,
    kernel=crop,
    box_kernel=shift_boxes,
    box_sample=_sample_with_boxes,
    uses_boxes=lambda p: p.placement == "contains_box",
    min_shape=lambda p: p.crop_dimensions,
    output_shape=lambda p, shape, copy: tuple(p.crop_dimensions),
    random=True,
    description="target_count crops of [height, width] at uniformly random positions "
    '(placement "contains_box": positions that hold a whole box).',
)
