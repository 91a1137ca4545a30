"""What the bench measures besides throughput: memory, decode fidelity, where a service
job's time goes, the cold paths, POST -> RUNNING, S3 at cloud latency, video."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image

from benchmarks import floors
from benchmarks.variants import FAKE_AWS, REQUEST, TERMINAL, Bench, _duration
from motoray.commands import installed_command


def video_rounds(
    bench: Bench, clips: list[Path], repeats: int, log, warm_up: bool, interlaced: bool = False
) -> dict:
    """The video floor and a motoray video job, interleaved, after a warm-up of each. On
    interlaced clips the floor deinterlaces the frames it samples as motoray does."""
    variants = {
        "floor": lambda some: bench.video_floor(some, deinterlace=interlaced),
        "motoray": bench.video_motoray,
    }
    for run in variants.values() if warm_up else ():
        bench.clear()
        run(clips[:1])
    decoded = sum(round(_duration(clip) * 25) for clip in clips)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        for name, run in variants.items():
            bench.clear()
            start = time.perf_counter()
            run(clips)
            rates[name].append(decoded / (time.perf_counter() - start))
            kind = "interlaced video" if interlaced else "video"
            log(f"  round {repeat + 1}: {kind} {name:8} {rates[name][-1]:7.1f} decoded frames/s")
    ratios = [m / f for m, f in zip(rates["motoray"], rates["floor"])]
    return {
        "clips": len(clips),
        "decoded_frames": decoded,
        "decoded_frames_per_s_median": {
            k: round(statistics.median(v), 1) for k, v in rates.items()
        },
        "ratio_median": round(statistics.median(ratios), 3),
        "ratios_per_round": [round(r, 3) for r in ratios],
    }


class PeakMemory:
    """Peak RSS of the work: this process, its pool, and the Ray worker processes (tasks
    and actors: `ray::...`) of the bench's cluster, sampled at 20 Hz. Ray's own daemons
    (GCS, raylet, dashboard) are left out: they do not grow with a job."""

    def __init__(self, cluster_pid: int) -> None:
        self.peak = 0
        self._cluster_pid = cluster_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        processes = me.children(recursive=True)
        with contextlib.suppress(psutil.Error):
            processes += psutil.Process(self._cluster_pid).children(recursive=True)
        for proc in processes:
            with contextlib.suppress(psutil.Error):
                if proc.name().startswith("ray::") or proc.ppid() == me.pid:
                    total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _timed(bench: Bench, run: Callable[[list[Path]], None], paths: list[Path]) -> tuple[float, int]:
    bench.clear()
    with PeakMemory(bench.cluster.process.pid) as memory:
        start = time.perf_counter()
        run(paths)
        elapsed = time.perf_counter() - start
    return len(paths) / elapsed, memory.peak


def fidelity(paths: list[Path], count: int = 20) -> dict:
    """The fast decode path against full decode + Pillow resize: mean abs diff and PSNR."""
    from motoray.imageio import load_image

    diffs, psnrs = [], []
    for path in paths[:count]:
        fast = load_image(path.read_bytes(), floors.SIZE).astype(float)
        full = Image.open(path).convert("RGB").resize(floors.SIZE, Image.Resampling.BILINEAR)
        error = fast - np.asarray(full, dtype=float)
        diffs.append(float(np.abs(error).mean()))
        psnrs.append(float(10 * np.log10(255**2 / max((error**2).mean(), 1e-12))))
    return {"mean_abs_diff": max(diffs), "psnr_db_min": min(psnrs)}


def service_time_budget(bench: Bench) -> dict:
    """Where the wall time of the last service job went: from POST to the client seeing
    SUCCEEDED, from job.json's marks and Ray's task records."""
    from ray.util.state import list_tasks

    job = bench.last_service_job
    record = json.loads(Path(job["output"], "job.json").read_text())
    timings = record["timings"]
    started = _epoch(timings["started_at"])
    finished = _epoch(timings["finished_at"])
    marks = timings["marks_s"]
    tasks = [
        t
        for t in list_tasks(
            address=bench.cluster.dashboard_url,
            detail=True,
            limit=10_000,
            raise_on_missing_output=False,
        )
        if "_write_files" in t.name
        and t.start_time_ms
        and t.end_time_ms
        and started * 1000 <= t.start_time_ms
        and t.end_time_ms <= finished * 1000 + 1000
    ]
    budget = {
        "post_to_job_start_s": started - job["posted"],
        "listing_and_split_s": marks.get("placed", 0),
        "split_to_first_result_s": marks["first_result"] - marks.get("placed", 0),
        "first_to_last_result_s": marks["last_result"] - marks["first_result"],
    }
    if tasks:
        first = min(t.start_time_ms for t in tasks) / 1000
        last = max(t.end_time_ms for t in tasks) / 1000
        busy = sum((t.end_time_ms - t.start_time_ms) / 1000 for t in tasks)
        budget |= {
            "split_to_first_task_start_s": first - started - marks.get("placed", 0),
            "tasks_busy_cpu_s": busy,
            "gaps_between_tasks_cpu_s": bench.workers * (last - first) - busy,
            "last_task_end_to_last_result_s": started + marks["last_result"] - last,
            "tasks": len(tasks),
        }
    else:
        budget["tasks"] = 0  # Ray's task records were not found (state API off or full)
    budget |= {
        "manifest_s": marks["manifest"] - marks["last_result"],
        "checks_and_job_json_s": record["timings"]["duration_s"] - marks["manifest"],
        "job_end_to_client_sees_it_s": job["seen"] - finished,
        "post_to_client_sees_succeeded_s": job["seen"] - job["posted"],
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in budget.items()}


def _epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def cold_paths(frame: Path, work: Path, repeats: int = 3) -> dict:
    """What a user's first command costs on a machine with no Ray running (measured before
    the bench starts its cluster): a whole `motoray run` process on one image, its own Ray
    start included, and a bare local Ray started and stopped as that command starts it (no
    dashboard), its floor. Alternated, `repeats` of each; medians."""
    folder = work / "cold"
    (folder / "source").mkdir(parents=True)
    shutil.copyfile(frame, folder / "source" / frame.name)
    config, request = folder / "motoray.yaml", folder / "request.json"
    config.write_text(yaml.safe_dump({"sources": {"bench": {"uri": str(folder / "source")}},
                                      "output": {"uri": str(folder / "outputs")}}))  # fmt: skip
    request.write_text(json.dumps(REQUEST))
    run = [*installed_command("motoray"), "run", str(request), "--config", str(config),
           "--address", "local", "--quiet"]  # fmt: skip
    init = "ray.init(address='local', include_dashboard=False)"
    start_stop = [sys.executable, "-c", f"import ray; {init}; ray.shutdown()"]
    env = _without_ray_address()
    runs: dict[str, list[float]] = {"motoray_run_s": [], "ray_start_stop_s": []}
    for _ in range(repeats):
        runs["motoray_run_s"].append(_seconds(run, env))
        runs["ray_start_stop_s"].append(_seconds(start_stop, env))
    return {
        **{name: round(statistics.median(seconds), 2) for name, seconds in runs.items()},
        "per_run": {name: [round(s, 2) for s in seconds] for name, seconds in runs.items()},
    }


def _without_ray_address() -> dict[str, str]:
    """This environment for a command that must start or name its own Ray."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:  # the command's own words, not just its exit status
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def small_job_paths(bench: Bench, paths: list[Path], jobs: int = 10) -> dict:
    """A 1-image job run from this process both ways a job of one block's worth can run:
    as plain Ray tasks (what motoray does) and as a Ray Data dataset, alternated: median
    seconds, and CPU-s over every process (this one, the cluster's, the service's)."""
    from benchmarks.costs import cpu_times, used
    from motoray.config import load_config
    from motoray.pipeline import ray_data

    bench._source_for(paths[:1])
    config = load_config(bench.config)
    roots = (*bench.roots, os.getpid())
    ways = {"plain_tasks": ray_data._as_tasks, "dataset": ray_data._mapped}
    runs: dict[str, dict[str, list[float]]] = {way: {"s": [], "cpu_s": []} for way in ways}
    try:
        for _ in range(jobs + 1):  # the first of each warms up
            for way, run in ways.items():
                ray_data._as_tasks = run
                before, start = cpu_times(*roots), time.perf_counter()
                bench._run_here(config, f"small-{way}")
                runs[way]["s"].append(time.perf_counter() - start)
                runs[way]["cpu_s"].append(sum(used(before, cpu_times(*roots)).values()))
    finally:
        ray_data._as_tasks = ways["plain_tasks"]
    return {
        way: {name: round(statistics.median(values[1:]), 3) for name, values in measured.items()}
        for way, measured in runs.items()
    } | {"jobs": jobs}


