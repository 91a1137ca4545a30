"""Waiting for a job's end (GET ?wait_s=), against a real job board actor: a waiter returns
when the job ends, not at its time limit; at its time limit while the job runs; at once
for a job the board does not know; and a replica's waiters are bounded."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from motoray.board import JobBoard
from motoray.jobs import MAX_WAITING, JobService


@pytest.fixture
def jobs(ray_local):
    """A JobService reading a board of this test's own, with one job running on it."""
    board = JobBoard.options(name=f"board-{uuid.uuid4().hex[:8]}").remote()
    board.accepted.remote("job", "MotoGP", "/out/job")
    board.update.remote("job", {"images_total": 3})
    service = JobService(ray_local.get_runtime_context().gcs_address)
    service._board = board  # not the cluster's named board
    yield service
    ray_local.kill(board)


def test_a_waiter_returns_when_the_job_ends(jobs):
    async def wait() -> None:
        waiter = asyncio.ensure_future(jobs.until_ended("job", 600))
        done, _ = await asyncio.wait([waiter], timeout=1)
        assert not done  # running: it waits
        jobs.board.finished.remote("job", "SUCCEEDED", None, None)
        await asyncio.wait_for(waiter, 60)  # far before its own 600 s

    asyncio.run(wait())


def test_a_waiter_returns_at_its_time_limit(jobs, ray_local):
    start = time.monotonic()
    asyncio.run(asyncio.wait_for(jobs.until_ended("job", 0.5), 60))
    assert time.monotonic() - start >= 0.5  # it waited, and not for the end
    assert ray_local.get(jobs.board.get.remote("job"))["state"] == "RUNNING"


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
        jobs.board.finished.remote("job", "SUCCEEDED", None, None)
        await asyncio.wait_for(asyncio.gather(*waiters), 60)

    asyncio.run(wait_all())


def test_a_jobs_tasks_learn_it_has_ended_when_stopped_or_finished(jobs, ray_local):
    """What a job's tasks ask the board (`ended`): not while it runs, nor for a job it does
    not hold; yes once a stop is asked for, and once it has ended (a give-up included)."""
    board = jobs.board
    board.accepted.remote("other", "MotoGP", "/out/other")
    assert ray_local.get([board.ended.remote(j) for j in ("job", "other", "nobody")]) == [
        False,
        False,
        False,
    ]
    board.stop.remote("job")
    board.finished.remote("other", "FAILED", None, "JobTimeout: stuck")
    assert ray_local.get([board.ended.remote(j) for j in ("job", "other")]) == [True, True]
    assert ray_local.get(board.get.remote("job"))["state"] == "RUNNING"  # until it stops
