"""A pydantic model as reference rows: every field, nested ones by their dotted path, with
its type, default, limits and description, read from the model's JSON schema."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema


@dataclass(frozen=True)
class Row:
    path: str  # dotted: train_test_split.group_by, sources.<name>.uri, augmentations[].CHAIN
    type: str
    default: str
    limits: str
    description: str


class _WithFactoryDefaults(GenerateJsonSchema):
    """Defaults made by a default_factory are shown too (`extensions`, nested models)."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()
            return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        return super().get_default_value(schema)


def json_schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema(schema_generator=_WithFactoryDefaults)


def rows(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[Row]:
    """Every field of `model`, depth first; `skip`: paths whose fields are not descended."""
    schema = json_schema(model)
    return list(_object_rows(schema, schema.get("$defs", {}), "", skip))


def _object_rows(schema: dict, defs: dict, prefix: str, skip: tuple[str, ...]):
    required = set(schema.get("required", ()))
    for name, field in schema.get("properties", {}).items():
        path = prefix + name
        yield from _field_rows(path, field, name in required, defs, skip)


def _field_rows(path: str, field: dict, required: bool, defs: dict, skip: tuple[str, ...]):
    resolved = _resolve(field, defs)
    models = _models(resolved, defs)
    description = field.get("description") or resolved.get("description") or ""
    if not description and len(models) == 1:
        description = models[0][1].get("description", "")
    yield Row(
        path=path,
        type=_type(resolved, defs),
        default="required" if required else _default(field, models),
        limits=_limits(resolved),
        description=" ".join(description.split()),
    )
    if path in skip:
        return
    merged: dict[str, Row] = {}  # a union of models (annotations: coco | yolo): each field once
    for suffix, model in models:
        tag = _tag(model) if len(models) > 1 else ""
        for row in _object_rows(model, defs, path + suffix, skip):
            row = replace(row, description=tag + row.description)
            old = merged.get(row.path)
            merged[row.path] = (
                row
                if old is None
                else replace(
                    old,
                    type=f"{old.type} \\| {row.type}",
                    description=f"{old.description}; {row.description}",
                )
            )
    yield from merged.values()


def _tag(model: dict) -> str:
    """`coco: ` for the coco member of a union told apart by a constant field."""
    consts = [field["const"] for field in model.get("properties", {}).values() if "const" in field]
    return f"{consts[0]}: " if consts else ""


def _resolve(schema: dict, defs: dict) -> dict:
    """Follow a $ref; an optional (X | None) is X."""
    if "$ref" in schema:
        return {**defs[schema["$ref"].rsplit("/", 1)[1]], **_without(schema, "$ref")}
    options = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if "anyOf" in schema and len(options) == 1:
        return {**_resolve(options[0], defs), **_without(schema, "anyOf")}
    return schema


def _without(schema: dict, key: str) -> dict:
    return {k: v for k, v in schema.items() if k not in (key, "title", "default")}


def _models(schema: dict, defs: dict) -> list[tuple[str, dict]]:
    """The models nested in a field, with the path suffix of their fields."""
    if "properties" in schema:
        return [(".", schema)]
    if schema.get("type") == "array" and "items" in schema:
        return [("[]" + suffix, m) for suffix, m in _models(_resolve(schema["items"], defs), defs)]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return [(".<name>" + suffix, m) for suffix, m in _models(_resolve(extra, defs), defs)]
    union = schema.get("oneOf") or schema.get("anyOf") or ()
    return [(".", m) for s in union if "properties" in (m := _resolve(s, defs))]


def _type(schema: dict, defs: dict) -> str:
    if "enum" in schema:
        return " \\| ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "properties" in schema:
        return "object"
    union = schema.get("oneOf") or schema.get("anyOf")
    if union:
        kinds = [_type(_resolve(s, defs), defs) for s in union if s.get("type") != "null"]
        return " \\| ".join(dict.fromkeys(kinds))
    kind = schema.get("type", "any")
    if kind == "array":
        if "prefixItems" in schema:
            items = ", ".join(_type(_resolve(s, defs), defs) for s in schema["prefixItems"])
            return f"[{items}]"
        return f"list of {_type(_resolve(schema.get('items', {}), defs), defs)}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(_resolve(schema['additionalProperties'], defs), defs)}"
    return kind


def _default(field: dict, models: list) -> str:
    if "default" not in field or models:  # a nested model's defaults are on its fields
        return ""
    value = field["default"]
    return "" if value is None else f"`{json.dumps(value)}`"


LIMITS = {
    "minimum": ">= {}",
    "exclusiveMinimum": "> {}",
    "maximum": "<= {}",
    "exclusiveMaximum": "< {}",
    "multipleOf": "a multiple of {}",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
}


def _limits(schema: dict) -> str:
    keys = [key for key in LIMITS if key in schema]
    if "prefixItems" in schema:  # a fixed-length tuple: its type says how many
        keys = [key for key in keys if key not in ("minItems", "maxItems")]
    found = [LIMITS[key].format(_number(schema[key])) for key in keys]
    found = [
        "not empty" if f in ("at least 1 characters", "at least 1 items") else f for f in found
    ]
    if "prefixItems" in schema:
        found += [_limits(item) for item in schema["prefixItems"][:1] if _limits(item)]
    items = schema.get("items")
    if isinstance(items, dict):
        found += [f"each {inner}" for inner in [_limits(items)] if inner]
    if "pattern" in schema:
        found.append(f"matches `{schema['pattern']}`")
    return ", ".join(found)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def table(
    found: list[Row], columns: tuple[str, ...] = ("path", "type", "default", "limits")
) -> str:
    """A Markdown table of rows: the named columns, then the description."""
    heads = [*columns, "description"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in found:
        cells = [f"`{row.path}`" if c == "path" else getattr(row, c) for c in columns]
        lines.append("| " + " | ".join([*cells, _cell(row.description)]) + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
