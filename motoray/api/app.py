"""The FastAPI app: routers, error handlers, and an OpenAPI schema that follows the config."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import motoray
from motoray.api import errors
from motoray.api.deps import ConfigFile, get_operators
from motoray.api.routes import catalog, data_prep
from motoray.jobs.service import JobService
from motoray.spec import MAX_REQUESTS_PER_BODY, SEED_REQUEST, request_model


def create_app(
    config_path: str, token: str | None = None, jobs: JobService | None = None
) -> FastAPI:
    """`token` overrides the config's server.auth_token; `jobs` needs Ray (default: this one)."""
    app = FastAPI(
        title="motoray",
        version=motoray.__version__,
        description="Raw frames in, training-ready image datasets out, on Ray. "
        "Every route but /healthz needs `Authorization: Bearer <token>`.",
    )
    app.state.config_file = ConfigFile(config_path)
    app.state.token = token
    app.state.jobs = jobs or JobService()
    app.include_router(data_prep.router)
    app.include_router(catalog.router)
    app.include_router(catalog.health)
    errors.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request body, built from the operators enabled right now."""
    operators = get_operators(app.state.config_file.get())
    key = tuple(sorted(operators))
    cached = getattr(app.state, "openapi", None)
    if cached and cached[0] == key:
        return cached[1]
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    body = request_model(operators).model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    components["DataPrepRequest"] = body
    one = {"$ref": "#/components/schemas/DataPrepRequest"}
    many = {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_REQUESTS_PER_BODY}
    media = {"schema": {"anyOf": [one, many]}}
    if {"CROP", "RANDOM_CROP"} <= set(operators):
        media["example"] = [SEED_REQUEST]
    schema["paths"]["/data_prep"]["post"]["requestBody"]["content"]["application/json"] = media
    schema["paths"]["/data_prep/plan"]["post"]["requestBody"]["content"]["application/json"] = media
    preview = schema["paths"]["/data_prep/preview"]["post"]["requestBody"]["content"]
    preview["application/json"] = {"schema": one}
    app.state.openapi = (key, schema)
    return schema
