"""A job on the driver, top to bottom:

    inputs -> list source (+ its annotations) -> split per image (or group) -> Ray Data
    tasks (worker: read, decode, resize, steps, encode, write) -> manifest.parquet
    (+ annotation files) -> job.json

`run_job` runs wherever the job's driver is (the service's warm runner, `motoray run`, a
notebook); it never touches pixels. A job that fails still writes job.json (state FAILED,
with the error); only a stopped job leaves none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc

import motoray
from motoray.annotations import SourceAnnotations, coco, yolo
from motoray.jobs.deadline import Deadline
from motoray.jobs.folder import JobExistsError, JobFolder
from motoray.jobs.record import (
    AnnotationReport,
    BoxCounts,
    Counts,
    Failure,
    JobInputs,
    JobRecord,
    JobStatus,
    SourceRef,
    SplitCounts,
    Timings,
)
from motoray.near_duplicates import as_processed
from motoray.near_duplicates import place as near_duplicates_place
from motoray.observability import JobTelemetry
from motoray.ops import operators_for
from motoray.pipeline import boxfiles, ray_data, source, spread
from motoray.pipeline.jobspec import JobSpec, job_spec
from motoray.pipeline.layout import JOB_FILE, MANIFEST_FILE
from motoray.pipeline.listing import Listed
from motoray.pipeline.manifest import ManifestWriter, listed, manifest_columns
from motoray.spec import RequestBase, outputs_per_image, parse_one_for
from motoray.video.sampling import one_failure_per_changed_video, video_of

Progress = Callable[[Counts], None]


class JobTimeout(TimeoutError):
    pass


class JobStopped(Exception):
    """Stopped on request: a stopped job leaves no job.json."""


def run_job(
    inputs: JobInputs,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    run: int = 0,
    keep_log: Callable[[dict], None] | None = None,
) -> JobRecord:
    """Run one accepted job to completion; returns what job.json records. A job that ends
    FAILED raises JobFailed (or the error that ended it) after writing its job.json; one
    stopped (`should_stop` answered True between two result blocks) raises JobStopped and
    writes none. `run`: how many runs of it were cut short before this one; `keep_log`
    gets each of its log lines as well."""
    started = time.time()
    config = inputs.config
    request = parse_request(inputs)
    folder = JobFolder.of(inputs)
    job_dir = folder.storage
    if job_dir.exists(JOB_FILE):
        raise JobExistsError(f"job {inputs.job_id} already finished: {job_dir.uri}/{JOB_FILE}")
    record = JobRecord(
        job_id=inputs.job_id,
        state=JobStatus.RUNNING,
        request=request.model_dump(mode="json"),
        output=job_dir.uri,
        versions=_versions(),
        resumed=run,
    )
    telemetry = None
    listed = None
    marks: dict[str, float] = {}  # stage -> seconds from the start, for the record

    def mark(stage: str) -> None:
        marks[stage] = round(time.time() - started, 3)

    deadline = Deadline.of(inputs).at
    try:
        telemetry = JobTelemetry(config.logging, inputs.job_id, request.name, keep_log)
        resumed = f" (resumed: run {run + 1})" if run else ""
        telemetry.log("started", f"job {inputs.job_id} started{resumed}", output=job_dir.uri,
                      resumed=run)  # fmt: skip
        if time.time() > deadline:  # resumed after its time was up
            raise JobTimeout("still running past limits.job_timeout_s")
        stop = should_stop or (lambda: False)
        storage, found = source.listing(request, config, spread.spread_from(request, config))
        if isinstance(found, Listed):  # no key on this driver
            listed = time.time()
            mark("listed")
            if run:
                spread.drop_earlier_parts(job_dir)
            _run_spread(inputs, request, record, telemetry, mark, on_progress, stop, storage, found)
        else:
            listed_versions = found
            keys = list(listed_versions)
            videos = source.probe(request, config, storage, keys, listed_versions)
            images = source.image_count(keys, videos)
            listed = time.time()
            mark("listed")
            listing = f"{len(keys)} {'videos' if videos else 'images'} in {storage.uri}"
            telemetry.log("listed", listing, images=images)
            record.source = SourceRef(name=request.name, uri=storage.uri)
            _check_budget(request, config, images)
            boxes = source.read_annotations(request, config, storage, keys)
            if boxes is not None:  # images unlisted (`unlisted: skip`) or failed: not processed
                keys, record.annotations = boxes.usable(keys), AnnotationReport(**boxes.report())
                images = len(keys)
            spec = job_spec(request, config, storage, job_dir, boxes)
            spec = dataclasses.replace(spec, job_id=inputs.job_id, deadline=deadline)
            ray_data.ship_plugins(config.operators)
            until_ended = lambda tables: _until_ended(tables, stop, deadline, spec)  # noqa: E731
            placed = (request, config, spec, keys, boxes, videos, listed_versions, until_ended)
            placed = near_duplicates_place(*placed)  # source.place, unless asked
            mark("placed")
            pending = placed.pending  # the split, once every image is hashed as processed
            if pending is None:
                record.split = _logged_split(telemetry, placed.assignment.report)
            spec = dataclasses.replace(spec, hashed=pending is not None)
            record.counts, record.failures, outputs, files = _process(
                spec, placed.items(keys, boxes, videos), images, on_progress, telemetry,
                deadline, stop, mark, boxes, pending,
            )  # fmt: skip
            if pending is not None:
                record.split = _logged_split(telemetry, pending.report)
            if videos is not None:
                record.counts.videos = len(keys)
            _check_outcome(record.counts, record.failures, config.limits)
            _check_files(spec, outputs, files)
        job_dir.sync()  # every output on disk before the commit marker says so
        mark("checked")
        record.state = JobStatus.SUCCEEDED
        record.timings = _timings(started, listed, marks)
    except JobStopped:
        if telemetry is not None:
            telemetry.log("stopped", f"job {inputs.job_id} stopped")
        raise
    except Exception as e:
        record.state, record.error = JobStatus.FAILED, reason(e)
        record.timings = _timings(started, listed, marks)
        folder.commit(record)
        if telemetry is not None:
            telemetry.finished(record)
        raise
    folder.commit(record)
    telemetry.finished(record)
    return record


def _logged_split(telemetry: JobTelemetry, report: dict) -> dict:
    splits = {name: s["images"] for name, s in report["splits"].items()}
    telemetry.log("split", "images per split", splits=splits)
    return report


def _run_spread(
    inputs, request, record, telemetry, mark, on_progress, should_stop, storage, listed
) -> None:
    """A job whose keys stay in Ray's blocks (pipeline/spread.py): listing, split and the
    file check in tasks, sums here."""
    config, deadline = inputs.config, Deadline.of(inputs).at
    keys, images = listed.keys, listed.count
    telemetry.log("listed", f"{images} images in {storage.uri}", images=images)
    record.source = SourceRef(name=request.name, uri=storage.uri)
    _check_budget(request, config, images)
    spec = job_spec(request, config, storage, JobFolder.of(inputs).storage, None)
    spec = dataclasses.replace(spec, job_id=inputs.job_id, deadline=deadline)
    until_ended = lambda tables: _until_ended(tables, should_stop, deadline, spec)  # noqa: E731
    cut, record.split, dropped = spread.placed(request, config, spec, listed, until_ended)
    mark("placed")
    _logged_split(telemetry, record.split)
    ray_data.ship_plugins(config.operators)
    counts, failures = Counts(images_total=images), []

    def on_block(done: int, failed: int, made: int, nbytes: int) -> None:
        telemetry.block(done, failed, made, nbytes, counts)
        if on_progress:
            on_progress(counts.model_copy())

    if on_progress:
        on_progress(counts.model_copy())
    sums = until_ended(spread.processed(spec, keys, images, cut, dropped))
    per_split = spread.summed(sums, counts, failures, on_block)
    mark("last_result")
    counts.splits = dict(sorted((s, c) for s, c in per_split.items() if c.images))
    record.counts, record.failures = counts, sorted(failures, key=lambda f: f.source_path)
    _check_outcome(counts, record.failures, config.limits)


@contextmanager
def hard_deadline(inputs: JobInputs) -> Iterator[None]:
    """For a job's own driver process (`motoray run`): past its give-up time, whatever the
    job is stuck in (a storage call that never returns, a task that never ends), write
    job.json FAILED and end the process. The loop in `_process` ends a job that is only
    slow more gently, a little earlier."""
    timer = Deadline.of(inputs).watchdog(lambda: _give_up(inputs))
    try:
        yield
    finally:
        timer.cancel()


def _give_up(inputs: JobInputs) -> None:
    error = give_up(inputs)
    print(f"job {inputs.job_id} FAILED: {error}", file=sys.stderr, flush=True)
    os._exit(3)


def give_up(
    inputs: JobInputs,
    run: int = 0,
    keep_log: Callable[[dict], None] | None = None,
    error: str | None = None,
) -> str:
    """A stuck job's job.json: FAILED, past its time limit (`error`: why, if not stuck).
    Returns the error."""
    error = error or Deadline.of(inputs).reason()
    record = JobRecord(
        job_id=inputs.job_id,
        state=JobStatus.FAILED,
        request=inputs.request,
        output=inputs.output,
        error=error,
        resumed=run,
    )
    with contextlib.suppress(Exception):  # nothing may keep this from returning now
        JobFolder.of(inputs).commit(record)
        telemetry = JobTelemetry(inputs.config.logging, inputs.job_id, inputs.source, keep_log)
        telemetry.log("failed", f"FAILED: {error}", logging.ERROR, error=error)
    return error


def reason(e: BaseException) -> str:
    """What ended a job, in a line its user can act on. A pipeline task's error arrives as
    Ray's RayTaskError whose cause is the error our code raised (ray_data asks Ray Data for
    the original), e.g. "PermissionError: access denied on S3: s3://bucket/key": that is the
    reason, on its first line (Ray Data appends a note on retries); Ray's wrapping is not."""
    from ray.exceptions import RayTaskError

    cause = e.cause if isinstance(e, RayTaskError) else None
    if isinstance(cause, Exception):
        first_line = next(iter(str(cause).splitlines()), "")
        return f"{type(cause).__name__}: {first_line} (in a pipeline task)"
    return f"{type(e).__name__}: {e}"


