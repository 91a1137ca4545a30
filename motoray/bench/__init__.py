"""motoray bench: motoray along the user's path against the fastest bare path, side by side.

Every variant runs the original system's request (resize 1080p -> 480x270, one 270x270
crop, three random 80x80 crops, JPEG q90) on the same frames, in one process, interleaved
and repeated, because these machines are noisy: only ratios of runs made side by side
mean anything.

  turbo_floor     libjpeg-turbo decode at reduced scale + 4 crops + 4 encodes + 4 writes in a
                  bare multiprocessing.Pool: the fastest bare path known (the floor)
  pillow_floor    the same through Pillow (for reference)
  naive           a Pillow loop in one process: full decode, resize, crop, save
  service         POST /data_prep -> SUCCEEDED on a warm `motoray serve` (what users do)
  ray_job_submit  `ray job submit -- motoray run` on the same warm cluster
  in_process      run_job called from this process, a driver on the same cluster
  boxes           in_process on the same frames annotated with 5 boxes each (COCO): box
                  kernels, sanitising, the manifest's boxes and annotations/<split>.json
  ray_data        Ray Data the obvious way: read_images + map_batches with defaults

Then: memory growth, decode fidelity, the cold paths, where the service path's time goes,
S3 at cloud latency (an in-memory stand-in adding a fixed latency per request), and the
same request on a video source (sampled every 0.5 s from 720p H.264 clips):

  video floor    a bare PyAV loop per clip (decode, sample, resize, encode, write) in a
                 multiprocessing.Pool, with motoray's FFmpeg threads
  video motoray  a motoray job on a `kind: video` source of the same clips
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
import yaml
from PIL import Image

from motoray.bench import floors
from motoray.commands import installed_command
from motoray.spec import SEED_REQUEST

REQUEST = {**SEED_REQUEST, "name": "bench"}
RATIOS = {  # name -> (numerator, denominator)
    "service / turbo_floor": ("service", "turbo_floor"),
    "ray_job_submit / turbo_floor": ("ray_job_submit", "turbo_floor"),
    "in_process / turbo_floor": ("in_process", "turbo_floor"),
    "service / naive": ("service", "naive"),
    "service / ray_data": ("service", "ray_data"),
    "turbo_floor / pillow_floor": ("turbo_floor", "pillow_floor"),
    # Rates, so in_process / boxes is time with boxes over time without: 1.03 = +3%.
    "in_process / boxes": ("in_process", "boxes"),
}
BOXES_PER_FRAME = 5
SLOW = ("naive", "ray_data")  # run on a prefix of the frames
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class Bench:
    """The variants, on one warm cluster that the bench starts (and a service on it)."""

    def __init__(self, frames: Path, work: Path, workers: int, log: Callable[[str], None]):
        from motoray.bench.service import spawn_service
        from motoray.server import start_local_ray

        self.work, self.workers, self.log = work, workers, log
        self.paths = sorted(frames.glob("*.jpg"))
        # Whatever was started is stopped again, also when a later step of starting fails
        # (a Ray left running would slow every later measurement on this machine).
        with contextlib.ExitStack() as started:
            self.pool = multiprocessing.get_context("spawn").Pool(workers)  # never fork Ray
            started.callback(self.pool.terminate)
            self.cluster = start_local_ray(num_cpus=workers, env=FAKE_AWS)
            started.callback(self.cluster.stop)
            os.environ.update(self.cluster.env)  # RAY_AUTH_MODE, before this process imports ray
            self.config = work / "bench.yaml"
            self._write_config(self._linked(self.paths, "all"))
            self.token = secrets.token_urlsafe(16)
            self.service_process, self.url = spawn_service(
                self.config, self.token, work / "serve.log", "--address", self.cluster.address
            )
            started.callback(self._stop_service)
            self.http = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120
            )
            started.callback(self.http.close)
            import ray

            ray.init(address=self.cluster.address, logging_level="WARNING", log_to_driver=False)
            started.callback(ray.shutdown)
            ray.data.DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.ERROR)
            self._started = started.pop_all()
        self.runs = 0
        self.last_service_job: dict = {}
        self.video_pool = None  # made on first use

    def close(self) -> None:
        self._started.close()

    def _stop_service(self) -> None:
        self.service_process.terminate()
        self.service_process.wait(120)

    # --- helpers ---------------------------------------------------------------------------

    def _linked(self, paths: list[Path], name: str) -> Path:
        """A source folder holding exactly `paths`: hard links, no copying gigabytes (a
        symlink out of the folder is refused, as it should be), copies across devices."""
        folder = self.work / "sources" / name
        if not folder.exists():
            folder.mkdir(parents=True)
            for path in paths:
                try:
                    os.link(path, folder / path.name)
                except OSError:
                    shutil.copyfile(path, folder / path.name)
        return folder

    def _write_config(self, source: Path, **extra) -> None:
        config = {
            "sources": {"bench": {"uri": str(source)}},
            "output": {"uri": str(self.work / "outputs" / "motoray")},
            "server": {"max_pending_jobs": 4},
            **extra,
        }
        self.config.write_text(yaml.safe_dump(config))

    def _source_for(self, paths: list[Path]) -> None:
        """Point the `bench` source at `paths` (the service reads the config per request)."""
        self._write_config(self._linked(paths, f"first-{len(paths)}"))

    def _out(self, name: str) -> Path:
        out = self.work / "outputs" / name
        out.mkdir(parents=True, exist_ok=True)
        return out

    def clear(self) -> None:
        """Delete the previous run's outputs: before the clock starts, it is no variant's work."""
        shutil.rmtree(self.work / "outputs", ignore_errors=True)

    def _job_id(self, variant: str) -> str:
        self.runs += 1
        return f"{variant}-{self.runs}"

    # --- the variants ----------------------------------------------------------------------

    def turbo_floor(self, paths: list[Path]) -> None:
        out = str(self._out("turbo_floor"))
        self.pool.map(floors.turbo_floor_one, [(str(p), out) for p in paths], chunksize=16)

    def pillow_floor(self, paths: list[Path]) -> None:
        out = str(self._out("pillow_floor"))
        self.pool.map(floors.pillow_floor_one, [(str(p), out) for p in paths], chunksize=16)

    def naive(self, paths: list[Path]) -> None:
        out = str(self._out("naive"))
        for path in paths:
            floors.naive_one((str(path), out))

    def service(self, paths: list[Path]) -> None:
        self._source_for(paths)
        posted = time.time()
        response = self.http.post("/data_prep", json=REQUEST)
        response.raise_for_status()
        [job_id] = [job["job_id"] for job in response.json()["jobs"]]
        # One request that answers when the job ends, not a poll every fraction of a second:
        # each request through Serve costs CPU (proxy and replica): up to ~30 ms here.
        status = self._status(job_id, wait_s=30)
        while status["state"] not in TERMINAL:
            status = self._status(job_id, wait_s=30)
        if status["state"] != "SUCCEEDED":
            raise RuntimeError(f"service job {job_id}: {status}")
        self.last_service_job = {"job_id": job_id, "posted": posted, "seen": time.time(),
                                 "output": status["output"]}  # fmt: skip

    def _status(self, job_id: str, wait_s: float = 0) -> dict:
        response = self.http.get(f"/data_prep/{job_id}", params={"wait_s": wait_s})
        response.raise_for_status()
        return response.json()

    def ray_job_submit(self, paths: list[Path]) -> None:
        self._source_for(paths)
        command = [*installed_command("ray"), "job", "submit", "--address",
                   self.cluster.dashboard_url, "--", *installed_command("motoray"), "run",
                   str(self._request_file()), "--config", str(self.config), "--quiet",
                   "--job-id", self._job_id("ray-job")]  # fmt: skip
        env = {**os.environ, **self.cluster.env}
        subprocess.run(command, check=True, capture_output=True, env=env)

    def in_process(self, paths: list[Path]) -> None:
        from motoray.config import load_config

        self._source_for(paths)
        self._run_here(load_config(self.config), "in-process")

    def boxes(self, paths: list[Path]) -> None:
        from motoray.config import CocoAnnotations, Config, OutputConfig, SourceConfig

        folder = self.work / "sources" / f"boxes-{len(paths)}"
        if not (folder / "annotations.json").exists():
            _annotated(self._linked(paths, f"first-{len(paths)}"), paths, folder)
        source = SourceConfig(uri=str(folder), annotations=CocoAnnotations(format="coco"))
        config = Config(sources={"bench": source}, output=OutputConfig(uri=str(self._out("boxes"))))
        self._run_here(config, "boxes")

    def _run_here(self, config, name: str) -> None:
        from motoray.jobs.record import accept
        from motoray.pipeline.job import run_job
        from motoray.spec import parse_for

        requests = parse_for(config, REQUEST)
        [inputs] = accept(requests, config, self._job_id(name))
        run_job(inputs)

    def ray_data(self, paths: list[Path]) -> None:
        import ray

        source = self._linked(paths, f"first-{len(paths)}")
        out = self._out("ray_data")

        def augment(batch: dict) -> dict:
            for path, image in zip(batch["path"], batch["image"]):
                resized = Image.fromarray(image).resize(floors.SIZE, Image.Resampling.BILINEAR)
                floors._save(floors.crops(np.asarray(resized), path), out, Path(path).stem)
            return {"done": np.array([len(batch["path"])])}

        ray.data.read_images(str(source), mode="RGB", include_paths=True).map_batches(
            augment
        ).materialize()

    def video_floor(self, clips: list[Path]) -> None:
        """At the CPU priority of motoray's workers (`as_batch_work`): on a shared machine a
        floor at a higher priority than the job only measures the neighbours."""
        from motoray.priority import as_batch_work

        if self.video_pool is None:
            context = multiprocessing.get_context("spawn")
            self.video_pool = context.Pool(self.workers, initializer=as_batch_work)
            self._started.callback(self.video_pool.terminate)
        out = self._out("video-floor")
        self.video_pool.map(floors.video_floor_one, [(str(c), str(out)) for c in clips], 1)

    def video_motoray(self, clips: list[Path]) -> None:
        from motoray.config import Config, OutputConfig, SourceConfig

        source = SourceConfig(uri=str(clips[0].parent), kind="video", frames=floors.VIDEO_FRAMES)
        config = Config(
            sources={"bench": source}, output=OutputConfig(uri=str(self._out("video-motoray")))
        )
        self._run_here(config, "video")

    def _request_file(self) -> Path:
        path = self.work / "request.json"
        path.write_text(json.dumps(REQUEST))
        return path


UNIQUE_CLIPS = 2  # rendered; the other clips are copies under their own names


def _clips(folder: Path, count: int, seconds: float, log: Callable[[str], None]) -> list[Path]:
    """`count` 1280x720 25 fps clips of `seconds` (made once, then reused)."""
    from motoray.video.sample import write_sample_videos

    marker = folder / f".made-{count}x{seconds:g}s"
    if not marker.exists():
        log(f"writing {count} clips of {seconds:g} s (1280x720, H.264) to {folder} ...")
        shutil.rmtree(folder, ignore_errors=True)
        unique = write_sample_videos(folder, min(count, UNIQUE_CLIPS), (1280, 720), seconds=seconds)
        for clip in range(len(unique), count):
            os.link(unique[clip % len(unique)], folder / f"clip{clip:03d}.mp4")
        marker.touch()
    return sorted(folder.glob("clip*.mp4"))


def video_rounds(bench: Bench, clips: list[Path], repeats: int, log, warm_up: bool) -> dict:
    """The video floor and a motoray video job, interleaved, after a warm-up of each."""
    variants = {"floor": bench.video_floor, "motoray": bench.video_motoray}
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
            log(f"  round {repeat + 1}: video {name:8} {rates[name][-1]:7.1f} decoded frames/s")
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


def _duration(clip: Path) -> float:
    import av

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def _annotated(frames: Path, paths: list[Path], folder: Path) -> None:
    """The frames (links to `frames`) with an annotations.json of BOXES_PER_FRAME seeded
    boxes each (riders and bikes of 4% to 30% of a side): a detector's data set."""
    from motoray.imageio import upright_size

    (folder / "frames").mkdir(parents=True)
    for path in paths:
        os.link(frames / path.name, folder / "frames" / path.name)
    width, height = upright_size(paths[0].read_bytes())  # bench frames share one size
    rng = np.random.default_rng(0)
    sizes = rng.uniform(0.04, 0.3, (len(paths), BOXES_PER_FRAME, 2)) * [width, height]
    corners = rng.uniform(0, 1, (len(paths), BOXES_PER_FRAME, 2)) * ([width, height] - sizes)
    images, annotations = [], []
    for n, path in enumerate(paths):
        images.append(
            {"id": n + 1, "file_name": f"frames/{path.name}", "width": width, "height": height}
        )
        for b in range(BOXES_PER_FRAME):
            bbox = [*corners[n, b].round(1).tolist(), *sizes[n, b].round(1).tolist()]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": n + 1,
                    "category_id": 1 + b % 2,
                    "bbox": bbox,
                }
            )
    categories = [{"id": 1, "name": "rider"}, {"id": 2, "name": "bike"}]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(document))


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


