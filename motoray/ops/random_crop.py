"""RANDOM_CROP: `target_count` crops per image at uniformly random positions."""

from __future__ import annotations

from pydantic import Field

from motoray.ops.functional import crop, random_box
from motoray.ops.registry import HeightWidth, Operator, Params


class RandomCropParams(Params):
    crop_dimensions: HeightWidth = Field(description="[height, width] of every crop")
    target_count: int = Field(1, strict=True, ge=1, le=1000, description="crops per image")


OPERATOR = Operator(
    name="RANDOM_CROP",
    params=RandomCropParams,
    copies=lambda p: p.target_count,
    sample=lambda p, rng, shape, copy: random_box(rng, shape, p.crop_dimensions),
    kernel=crop,
    min_shape=lambda p: p.crop_dimensions,
    output_shape=lambda p, shape, copy: tuple(p.crop_dimensions),
    random=True,
    description="target_count crops of [height, width] at uniformly random positions.",
)
