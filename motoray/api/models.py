"""What the API answers: response models. A finished job's summary is the documented
job.json's own `Outcome`; everything else is the API's own shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from motoray.jobs.record import Counts, JobStatus, Outcome


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="path of the offending field; [] for the whole body")
    msg: str


class ErrorResponse(BaseModel):
    error: str
    errors: list[ErrorItem] = Field(default_factory=list)


class JobLink(BaseModel):
    job_id: str
    status_url: str


class JobsAccepted(BaseModel):
    jobs: list[JobLink] = Field(description="one job per request of the body, in order")


class Progress(BaseModel):
    images_total: int
    images_done: int
    images_failed: int
    outputs: int = Field(description="output images written so far")

    @classmethod
    def of(cls, counts: Counts) -> Progress:
        return cls.model_validate(counts.model_dump(include=set(cls.model_fields)))


class JobView(BaseModel):
    """A job as GET /data_prep/{job_id} shows it."""

    job_id: str
    state: JobStatus
    source: str
    output: str = Field(description="the job folder: images, manifest.parquet, job.json")
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress | None = Field(None, description="absent until the job has listed images")
    summary: Outcome | None = Field(
        None,
        description="once the job has written job.json: its counts, the first failed images "
        "(all are in job.json) and timings",
    )
    error: str | None = None
    resumed: int = Field(0, description="runs of the job cut short (a runner or service that "
                         "stopped) after which it was resumed")  # fmt: skip


class JobLogs(BaseModel):
    job_id: str
    lines: list[dict[str, Any]] = Field(
        description="the job's log lines, every run's, as JSON objects: time, level, message, "
        "stage, job_id, source and the stage's own fields"
    )


class DataSource(BaseModel):
    name: str
    uri: str
    description: str


class DataSources(BaseModel):
    sources: list[DataSource]


class OperatorInfo(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON schema of the operator's parameters")


class Operators(BaseModel):
    operators: list[OperatorInfo]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
