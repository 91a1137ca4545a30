"""Operator registry; importing this package registers the built-in operators."""

from motoray.ops import (  # noqa: F401  (registration on import)
    color_jitter,
    crop,
    flip,
    grayscale,
    random_crop,
    random_resized_crop,
    rotate,
)
from motoray.ops.registry import Operator, Params, enabled, register, registered

__all__ = ["Operator", "Params", "enabled", "register", "registered"]
