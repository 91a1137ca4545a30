"""A job on the driver, top to bottom:

    inputs -> list source -> split per image (or group) -> Ray Data tasks (worker: read,
    decode, resize, steps, encode, write) -> manifest.parquet -> job.json

`run_job` runs wherever the job's driver is (`motoray run`, a Ray Job, a notebook); it never
touches pixels. A job that fails still writes job.json (state FAILED, with the error); only
a stopped job leaves none.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyarrow.compute as pc

import motoray
from motoray.observability import JobTelemetry
from motoray.ops import operators_for
from motoray.pipeline import ray_data, source
from motoray.pipeline.jobspec import JobSpec, job_spec
from motoray.pipeline.layout import JOB_FILE, MANIFEST_FILE
from motoray.pipeline.manifest import ManifestWriter, manifest_columns
from motoray.record import Counts, Failure, JobInputs, JobRecord, SourceRef, SplitCounts, Timings
from motoray.spec import RequestBase, outputs_per_image, parse_requests
from motoray.storage import open_storage
from motoray.video.sampling import video_of

Progress = Callable[[Counts], None]


class JobExistsError(FileExistsError):
    pass


class JobTimeout(TimeoutError):
    pass


def run_job(inputs: JobInputs, on_progress: Progress | None = None) -> JobRecord:
    """Run one accepted job to completion; returns what job.json records. A job that ends
    FAILED raises JobFailed (or the error that ended it) after writing its job.json."""
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
    listed = None
    try:
        telemetry = JobTelemetry(config.logging, inputs.job_id, request.name)
        telemetry.log("started", f"job {inputs.job_id} started", output=job_dir.uri)
        storage, keys = source.list_source(request, config)
        videos = source.probe(request, config, storage, keys)  # a video source: metadata
        images = source.image_count(keys, videos)
        listed = time.time()
        listing = f"{len(keys)} {'videos' if videos else 'images'} in {storage.uri}"
        telemetry.log("listed", listing, images=images)
        record.source = SourceRef(name=request.name, uri=storage.uri)
        _check_budget(request, config, images)
        assignment = source.place(request, config, keys, videos)
        record.split = assignment.report
        splits = {name: s["images"] for name, s in assignment.report["splits"].items()}
        telemetry.log("split", "images per split", splits=splits)
        spec = job_spec(request, config, storage, job_dir)
        ray_data.ship_plugins(config.operators)
        items = source.items(keys, assignment, videos)
        deadline = started + config.limits.job_timeout_s
        record.counts, record.failures, outputs, files = _process(
            spec, items, images, on_progress, telemetry, deadline
        )
        if videos is not None:
            record.counts.videos = len(keys)
        _check_outcome(record.counts, record.failures, config.limits)
        _check_files(spec, outputs, files)
        job_dir.sync()  # every output on disk before the commit marker says so
        record.state = "SUCCEEDED"
        record.timings = _timings(started, listed)
    except Exception as e:
        record.state, record.error = "FAILED", f"{type(e).__name__}: {e}"
        record.timings = _timings(started, listed)
        _commit(job_dir, record)
        if telemetry is not None:
            telemetry.finished(record)
        raise
    _commit(job_dir, record)
    telemetry.finished(record)
    return record


@contextmanager
def hard_deadline(inputs: JobInputs) -> Iterator[None]:
    """For a job's own driver process (`motoray run`, `run-job`): past limits.job_timeout_s,
    whatever the job is stuck in (a storage call that never returns, a task that never
    ends), write job.json FAILED and end the process, which frees the job's slot. The loop
    in `_process` ends a job that is only slow more gently, a little earlier."""
    limit = inputs.config.limits.job_timeout_s
    timer = threading.Timer(limit * 1.05 + 1, _give_up, args=(inputs, limit))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _give_up(inputs: JobInputs, limit: float) -> None:
    record = JobRecord(
        job_id=inputs.job_id,
        state="FAILED",
        request=inputs.request,
        output=inputs.output,
        error=f"JobTimeout: stuck past limits.job_timeout_s ({limit:g} s)",
    )
    with contextlib.suppress(Exception):  # nothing may keep this process alive now
        _commit(open_storage(inputs.output, inputs.config.output_s3()), record)
    print(f"job {inputs.job_id} FAILED: {record.error}", file=sys.stderr, flush=True)
    os._exit(3)


def parse_request(inputs: JobInputs) -> RequestBase:
    """The accepted request, validated again against the config it was accepted with."""
    operators = operators_for(inputs.config.operators)
    config = inputs.config
    [request] = parse_requests(inputs.request, operators, list(config.sources), config.limits)
    return request


class JobFailed(RuntimeError):
    """The job ran, but what it made is not what was asked: too many images failed, none
    was made, or the outputs on storage are not the ones the manifest lists."""


def _check_budget(request: RequestBase, config, images: int) -> None:
    """The budget the listing tells: checked before any pixel is read."""
    outputs = images * outputs_per_image(request, operators_for(config.operators))
    if outputs > config.limits.max_outputs_per_job:
        raise JobFailed(
            f"{images} images x {outputs // max(images, 1)} outputs = {outputs} outputs; at "
            f"most {config.limits.max_outputs_per_job} per job (limits.max_outputs_per_job)"
        )


def _check_outcome(counts: Counts, failures: list[Failure], limits) -> None:
    """A job never claims more than it did."""
    if counts.images_total == 0:
        raise JobFailed("the source lists no images (check the source's uri and extensions)")
    made = counts.images_done - counts.images_failed
    if made == 0:
        raise JobFailed(f"no image could be processed; first failure: {failures[0].reason}")
    if counts.images_failed > limits.max_failed_fraction * counts.images_total:
        raise JobFailed(
            f"{counts.images_failed} of {counts.images_total} images failed: more than "
            f"limits.max_failed_fraction ({limits.max_failed_fraction:g})"
        )
    if counts.videos and counts.videos_failed > limits.max_failed_fraction * counts.videos:
        raise JobFailed(
            f"{counts.videos_failed} of {counts.videos} videos gave no frame: more than "
            f"limits.max_failed_fraction ({limits.max_failed_fraction:g})"
        )


def _check_files(spec: JobSpec, outputs: list[str], files: list[str]) -> None:
    """Every output name once (a name two images share would hold one image's outputs
    under both), and the job folder holds exactly the files written: the outputs, or the
    shards that hold them."""
    unique = set(outputs)
    if len(unique) != len(outputs):
        seen: set[str] = set()
        twice = next(path for path in outputs if path in seen or seen.add(path))
        raise JobFailed(f"{len(outputs) - len(unique)} outputs share a name, e.g. {twice}")
    expected = set(files) if spec.sharded else unique
    listed = set(spec.job_dir.list(("",))) - {MANIFEST_FILE, JOB_FILE}
    missing, extra = expected - listed, listed - expected
    if missing or extra:
        example = sorted(missing or extra)[0]
        raise JobFailed(
            f"the job folder does not hold what the manifest lists: {len(missing)} missing, "
            f"{len(extra)} unexpected (e.g. {example})"
        )


def _commit(job_dir, record: JobRecord) -> None:
    """job.json, written last and create-only: its presence means the job finished. A PUT
    retried after it had landed sees 412: then what is there must be what we wrote."""
    data = record.to_json()
    if not job_dir.write_new(JOB_FILE, data) and job_dir.read(JOB_FILE) != data:
        raise JobExistsError(f"job {record.job_id} finished twice: {job_dir.uri}/{JOB_FILE}")


def _process(
    spec: JobSpec,
    items: list[source.Item],
    images_expected: int,
    on_progress: Progress | None,
    telemetry: JobTelemetry,
    deadline: float,
) -> tuple[Counts, list[Failure], list[str], list[str]]:
    """Fan the images out to Ray Data, stream results into the manifest. Returns the
    counts, the failures, every output's path and the files written (shards, if any)."""
    counts = Counts(images_total=images_expected)  # video: the frames promised, until done
    per_split: dict[str, SplitCounts] = defaultdict(SplitCounts)
    failures: list[Failure] = []
    manifest = ManifestWriter(manifest_columns(spec.sharded, video=spec.frames is not None))
    if on_progress:
        on_progress(counts.model_copy())
    if spec.sharded and items:
        tasks = ray_data.shards(spec, items)
        per_split_shards = Counter(task["shard"].split("/")[0] for task in tasks)
        counts.shards = dict(sorted(per_split_shards.items()))
        telemetry.log("sharded", f"{len(tasks)} shards", shards=counts.shards)
        tables = ray_data.process_shards(spec, tasks)
        files = [task["shard"] for task in tasks]
    else:
        tables = ray_data.process_files(spec, items)
        files = []
    outputs: list[str] = []
    videos_made: set[str] = set()
    for table in tables:
        if time.time() > deadline:
            raise JobTimeout("still running past limits.job_timeout_s")
        failed = table.filter(table["error"].is_valid())
        made = table.filter(table["error"].is_null())
        failures += [
            Failure(source_path=k, reason=r)
            for k, r in zip(failed["source_path"].to_pylist(), failed["error"].to_pylist())
        ]
        manifest.add(made)
        outputs += made["output_path"].to_pylist()
        if spec.frames is not None:
            videos_made.update(made["video"].to_pylist())
        images = made.group_by(["source_path", "split"]).aggregate([]).column("split")
        for split in images.to_pylist():
            per_split[split].images += 1
        for split in made["split"].to_pylist():
            per_split[split].outputs += 1
        done = len(images) + failed.num_rows
        counts.images_failed += failed.num_rows
        counts.images_done += done
        counts.outputs += made.num_rows
        nbytes = pc.sum(made["bytes"]).as_py() or 0
        telemetry.block(done, failed.num_rows, made.num_rows, nbytes, counts)
        if on_progress:
            on_progress(counts.model_copy())
    spec.job_dir.write(MANIFEST_FILE, manifest.finish())
    counts.splits = dict(sorted(per_split.items()))
    if spec.frames is not None:  # frames are known once decoded; the budget counts videos
        counts.images_total = counts.images_done
        failed = {video_of(failure.source_path) for failure in failures}
        counts.videos_failed = len(failed - videos_made)
    return counts, sorted(failures, key=lambda f: f.source_path), outputs, files


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
