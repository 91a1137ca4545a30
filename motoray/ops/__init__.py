"""Operators: the built-ins, and the set a config enables.

There is no global registry: `operators_for(config)` builds the set every time from the
built-ins, plus the plugins the config names, minus the ones it disables, so editing the
config (on a running service too) adds or removes operators.

A plugin is a module with an `OPERATOR` (or a list, `OPERATORS`), named in `plugins:` by
module path or by the name of a `motoray.operators` entry point of an installed package.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from types import ModuleType

from motoray.config import OperatorsConfig
from motoray.ops import (
    color_jitter,
    crop,
    flip,
    grayscale,
    random_crop,
    random_resized_crop,
    rotate,
)
from motoray.ops.registry import Operator, Params

__all__ = ["BUILTINS", "Operator", "Params", "load_plugin", "operators_for"]

ENTRY_POINTS = "motoray.operators"
BUILTINS: dict[str, Operator] = {
    module.OPERATOR.name: module.OPERATOR
    for module in (color_jitter, crop, flip, grayscale, random_crop, random_resized_crop, rotate)
}


def operators_for(config: OperatorsConfig | None = None) -> dict[str, Operator]:
    """Built-ins + plugins - disabled, by name (sorted)."""
    config = config or OperatorsConfig()
    operators = dict(BUILTINS)
    for plugin in config.plugins:
        for operator in load_plugin(plugin)[1]:
            operators[operator.name] = operator
    off = set(config.disabled)
    return {name: op for name, op in sorted(operators.items()) if name not in off}


def load_plugin(name: str) -> tuple[ModuleType, list[Operator]]:
    """A plugin's module and operators: an entry point of that name, else a module path."""
    found = entry_points(group=ENTRY_POINTS, name=name)
    if found:
        point = next(iter(found))
        module, target = importlib.import_module(point.module), point.load()
    else:
        module = target = importlib.import_module(name)
    if isinstance(target, Operator):
        return module, [target]
    operators = getattr(target, "OPERATORS", None) or [getattr(target, "OPERATOR", None)]
    if not all(isinstance(op, Operator) for op in operators):
        raise TypeError(f"plugin {name!r} defines no OPERATOR (or OPERATORS) of motoray.ops")
    return module, list(operators)
