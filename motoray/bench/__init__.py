"""motoray bench: motoray against its floor and the usual ways, side by side.

All variants run the original system's request (resize 1080p -> 480x270, one
270x270 crop, three random 80x80 crops, JPEG q90) on the same frames, in one
process, interleaved and repeated, because these machines are noisy: only the
ratios of runs made side by side mean anything.

  floor    decode at reduced scale inside the JPEG decoder + 4 encodes + writes,
           bare multiprocessing.Pool (what no framework can beat)
  naive    a Pillow loop: full decode, resize, crop, save (what a prototype does)
  motoray  a motoray job on a warm local Ray (listing, split, writes, manifest included)
  raydata  Ray Data the obvious way: read_images + map_batches with defaults

and the same request on a video source (sampled every 0.5 s from 720p H.264 clips):

  video floor    a bare PyAV loop per clip (decode, sample, resize, encode, write) in a
                 multiprocessing.Pool, with motoray's FFmpeg threads
  video motoray  a motoray job on a `kind: video` source of the same clips
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from motoray.commands import installed_command
from motoray.spec import SEED_REQUEST

REQUEST = {**SEED_REQUEST, "name": "bench"}
SIZE = tuple(REQUEST["input_image_size"])


# --- the baselines: plain Pillow, no motoray code ------------------------------------------


def _crops(image: np.ndarray, name: str) -> list[np.ndarray]:
    rng = np.random.default_rng(int.from_bytes(name.encode()[-8:], "little"))
    ys, xs = rng.integers(0, SIZE[1] - 80 + 1, 3), rng.integers(0, SIZE[0] - 80 + 1, 3)
    return [image[:270, :270]] + [image[y : y + 80, x : x + 80] for y, x in zip(ys, xs)]


def _save(crops: list[np.ndarray], out: Path, stem: str) -> None:
    for i, crop in enumerate(crops):
        Image.fromarray(crop).save(out / f"{stem}_{i}.jpg", quality=90)


def floor_one(task: tuple[str, str]) -> None:
    path, out = task
    image = Image.open(path)
    image.draft("RGB", SIZE)  # 1/2, 1/4 or 1/8 scale inside the decoder
    array = np.asarray(image.convert("RGB").resize(SIZE, Image.Resampling.BILINEAR))
    _save(_crops(array, path), Path(out), Path(path).stem)


def naive_one(path: Path, out: Path) -> None:
    array = np.asarray(Image.open(path).convert("RGB").resize(SIZE, Image.Resampling.BILINEAR))
    _save(_crops(array, str(path)), out, path.stem)


VIDEO_FRAMES = {"every_s": 0.5}


def video_floor_one(task: tuple[str, str]) -> int:
    """One clip the bare way: every frame decoded, each 0.5 s target takes the first frame at
    or after it, converted and resized by swscale in one pass, cropped, encoded, written."""
    import av

    from motoray.video.decoder import DECODE_THREADS

    path, out = task
    made, target, stem = 0, 0.0, Path(path).stem
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "AUTO", DECODE_THREADS
        for frame in container.decode(stream):
            if frame.time + 1e-9 < target:
                continue
            image = frame.to_ndarray(
                format="rgb24", width=SIZE[0], height=SIZE[1], interpolation="AREA"
            )
            _save(_crops(image, f"{path}{frame.pts}"), Path(out), f"{stem}_{frame.pts}")
            made += 1
            while target <= frame.time + 1e-9:
                target += VIDEO_FRAMES["every_s"]
    return made


# --- the runs --------------------------------------------------------------------------------


class Bench:
    def __init__(self, frames: Path, work: Path, workers: int):
        self.frames, self.work, self.workers = frames, work, workers
        self.paths = sorted(frames.glob("*.jpg"))
        context = multiprocessing.get_context("spawn")  # never fork a process running Ray
        self.pool = context.Pool(workers)
        self.video_pool = None  # made on first use

    def _out(self, name: str) -> Path:
        out = self.work / "outputs" / name
        out.mkdir(parents=True, exist_ok=True)
        return out

    def clear(self) -> None:
        """Delete the previous run's outputs: before the clock starts, it is no variant's work."""
        shutil.rmtree(self.work / "outputs", ignore_errors=True)

    def floor(self, paths: list[Path]) -> None:
        out = self._out("floor")
        self.pool.map(floor_one, [(str(p), str(out)) for p in paths], chunksize=16)

    def naive(self, paths: list[Path]) -> None:
        out = self._out("naive")
        for path in paths:
            naive_one(path, out)

    def motoray(self, paths: list[Path]) -> None:
        from motoray.config import Config, OutputConfig, SourceConfig
        from motoray.jobs import accept
        from motoray.ops import operators_for
        from motoray.pipeline.job import run_job
        from motoray.spec import parse_requests

        source = _linked(paths, self.work / "source")
        config = Config(
            sources={"bench": SourceConfig(uri=str(source))},
            output=OutputConfig(uri=str(self._out("motoray"))),
        )
        [inputs] = accept(parse_requests(REQUEST, operators_for()), config, "bench")
        run_job(inputs)

    def raydata(self, paths: list[Path]) -> None:
        import ray

        source = _linked(paths, self.work / "source")
        out = self._out("raydata")

        def augment(batch: dict) -> dict:
            for path, image in zip(batch["path"], batch["image"]):
                resized = Image.fromarray(image).resize(SIZE, Image.Resampling.BILINEAR)
                _save(_crops(np.asarray(resized), path), out, Path(path).stem)
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
        out = self._out("video-floor")
        self.video_pool.map(video_floor_one, [(str(c), str(out)) for c in clips], chunksize=1)

    def video_motoray(self, clips: list[Path]) -> None:
        from motoray.config import Config, OutputConfig, SourceConfig
        from motoray.jobs import accept
        from motoray.ops import operators_for
        from motoray.pipeline.job import run_job
        from motoray.spec import parse_requests

        source = SourceConfig(uri=str(clips[0].parent), kind="video", frames=VIDEO_FRAMES)
        config = Config(
            sources={"bench": source}, output=OutputConfig(uri=str(self._out("video-motoray")))
        )
        [inputs] = accept(parse_requests(REQUEST, operators_for()), config, "bench-video")
        run_job(inputs)

    def close(self) -> None:
        self.pool.terminate()
        if self.video_pool is not None:
            self.video_pool.terminate()


def _linked(paths: list[Path], folder: Path) -> Path:
    """A source folder holding exactly `paths`: hard links (no copying 2 GB; a local source
    refuses symbolic links that leave it), copies across file systems."""
    if folder.exists() and len(list(folder.iterdir())) == len(paths):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in paths:
        try:
            os.link(path, folder / path.name)
        except OSError:
            shutil.copyfile(path, folder / path.name)
    return folder


class PeakMemory:
    """Peak RSS of this process plus every Ray worker and pool process, sampled at 20 Hz."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for proc in me.children(recursive=True):
            try:
                name = proc.name()
                if name.startswith("ray::") or "python" in name:
                    total += proc.memory_info().rss
            except psutil.Error:
                pass
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
    with PeakMemory() as memory:
        start = time.perf_counter()
        run(paths)
        elapsed = time.perf_counter() - start
    return len(paths) / elapsed, memory.peak


