"""A job's life on Ray Jobs: ids, submit, report progress, read status, stop.

The HTTP service never runs a pipeline itself. Each request becomes a Ray Job
(submission id = job id) whose entrypoint is `motoray run-job <id>`; the job's inputs
(`record.JobInputs`: the validated request, the config it was validated against, the job
folder) travel in the Ray Job's metadata, so the driver runs exactly what was accepted and
the job outlives the HTTP request and the API replica. While it runs, the driver pushes its
counts to a small detached actor (the job board) that any API replica can read; once it
ends, `job.json` in the job folder holds the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import ray

from motoray.board import ACTIVE, TERMINAL, job_board
from motoray.commands import installed_command
from motoray.config import Config
from motoray.pipeline.layout import JOB_FILE, job_folder
from motoray.priority import BATCH_NICENESS
from motoray.record import Counts, JobInputs, JobRecord, Outcome
from motoray.spec import RequestBase
from motoray.storage import open_storage
from motoray.waiting import wait_until

MAX_INPUTS_BYTES = 256 * 1024  # a job's inputs travel in its Ray Job metadata
RESERVATION_TIMEOUT_S = 120  # a reserved id Ray still does not know after this never started
RECHECK_S = 1.0
# Requests of one API replica that may wait for a job's end at once (GET ?wait_s=): the
# replica takes 32 at once (api/deployment.py); the others stay free for everything else.
MAX_WAITING = 16
WAIT_POLL_S = 0.25


def new_job_id() -> str:
    """Sortable by start time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def job_ids(count: int, base: str) -> list[str]:
    """The ids of the requests of one body: `base`, or `base-0`, `base-1`, ... for a list."""
    return [base] if count == 1 else [f"{base}-{i}" for i in range(count)]


def accept(requests: list[RequestBase], config: Config, base_id: str) -> list[JobInputs]:
    """Fix what each request of a body will run."""
    return [
        JobInputs.accept(request, config, job_id, job_folder(config, request.name, job_id).uri)
        for request, job_id in zip(requests, job_ids(len(requests), base_id))
    ]


class TooManyJobs(Exception):
    def __init__(self, active: int, limit: int):
        super().__init__(f"{active} jobs are pending or running (limit {limit}); retry later")


class RequestTooLarge(ValueError):
    pass


class RayUnavailable(ConnectionError):
    """Ray's job server answered 5xx: down or restarting, the service's fault, temporary."""


class RayJobs:
    """Ray's job API with its errors mapped in one place: an unknown job is None, the job
    server's own failures are RayUnavailable (the SDK reports both as RuntimeError text)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client = None

    @property
    def client(self):
        # Created lazily: its constructor calls the dashboard, which may still be starting.
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except RuntimeError as e:
            if "status code 404" in str(e):
                return None
            if "status code 5" in str(e):
                raise RayUnavailable(str(e)) from e
            raise

    def info(self, job_id: str):
        """JobDetails, or None for an id Ray does not know."""
        return self._call("get_job_info", job_id)

    def status(self, job_id: str) -> str | None:
        status = self._call("get_job_status", job_id)
        return None if status is None else status.value

    def submit(self, **kwargs) -> None:
        self._call("submit_job", **kwargs)

    def stop(self, job_id: str) -> None:
        self._call("stop_job", job_id)

    def list(self) -> list:
        return self._call("list_jobs")


def entrypoint(job_id: str, address: str) -> str:
    """`motoray run-job`: the driver reads its inputs from the job's metadata. The id is a
    plain name (checked where it is made), the only argument that varies per job."""
    command = [*installed_command("motoray"), "run-job", job_id, "--address", address]
    if shutil.which("nice"):  # it only waits: from its first instruction, below the API
        command = ["nice", "-n", str(BATCH_NICENESS), *command]
    return " ".join(command)


def load_inputs(job_id: str, address: str) -> JobInputs:
    """A submitted job's inputs, from its Ray Job metadata (in its driver)."""
    info = RayJobs(address).info(job_id)
    if info is None or "inputs" not in (info.metadata or {}):
        raise LookupError(f"no motoray job {job_id!r} on the Ray cluster at {address}")
    return JobInputs.model_validate_json(info.metadata["inputs"])


