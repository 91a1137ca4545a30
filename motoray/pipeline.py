"""One job, top to bottom:

    list source -> label + split per image (or group) -> read -> decode + resize
    -> operators (a step is one operator, or a CHAIN of them) -> encode
    -> write: one file per output, or WebDataset tar shards -> manifest.parquet -> job.json

`run_job` runs on the driver (CLI, Ray Job or notebook); `process_batch` (a file per
output) and `process_shard` (a tar per shard) run in Ray Data tasks and are the only code
that touches pixels.
"""

from __future__ import annotations

import functools
import io
import json
import math
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from pydantic import BaseModel
from ray import cloudpickle

import motoray
from motoray.config import Config, LimitsConfig
from motoray.imageio import DecodeError, encode_jpeg, load_image
from motoray.labels import labels_of, output_folder
from motoray.observability import JobTelemetry
from motoray.ops.registry import Operator
from motoray.seeding import derive_rng, stable_hash
from motoray.shards import sample_key, shard_name, tar_bytes
from motoray.spec import CHAIN, RequestBase, first_misfit, stages_of
from motoray.split import Assignment, assign
from motoray.storage import Storage, open_storage
from motoray.storage.keys import safe_name

JOB_FILE = "job.json"
MANIFEST_FILE = "manifest.parquet"
# Per task: ~3 s of work on one CPU amortises the ~0.15 s a CPU idles between two tasks
# (Ray Data notices a finished task within 0.1 s, then submits the next).
IMAGES_PER_BLOCK = 300
CHUNK_IMAGES = 64  # decoded together: bounds a task's memory, feeds kernels stacks
IO_THREADS = 8  # concurrent reads/writes per task: hides object-store latency
ROW_GROUP_ROWS = 65_536  # fixed, so the manifest's bytes do not depend on block sizes
SHARD_SAMPLE_IMAGES = 8  # processed on the driver to size shards
MAX_IMAGES_PER_SHARD = 10_000  # a shard is one task's work: this bounds a task's duration

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
        ("shard", pa.string()),  # webdataset: the tar that holds output_path (a member name)
        ("error", pa.string()),  # set on the one row of an image that failed
    ]
)
MANIFEST_COLUMNS = [f.name for f in ROWS_SCHEMA if f.name not in ("shard", "error")]
SHARD_MANIFEST_COLUMNS = [*MANIFEST_COLUMNS, "shard"]
PLACEMENT = ("split", "label", "group")  # per image, decided before any pixel is read

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class Stage:
    operator: Operator
    params: BaseModel


@dataclass(frozen=True)
class Step:
    """One entry of an augmentation object: an operator, or a CHAIN of them.

    Stage s makes n_s copies of every output of stage s-1, each sampled from the shape that
    output has; a chain's copy index is c = (...(c_0 * n_1 + c_1) * n_2 + ...) + c_last, the
    last stage fastest, as in nested loops over the stages.
    """

    index: int  # position in the request: part of every derived seed
    stages: tuple[Stage, ...]
    chain: bool = False

    @property
    def name(self) -> str:
        """The manifest's operator column: RANDOM_CROP, or RANDOM_CROP+FLIP for a chain."""
        return "+".join(stage.operator.name for stage in self.stages)

    @property
    def copies(self) -> int:
        """Outputs per image."""
        return math.prod(stage.operator.copies(stage.params) for stage in self.stages)


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
    sharded: bool = False  # output.format "webdataset"
    shard_bytes: int = 0  # the size a shard aims at


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
    telemetry = None
    try:
        telemetry = JobTelemetry(config.logging, job_id, request.name)
        telemetry.log("started", f"job {job_id} started", output=job_dir.uri)
        source, keys = list_source(request, config)
        listed = time.time()
        telemetry.log("listed", f"{len(keys)} images in {source.uri}", images=len(keys))
        assignment = assign_keys(request, config, keys)
        splits = {name: s["images"] for name, s in assignment.report["splits"].items()}
        telemetry.log("split", "images per split", splits=splits)
        plan = make_plan(request, config, source, job_dir)
        counts, failures = _process(plan, keys, assignment, on_progress, telemetry)
        record.update(state="SUCCEEDED", source={"name": request.name, "uri": source.uri})
        record.update(counts=counts, failures=failures, split=assignment.report)
        record["timings"] = _timings(started, listed)
    except Exception as e:
        record.update(state="FAILED", error=f"{type(e).__name__}: {e}", timings=_timings(started))
        job_dir.write_new(JOB_FILE, _json(record))
        if telemetry is not None:
            telemetry.finished(record)
        raise
    # Written last and create-only: its presence means the job finished.
    if not job_dir.write_new(JOB_FILE, _json(record)):
        raise JobExistsError(f"job {job_id} finished twice: {job_dir.uri}/{JOB_FILE}")
    telemetry.finished(record)
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
        steps=make_steps(request, config),
        original=request.writes_original,
        seed=request.seed,
        quality=request.output.quality,
        limits=config.limits,
        sharded=request.output.format == "webdataset",
        shard_bytes=request.output.shard_size_mb * 2**20,
    )


