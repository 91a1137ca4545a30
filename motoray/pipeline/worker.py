"""The worker: images in, outputs out. The only code that touches pixels; no Ray.

`outputs(spec, items)` reads, decodes and resizes every item, applies every step and encodes
the results, yielding each output's manifest row and bytes as it is made (a failed image
yields one row with `error` and no bytes). Jobs write what it yields (`write_files`,
`write_shard`); previews and estimates keep it in memory. Same spec and items, same bytes.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from motoray.imageio import DecodeError, encode_jpeg, load_image
from motoray.ops.steps import apply_step
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.layout import output_folder, output_name, sample_key
from motoray.pipeline.manifest import sample_record
from motoray.pipeline.shards import tar_bytes
from motoray.pipeline.source import Item
from motoray.storage import Refused
from motoray.video import frames as video_frames

CHUNK_IMAGES = 64  # decoded together at most (feeds kernels stacks); also the read-ahead
IO_THREADS = 8  # concurrent reads/writes per task: hides object-store latency
MAX_PENDING_WRITES = 256  # encoded outputs waiting for storage, per task
MAX_IMAGES_PER_SHARD = 10_000  # a shard is one task's work: this bounds a task's duration
SHARD_SAMPLE_IMAGES = 8  # processed to size shards


class Output(NamedTuple):
    row: dict  # its manifest row; a failed image's one row has "error"
    data: bytes | None  # the encoded image; None for a failed image


def outputs(spec: JobSpec, items: Sequence[Item], io: Executor | None = None) -> Iterator[Output]:
    """Every output of `items`, as it is encoded.

    Reads run ahead on `io` (or a pool of our own), so storage latency overlaps decoding.
    Decoded images are processed together, same-shaped ones through each kernel at once, in
    groups of at most CHUNK_IMAGES images and `limits.task_bytes` of pixels (inputs and
    outputs): memory stays bounded whatever the images and the request. Where groups are
    cut changes no byte: seeds and names come from keys alone.
    """
    with nullcontext(io) if io else ThreadPoolExecutor(IO_THREADS) as pool:
        # A video source's items are time ranges: they yield their sampled frames.
        decoded = video_frames.decoded(spec, items) if spec.frames else _images(spec, items, pool)
        group: list[tuple[Item, np.ndarray]] = []
        held = 0
        misfits: dict[tuple[int, ...], str | None] = {}  # by image shape: one when resized
        for item, image in decoded:
            if isinstance(image, str):
                yield _failed(item, image)
                continue
            if image.shape not in misfits:
                misfits[image.shape] = spec.misfit(image.shape[:2])
            if misfits[image.shape]:
                yield _failed(item, misfits[image.shape])  # never silently padded
                continue
            group.append((item, image))
            held += spec.bytes_held(image.shape)
            if len(group) >= CHUNK_IMAGES or held >= spec.limits.task_bytes:
                yield from _group_outputs(spec, group)
                group, held = [], 0
        yield from _group_outputs(spec, group)


def _images(
    spec: JobSpec, items: Sequence[Item], pool: Executor
) -> Iterator[tuple[Item, np.ndarray | str]]:
    """(item, decoded image) or (item, why not), with reads running CHUNK_IMAGES ahead."""
    reads = deque(pool.submit(_fetch, spec, item.key) for item in items[:CHUNK_IMAGES])
    for index, item in enumerate(items):
        fetched = reads.popleft().result()  # an error reading storage fails the task
        if index + CHUNK_IMAGES < len(items):
            reads.append(pool.submit(_fetch, spec, items[index + CHUNK_IMAGES].key))
        try:
            yield item, _decode(spec, fetched)
        except (DecodeError, Refused, FileNotFoundError) as e:
            yield item, str(e)


def write_files(spec: JobSpec, items: Sequence[Item]) -> list[dict]:
    """Format "files": every output written to the job folder, and synced. Rows in manifest
    order."""
    rows = []
    with ThreadPoolExecutor(IO_THREADS) as io:
        writes: deque[Future] = deque()
        for row, data in outputs(spec, items, io):
            if data is not None:
                writes.append(io.submit(spec.job_dir.write, row["output_path"], data))
                if len(writes) > MAX_PENDING_WRITES:  # slow storage: encoded bytes must not pile up
                    writes.popleft().result()
            rows.append(row)
        for done in writes:
            done.result()  # a failed write fails the job: Ray Data retries lost tasks, not errors
    spec.job_dir.sync()
    return in_manifest_order(rows)


def shard(spec: JobSpec, name: str, items: Sequence[Item]) -> tuple[list[dict], bytes]:
    """Format "webdataset": one tar of every output of `items` as `<key>.jpg` with its
    manifest record `<key>.json`, in manifest order; the rows name the shard."""
    encoded, rows = {}, []
    for row, data in outputs(spec, items):
        if data is not None:
            encoded[row["output_path"]] = data
            row["shard"] = name
        rows.append(row)
    rows = in_manifest_order(rows)
    samples = (
        (
            row["output_path"].removesuffix(".jpg"),
            {"jpg": encoded.pop(row["output_path"]), "json": sample_record(row)},
        )
        for row in rows
        if "error" not in row
    )
    return rows, tar_bytes(samples)


def write_shard(spec: JobSpec, name: str, items: Sequence[Item]) -> list[dict]:
    """The shard built in memory (storage writes whole objects), then written: a task needs
    about twice shard_size_mb, which is why that is capped. Empty too: no gaps in numbering."""
    rows, data = shard(spec, name, items)
    spec.job_dir.write(name, data)
    spec.job_dir.sync()
    return rows


def shard_sample(items: Sequence[Item]) -> list[Item]:
    """The fixed sample `images_per_shard` measures: spread evenly over the listing."""
    step = max(1, -(-len(items) // SHARD_SAMPLE_IMAGES))
    return list(items[::step][:SHARD_SAMPLE_IMAGES])


def images_per_shard(spec: JobSpec, sample: Sequence[Item]) -> int:
    """Source images per shard, so that shards come out near the requested size: measured
    by making the shard of `shard_sample(items)` exactly as a task would. The same request
    and listing give the same number on any cluster."""
    rows, data = shard(spec, "sample.tar", sample)
    decoded = len({row["source_path"] for row in rows if "error" not in row})
    if spec.frames is not None:  # items are video ranges: shards hold so many ranges
        decoded = len(sample) if decoded else 0
    if not decoded:
        return MAX_IMAGES_PER_SHARD
    return max(1, min(MAX_IMAGES_PER_SHARD, spec.shard_bytes * decoded // len(data)))


def in_manifest_order(rows: list[dict]) -> list[dict]:
    """By source key; a video's frames by time (their keys' digits do not sort by time)."""
    return sorted(
        rows,
        key=lambda row: (
            row.get("video") or row["source_path"],
            row.get("time_ms") or 0,
            row.get("output_path") or "",
        ),
    )


def _group_outputs(spec: JobSpec, group: list[tuple[Item, np.ndarray]]) -> Iterator[Output]:
    by_shape: dict[tuple[int, ...], list[tuple[Item, np.ndarray]]] = defaultdict(list)
    for item, image in group:
        by_shape[image.shape].append((item, image))
    for same_shape in by_shape.values():
        stack = [item for item, _ in same_shape]
        images = np.stack([image for _, image in same_shape])
        if spec.original:
            for item, image in zip(stack, images):
                yield _encoded(spec, item, "ORIGINAL", "original", {}, image)
        keys = [item.key for item in stack]
        for step in spec.steps:
            names = "-".join(stage.operator.name.lower() for stage in step.stages)
            for out in apply_step(step, images, keys, spec.seed):
                suffix = f"{step.index}-{names}-{out.copy}"
                for item, params, image in zip(stack, out.params, out.images):
                    yield _encoded(spec, item, step.name, suffix, params, image)


def _failed(item: Item, reason: str) -> Output:
    return Output({"source_path": item.key, **item.placement(), "error": reason}, None)


def _encoded(
    spec: JobSpec, item: Item, operator: str, suffix: str, params: dict, image: np.ndarray
) -> Output:
    """The output's bytes and its manifest row (its name is the same on every retry)."""
    name = output_name(item.key, suffix)
    if spec.sharded:
        path = f"{sample_key(name)}.jpg"  # a member of its split's shard; the label is in .json
    else:
        path = f"{output_folder(item.split, item.label)}/{name}.jpg"
    data = encode_jpeg(image, spec.quality)
    row = {
        "output_path": path,
        "source_path": item.key,
        **item.placement(),
        "operator": operator,
        "params": json.dumps(params, sort_keys=True),
        "width": image.shape[1],
        "height": image.shape[0],
        "bytes": len(data),
    }
    if spec.frames is not None:
        row |= video_frames.lineage(item.key)  # the video and the frame's time, as columns
    return Output(row, data)


def _fetch(spec: JobSpec, key: str) -> bytes | Exception:
    """Read one source file on an I/O thread. What is wrong with the file (refused, gone
    since listing) is returned, to be recorded per image; what is wrong with the storage
    (access denied, I/O errors) is raised: it fails the job, it is not the image's fault."""
    try:
        return spec.source.read(key, spec.limits.max_file_bytes)
    except (Refused, FileNotFoundError) as e:
        return e


def _decode(spec: JobSpec, fetched: bytes | Exception) -> np.ndarray:
    if isinstance(fetched, Exception):
        raise fetched
    return load_image(
        fetched,
        spec.size,
        max_pixels=spec.limits.max_image_pixels,
        max_bytes=spec.limits.max_file_bytes,
    )
