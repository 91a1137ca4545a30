"""A dry run: what a request will produce and roughly what it will cost, without running it.

Counts are exact: the source is listed and split exactly as a job does, and every operator
says how many outputs it makes per image (`copies`). On a video source, frames are counted
from each container's metadata (duration, rate) without decoding: exact for a constant frame
rate, an estimate for a variable one and for `keyframes`. They equal the job's own counts when
no image fails to decode. Bytes are estimated from a small sample of images processed in
memory exactly as a job would (`worker.outputs`). Duration and cost come from the constants
below: measured throughput and AWS list prices. Estimates, not promises.

    motoray plan REQUEST.json [--config F]     POST /data_prep/plan
"""

from __future__ import annotations

import math
import os

from motoray.annotations import SourceAnnotations
from motoray.config import Config
from motoray.pipeline import source, worker
from motoray.pipeline.jobspec import job_spec
from motoray.spec import RequestBase
from motoray.storage import MemoryStorage

SAMPLE_IMAGES = 8  # processed to estimate output bytes, spread evenly over the listing

# `make bench` on the seed request (1920x1080 JPEG -> 480x270, one 270x270 crop, three
# 80x80 random crops, JPEG q90) measured ~100-150 images/s per CPU including listing, split,
# writes and manifest. The low end, as heavier requests (bigger or more outputs) are slower.
IMAGES_PER_CPU_SECOND = 100.0
# A video source also decodes every frame it does not sample: `make bench` decoded ~620
# frames of 1280x720 H.264 per CPU-second (with the seed request's outputs). Half that, as
# broadcast is often 1080p and busier than the synthetic race.
VIDEO_FRAMES_PER_CPU_SECOND = 300.0
JOB_OVERHEAD_S = 5.0  # starting the Ray Data job and writing manifest and job.json

# AWS list prices (Linux, eu-west-1 as in cluster.yaml), USD. Spot prices move hourly: check
# the current ones before a large job.
INSTANCE_TYPE = "m6i.2xlarge"
INSTANCE_VCPUS = 8
ON_DEMAND_PER_HOUR = 0.428
SPOT_PER_HOUR = 0.17  # typical, ~60% below on-demand
S3_PUT_PER_1000 = 0.005  # PUT, COPY, POST, LIST
S3_GET_PER_1000 = 0.0004  # GET: reading the source images
S3_LIST_KEYS_PER_REQUEST = 1000
JOB_FILES = 2  # manifest.parquet and job.json


