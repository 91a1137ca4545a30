"""The worker: images in, outputs out. The only code that touches pixels; no Ray.

`outputs(spec, items)` reads, decodes and resizes every item, applies every step and encodes
the results, yielding each output's manifest row and bytes as it is made (a failed image
yields one row with `error` and no bytes). Jobs write what it yields (`write_files`,
`write_shard`); previews and estimates keep it in memory. Same spec and items, same bytes.

Boxes (a source with annotations) ride along: scaled with the resize, then through every
step with the params its pixels got (`apply_step`), sanitised per output into the row's
`boxes` and `boxes_dropped`. An output a step could not place (no window holds a whole box)
yields a row with `skipped` and no bytes.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import numpy as np

from motoray.annotations import AnnotationError, yolo
from motoray.annotations.sanitise import records
from motoray.imageio import DecodeError, decode_image, encode_jpeg, upright_size
from motoray.ops.boxes import Boxes, clip, scale_boxes
from motoray.ops.steps import StepOutput, apply_step
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.layout import output_folder, output_name, sample_key
from motoray.pipeline.manifest import sample_record
from motoray.pipeline.shards import tar_bytes
from motoray.pipeline.source import Item
from motoray.storage import Refused
from motoray.video import frames as video_frames

CHUNK_IMAGES = 64  # decoded together at most (feeds kernel stacks); the I/O threads' read-ahead
MAX_PENDING_WRITES = 256  # encoded outputs waiting for storage, per task
MAX_IMAGES_PER_SHARD = 10_000  # a shard is one task's work: this bounds a task's duration
SHARD_SAMPLE_IMAGES = 8  # processed to size shards


class JobEnded(Exception):
    """The task's job ended while it ran (stopped, or past its time limit): the task stops
    writing into a folder whose job.json may already say what the job did."""


class Output(NamedTuple):
    row: dict  # its manifest row; a failed image's one row has "error", a skipped output's
    data: bytes | None  # the encoded image; None for a failed image or a skipped output


class _Decoded(NamedTuple):
    item: Item
    image: np.ndarray
    boxes: np.ndarray | None  # M x 4 corners in the decoded (resized) image's pixels
    category: np.ndarray | None  # M category indices
    notes: str | None = None  # what was odd in the file, kept whole (the manifest's `notes`)
    crowd: np.ndarray | None = None  # M bools: crowd regions (COCO iscrowd); None: none is


def outputs(spec: JobSpec, items: Sequence[Item], io: Executor | None = None) -> Iterator[Output]:
    """Every output of `items`, as it is encoded.

    Reads run ahead on `io` (or I/O threads of our own where the storage wants requests in
    flight), so storage latency overlaps decoding; local files are read on this thread.
    Decoded images are processed together, same-shaped ones through each kernel at once, in
    groups of at most CHUNK_IMAGES images and `limits.task_bytes` of pixels (inputs and
    outputs): memory stays bounded whatever the images and the request. Where groups are
    cut changes no byte: seeds and names come from keys alone.
    """
    if any(item.duplicate_of for item in items):  # dedupe: listed, never read
        yield from (_duplicate(item) for item in items if item.duplicate_of)
        items = [item for item in items if not item.duplicate_of]
    with nullcontext(io) if io else _io_threads(spec) as pool:
        # A video source's items are time ranges: they yield their sampled frames.
        decoded = _frames(spec, items) if spec.frames else _images(spec, items, pool)
        group: list[_Decoded] = []
        held = 0
        misfits: dict[tuple[int, ...], str | None] = {}  # by image shape: one when resized
        for one in decoded:
            if isinstance(one, Output):  # what could not be read or decoded
                yield one
                continue
            shape = one.image.shape
            if shape not in misfits:
                misfits[shape] = spec.misfit(shape[:2])
            if misfits[shape]:
                yield _failed(one.item, misfits[shape])  # never silently padded
                continue
            group.append(one)
            held += spec.bytes_held(shape)
            if len(group) >= CHUNK_IMAGES or held >= spec.limits.task_bytes:
                yield from _group_outputs(spec, group)
                group, held = [], 0
        yield from _group_outputs(spec, group)


def _images(
    spec: JobSpec, items: Sequence[Item], pool: Executor | None
) -> Iterator[_Decoded | Output]:
    """Each item decoded (with its boxes), or its failure."""
    for item, fetched in zip(items, _fetched(spec, items, pool)):
        try:
            image, notes = _decode(spec, fetched)
            decoded = _with_boxes(spec, item, fetched, image)
            yield decoded._replace(notes="; ".join(notes)) if notes else decoded
        except (DecodeError, Refused, FileNotFoundError, AnnotationError) as e:
            yield _failed(item, str(e))


def _fetched(
    spec: JobSpec, items: Sequence[Item], pool: Executor | None
) -> Iterator[bytes | Exception]:
    """Each item's bytes in order: on `pool`, running CHUNK_IMAGES ahead; without one, read
    here when needed. An error reading storage fails the task."""
    if pool is None:
        yield from (_fetch(spec, item) for item in items)
        return
    reads = deque(pool.submit(_fetch, spec, item) for item in items[:CHUNK_IMAGES])
    for index in range(len(items)):
        yield reads.popleft().result()
        if index + CHUNK_IMAGES < len(items):
            reads.append(pool.submit(_fetch, spec, items[index + CHUNK_IMAGES]))


def _frames(spec: JobSpec, items: Sequence[Item]) -> Iterator[_Decoded | Output]:
    """A video source's items (time ranges): their sampled frames, or failures."""
    for item, image in video_frames.decoded(spec, items):
        yield _failed(item, image) if isinstance(image, str) else _Decoded(item, image, None, None)