def ray_job_submit_floor(bench: Bench, repeats: int = 3) -> float:
    """`ray job submit -- true` on the warm cluster: the floor of every `ray job submit` (the
    job's supervisor actor, its log tail). Median of `repeats`."""
    submit_true = [*installed_command("ray"), "job", "submit", "--address",
                   bench.cluster.dashboard_url, "--", "true"]  # fmt: skip
    env = {**_without_ray_address(), **bench.cluster.env}
    return round(statistics.median(_seconds(submit_true, env) for _ in range(repeats)), 2)


def _without_ray_address() -> dict[str, str]:
    """This environment for a command that must start or name its own Ray."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:  # the command's own words, not just its exit status
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


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
    from motoray.bench.s3_standin import S3StandIn
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


def run(
    frames: Path,
    images: int = 6000,
    slow_images: int = 600,
    repeats: int = 5,
    workers: int = 2,
    memory_check: bool = True,
    output: Path | None = None,
    service_jobs: int = 5,
    s3_images: int = 300,
    videos: int = 12,
    video_seconds: float = 60,
    warm_up: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """The whole benchmark; returns (and writes) the result."""
    from motoray.sample_data import write_sample_frames

    frames.mkdir(parents=True, exist_ok=True)
    if len(list(frames.glob("*.jpg"))) < images:
        log(f"writing {images} 1920x1080 frames to {frames} ...")
        write_sample_frames(frames, images, (1920, 1080), unique=300)
    paths = sorted(frames.glob("*.jpg"))[:images]
    work = Path(tempfile.mkdtemp(prefix="motoray-bench-"))
    log("cold paths, before any Ray runs ...")
    cold = cold_paths(paths[0], work, min(repeats, 3))
    log("starting a Ray cluster and a motoray service ...")
    bench = Bench(frames, work, workers, log)
    variants = {
        "turbo_floor": bench.turbo_floor,
        "pillow_floor": bench.pillow_floor,
        "naive": bench.naive,
        "service": bench.service,
        "ray_job_submit": bench.ray_job_submit,
        "in_process": bench.in_process,
        "boxes": bench.boxes,  # right after in_process: their ratio is the boxes' cost
        "ray_data": bench.ray_data,
    }
    try:
        if warm_up:
            log("warming up (workers, imports, page cache; one service job) ...")
            for fn in variants.values():
                bench.clear()
                fn(paths[:100])
        rates: dict[str, list[float]] = {name: [] for name in variants}
        peaks: dict[str, list[int]] = {name: [] for name in variants}
        ratios: dict[str, list[float]] = {name: [] for name in RATIOS}
        budget: dict = {}
        for repeat in range(repeats):
            for name, fn in variants.items():
                subset = paths[:slow_images] if name in SLOW else paths
                rate, peak = _timed(bench, fn, subset)
                rates[name].append(rate)
                peaks[name].append(peak)
                log(f"  round {repeat + 1}: {name:15} {rate:7.1f} img/s  "
                    f"peak {peak / 2**20:6.0f} MiB")  # fmt: skip
                if name == "service":
                    budget = service_time_budget(bench)
            for ratio, (top, bottom) in RATIOS.items():
                ratios[ratio].append(rates[top][-1] / rates[bottom][-1])
            log("    " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in ratios.items()))
        result = {
            "images": images,
            "slow_images": slow_images,
            "workers": workers,
            "repeats": repeats,
            "images_per_s_median": {k: round(statistics.median(v), 1) for k, v in rates.items()},
            "ratios_median": {k: round(statistics.median(v), 3) for k, v in ratios.items()},
            "ratios_per_round": {k: [round(x, 3) for x in v] for k, v in ratios.items()},
            "peak_rss_mib_median": {
                k: round(statistics.median(v) / 2**20) for k, v in peaks.items()
            },
            "service_time_budget_s": budget,
        }
        if memory_check:
            small = paths[: max(100, images // 10)]
            _, peak_small = _timed(bench, bench.in_process, small)
            _, peak_large = _timed(bench, bench.in_process, paths)
            result["memory_growth"] = {
                "images": [len(small), len(paths)],
                "peak_rss_mib": [round(peak_small / 2**20), round(peak_large / 2**20)],
                "ratio": round(peak_large / peak_small, 3),
            }
        result["fidelity"] = fidelity(paths)
        result["service_post_to_running"] = post_to_running(bench, paths, service_jobs)
        if s3_images:
            log("S3 at cloud latency ...")
            result["s3_images_per_s_per_core"] = s3_latency(bench, paths[:s3_images])
        if videos:
            clips = _clips(frames.parent / "videos", videos, video_seconds, log)
            result["video"] = video_rounds(bench, clips, repeats, log, warm_up)
        result["cold"] = cold
        result["ray_job_submit_true_s"] = ray_job_submit_floor(bench, min(repeats, 3))
    finally:
        bench.close()
    shutil.rmtree(work, ignore_errors=True)
    if output:
        output.write_text(json.dumps(result, indent=2) + "\n")
    log(report(result))
    return result


def report(result: dict) -> str:
    rates, ratios = result["images_per_s_median"], result["ratios_median"]
    lines = [f"median of {result['repeats']} interleaved rounds, {result['workers']} workers:"]
    lines += [f"  {name:15} {rate:7.1f} img/s" for name, rate in rates.items()]
    lines += [f"  {name:30} {value:.3f}   per round: {result['ratios_per_round'][name]}"
              for name, value in ratios.items()]  # fmt: skip
    if "memory_growth" in result:
        m = result["memory_growth"]
        lines.append(
            f"  peak RSS {m['peak_rss_mib'][0]} MiB at {m['images'][0]} images, "
            f"{m['peak_rss_mib'][1]} MiB at {m['images'][1]} (x{m['ratio']})"
        )
    f = result["fidelity"]
    lines.append(
        f"  fast decode vs full: mean abs diff {f['mean_abs_diff']:.2f}, "
        f"PSNR >= {f['psnr_db_min']:.1f} dB"
    )
    lines.append("  where the service path's time went (s):")
    lines += [f"    {k:36} {v}" for k, v in result["service_time_budget_s"].items()]
    service = result["service_post_to_running"]
    lines.append(f"  POST -> RUNNING on the warm service: median {service['median_s']} s, "
                 f"max {service['max_s']} s over {service['jobs']} jobs")  # fmt: skip
    if "s3_images_per_s_per_core" in result:
        for layout, rates_ in result["s3_images_per_s_per_core"].items():
            lines.append(f"  S3 {layout:10} img/s per core: {rates_}")
    if "video" in result:
        v = result["video"]
        rates_ = v["decoded_frames_per_s_median"]
        lines.append(
            f"  video ({v['clips']} clips, {v['decoded_frames']} frames decoded): floor "
            f"{rates_['floor']} fps, motoray {rates_['motoray']} fps, motoray / floor = "
            f"{v['ratio_median']:.2f}   per round: {v['ratios_per_round']}"
        )
    cold = result["cold"]
    lines.append(
        f"  cold `motoray run` (1 image, no Ray running before): median {cold['motoray_run_s']} s "
        f"{cold['per_run']['motoray_run_s']}; of which Ray alone, started and stopped: "
        f"{cold['ray_start_stop_s']} s {cold['per_run']['ray_start_stop_s']}"
    )
    submit = result["ray_job_submit_true_s"]
    lines.append(f"  `ray job submit -- true` on the warm cluster: {submit} s")
    return "\n".join(lines)