def post_to_running(bench: Bench, paths: list[Path], jobs: int) -> dict:
    """Seconds from POST /data_prep to the job RUNNING, one job at a time on the warm service."""
    bench._source_for(paths[:20])
    seconds = []
    for _ in range(jobs):
        start = time.perf_counter()
        response = bench.http.post("/data_prep", json=REQUEST)
        response.raise_for_status()
        [job_id] = [job["job_id"] for job in response.json()["jobs"]]
        while (state := bench._status(job_id)["state"]) == "PENDING":
            time.sleep(0.01)
        seconds.append(time.perf_counter() - start)
        while state not in TERMINAL:
            state = bench._status(job_id, wait_s=30)["state"]
    return {"median_s": round(statistics.median(seconds), 3),
            "max_s": round(max(seconds), 3), "jobs": jobs}  # fmt: skip


def s3_latency(bench: Bench, paths: list[Path], latencies=(0.0, 0.03, 0.1)) -> dict:
    """Images/s per core with source and outputs on an S3 endpoint answering after a fixed
    latency, per-file and WebDataset outputs; the same job in this process each time."""
    from benchmarks.s3_standin import S3StandIn
    from motoray.config import Config, OutputConfig, S3Settings, SourceConfig
    from motoray.jobs.record import accept
    from motoray.pipeline.job import run_job
    from motoray.spec import parse_for

    for name, value in FAKE_AWS.items():  # the stand-in checks no signature
        os.environ.setdefault(name, value)
    results: dict = {}
    for latency in (0.0, *latencies):  # the first run warms up boto in every worker
        with S3StandIn(latency) as s3:
            s3.objects["bench"] = {f"in/{p.name}": p.read_bytes() for p in paths}
            config = Config(
                sources={"bench": SourceConfig(uri="s3://bench/in")},
                output=OutputConfig(uri="s3://bench/out"),
                s3=S3Settings(endpoint_url=s3.url, region="us-east-1"),
            )
            for layout in ("files", "webdataset"):
                body = {**REQUEST, "output": {"format": layout}}
                requests = parse_for(config, body)
                [inputs] = accept(requests, config, bench._job_id(f"s3-{layout}"))
                start = time.perf_counter()
                run_job(inputs)
                rate = len(paths) / (time.perf_counter() - start) / bench.workers
                results.setdefault(layout, {})[f"{int(latency * 1000)}ms"] = round(rate, 1)
    # The warm-up's figures were overwritten by the real 0 ms run, which came second.
    for rates in results.values():
        rates["30ms / 0ms"] = round(rates["30ms"] / rates["0ms"], 3)
    return results
