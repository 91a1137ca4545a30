"""The `scale` line: what a job's driver costs as the number of keys grows.

Method:
- plan: a `kind: manifest` source of N keys shaped like `video000123/frame_000456.jpg`
  (Parquet files of 10^6 keys each, as an inventory's data files), read by tasks
  (pipeline/listing), cut into a job's blocks (spread.in_blocks: the items, placed in the
  tasks that process them) and split by tasks (pipeline/placing.plan, the
  seed request's 80/20 split by image, then by folder). Each size runs in a driver process of its
  own, on the bench's Ray, which reports its peak RSS (VmHWM) and wall time: the driver's
  peak at the largest size over the smallest's is the figure (goal <= 1.5). No pixel is read.
- job: a real job (the seed request: resize, a crop, three random crops) on a `kind:
  manifest` source of N images, hard links to JOB_FILES small JPEGs (the disk holds a few
  hundred files), at 10^4 and 10^6 images, each in a driver process of its own: wall time,
  driver peak RSS, images/s; the largest's rate over the smallest's (goal >= 0.9).
- listing: N keys (10^4 folders of frames) in the S3 stand-in (s3_standin.py) answering
  every request after 30 ms; one serial LIST stream (S3Storage.list_versions) against the
  listing tasks (pipeline/listing.s3_keys), side by side in one process; every key must be
  listed once (goal: parallel >= 8x faster).

    .venv/bin/python -m benchmarks.scale [--sizes 1e5 1e6 1e7] [--list-keys 1e6]
        [--job-sizes 1e4 1e6] [--lines plan job listing]
        [--record benchmarks/result.json]   # replaces the lines measured in its `scale` block

Check the code at toy sizes (--sizes 1e4 2e4 --list-keys 1e4 --job-sizes 200 400); full
sizes on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

KEYS_PER_FILE = 1_000_000
JOB_FILES = 300  # distinct JPEGs behind a job's hard links
JOB_FRAME = (320, 180)
SEED_REQUEST = Path(__file__).resolve().parent.parent / "examples/requests/seed_sample.json"
FRAMES_PER_VIDEO = 100
LIST_LATENCY_S = 0.03
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
LINES = ("plan", "job", "listing")


def frame_keys(start: int, stop: int) -> list[str]:
    return [
        f"video{n // FRAMES_PER_VIDEO:06d}/frame_{n % FRAMES_PER_VIDEO:06d}.jpg"
        for n in range(start, stop)
    ]


def write_key_files(folder: Path, keys: int) -> list[Path]:
    """`keys` keys in Parquet files of KEYS_PER_FILE, written a file at a time."""
    files = []
    for n, start in enumerate(range(0, keys, KEYS_PER_FILE)):
        path = folder / f"keys-{n:04d}.parquet"
        pq.write_table(pa.table({"key": frame_keys(start, min(keys, start + KEYS_PER_FILE))}), path)
        files.append(path)
    return files


def plan_in_child(address: str, folder: Path, keys: int) -> dict:
    """One size's plan, in a driver process of its own: its wall time and peak RSS."""
    code = f"from benchmarks.scale import _plan; _plan({address!r}, {str(folder)!r}, {keys})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, check=False)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"plan of {keys} keys failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _plan(address: str, folder: str, keys: int) -> None:
    import ray

    from motoray.pipeline import listing, placing, spread
    from motoray.spec import TrainTestSplit
    from motoray.split_cut import Rules
    from motoray.storage.keyfile import KeyFile

    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    names = sorted(p.name for p in Path(folder).glob("keys-*.parquet"))
    start = time.perf_counter()
    walls = {}
    for group_by in ("image", "folder"):
        files = [KeyFile(_local(folder), name, "parquet") for name in names]
        dataset = listing.keys_of_files(files, (".jpg",)).materialize()
        count = dataset.count()
        assert count == keys, (count, keys)
        # The job's blocks (the references the driver holds while tasks run).
        spread.in_blocks(dataset, count).materialize()
        listed = time.perf_counter()
        split = TrainTestSplit(train_ratio=80, test_ratio=20, group_by=group_by)
        _, report = placing.plan(dataset, Rules(split, 7, group_by))
        total = sum(s["images"] for s in report["splits"].values())
        assert total == keys, (total, keys)
        walls[group_by] = {"listing_s": round(listed - start, 2),
                           "split_s": round(time.perf_counter() - listed, 2)}  # fmt: skip
        start = time.perf_counter()
    peak_mib = _peak_rss_mib()
    print(json.dumps({"keys": keys, "driver_peak_rss_mib": round(peak_mib), **walls}))


