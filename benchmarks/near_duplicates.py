"""What `train_test_split.near_duplicates` costs: time on the seed request, driver memory at scale.

    .venv/bin/python -m benchmarks.near_duplicates [--images 2000] [--rounds 3]
        [--rss-images 100000] [--rss-frame 320x180] [--record benchmarks/result.json]

Method. One local Ray (--workers CPUs) in this process; every job runs here, in process,
as `motoray run` runs one (pipeline.job.run_job), on sample frames (1280x720) hard-linked
from a few hundred rendered ones, so any count costs no disk:
- time: the seed request (examples/requests/seed_sample.json) on --images frames, three
  variants side by side in each of --rounds rounds: `without` (the request as it is),
  `first` (with near_duplicates, its hash sidecars deleted first: every image hashed, as it
  is processed, and the outputs whose split the merges changed moved), `rerun` (with
  near_duplicates, the sidecar of the run before: nothing hashed), then `without` again: a
  round's `without` is the mean of its two runs, so a drift of the machine within the round
  moves both sides of a ratio alike. Ratios are of wall times in one round, then their
  median over rounds. Targets: first / without <= 1.3, rerun / without <= 1.05.
- memory: the driver's peak RSS (this process, sampled at 20 Hz; the workers are not the
  driver) during one job of --rss-images frames without, then one with near_duplicates,
  after a warm-up job; the job only (its outputs are removed after the sampling ends).
  Target: with / without <= 1.5. At 10^5 listed images both jobs run spread: the one with
  near_duplicates hashes in a pass over its key blocks and merges on the driver. The frames
  are copies of a few hundred shots, so every image has hundreds of identical ones: the
  merge's worst case, every group merged with hundreds of others. They are --rss-frame
  pixels (320x180 unless told): what the driver holds is per image, not per pixel, and
  small frames let 10^5 images run in minutes.
--record adds (or replaces) the `near_duplicates` block of a bench result file; with
--rss-images 0 it keeps the memory line recorded before (and says when it was measured).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchmarks.run import run_record

REPO = Path(__file__).resolve().parent.parent
SEED = json.loads((REPO / "examples" / "requests" / "seed_sample.json").read_text())[0]
RENDERED = 300  # distinct frames; the rest are hard links to them
FRAME = (1280, 720)  # the timed jobs' frames
WARM_UP = 200  # frames of the job before the memory jobs
TARGETS = {"first / without": 1.3, "rerun / without": 1.05, "rss with / without": 1.5}


def frames(work: Path, count: int, size: tuple[int, int] = FRAME) -> Path:
    """A folder of `count` frames of `size`, hard links to at most RENDERED rendered ones."""
    from motoray.sample_data import write_sample_frames

    named = "" if size == FRAME else f"-{size[0]}x{size[1]}"
    rendered = work / f"rendered{named}"
    if not rendered.exists():
        write_sample_frames(rendered, RENDERED, size)
    originals = sorted(rendered.glob("*.jpg"))
    folder = work / f"frames-{count}{named}"
    if not folder.exists():
        folder.mkdir()
        for index in range(count):
            os.link(originals[index % len(originals)], folder / f"frame{index:07d}.jpg")
    return folder


class Bench:
    def __init__(self, work: Path, source: Path) -> None:
        from motoray.config import Config, OutputConfig, SourceConfig

        self.work = work
        self.output = work / "outputs"
        sources = {"MotoGP": SourceConfig(uri=str(source))}
        self.config = Config(sources=sources, output=OutputConfig(uri=str(self.output)))
        self.jobs = 0

    def run(self, near: dict | None, clean: bool = True) -> float:
        """Seconds for one seed-request job (with `near` as its near_duplicates); its
        outputs removed after (`clean`), else by `remove_outputs`."""
        from motoray.jobs.record import accept
        from motoray.pipeline.job import run_job
        from motoray.spec import parse_for

        body = json.loads(json.dumps(SEED))
        if near is not None:
            body["train_test_split"]["near_duplicates"] = near
        self.jobs += 1
        [inputs] = accept(parse_for(self.config, body), self.config, f"bench-{self.jobs}")
        started = time.perf_counter()
        run_job(inputs)
        elapsed = time.perf_counter() - started
        if clean:
            self.remove_outputs()
        return elapsed

    def remove_outputs(self) -> None:
        shutil.rmtree(self.output / "MotoGP" / f"bench-{self.jobs}")

    def forget_hashes(self) -> None:
        shutil.rmtree(self.output / ".motoray" / "near_duplicates", ignore_errors=True)


class DriverPeak:
    """Peak RSS of this process while the block runs, sampled at 20 Hz."""

    def __enter__(self) -> DriverPeak:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, me.memory_info().rss)
            self._stop.wait(0.05)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def time_rounds(work: Path, images: int, rounds: int, log) -> dict:
    bench = Bench(work, frames(work, images))
    bench.run(None)  # warm-up: workers started, imports done
    seconds: dict[str, list[float]] = {"without": [], "first": [], "rerun": []}
    for number in range(rounds):
        before = bench.run(None)
        bench.forget_hashes()
        seconds["first"].append(bench.run({}))
        seconds["rerun"].append(bench.run({}))
        # `without` again after them: the round's `without` is the mean of the two, so a
        # drift of the machine within the round moves both sides of a ratio alike.
        seconds["without"].append((before + bench.run(None)) / 2)
        log(f"round {number + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()))
    per_round = {
        f"{variant} / without": [
            round(s / w, 3) for s, w in zip(seconds[variant], seconds["without"])
        ]
        for variant in ("first", "rerun")
    }
    return {
        "images": images,
        "rounds": rounds,
        "seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
        "ratios_per_round": per_round,
        "ratios_median": {k: round(statistics.median(v), 3) for k, v in per_round.items()},
    }


def driver_memory(work: Path, images: int, size: tuple[int, int], log) -> dict:
    # Warm-up on a few frames, so neither measured job pays for first imports.
    Bench(work, frames(work, min(images, WARM_UP), size)).run(None)
    bench = Bench(work, frames(work, images, size))
    peaks = {}
    for name, near in (("without", None), ("with", {})):
        bench.forget_hashes()
        with DriverPeak() as peak:
            bench.run(near, clean=False)
        bench.remove_outputs()  # after: listing 10^5 images' outputs is the harness's cost
        peaks[name] = peak.peak
        log(f"{images} images {name} near_duplicates: driver peak {peak.peak / 2**20:.0f} MiB")
    return {
        "images": images,
        "frame": list(size),
        "without_mib": round(peaks["without"] / 2**20, 1),
        "with_mib": round(peaks["with"] / 2**20, 1),
        "ratio": round(peaks["with"] / peaks["without"], 3),
    }


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="frames of the timed jobs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-images", type=int, default=100_000, help="frames, memory jobs")
    parser.add_argument("--rss-frame", type=_size, default=(320, 180), help="WxH, memory jobs")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--work", type=Path, help="keep frames here (default: a temp folder)")
    parser.add_argument("--record", type=Path, help="a bench result file to add the block to")
    args = parser.parse_args()
    import ray

    started = time.time()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")  # fmt: skip
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            block = time_rounds(work, args.images, args.rounds, log)
            if args.rss_images:
                rss = driver_memory(work, args.rss_images, args.rss_frame, log)
                block["driver_peak_rss"] = rss
        finally:
            ray.shutdown()
    run = run_record(started)
    run["command"] = "python -m benchmarks.near_duplicates " + " ".join(sys.argv[1:])
    block["run"] = run
    block["targets"] = TARGETS
    print(json.dumps(block, indent=2))
    if args.record:
        result = json.loads(args.record.read_text())
        if "driver_peak_rss" not in block:  # --rss-images 0: the memory line recorded before
            earlier = result["near_duplicates"]
            kept = earlier["driver_peak_rss"]
            block["driver_peak_rss"] = {"measured": earlier["run"]["date"], **kept}
        result["near_duplicates"] = block
        args.record.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
