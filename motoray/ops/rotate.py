"""ROTATE: turn every image counter-clockwise by 90, 180 or 270 degrees (as np.rot90)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from motoray.ops.boxes import rotate_boxes
from motoray.ops.functional import rotate
from motoray.ops.registry import Operator, Params


class RotateParams(Params):
    angle: Literal[90, 180, 270] = Field(
        description="degrees counter-clockwise; 90 and 270 swap width and height"
    )

    @field_validator("angle", mode="before")
    @classmethod
    def _integer(cls, value):
        # A Literal accepts 90.0 (it equals 90); angles are integers, like every other count.
        if type(value) is not int:
            raise ValueError(f"angle must be the integer 90, 180 or 270, got {value!r}")
        return value


OPERATOR = Operator(
    name="ROTATE",
    params=RotateParams,
    kernel=rotate,
    box_kernel=rotate_boxes,
    output_shape=lambda p, shape, copy: shape if shape is None or p.angle == 180 else shape[::-1],
    description="Rotate counter-clockwise by angle (90, 180 or 270 degrees), as np.rot90.",
)
