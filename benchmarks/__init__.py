"""motoray's benchmark harness (not installed): motoray along the user's path against the
fastest bare path, side by side, and what the service costs beside the pixels.

Every variant runs the original system's request (resize 1080p -> 480x270, one 270x270
crop, three random 80x80 crops, JPEG q90) on the same frames, in one process, interleaved
and repeated, because these machines are noisy: only ratios of runs made side by side
mean anything.

    variants.py   the variants (floors, the service, `ray job submit`, in process, ...)
    measures.py   memory, decode fidelity, where a service job's time goes, cold paths,
                  POST -> RUNNING, S3 at cloud latency, video
    costs.py      CPU per process: idle, per 1-image job, `ray job submit`'s overhead
    run.py        the whole bench and its report
    floors.py     the bare paths; s3_standin.py an S3 endpoint with a fixed latency
    load.py       the API under load; poll_vs_wait.py two kinds of client
    scale.py      the driver's cost as keys grow: plan at 10^5..10^7 keys, S3 listing tasks

    .venv/bin/python -m benchmarks [--images 6000 ...]     (make bench)
"""
