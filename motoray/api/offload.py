"""Preview and plan run as Ray tasks, never in the API replica: a heavy one cannot starve
/healthz or the job routes. Each is bounded three ways:

- time: `limits.preview_timeout_s`, then it is stopped (422); it is also stopped when its
  client goes away;
- memory: `limits.preview_memory_bytes`, reserved from Ray (`memory=`: a node never runs more
  previews than their budgets fit) and enforced inside the task (RLIMIT_DATA: an allocation
  past it fails, 422). The task's worker is not reused (`max_calls=1`): the lowered limit,
  the memory it grew to and any thread it left behind end with it;
- number: at most `limits.preview_max_running` per API replica, counted until the task has
  really ended (a client that leaves does not free its slot before its task stops); more:
  429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import ray
from fastapi import Request
from ray.exceptions import WorkerCrashedError

from motoray.api.errors import RETRY_AFTER_S, ApiError
from motoray.config import Config
from motoray.spec import RequestError

POLL_S = 0.1  # how often a waiting route checks whether its client is still there
KILL_AFTER_S = 5  # a cancelled task still running then is killed with its worker


_STOPPING: set[asyncio.Future] = set()
_running = 0  # this replica's offloaded tasks not yet ended (one event loop: no lock)


class ClientGone(Exception):
    pass


# num_cpus=0: a preview must not queue behind a job's tasks for a CPU; its budgets
# (limits.preview_*) bound what it can cost, and the time limit ends it. max_calls=1: see
# the module's docstring. `memory=` is set per call, from the config.
@ray.remote(num_cpus=0, max_retries=0, max_calls=1)
def _contact_sheet(request: dict, config: Config, count: int) -> bytes:
    from motoray.preview import contact_sheet

    return contact_sheet(_parsed(request, config), config, count)


@ray.remote(num_cpus=0, max_retries=0, max_calls=1)
def _dry_run(request: dict, config: Config) -> dict:
    from motoray.dry_run import dry_run

    return dry_run(_parsed(request, config), config)


@ray.remote(num_cpus=0, max_retries=0)
def _warm_up() -> None:
    """Ready a worker with the imports done, at batch priority, for the next preview (each
    one uses up its worker): starting one costs 1-3 CPU-seconds here that neither /healthz
    nor the preview's client should wait behind."""
    from motoray.priority import as_batch_work

    as_batch_work()  # first: the imports are the cost
    import motoray.dry_run
    import motoray.preview  # noqa: F401


def warm_up() -> None:
    _warm_up.remote()


def _parsed(request: dict, config: Config):
    from motoray.priority import as_batch_work

    as_batch_work()
    from motoray.spec import parse_one_for

    parsed = parse_one_for(config, request)
    bound_memory(config.limits.preview_memory_bytes)  # after the imports: the request's own
    return parsed


def bound_memory(budget: int) -> bool:
    """From now on this process's private memory (heap and private mappings: where images
    and encoded outputs live; not the object store's shared memory) may grow by `budget`
    bytes at most: an allocation past it fails with MemoryError instead of the node running
    out. For a process that is not reused. False where it cannot be measured (not Linux):
    the Ray reservation alone bounds it there."""
    used = _private_bytes()
    if used is None:
        return False
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = used + budget
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return True


def _private_bytes() -> int | None:
    """What RLIMIT_DATA counts now (Linux: VmData)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


async def contact_sheet(request: Request, body: dict, config: Config, count: int) -> bytes:
    return await _run(request, _contact_sheet, (body, config, count), config, "preview")


async def dry_run(request: Request, body: dict, config: Config) -> dict:
    return await _run(request, _dry_run, (body, config), config, "plan")


async def _run(request: Request, remote, args: tuple, config: Config, what: str) -> Any:
    limits = config.limits
    global _running
    if _running >= limits.preview_max_running:
        raise ApiError(
            429,
            f"{_running} previews and plans are running on this API replica (limit "
            f"{limits.preview_max_running}, limits.preview_max_running); retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    ref = remote.options(memory=limits.preview_memory_bytes).remote(*args)
    _running += 1
    task = asyncio.ensure_future(asyncio.wrap_future(ref.future()))
    task.add_done_callback(_ended)  # the slot frees when the task has ended, however
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.preview_timeout_s
        while not task.done():
            if await request.is_disconnected():
                raise ClientGone(what)
            if loop.time() > deadline:
                raise RequestError(
                    [
                        {
                            "loc": [],
                            "msg": f"the {what} takes longer than limits.preview_timeout_s "
                            f"({limits.preview_timeout_s:g} s): ask for fewer images or outputs",
                        }
                    ]
                )
            await asyncio.wait({task}, timeout=POLL_S)
        return _result(task, limits, what)
    finally:
        if not task.done():
            stopping = asyncio.ensure_future(_stop(ref))
            _STOPPING.add(stopping)  # held until done: the loop keeps only weak references
            stopping.add_done_callback(_STOPPING.discard)


def _ended(task: asyncio.Future) -> None:
    global _running
    _running -= 1
    if not task.cancelled():
        task.exception()  # retrieved: a task nobody waits for any more must not log it
    warm_up()  # its worker is gone (max_calls=1): ready the next one


def _result(task: asyncio.Future, limits, what: str) -> Any:
    """The task's result; its running out of memory, however it shows, is the client's
    to know (4xx naming the cause), never a 5xx. (Ray's memory monitor stopping it, the node
    short of memory, is a 429 from the app's error handlers, as on every route.)"""
    try:
        return task.result()
    except MemoryError:  # our own bound, in the task (a Ray task's error is its cause too)
        raise RequestError([{"loc": [], "msg": _over_memory(limits, what)}]) from None
    except WorkerCrashedError:  # e.g. a library aborting on a failed allocation
        raise RequestError(
            [{"loc": [], "msg": f"its worker died; most likely: {_over_memory(limits, what)}"}]
        ) from None


def _over_memory(limits, what: str) -> str:
    return (
        f"the {what} needs more memory than limits.preview_memory_bytes "
        f"({limits.preview_memory_bytes} bytes): ask for fewer or smaller images or outputs"
    )


async def _stop(ref: ray.ObjectRef) -> None:
    """Interrupt the task; kill its worker, and the threads in it, if it does not stop
    (one blocked in a system call never sees the interrupt)."""
    ray.cancel(ref)
    done, _ = await asyncio.to_thread(ray.wait, [ref], timeout=KILL_AFTER_S)
    if not done:
        ray.cancel(ref, force=True)