def write_files(
    spec: JobSpec, items: Sequence[Item], ended: Callable[[], bool] | None = None
) -> list[dict]:
    """Format "files": every output written to the job folder. Rows in manifest order.
    (Not synced here: the job syncs once before its commit marker. A sync per task left a CPU
    idle while the disk caught up.) Raises JobEnded before writing an output once the job is
    past its deadline or `ended()` says so."""
    rows = []
    with _io_threads(spec) as io:
        writes: deque[Future] = deque()

        def write(key: str, data: bytes) -> None:
            if io is None:
                spec.job_dir.write(key, data)
                return
            writes.append(io.submit(spec.job_dir.write, key, data))
            while len(writes) > MAX_PENDING_WRITES:  # slow storage: bytes must not pile up
                writes.popleft().result()

        for row, data in _while_on(spec, outputs(spec, items, io), ended):
            if data is not None:
                write(row["output_path"], data)
                if spec.boxes is not None and spec.boxes.yolo:
                    write(*_yolo_label(spec, row))
            rows.append(row)
        for done in writes:
            done.result()  # a failed write fails the job: Ray Data retries lost tasks, not errors
    return in_manifest_order(rows)


def shard(
    spec: JobSpec, name: str, items: Sequence[Item], ended: Callable[[], bool] | None = None
) -> tuple[list[dict], bytes]:
    """Format "webdataset": one tar of every output of `items` as `<key>.jpg` with its
    manifest record `<key>.json`, in manifest order; the rows name the shard."""
    encoded, rows = {}, []
    for row, data in _while_on(spec, outputs(spec, items), ended):
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
        if row.get("output_path") in encoded
    )
    return rows, tar_bytes(samples)


def write_shard(
    spec: JobSpec, name: str, items: Sequence[Item], ended: Callable[[], bool] | None = None
) -> list[dict]:
    """The shard built in memory (storage writes whole objects), then written: a task needs
    about twice shard_size_mb, which is why that is capped. Empty too: no gaps in numbering."""
    rows, data = shard(spec, name, items, ended)
    spec.job_dir.write(name, data)
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