def parse_request(inputs: JobInputs) -> RequestBase:
    """The accepted request, validated again against the config it was accepted with."""
    return parse_one_for(inputs.config, inputs.request)


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


def _check_files(spec: JobSpec, outputs: pa.ChunkedArray, files: list[str]) -> None:
    """Every output name once (a name two images share would hold one image's outputs
    under both), and the job folder holds exactly the files written: the outputs (and a
    YOLO label beside each), or the shards that hold them, and the job's annotation files.
    In Arrow, not Python strings and sets: less of the driver's memory on a large job."""
    unique = pc.unique(outputs)
    if len(unique) != len(outputs):
        counts = pc.value_counts(outputs)
        twice = counts.field("values").filter(pc.greater(counts.field("counts"), 1))[0]
        raise JobFailed(f"{len(outputs) - len(unique)} outputs share a name, e.g. {twice}")
    expected = [pa.array(files, pa.string()), *(() if spec.sharded else (unique,))]
    if spec.boxes is not None and spec.boxes.yolo:  # one label per output image
        expected.append(yolo.label_files(unique))
    expected = pa.chunked_array(expected, pa.string())
    listed = pa.array(spec.job_dir.list(("",)), pa.string())
    listed = listed.filter(pc.invert(pc.is_in(listed, pa.array([MANIFEST_FILE, JOB_FILE]))))
    missing = expected.filter(pc.invert(pc.is_in(expected, listed)))
    extra = listed.filter(pc.invert(pc.is_in(listed, expected)))
    if len(missing) or len(extra):
        example = min((missing if len(missing) else extra).to_pylist())
        raise JobFailed(
            f"the job folder does not hold what the manifest lists: {len(missing)} missing, "
            f"{len(extra)} unexpected (e.g. {example})"
        )


