"""The warm job runner: one long-lived actor that runs the service's jobs.

A job started the plain Ray Jobs way paid, every time, for a job supervisor process, a
driver process and its imports, Ray Data's start and new worker processes with their
imports: seconds of CPU before the first image. The runner pays them once: it imports the
pipeline when the service starts, and the pipeline's worker processes stay warm between
jobs (they belong to the runner). Every job still appears as a Ray Job (`ray job list`,
the dashboard, its logs): that job's entrypoint, `motoray run-job <id>`, follows the run
here, prints its progress, and ends with its state; stopping it stops the run.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

import ray

from motoray.board import NAMESPACE, job_board
from motoray.record import JobInputs, JobRecord, Outcome

RUNNER_NAME = "job-runner"
FAILURES_KEPT = 20  # in the board's summary; job.json has them all
REMEMBERED = 1000  # finished jobs the runner can still answer `follow` for


def run_and_report(inputs: JobInputs, should_stop=lambda: False) -> str:
    """Run a job, telling the job board as it goes; returns its final state. Used by the
    runner, and by `motoray run-job` itself when the runner does not know the job."""
    from motoray.pipeline.job import JobStopped, run_job

    board = job_board()
    board.update.remote(inputs.job_id, None)  # RUNNING
    try:
        record = run_job(
            inputs,
            on_progress=lambda counts: board.update.remote(
                inputs.job_id, counts.model_dump(exclude_none=True)
            ),
            should_stop=should_stop,
        )
    except JobStopped:
        board.finished.remote(inputs.job_id, "STOPPED", None, None)
        return "STOPPED"
    except Exception as e:
        record = _written_record(inputs)  # job.json FAILED, with its counts, if it got one
        error = (record and record.error) or f"{type(e).__name__}: {e}"
        board.finished.remote(inputs.job_id, "FAILED", _summary(record), error)
        return "FAILED"
    board.finished.remote(inputs.job_id, record.state, _summary(record), record.error)
    return record.state


def _summary(record: JobRecord | None) -> str | None:
    if record is None:
        return None
    outcome = Outcome(
        counts=record.counts, failures=record.failures[:FAILURES_KEPT], timings=record.timings
    )
    return outcome.model_dump_json()


def _written_record(inputs: JobInputs) -> JobRecord | None:
    from motoray.pipeline.layout import JOB_FILE
    from motoray.storage import open_storage

    with contextlib.suppress(Exception):
        folder = open_storage(inputs.output, inputs.config.output_s3())
        return JobRecord.model_validate_json(folder.read(JOB_FILE))
    return None


@ray.remote(num_cpus=0, max_concurrency=64, max_restarts=-1)
class JobRunner:
    """Runs accepted jobs, each in a thread of this process."""

    def __init__(self) -> None:
        import logging

        import motoray.pipeline.job  # noqa: F401  (the imports, once, before any job)
        from motoray.priority import DRIVER_NICENESS, lower_priority

        lower_priority(DRIVER_NICENESS)

        # The job's own log lines and the board say what happens; not Ray Data's bars.
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)

        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._stopping: set[str] = set()
        self._ended: OrderedDict[str, str] = OrderedDict()  # job id -> final state

    def start(self, inputs_json: str) -> None:
        """Begin a job now; returns at once (the run goes on in its own thread)."""
        inputs = JobInputs.model_validate_json(inputs_json)
        with self._lock:
            self._running[inputs.job_id] = threading.Event()
        threading.Thread(target=self._run, args=(inputs,), daemon=True).start()

    def _run(self, inputs: JobInputs) -> None:
        job_id = inputs.job_id
        watchdog = threading.Timer(
            inputs.config.limits.job_timeout_s * 1.05 + 1, self._give_up, args=(inputs,)
        )
        watchdog.daemon = True
        watchdog.start()
        try:
            state = run_and_report(inputs, should_stop=lambda: job_id in self._stopping)
        finally:
            watchdog.cancel()
        self._end(job_id, state)

    def _give_up(self, inputs: JobInputs) -> None:
        """Stuck past its time limit (a thread cannot be killed): record it FAILED and free
        its slot; should it ever move again, it stops."""
        from motoray.pipeline.job import give_up

        self._stopping.add(inputs.job_id)
        error = give_up(inputs)
        job_board().finished.remote(inputs.job_id, "FAILED", None, error)
        self._end(inputs.job_id, "FAILED")

    def _end(self, job_id: str, state: str) -> None:
        with self._lock:
            if job_id in self._ended:
                return  # given up on already
            self._ended[job_id] = state
            while len(self._ended) > REMEMBERED:
                self._ended.popitem(last=False)
            done = self._running.pop(job_id, None)
        if done is not None:
            done.set()

    def follow(self, job_id: str, timeout_s: float) -> str | None:
        """The job's final state once it ends (None: a job this runner never started; "" if
        still running after `timeout_s`)."""
        with self._lock:
            if job_id in self._ended:
                return self._ended[job_id]
            done = self._running.get(job_id)
        if done is None:
            return None
        done.wait(timeout_s)
        return self._ended.get(job_id, "")

    def stop(self, job_id: str) -> None:
        self._stopping.add(job_id)
        job_board().stop.remote(job_id)  # for its tasks: they look there, not here


def job_runner():
    """The one runner of the cluster, created by whoever needs it first; on the head, where
    drivers run (its pipeline tasks go wherever there are CPUs)."""
    return JobRunner.options(
        name=RUNNER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        resources={"node:__internal_head__": 0.001},
    ).remote()


def existing_runner():
    """The cluster's runner if a motoray service started one; None otherwise (a fresh local
    Ray, a cluster without the service): then a job runs in its own driver."""
    try:
        return ray.get_actor(RUNNER_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def run_in(runner, inputs: JobInputs) -> str:
    """`motoray run` on a cluster whose service keeps a warm runner: the job runs there
    (warm imports and workers), followed from here; its final state."""
    ray.get(runner.start.remote(inputs.model_dump_json()), timeout=60)
    return follow(inputs.job_id) or "FAILED"


def follow(job_id: str, poll_s: float = 2.0) -> str | None:
    """In `motoray run-job`: wait for the runner's run of `job_id`, printing its progress;
    None if the runner never started it. SIGTERM (`ray job stop`) stops the run."""
    import signal
    import sys

    from motoray.priority import as_job_follower

    as_job_follower()  # one per job, waiting: it must not outrank the API
    runner, board = job_runner(), job_board()

    def stop(signum, frame):
        ray.get(runner.stop.remote(job_id), timeout=10)
        print(f"job {job_id}: stopping", flush=True)
        sys.exit(1)

    signal.signal(signal.SIGTERM, stop)
    last = None
    while True:
        state = ray.get(runner.follow.remote(job_id, poll_s))
        if state != "":
            return state
        entry = ray.get(board.get.remote(job_id), timeout=10) or {}
        counts = entry.get("counts")
        if counts and counts != last:
            done, total = counts["images_done"], counts["images_total"]
            print(f"job {job_id}: {done}/{total} images, {counts['outputs']} outputs", flush=True)
            last = counts
