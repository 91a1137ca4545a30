"""`python -m benchmarks`: the whole bench (`make bench`); `--help` for its sizes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.run import run


def main() -> None:
    parser = argparse.ArgumentParser(description="motoray against its floor, side by side")
    add = parser.add_argument
    add("--frames", type=Path, default=Path("data/bench/frames"),
        help="1080p frames (made if fewer than --images)")  # fmt: skip
    add("--images", type=int, default=6000)
    add("--slow-images", type=int, default=600, help="for the slow baselines (naive, ray_data)")
    add("--repeats", type=int, default=5)
    add("--workers", type=int, help="default: the CPUs here")
    add("--no-memory-check", dest="memory_check", action="store_false")
    add("--no-warm-up", dest="warm_up", action="store_false",
        help="no untimed first run of every variant (only timings need it)")  # fmt: skip
    add("--service-jobs", type=int, default=5, help="jobs timed POST -> RUNNING")
    add("--fixed-jobs", type=int, default=20, help="1-image jobs timed POST -> SUCCEEDED")
    add("--s3-images", type=int, default=300, help="frames for the S3-latency runs (0: none)")
    add("--videos", type=int, default=12, help="clips (0: no video)")
    add("--video-seconds", type=float, default=60, help="per clip")
    add("--idle-seconds", type=float, default=60, help="each idle sample's length")
    add("--quiet-seconds", type=float, default=60, help="after the last job, before the sample")
    add("--output", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    run(
        args.frames,
        args.images,
        args.slow_images,
        args.repeats,
        args.workers or os.cpu_count() or 2,
        args.memory_check,
        args.output,
        args.service_jobs,
        args.s3_images,
        videos=args.videos,
        video_seconds=args.video_seconds,
        warm_up=args.warm_up,
        fixed_jobs=args.fixed_jobs,
        idle_s=args.idle_seconds,
        quiet_s=args.quiet_seconds,
    )


if __name__ == "__main__":
    main()
