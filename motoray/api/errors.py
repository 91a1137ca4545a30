"""Every error the API answers, in one shape: {"error": ..., "errors": [{loc, msg}]}.

Anything a client can send maps to a 4xx; a 5xx means the service itself is
broken (500) or Ray is unreachable (503).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from motoray.jobs.service import TooManyJobs
from motoray.spec import RequestError

log = logging.getLogger("motoray.api")

MAX_ERRORS = 100  # a list of 100 bad requests must not produce a megabyte of errors
MAX_TEXT = 300  # clip messages and path parts: never echo a large input back
RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_response(
    status: int, message: str, errors: list[dict] = (), headers: dict | None = None
) -> JSONResponse:
    items = [
        {
            "loc": [p if isinstance(p, int) else clip(str(p), 100) for p in e["loc"]],
            "msg": clip(str(e["msg"])),
        }
        for e in list(errors)[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        items.append({"loc": [], "msg": f"... and {len(errors) - MAX_ERRORS} more errors"})
    return JSONResponse(
        {"error": clip(message), "errors": items}, status_code=status, headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, e: RequestError):
        message = "invalid JSON" if e.status == 400 else "invalid request"
        return error_response(e.status, message, e.errors)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return error_response(e.status, e.message, headers=e.headers)

    @app.exception_handler(TooManyJobs)
    async def _too_many(request: Request, e: TooManyJobs):
        return error_response(429, str(e), headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        errors = [{"loc": list(err["loc"]), "msg": err["msg"]} for err in e.errors()]
        return error_response(422, "invalid request", errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        # Starlette's own 404/405 (unknown path or method).
        headers = dict(e.headers or {})
        if e.status_code == 405:  # Starlette names only the first route of the path
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return error_response(e.status_code, str(e.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        if _out_of_memory(e):
            # Ray's memory monitor stopped this request's work: the node was short of
            # memory, not broken, and Ray is reachable (the RayError below would say 503).
            log.warning("out of memory on %s %s: %s", request.method, request.url.path, e)
            return error_response(
                429,
                "the cluster was short of memory and Ray stopped this request's work; "
                "retry later, or ask for less",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if _ray_unreachable(e):
            log.warning("Ray unreachable on %s %s: %s", request.method, request.url.path, e)
            return error_response(
                503,
                "the job service (Ray) is unreachable; retry later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; see the service log")


def _allowed_methods(request: Request) -> list[str]:
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods or ()
    }
    return sorted(methods)


def _out_of_memory(e: Exception) -> bool:
    from ray.exceptions import OutOfMemoryError

    return isinstance(e, OutOfMemoryError)


def _ray_unreachable(e: Exception) -> bool:
    """Ray's GCS or an actor (the job board) down or restarting: the service's fault, and
    temporary. Not a task's own error (RayTaskError): Ray ran the task, and "retry later"
    would lie."""
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError

    if isinstance(e, RayTaskError):
        return False
    return isinstance(e, ConnectionError | GetTimeoutError | RayError)
