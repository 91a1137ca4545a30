"""CROP: one crop per requested size at a fixed position."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from motoray.ops.boxes import shift_boxes
from motoray.ops.functional import ALIASES, POSITIONS, crop, position_box
from motoray.ops.registry import HeightWidth, Operator, Params

Position = Literal[POSITIONS + tuple(ALIASES)]  # type: ignore[valid-type]


class CropParams(Params):
    crop_dimensions: list[HeightWidth] = Field(
        min_length=1, max_length=64, description="[[height, width], ...]: one output each"
    )
    crop_type: Position = Field("center", description="where the box sits in the image")

    @field_validator("crop_dimensions", mode="before")
    @classmethod
    def _one_pair_is_a_list_of_one(cls, value):
        # [270, 270] is read as [[270, 270]]: an obvious intent, not worth a 422.
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return [value]
        return value


def _sample(params: CropParams, rng, shape, copy: int) -> dict:
    return position_box(params.crop_type, shape, params.crop_dimensions[copy])


OPERATOR = Operator(
    name="CROP",
    params=CropParams,
    copies=lambda p: len(p.crop_dimensions),
    sample=_sample,
    kernel=crop,
    box_kernel=shift_boxes,
    min_shape=lambda p: (
        max(h for h, _ in p.crop_dimensions),
        max(w for _, w in p.crop_dimensions),
    ),
    output_shape=lambda p, shape, copy: tuple(p.crop_dimensions[copy]),
    description="Crop at a fixed position, once per [height, width] in crop_dimensions.",
)
