"""Operator registry; importing this package registers the built-in operators."""

from motoray.ops import crop, random_crop  # noqa: F401  (registration on import)
from motoray.ops.registry import Operator, Params, enabled, register, registered

__all__ = ["Operator", "Params", "enabled", "register", "registered"]