def dry_run(request: RequestBase, config: Config, cpus: int | None = None) -> dict:
    """Counts per split, estimated bytes, duration (on `cpus`, default: the cluster's) and cost.

    Raises ValueError for a request the source cannot serve (e.g. stratify without labels).
    """
    storage, keys = source.list_source(request, config)
    boxes = source.read_annotations(request, config, storage, keys)
    keys = boxes.usable(keys) if boxes is not None else keys  # as the job: unlisted, failed
    videos = source.probe(request, config, storage, keys)  # a video source: its metadata
    images = source.image_count(keys, videos)  # a video source: frames the metadata promise
    assignment = source.place(request, config, keys, boxes=boxes, videos=videos)
    spec = job_spec(request, config, storage, MemoryStorage(), boxes)
    # A CHAIN step makes the product of its stages' copies.
    per_image = int(spec.original) + sum(step.copies for step in spec.steps)
    report = assignment.report
    splits = {
        name: {"images": s["images"], "outputs": s["images"] * per_image}
        for name, s in sorted(report["splits"].items())
        if s["images"]  # like a job's counts: a split without images is not listed
    }
    count = SAMPLE_IMAGES if videos is None else 2
    sample = source.sample(keys, assignment, videos, count, boxes)
    made = list(worker.outputs(spec, sample))
    failed = {row["source_path"] for row, _ in made if "error" in row}
    decoded = len({row["source_path"] for row, data in made if data is not None})
    bytes_per_image = sum(len(data) for _, data in made if data) / decoded if decoded else 0.0
    outputs = images * per_image
    total_bytes = round(bytes_per_image * images)

    cpus = cpus or _cluster_cpus()
    cpu_seconds = images / IMAGES_PER_CPU_SECOND
    if videos is not None:  # decoding every frame costs more than the sampled ones do
        cpu_seconds += _decoded_frames(videos) / VIDEO_FRAMES_PER_CPU_SECOND
    vcpu_hours = cpu_seconds / 3600
    compute = {
        "spot": vcpu_hours * SPOT_PER_HOUR / INSTANCE_VCPUS,
        "on_demand": vcpu_hours * ON_DEMAND_PER_HOUR / INSTANCE_VCPUS,
    }
    # Reading: LIST (priced like PUT) and GET every source image. Writing: PUT every object.
    lists = math.ceil(len(keys) / S3_LIST_KEYS_PER_REQUEST)
    reads = (lists * S3_PUT_PER_1000 + len(keys) * S3_GET_PER_1000) / 1000
    counts = {"images_total": images, "outputs": outputs, "splits": splits}
    if videos is not None:
        unreadable = sum(isinstance(info, str) for info in videos.videos.values())
        counts |= {"videos": len(keys), "videos_unreadable": unreadable}
    shard_bytes = request.output.shard_size_mb * 2**20
    if request.output.format == "webdataset":
        # Exact: the job sizes its shards from the same sample, the same way.
        items = source.items(keys, assignment, boxes=boxes, videos=videos)
        per_shard = worker.images_per_shard(spec, worker.shard_sample(items))
        counts["shards"] = {name: math.ceil(s["images"] / per_shard) for name, s in splits.items()}
        sharded = sum(counts["shards"].values())
    else:
        sharded = math.ceil(total_bytes / shard_bytes)  # had the request asked for shards
    if boxes is not None:
        counts["boxes"] = _box_counts(boxes, assignment.split, splits)
        counts["annotations"] = {
            "unlisted_images": len(boxes.unlisted),
            "unlisted": boxes.unlisted_action,
            "images_failed": len(boxes.failed),
            "entries_clipped": sum(m.action == "clipped" for m in boxes.mended),
            "entries_skipped": sum(m.action == "skipped" for m in boxes.mended),
        }
    objects = {"per_file": outputs + JOB_FILES, "sharded": sharded + JOB_FILES}
    writes = {layout: n * S3_PUT_PER_1000 / 1000 for layout, n in objects.items()}
    return {
        "source": {"name": request.name, "uri": storage.uri},
        "counts": counts,
        "split": report,
        "outputs_per_image": per_image,
        "estimate": {
            "sample": {"images": decoded + len(failed), "failed": len(failed)},
            "bytes": total_bytes,
            "bytes_per_output": round(bytes_per_image / per_image) if per_image else 0,
            "cpus": cpus,
            "images_per_cpu_second": IMAGES_PER_CPU_SECOND,
            "duration_s": round(JOB_OVERHEAD_S + cpu_seconds / cpus, 1),
            "cost_usd": {
                "instance_type": INSTANCE_TYPE,
                "vcpu_hours": _rounded(vcpu_hours),
                "compute": {market: _rounded(usd) for market, usd in compute.items()},
                "s3_reads": _rounded(reads),
                "s3_writes": {layout: _rounded(usd) for layout, usd in writes.items()},
                "output_objects": objects,
                "total": {
                    f"{layout}_{market}": _rounded(compute_usd + reads + writes[layout])
                    for layout in writes
                    for market, compute_usd in compute.items()
                },
            },
        },
    }


def _box_counts(boxes: SourceAnnotations, split_of: dict[str, str], splits: dict) -> dict:
    """The source's boxes: per split (on its images) and per category. What outputs keep
    depends on where crops fall: the job counts that."""
    keys_of: dict[str, list[str]] = {name: [] for name in splits}
    for key, name in split_of.items():
        keys_of.setdefault(name, []).append(key)
    per_split = {
        name: {"boxes": sum(boxes.counts(keys).values()), "categories": boxes.counts(keys)}
        for name, keys in sorted(keys_of.items())
        if name in splits
    }
    return {
        "format": boxes.format,
        "images_with_boxes": sum(1 for found in boxes.boxes.values() if found.category),
        "boxes": sum(s["boxes"] for s in per_split.values()),
        "splits": per_split,
    }


def _decoded_frames(videos) -> int:
    """Every frame of every video is decoded (all keyframes only, for `keyframes`)."""
    if videos.frames.keyframes:
        return 0
    return sum(
        round(info.duration_ms / 1000 * float(info.rate or 25))
        for info in videos.videos.values()
        if not isinstance(info, str)
    )


def _rounded(value: float) -> float:
    """Three significant figures: a cent fraction on a small job, dollars on a big one."""
    return float(f"{value:.3g}")


def _cluster_cpus() -> int:
    import ray

    if ray.is_initialized():
        return max(1, int(ray.cluster_resources().get("CPU", 0)))
    return os.cpu_count() or 1
