"""The warm job runner: one long-lived actor runs the service's jobs, each in a thread.

A job started as a Ray Job paid, every time, for a supervisor process, a driver process and
its imports, Ray Data's start and new worker processes: seconds of CPU before the first
image. The runner pays them once: it imports the pipeline when the service starts, and the
pipeline's worker processes stay warm between jobs (they belong to the runner).

It resumes what it finds unended: when it starts (Ray restarted it after its process died,
or a service started again on the same output root), every job in the output root's list of
accepted jobs; and every few seconds, any job the board holds that no run holds (a start
that was lost). A run first claims its number in the job's folder, so job.json tells how
many runs were cut short; a job with a stop asked for, or past its time limit, does not run
again. Outputs are the same bytes whichever run writes them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from motoray.config import Config, S3Settings
from motoray.jobs.board import NAMESPACE, job_board
from motoray.jobs.deadline import Deadline
from motoray.jobs.folder import AcceptedJobs, JobFolder, JobLog
from motoray.jobs.record import JobInputs, JobRecord, JobStatus
from motoray.jobs.status import JobInfo

RUNNER_NAME = "job-runner"
KEEP_UP_S = 5.0  # how often the runner looks for accepted jobs that no run holds
START_GRACE_S = 10.0  # a pending job's start may still be on its way this long
ORPHAN_S = 60.0  # a pending job whose folder has no inputs this long: its POST never ended
ACTOR_CALL_S = 30


@dataclass
class Run:
    inputs: JobInputs
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


@ray.remote(num_cpus=0, max_concurrency=64, max_restarts=-1)
class JobRunner:
    """Runs accepted jobs, each in a thread of this process."""

    def __init__(self, output_root: str | None = None, s3: S3Settings | None = None) -> None:
        import motoray.pipeline.job  # noqa: F401  (the imports, once, before any job)
        from motoray.priority import DRIVER_NICENESS, lower_priority

        lower_priority(DRIVER_NICENESS)
        # The job's own log lines and the board say what happens; not Ray Data's lines.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        self._board = job_board()
        self._s3 = s3
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        threading.Thread(target=self._keep_up, args=(output_root,), daemon=True).start()

    def start(self, inputs: JobInputs) -> bool:
        """Run an accepted job (its inputs are in its folder) now; returns at once. False if
        a run of it is already going on here."""
        with self._lock:
            if inputs.job_id in self._runs:
                return False
            run = self._runs[inputs.job_id] = Run(inputs)
        threading.Thread(target=self._run, args=(run,), daemon=True).start()
        return True

    def stop(self, job_id: str) -> None:
        """End the job's run at its next look (the caller has marked the stop durably)."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.stop.set()

    def wait(self, job_id: str, timeout_s: float) -> bool:
        """Once no run of the job goes on here (True), or after `timeout_s` (False)."""
        with self._lock:
            run = self._runs.get(job_id)
        return run is None or run.done.wait(timeout_s)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._runs)

    def _run(self, run: Run) -> None:
        try:
            run_and_report(run.inputs, self._board, run.stop)
        except Exception as e:  # its folder or the board failed it: it ends, saying so
            from motoray.pipeline.job import give_up, reason

            logging.getLogger(__name__).exception("job %s: the runner failed", run.inputs.job_id)
            with contextlib.suppress(Exception):  # else it stays unended: tried again later
                folder = JobFolder.of(run.inputs)
                if folder.record() is None:  # FAILED, unless it had ended already
                    give_up(run.inputs, error=f"the runner could not run it: {reason(e)}")
                record = folder.record()
                _finish(run.inputs, self._board, record.state, record, record.error)
        finally:
            with self._lock:
                self._runs.pop(run.inputs.job_id, None)
            run.done.set()

    def _keep_up(self, output_root: str | None) -> None:
        """Resume what the output root lists as accepted and unended, then, every KEEP_UP_S,
        what the board holds and no run does."""
        folders = AcceptedJobs.at(output_root, self._s3).folders() if output_root else ()
        with contextlib.suppress(Exception):  # an output root it cannot list: the board's
            for uri in folders:
                with contextlib.suppress(Exception):  # one job's folder it cannot read
                    inputs = JobFolder.at(uri, self._s3).inputs()
                    if inputs is not None:
                        self.start(inputs)
        while True:
            with contextlib.suppress(Exception):  # a board restarting: next time
                self._start_lost()
            time.sleep(KEEP_UP_S)

    def _start_lost(self) -> None:
        unended = ray.get(self._board.unended.remote(), timeout=ACTOR_CALL_S)
        now = time.time()
        for info in unended:
            with self._lock:
                if info.job_id in self._runs:
                    continue
            young = now - info.submitted_at < START_GRACE_S
            if info.status is JobStatus.PENDING and young:
                continue  # its start is on its way
            inputs = JobFolder.at(info.output, self._s3).inputs()
            if inputs is not None:
                self.start(inputs)
            elif now - info.submitted_at > ORPHAN_S:
                self._board.discard.remote([info.job_id])


