"""Autoscaling on one machine: a job on a 0-CPU head brings workers up; they leave after it.

Runs scripts/autoscaling_demo.py (fake_multinode autoscaler, job submitted as a Ray Job) in a
process of its own: its head is a separate Ray cluster, on free ports, with its own temp dir.
Afterwards no process it started may be left: every Ray process of that cluster has the
demo's RAY_TMPDIR in its environment, which is how they are found here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from motoray.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "autoscaling_demo.py"
FRAMES = 100  # a job of a few seconds: the wait is for workers to come, then to go
IDLE_MINUTES = 0.15  # 9 s: long enough to tell "after the idle timeout" from "at once"
LAST_TASK_S = 5  # how long before SUCCEEDED the workers' last task may have ended
TIMEOUT_S = 480


def processes_with_env(entry: str) -> list[int]:
    """PIDs of this user's processes whose environment holds `entry` (KEY=value)."""
    needle = entry.encode() + b"\0"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:  # gone, or not ours
            continue
    return pids


def leftovers(entry: str, wait_s: float) -> list[int]:
    """The processes still holding `entry` once all are gone, or after `wait_s`."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not processes_with_env(entry), wait_s, interval=0.5, what="exits")
    return processes_with_env(entry)


def test_autoscaling_config_passes_rays_validation() -> None:
    from ray.autoscaler._private.util import validate_config

    spec = importlib.util.spec_from_file_location("autoscaling_demo", SCRIPT)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    config = demo.autoscaling_config("127.0.0.1:6390", max_workers=2, idle_minutes=IDLE_MINUTES)
    validate_config(config)
    assert config["provider"]["type"] == "fake_multinode"
    assert config["available_node_types"]["ray.head.default"]["resources"] == {"CPU": 0}


@pytest.mark.slow
def test_job_on_an_empty_cluster_brings_workers_that_leave_when_idle(tmp_path: Path) -> None:
    # Short path: Ray's unix socket paths must fit in 107 bytes.
    work = Path(tempfile.mkdtemp(prefix="motoray-as-", dir="/tmp"))
    result_file = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [
        sys.executable, str(SCRIPT),
        "--frames", str(FRAMES),
        "--idle-minutes", str(IDLE_MINUTES),
        "--work-dir", str(work),
        "--json", str(result_file),
    ]  # fmt: skip
    demo = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    marker = f"RAY_TMPDIR={work}"
    try:
        try:
            output, _ = demo.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGTERM)  # the demo stops its head on SIGTERM
            output, _ = demo.communicate(timeout=60)
            pytest.fail(f"autoscaling_demo.py timed out after {TIMEOUT_S} s:\n{output[-4000:]}")
        assert demo.returncode == 0, f"autoscaling_demo.py failed:\n{output[-6000:]}"
        assert leftovers(marker, wait_s=20) == []  # the demo stopped all it started
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in processes_with_env(marker):  # only ever this demo's own processes
            os.kill(pid, signal.SIGKILL)

    result = json.loads(result_file.read_text())
    assert result["succeeded"] and result["job"]["state"] == "SUCCEEDED"
    assert result["job"]["counts"]["outputs"] == FRAMES * 4
    events = [e["event"] for e in result["timeline"]]
    assert events[0] == "submit" and result["timeline"][0]["workers"] == 0
    assert result["peak_workers"] >= 1 and result["workers_at_end"] == 0
    # Workers come for the job (the head has no CPU for it) and go once it is over.
    up, done, gone = result["first_worker_up_s"], result["succeeded_s"], result["workers_gone_s"]
    assert 0 < up < done < gone
    assert events.index("job RUNNING") < events.index("job SUCCEEDED")
    assert events[-1] == "workers gone"
    # Gone after about the idle timeout (the autoscaler looks every second), not at once
    # and not never: the last task ended shortly before SUCCEEDED.
    assert IDLE_MINUTES * 60 - LAST_TASK_S < gone - done < IDLE_MINUTES * 60 + 60
