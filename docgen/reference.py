"""The reference tables, generated from the code when the docs are built.

A page asks for one with a line `<!-- generated: NAME -->` (docgen/hooks.py puts the table
there); NAME is a key of GENERATED.
"""

from __future__ import annotations

from collections.abc import Callable

from docgen import benchmarks, code
from docgen.schema import Row, rows, table


def request_rows() -> list[Row]:
    """Every request field but the operators' own (the operators page has those)."""
    return rows(code.request_model(), skip=("augmentations",))


def config_rows() -> list[Row]:
    return [row for row in rows(code.config_model()) if row.path != "path"]  # set on load


def operator_rows(name: str) -> list[Row]:
    return rows(code.operators()[name].params)


def request_fields() -> str:
    return table(request_rows())


def config_keys() -> str:
    return table(config_rows())


def operators_summary() -> str:
    lines = ["| operator | parameters | draws at random | what it does |", "|---|---|---|---|"]
    for name, operator in code.operators().items():
        params = ", ".join(f"`{row.path}`" for row in operator_rows(name)) or "none"
        random = "yes" if operator.random else "no"
        lines.append(
            f"| [`{name}`](#{name.lower()}) | {params} | {random} | {operator.description} |"
        )
    return "\n".join(lines)


def operator_params() -> str:
    sections = []
    for name, operator in code.operators().items():
        found = operator_rows(name)
        params = table(found) if found else 'No parameters: `{"' + name + '": {}}`.'
        sections.append(f"### {name}\n\n{operator.description}\n\n{params}")
    return "\n\n".join(sections)


def manifest_columns() -> str:
    sets = code.manifest_column_sets()
    always = set(sets(False))
    when = {
        **dict.fromkeys(set(sets(False, boxed=True)) - always, "a source with annotations"),
        **dict.fromkeys(set(sets(True)) - always, "webdataset output"),
        **dict.fromkeys(set(sets(False, video=True)) - always, "a video source"),
    }
    every = set(sets(True, boxed=True, video=True))
    lines = ["| column | type | present | holds |", "|---|---|---|---|"]
    for name, kind, description in code.manifest_columns():
        if name in every:
            present = when.get(name, "always")
            lines.append(f"| `{name}` | {kind} | {present} | {description} |")
    return "\n".join(lines)


def job_json_fields() -> str:
    return table(rows(code.job_record()), ("path", "type"))


GENERATED: dict[str, Callable[[], str]] = {
    "request-fields": request_fields,
    "config-keys": config_keys,
    "operators-summary": operators_summary,
    "operator-params": operator_params,
    "manifest-columns": manifest_columns,
    "job-json-fields": job_json_fields,
    "benchmarks": benchmarks.page,
}


def generate(name: str) -> str:
    if name not in GENERATED:
        raise KeyError(f"no generated table {name!r}; known: {', '.join(GENERATED)}")
    return GENERATED[name]()
