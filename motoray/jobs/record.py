"""A job as data: what it runs (`JobInputs`) and what it did (`JobRecord`, i.e. job.json).

A request is accepted once: its inputs (the validated request, the config it was validated
against, the job folder, when) are frozen then, written to the job's folder, and carried as
they are to the runner and the driver, which never re-reads motoray.yaml. The driver writes
the record; the board keeps its summary; the API maps it; the CLI and the client print it
with `summary_lines`.
"""

from __future__ import annotations

import json
import time
import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from motoray.config import Config
from motoray.pipeline.layout import job_folder

if TYPE_CHECKING:
    from motoray.spec import RequestBase


class JobStatus(StrEnum):
    """A job's state, as Ray's job manager names them."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    def is_terminal(self) -> bool:
        """An ended job: nothing moves it again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)


class JobInputs(BaseModel):
    """Everything a job runs, frozen when it is accepted: from the POST to the worker."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    request: dict[str, Any] = Field(description="the validated request, as the user set it")
    config: Config = Field(description="the config it was validated against, without secrets")
    output: str = Field(description="the job folder")
    accepted_at: float = Field(description="epoch seconds; its time limit counts from here")

    @property
    def source(self) -> str:
        return self.request["name"]


def new_job_id() -> str:
    """Sortable by start time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def job_ids(count: int, base: str) -> list[str]:
    """The ids of the requests of one body: `base`, or `base-0`, `base-1`, ... for a list."""
    return [base] if count == 1 else [f"{base}-{i}" for i in range(count)]


def accept(requests: list[RequestBase], config: Config, base_id: str) -> list[JobInputs]:
    """Freeze what each request of a body will run. Unset fields stay unset, so the driver
    fills in defaults exactly as it would for the same request sent again."""
    server = config.server.model_copy(update={"auth_token": None})
    snapshot = config.model_copy(update={"server": server})
    now = time.time()
    return [
        JobInputs(
            job_id=job_id,
            request=request.model_dump(mode="json", exclude_unset=True),
            config=snapshot,
            output=job_folder(config, request.name, job_id).uri,
            accepted_at=now,
        )
        for request, job_id in zip(requests, job_ids(len(requests), base_id))
    ]


