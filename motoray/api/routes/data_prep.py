"""/data_prep: submit jobs, read their status and log lines, stop them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from motoray.api import offload
from motoray.api.auth import require_token
from motoray.api.deps import ConfigDep, JobsDep, OperatorsDep
from motoray.api.errors import ApiError, clip
from motoray.api.models import ErrorResponse, JobLink, JobLogs, JobsAccepted, JobView, Progress
from motoray.jobs.record import JobStatus, accept, new_job_id
from motoray.jobs.status import JobInfo
from motoray.spec import RequestError, outputs_per_image, parse_for, parse_json, parse_one_for

MAX_BODY_BYTES = 1024 * 1024
# fullmatch, not `$`: `$` also matches before a trailing newline ("<id>%0A").
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_WAIT_S = 60  # GET ?wait_s=: well inside the clients' and proxies' usual read timeouts

_errors = {"model": ErrorResponse}
_retry_after = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
UNAVAILABLE = {
    503: {
        **_errors,
        "description": "Ray unreachable or the API restarting",
        "headers": _retry_after,
    }
}

router = APIRouter(
    prefix="/data_prep",
    tags=["jobs"],
    dependencies=[Depends(require_token)],
    responses={401: {**_errors, "description": "missing or wrong token"}, **UNAVAILABLE},
)


@router.post(
    "",
    status_code=202,
    summary="Start one job per request",
    description="A request object, or a list of them (the original clients send a list). "
    "Each job is accepted durably: its inputs are in its folder before the 202, and a runner "
    "or service that restarts resumes it.",
    responses={
        400: {**_errors, "description": "body is not JSON (the message says where)"},
        413: {**_errors, "description": "body larger than 1 MiB"},
        415: {**_errors, "description": "Content-Type is not application/json"},
        422: {**_errors, "description": "invalid request: every field path and reason"},
        429: {
            "description": "too many pending jobs (or the API overloaded)",
            "headers": _retry_after,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}},
                "text/plain": {"schema": {"type": "string"}},  # Serve's own backpressure
            },
        },
    },
    # The body schema depends on the enabled operators: filled in by app.openapi().
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}},
)
async def submit_jobs(request: Request, config: ConfigDep, jobs: JobsDep) -> JobsAccepted:
    body = await _read_json(request)
    # A body of more requests than may ever be pending would get 429 forever: 422 instead.
    requests = parse_for(config, body, config.server.max_pending_jobs)
    accepted = accept(requests, config, new_job_id())
    ids = await run_in_threadpool(jobs.submit, accepted, config.server.max_pending_jobs)
    return JobsAccepted(
        jobs=[JobLink(job_id=i, status_url=str(request.url_for("get_job", job_id=i))) for i in ids]
    )


_BODY = {"requestBody": {"required": True, "content": {"application/json": {}}}}
_BAD_BODY = {
    400: {**_errors, "description": "body is not JSON"},
    415: {**_errors, "description": "Content-Type is not application/json"},
    422: {**_errors, "description": "invalid request, or a source that cannot be listed"},
}


@router.post(
    "/preview",
    summary="A contact sheet (PNG) of what a request will produce, without running it",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_BAD_BODY},
    openapi_extra=_BODY,
)
async def preview(
    request: Request,
    config: ConfigDep,
    operators: OperatorsDep,
    count: int = Query(4, ge=1, description="source images shown, up to limits.preview_max_images"),
) -> Response:
    one = parse_one_for(config, await _read_json(request))
    limits = config.limits
    outputs = count * (outputs_per_image(one, operators) + 1)  # the sheet shows the original
    if count > limits.preview_max_images or outputs > limits.preview_max_outputs:
        raise RequestError(
            [
                {
                    "loc": ["query", "count"],
                    "msg": f"{count} images x outputs per image: at most "
                    f"{limits.preview_max_images} images and {limits.preview_max_outputs} "
                    "outputs per preview (limits.preview_max_images, preview_max_outputs)",
                }
            ]
        )
    body = one.model_dump(mode="json", exclude_unset=True)
    png = await _offloaded(offload.contact_sheet(request, body, config, count))
    return Response(png, media_type="image/png")


@router.post(
    "/plan",
    summary="Dry run: images, outputs per split, bytes, duration and cost, without processing",
    responses=_BAD_BODY,
    openapi_extra=_BODY,
)
async def plan(request: Request, config: ConfigDep) -> Any:
    body = await _read_json(request)
    one = parse_one_for(config, body)
    planned = await _offloaded(
        offload.dry_run(request, one.model_dump(mode="json", exclude_unset=True), config)
    )
    return [planned] if isinstance(body, list) else planned  # the body's shape


async def _offloaded(work) -> Any:
    """A preview or plan's result; what a user can fix (stratify without labels, a missing
    source folder) is a 422, a client that left gets nothing."""
    try:
        return await work
    except RequestError:
        raise
    except offload.ClientGone:
        raise ApiError(499, "client closed the request") from None
    except (ValueError, OSError) as e:  # a Ray task's error is also an instance of its cause
        raise ApiError(422, clip(str(getattr(e, "cause", None) or e))) from None


@router.get(
    "/{job_id}",
    name="get_job",
    summary="A job's state, progress and summary",
    responses={404: {**_errors, "description": "unknown job"}},
)
async def get_job(
    job_id: str,
    jobs: JobsDep,
    config: ConfigDep,
    wait_s: float = Query(
        0,
        ge=0,
        le=MAX_WAIT_S,
        description="answer once the job has ended, or after this many seconds: one request "
        "instead of polling",
    ),
) -> JobView:
    if wait_s and JOB_ID.fullmatch(job_id):
        await jobs.until_ended(job_id, wait_s)
    return await run_in_threadpool(lambda: _view(_known(job_id, jobs.status, config)))


@router.get(
    "/{job_id}/logs",
    summary="A job's log lines",
    responses={404: {**_errors, "description": "unknown job"}},
)
def get_logs(job_id: str, jobs: JobsDep, config: ConfigDep) -> JobLogs:
    """motoray's structured log lines of the job (also `motoray logs ID`), every run's."""
    lines = _known(job_id, jobs.logs, config)
    return JobLogs(job_id=job_id, lines=lines)


@router.delete(
    "/{job_id}",
    summary="Stop a job",
    responses={
        404: {**_errors, "description": "unknown job"},
        409: {**_errors, "description": "the job already finished"},
    },
)
def stop_job(job_id: str, jobs: JobsDep, config: ConfigDep) -> JobView:
    """Stops the job and waits (briefly) until it has ended: a stopped job writes no
    job.json, and stays stopped (no runner resumes it)."""
    info = _known(job_id, jobs.status, config)
    if info.status in ("SUCCEEDED", "FAILED"):
        raise ApiError(409, f"job {job_id} already finished: {info.status}")
    return _view(_known(job_id, jobs.stop, config))


def _known(job_id: str, lookup, config):
    found = lookup(job_id, config) if JOB_ID.fullmatch(job_id) else None
    if found is None:
        raise ApiError(404, f"unknown job {clip(job_id, 130)!r}")
    return found


async def _read_json(request: Request) -> Any:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (media_type == "application/json" or media_type.endswith("+json")):
        raise ApiError(
            415, f"send the body as application/json, not {clip(media_type, 80) or 'untyped'}"
        )
    body = bytearray()
    async for chunk in request.stream():  # stop reading once it is too large
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise RequestError([{"loc": [], "msg": "empty body: send a request object or a list"}], 400)
    try:
        return parse_json(bytes(body))
    except RecursionError:
        raise RequestError([{"loc": [], "msg": "invalid JSON: nested too deeply"}], 400) from None
    except RequestError:
        raise
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise RequestError([{"loc": [], "msg": f"invalid JSON: {e}"}], 400) from None


def _view(info: JobInfo) -> JobView:
    return JobView(
        job_id=info.job_id,
        state=info.status,
        source=info.source,
        output=info.output,
        submitted_at=_time(info.submitted_at),
        finished_at=_time(info.finished_at),
        progress=Progress.of(info.counts) if info.counts else None,
        summary=info.outcome,
        error=clip(info.error, 2000) if info.status is JobStatus.FAILED and info.error else None,
        resumed=info.resumed,
    )


def _time(epoch_s: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch_s, UTC) if epoch_s else None
