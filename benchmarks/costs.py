"""What the service costs beside the pixels: CPU seconds per process, counted over every
process of the service and its Ray (psutil), while idle and per job.

    idle_table       CPU of each process over a window in which nothing is asked of it
    fixed_cost       a 1-image POST -> SUCCEEDED, one at a time: wall time, and CPU-s over
                     every process beyond the job's own task (the worker's work, measured
                     bare in this process)
    submit_overhead  `ray job submit -- motoray run` (1 image) against `ray job submit --
                     true` on the same cluster, alternated

    python -m benchmarks.costs [--seconds 60] [--images 120] [--quiet 60]
        the idle tables of a fresh `motoray serve` (its own Ray): right after it answers,
        then `--quiet` seconds after a job of `--images` frames
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import yaml

CpuTimes = dict[tuple[int, float], tuple[str, float]]  # (pid, created) -> (title, CPU-s)


def tree(*roots: int) -> list[psutil.Process]:
    """`roots` and every process below them (those that end meanwhile are left out)."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                found[process.pid] = process
    return list(found.values())


def cpu_times(*roots: int) -> CpuTimes:
    """CPU seconds so far (user + system) of every process of the trees, by process."""
    times: CpuTimes = {}
    for process in tree(*roots):
        with contextlib.suppress(psutil.Error):
            used = process.cpu_times()
            times[(process.pid, process.create_time())] = (
                title(process),
                used.user + used.system,
            )
    return times


def title(process: psutil.Process) -> str:
    """What a process is, briefly: Ray's `ray::Name` titles, else its program and script."""
    command = process.cmdline()
    if command and command[0].startswith("ray::"):  # ray::JobRunner.start -> ray::JobRunner
        return "ray::" + re.split(r"[.: ]", command[0].removeprefix("ray::"))[0]
    words = [Path(word).name for word in command[:3] if not word.startswith("-")]
    return " ".join(words) or process.name()


def wait_for(roots: tuple[int, ...], titles: set[str], timeout: float = 120) -> None:
    """Until processes of these titles run in the trees: /healthz answers before the job
    runner's worker has started, and a sample taken then misses it."""
    from motoray.waiting import wait_until

    def present() -> bool:
        return titles <= {name for name, _ in cpu_times(*roots).values()}

    wait_until(present, timeout, interval=0.5, what=f"processes {sorted(titles)}")


def used(before: CpuTimes, after: CpuTimes) -> dict[str, float]:
    """CPU-s per process title between two snapshots (a process started meanwhile counts
    whole; one that ended meanwhile is lost)."""
    per_title: dict[str, float] = {}
    for key, (name, seconds) in after.items():
        spent = seconds - before.get(key, (name, 0.0))[1]
        per_title[name] = per_title.get(name, 0.0) + spent
    return per_title


def idle_table(roots: tuple[int, ...], seconds: float) -> dict:
    """Every process's CPU over `seconds` of nothing asked: per title (processes of one
    title summed, with their count), and the total as a share of one core."""
    before = cpu_times(*roots)
    time.sleep(seconds)
    after = cpu_times(*roots)
    counts: dict[str, int] = {}
    for name, _ in after.values():
        counts[name] = counts.get(name, 0) + 1
    spent = used(before, after)
    rows = sorted(spent.items(), key=lambda row: -row[1])
    return {
        "seconds": seconds,
        "cores": round(sum(spent.values()) / seconds, 3),
        "processes": [
            {"title": name, "count": counts[name], "cores": round(cpu / seconds, 4)}
            for name, cpu in rows
        ],
    }


def fixed_cost(
    post_and_wait: Callable[[], None],
    roots: tuple[int, ...],
    task_cpu_s: float,
    jobs: int = 20,
) -> dict:
    """`jobs` one-image jobs one after the other: the wall time of each from POST to the
    client seeing SUCCEEDED, and the CPU-s every process spent on it beyond `task_cpu_s`
    (the job's own work). The client's own CPU (this process) is counted apart."""
    walls, cpus, client = [], [], []
    me = psutil.Process()
    for _ in range(jobs):
        before, mine = cpu_times(*roots), me.cpu_times()
        start = time.perf_counter()
        post_and_wait()
        walls.append(time.perf_counter() - start)
        after, mine_after = cpu_times(*roots), me.cpu_times()
        cpus.append(sum(used(before, after).values()) - task_cpu_s)
        client.append(mine_after.user + mine_after.system - mine.user - mine.system)
    return {
        "jobs": jobs,
        "wall_s_median": round(statistics.median(walls), 3),
        "wall_s": [round(w, 3) for w in walls],
        "task_cpu_s": round(task_cpu_s, 4),
        "cpu_s_beyond_task_median": round(statistics.median(cpus), 3),
        "client_cpu_s_median": round(statistics.median(client), 3),
    }


def submit_overhead(
    submit: Callable[[list[str]], list[str]],
    entrypoint: Callable[[], list[str]],
    repeats: int = 3,
) -> dict:
    """`submit(entrypoint())` against `submit(["true"])`, alternated, `repeats` of each: the
    seconds each took, and the median difference."""
    runs: dict[str, list[float]] = {"motoray_run_s": [], "true_s": []}
    for _ in range(repeats):
        runs["motoray_run_s"].append(seconds(submit(entrypoint())))
        runs["true_s"].append(seconds(submit(["true"])))
    medians = {name: round(statistics.median(values), 2) for name, values in runs.items()}
    return {
        **medians,
        "overhead_s": round(medians["motoray_run_s"] - medians["true_s"], 2),
        "per_run": {name: [round(s, 2) for s in values] for name, values in runs.items()},
    }


def seconds(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of a command, which must succeed (its own words, not just its status)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def idle_report(table: dict, label: str) -> list[str]:
    lines = [f"  idle {label}: {table['cores']} of a core over {table['seconds']:g} s"]
    for row in table["processes"]:
        if row["cores"] >= 0.001:
            many = f" (x{row['count']})" if row["count"] > 1 else ""
            lines.append(f"    {row['cores']:7.4f}  {row['title']}{many}")
    return lines


def main() -> None:
    import httpx

    from motoray.sample_data import write_sample_frames
    from motoray.spec import SEED_REQUEST
    from tests.service import spawn_service

    parser = argparse.ArgumentParser(description="idle CPU of a fresh motoray serve")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--images", type=int, default=120, help="the job's (0: no job)")
    parser.add_argument("--quiet", type=float, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="motoray-idle-"))
    write_sample_frames(work / "MotoGP", max(args.images, 1), (640, 360), unique=10)
    config = work / "motoray.yaml"
    config.write_text(yaml.safe_dump({"sources": {"MotoGP": {"uri": str(work / "MotoGP")}},
                                      "output": {"uri": str(work / "outputs")}}))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    token = secrets.token_urlsafe(16)
    process, url = spawn_service(config, token, work / "serve.log", env=env)
    try:
        wait_for((process.pid,), {"ray::JobRunner", "ray::ServeReplica"})
        print("\n".join(idle_report(idle_table((process.pid,), args.seconds), "after start")))
        if args.images:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=90) as http:
                [job] = http.post("/data_prep", json=SEED_REQUEST).json()["jobs"]
                while http.get(f"/data_prep/{job['job_id']}", params={"wait_s": 30}).json()[
                    "state"
                ] in ("PENDING", "RUNNING"):
                    pass
            time.sleep(args.quiet)
            table = idle_table((process.pid,), args.seconds)
            print("\n".join(idle_report(table, f"{args.quiet:g} s after a job")))
    finally:
        process.terminate()
        process.wait(120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
