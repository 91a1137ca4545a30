"""A job on the driver, top to bottom:

    inputs -> list source -> split per image (or group) -> Ray Data tasks (worker: read,
    decode, resize, steps, encode, write) -> manifest.parquet -> job.json

`run_job` runs wherever the job's driver is (`motoray run`, a Ray Job, a notebook); it never
touches pixels. A job that fails still writes job.json (state FAILED, with the error); only
a stopped job leaves none.
"""

from __future__ import annotations

import platform
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pyarrow.compute as pc

import motoray
from motoray.observability import JobTelemetry
from motoray.ops import operators_for
from motoray.pipeline import ray_data, source
from motoray.pipeline.jobspec import JobSpec, job_spec
from motoray.pipeline.layout import JOB_FILE, MANIFEST_FILE
from motoray.pipeline.manifest import MANIFEST_COLUMNS, SHARD_MANIFEST_COLUMNS, ManifestWriter
from motoray.record import Counts, Failure, JobInputs, JobRecord, SourceRef, SplitCounts, Timings
from motoray.spec import RequestBase, parse_requests
from motoray.storage import open_storage

Progress = Callable[[Counts], None]


class JobExistsError(FileExistsError):
    pass


def run_job(inputs: JobInputs, on_progress: Progress | None = None) -> JobRecord:
    """Run one accepted job to completion; returns what job.json records."""
    started = time.time()
    config = inputs.config
    request = parse_request(inputs)
    job_dir = open_storage(inputs.output, config.output_s3())
    if job_dir.exists(JOB_FILE):
        raise JobExistsError(f"job {inputs.job_id} already finished: {job_dir.uri}/{JOB_FILE}")
    record = JobRecord(
        job_id=inputs.job_id,
        state="RUNNING",
        request=request.model_dump(mode="json"),
        output=job_dir.uri,
        versions=_versions(),
    )
    telemetry = None
    try:
        telemetry = JobTelemetry(config.logging, inputs.job_id, request.name)
        telemetry.log("started", f"job {inputs.job_id} started", output=job_dir.uri)
        storage, keys = source.list_source(request, config)
        listed = time.time()
        telemetry.log("listed", f"{len(keys)} images in {storage.uri}", images=len(keys))
        assignment = source.place(request, config, keys)
        splits = {name: s["images"] for name, s in assignment.report["splits"].items()}
        telemetry.log("split", "images per split", splits=splits)
        spec = job_spec(request, config, storage, job_dir)
        ray_data.ship_plugins(config.operators)
        items = source.items(keys, assignment)
        counts, failures = _process(spec, items, on_progress, telemetry)
        record.state = "SUCCEEDED"
        record.source = SourceRef(name=request.name, uri=storage.uri)
        record.counts, record.failures, record.split = counts, failures, assignment.report
        record.timings = _timings(started, listed)
    except Exception as e:
        record.state, record.error = "FAILED", f"{type(e).__name__}: {e}"
        record.timings = _timings(started)
        job_dir.write_new(JOB_FILE, record.to_json())
        if telemetry is not None:
            telemetry.finished(record)
        raise
    # Written last and create-only: its presence means the job finished.
    if not job_dir.write_new(JOB_FILE, record.to_json()):
        raise JobExistsError(f"job {inputs.job_id} finished twice: {job_dir.uri}/{JOB_FILE}")
    telemetry.finished(record)
    return record


def parse_request(inputs: JobInputs) -> RequestBase:
    """The accepted request, validated again against the config it was accepted with."""
    operators = operators_for(inputs.config.operators)
    [request] = parse_requests(inputs.request, operators, list(inputs.config.sources))
    return request


def _process(
    spec: JobSpec,
    items: list[source.Item],
    on_progress: Progress | None,
    telemetry: JobTelemetry,
) -> tuple[Counts, list[Failure]]:
    """Fan the images out to Ray Data, stream results into the manifest."""
    counts = Counts(images_total=len(items))
    per_split: dict[str, SplitCounts] = defaultdict(SplitCounts)
    failures: list[Failure] = []
    manifest = ManifestWriter(SHARD_MANIFEST_COLUMNS if spec.sharded else MANIFEST_COLUMNS)
    if on_progress:
        on_progress(counts.model_copy())
    if spec.sharded and items:
        tasks = ray_data.shards(spec, items)
        per_split_shards = Counter(task["shard"].split("/")[0] for task in tasks)
        counts.shards = dict(sorted(per_split_shards.items()))
        telemetry.log("sharded", f"{len(tasks)} shards", shards=counts.shards)
        tables = ray_data.process_shards(spec, tasks)
    else:
        tables = ray_data.process_files(spec, items)
    for table in tables:
        failed = table.filter(table["error"].is_valid())
        written = table.filter(table["error"].is_null())
        failures += [
            Failure(source_path=k, reason=r)
            for k, r in zip(failed["source_path"].to_pylist(), failed["error"].to_pylist())
        ]
        manifest.add(written)
        images = written.group_by(["source_path", "split"]).aggregate([]).column("split")
        for split in images.to_pylist():
            per_split[split].images += 1
        for split in written["split"].to_pylist():
            per_split[split].outputs += 1
        done = len(images) + failed.num_rows
        counts.images_failed += failed.num_rows
        counts.images_done += done
        counts.outputs += written.num_rows
        nbytes = pc.sum(written["bytes"]).as_py() or 0
        telemetry.block(done, failed.num_rows, written.num_rows, nbytes, counts)
        if on_progress:
            on_progress(counts.model_copy())
    spec.job_dir.write(MANIFEST_FILE, manifest.finish())
    counts.splits = dict(sorted(per_split.items()))
    return counts, sorted(failures, key=lambda f: f.source_path)


def _timings(started: float, listed: float | None = None) -> Timings:
    finished = time.time()
    return Timings(
        started_at=_iso(started),
        finished_at=_iso(finished),
        duration_s=round(finished - started, 3),
        listing_s=None if listed is None else round(listed - started, 3),
    )


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _versions() -> dict[str, str]:
    import numpy as np
    import PIL
    import ray

    return {
        "motoray": motoray.__version__,
        "ray": ray.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }
