"""INVERT: an example motoray plugin, every pixel v becomes 255 - v.

Enable it in motoray.yaml (the module must be importable by the driver and by
every Ray worker, see README "Plugins"):

    operators:
      plugins: [motoray_invert]

and ask for it with {"INVERT": {}}.
"""

from __future__ import annotations

import numpy as np

from motoray.ops import Operator, Params, register


class InvertParams(Params):
    """No parameters."""


def invert(images: np.ndarray, params: list[dict]) -> np.ndarray:
    """N x H x W x C uint8 -> the photographic negative, same shape (a new array)."""
    return 255 - images


OPERATOR = register(
    Operator(
        name="INVERT",
        params=InvertParams,
        kernel=invert,
        description="The negative: every channel value v becomes 255 - v.",
    )
)
