"""The whole bench: every variant interleaved and repeated, then the other measures;
the result as JSON and a printed report (`python -m benchmarks`, `make bench`)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.costs import fixed_cost, idle_report, idle_table, submit_overhead, wait_for
from benchmarks.measures import (
    _timed,
    cold_paths,
    fidelity,
    post_to_running,
    s3_latency,
    service_time_budget,
    small_job_paths,
    video_rounds,
)
from benchmarks.variants import Bench, _clips

RATIOS = {  # name -> (numerator, denominator)
    "service / turbo_floor": ("service", "turbo_floor"),
    "ray_job_submit / turbo_floor": ("ray_job_submit", "turbo_floor"),
    "in_process / turbo_floor": ("in_process", "turbo_floor"),
    "service / in_process": ("service", "in_process"),
    "service / naive": ("service", "naive"),
    "service / ray_data": ("service", "ray_data"),
    "turbo_floor / pillow_floor": ("turbo_floor", "pillow_floor"),
    # Rates, so in_process / boxes is time with boxes over time without: 1.03 = +3%.
    "in_process / boxes": ("in_process", "boxes"),
}
SLOW = ("naive", "ray_data")  # run on a prefix of the frames
FLOOR_AGAIN = "turbo_floor again"  # the floor after the paths it brackets; not a variant


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
    fixed_jobs: int = 20,
    idle_s: float = 60,
    quiet_s: float = 60,
    log: Callable[[str], None] = print,
) -> dict:
    """The whole benchmark; returns (and writes) the result. `idle_s`: each idle sample's
    length, the first right after the service answers, the second `quiet_s` after the last
    job; `fixed_jobs`: 1-image jobs timed one after the other."""
    from motoray.sample_data import write_sample_frames

    started = time.time()
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
    wait_for(bench.roots, {"ray::JobRunner", "ray::ServeReplica"})
    log(f"idle, right after the service answers ({idle_s:g} s) ...")
    idle_start = idle_table(bench.roots, idle_s)
    # In this order: the floor, the paths measured against it, the floor again (FLOOR_AGAIN),
    # so a drift of the machine within a round moves both sides of a ratio alike.
    variants = {
        "turbo_floor": bench.turbo_floor,
        "service": bench.service,
        "in_process": bench.in_process,
        FLOOR_AGAIN: bench.turbo_floor,
        "boxes": bench.boxes,  # right after in_process: their ratio is the boxes' cost
        "ray_job_submit": bench.ray_job_submit,
        "pillow_floor": bench.pillow_floor,
        "naive": bench.naive,
        "ray_data": bench.ray_data,
    }
    try:
        if warm_up:
            log("warming up (workers, imports, page cache; one service job) ...")
            for fn in variants.values():
                bench.clear()
                fn(paths[:100])
        rates: dict[str, list[float]] = {name: [] for name in variants if name != FLOOR_AGAIN}
        peaks: dict[str, list[int]] = {name: [] for name in rates}
        ratios: dict[str, list[float]] = {name: [] for name in RATIOS}
        budget: dict = {}
        for repeat in range(repeats):
            for name, fn in variants.items():
                subset = paths[:slow_images] if name in SLOW else paths
                rate, peak = _timed(bench, fn, subset)
                log(f"  round {repeat + 1}: {name:15} {rate:7.1f} img/s  "
                    f"peak {peak / 2**20:6.0f} MiB")  # fmt: skip
                if name == FLOOR_AGAIN:  # the round's floor: both runs' frames over their time
                    before = rates["turbo_floor"][-1]
                    rates["turbo_floor"][-1] = 2 / (1 / before + 1 / rate)
                    continue
                rates[name].append(rate)
                peaks[name].append(peak)
                if name == "service":
                    budget = service_time_budget(bench)
            for ratio, (top, bottom) in RATIOS.items():
                ratios[ratio].append(rates[top][-1] / rates[bottom][-1])
            log("    " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in ratios.items()))
        result = {
            "run": run_record(started),
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
            folder = frames.parent / "videos-interlaced"
            clips = _clips(folder, videos, video_seconds, log, interlaced=True)
            result["video_interlaced"] = video_rounds(
                bench, clips, repeats, log, warm_up, interlaced=True
            )
        result["cold"] = cold
        log(f"fixed cost of a job: {fixed_jobs} 1-image jobs; `ray job submit` overhead ...")
        result["small_job"] = small_job_paths(bench, paths, min(fixed_jobs, 10))
        task_cpu_s = bench.one_image_task_cpu_s(paths)  # points the source at one frame
        result["fixed_cost"] = fixed_cost(bench.one_image_job, bench.roots, task_cpu_s, fixed_jobs)
        result["ray_job_submit"] = submit_overhead(bench.submit, bench.motoray_run, min(repeats, 3))
        log(f"idle, {quiet_s:g} s after the last job ({idle_s:g} s) ...")
        import ray  # (imported by Bench, once RAY_AUTH_MODE is set: Ray reads it on import)

        ray.shutdown()  # this process's driver and its workers go: the service's Ray stays
        time.sleep(quiet_s)
        result["idle"] = {"after_start": idle_start, "after_jobs": idle_table(bench.roots, idle_s)}
    finally:
        bench.close()
    shutil.rmtree(work, ignore_errors=True)
    result["run"]["minutes"] = round((time.time() - started) / 60)
    if output:
        output.write_text(json.dumps(result, indent=2) + "\n")
    log(report(result))
    return result


def run_record(started: float) -> dict:
    """Where a result comes from: when, on what, by which command."""
    import platform

    import ray

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "command": shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]),
        "python": platform.python_version(),
        "ray": ray.__version__,
    }


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
    for line, kind in (("video", "video"), ("video_interlaced", "interlaced video")):
        if line in result:
            v = result[line]
            rates_ = v["decoded_frames_per_s_median"]
            lines.append(
                f"  {kind} ({v['clips']} clips, {v['decoded_frames']} frames decoded): floor "
                f"{rates_['floor']} fps, motoray {rates_['motoray']} fps, motoray / floor = "
                f"{v['ratio_median']:.2f}   per round: {v['ratios_per_round']}"
            )
    cold = result["cold"]
    lines.append(
        f"  cold `motoray run` (1 image, no Ray running before): median {cold['motoray_run_s']} s "
        f"{cold['per_run']['motoray_run_s']}; of which Ray alone, started and stopped: "
        f"{cold['ray_start_stop_s']} s {cold['per_run']['ray_start_stop_s']}"
    )
    fixed = result["fixed_cost"]
    lines.append(
        f"  1-image POST -> SUCCEEDED on the warm service: median {fixed['wall_s_median']} s "
        f"of {fixed['jobs']}; CPU-s beyond its task ({fixed['task_cpu_s']} CPU-s), over every "
        f"process: median {fixed['cpu_s_beyond_task_median']} (the client: "
        f"{fixed['client_cpu_s_median']})"
    )
    small = result["small_job"]
    lines.append(
        f"  a 1-image job from this process, median of {small['jobs']}: as plain tasks "
        f"{small['plain_tasks']['s']} s, {small['plain_tasks']['cpu_s']} CPU-s; as a dataset "
        f"{small['dataset']['s']} s, {small['dataset']['cpu_s']} CPU-s"
    )
    submit = result["ray_job_submit"]
    lines.append(
        f"  `ray job submit` overhead beyond `ray job submit -- true` on the warm cluster: "
        f"{submit['overhead_s']} s (`-- motoray run` of 1 image {submit['motoray_run_s']} s, "
        f"`-- true` {submit['true_s']} s)"
    )
    lines += idle_report(result["idle"]["after_start"], "right after start")
    lines += idle_report(result["idle"]["after_jobs"], "after the last job")
    return "\n".join(lines)
