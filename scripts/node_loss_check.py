"""Lose a worker node in the middle of a motoray job, on a local multi-node Ray cluster.

One cluster (head with 0 CPUs, two 1-CPU worker nodes) runs the same request twice per
source: job "clean", then job "node-loss", during which a worker node that is running a
pipeline task is killed without grace (SIGKILL of its raylet and object store; its workers
die with them) once some outputs exist but not all, and a replacement node joins. Sources:
a folder of frames, a folder of video clips, a folder of at most 100 frames (a small job:
plain Ray tasks, no dataset), or any of them one after the other on the same cluster (its
start is most of the cost). Writes a JSON report per source (--report, default
stdout); the caller compares the two job folders under <output>/<frames|video>.

Run it in a process of its own (tests/cluster/test_node_loss.py does): it calls ray.init,
which must not meet a test session's in-process Ray, and it should get a private RAY_TMPDIR
so that `ray.init()` elsewhere on the machine does not find this cluster.

    python scripts/node_loss_check.py [--frames DIR] [--clips DIR] [--small DIR] --output DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import psutil
import ray
from ray._private import ray_constants
from ray.cluster_utils import Cluster

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.jobs.record import accept
from motoray.ops import operators_for
from motoray.pipeline.job import run_job
from motoray.pipeline.layout import JOB_FILE, job_folder
from motoray.spec import parse_json, parse_requests

ROOT = Path(__file__).resolve().parent.parent
SEED_REQUEST = ROOT / "examples" / "requests" / "seed_sample.json"
WORKER_CPUS = 1
POLL_S = 0.005
# The tasks that write a job's files: Ray Data's name for its ray_data._write_files tasks,
# and a small job's plain tasks.
PIPELINE_TASKS = ("MapBatches(_write_files)", "_one_block")


def count_outputs(job_dir: Path) -> int:
    return sum(1 for _ in job_dir.rglob("*.jpg")) if job_dir.exists() else 0


class JobThread(threading.Thread):
    """run_job off the main thread: the main thread kills and adds nodes (Ray's Node
    installs signal handlers, which only the main thread may do)."""

    def __init__(self, request, config: Config, job_id: str) -> None:
        super().__init__(daemon=True)
        self.inputs = accept([request], config, job_id)[0]
        self.record: dict | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.record = json.loads(run_job(self.inputs).to_json())
        except BaseException as e:  # reported by the main thread
            self.error = e


def busy_workers(workers: list) -> list[tuple]:
    """The worker nodes running a pipeline task right now, each with the task's name: a
    worker process under the node's raylet whose title is `ray::<task>`. (Ray's state API
    lags by a second or so: a short job could be over before it shows a task running.)"""
    return [
        (node, task)
        for node in workers
        for task in PIPELINE_TASKS
        if any(f"ray::{task}" in title for title in _titles(node))
    ]


def _titles(node) -> list[str]:
    """The command lines of the processes under a node's raylet (those that end meanwhile
    are left out)."""
    [raylet] = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET]
    titles = []
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process(raylet.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                titles.append(" ".join(process.cmdline()))
    return titles


def kill_mid_job(
    cluster: Cluster, workers: list, job: JobThread, job_dir: Path, low: int, high: int
) -> dict:
    """Once at least `low` outputs exist, kill a worker node that is running a pipeline task,
    then add a replacement. Gives up if `high` outputs exist or the job ends first."""
    started = time.monotonic()
    while job.is_alive() and not (job_dir / JOB_FILE).exists():
        outputs = count_outputs(job_dir)
        if outputs >= high:
            break
        victims = busy_workers(workers) if outputs >= low else []
        if victims:
            victim, task = victims[0]
            cluster.remove_node(victim, allow_graceful=False)
            report = {
                "killed": True,
                "task": task,
                "node_id": victim.node_id,
                "outputs_at_kill": outputs,
                "job_json_at_kill": (job_dir / JOB_FILE).exists(),
                "killed_after_s": round(time.monotonic() - started, 2),
            }
            workers.remove(victim)
            workers.append(cluster.add_node(num_cpus=WORKER_CPUS))
            report["replacement_id"] = workers[-1].node_id
            return report
        time.sleep(POLL_S)
    return {"killed": False, "outputs_when_given_up": count_outputs(job_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", help="folder of source frames")
    parser.add_argument("--clips", help="folder of video clips")
    parser.add_argument("--small", help="folder of at most 100 frames: a small job")
    parser.add_argument("--output", required=True, help="output root for all jobs")
    parser.add_argument("--report", type=Path, help="write the JSON report here, not to stdout")
    parser.add_argument("--request", default=str(SEED_REQUEST), help="default: the seed request")
    parser.add_argument(
        "--kill-at", type=float, default=0.1, help="kill once this share of outputs exists"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds, for a lossy job")
    parser.add_argument("--every-s", type=float, default=0.2, help="--clips: sampling")
    parser.add_argument("--range-s", type=float, default=5, help="--clips: seconds per task")
    args = parser.parse_args(argv)
    if not (args.frames or args.clips or args.small):
        parser.error("give --frames, --clips or --small, or several")

    body = parse_json(Path(args.request).read_bytes())
    body = body[0] if isinstance(body, list) else body
    name = body["name"]
    sources = {}
    if args.frames:
        sources["frames"] = SourceConfig(uri=str(Path(args.frames).resolve()))
    if args.clips:  # the same request on the clips' sampled frames, many ranges per clip
        frames = {"every_s": args.every_s, "range_s": args.range_s}
        sources["video"] = SourceConfig(
            uri=str(Path(args.clips).resolve()), kind="video", frames=frames
        )
    if args.small:
        sources["small"] = SourceConfig(uri=str(Path(args.small).resolve()))
    [request] = parse_requests(body, operators_for(), [name])

    # shutdown_at_exit: a reaper kills the nodes if this process dies before `finally`.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": 0},
    )
    report: dict = {}
    try:
        workers = [cluster.add_node(num_cpus=WORKER_CPUS) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for kind, source in sources.items():
            output = OutputConfig(uri=str(Path(args.output, kind).resolve()))
            config = Config(sources={name: source}, output=output)
            report[kind] = lose_a_node(cluster, workers, request, config, args)
    finally:
        ray.shutdown()
        cluster.shutdown()
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.report:
        args.report.write_text(text + "\n")
    else:
        print(text)
    return 0


def lose_a_node(cluster: Cluster, workers: list, request, config: Config, args) -> dict:
    """Job "clean", then job "node-loss" with a worker node killed mid-job: their report."""
    earlier = {t.task_id for t in pipeline_tasks(cluster.address)}  # another source's jobs
    clean = json.loads(run_job(accept([request], config, "clean")[0]).to_json())
    total = clean["counts"]["outputs"]

    job_dir = Path(job_folder(config, request.name, "node-loss").uri)
    job = JobThread(request, config, "node-loss")
    started = time.monotonic()
    job.start()
    low, high = max(1, int(total * args.kill_at)), int(total * 0.75)
    kill = kill_mid_job(cluster, workers, job, job_dir, low, high)
    job.join(timeout=args.timeout)
    if job.is_alive():
        raise TimeoutError(f"job node-loss still running after {args.timeout} s")
    if job.error is not None:
        raise job.error
    lossy = job.record
    if kill["killed"]:
        wait_until_dead(kill["node_id"])
    return {
        "clean": {"state": clean["state"], "counts": clean["counts"]},
        "node_loss": {"state": lossy["state"], "counts": lossy["counts"]},
        "node_loss_s": round(time.monotonic() - started, 2),
        "outputs_expected": total,
        "kill": kill,
        "task_attempts": task_attempts(cluster.address, kill.get("node_id"), earlier),
        "nodes": [  # as this source's jobs left them
            {"node_id": n["NodeID"], "alive": n["Alive"], "cpus": n["Resources"].get("CPU", 0)}
            for n in ray.nodes()
        ],
    }


def wait_until_dead(node_id: str, timeout_s: float = 90) -> None:
    """The GCS marks a killed node dead after missed health checks: a fast job can finish
    (its lost tasks retried as soon as their workers vanished) before that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):
            return
        time.sleep(0.5)


