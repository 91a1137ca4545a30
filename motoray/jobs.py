"""A job's life on Ray Jobs: submit, report progress, read status, stop.

The HTTP service never runs a pipeline itself. Each request becomes a Ray Job
(submission id = job id) whose entrypoint is `motoray run`, so the job outlives
the HTTP request and the API replica. While it runs, the job's driver pushes its
counts to a small detached actor (the job board) that any API replica can read;
once it ends, `job.json` in the job folder holds the summary.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import ray

from motoray.config import Config
from motoray.pipeline import JOB_FILE, Progress, job_folder
from motoray.spec import RequestBase
from motoray.storage import open_storage

NAMESPACE = "motoray"
BOARD_NAME = "job-board"
PROGRESS_ENV = "MOTORAY_PROGRESS"  # set in service jobs: the driver reports to the board
MAX_REQUEST_BYTES = 64 * 1024  # the request travels inside the entrypoint command line
RESERVATION_TIMEOUT_S = 120  # a reserved id Ray still does not know after this never started
RECHECK_S = 1.0
ACTIVE = frozenset({"PENDING", "RUNNING"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@ray.remote(num_cpus=0, max_restarts=-1)
class JobBoard:
    """The cluster's shared view of motoray jobs: which are active, and their counts.

    Drivers push counts here; API replicas read them and reserve room for new jobs,
    so the `max_pending_jobs` limit holds across replicas and costs one actor call
    (listing Ray's jobs instead would grow with the whole job history).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._counts: OrderedDict[str, dict] = OrderedDict()  # bounded: job.json keeps the rest
        self._capacity = capacity
        # id -> when reserved; may hold ended jobs until someone checks and releases them
        self._active: dict[str, float] = {}

    def update(self, job_id: str, counts: dict) -> None:
        self._counts[job_id] = counts
        self._counts.move_to_end(job_id)
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)

    def get(self, job_id: str) -> dict | None:
        return self._counts.get(job_id)

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


def progress_reporter(job_id: str) -> Progress:
    """An `on_progress` callback for a job driver: fire-and-forget board updates."""
    board = job_board()
    return lambda counts: board.update.remote(job_id, counts)


class TooManyJobs(Exception):
    def __init__(self, active: int, limit: int):
        super().__init__(f"{active} jobs are pending or running (limit {limit}); retry later")


class RequestTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class JobState:
    """What is known of one job: Ray's view, the board's counts, job.json."""

    job_id: str
    state: str  # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    source: str
    output: str
    submitted_at: float | None  # epoch seconds
    finished_at: float | None
    progress: dict | None
    record: dict | None  # job.json, once the job has finished
    error: str | None


def job_ids(count: int, base: str) -> list[str]:
    """The ids `motoray run --job-id base` gives the requests of one body."""
    return [base] if count == 1 else [f"{base}-{i}" for i in range(count)]


def motoray_command() -> list[str]:
    """This installation's `motoray`: a bare `python` may be another interpreter."""
    script = Path(sys.executable).with_name("motoray")  # the venv's script, symlinks kept
    return [str(script)] if script.is_file() else [sys.executable, "-m", "motoray.cli"]


def entrypoint(request: RequestBase, config_path: str, job_id: str, address: str) -> str:
    """`motoray run` reading the normalised request from a pipe.

    The command is self-contained (no file to ship to the driver's node) and can
    be copied from the Ray dashboard to rerun the job by hand.
    """
    # What the user set, validated: defaults are the driver's to fill in, like for any request.
    body = json.dumps(request.model_dump(mode="json", exclude_unset=True), separators=(",", ":"))
    if len(body) > MAX_REQUEST_BYTES:
        raise RequestTooLarge(
            f"request is {len(body)} bytes once normalised; limit is {MAX_REQUEST_BYTES}"
        )
    run = [*motoray_command(), "run", "/dev/stdin", "--config", config_path]
    run += ["--job-id", job_id, "--address", address, "--quiet"]
    return f"printf %s {shlex.quote(body)} | {shlex.join(run)}"


