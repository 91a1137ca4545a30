"""Where the reference is read from: the public names of the code, in one place.

Every table of the docs comes from one of these. A name that moves or is renamed fails here,
saying which one, instead of a table going quietly stale.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def public(dotted: str) -> Any:
    """`package.module.name`, or an error naming it."""
    module_name, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise RuntimeError(
            f"the docs read {dotted}, which is gone ({e}): point docgen/code.py at its new name"
        ) from e


def request_model() -> type:
    """The request model with every built-in operator, as the service builds it."""
    return public("motoray.spec.request_model")(public("motoray.ops.BUILTINS"))


def parse_request(config: Any, body: Any) -> list:
    """A request body validated as the service validates it, against `config`."""
    return public("motoray.spec.parse_for")(config, body)


def config_model() -> type:
    return public("motoray.config.Config")


def load_config(path: str | Path) -> Any:
    return public("motoray.config.load_config")(path)


def operators() -> dict:
    """The built-in operators by name."""
    return dict(sorted(public("motoray.ops.BUILTINS").items()))


def cli() -> Any:
    """The `motoray` click group."""
    return public("motoray.cli.cli")


def manifest_columns() -> list[tuple[str, Any, str]]:
    """(name, Arrow type, description) of every column a manifest row may carry."""
    return public("motoray.pipeline.manifest.COLUMNS")


def manifest_column_sets() -> Any:
    """`manifest_columns(sharded, boxed, video)`: which columns a job's manifest has."""
    return public("motoray.pipeline.manifest.manifest_columns")


def job_record() -> type:
    """job.json's model."""
    return public("motoray.jobs.record.JobRecord")


def bench_results() -> list[Path]:
    """The committed benchmark results, one table each on the benchmarks page."""
    return sorted((REPO / "benchmarks").glob("result*.json"))