def _while_on(
    spec: JobSpec, made: Iterator[Output], ended: Callable[[], bool] | None
) -> Iterator[Output]:
    """`made`, until the job ends: a task is no shorter than its images' outputs (up to
    max_outputs_per_image each), so the driver's own look between results comes too late."""
    for output in made:
        if time.time() > spec.deadline:
            raise JobEnded(f"past limits.job_timeout_s ({spec.limits.job_timeout_s:g} s)")
        if ended is not None and ended():
            raise JobEnded("the job was stopped or given up on")
        yield output


@contextmanager
def _io_threads(spec: JobSpec) -> Iterator[Executor | None]:
    """Threads for reads and writes in flight, so that storage latency overlaps decoding and
    encoding; None where neither storage wants any (local files: the I/O runs on the task's
    own thread, as Ray gives a task one CPU)."""
    threads = max(spec.source.concurrency, spec.job_dir.concurrency)
    if not threads:
        yield None
        return
    with ThreadPoolExecutor(threads) as pool:
        yield pool


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


def _group_outputs(spec: JobSpec, group: list[_Decoded]) -> Iterator[Output]:
    by_shape: dict[tuple[int, ...], list[_Decoded]] = defaultdict(list)
    for decoded in group:
        by_shape[decoded.image.shape].append(decoded)
    for same_shape in by_shape.values():
        if not spec.hashed:
            yield from _stack_outputs(spec, same_shape)
            continue
        # Hashed from the pixels decoded here: the near-duplicate pass costs no second decode.
        # (Imported here: the near_duplicates package imports the pipeline.)
        from motoray.near_duplicates.phash import grey_32_of_pixels, phash

        grey = np.stack([grey_32_of_pixels(decoded.image) for decoded in same_shape])
        hashes = dict(zip((d.item.key for d in same_shape), phash(grey).tolist()))
        for output in _stack_outputs(spec, same_shape):
            output.row["phash"] = hashes.pop(output.row["source_path"], None)  # its first row
            yield output


def _stack_outputs(spec: JobSpec, same_shape: list[_Decoded]) -> Iterator[Output]:
    """The outputs of images of one shape, through each step's kernels together."""
    stack = [decoded.item for decoded in same_shape]
    notes = [decoded.notes for decoded in same_shape]
    images = np.stack([decoded.image for decoded in same_shape])
    boxes = _stack_boxes(same_shape) if spec.boxes is not None else None
    if spec.original:
        kept = _box_records(spec, boxes, len(stack))
        for item, note, image, box_record in zip(stack, notes, images, kept):
            yield _encoded(spec, item, "ORIGINAL", "original", {}, image, box_record, note)
    keys = [item.key for item in stack]
    for step in spec.steps:
        names = "-".join(stage.operator.name.lower() for stage in step.stages)
        for out in apply_step(step, images, keys, spec.seed, boxes):
            suffix = f"{step.index}-{names}-{out.copy}"
            for member in out.skipped:
                yield _skipped(stack[member], step.name, out)
            members = out.sources()
            kept = _box_records(spec, out.boxes, len(members))
            for member, params, image, box_record in zip(members, out.params, out.images, kept):
                item, note = stack[member], notes[member]
                yield _encoded(spec, item, step.name, suffix, params, image, box_record, note)


def _with_boxes(spec: JobSpec, item: Item, fetched: bytes, image: np.ndarray) -> _Decoded:
    """The decoded image with its boxes in its pixels: the file's boxes, in the full-size
    upright image, scaled as the resize scaled it."""
    if spec.boxes is None:
        return _Decoded(item, image, None, None)
    if item.boxes is None or not item.boxes.category:
        return _Decoded(item, image, np.zeros((0, 4)), np.zeros(0, np.intp))
    width, height = upright_size(fetched)
    corners = item.boxes.corners(width, height)
    rows = len(corners)
    sx = np.full(rows, image.shape[1] / width)
    sy = np.full(rows, image.shape[0] / height)
    category = np.array(item.boxes.category, np.intp)
    crowd = item.boxes.crowd_flags() if item.boxes.crowd else None
    return _Decoded(item, image, scale_boxes(corners, sx, sy), category, crowd=crowd)


