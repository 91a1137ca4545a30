"""The generated reference holds every request field, config key, operator parameter, CLI
option, manifest column and job.json field the code has, each described. The fields are
found here by walking the models themselves, not through the generator's own reading."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import markdown
import pytest
from pydantic import BaseModel

from docgen import code, reference
from docgen.hooks import MARKER

DOCS = Path(__file__).resolve().parents[2] / "docs"


def field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field of `model` and of the models nested in it, by dotted path."""
    paths = set()
    for name, field in model.model_fields.items():
        if field.exclude is True:
            continue
        path = prefix + (field.alias or name)
        paths.add(path)
        for suffix, nested in _nested(field.annotation):
            paths |= field_paths(nested, path + suffix)
    return paths


def _nested(annotation) -> list[tuple[str, type[BaseModel]]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(".", annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _nested(args[0])
    if origin in (list, tuple):
        return [("[]" + s, m) for arg in args if arg is not Ellipsis for s, m in _nested(arg)]
    if origin is dict:
        return [(".<name>" + s, m) for s, m in _nested(args[1])]
    if origin in (typing.Union, types.UnionType):
        return [pair for arg in args for pair in _nested(arg)]
    return []


def described(rows) -> dict[str, str]:
    return {row.path: row.description for row in rows}


def test_every_request_field_is_in_the_reference_with_a_description():
    model = code.request_model()
    expected = {p for p in field_paths(model) if not p.startswith("augmentations[]")}
    rows = described(reference.request_rows())
    assert expected <= set(rows), f"missing from the reference: {sorted(expected - set(rows))}"
    undescribed = sorted(p for p in expected if not rows[p])
    assert not undescribed, f"request fields without a description: {undescribed}"
    assert "augmentations" in rows  # its operators: the operators page


def test_every_config_key_is_in_the_reference_with_its_default_and_a_description():
    expected = field_paths(code.config_model())
    rows = {row.path: row for row in reference.config_rows()}
    assert expected <= set(rows), f"missing from the reference: {sorted(expected - set(rows))}"
    undescribed = sorted(p for p in expected if not rows[p].description)
    assert not undescribed, f"config keys without a description: {undescribed}"
    limits = code.config_model()().limits
    for name, value in limits.model_dump().items():  # every limit shows its real default
        assert rows[f"limits.{name}"].default == f"`{value}`", name


def test_every_operator_parameter_is_in_the_reference_with_a_description():
    page = reference.generate("operator-params")
    for name, operator in code.operators().items():
        assert f"### {name}\n" in page
        rows = described(reference.operator_rows(name))
        expected = field_paths(operator.params)
        assert expected <= set(rows), f"{name}: missing {sorted(expected - set(rows))}"
        undescribed = sorted(p for p in expected if not rows[p])
        assert not undescribed, f"{name}: parameters without a description: {undescribed}"
        for path in expected:
            assert f"`{path}`" in page


def test_every_cli_option_is_in_the_generated_page_with_its_help():
    text = (DOCS / "cli.md").read_text()
    html = markdown.markdown(text, extensions=["mkdocs-click", "tables", "attr_list"])
    group = code.cli()
    assert group.commands
    for name, command in group.commands.items():
        assert f"motoray {name}" in html, name
        for param in command.params:
            shown = param.opts if param.param_type_name == "option" else [param.human_readable_name]
            for opt in shown:
                assert opt in html, f"motoray {name} {opt} is missing from the CLI page"
            if param.param_type_name == "option":
                assert param.help, f"motoray {name} {param.opts[0]} has no help text"


def test_every_manifest_column_and_job_json_field_is_in_the_reference():
    columns = reference.generate("manifest-columns")
    manifest_only = set(code.manifest_column_sets()(True, boxed=True, video=True))
    for name, _, description in code.manifest_columns():
        if name in manifest_only:
            assert f"| `{name}` |" in columns and description in columns
    fields = reference.generate("job-json-fields")
    for path in field_paths(code.job_record()):
        if not path.startswith("request"):
            assert f"`{path}`" in fields, path


def test_every_generated_table_is_on_a_page_and_every_marker_names_one():
    used = [m for page in DOCS.glob("*.md") for m in MARKER.findall(page.read_text())]
    assert sorted(set(used)) == sorted(reference.GENERATED)
    with pytest.raises(KeyError, match="no generated table"):
        reference.generate("no-such-table")


def test_a_renamed_public_name_fails_loudly():
    with pytest.raises(RuntimeError, match=r"motoray\.spec\.no_such_model.*docgen/code\.py"):
        code.public("motoray.spec.no_such_model")


def test_security_md_states_every_limit_with_its_real_default():
    """SECURITY.md is written by hand: its limits table must agree with the code."""
    text = (DOCS.parent / "SECURITY.md").read_text()
    stated = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, re.MULTILINE))
    units = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    for name, default in code.config_model()().limits.model_dump().items():
        assert name in stated, f"SECURITY.md does not state limits.{name}"
        number, _, unit = stated[name].strip().replace(",", "").partition(" ")
        assert float(number) * units.get(unit, 1) == default, f"limits.{name}: {stated[name]}"
