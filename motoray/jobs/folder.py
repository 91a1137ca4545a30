"""A job's folder, as its life uses it, and the output root's list of unended jobs.

    <output root>/<source>/<job id>/
        ...outputs, manifest.parquet...
        job.json                 written last, create-only: the job has ended (not stopped)
        .motoray/inputs.json     the accepted inputs, written before the service answers 202
        .motoray/run-<n>         one per run of the job, claimed create-only: n runs cut short
        .motoray/log-<n>.jsonl   run n's log lines (motoray's structured lines, as JSON)
        .motoray/stop            a stop was asked for: no run starts again
    <output root>/.motoray/accepted/<job id>    the job folder of each accepted, unended job

Hidden names: listings of the job folder (the job's own check of its files, a user's
`*.jpg` glob, `manifest.parquet` readers) do not see them. Every write is a whole object
(S3 has no append) and create-only where two writers could meet.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from motoray.config import Config, S3Settings
from motoray.jobs.record import JobInputs, JobRecord
from motoray.pipeline.layout import JOB_FILE, job_folder
from motoray.storage import Storage, open_storage
from motoray.storage.keys import safe_name

STATE = ".motoray"
INPUTS, STOP = "inputs.json", "stop"


class JobExistsError(FileExistsError):
    pass


class JobFolder:
    """One job's folder: its inputs, runs, log lines, stop marker and job.json."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._state = storage.child(STATE)

    @classmethod
    def at(cls, uri: str, s3: S3Settings | None = None) -> JobFolder:
        return cls(open_storage(uri, s3))

    @classmethod
    def of(cls, inputs: JobInputs) -> JobFolder:
        """Opened with the config the job was accepted with, wherever motoray.yaml points now."""
        return cls.at(inputs.output, inputs.config.output_s3())

    @property
    def uri(self) -> str:
        return self.storage.uri

    # --- inputs: what was accepted ---------------------------------------------------------

    def accept(self, inputs: JobInputs) -> None:
        """Write the inputs; a job id used before (its folder has other inputs) is refused."""
        data = inputs.model_dump_json(indent=2).encode()
        if not self._state.write_new(INPUTS, data) and self._state.read(INPUTS) != data:
            raise JobExistsError(f"job {inputs.job_id} exists already: {self.uri}")

    def inputs(self) -> JobInputs | None:
        if not self._state.exists(INPUTS):
            return None
        return JobInputs.model_validate_json(self._state.read(INPUTS))

    # --- runs, stop, end -------------------------------------------------------------------

    def claim_run(self) -> int:
        """The number of this run (0 for the first): runs before it were cut short."""
        run = 0
        while not self._state.write_new(f"run-{run}", _stamp()):
            run += 1
        return run

    def runs(self) -> int:
        run = 0
        while self._state.exists(f"run-{run}"):
            run += 1
        return run

    def ask_stop(self) -> None:
        self._state.write_new(STOP, _stamp())

    def stop_asked(self) -> bool:
        return self._state.exists(STOP)

    def record(self) -> JobRecord | None:
        """job.json, if the job has ended (stopped jobs have none)."""
        if not self.storage.exists(JOB_FILE):
            return None
        return JobRecord.model_validate_json(self.storage.read(JOB_FILE))

    def commit(self, record: JobRecord) -> None:
        """job.json, written last and create-only: its presence means the job finished. A PUT
        retried after it had landed sees 412: then what is there must be what we wrote."""
        data = record.to_json()
        if not self.storage.write_new(JOB_FILE, data) and self.storage.read(JOB_FILE) != data:
            raise JobExistsError(f"job {record.job_id} finished twice: {self.uri}/{JOB_FILE}")

    # --- log lines -------------------------------------------------------------------------

    def log(self, run: int) -> JobLog:
        return JobLog(self._state, f"log-{run}.jsonl")

    def log_lines(self) -> list[dict]:
        """Every run's lines, in order."""
        lines = []
        for run in range(self.runs()):
            key = f"log-{run}.jsonl"
            with contextlib.suppress(FileNotFoundError):
                lines += [json.loads(line) for line in self._state.read(key).splitlines()]
        return lines


@dataclass
class JobLog:
    """A run's log lines in its job folder, the whole file written again per line (a job
    logs a handful at INFO). Best effort: a line that cannot be written is left out, the
    console still has it, and the job goes on."""

    storage: Storage
    key: str
    lines: list[bytes] = field(default_factory=list)

    def __call__(self, line: dict) -> None:
        self.lines.append(json.dumps(line, default=str).encode())
        with contextlib.suppress(OSError):
            self.storage.write(self.key, b"\n".join(self.lines) + b"\n")


def find(config: Config, job_id: str) -> JobFolder | None:
    """The folder of a job accepted under `config`'s output root, by id: looked for under
    every source the config names (an id says nothing of its source)."""
    for source in config.sources:
        with contextlib.suppress(ValueError):  # an id that cannot be a folder's name
            folder = JobFolder(job_folder(config, source, job_id))
            if folder.inputs() is not None:
                return folder
    return None


class AcceptedJobs:
    """`<output root>/.motoray/accepted/`: one entry per accepted job that has not ended,
    naming its folder. What a runner resumes when nothing else knows of them (a service
    started again); an entry goes once its job has ended."""

    def __init__(self, root: Storage) -> None:
        self._index = root.child(f"{STATE}/accepted")

    @classmethod
    def at(cls, uri: str, s3: S3Settings | None = None) -> AcceptedJobs:
        return cls(open_storage(uri, s3))

    def add(self, inputs: JobInputs) -> None:
        self._index.write(safe_name(inputs.job_id), inputs.output.encode())

    def remove(self, job_id: str) -> None:
        self._index.delete(safe_name(job_id))

    def folders(self) -> Iterator[str]:
        try:
            keys = self._index.list(("",))
        except FileNotFoundError:  # none accepted yet
            return
        for key in keys:
            with contextlib.suppress(FileNotFoundError):  # ended meanwhile
                yield self._index.read(key).decode()


def _stamp() -> bytes:
    return json.dumps({"at": time.time()}).encode()
