"""A job's lifecycle: every move `advance` allows, every one it refuses, and what a stop does
in each state. Pure: no Ray."""

from __future__ import annotations

import itertools

import pytest

from motoray.jobs.record import JobStatus
from motoray.jobs.status import ALLOWED, JobInfo, TransitionRefused, advance, stop_requested

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
SUCCEEDED, FAILED, STOPPED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED
MOVES = {
    (PENDING, RUNNING),
    (PENDING, FAILED),
    (PENDING, STOPPED),
    (RUNNING, RUNNING),
    (RUNNING, SUCCEEDED),
    (RUNNING, FAILED),
    (RUNNING, STOPPED),
}


def job(status: JobStatus = PENDING) -> JobInfo:
    return JobInfo(job_id="j", status=status, source="MotoGP", output="/o/j", submitted_at=1.0)


def test_the_table_is_the_lifecycle():
    assert {(a, b) for a, targets in ALLOWED.items() for b in targets} == MOVES


@pytest.mark.parametrize(("start", "to"), sorted(itertools.product(JobStatus, JobStatus)))
def test_every_move_is_allowed_or_refused(start, to):
    if (start, to) in MOVES:
        moved = advance(job(start), to)
        assert moved.status is to
        assert (moved.finished_at is not None) == to.is_terminal()
    else:
        with pytest.raises(TransitionRefused, match=f"{start} -> {to} is not allowed"):
            advance(job(start), to)


def test_an_ended_job_never_moves_again():
    """A stopped job that a late report calls SUCCEEDED stays STOPPED, and one that ended
    SUCCEEDED is not started again."""
    stopped = advance(advance(job(), RUNNING), STOPPED)
    for to in JobStatus:
        with pytest.raises(TransitionRefused):
            advance(stopped, to)


def test_times_are_set_once():
    running = advance(job(), RUNNING)
    assert running.started_at is not None
    again = advance(running, RUNNING, resumed=1)  # a resumed run keeps the first start
    assert again.started_at == running.started_at and again.resumed == 1
    assert advance(again, SUCCEEDED).finished_at >= running.started_at


def test_a_stop_ends_a_pending_job_and_marks_a_running_one():
    assert stop_requested(job()).status is STOPPED
    running = stop_requested(advance(job(), RUNNING))
    assert running.status is RUNNING and running.stop_requested
    # Its run then ends it STOPPED (or SUCCEEDED, if it finished first: never more than it did).
    assert advance(running, STOPPED).status is STOPPED
    with pytest.raises(TransitionRefused):
        stop_requested(advance(running, SUCCEEDED))


def test_the_record_is_frozen():
    with pytest.raises(ValueError):
        job().status = RUNNING  # type: ignore[misc]