def pipeline_tasks(address: str, detail: bool = False) -> list:
    from ray.util.state import list_tasks

    # An explicit address: with none, the state API picks any Ray instance on the machine.
    tasks = list_tasks(address=address, limit=10000, detail=detail, raise_on_missing_output=False)
    return [t for t in tasks if t.name in PIPELINE_TASKS]


def task_attempts(
    address: str, node_id: str | None, earlier: set[str], timeout_s: float = 8
) -> list[dict]:
    """The pipeline task attempts that died with node `node_id`, and the retries, leaving out
    the `earlier` tasks: the evidence that the kill hit running work. Ray's task events arrive
    a second or two after the fact, so this waits until both kinds show up, or `timeout_s`
    (the victim's task may have ended just before the kill: then there is nothing to wait
    for)."""
    deadline = time.monotonic() + timeout_s
    while True:
        attempts = [
            {
                "attempt": t.attempt_number,
                "state": t.state,
                "error_type": t.error_type,
                "on_killed_node": t.node_id == node_id,
            }
            for t in pipeline_tasks(address, detail=True)
            if t.task_id not in earlier and (t.attempt_number > 0 or t.error_type)
        ]
        died = any(a["on_killed_node"] and a["error_type"] == "NODE_DIED" for a in attempts)
        retried = any(a["attempt"] > 0 and a["state"] == "FINISHED" for a in attempts)
        if (died and retried) or time.monotonic() > deadline:
            return attempts
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