@dataclass(frozen=True)
class JobState:
    """What is known of one job: Ray's view, the board's counts, job.json."""

    job_id: str
    state: str  # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    source: str
    output: str
    submitted_at: float | None  # epoch seconds
    finished_at: float | None
    progress: Counts | None
    outcome: Outcome | None  # from job.json, once the job has finished
    error: str | None


class JobService:
    """Submit, read and stop motoray jobs on the Ray cluster this process is part of."""

    def __init__(self, gcs_address: str | None = None) -> None:
        self.gcs_address = gcs_address or ray.get_runtime_context().gcs_address
        self.ray_jobs = RayJobs(self.gcs_address)
        self._board = None
        self._runner = None
        self._checked_at = -RECHECK_S  # when the board's active jobs were last checked
        self._records: OrderedDict[str, JobRecord] = OrderedDict()  # of finished jobs
        self._waiting = asyncio.Semaphore(MAX_WAITING)

    @property
    def board(self):
        if self._board is None:
            self.connect()
        return self._board

    @property
    def runner(self):
        if self._runner is None:
            self.connect()
        return self._runner

    def connect(self) -> None:
        """Find (or create) the cluster's job board and runner; the runner's first start
        imports the pipeline, so do it when the service starts, not on the first POST."""
        from motoray.runner import job_runner

        self._board, self._runner = job_board(), job_runner()

    def submit(self, jobs: list[JobInputs], limit: int) -> list[str]:
        """Start every accepted request at once in the runner, each visible as a Ray Job
        that follows it; or none, if that would exceed `limit` active jobs."""
        metadata = [self._metadata(job) for job in jobs]
        ids = [job.job_id for job in jobs]
        self._reserve(ids, limit)
        started: list[str] = []
        try:
            for job, meta in zip(jobs, metadata):
                ray.get(self.board.accepted.remote(job.job_id, meta["source"], job.output))
                ray.get(self.runner.start.remote(job.model_dump_json()), timeout=30)
                started.append(job.job_id)
                self.ray_jobs.submit(
                    entrypoint=entrypoint(job.job_id, self.gcs_address),
                    submission_id=job.job_id,
                    metadata=meta,
                )
        except Exception:
            for job_id in started:  # all of a body's jobs or none
                self.runner.stop.remote(job_id)
                with contextlib.suppress(Exception):
                    self.ray_jobs.stop(job_id)
            self.board.release.remote(ids)
            raise
        return ids

    @staticmethod
    def _metadata(job: JobInputs) -> dict[str, str]:
        inputs = job.model_dump_json()
        if len(inputs) > MAX_INPUTS_BYTES:
            raise RequestTooLarge(
                f"request is {len(inputs)} bytes with its config; limit is {MAX_INPUTS_BYTES}"
            )
        source = job.request["name"]
        return {"motoray": "1", "source": source, "output": job.output, "inputs": inputs}

    def _reserve(self, ids: list[str], limit: int) -> None:
        active = ray.get(self.board.reserve.remote(ids, limit), timeout=10)
        if active is None:
            return
        # Full, as far as the board knows: forget the jobs that have ended, then try again.
        # At most every RECHECK_S: a burst of refused clients must not hammer Ray's job server.
        if time.monotonic() - self._checked_at >= RECHECK_S:
            self._checked_at = time.monotonic()
            ended = [job_id for job_id, age_s in active if self._ended(job_id, age_s)]
            ray.get(self.board.release.remote(ended), timeout=10)
            active = ray.get(self.board.reserve.remote(ids, limit), timeout=10)
            if active is None:
                return
        raise TooManyJobs(len(active), limit)

    def _ended(self, job_id: str, age_s: float) -> bool:
        status = self.ray_jobs.status(job_id)
        if status is None:  # reserved, not submitted yet; or never, if its replica died
            return age_s > RESERVATION_TIMEOUT_S
        return status not in ACTIVE

    def status(self, job_id: str) -> JobState | None:
        """None for an id that is not a motoray job. The board's entry when it has one (a
        read of state the cluster holds); else Ray's job API and job.json."""
        entry = ray.get(self.board.get.remote(job_id), timeout=10)
        if entry is None:
            return self._status_from_ray(job_id)
        state = entry["state"]
        outcome = entry.get("outcome")
        counts = entry.get("counts")
        return JobState(
            job_id=job_id,
            state=state,
            source=entry["source"],
            output=entry["output"],
            submitted_at=entry.get("submitted_at"),
            finished_at=entry.get("finished_at"),
            progress=Counts.model_validate(counts) if counts else None,
            outcome=Outcome.model_validate_json(outcome) if outcome else None,
            error=entry.get("error") if state == "FAILED" else None,
        )

    async def until_ended(self, job_id: str, wait_s: float) -> None:
        """Returns once the job has ended (or the board does not know it), or after
        `wait_s`; at once when MAX_WAITING requests already wait. It asks the job board
        every WAIT_POLL_S: an actor call costs a fraction of an HTTP request through Serve."""
        if self._waiting.locked():
            return
        deadline = time.monotonic() + wait_s
        async with self._waiting:
            while True:
                try:
                    entry = await self.board.get.remote(job_id)
                except ray.exceptions.RayError:
                    return  # a restarting board: the status read next tells what is known
                left = deadline - time.monotonic()
                if entry is None or entry["state"] in TERMINAL or left <= 0:
                    return
                await asyncio.sleep(min(WAIT_POLL_S, left))

    def _status_from_ray(self, job_id: str) -> JobState | None:
        info = self._info(job_id)
        if info is None:
            return None
        state = info.status.value
        inputs = JobInputs.model_validate_json(info.metadata["inputs"])
        record = self._record(inputs) if state in TERMINAL else None
        error = None
        if state == "FAILED":
            error = (record.error if record else None) or info.message
        return JobState(
            job_id=job_id,
            state=state,
            source=info.metadata.get("source", ""),
            output=inputs.output,
            submitted_at=info.start_time / 1000 if info.start_time else None,
            finished_at=info.end_time / 1000 if info.end_time else None,
            progress=record.counts if record else None,
            outcome=record,
            error=error,
        )

    def stop(self, job_id: str, wait_s: float = 15) -> JobState | None:
        """Stop a job and wait (bounded) until it has ended."""
        state = self.status(job_id)
        if state is None:
            return None
        if state.state in ACTIVE:
            self.runner.stop.remote(job_id)
            with contextlib.suppress(Exception):  # its Ray Job follows the run: stop it too
                self.ray_jobs.stop(job_id)
            with contextlib.suppress(TimeoutError):  # the caller reports the state it is in
                wait_until(
                    lambda: self.status(job_id).state in TERMINAL,
                    wait_s,
                    what=f"job {job_id} to end",
                )
        return self.status(job_id)

    def stop_all(self, wait_s: float = 15) -> list[str]:
        """Stop every unfinished motoray job (used when the service takes its Ray down);
        returns those it stopped.
        A Ray Job whose run has already ended is only finishing its report: it is left to
        end on its own, so Ray does not call a SUCCEEDED job STOPPED."""
        ids = [
            job.submission_id
            for job in self.ray_jobs.list()
            if (job.metadata or {}).get("motoray") and job.status.value in ACTIVE
        ]
        entries = ray.get([self.board.get.remote(i) for i in ids], timeout=10)
        unfinished = [i for i, e in zip(ids, entries) if (e or {}).get("state") not in TERMINAL]
        for job_id in unfinished:
            self.runner.stop.remote(job_id)
            self.ray_jobs.stop(job_id)
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: all(self.ray_jobs.status(i) in TERMINAL for i in ids),
                wait_s,
                what="jobs to end",
            )
        # One may have finished its run between the look and the stop: not stopped, then.
        entries = ray.get([self.board.get.remote(i) for i in unfinished], timeout=10)
        done = ("SUCCEEDED", "FAILED")
        return [i for i, e in zip(unfinished, entries) if (e or {}).get("state") not in done]

    def _info(self, job_id: str):
        info = self.ray_jobs.info(job_id)
        if info is None or "inputs" not in (info.metadata or {}):
            return None  # another Ray job on the same cluster: not ours to show
        return info

    def _record(self, inputs: JobInputs) -> JobRecord | None:
        """job.json, cached: a finished job's record never changes. Read with the config
        the job ran with, wherever motoray.yaml points now."""
        if inputs.job_id in self._records:
            return self._records[inputs.job_id]
        folder = open_storage(inputs.output, inputs.config.output_s3())
        if not folder.exists(JOB_FILE):
            return None  # stopped, or died before it could write one
        record = JobRecord.model_validate_json(folder.read(JOB_FILE))
        self._records[inputs.job_id] = record
        while len(self._records) > 1000:
            self._records.popitem(last=False)
        return record