def _process(
    spec: JobSpec,
    items: list[source.Item],
    images_expected: int,
    on_progress: Progress | None,
    telemetry: JobTelemetry,
    deadline: float,
    should_stop: Callable[[], bool],
    mark: Callable[[str], None],
    boxes: SourceAnnotations | None = None,
    pending: as_processed.Pending | None = None,
) -> tuple[Counts, list[Failure], pa.ChunkedArray, list[str]]:
    """Fan the images out to Ray Data, stream results into the manifest (and the COCO files).
    Returns the counts, the failures, every output's path and the files written by the
    driver or as shards (not the outputs themselves). `pending`: the near-duplicate split,
    settled once every image is processed (and hashed)."""
    # Images the annotations fail (a file gone since the export, an entry skipped) are
    # failures before any task runs. Video: the frames promised, until done.
    failed_early = boxes.failed if boxes is not None else {}
    failures = [Failure(source_path=key, reason=reason) for key, reason in failed_early.items()]
    counts = Counts(
        images_total=images_expected + len(failures),
        images_done=len(failures),
        images_failed=len(failures),
    )
    per_split: dict[str, SplitCounts] = defaultdict(SplitCounts)
    columns = manifest_columns(spec.sharded, spec.boxes is not None, spec.frames is not None)
    manifest = ManifestWriter(columns)
    coco_files = None
    if boxes is not None and spec.boxes is not None and "coco" in spec.boxes.formats:
        coco_files = coco.CocoWriter(boxes.categories)
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
    outputs: list[pa.Array] = []
    videos_made: set[str] = set()
    for number, table in enumerate(_until_ended(tables, should_stop, deadline, spec)):
        if number == 0:
            mark("first_result")
        failed = table.filter(table["error"].is_valid())
        skipped = table.filter(table["skipped"].is_valid())
        made = table.filter(pc.and_(table["error"].is_null(), table["skipped"].is_null()))
        failures += [
            Failure(source_path=k, reason=r)
            for k, r in zip(failed["source_path"].to_pylist(), failed["error"].to_pylist())
        ]
        manifest.add(table.filter(listed(table)))
        if pending is None:  # else settle's, once the outputs are where they stay
            outputs += made["output_path"].chunks
        if spec.frames is not None:
            videos_made.update(made["video"].to_pylist())
        placed = pa.concat_tables(t.select(["source_path", "split"]) for t in (made, skipped))
        images = placed.group_by(["source_path", "split"]).aggregate([]).column("split")
        for split in images.to_pylist():
            per_split[split].images += 1
        for split in made["split"].to_pylist():
            per_split[split].outputs += 1
        if spec.boxes is not None:
            boxfiles.count_boxes(per_split, made, skipped)
        if coco_files is not None:
            columns = ["output_path", "split", "width", "height", "boxes"]
            coco_files.add(made.select(columns).to_pylist())
        done = len(images) + failed.num_rows
        counts.images_failed += failed.num_rows
        counts.images_done += done
        counts.outputs += made.num_rows
        nbytes = pc.sum(made["bytes"]).as_py() or 0
        telemetry.block(done, failed.num_rows, made.num_rows, nbytes, counts)
        if on_progress:
            on_progress(counts.model_copy())
        if pending is not None:
            pending.collect(table)
    mark("last_result")
    data = manifest.finish()
    if pending is not None:  # outputs moved where the merged groups' split puts them
        failed_keys = {failure.source_path for failure in failures}
        data, per_split, outputs = pending.settle(spec.job_dir, data, failed_keys)
        mark("settled")
    spec.job_dir.write(MANIFEST_FILE, data)
    mark("manifest")
    if boxes is not None:
        for item in items:
            found = item.boxes
            per_split[item.split].boxes = per_split[item.split].boxes or BoxCounts()
            per_split[item.split].boxes.source += len(found.category) if found else 0
        files = files + boxfiles.write_box_files(spec, coco_files, per_split)
    counts.splits = dict(sorted((s, c) for s, c in per_split.items() if c.images))
    if spec.frames is not None:  # frames are known once decoded; the budget counts videos
        merged = one_failure_per_changed_video(failures)
        counts.images_failed -= len(failures) - len(merged)
        failures = merged
        counts.images_total = counts.images_done
        failed = {video_of(failure.source_path) for failure in failures}
        counts.videos_failed = len(failed - videos_made)
    outputs = pa.chunked_array(outputs, pa.string())
    return counts, sorted(failures, key=lambda f: f.source_path), outputs, files


def _until_ended(
    tables: Iterator[pa.Table], should_stop: Callable[[], bool], deadline: float, spec: JobSpec
) -> Iterator[pa.Table]:
    """The result tables, until the job is stopped or past its deadline (leaving the loop
    shuts Ray Data's tasks down). A task that saw the job end first (worker.JobEnded) fails
    with it: then the stop or the time limit is what ended the job, not that task."""

    def check() -> None:
        if should_stop():
            raise JobStopped(spec.job_dir.uri)
        if time.time() > deadline:
            raise JobTimeout("still running past limits.job_timeout_s")

    results = iter(tables)
    while True:
        try:
            table = next(results)
        except StopIteration:
            return
        except Exception:
            check()
            raise
        check()
        yield table


def _timings(
    started: float, listed: float | None = None, marks: dict[str, float] | None = None
) -> Timings:
    finished = time.time()
    return Timings(
        started_at=_iso(started),
        finished_at=_iso(finished),
        duration_s=round(finished - started, 3),
        listing_s=None if listed is None else round(listed - started, 3),
        marks_s=marks or {},
    )


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


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
