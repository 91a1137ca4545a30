"""This installation's own commands: a bare `motoray` or `python` on the PATH may belong to
another environment (Ray Jobs run entrypoints through /bin/sh)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

_MODULES = {"motoray": "motoray.cli", "ray": "ray.scripts.scripts"}


def installed_command(name: str) -> list[str]:
    """The venv's script `name` (symlinks kept), else this interpreter running its module."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.is_file() else [sys.executable, "-m", _MODULES[name]]


def bin_dir() -> str:
    """Where this installation's scripts are: first on the PATH of a Ray we start."""
    return str(Path(sys.executable).parent)


def shell_name(name: str) -> str:
    """`name` as a user would type it: bare when their PATH finds this installation's script,
    else the script's path (a venv that is not activated, as after `make demo`)."""
    script = Path(bin_dir(), name)
    found = shutil.which(name)
    if not script.is_file() or (found and Path(found).resolve() == script.resolve()):
        return name
    return str(script)
