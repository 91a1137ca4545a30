"""FLIP: mirror every image, horizontally (left <-> right) or vertically (top <-> bottom)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from motoray.ops.boxes import flip_boxes
from motoray.ops.functional import flip
from motoray.ops.registry import Operator, Params


class FlipParams(Params):
    direction: Literal["horizontal", "vertical"] = Field(
        "horizontal", description="horizontal: left <-> right; vertical: top <-> bottom"
    )


OPERATOR = Operator(
    name="FLIP",
    params=FlipParams,
    kernel=flip,
    box_kernel=flip_boxes,
    description="Mirror the image horizontally (left <-> right) or vertically.",
)
