"""One job, top to bottom:

    list source -> label + split per image (or group) -> read -> decode + resize
    -> operators -> encode -> write (deterministic names) -> manifest.parquet -> job.json

`run_job` runs on the driver (CLI, Ray Job or notebook); `process_batch` runs
in Ray Data tasks and is the only code that touches pixels.
"""

from __future__ import annotations

import io
import json
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from pydantic import BaseModel
from ray import cloudpickle

import motoray
from motoray.config import Config, LimitsConfig
from motoray.imageio import DecodeError, encode_jpeg, load_image
from motoray.labels import labels_of, output_folder
from motoray.ops.registry import Operator
from motoray.seeding import derive_rng, stable_hash
from motoray.spec import RequestBase
from motoray.split import Assignment, assign
from motoray.storage import Storage, open_storage
from motoray.storage.keys import safe_name

JOB_FILE = "job.json"
MANIFEST_FILE = "manifest.parquet"
IMAGES_PER_BLOCK = 100  # per task: ~1 s of work amortises ~25 ms of task overhead
IO_THREADS = 8  # concurrent reads/writes per task: hides object-store latency
ROW_GROUP_ROWS = 65_536  # fixed, so the manifest's bytes do not depend on block sizes

ROWS_SCHEMA = pa.schema(
    [
        ("output_path", pa.string()),
        ("source_path", pa.string()),
        ("split", pa.string()),
        ("label", pa.string()),  # null: the source is not labelled
        ("group", pa.string()),  # null: the image is a split group of its own
        ("operator", pa.string()),
        ("params", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bytes", pa.int64()),
        ("error", pa.string()),  # set on the one row of an image that failed
    ]
)
MANIFEST_COLUMNS = [f.name for f in ROWS_SCHEMA if f.name != "error"]
PLACEMENT = ("split", "label", "group")  # per image, decided before any pixel is read

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class Step:
    index: int  # position in the request: part of every derived seed
    operator: Operator
    params: BaseModel


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs for its images; small and picklable."""

    source: Storage
    job_dir: Storage
    size: tuple[int, int] | None  # (width, height)
    steps: tuple[Step, ...]
    original: bool
    seed: int
    quality: int
    limits: LimitsConfig


class JobExistsError(FileExistsError):
    pass


def job_folder(config: Config, source_name: str, job_id: str) -> Storage:
    output = open_storage(config.output.uri, config.output_s3())
    return output.child(f"{safe_name(source_name)}/{safe_name(job_id)}")


def run_job(
    request: RequestBase, config: Config, job_id: str, on_progress: Progress | None = None
) -> dict:
    """Run one request to completion and return what job.json records.

    A job that fails still writes job.json (state FAILED, with the error);
    only a stopped job leaves none.
    """
    started = time.time()
    job_dir = job_folder(config, request.name, job_id)
    if job_dir.exists(JOB_FILE):
        raise JobExistsError(f"job {job_id} already finished: {job_dir.uri}/{JOB_FILE}")
    record = {
        "job_id": job_id,
        "state": "RUNNING",
        "request": request.model_dump(mode="json"),
        "output": job_dir.uri,
        "versions": _versions(),
    }
    try:
        source, keys = list_source(request, config)
        listed = time.time()
        assignment = assign_keys(request, config, keys)
        plan = make_plan(request, config, source, job_dir)
        counts, failures = _process(plan, keys, assignment, on_progress)
        record.update(state="SUCCEEDED", source={"name": request.name, "uri": source.uri})
        record.update(counts=counts, failures=failures, split=assignment.report)
        record["timings"] = _timings(started, listed)
    except Exception as e:
        record.update(state="FAILED", error=f"{type(e).__name__}: {e}", timings=_timings(started))
        job_dir.write_new(JOB_FILE, _json(record))
        raise
    # Written last and create-only: its presence means the job finished.
    if not job_dir.write_new(JOB_FILE, _json(record)):
        raise JobExistsError(f"job {job_id} finished twice: {job_dir.uri}/{JOB_FILE}")
    return record


def list_source(request: RequestBase, config: Config) -> tuple[Storage, list[str]]:
    source_config = config.sources[request.name]
    source = open_storage(source_config.uri, config.source_s3(request.name))
    return source, source.list(tuple(source_config.extensions))


def assign_keys(request: RequestBase, config: Config, keys: list[str]) -> Assignment:
    """Label, split group and split of every image."""
    labels = labels_of(keys, config.sources[request.name].labels)
    return assign(keys, request.train_test_split, request.seed, labels)


def make_plan(request: RequestBase, config: Config, source: Storage, job_dir: Storage) -> Plan:
    return Plan(
        source=source,
        job_dir=job_dir,
        size=request.input_image_size,
        steps=tuple(
            Step(i, config_operator(config, name), params)
            for i, (name, params) in enumerate(request.steps)
        ),
        original=request.writes_original,
        seed=request.seed,
        quality=request.output.quality,
        limits=config.limits,
    )


def image_items(keys: list[str], assignment: Assignment) -> list[dict[str, str]]:
    """One row per image for process_batch. Ray's numpy batches turn None into NaN, so
    "not applicable" travels as "" and process_batch reads it back as None."""
    return [
        {"key": key, **{c: v or "" for c, v in assignment.placement(key).items()}} for key in keys
    ]


def config_operator(config: Config, name: str) -> Operator:
    from motoray.ops import enabled

    operator = enabled(config.operators.disabled, config.operators.plugins)[name]
    # Plugin modules travel with the task by value, so workers need no PYTHONPATH or
    # runtime_env for them (only for the plugin's own third-party imports).
    for module in config.operators.plugins:
        cloudpickle.register_pickle_by_value(sys.modules[module])
    return operator


def _process(plan: Plan, keys: list[str], assignment: Assignment, on_progress: Progress | None):
    """Fan the images out to Ray Data, stream results into the manifest."""
    counts = {"images_total": len(keys), "images_done": 0, "images_failed": 0, "outputs": 0}
    per_split: dict[str, dict[str, int]] = defaultdict(lambda: {"images": 0, "outputs": 0})
    failures = []
    manifest = _ManifestWriter()
    if on_progress:
        on_progress(dict(counts))
    if keys:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        items = image_items(keys, assignment)
        # Enough blocks to keep every CPU busy, each big enough to amortise task overhead.
        # Block boundaries change no output byte: seeds and names come from keys alone.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        blocks = max(-(-len(items) // IMAGES_PER_BLOCK), min(len(items), 2 * cpus))
        results = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            process_batch, fn_kwargs={"plan": plan}, batch_size=None, batch_format="numpy"
        )
        for table in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            failed = table.filter(table["error"].is_valid())
            written = table.filter(table["error"].is_null())
            failures += [
                {"source_path": k, "reason": r}
                for k, r in zip(failed["source_path"].to_pylist(), failed["error"].to_pylist())
            ]
            manifest.add(written.select(MANIFEST_COLUMNS))
            images = written.group_by(["source_path", "split"]).aggregate([]).column("split")
            for split in images.to_pylist():
                per_split[split]["images"] += 1
            for split in written["split"].to_pylist():
                per_split[split]["outputs"] += 1
            counts["images_failed"] += failed.num_rows
            counts["images_done"] += len(images) + failed.num_rows
            counts["outputs"] += written.num_rows
            if on_progress:
                on_progress(dict(counts))
    plan.job_dir.write(MANIFEST_FILE, manifest.finish())
    counts["splits"] = dict(sorted(per_split.items()))
    return counts, sorted(failures, key=lambda f: f["source_path"])


def process_batch(batch: dict[str, np.ndarray], plan: Plan) -> pa.Table:
    """Read, decode, resize, apply every operator, encode and write a batch of images.

    Pixels are handled on this thread; reads and writes go to a small thread pool, so
    object-store latency (S3) overlaps with decoding instead of adding to it.
    """
    rows: list[dict] = []
    decoded: dict[tuple[int, ...], list[tuple[str, dict, np.ndarray]]] = defaultdict(list)
    keys = batch["key"].tolist()
    placements = [
        {c: v or None for c, v in zip(PLACEMENT, values)}
        for values in zip(*(batch[c].tolist() for c in PLACEMENT))
    ]
    with ThreadPoolExecutor(IO_THREADS) as io:
        for key, placed, fetched in zip(keys, placements, io.map(_fetch(plan), keys)):
            try:
                image = _decode(plan, fetched)
            except (DecodeError, OSError) as e:
                rows.append({"source_path": key, **placed, "error": str(e)})
                continue
            decoded[image.shape].append((key, placed, image))

        writes = []
        # Same-shaped images go through each kernel together (all of them when resized).
        for same_shape in decoded.values():
            images = np.stack([image for _, _, image in same_shape])
            keys_of_images = [key for key, _, _ in same_shape]
            for operator, suffix, params, outputs in _apply(plan, keys_of_images, images):
                for (key, placed, _), p, output in zip(same_shape, params, outputs):
                    row, data = _encode(plan, key, placed, operator, suffix, p, output)
                    writes.append(io.submit(plan.job_dir.write, row["output_path"], data))
                    rows.append(row)
        for write in writes:
            write.result()  # a failed write fails the task, and Ray retries it
    rows.sort(key=lambda row: (row["source_path"], row.get("output_path") or ""))
    return pa.Table.from_pylist(rows, schema=ROWS_SCHEMA)


def _apply(plan: Plan, keys: list[str], images: np.ndarray):
    """Every output of every step for a stack of same-shaped images, one kernel call at a time:
    (operator, name suffix, concrete params per image, outputs)."""
    if plan.original:
        yield "ORIGINAL", "original", [{}] * len(images), images
    for step in plan.steps:
        for copy in range(step.operator.copies(step.params)):
            params = [_sample(plan, step, key, copy, images.shape[1:3]) for key in keys]
            suffix = f"{step.index}-{step.operator.name.lower()}-{copy}"
            yield step.operator.name, suffix, params, step.operator.kernel(images, params)


def _fetch(plan: Plan) -> Callable[[str], bytes | Exception]:
    """Read one source file on an I/O thread; errors are returned, to be recorded per image."""

    def fetch(key: str) -> bytes | Exception:
        try:
            size = plan.source.size(key)
            if size > plan.limits.max_file_bytes:
                return DecodeError(
                    f"file too large: {size} bytes > limit {plan.limits.max_file_bytes}"
                )
            return plan.source.read(key)
        except OSError as e:
            return e

    return fetch


def _decode(plan: Plan, fetched: bytes | Exception) -> np.ndarray:
    if isinstance(fetched, Exception):
        raise fetched
    image = load_image(
        fetched,
        plan.size,
        max_pixels=plan.limits.max_image_pixels,
        max_bytes=plan.limits.max_file_bytes,
    )
    height, width = image.shape[:2]
    for step in plan.steps:
        need_h, need_w = step.operator.min_shape(step.params)
        if need_h > height or need_w > width:
            # Never silently padded: the image is skipped and recorded.
            raise DecodeError(
                f"{step.operator.name} needs at least {need_h}x{need_w} (height x width), "
                f"image is {height}x{width}"
            )
    return image


def _sample(plan: Plan, step: Step, key: str, copy: int, shape: tuple[int, int]) -> dict:
    seed, rng = derive_rng(plan.seed, key, step.index, copy)
    params = step.operator.sample(step.params, rng, shape, copy)
    return {**params, "seed": seed} if step.operator.random else params


def _encode(plan: Plan, key, placed, operator, suffix, params, image) -> tuple[dict, bytes]:
    """The output's bytes and its manifest row (its name is the same on every retry)."""
    stem = safe_name(key.rsplit("/", 1)[-1].rsplit(".", 1)[0], max_length=60)
    # The key hash keeps a/x.jpg and b/x.jpg apart.
    name = f"{stem}.{stable_hash(key, bits=32):08x}.{suffix}.jpg"
    path = f"{output_folder(placed['split'], placed['label'])}/{name}"
    data = encode_jpeg(image, plan.quality)
    row = {
        "output_path": path,
        "source_path": key,
        **placed,
        "operator": operator,
        "params": json.dumps(params, sort_keys=True),
        "width": image.shape[1],
        "height": image.shape[0],
        "bytes": len(data),
    }
    return row, data


class _ManifestWriter:
    """Parquet with fixed-size row groups, whatever sizes the blocks come in."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._writer = pq.ParquetWriter(
            self._buffer, pa.schema([ROWS_SCHEMA.field(c) for c in MANIFEST_COLUMNS])
        )
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        table = pa.concat_tables(self._pending) if self._pending else None
        self._pending, self._pending_rows = [], 0
        if table is None:
            return
        cut = table.num_rows if final else table.num_rows - table.num_rows % ROW_GROUP_ROWS
        if cut:
            self._writer.write_table(table.slice(0, cut), row_group_size=ROW_GROUP_ROWS)
        if cut < table.num_rows:
            self._pending, self._pending_rows = [table.slice(cut)], table.num_rows - cut

    def finish(self) -> bytes:
        self._flush(final=True)
        self._writer.close()
        return self._buffer.getvalue()


def _timings(started: float, listed: float | None = None) -> dict:
    finished = time.time()
    timings = {
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_s": round(finished - started, 3),
    }
    if listed is not None:
        timings["listing_s"] = round(listed - started, 3)
    return timings


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _versions() -> dict:
    import PIL

    return {
        "motoray": motoray.__version__,
        "ray": ray.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }


def _json(record: dict) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
