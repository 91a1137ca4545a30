"""INVERT: an example motoray plugin, every pixel v becomes 255 - v.

Enable it in motoray.yaml (the module must be importable where the job's driver runs;
motoray ships it to the Ray workers, see docs/operators.md, "Writing an operator"):

    operators:
      plugins: [motoray_invert]

and ask for it with {"INVERT": {}}. A plugin is a module with an `OPERATOR` (or a list,
`OPERATORS`); an installed package can also advertise it as an entry point in the group
`motoray.operators`, e.g. `invert = motoray_invert:OPERATOR`, and be named `invert`.
"""

from __future__ import annotations

import numpy as np

from motoray.ops import Operator, Params


class InvertParams(Params):
    """No parameters."""


def invert(images: np.ndarray, params: list[dict]) -> np.ndarray:
    """N x H x W x C uint8 -> the photographic negative, same shape (a new array)."""
    return 255 - images


OPERATOR = Operator(
    name="INVERT",
    params=InvertParams,
    kernel=invert,
    description="The negative: every channel value v becomes 255 - v.",
)