def _peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, not getrusage's ru_maxrss, which Linux carries over
    exec from the parent at fork (the bench's, which wrote the keys)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _local(folder: str):
    from motoray.storage import LocalStorage

    return LocalStorage(Path(folder))


def plan_line(sizes: list[int]) -> dict:
    import ray

    runs = []
    address = ray.get_runtime_context().gcs_address
    for keys in sizes:
        with tempfile.TemporaryDirectory(prefix="motoray-scale-") as folder:
            write_key_files(Path(folder), keys)
            runs.append(plan_in_child(address, Path(folder), keys))
            print(f"plan of {keys} keys: {runs[-1]}", flush=True)
    smallest, largest = runs[0], runs[-1]
    ratio = largest["driver_peak_rss_mib"] / smallest["driver_peak_rss_mib"]
    return {"runs": runs, "peak_rss_largest_over_smallest": round(ratio, 3)}


def job_line(sizes: list[int]) -> dict:
    """A real job per size, in a driver of its own, on hard links to JOB_FILES JPEGs."""
    import ray

    from motoray.sample_data import write_sample_frames

    runs = []
    address = ray.get_runtime_context().gcs_address
    for images in sizes:
        with tempfile.TemporaryDirectory(prefix="motoray-scale-job-") as folder:
            root = Path(folder)
            frames = sorted(write_sample_frames(root / "frames", JOB_FILES, JOB_FRAME))
            keys = frame_keys(0, images)
            for n, key in enumerate(keys):
                path = root / "source" / key
                if n % FRAMES_PER_VIDEO == 0:
                    path.parent.mkdir(parents=True)
                os.link(frames[n % len(frames)], path)
            pq.write_table(pa.table({"key": keys}), root / "keys.parquet")
            code = f"from benchmarks.scale import _job; _job({address!r}, {folder!r}, {images})"
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  cwd=SEED_REQUEST.parent.parent.parent, check=False)  # fmt: skip
            if done.returncode:
                raise RuntimeError(f"job of {images} images failed:\n{done.stderr[-3000:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"job of {images} images: {runs[-1]}", flush=True)
    rate = runs[-1]["images_per_s"] / runs[0]["images_per_s"]
    return {"runs": runs, "images_per_s_largest_over_smallest": round(rate, 3)}


def _job(address: str, folder: str, images: int) -> None:
    import ray

    from motoray.config import Config, OutputConfig, SourceConfig
    from motoray.jobs.record import accept
    from motoray.pipeline.job import run_job
    from motoray.spec import parse_for

    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    root = Path(folder)
    source = SourceConfig(uri=str(root / "source"), kind="manifest",
                          manifest=str(root / "keys.parquet"))  # fmt: skip
    config = Config(sources={"MotoGP": source}, output=OutputConfig(uri=str(root / "out")))
    config.limits.max_outputs_per_job = 10 * images
    [body] = json.loads(SEED_REQUEST.read_text())
    [inputs] = accept(parse_for(config, body), config, f"scale-{images}")
    start = time.perf_counter()
    record = run_job(inputs)
    wall = time.perf_counter() - start
    assert record.counts.images_done == images and not record.failures, record.counts
    print(json.dumps({"images": images, "wall_s": round(wall, 2),
                      "images_per_s": round(images / wall, 1),
                      "driver_peak_rss_mib": round(_peak_rss_mib())}))  # fmt: skip


def listing_line(keys: int, latency_s: float = LIST_LATENCY_S) -> dict:
    """The S3 stand-in's keys listed serially and by the listing tasks, side by side."""
    from benchmarks.s3_standin import S3StandIn
    from motoray.config import S3Settings
    from motoray.storage.s3 import S3Storage

    with S3StandIn(latency_s) as s3:
        s3.objects["bench"] = dict.fromkeys((f"in/{k}" for k in frame_keys(0, keys)), b"")
        storage = S3Storage("bench", "in", S3Settings(endpoint_url=s3.url, region="us-east-1"))
        # Warms the stand-in's index and the tasks' workers (started, boto imported), as the
        # serial side's client is warm: the line compares listings, not worker start-up.
        _listed_by_tasks(storage)
        before, start = s3.requests, time.perf_counter()
        serial = storage.list_versions((".jpg",))
        serial_s, requests = time.perf_counter() - start, s3.requests - before
        start = time.perf_counter()
        listed = _listed_by_tasks(storage)
        parallel_s = time.perf_counter() - start
        parallel_requests = s3.requests - before - requests
    if len(serial) != keys or listed != list(serial):
        raise AssertionError(f"listed {len(listed)} keys ({len(set(listed))} distinct), not {keys}")
    return {
        "keys": keys,
        "latency_ms": round(latency_s * 1000),
        "serial_s": round(serial_s, 2),
        "parallel_s": round(parallel_s, 2),
        "serial_requests": requests,
        "parallel_requests": parallel_requests,
        "serial / parallel": round(serial_s / parallel_s, 2),
    }


def _listed_by_tasks(storage) -> list[str]:
    from motoray.pipeline import listing

    blocks = listing.s3_keys(storage, (".jpg",)).iter_batches(
        batch_size=None, batch_format="pyarrow"
    )
    return [key for block in blocks for key in block["key"].to_pylist()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    parser.add_argument("--list-keys", type=float, default=1e6)
    parser.add_argument("--job-sizes", type=float, nargs="+", default=[1e4, 1e6])
    parser.add_argument("--lines", nargs="+", choices=LINES, default=list(LINES),
                        help="the lines to measure (the others stay as recorded)")  # fmt: skip
    parser.add_argument("--record", type=Path, help="a bench result file: its `scale` block")
    args = parser.parse_args(argv)
    measure = {
        "plan": lambda: plan_line([int(n) for n in args.sizes]),
        "job": lambda: job_line([int(n) for n in args.job_sizes]),
        "listing": lambda: listing_line(int(args.list_keys)),
    }
    import ray

    for name, value in FAKE_AWS.items():  # the stand-in checks no signature; Ray's workers
        os.environ.setdefault(name, value)  # take the environment ray.init sees
    ray.init(logging_level="WARNING", log_to_driver=False, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    result: dict = {"cores": os.cpu_count()}
    try:
        for line in args.lines:
            result[line] = {"date": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
            result[line].update(measure[line]())
    finally:
        ray.shutdown()
    print(json.dumps(result, indent=2))
    if args.record:
        recorded = json.loads(args.record.read_text())
        recorded["scale"] = {**recorded.get("scale", {}), **result}
        args.record.write_text(json.dumps(recorded, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
