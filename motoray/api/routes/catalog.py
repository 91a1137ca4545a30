"""What the service offers: data sources, operators, and its own health."""

from __future__ import annotations

from fastapi import APIRouter, Depends

import motoray
from motoray.api.auth import require_token
from motoray.api.deps import ConfigDep, OperatorsDep
from motoray.api.models import (
    DataSource,
    DataSources,
    ErrorResponse,
    Health,
    OperatorInfo,
    Operators,
)

router = APIRouter(
    tags=["catalog"],
    dependencies=[Depends(require_token)],
    responses={401: {"model": ErrorResponse, "description": "missing or wrong token"}},
)
health = APIRouter(tags=["health"])


@router.get("/data_sources", summary="The registered data sources")
def data_sources(config: ConfigDep) -> DataSources:
    return DataSources(
        sources=[
            DataSource(name=name, uri=source.uri, description=source.description)
            for name, source in sorted(config.sources.items())
        ]
    )


@router.get("/operators", summary="The enabled operators and their parameter schemas")
def operators(ops: OperatorsDep) -> Operators:
    return Operators(
        operators=[
            OperatorInfo(
                name=name, description=op.description, parameters=op.params.model_json_schema()
            )
            for name, op in sorted(ops.items())
        ]
    )


@health.get("/healthz", summary="Liveness (no token needed)")
def healthz() -> Health:
    return Health(status="ok", version=motoray.__version__)
