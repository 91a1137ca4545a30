"""Autoscaling, shown on one machine: a motoray job brings workers up, and they leave after it.

Starts a Ray head with 0 CPUs and the `fake_multinode` autoscaler (worker "nodes" are extra
raylets on this machine), submits the seed request as a Ray Job, and prints a timeline:
submitted, job RUNNING, workers up, SUCCEEDED, workers gone after the idle timeout.
Everything it starts is one process group (the head's), stopped by PID at the end.

    .venv/bin/python scripts/autoscaling_demo.py [--frames 4000] [--json FILE] [--keep]

It never runs `ray stop`, and it uses free ports and a private temp dir, so it can run next
to other Ray clusters on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import yaml

from motoray.commands import installed_command
from motoray.server import free_port

ROOT = Path(__file__).resolve().parent.parent
SEED_REQUEST = ROOT / "examples" / "requests" / "seed_sample.json"
WORKER_TYPE = "cpu_worker"
POLL_S = 0.5


def autoscaling_config(gcs_address: str, max_workers: int, idle_minutes: float) -> dict:
    """A fake_multinode cluster: a 0-CPU head and up to `max_workers` 1-CPU workers."""
    return {
        "cluster_name": "motoray-autoscaling-demo",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_minutes,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,  # the provider assumes port 6379 without it
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {
                # A small object store per worker: they all share this machine's memory.
                "resources": {"CPU": 1, "object_store_memory": 200 * 1024**2},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "head_node_type": "ray.head.default",
        # Unused by this provider, but the autoscaler's validate_config wants them all.
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


class Timeline:
    """Events in seconds since the first one (wall clock, to line up with Ray's logs)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.events: list[dict] = []

    def add(self, event: str, at: float | None = None, **details) -> dict:
        at = time.time() if at is None else at
        if self.t0 is None:
            self.t0 = at
        entry = {"t": round(at - self.t0, 1), "event": event, **details}
        self.events.append(entry)
        extra = " ".join(f"{k}={v}" for k, v in details.items())
        print(f"t={entry['t']:6.1f}s  {event} {extra}".rstrip(), flush=True)
        return entry

    def first(self, event: str) -> float | None:
        return next((e["t"] for e in self.events if e["event"] == event), None)


def start_head(work: Path, env: dict[str, str], max_workers: int, idle_minutes: float):
    """`ray start --head --block` with the autoscaler, in a new process group; its ports."""
    from ray.util import get_node_ip_address

    ip = get_node_ip_address()  # what the head advertises, and worker nodes dial
    ports = {name: free_port() for name in ("gcs", "dashboard", "client")}
    config = work / "autoscaling.yaml"
    config.write_text(
        yaml.safe_dump(autoscaling_config(f"{ip}:{ports['gcs']}", max_workers, idle_minutes))
    )
    command = [
        *installed_command("ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--num-cpus=0",  # pipeline work cannot run on the head: workers must come
        f"--port={ports['gcs']}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={ports['dashboard']}",
        f"--ray-client-server-port={ports['client']}",
        "--dashboard-agent-listen-port=0",  # taken meanwhile, it would disable job submission
        f"--temp-dir={work / 'ray'}",
        f"--autoscaling-config={config}",
    ]  # fmt: skip
    with (work / "head.log").open("wb") as log:
        head = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return head, ports


def stop_group(process: subprocess.Popen, grace_s: float = 20) -> None:
    """Stop `ray start --block` (SIGTERM: it drains and stops its own processes), then
    SIGKILL whatever is left of the process group it leads (worker nodes the autoscaler
    had not removed yet, say)."""
    process.terminate()  # the leader only: it stops its own processes in order
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return  # nothing left
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def wait_for_dashboard(client_factory, head: subprocess.Popen, timeout_s: float):
    """The client, once the head's dashboard answers (it starts after the GCS)."""
    from ray.exceptions import AuthenticationError

    deadline = time.monotonic() + timeout_s
    while True:
        if head.poll() is not None:
            raise RuntimeError(f"the head exited with code {head.returncode}")
        try:
            return client_factory()
        except AuthenticationError:
            raise  # waiting will not fix it
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def submit(client, entrypoint: str, job_id: str, timeout_s: float) -> str:
    """submit_job, retried while the head's job agent has not registered yet (a fresh head's
    dashboard answers a few seconds before it can run jobs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, submission_id=job_id)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def autoscaler_events(work: Path, t0: float) -> list[dict]:
    """The autoscaler's decisions, from monitor.log, on the timeline's clock: when it queues
    a launch, and its summaries ("Adding 1 node(s)...", logged once the node has started;
    "Removing ... (idle)")."""
    events = []
    for log in sorted({p.resolve() for p in work.glob("ray/session_*/logs/monitor.log")}):
        for line in log.read_text(errors="replace").splitlines():
            stamp, _, rest = line.partition("\t")
            if ":event_summary:" in rest:
                message = rest.split(":event_summary:", 1)[1].strip()
            elif "new nodes for launch" in rest:
                message = rest.split("StandardAutoscaler: ", 1)[-1].strip()
            else:
                continue
            at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time
            events.append({"t": round(at - t0, 1), "event": message})
    return events


def alive_workers(address: str) -> int:
    from ray.util.state import list_nodes

    # Filtered here: a server-side filter makes the state API report "missing output".
    nodes = list_nodes(address=address, timeout=10)
    return sum(n.state == "ALIVE" and not n.is_head_node for n in nodes)


def run_demo(args: argparse.Namespace, work: Path) -> dict:
    # Ray 2.60 clusters require a token, read from ~/.ray/auth_token; Ray reads this setting
    # once, so it must be set before Ray is imported.
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray.job_submission import JobStatus, JobSubmissionClient

    from motoray.sample_data import write_sample_frames

    frames = work / "frames" / "MotoGP"
    # 200 distinct pictures, the rest copies under their own names: cheap to make, and a job
    # long enough for Ray Data to ask for a second worker (one more per ~10 s of >75% use).
    write_sample_frames(frames, args.frames, (640, 360), unique=200)
    config = work / "motoray.yaml"
    config.write_text(
        yaml.safe_dump(
            {"sources": {"MotoGP": {"uri": str(frames)}}, "output": {"uri": str(work / "out")}}
        )
    )
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",  # required by the fake_multinode provider
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",  # the autoscaler looks every second, not 5
        "RAY_TMPDIR": str(work),  # worker nodes' files, and no address file in /tmp/ray
        # Nothing to drain on SIGTERM here (no Serve); the 30 s default would only wait.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    env.pop("RAY_ADDRESS", None)

    head, ports = start_head(work, env, args.max_workers, args.idle_minutes)
    address = f"http://127.0.0.1:{ports['dashboard']}"
    try:
        client = wait_for_dashboard(lambda: JobSubmissionClient(address), head, 120)
        job_id = "autoscaling-demo"
        run = ["run", str(args.request), "--config", str(config), "--job-id", job_id, "--quiet"]
        # The venv's own motoray: a bare `motoray` may be another one on the head.
        entrypoint = shlex.join([*installed_command("motoray"), *run])
        timeline = Timeline()
        timeline.add("submit", workers=alive_workers(address))
        submission_id = submit(client, entrypoint, job_id, timeout_s=60)

        status, workers, peak = None, 0, 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            new_status = client.get_job_status(submission_id)
            if new_status != status:
                status = new_status
                timeline.add(f"job {status.value}")
            count = alive_workers(address)
            if count != workers:
                change = "workers up" if count > workers else "workers down"
                workers, peak = count, max(peak, count)
                timeline.add(change if count else "workers gone", workers=count)
            if status.is_terminal() and workers == 0:
                break
            time.sleep(POLL_S)
        else:
            timeline.add("timed out", status=status.value, workers=workers)
        decisions = autoscaler_events(work, timeline.t0)
        print("autoscaler (monitor.log):")
        for event in decisions:
            print(f"t={event['t']:6.1f}s  {event['event']}")
        logs = client.get_job_logs(submission_id)
        record_path = work / "out" / "MotoGP" / job_id / "job.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else None
        return {
            "status": status.value,
            "succeeded": status == JobStatus.SUCCEEDED,
            "peak_workers": peak,
            "workers_at_end": workers,
            "idle_timeout_minutes": args.idle_minutes,
            "timeline": timeline.events,
            "autoscaler": decisions,
            "first_worker_up_s": timeline.first("workers up"),
            "succeeded_s": timeline.first("job SUCCEEDED"),
            "workers_gone_s": timeline.first("workers gone"),
            "job": record and {"state": record["state"], "counts": record["counts"]},
            "job_logs_tail": logs[-2000:],
        }
    finally:
        stopping = time.monotonic()
        stop_group(head)
        print(f"head stopped in {time.monotonic() - stopping:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=4000, help="640x360 frames to process")
    parser.add_argument("--request", type=Path, default=SEED_REQUEST)
    parser.add_argument("--max-workers", type=int, default=2)
    parser.add_argument("--idle-minutes", type=float, default=0.25, help="idle_timeout_minutes")
    parser.add_argument("--timeout", type=float, default=300, help="seconds, submit to gone")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--work-dir", type=Path, help="empty dir for everything (default: a new one in /tmp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    args.request = args.request.resolve()

    # Stopped with SIGTERM (a test's timeout), still stop the head: `finally` runs on exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # Short path under /tmp: Ray's unix socket paths must fit in 107 bytes.
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="motoray-as-", dir="/tmp"))
    try:
        result = run_demo(args, work.resolve())
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = result["succeeded"] and result["peak_workers"] > 0 and result["workers_at_end"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
