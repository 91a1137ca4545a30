"""What is known of a job while it lives (`JobInfo`), and the one way it changes (`advance`).

    PENDING --> RUNNING --> SUCCEEDED | FAILED | STOPPED
    PENDING --> FAILED | STOPPED
    RUNNING --> RUNNING          progress, a stop asked for, or a resumed run

An ended job never moves again: a late report of a run that was given up on, a stop that
comes after the end, a runner starting a job that was stopped before it began are refused
(`TransitionRefused`), and whoever asked learns the job's real state. The board, the runner
and `motoray run` all go through `advance`.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from motoray.jobs.record import Counts, JobInputs, JobRecord, JobStatus, Outcome, summary_lines

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
SUCCEEDED, FAILED, STOPPED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    PENDING: frozenset({RUNNING, FAILED, STOPPED}),
    RUNNING: frozenset({RUNNING, SUCCEEDED, FAILED, STOPPED}),
}


class TransitionRefused(ValueError):
    """A move the lifecycle does not allow, such as out of an ended state."""


class JobInfo(BaseModel):
    """One job's state, counts, outcome and times: the board holds one per job, the API
    answers from it, `motoray run` prints it."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    status: JobStatus = PENDING
    source: str
    output: str  # the job folder
    submitted_at: float  # epoch seconds
    started_at: float | None = None
    finished_at: float | None = None
    counts: Counts | None = None  # the progress so far; the final counts once ended
    outcome: Outcome | None = None  # a summary of job.json, once written
    error: str | None = None
    stop_requested: bool = False
    resumed: int = 0  # runs cut short (a runner that died, a service stopped) and resumed

    @classmethod
    def accepted(cls, inputs: JobInputs) -> JobInfo:
        return cls(
            job_id=inputs.job_id,
            source=inputs.source,
            output=inputs.output,
            submitted_at=inputs.accepted_at,
        )

    @classmethod
    def of_record(cls, inputs: JobInputs, record: JobRecord) -> JobInfo:
        """An ended job as its job.json tells it."""
        timings = record.timings
        return cls(
            job_id=record.job_id,
            status=record.state,
            source=inputs.source,
            output=record.output,
            submitted_at=inputs.accepted_at,
            started_at=_epoch(timings.started_at) if timings else None,
            finished_at=_epoch(timings.finished_at) if timings else None,
            counts=record.counts,
            outcome=record.summary(),
            error=record.error,
            resumed=record.resumed,
        )

    def summary_lines(self) -> list[str]:
        return summary_lines(
            self.job_id, self.status, self.output, self.outcome, self.error, self.resumed
        )


def advance(info: JobInfo, to: JobStatus, **changes) -> JobInfo:
    """`info` moved to `to` with `changes` (counts, outcome, error, resumed ...), its times
    set; TransitionRefused if the lifecycle does not allow that move."""
    if to not in ALLOWED.get(info.status, frozenset()):
        raise TransitionRefused(f"job {info.job_id}: {info.status} -> {to} is not allowed")
    now = time.time()
    if to is RUNNING and info.started_at is None:
        changes.setdefault("started_at", now)
    if to.is_terminal():
        changes.setdefault("finished_at", now)
    return info.model_copy(update={"status": to, **changes})


def stop_requested(info: JobInfo) -> JobInfo:
    """A stop asked for: a job not started yet is STOPPED at once; a running one is marked,
    and STOPPED once its run has ended."""
    if info.status is PENDING:
        return advance(info, STOPPED, stop_requested=True)
    return advance(info, info.status, stop_requested=True)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