def fidelity(paths: list[Path], count: int = 20) -> dict:
    """The fast decode path against full decode + Pillow resize: mean abs diff and PSNR."""
    from motoray.imageio import load_image

    diffs, psnrs = [], []
    for path in paths[:count]:
        data = path.read_bytes()
        fast = load_image(data, SIZE).astype(float)
        full = Image.open(path).convert("RGB").resize(SIZE, Image.Resampling.BILINEAR)
        error = fast - np.asarray(full, dtype=float)
        diffs.append(float(np.abs(error).mean()))
        psnrs.append(float(10 * np.log10(255**2 / max((error**2).mean(), 1e-12))))
    return {"mean_abs_diff": max(diffs), "psnr_db_min": min(psnrs)}


def cold_run_seconds(frames: Path, work: Path) -> float:
    """Wall time of a whole `motoray run` process on one image: Ray start included."""
    import yaml

    source = _linked(sorted(frames.glob("*.jpg"))[:1], work / "cold-source")
    config = work / "cold.yaml"
    config.write_text(
        yaml.safe_dump(
            {"sources": {"bench": {"uri": str(source)}}, "output": {"uri": str(work / "cold-out")}}
        )
    )
    request = work / "cold.json"
    request.write_text(json.dumps(REQUEST))
    start = time.perf_counter()
    subprocess.run(
        [
            *installed_command("motoray"),
            "run",
            str(request),
            "--config",
            str(config),
            "--address",
            "local",
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def service_post_to_running(frames: Path, work: Path, jobs: int = 5) -> dict:
    """Seconds from POST /data_prep to the job RUNNING on an idle running service (its own
    local Ray), one job at a time after a warm-up job."""
    import secrets

    import httpx
    import yaml

    from motoray.bench.service import spawn_service

    source = _linked(sorted(frames.glob("*.jpg"))[:20], work / "service-source")
    config = work / "service.yaml"
    sources = {"bench": {"uri": str(source)}}
    output = {"uri": str(work / "service-out")}
    config.write_text(yaml.safe_dump({"sources": sources, "output": output}))
    token = secrets.token_urlsafe(16)
    process, url = spawn_service(config, token, work / "serve.log")
    seconds = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            for job in range(jobs + 1):  # the first warms up: job board, worker processes
                start = time.perf_counter()
                response = http.post("/data_prep", json=REQUEST)
                response.raise_for_status()
                [job_id] = [j["job_id"] for j in response.json()["jobs"]]
                while (state := http.get(f"/data_prep/{job_id}").json()["state"]) == "PENDING":
                    time.sleep(0.02)
                if job:
                    seconds.append(time.perf_counter() - start)
                while state not in ("SUCCEEDED", "FAILED", "STOPPED"):
                    time.sleep(0.2)
                    state = http.get(f"/data_prep/{job_id}").json()["state"]
                if state != "SUCCEEDED":
                    raise RuntimeError(f"service job {job_id} ended {state}")
    finally:
        process.terminate()
        process.wait(120)
    return {
        "median_s": round(statistics.median(seconds), 2),
        "max_s": round(max(seconds), 2),
        "jobs": jobs,
    }


def run(
    frames: Path,
    images: int = 6000,
    slow_images: int = 600,
    repeats: int = 5,
    workers: int = 2,
    memory_check: bool = True,
    output: Path | None = None,
    service_jobs: int = 5,
    log: Callable[[str], None] = print,
    videos: int = 12,
    video_seconds: float = 60,
) -> dict:
    """The whole benchmark; returns (and writes) the result."""
    import ray

    from motoray.sample_data import write_sample_frames

    frames.mkdir(parents=True, exist_ok=True)
    if len(list(frames.glob("*.jpg"))) < images:
        log(f"writing {images} 1920x1080 frames to {frames} ...")
        write_sample_frames(frames, images, (1920, 1080), unique=300)
    paths = sorted(frames.glob("*.jpg"))[:images]
    work = Path(tempfile.mkdtemp(prefix="motoray-bench-"))

    ray.init(
        num_cpus=workers, include_dashboard=False, logging_level="WARNING", log_to_driver=False
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    bench = Bench(frames, work, workers)
    # The slow baselines run on a prefix: a rate is a rate, and 6000 images at ~30/s is long.
    variants = {
        "floor": (bench.floor, paths),
        "naive": (bench.naive, paths[:slow_images]),
        "motoray": (bench.motoray, paths),
        "raydata": (bench.raydata, paths[:slow_images]),
    }
    try:
        log("warming up (Ray workers, imports, page cache) ...")
        for fn, subset in variants.values():
            bench.clear()
            fn(subset[:100])
        rates: dict[str, list[float]] = {name: [] for name in variants}
        peaks: dict[str, list[int]] = {name: [] for name in variants}
        ratios: dict[str, list[float]] = {"c/a": [], "c/b": [], "c/d": []}
        for repeat in range(repeats):
            for name, (fn, subset) in variants.items():
                rate, peak = _timed(bench, fn, subset)
                rates[name].append(rate)
                peaks[name].append(peak)
                mib = peak / 2**20
                log(f"  round {repeat + 1}: {name:8} {rate:7.1f} img/s  peak {mib:6.0f} MiB")
            ratios["c/a"].append(rates["motoray"][-1] / rates["floor"][-1])
            ratios["c/b"].append(rates["motoray"][-1] / rates["naive"][-1])
            ratios["c/d"].append(rates["motoray"][-1] / rates["raydata"][-1])
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
        }
        if memory_check:
            small = paths[: max(100, images // 10)]
            _, peak_small = _timed(bench, bench.motoray, small)
            _, peak_large = _timed(bench, bench.motoray, paths)
            result["memory_growth"] = {
                "images": [len(small), len(paths)],
                "peak_rss_mib": [round(peak_small / 2**20), round(peak_large / 2**20)],
                "ratio": round(peak_large / peak_small, 3),
            }
        result["fidelity"] = fidelity(paths)
        if videos:
            clips = _clips(frames.parent / "videos", videos, video_seconds, log)
            result["video"] = video_rounds(bench, clips, repeats, log)
    finally:
        bench.close()
        ray.shutdown()
    result["cold_run_s"] = round(cold_run_seconds(frames, work), 2)
    result["service_post_to_running"] = service_post_to_running(frames, work, service_jobs)
    shutil.rmtree(work, ignore_errors=True)
    if output:
        output.write_text(json.dumps(result, indent=2) + "\n")
    log(report(result))
    return result


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


def video_rounds(bench: Bench, clips: list[Path], repeats: int, log) -> dict:
    """The video floor and a motoray video job, interleaved, after a warm-up of each."""
    variants = {"floor": bench.video_floor, "motoray": bench.video_motoray}
    for run in variants.values():
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


def report(result: dict) -> str:
    rates, ratios = result["images_per_s_median"], result["ratios_median"]
    lines = [
        f"median of {result['repeats']} interleaved rounds, {result['workers']} workers:",
        *(f"  {name:8} {rate:7.1f} img/s" for name, rate in rates.items()),
        f"  motoray / floor   (c/a) = {ratios['c/a']:.2f}",
        f"  motoray / naive   (c/b) = {ratios['c/b']:.2f}",
        f"  motoray / raydata (c/d) = {ratios['c/d']:.2f}",
    ]
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
    if "video" in result:
        v = result["video"]
        rates = v["decoded_frames_per_s_median"]
        lines.append(
            f"  video ({v['clips']} clips, {v['decoded_frames']} frames decoded): floor "
            f"{rates['floor']} fps, motoray {rates['motoray']} fps, motoray / floor = "
            f"{v['ratio_median']:.2f}"
        )
    lines.append(f"  cold `motoray run` (1 image, Ray start included): {result['cold_run_s']} s")
    service = result["service_post_to_running"]
    lines.append(
        f"  running service, POST -> RUNNING: median {service['median_s']} s, "
        f"max {service['max_s']} s over {service['jobs']} jobs"
    )
    return "\n".join(lines)
