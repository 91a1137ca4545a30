"""The job board: the cluster's shared view of motoray jobs (a small detached actor)."""

from __future__ import annotations

import time
from collections import OrderedDict

import ray

NAMESPACE = "motoray"
BOARD_NAME = "job-board"
ACTIVE = frozenset({"PENDING", "RUNNING"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@ray.remote(num_cpus=0, max_restarts=-1)
class JobBoard:
    """The cluster's shared view of motoray jobs: which are active, and each one's state.

    The runner (or a job's own driver) reports here; API replicas read a job's state with
    one actor call (no round trip to Ray's job API per poll) and reserve room for new jobs,
    so the `max_pending_jobs` limit holds across replicas.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        # job id -> {state, source, output, submitted_at, finished_at, counts, outcome,
        # error}; bounded: job.json keeps the rest
        self._jobs: OrderedDict[str, dict] = OrderedDict()
        self._capacity = capacity
        # id -> when reserved; may hold ended jobs until someone checks and releases them
        self._active: dict[str, float] = {}

    def accepted(self, job_id: str, source: str, output: str) -> None:
        self._put(job_id, {"state": "PENDING", "source": source, "output": output,
                           "submitted_at": time.time()})  # fmt: skip

    def update(self, job_id: str, counts: dict | None) -> None:
        """RUNNING, with the counts so far (None: none yet)."""
        entry = self._jobs.get(job_id, {})
        if entry.get("state") in TERMINAL:
            return  # a late fire-and-forget update
        self._put(job_id, {**entry, "state": "RUNNING", "counts": counts or entry.get("counts")})

    def finished(self, job_id: str, state: str, outcome: str | None, error: str | None) -> None:
        entry = self._jobs.get(job_id, {})
        if entry.get("state") in TERMINAL:
            return
        counts = entry.get("counts")
        self._put(job_id, {**entry, "state": state, "finished_at": time.time(),
                           "outcome": outcome, "error": error, "counts": counts})  # fmt: skip
        self._active.pop(job_id, None)  # its slot is free at once

    def stop(self, job_id: str) -> None:
        """A stop was asked for: the job's tasks end at their next look (`ended`)."""
        entry = self._jobs.get(job_id)
        if entry is not None and entry["state"] not in TERMINAL:
            entry["stopping"] = True

    def ended(self, job_id: str) -> bool:
        """Whether a job's tasks should stop writing: it has ended (given up on past its
        time limit, say) or is being stopped. False for a job the board does not hold."""
        entry = self._jobs.get(job_id) or {}
        return entry.get("state") in TERMINAL or entry.get("stopping", False)

    def _put(self, job_id: str, entry: dict) -> None:
        self._jobs[job_id] = entry
        self._jobs.move_to_end(job_id)
        while len(self._jobs) > self._capacity:
            self._jobs.popitem(last=False)

    def get(self, job_id: str) -> dict | None:
        return self._jobs.get(job_id)

    def reserve(self, job_ids: list[str], limit: int) -> list[tuple[str, float]] | None:
        """Count `job_ids` as active if at most `limit` are then; else (active id, age in s)."""
        now = time.time()
        if len(self._active) + len(job_ids) > limit:
            return [(job_id, now - reserved) for job_id, reserved in self._active.items()]
        self._active.update(dict.fromkeys(job_ids, now))
        return None

    def release(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._active.pop(job_id, None)


def job_board():
    """The one board of the cluster, created by whoever needs it first."""
    return JobBoard.options(
        name=BOARD_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()