class JobService:
    """Submit, read and stop motoray jobs on the Ray cluster this process is part of."""

    def __init__(self, gcs_address: str | None = None) -> None:
        self.gcs_address = gcs_address or ray.get_runtime_context().gcs_address
        self._client = None
        self._board = None
        self._checked_at = -RECHECK_S  # when the board's active jobs were last checked
        self._records: OrderedDict[str, dict] = OrderedDict()  # job.json of finished jobs

    @property
    def client(self):
        # Created lazily: its constructor calls the dashboard, which may still be starting.
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.gcs_address)
        return self._client

    @property
    def board(self):
        if self._board is None:
            self.connect_board()
        return self._board

    def connect_board(self) -> None:
        """Find (or create) the cluster's job board; creating it takes a second or so."""
        self._board = job_board()

    def submit(self, requests: list[RequestBase], config: Config, base_id: str) -> list[str]:
        """One Ray Job per request, or none if that would exceed `max_pending_jobs`."""
        assert config.path, "jobs need a config file their driver can read"
        ids = job_ids(len(requests), base_id)
        commands = [entrypoint(r, config.path, i, self.gcs_address) for r, i in zip(requests, ids)]
        self._reserve(ids, config.server.max_pending_jobs)
        submitted: list[str] = []
        try:
            for request, job_id, command in zip(requests, ids, commands):
                self.client.submit_job(
                    entrypoint=command,
                    submission_id=job_id,
                    metadata={
                        "motoray": "1",
                        "source": request.name,
                        "output": job_folder(config, request.name, job_id).uri,
                    },
                    runtime_env={"env_vars": {PROGRESS_ENV: "1"}},
                )
                submitted.append(job_id)
        except Exception:
            for job_id in submitted:  # all of a body's jobs or none
                self.client.stop_job(job_id)
            self.board.release.remote(ids)
            raise
        return ids

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
        try:
            return self.client.get_job_status(job_id).value not in ACTIVE
        except RuntimeError as e:
            if "status code 404" not in str(e):
                raise
            # Reserved, not submitted yet; or never, if its replica died in between.
            return age_s > RESERVATION_TIMEOUT_S

    def status(self, job_id: str, config: Config) -> JobState | None:
        """None for an id that is not a motoray job."""
        info = self._info(job_id)
        if info is None:
            return None
        state = info.status.value
        output = info.metadata.get("output", "")
        record = self._record(job_id, output, config) if state in TERMINAL and output else None
        # The final counts once job.json exists; else the last the driver reported, if any.
        counts = (record or {}).get("counts") or ray.get(self.board.get.remote(job_id), timeout=10)
        progress = _counts(counts) if counts else None
        if state in TERMINAL:
            self.board.release.remote([job_id])  # keeps the board's active set small
        error = None
        if state == "FAILED":
            error = (record or {}).get("error") or info.message
        return JobState(
            job_id=job_id,
            state=state,
            source=info.metadata.get("source", ""),
            output=output,
            submitted_at=info.start_time / 1000 if info.start_time else None,
            finished_at=info.end_time / 1000 if info.end_time else None,
            progress=progress,
            record=record,
            error=error,
        )

    def stop(self, job_id: str, config: Config, wait_s: float = 15) -> JobState | None:
        """Stop a job and wait (bounded) until Ray reports it ended."""
        info = self._info(job_id)
        if info is None:
            return None
        if info.status.value in ACTIVE:
            self.client.stop_job(job_id)
            self._wait_ended([job_id], wait_s)
        return self.status(job_id, config)

    def stop_all(self, wait_s: float = 15) -> list[str]:
        """Stop every unfinished motoray job (used when the service takes its Ray down)."""
        ids = [
            job.submission_id
            for job in self.client.list_jobs()
            if (job.metadata or {}).get("motoray") and job.status.value in ACTIVE
        ]
        for job_id in ids:
            self.client.stop_job(job_id)
        self._wait_ended(ids, wait_s)
        return ids

    def _wait_ended(self, job_ids: list[str], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if all(self.client.get_job_status(i).value in TERMINAL for i in job_ids):
                return
            time.sleep(0.2)

    def _info(self, job_id: str):
        try:
            info = self.client.get_job_info(job_id)
        except RuntimeError as e:
            if "status code 404" in str(e):
                return None
            raise
        if not (info.metadata or {}).get("motoray"):
            return None  # another Ray job on the same cluster: not ours to show
        return info

    def _record(self, job_id: str, output: str, config: Config) -> dict | None:
        """job.json, cached: a finished job's record never changes."""
        if job_id in self._records:
            return self._records[job_id]
        folder = open_storage(output, config.output_s3())
        if not folder.exists(JOB_FILE):
            return None  # stopped, or died before it could write one
        record = json.loads(folder.read(JOB_FILE))
        self._records[job_id] = record
        while len(self._records) > 1000:
            self._records.popitem(last=False)
        return record


def _counts(counts: dict) -> dict:
    keys = ("images_total", "images_done", "images_failed", "outputs")
    return {key: counts.get(key, 0) for key in keys}
