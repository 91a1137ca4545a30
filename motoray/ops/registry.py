"""What an operator is: a parameter model, a sampler and a pure kernel.

An operator turns one (resized) image into `copies(params)` outputs. For every
output, `sample` fixes the concrete parameters (a crop box, a flip...) from an
explicitly seeded generator, and `kernel` applies them to a batch of
same-shaped images at once. Kernels are plain NumPy and know nothing of Ray.

Like torchvision v2's kernel per input type, an operator also has a `box_kernel`: the same
concrete params applied to the bounding boxes of the batch (motoray.ops.boxes). An operator
without one cannot run on a source with annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from motoray.ops.boxes import BoxKernel

Shape = tuple[int, int]  # (height, width), NumPy order
# (params, rng, shape, copy) -> concrete params; None: this image has no such output
Sampler = Callable[[Any, np.random.Generator, Shape, int], dict | None]
# (params, rng, shape, copy, the image's boxes as M x 4 corners) -> concrete params, or None
# when this image has no such output (e.g. no window holds a whole box)
BoxSampler = Callable[[Any, np.random.Generator, Shape, int, np.ndarray], dict | None]
Kernel = Callable[[np.ndarray, list[dict]], np.ndarray]
# (params, input shape or None if unknown, copy index) -> output shape, or None if unknown
OutputShape = Callable[[Any, Shape | None, int], Shape | None]


@dataclass(frozen=True)
class Operator:
    name: str
    params: type[BaseModel]
    kernel: Kernel  # (images N x H x W x C, concrete params per image) -> N outputs
    copies: Callable[[Any], int] = lambda params: 1  # outputs per image
    # (params, rng, image shape, copy index) -> concrete params of one output; by default
    # the requested params as they are (operators that draw nothing and make one output).
    sample: Sampler = lambda params, rng, shape, copy: params.model_dump(mode="json")
    min_shape: Callable[[Any], Shape] = lambda params: (1, 1)  # smallest image it accepts
    # Declared by operators that change the shape, so that a CHAIN's later stages can be
    # checked before any pixel is read; the default keeps the shape.
    output_shape: OutputShape = lambda params, shape, copy: shape
    random: bool = False  # whether `sample` draws from the generator
    description: str = ""
    # The same params applied to the batch's boxes; None: the operator cannot carry boxes.
    box_kernel: BoxKernel | None = None
    # Used instead of `sample` when the images have boxes: an operator whose draws depend on
    # where the objects are. It must draw exactly as `sample` when it does not look at them.
    box_sample: BoxSampler | None = None
    uses_boxes: Callable[[Any], bool] = lambda params: False  # these params need boxes


MAX_SIDE = 16384  # pixels; larger sides are rejected at request time
Side = Annotated[int, Field(strict=True, gt=0, le=MAX_SIDE)]
HeightWidth = tuple[Side, Side]


def _ordered(bounds: tuple[float, float]) -> tuple[float, float]:
    if bounds[0] > bounds[1]:
        raise ValueError(f"[lo, hi] needs lo <= hi, got [{bounds[0]:g}, {bounds[1]:g}]")
    return bounds


def Range(bound: Any) -> Any:
    """`[lo, hi]` of `bound` values, lo <= hi."""
    return Annotated[tuple[bound, bound], AfterValidator(_ordered)]


class Params(BaseModel):
    """Base of every operator's parameter model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
