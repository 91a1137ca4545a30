"""The job board: the table itself (no Ray) and, against a real board actor, waiting for a
job's end (GET ?wait_s=): a waiter returns when the job ends, not at its time limit; at its
time limit while the job runs; at once for a job the board does not know; and a replica's
waiters are bounded."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from motoray.jobs.board import Board, JobBoard
from motoray.jobs.record import Counts, JobStatus, Outcome
from motoray.jobs.service import MAX_WAITING, JobService
from motoray.jobs.status import JobInfo


def info(job_id: str = "job") -> JobInfo:
    return JobInfo(job_id=job_id, source="MotoGP", output=f"/out/{job_id}", submitted_at=1.0)


def test_room_is_reserved_for_a_whole_body_or_none():
    board = Board()
    assert board.accept([info("a"), info("b")], limit=3) is None
    assert board.accept([info("c"), info("d")], limit=3) == 2  # both or neither
    assert board.get("c") is None
    assert board.accept([info("c")], limit=3) is None
    board.finished("a", JobStatus.FAILED, error="boom")  # its slot is free at once
    assert board.accept([info("d")], limit=3) is None


def test_a_report_after_the_end_is_refused_and_the_first_holds():
    board = Board()
    board.accept([info()])
    assert board.running("job", resumed=0).status is JobStatus.RUNNING
    board.progress("job", Counts(images_total=3, images_done=1))
    board.stop("job")
    assert board.finished("job", JobStatus.STOPPED) is not None
    assert board.finished("job", JobStatus.SUCCEEDED, Outcome(), None) is None  # late
    assert board.running("job", resumed=1) is None  # no run may begin again
    ended = board.get("job")
    assert ended.status is JobStatus.STOPPED and ended.counts.images_done == 1
    assert board.unended() == []


def test_a_job_stopped_before_it_ran_never_runs():
    board = Board()
    board.accept([info()])
    assert board.stop("job").status is JobStatus.STOPPED
    assert board.running("job", resumed=0) is None
    assert board.ended("job")


def test_accepting_a_job_held_already_keeps_what_is_known():
    """A runner resuming a job tells the board, which may know it better (a restart)."""
    board = Board()
    board.accept([info()])
    board.running("job", resumed=0)
    board.accept([info()])
    assert board.get("job").status is JobStatus.RUNNING
    assert [i.job_id for i in board.unended()] == ["job"]


@pytest.fixture
def jobs(ray_local):
    """A JobService reading a board of this test's own, with one job running on it."""
    board = JobBoard.options(name=f"board-{uuid.uuid4().hex[:8]}").remote()
    ray_local.get(board.accept.remote([info()]))
    board.running.remote("job", 0)
    board.progress.remote("job", Counts(images_total=3))
    service = JobService()
    service._board = board  # not the cluster's named board
    yield service
    ray_local.kill(board)


def test_a_waiter_returns_when_the_job_ends(jobs):
    async def wait() -> None:
        waiter = asyncio.ensure_future(jobs.until_ended("job", 600))
        done, _ = await asyncio.wait([waiter], timeout=1)
        assert not done  # running: it waits
        jobs.board.finished.remote("job", JobStatus.SUCCEEDED)
        await asyncio.wait_for(waiter, 60)  # far before its own 600 s

    asyncio.run(wait())


def test_a_waiter_returns_at_its_time_limit(jobs, ray_local):
    start = time.monotonic()
    asyncio.run(asyncio.wait_for(jobs.until_ended("job", 0.5), 60))
    assert time.monotonic() - start >= 0.5  # it waited, and not for the end
    assert ray_local.get(jobs.board.get.remote("job")).status is JobStatus.RUNNING


def test_an_unknown_job_returns_at_once(jobs):
    asyncio.run(asyncio.wait_for(jobs.until_ended("nobody", 600), 60))


def test_one_waiter_more_than_the_limit_returns_at_once(jobs):
    """MAX_WAITING requests wait; the next one returns without waiting (the route then
    answers with the current state), so waiting clients never take every replica slot."""

    async def wait_all() -> None:
        waiters = [asyncio.ensure_future(jobs.until_ended("job", 600)) for _ in range(MAX_WAITING)]
        await asyncio.sleep(0)  # the first MAX_WAITING take their places
        await asyncio.wait_for(jobs.until_ended("job", 600), 60)  # one more: at once
        assert not any(waiter.done() for waiter in waiters)
        jobs.board.finished.remote("job", JobStatus.SUCCEEDED)
        await asyncio.wait_for(asyncio.gather(*waiters), 60)

    asyncio.run(wait_all())


def test_a_jobs_tasks_learn_it_has_ended_when_stopped_or_finished(jobs, ray_local):
    """What a job's tasks ask the board (`ended`): not while it runs, nor for a job it does
    not hold; yes once a stop is asked for, and once it has ended (a give-up included)."""
    board = jobs.board
    ray_local.get(board.accept.remote([info("other")]))
    ray_local.get(board.running.remote("other", 0))
    asked = [board.ended.remote(j) for j in ("job", "other", "nobody")]
    assert ray_local.get(asked) == [False, False, False]
    # Waited for: an async actor (the board is one) runs its calls in no set order.
    ray_local.get(board.stop.remote("job"))
    ray_local.get(board.finished.remote("other", JobStatus.FAILED, None, "JobTimeout: stuck"))
    assert ray_local.get([board.ended.remote(j) for j in ("job", "other")]) == [True, True]
    assert ray_local.get(board.get.remote("job")).status is JobStatus.RUNNING  # until it stops