def run_and_report(inputs: JobInputs, board, stop: threading.Event) -> JobStatus:
    """One run of an accepted job, told to the board as it goes; its final state."""
    from motoray.pipeline.job import JobStopped, run_job

    job_id, folder = inputs.job_id, JobFolder.of(inputs)
    deadline = Deadline.of(inputs)
    # Held by the board, whatever it lost (it restarted, or this is a new service's).
    ray.get(board.accept.remote([JobInfo.accepted(inputs)]), timeout=ACTOR_CALL_S)
    ended = _ended_before(inputs, folder, deadline)
    if ended is not None:
        return _finish(inputs, board, *ended)
    run = folder.claim_run()
    if ray.get(board.running.remote(job_id, run), timeout=ACTOR_CALL_S) is None:
        info = ray.get(board.get.remote(job_id), timeout=ACTOR_CALL_S)
        return _finish(inputs, board, info.status if info else JobStatus.STOPPED)
    log = folder.log(run)
    watchdog = deadline.watchdog(lambda: _give_up(inputs, board, stop, run, log))

    def progress(counts) -> None:
        board.progress.remote(job_id, counts)

    try:
        record = run_job(inputs, progress, stop.is_set, run=run, keep_log=log)
    except JobStopped:
        return _finish(inputs, board, JobStatus.STOPPED)
    except Exception as e:
        from motoray.pipeline.job import reason

        record = _quietly(folder.record)  # FAILED, with its counts, if it got that far
        error = (record and record.error) or reason(e)
        return _finish(inputs, board, JobStatus.FAILED, record, error)
    finally:
        watchdog.cancel()
    return _finish(inputs, board, record.state, record, record.error)


def _ended_before(
    inputs: JobInputs, folder: JobFolder, deadline: Deadline
) -> tuple[JobStatus, JobRecord | None, str | None] | None:
    """How the job ended before this run could begin, if it did: a run before this one got
    as far as job.json, a stop was asked for, or its time limit is past."""
    record = folder.record()
    if record is not None:
        return record.state, record, record.error
    if folder.stop_asked():
        return JobStatus.STOPPED, None, None
    if time.time() > deadline.give_up_at:
        from motoray.pipeline.job import give_up

        run = folder.claim_run()  # a run that only records the end
        error = give_up(inputs, run, folder.log(run), deadline.reason(resuming=True))
        return JobStatus.FAILED, None, error
    return None


def _finish(
    inputs: JobInputs,
    board,
    status: JobStatus,
    record: JobRecord | None = None,
    error: str | None = None,
) -> JobStatus:
    """Tell the board (a report after an earlier one is refused there: the first holds),
    then take the job off the output root's list of unended jobs."""
    summary = record.summary() if record is not None else None
    ray.get(board.finished.remote(inputs.job_id, status, summary, error), timeout=ACTOR_CALL_S)
    config = inputs.config
    with contextlib.suppress(OSError):
        AcceptedJobs.at(config.output.uri, config.output_s3()).remove(inputs.job_id)
    return status


def _give_up(inputs: JobInputs, board, stop: threading.Event, run: int, log: JobLog) -> None:
    """Stuck past its time limit (a thread cannot be killed): record it FAILED and free its
    slot; should it ever move again, it stops."""
    from motoray.pipeline.job import give_up

    stop.set()
    _finish(inputs, board, JobStatus.FAILED, error=give_up(inputs, run, log))


def _quietly(read: Callable[[], JobRecord | None]) -> JobRecord | None:
    with contextlib.suppress(Exception):
        return read()
    return None


def job_runner(config: Config | None = None):
    """The one runner of the cluster, created by whoever needs it first (resuming the unended
    jobs of `config`'s output root); on the head, where drivers run (its pipeline tasks go
    wherever there are CPUs)."""
    root = (config.output.uri, config.output_s3()) if config is not None else (None, None)
    return JobRunner.options(
        name=RUNNER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        resources={"node:__internal_head__": 0.001},
    ).remote(*root)


def existing_runner():
    """The cluster's runner if a motoray service started one; None otherwise (a fresh local
    Ray, a cluster without the service): then a job runs in its own driver."""
    try:
        return ray.get_actor(RUNNER_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