def _stack_boxes(same_shape: list[_Decoded]) -> Boxes:
    """The boxes of a stack of images, each row owned by its image's position."""
    shape = same_shape[0].image.shape[:2]
    corners = np.concatenate([d.boxes for d in same_shape])
    owner = np.repeat(np.arange(len(same_shape)), [len(d.boxes) for d in same_shape])
    category = np.concatenate([d.category for d in same_shape])
    crowd = None
    if any(d.crowd is not None for d in same_shape):
        crowd = np.concatenate(
            [np.zeros(len(d.boxes), bool) if d.crowd is None else d.crowd for d in same_shape]
        )
    return Boxes(clip(corners, shape), corners, owner, category, crowd)


def _box_records(spec: JobSpec, boxes: Boxes | None, images: int) -> list[tuple[str, int] | None]:
    """Per output image: its kept boxes as manifest JSON, and how many it dropped."""
    if spec.boxes is None or boxes is None:
        return [None] * images
    return records(boxes, images, spec.boxes.rules, spec.boxes.names)


def _yolo_label(spec: JobSpec, row: dict) -> tuple[str, bytes]:
    """The output's YOLO label: its boxes but crowd regions (YOLO has no such flag)."""
    class_of = {name: i for i, name in enumerate(spec.boxes.names)}
    text = yolo.label_text(json.loads(row["boxes"]), class_of, row["width"], row["height"])
    return yolo.label_file(row["output_path"]), text


def _failed(item: Item, reason: str) -> Output:
    return Output({"source_path": item.key, **item.placement(), "error": reason}, None)


def _duplicate(item: Item) -> Output:
    """An image dedupe dropped: a manifest row naming the image kept in its stead."""
    kept = item.duplicate_of
    row = {"source_path": item.key, **item.placement(), "duplicate_of": kept}
    return Output(row | {"skipped": f"near-duplicate of {kept}"}, None)


def _skipped(item: Item, operator: str, out: StepOutput) -> Output:
    reason = f"copy {out.copy}: no window holds a whole box"
    row = {"source_path": item.key, **item.placement(), "operator": operator, "skipped": reason}
    return Output(row, None)


def _encoded(
    spec: JobSpec,
    item: Item,
    operator: str,
    suffix: str,
    params: dict,
    image: np.ndarray,
    boxes: tuple[str, int] | None = None,
    notes: str | None = None,
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
    if boxes is not None:
        row["boxes"], row["boxes_dropped"] = boxes
    if notes is not None:
        row["notes"] = notes
    if spec.frames is not None:  # the video, the frame's time, how it was shown, as columns
        row |= video_frames.lineage(item.key) | {"display": item.display}
    return Output(row, data)


def _fetch(spec: JobSpec, item: Item) -> bytes | Exception:
    """Read one source file (the version listed) on an I/O thread. What is wrong with the
    file (refused, gone or changed since listing) is returned, to be recorded per image; what
    is wrong with the storage (access denied, I/O errors) is raised: it fails the job, it is
    not the image's fault."""
    try:
        return spec.source.read(item.key, spec.limits.max_file_bytes, item.version)
    except (Refused, FileNotFoundError) as e:
        return e


def _decode(spec: JobSpec, fetched: bytes | Exception) -> tuple[np.ndarray, tuple[str, ...]]:
    if isinstance(fetched, Exception):
        raise fetched
    return decode_image(
        fetched,
        spec.size,
        max_pixels=spec.limits.max_image_pixels,
        max_bytes=spec.limits.max_file_bytes,
    )
