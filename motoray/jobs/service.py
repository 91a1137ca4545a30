"""What the API (and `motoray run` on a service's cluster) calls: submit, status, logs, stop.

A submitted job is accepted durably before the caller hears so: the board holds it (room
reserved under `server.max_pending_jobs`), its inputs are in its folder and the output root
lists it as unended; then the warm runner is told to start it. Status is one board read;
for a job the board no longer holds (a service started again, a job long ended), its folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable

import ray

from motoray.config import Config
from motoray.jobs import folder as folders
from motoray.jobs.board import job_board
from motoray.jobs.folder import AcceptedJobs, JobFolder
from motoray.jobs.record import JobInputs, JobStatus
from motoray.jobs.status import JobInfo
from motoray.waiting import wait_until

# Requests of one API replica that may wait for a job's end at once (GET ?wait_s=): the
# replica takes 32 at once (api/deployment.py); the others stay free for everything else.
MAX_WAITING = 16
ACTOR_CALL_S = 10
ENDED_KEPT = 1000  # ended jobs read from their folders, cached (they never change)


class TooManyJobs(Exception):
    def __init__(self, active: int, limit: int):
        super().__init__(f"{active} jobs are pending or running (limit {limit}); retry later")


class JobService:
    """Submit, read and stop motoray jobs on the Ray cluster this process is part of."""

    def __init__(self, runner=None) -> None:
        self._board = None
        self._runner = runner
        self._ended: OrderedDict[str, JobInfo] = OrderedDict()
        self._waiting = asyncio.Semaphore(MAX_WAITING)

    @property
    def board(self):
        if self._board is None:
            self._board = job_board()
        return self._board

    @property
    def runner(self):
        if self._runner is None:
            self.connect()
        return self._runner

    def connect(self, config: Config | None = None) -> None:
        """Find (or create) the cluster's job board and runner. The runner's first start
        imports the pipeline and resumes `config`'s unended jobs: do it when the service
        starts, not on the first POST."""
        from motoray.jobs.runner import job_runner

        self._board, self._runner = job_board(), job_runner(config)

    def submit(self, jobs: list[JobInputs], limit: int | None = None) -> list[str]:
        """Accept every job of a body, or none (TooManyJobs if more than `limit` would be
        active), and start them in the runner."""
        ids = [job.job_id for job in jobs]
        infos = [JobInfo.accepted(job) for job in jobs]
        active = ray.get(self.board.accept.remote(infos, limit), timeout=ACTOR_CALL_S)
        if active is not None:
            raise TooManyJobs(active, limit or 0)
        written: list[JobInputs] = []
        try:
            for job in jobs:
                JobFolder.of(job).accept(job)
                _accepted_jobs(job).add(job)
                written.append(job)
        except Exception:  # none of the body's jobs is accepted
            for job in written:
                with contextlib.suppress(OSError):
                    _accepted_jobs(job).remove(job.job_id)
            self.board.discard.remote(ids)
            raise
        for job in jobs:
            self.runner.start.remote(job)
        return ids

    def status(self, job_id: str, config: Config) -> JobInfo | None:
        """None for an id that is no motoray job under `config`'s output root."""
        info = ray.get(self.board.get.remote(job_id), timeout=ACTOR_CALL_S)
        return info if info is not None else self._from_folder(job_id, config)

    def _from_folder(self, job_id: str, config: Config) -> JobInfo | None:
        if job_id in self._ended:
            return self._ended[job_id]
        folder = folders.find(config, job_id)
        inputs = folder.inputs() if folder is not None else None
        if inputs is None:
            return None
        record = folder.record()
        if record is not None:
            info = JobInfo.of_record(inputs, record)
        elif folder.stop_asked():
            info = JobInfo.accepted(inputs).model_copy(
                update={"status": JobStatus.STOPPED, "stop_requested": True}
            )
        else:
            return JobInfo.accepted(inputs)  # accepted, unended: a runner resumes it
        self._ended[job_id] = info
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)
        return info

    def logs(self, job_id: str, config: Config) -> list[dict] | None:
        """The job's log lines, every run's; None for an unknown job."""
        info = self.status(job_id, config)
        if info is None:
            return None
        return JobFolder.at(info.output, config.output_s3()).log_lines()

    async def until_ended(self, job_id: str, wait_s: float) -> None:
        """Returns once the job has ended (or the board does not know it), or after
        `wait_s`; at once when MAX_WAITING requests already wait (so that waiting clients
        never take every slot of the replica). One board call, answered at the end."""
        if self._waiting.locked():
            return
        async with self._waiting:
            with contextlib.suppress(ray.exceptions.RayError):  # a restarting board: the
                await self.board.wait_ended.remote(job_id, wait_s)  # status read next tells

    def stop(self, job_id: str, config: Config, wait_s: float = 15) -> JobInfo | None:
        """Stop a job and wait (bounded) until it has ended. The stop is marked in its
        folder first: no later run of it starts, whatever happens to the runner."""
        info = self.status(job_id, config)
        if info is None or info.status.is_terminal():
            return info
        JobFolder.at(info.output, config.output_s3()).ask_stop()
        ray.get(self.board.stop.remote(job_id), timeout=ACTOR_CALL_S)
        self.runner.stop.remote(job_id)
        with contextlib.suppress(TimeoutError):  # the caller reports the state it is in
            wait_until(
                lambda: self.status(job_id, config).status.is_terminal(),
                wait_s,
                what=f"job {job_id} to end",
            )
        return self.status(job_id, config)

    def follow(
        self, job_id: str, progress: Callable[[JobInfo], None], poll_s: float = 0.5
    ) -> JobInfo:
        """Wait for the job's end, calling `progress` with what the board knows meanwhile;
        its final JobInfo. A runner that dies meanwhile resumes the job when Ray restarts it."""
        while True:
            try:
                waited = ray.get(self.runner.wait.remote(job_id, poll_s))
            except ray.exceptions.RayActorError:
                waited = False  # restarting
            info = ray.get(self.board.get.remote(job_id), timeout=ACTOR_CALL_S)
            if info is not None and info.status.is_terminal():
                return info
            if info is not None:
                progress(info)
            if waited:  # no run of it here yet, or between two runs
                time.sleep(poll_s / 5)


def _accepted_jobs(job: JobInputs) -> AcceptedJobs:
    return AcceptedJobs.at(job.config.output.uri, job.config.output_s3())
