"""Parsing a request body: JSON text to validated requests, every problem with its path."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from motoray.config import Config, LimitsConfig, SourceConfig
from motoray.ops import operators_for
from motoray.ops.registry import Operator
from motoray.spec.checks import box_errors, semantic_errors, source_errors
from motoray.spec.request import RequestBase, request_model

MAX_REQUESTS_PER_BODY = 100


class RequestError(ValueError):
    """A request body that cannot be accepted.

    `errors` is a list of {"loc": [path...], "msg": str}; `status` is 400 for a
    body that is not JSON, 422 for one that is JSON but not a valid request.
    """

    def __init__(self, errors: list[dict], status: int = 422):
        self.errors = errors
        self.status = status
        super().__init__("; ".join(f"{_dotted(e['loc'])}: {e['msg']}" for e in errors))


def _dotted(loc: list) -> str:
    return ".".join(str(part) for part in loc) or "body"


def parse_json(body: bytes | str) -> Any:
    """JSON text -> object; a syntax error says where (line and column)."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise RequestError(
            [{"loc": [], "msg": f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"}],
            status=400,
        ) from None
    except UnicodeDecodeError as e:
        raise RequestError([{"loc": [], "msg": f"body is not UTF-8: {e.reason}"}], 400) from None


def parse_requests(
    body: Any,
    operators: dict[str, Operator],
    sources: Collection[str] | Mapping[str, SourceConfig] | None = None,
    limits: LimitsConfig | None = None,
    max_requests: int = MAX_REQUESTS_PER_BODY,
    annotated: Collection[str] = (),
) -> list[RequestBase]:
    """A decoded body (object or list of objects) -> validated requests.

    With `sources`, a name that is not a registered source is an error too, and so is what
    needs boxes on a source that has none (not in `annotated`), or an operator that cannot
    move boxes on one that has them; with their configs (a mapping), so is what the source's
    config refuses (`source_errors`: a grouping or stratify it cannot have). `limits` are
    the request budgets (default: LimitsConfig's); `max_requests` caps a list body (the
    service: its max_pending_jobs, a body it could never accept is not worth a 429).
    Every problem in every request is reported, each with its path
    ([index, field, ...] when the body is a list).
    """
    limits = limits or LimitsConfig()
    is_list = isinstance(body, list)
    items = body if is_list else [body]
    if is_list and not items:
        raise RequestError([{"loc": [], "msg": "empty list: send at least one request"}])
    most = min(max_requests, MAX_REQUESTS_PER_BODY)
    if len(items) > most:
        raise RequestError(
            [{"loc": [], "msg": f"{len(items)} requests in one body; at most {most}"}]
        )
    model = request_model(operators)
    requests, errors = [], []
    for index, item in enumerate(items):
        prefix = [index] if is_list else []
        try:
            request = model.model_validate(item)
        except ValidationError as e:
            errors += [
                {"loc": prefix + list(err["loc"]), "msg": err["msg"]}
                for err in e.errors(include_url=False, include_input=False)
            ]
            continue
        errors += [
            {"loc": prefix + loc, "msg": msg}
            for loc, msg in semantic_errors(request, operators, limits)
        ]
        if sources is not None and request.name not in sources:
            errors.append(
                {
                    "loc": [*prefix, "name"],
                    "msg": f"unknown data source {request.name!r}; "
                    f"registered: {', '.join(sorted(sources)) or 'none'}",
                }
            )
        elif sources is not None:
            errors += [
                {"loc": prefix + loc, "msg": msg}
                for loc, msg in box_errors(request, operators, request.name in annotated)
            ]
            if isinstance(sources, Mapping):
                errors += [
                    {"loc": prefix + loc, "msg": msg}
                    for loc, msg in source_errors(request, sources[request.name])
                ]
        requests.append(request)
    if errors:
        raise RequestError(errors)
    return requests


def parse_for(
    config: Config, body: Any, max_requests: int = MAX_REQUESTS_PER_BODY
) -> list[RequestBase]:
    """`parse_requests` against what `config` offers: its sources (their kinds, labels and
    annotations), its operators (plugins included, disabled ones left out), its limits."""
    return parse_requests(
        body,
        operators_for(config.operators),
        config.sources,
        config.limits,
        max_requests,
        annotated=config.annotated_sources(),
    )


def parse_one_for(config: Config, body: Any) -> RequestBase:
    """One request (preview, plan, a job's driver): a list of one is fine, as the original
    clients send it; a longer one is refused rather than cut, over HTTP and the CLI alike."""
    requests = parse_for(config, body)
    if len(requests) != 1:
        raise RequestError([{"loc": [], "msg": f"takes one request, got {len(requests)}"}])
    return requests[0]
