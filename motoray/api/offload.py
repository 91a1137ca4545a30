"""Preview and plan run as Ray tasks, never in the API replica: a heavy one cannot starve
/healthz or the job routes. Each gets `limits.preview_timeout_s`, and is killed when that
runs out or when its client goes away."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from fastapi import Request

from motoray.config import Config
from motoray.spec import RequestError

POLL_S = 0.1  # how often a waiting route checks whether its client is still there
KILL_AFTER_S = 5  # a cancelled task still running then is killed with its worker


_STOPPING: set[asyncio.Future] = set()


class ClientGone(Exception):
    pass


# num_cpus=0: a preview must not queue behind a job's tasks for a CPU; its budgets
# (limits.preview_*) bound what it can cost, and the time limit ends it.
@ray.remote(num_cpus=0, max_retries=0)
def _contact_sheet(request: dict, config: Config, count: int) -> bytes:
    from motoray.preview import contact_sheet

    return contact_sheet(_parsed(request, config), config, count)


@ray.remote(num_cpus=0, max_retries=0)
def _dry_run(request: dict, config: Config) -> dict:
    from motoray.dry_run import dry_run

    return dry_run(_parsed(request, config), config)


@ray.remote(num_cpus=0, max_retries=0)
def _warm_up() -> None:
    """Start a worker with the imports done, at batch priority, before the first preview:
    starting one costs a CPU-second that /healthz must not wait behind."""
    import motoray.dry_run
    import motoray.preview  # noqa: F401
    from motoray.priority import as_batch_work

    as_batch_work()


def warm_up() -> None:
    _warm_up.remote()


def _parsed(request: dict, config: Config):
    from motoray.priority import as_batch_work

    as_batch_work()
    from motoray.spec import parse_one_for

    return parse_one_for(config, request)


async def contact_sheet(request: Request, body: dict, config: Config, count: int) -> bytes:
    return await _run(request, _contact_sheet.remote(body, config, count), config, "preview")


async def dry_run(request: Request, body: dict, config: Config) -> dict:
    return await _run(request, _dry_run.remote(body, config), config, "plan")


async def _run(request: Request, ref: ray.ObjectRef, config: Config, what: str) -> Any:
    limit = config.limits.preview_timeout_s
    task = asyncio.ensure_future(asyncio.wrap_future(ref.future()))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not task.done():
            if await request.is_disconnected():
                raise ClientGone(what)
            if loop.time() > deadline:
                raise RequestError(
                    [
                        {
                            "loc": [],
                            "msg": f"the {what} takes longer than limits.preview_timeout_s "
                            f"({limit:g} s): ask for fewer images or outputs",
                        }
                    ]
                )
            await asyncio.wait({task}, timeout=POLL_S)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            stopping = asyncio.ensure_future(_stop(ref))
            _STOPPING.add(stopping)  # held until done: the loop keeps only weak references
            stopping.add_done_callback(_STOPPING.discard)


async def _stop(ref: ray.ObjectRef) -> None:
    """Interrupt the task (its worker lives on, warm, for the next one); kill the worker, and
    the threads in it, if the task does not stop."""
    ray.cancel(ref)
    done, _ = await asyncio.to_thread(ray.wait, [ref], timeout=KILL_AFTER_S)
    if not done:
        ray.cancel(ref, force=True)
