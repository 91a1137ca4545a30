"""RANDOM_RESIZED_CROP: torchvision's RandomResizedCrop, `target_count` outputs per image.

The sampler draws a box (area fraction in `scale`, aspect ratio in `ratio`, 10
tries, then a centred fallback) and records it; the kernel cuts that box and
resizes it to `size` with antialiased bilinear filtering.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from motoray.ops.boxes import resized_crop_boxes
from motoray.ops.functional import random_resized_box, resized_crop
from motoray.ops.registry import Operator, Params, Range

MAX_OUTPUT_SIDE = 4096  # pixels: outputs are not bounded by the input, so bound them here
OutputSide = Annotated[int, Field(strict=True, gt=0, le=MAX_OUTPUT_SIDE)]
Fraction = Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)]
Aspect = Annotated[float, Field(strict=True, ge=0.01, le=100, allow_inf_nan=False)]


class RandomResizedCropParams(Params):
    size: tuple[OutputSide, OutputSide] = Field(description="[height, width] of every output")
    scale: Range(Fraction) = Field(
        (0.08, 1.0), description="[lo, hi]: box area as a fraction of the image area"
    )
    ratio: Range(Aspect) = Field(
        (3 / 4, 4 / 3), description="[lo, hi]: box aspect ratio, width / height"
    )
    target_count: int = Field(1, strict=True, ge=1, le=1000, description="outputs per image")


def _sample(params: RandomResizedCropParams, rng, shape, copy: int) -> dict:
    box = random_resized_box(rng, shape, params.scale, params.ratio)
    return {**box, "size": list(params.size)}


OPERATOR = Operator(
    name="RANDOM_RESIZED_CROP",
    params=RandomResizedCropParams,
    copies=lambda p: p.target_count,
    sample=_sample,
    kernel=resized_crop,
    box_kernel=resized_crop_boxes,
    output_shape=lambda p, shape, copy: tuple(p.size),
    random=True,
    description="target_count random boxes (area fraction in scale, width/height in "
    "ratio), each resized to size [height, width].",
)