def make_steps(request: RequestBase, config: Config) -> tuple[Step, ...]:
    return tuple(
        Step(
            index,
            tuple(Stage(config_operator(config, n), p) for n, p in stages_of(name, params)),
            chain=name == CHAIN,
        )
        for index, (name, params) in enumerate(request.steps)
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


def _process(
    plan: Plan,
    keys: list[str],
    assignment: Assignment,
    on_progress: Progress | None,
    telemetry: JobTelemetry,
):
    """Fan the images out to Ray Data, stream results into the manifest."""
    counts = {"images_total": len(keys), "images_done": 0, "images_failed": 0, "outputs": 0}
    per_split: dict[str, dict[str, int]] = defaultdict(lambda: {"images": 0, "outputs": 0})
    failures = []
    columns = SHARD_MANIFEST_COLUMNS if plan.sharded else MANIFEST_COLUMNS
    manifest = _ManifestWriter(columns)
    if on_progress:
        on_progress(dict(counts))
    if keys:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        if plan.sharded:
            tasks = shard_runs(keys, assignment, images_per_shard(plan, keys, assignment))
            per_split_shards = Counter(task["shard"].split("/")[0] for task in tasks)
            counts["shards"] = dict(sorted(per_split_shards.items()))
            telemetry.log("sharded", f"{len(tasks)} shards", shards=counts["shards"])
        else:
            tasks = image_items(keys, assignment)
        for table in _dataset(plan, tasks).iter_batches(batch_size=None, batch_format="pyarrow"):
            failed = table.filter(table["error"].is_valid())
            written = table.filter(table["error"].is_null())
            failures += [
                {"source_path": k, "reason": r}
                for k, r in zip(failed["source_path"].to_pylist(), failed["error"].to_pylist())
            ]
            manifest.add(written.select(columns))
            images = written.group_by(["source_path", "split"]).aggregate([]).column("split")
            for split in images.to_pylist():
                per_split[split]["images"] += 1
            for split in written["split"].to_pylist():
                per_split[split]["outputs"] += 1
            done = len(images) + failed.num_rows
            counts["images_failed"] += failed.num_rows
            counts["images_done"] += done
            counts["outputs"] += written.num_rows
            nbytes = pc.sum(written["bytes"]).as_py() or 0
            telemetry.block(done, failed.num_rows, written.num_rows, nbytes, dict(counts))
            if on_progress:
                on_progress(dict(counts))
    plan.job_dir.write(MANIFEST_FILE, manifest.finish())
    counts["splits"] = dict(sorted(per_split.items()))
    return counts, sorted(failures, key=lambda f: f["source_path"])


def _dataset(plan: Plan, tasks: list[dict[str, str]]) -> ray.data.Dataset:
    if plan.sharded:
        # One shard per call (batch_size=1): what a shard holds never depends on blocks.
        return ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
            process_shard, fn_kwargs={"plan": plan}, batch_size=1, batch_format="numpy"
        )
    # Enough blocks to keep every CPU busy, each big enough to amortise task overhead.
    # Block boundaries change no output byte: seeds and names come from keys alone.
    cpus = int(ray.cluster_resources().get("CPU", 1))
    blocks = max(-(-len(tasks) // IMAGES_PER_BLOCK), min(len(tasks), 2 * cpus))
    return ray.data.from_items(tasks, override_num_blocks=blocks).map_batches(
        process_batch, fn_kwargs={"plan": plan}, batch_size=None, batch_format="numpy"
    )


def images_per_shard(plan: Plan, keys: list[str], assignment: Assignment) -> int:
    """Source images per shard, so that shards come out near the requested size.

    Measured by making the shard of a fixed sample of the images in memory, exactly as a
    task would: the same request and listing give the same number on any cluster.
    """
    sample = keys[:: max(1, -(-len(keys) // SHARD_SAMPLE_IMAGES))][:SHARD_SAMPLE_IMAGES]
    sink = _SizeOnly()
    task = {"shard": "sample.tar", "items": json.dumps(image_items(sample, assignment))}
    rows = process_shard({c: np.array([v]) for c, v in task.items()}, replace(plan, job_dir=sink))
    decoded = len(set(rows.filter(rows["error"].is_null())["source_path"].to_pylist()))
    if not decoded:
        return MAX_IMAGES_PER_SHARD
    return max(1, min(MAX_IMAGES_PER_SHARD, plan.shard_bytes * decoded // sink.bytes))


def shard_runs(keys: list[str], assignment: Assignment, per_shard: int) -> list[dict[str, str]]:
    """One task per shard: each split's images in key order, cut every `per_shard` images.

    A task names its shard and carries its images as one JSON string; shards are numbered
    per split from 0, so a split's shards are `shard-{000000..N}.tar`.
    """
    by_split: dict[str, list[dict]] = defaultdict(list)
    for item in image_items(keys, assignment):
        by_split[item["split"]].append(item)
    return [
        {"shard": shard_name(split, n), "items": json.dumps(items[start : start + per_shard])}
        for split, items in sorted(by_split.items())
        for n, start in enumerate(range(0, len(items), per_shard))
    ]


def process_batch(batch: dict[str, np.ndarray], plan: Plan) -> pa.Table:
    """Read, decode, resize, apply every step, encode and write a batch of images: a file
    per output.

    Pixels are handled on this thread; reads and writes go to a small thread pool, so
    object-store latency (S3) overlaps with decoding instead of adding to it.
    """
    with ThreadPoolExecutor(IO_THREADS) as io:
        writes = []

        def write(row: dict, data: bytes) -> None:
            writes.append(io.submit(plan.job_dir.write, row["output_path"], data))

        rows = _outputs(plan, batch, io, write)
        for done in writes:
            done.result()  # a failed write fails the job: Ray Data retries lost tasks, not errors
    return pa.Table.from_pylist(rows, schema=ROWS_SCHEMA)


def process_shard(batch: dict[str, np.ndarray], plan: Plan) -> pa.Table:
    """The same for one shard (`batch`: one task of `shard_runs`): every output goes into one
    tar as `<key>.jpg` with its manifest record `<key>.json`, in manifest order.

    The shard is built in memory (the Storage interface writes whole objects): a task needs
    about twice shard_size_mb, which is why that is capped.
    """
    [shard], [items] = batch["shard"].tolist(), batch["items"].tolist()
    images = {c: np.array([item[c] for item in json.loads(items)]) for c in ("key", *PLACEMENT)}
    encoded: dict[str, bytes] = {}

    def keep(row: dict, data: bytes) -> None:
        encoded[row["output_path"]] = data

    with ThreadPoolExecutor(IO_THREADS) as io:
        rows = _outputs(plan, images, io, keep)
    written = [row for row in rows if "error" not in row]
    samples = (
        (
            row["output_path"].removesuffix(".jpg"),
            {"jpg": encoded.pop(row["output_path"]), "json": _record(row)},
        )
        for row in written
    )
    plan.job_dir.write(shard, tar_bytes(samples))  # empty too: a split's shards have no gaps
    for row in written:
        row["shard"] = shard
    return pa.Table.from_pylist(rows, schema=ROWS_SCHEMA)


def _outputs(
    plan: Plan,
    batch: dict[str, np.ndarray],
    io: ThreadPoolExecutor,
    emit: Callable[[dict, bytes], None],
) -> list[dict]:
    """Every output of a batch of images, handed to `emit` with its manifest row as it is
    encoded. Returns the rows (a failed image's one row has `error`) in manifest order.

    Images go through in chunks, the next chunk's reads in flight while this one is
    processed: memory stays bounded however large the batch.
    """
    keys = batch["key"].tolist()
    placements = [
        {c: v or None for c, v in zip(PLACEMENT, values)}
        for values in zip(*(batch[c].tolist() for c in PLACEMENT))
    ]
    fetch = _fetch(plan)

    def reads(start: int) -> list[Future]:
        return [io.submit(fetch, key) for key in keys[start : start + CHUNK_IMAGES]]

    rows: list[dict] = []
    pending = reads(0)
    for start in range(0, len(keys), CHUNK_IMAGES):
        fetched = [read.result() for read in pending]
        end = start + CHUNK_IMAGES
        pending = reads(end)
        chunk = zip(keys[start:end], placements[start:end], fetched)
        rows += _chunk_outputs(plan, chunk, emit)
    rows.sort(key=lambda row: (row["source_path"], row.get("output_path") or ""))
    return rows


def _chunk_outputs(plan: Plan, chunk, emit: Callable[[dict, bytes], None]) -> list[dict]:
    rows: list[dict] = []
    decoded: dict[tuple[int, ...], list[tuple[str, dict, np.ndarray]]] = defaultdict(list)
    misfits: dict[tuple[int, ...], str | None] = {}  # by image shape: one when resized
    for key, placed, fetched in chunk:
        try:
            image = _decode(plan, fetched)
            if image.shape not in misfits:
                misfits[image.shape] = _misfit(plan, image.shape[:2])
            if misfits[image.shape]:
                raise DecodeError(misfits[image.shape])  # never silently padded
        except (DecodeError, OSError) as e:
            rows.append({"source_path": key, **placed, "error": str(e)})
            continue
        decoded[image.shape].append((key, placed, image))

    # Same-shaped images go through each kernel together (all of them when resized).
    for same_shape in decoded.values():
        images = np.stack([image for _, _, image in same_shape])
        keys_of_images = [key for key, _, _ in same_shape]
        for operator, suffix, params, outputs in _apply(plan, keys_of_images, images):
            for (key, placed, _), p, output in zip(same_shape, params, outputs):
                row, data = _encode(plan, key, placed, operator, suffix, p, output)
                emit(row, data)
                rows.append(row)
    return rows


def _apply(plan: Plan, keys: list[str], images: np.ndarray):
    """Every output of every step for a stack of same-shaped images, one kernel call at a time:
    (operator, name suffix, concrete params per image, outputs)."""
    if plan.original:
        yield "ORIGINAL", "original", [{}] * len(images), images
    for step in plan.steps:
        names = "-".join(stage.operator.name.lower() for stage in step.stages)
        for copy, applied, outputs in _stages(plan, step, keys, images):
            if step.chain:
                params = [
                    {"chain": [{"operator": s.operator.name, **p} for s, p in zip(step.stages, a)]}
                    for a in applied
                ]
            else:
                params = [a[0] for a in applied]
            yield step.name, f"{step.index}-{names}-{copy}", params, outputs


def _stages(
    plan: Plan,
    step: Step,
    keys: list[str],
    images: np.ndarray,
    stage: int = 0,
    path: int = 0,
    applied: list[list[dict]] | None = None,
):
    """A step's outputs, depth first through its stages: (copy index, params of every stage
    per image, outputs). `path` is the copy index so far; one branch is in memory at a time."""
    operator, params = step.stages[stage].operator, step.stages[stage].params
    copies = operator.copies(params)
    for copy in range(copies):
        node = path * copies + copy
        sampled = [_sample(plan, step, stage, key, node, copy, images.shape[1:3]) for key in keys]
        outputs = operator.kernel(images, sampled)
        so_far = [[*a, p] for a, p in zip(applied, sampled)] if applied else [[p] for p in sampled]
        if stage + 1 == len(step.stages):
            yield node, so_far, outputs
        else:
            yield from _stages(plan, step, keys, outputs, stage + 1, node, so_far)


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
    return load_image(
        fetched,
        plan.size,
        max_pixels=plan.limits.max_image_pixels,
        max_bytes=plan.limits.max_file_bytes,
    )


def _misfit(plan: Plan, shape: tuple[int, int]) -> str | None:
    """Why an image of this shape cannot go through every step (every stage of a chain)."""
    for step in plan.steps:
        misfit = first_misfit([(s.operator, s.params) for s in step.stages], shape)
        if misfit is not None:
            number, (need_h, need_w), (got_h, got_w) = misfit
            name = step.stages[number].operator.name
            needs = f"{name} needs at least {need_h}x{need_w} (height x width)"
            if number == 0:
                return f"{needs}, image is {got_h}x{got_w}"
            before = step.stages[number - 1].operator.name
            return f"{needs}, {CHAIN} stage {number - 1} ({before}) makes {got_h}x{got_w}"
    return None


def _sample(
    plan: Plan, step: Step, stage: int, key: str, node: int, copy: int, shape: tuple[int, int]
) -> dict:
    # Stage 0 is seeded as a plain step always was, so its outputs do not change; a later
    # stage adds its number, and `node` (the copy index so far) tells its copies apart.
    parts = (plan.seed, key, step.index, node) + ((stage,) if stage else ())
    seed, rng = derive_rng(*parts)
    operator, params = step.stages[stage].operator, step.stages[stage].params
    sampled = operator.sample(params, rng, shape, copy)
    return {**sampled, "seed": seed} if operator.random else sampled


@functools.lru_cache(maxsize=4096)
def _output_stem(key: str) -> str:
    """Once per image, not per output: the file stem plus a key hash (keeps a/x.jpg and
    b/x.jpg apart)."""
    stem = safe_name(key.rsplit("/", 1)[-1].rsplit(".", 1)[0], max_length=60)
    return f"{stem}.{stable_hash(key, bits=32):08x}"


def _encode(plan: Plan, key, placed, operator, suffix, params, image) -> tuple[dict, bytes]:
    """The output's bytes and its manifest row (its name is the same on every retry)."""
    name = f"{_output_stem(key)}.{suffix}"
    if plan.sharded:
        path = f"{sample_key(name)}.jpg"  # a member of its split's shard; the label is in .json
    else:
        path = f"{output_folder(placed['split'], placed['label'])}/{name}.jpg"
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


def _record(row: dict) -> bytes:
    """A shard sample's .json: its manifest row, with params as an object."""
    fields = ("source_path", "split", "label", "group", "operator", "width", "height")
    record = {field: row[field] for field in fields} | {"params": json.loads(row["params"])}
    return json.dumps(record, sort_keys=True).encode()


class _SizeOnly:
    """A sink that keeps only how many bytes it was given: sizing shards from a sample."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, key: str, data: bytes) -> None:
        self.bytes += len(data)


class _ManifestWriter:
    """Parquet with fixed-size row groups, whatever sizes the blocks come in."""

    def __init__(self, columns: list[str]) -> None:
        self._buffer = io.BytesIO()
        self._writer = pq.ParquetWriter(
            self._buffer, pa.schema([ROWS_SCHEMA.field(c) for c in columns])
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