class _Compact(BaseModel):
    """Counts that apply to some jobs only (boxes, shards, videos) are left out where they
    do not apply, in job.json and over HTTP alike."""

    @model_serializer(mode="wrap")
    def _without_none(self, handler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class BoxCounts(_Compact):
    """A split's boxes (a source with annotations): `source` on its images, `in` to its
    outputs (every output starts with all its image's boxes), of those `kept` and
    `dropped`; and the outputs not made because no window held a whole box."""

    model_config = ConfigDict(populate_by_name=True)

    source: int = 0
    in_: int = Field(0, alias="in")
    kept: int = 0
    dropped: int = 0
    outputs_skipped: int = 0
    # Of `kept`, crowd regions (COCO iscrowd: 1): in the COCO files, not in YOLO labels.
    crowd: int | None = None


class MendedEntry(BaseModel):
    file: str  # "annotations.json", "labels/a.txt"
    entry: str  # "annotations[17]", "images[3]", "line 2"
    action: Literal["clipped", "skipped"]
    reason: str


class AnnotationReport(BaseModel):
    """job.json's `annotations` (a source with annotations): the source's settings, the
    images it does not list, and every entry clipped or skipped."""

    unlisted: Literal["skip", "negative", "fail"]
    on_error: Literal["fail", "clip", "skip"]
    unlisted_images: list[str] = Field(
        default_factory=list, description="left out of the job (skip), or negatives"
    )
    clipped: int = 0
    skipped: int = 0
    from_polygons: int = 0  # boxes taken from a polygon's bounds
    entries: list[MendedEntry] = Field(default_factory=list)


class SplitCounts(_Compact):
    images: int = 0
    outputs: int = 0
    boxes: BoxCounts | None = None  # a source with annotations


class Counts(_Compact):
    """Progress while a job runs; the final counts in job.json."""

    images_total: int = 0
    images_done: int = 0  # failed ones included
    images_failed: int = 0
    outputs: int = 0
    splits: dict[str, SplitCounts] | None = None  # once the job is done
    shards: dict[str, int] | None = None  # webdataset: shards per split
    videos: int | None = None  # a video source: videos listed (its images are their frames)
    videos_failed: int | None = None  # of those, videos with a failure and no frame made


class Failure(BaseModel):
    source_path: str
    reason: str


class Timings(BaseModel):
    started_at: str
    finished_at: str
    duration_s: float
    listing_s: float | None = None
    # Seconds from the start at which each stage ended: listed, placed, first_result,
    # last_result, manifest, checked. Where a job's time went (the bench reads it).
    marks_s: dict[str, float] = Field(default_factory=dict)


class SourceRef(BaseModel):
    name: str
    uri: str


FAILURES_SHOWN = 20  # in a summary (the board's, the API's); job.json has them all


class Outcome(BaseModel):
    """What a finished job did: the part of job.json a summary shows."""

    counts: Counts | None = None
    failures: list[Failure] = Field(default_factory=list)
    timings: Timings | None = None


class JobRecord(Outcome):
    """job.json: written last, create-only; its presence means the job finished."""

    job_id: str
    state: JobStatus
    request: dict[str, Any]
    output: str
    versions: dict[str, str] = Field(default_factory=dict)
    source: SourceRef | None = None
    split: dict[str, Any] | None = None  # split.Assignment.report
    annotations: AnnotationReport | None = None  # a source with annotations
    error: str | None = None
    resumed: int = 0  # how many times a run of it was cut short and it was resumed

    def to_json(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True, by_alias=True)
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"

    def summary(self) -> Outcome:
        """The record as a summary shows it: its first FAILURES_SHOWN failures."""
        shown = self.failures[:FAILURES_SHOWN]
        return Outcome(counts=self.counts, failures=shown, timings=self.timings)

    def summary_lines(self) -> list[str]:
        lines = summary_lines(self.job_id, self.state, self.output, self, self.error, self.resumed)
        report = self.annotations
        if report is not None and (report.unlisted_images or report.entries):
            unlisted = "left out" if report.unlisted == "skip" else "negatives"
            lines.append(
                f"  annotations: {report.clipped} entries clipped, {report.skipped} skipped; "
                f"{len(report.unlisted_images)} images unlisted ({unlisted}); see job.json"
            )
        return lines


def summary_lines(
    job_id: str,
    state: str,
    output: str,
    outcome: Outcome | None,
    error: str | None = None,
    resumed: int = 0,
) -> list[str]:
    """What `motoray run` and `motoray submit --wait` print when a job ends."""
    lines = [f"job {job_id}: {state}", f"  results:  {output}"]
    counts = (outcome and outcome.counts) or Counts()
    for split, c in (counts.splits or {}).items():
        boxes = ""
        if c.boxes is not None:
            boxes = f", boxes {c.boxes.kept} kept / {c.boxes.dropped} dropped"
            if c.boxes.crowd:
                boxes += f" ({c.boxes.crowd} crowd regions, not in YOLO labels)"
            if c.boxes.outputs_skipped:
                boxes += f" ({c.boxes.outputs_skipped} outputs skipped)"
        lines.append(f"  {split:>6}:   {c.images} images -> {c.outputs} outputs{boxes}")
    lines.append(f"  failed:   {counts.images_failed} of {counts.images_total} images")
    if counts.videos is not None:
        lines.append(f"  videos:   {counts.videos_failed} of {counts.videos} gave no frame")
    for failure in (outcome.failures if outcome else [])[:10]:
        lines.append(f"            {failure.source_path}: {failure.reason}")
    if outcome and outcome.timings:
        lines.append(f"  duration: {outcome.timings.duration_s} s")
    if resumed:
        lines.append(f"  resumed:  {resumed} time(s) after its run was cut short")
    if error:
        lines.append(f"  error:    {error}")
    return lines
