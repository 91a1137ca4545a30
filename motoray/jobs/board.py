"""The job board: every job's `JobInfo`, one actor call away from any API replica.

The runner reports here as a job goes (through `status.advance`, which refuses a move out
of an ended state); replicas read a job's state, reserve room for new jobs (so that
`server.max_pending_jobs` holds across replicas) and ask for stops; a job's tasks ask
whether it has ended. It holds no more than it can lose: job folders hold the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import ray

from motoray.jobs.record import Counts, JobStatus, Outcome
from motoray.jobs.status import JobInfo, TransitionRefused, advance, stop_requested

NAMESPACE = "motoray"
BOARD_NAME = "job-board"
CAPACITY = 10_000  # jobs held; older ones are read from their folders


class Board:
    """The table itself (JobBoard below is this class, held by Ray)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._jobs: OrderedDict[str, JobInfo] = OrderedDict()
        self._capacity = capacity
        self._active: set[str] = set()  # accepted and not ended: counted against the limit

    def accept(self, jobs: list[JobInfo], limit: int | None = None) -> int | None:
        """Hold `jobs` as PENDING, all of them or none: None when accepted, else the number
        of active jobs that leaves no room under `limit`. A job the board holds already (a
        runner resuming one) keeps what is known of it."""
        if limit is not None and len(self._active) + len(jobs) > limit:
            return len(self._active)
        for info in jobs:
            if info.job_id not in self._jobs:
                self._put(info)
            if not self._jobs[info.job_id].status.is_terminal():
                self._active.add(info.job_id)
        return None

    def discard(self, job_ids: list[str]) -> None:
        """Jobs that were never accepted after all (their inputs could not be written)."""
        for job_id in job_ids:
            self._jobs.pop(job_id, None)
            self._active.discard(job_id)

    def running(self, job_id: str, resumed: int) -> JobInfo | None:
        """A run of the job begins (its `resumed`-th resume); None if the job has ended (a
        stop came first): then no run may begin."""
        return self._move(job_id, JobStatus.RUNNING, resumed=resumed)

    def progress(self, job_id: str, counts: Counts) -> None:
        info = self._jobs.get(job_id)
        if info is not None and info.status is JobStatus.RUNNING:
            self._put(info.model_copy(update={"counts": counts}))

    def finished(
        self,
        job_id: str,
        status: JobStatus,
        outcome: Outcome | None = None,
        error: str | None = None,
    ) -> JobInfo | None:
        """The job ended; None if it had already (a late report: what was said first holds)."""
        info = self._jobs.get(job_id)
        counts = (outcome.counts if outcome else None) or (info.counts if info else None)
        moved = self._move(job_id, status, outcome=outcome, error=error, counts=counts)
        if moved is not None:
            self._active.discard(job_id)  # its slot is free at once
        return moved

    def stop(self, job_id: str) -> JobInfo | None:
        """A stop asked for: the job as it now is (None: not held)."""
        info = self._jobs.get(job_id)
        if info is None or info.status.is_terminal():
            return info
        info = stop_requested(info)
        self._put(info)
        if info.status.is_terminal():
            self._active.discard(job_id)
        return info

    def ended(self, job_id: str) -> bool:
        """Whether a job's tasks should stop writing: it has ended (given up on past its
        time limit, say) or is being stopped. False for a job the board does not hold."""
        info = self._jobs.get(job_id)
        return info is not None and (info.status.is_terminal() or info.stop_requested)

    def get(self, job_id: str) -> JobInfo | None:
        return self._jobs.get(job_id)

    def unended(self) -> list[JobInfo]:
        return [self._jobs[job_id] for job_id in self._active if job_id in self._jobs]

    def _move(self, job_id: str, to: JobStatus, **changes) -> JobInfo | None:
        info = self._jobs.get(job_id)
        if info is None:
            return None
        try:
            info = advance(info, to, **changes)
        except TransitionRefused:
            return None
        self._put(info)
        return info

    def _put(self, info: JobInfo) -> None:
        self._jobs[info.job_id] = info
        self._jobs.move_to_end(info.job_id)
        while len(self._jobs) > self._capacity:
            job_id, _ = self._jobs.popitem(last=False)
            self._active.discard(job_id)


@ray.remote(num_cpus=0, max_restarts=-1)
class JobBoard(Board):
    """The board as an actor: one per cluster (`job_board`). Async, for `wait_ended`: a
    client waiting for a job's end is answered when it ends, without polling."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(capacity)
        self._ends: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def wait_ended(self, job_id: str, timeout_s: float) -> None:
        """Returns once the job has ended (at once for one ended or not held), or after
        `timeout_s`."""
        info = self._jobs.get(job_id)
        if info is None or info.status.is_terminal():
            return
        self._loop = asyncio.get_running_loop()
        event = self._ends.setdefault(job_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)

    def _put(self, info: JobInfo) -> None:
        super()._put(info)
        if info.status.is_terminal() and (event := self._ends.pop(info.job_id, None)):
            self._loop.call_soon_threadsafe(event.set)


def job_board():
    """The one board of the cluster, created by whoever needs it first."""
    return JobBoard.options(
        name=BOARD_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()


def existing_board():
    """The cluster's board if a motoray service made one; None otherwise."""
    try:
        return ray.get_actor(BOARD_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
