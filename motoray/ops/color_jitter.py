"""COLOR_JITTER: `target_count` outputs per image, each with its own random factors.

Brightness, contrast and saturation factors are drawn uniformly from their
[lo, hi] ranges for every output; the formulas are in `functional.color_jitter`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from motoray.ops.boxes import keep_boxes
from motoray.ops.functional import color_jitter
from motoray.ops.registry import Operator, Params, Range

MAX_FACTOR = 3.0
FACTORS = ("brightness", "contrast", "saturation")
Factor = Annotated[float, Field(strict=True, ge=0, le=MAX_FACTOR, allow_inf_nan=False)]
FactorRange = Range(Factor)


class ColorJitterParams(Params):
    brightness: FactorRange = Field((1.0, 1.0), description="[lo, hi]: 1 keeps, 0 black")
    contrast: FactorRange = Field((1.0, 1.0), description="[lo, hi]: 1 keeps, 0 flat gray")
    saturation: FactorRange = Field((1.0, 1.0), description="[lo, hi]: 1 keeps, 0 grayscale")
    target_count: int = Field(1, strict=True, ge=1, le=1000, description="outputs per image")


def _sample(params: ColorJitterParams, rng, shape, copy: int) -> dict:
    # Always three draws, in this order, so a range of width 0 does not shift the others.
    return {name: float(rng.uniform(*getattr(params, name))) for name in FACTORS}


OPERATOR = Operator(
    name="COLOR_JITTER",
    params=ColorJitterParams,
    copies=lambda p: p.target_count,
    sample=_sample,
    kernel=color_jitter,
    box_kernel=keep_boxes,
    random=True,
    description="target_count outputs with brightness, contrast and saturation factors "
    "drawn uniformly from their [lo, hi] ranges.",
)
