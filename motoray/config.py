"""motoray.yaml: data sources, output root, S3, server and operator settings.

Looked up in order: `--config FILE`, `$MOTORAY_CONFIG`, `./motoray.yaml`.
Relative local paths inside the file are relative to the file itself, so the
same config works from any working directory.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

DEFAULT_CONFIG = "motoray.yaml"
TOKEN_ENV = "MOTORAY_API_TOKEN"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class S3Settings(_Strict):
    endpoint_url: str | None = Field(
        None, pattern=r"^https?://", description="an S3-compatible endpoint; absent: AWS"
    )
    region: str | None = Field(None, description="the AWS region; absent: the AWS chain's")
    ca_bundle: str | None = Field(
        None, description="PEM file of the CA of a private HTTPS endpoint, on every node"
    )
    # "" is an error, not "no encryption".
    kms_key_id: str | None = Field(
        None, min_length=1, description="a KMS key: every object written uses SSE-KMS with it"
    )

    def merged(self, override: S3Settings | None) -> S3Settings:
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


class _AnnotationPolicy(_Strict):
    """What a job does with images the annotations do not list, and with imperfect entries."""

    # Never annotated is not annotated empty.
    unlisted: Literal["skip", "negative", "fail"] = Field(
        "skip",
        description="an image the annotations do not list (COCO: not in images[]; YOLO: no"
        " label file): left out of the job (skip), a picture of no object (negative), or the"
        " job fails (fail)",
    )
    on_error: Literal["fail", "clip", "skip"] = Field(
        "fail",
        description="an entry that cannot be used as it is (a box past the edge, a"
        " segmentation without a box, an unknown category, an images[] entry whose file is"
        " gone): the job fails (fail), or it is recorded in job.json and the job goes on,"
        " boxes past the edge clipped (clip) or left out (skip)",
    )


class CocoAnnotations(_AnnotationPolicy):
    """One COCO file for the whole source; images matched by `file_name`."""

    format: Literal["coco"] = Field(description="one COCO file for the whole source")
    path: str = Field(
        "annotations.json", min_length=1, description="its key below the source's uri"
    )


class YoloAnnotations(_AnnotationPolicy):
    """Ultralytics labels: `<stem>.txt` beside each image, or under a `labels/` mirror of
    its `images/` folder; class i of a line is classes[i]."""

    format: Literal["yolo"] = Field(description="Ultralytics label files")
    classes: list[str] = Field(min_length=1, description="class names, in class-number order")

    @model_validator(mode="after")
    def _distinct(self) -> YoloAnnotations:
        # Boxes are matched to categories by name: two classes of one name would be one.
        twice = sorted(name for name, n in Counter(self.classes).items() if n > 1)
        if twice:
            raise ValueError(f"classes must be distinct names: {', '.join(twice)} twice")
        return self


Annotations = Annotated[CocoAnnotations | YoloAnnotations, Field(discriminator="format")]


VIDEO_EXTENSIONS = [".mp4", ".mkv", ".mov", ".ts"]
_MS = 0.001  # times are whole milliseconds: frame keys are `<video>#t=<milliseconds>`


class FrameSampling(_Strict):
    """Which frames of a video source become images: one of every_s, fps, every_n or
    keyframes, optionally between start_s and end_s (seconds from the video's start)."""

    every_s: float | None = Field(
        None,
        ge=_MS,
        allow_inf_nan=False,
        multiple_of=_MS,
        description="a frame every this many seconds: the first shown at or after each target",
    )
    fps: float | None = Field(
        None, gt=0, le=1000, allow_inf_nan=False, description="this many frames a second"
    )
    # On timestamps: a variable frame rate video has no stable frame numbers.
    every_n: PositiveInt | None = Field(
        None, description="every n-th frame of the stream's nominal rate (n / rate seconds)"
    )
    keyframes: Literal[True] | None = Field(
        None, description="every keyframe (the others are not decoded)"
    )
    start_s: float = Field(
        0,
        ge=0,
        allow_inf_nan=False,
        multiple_of=_MS,
        description="first target, seconds from the video's start",
    )
    end_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        multiple_of=_MS,
        description="no target from here on, seconds from the video's start",
    )
    range_s: float = Field(
        60,
        ge=0.1,
        allow_inf_nan=False,
        multiple_of=_MS,
        description="seconds of video one task decodes: how work is cut, never an output byte",
    )
    deinterlace: Literal["auto", "off", "always"] = Field(
        "auto",
        description="interlaced frames through FFmpeg's bwdif: those the decoder flags, or all"
        " of a stream whose field order says interlaced (auto); every frame (always); none (off)",
    )
    square_pixels: bool = Field(
        True,
        description="non-square pixels resampled to the display width, as players show them;"
        " false: kept as coded, the ratio in the manifest's display",
    )
    stream: NonNegativeInt | None = Field(
        None,
        description="the container's stream index to decode; default: the one ffmpeg picks"
        " (the largest picture, a default-disposition stream first)",
    )

    @model_validator(mode="after")
    def _one_rule(self) -> FrameSampling:
        rules = [r for r in ("every_s", "fps", "every_n", "keyframes") if getattr(self, r)]
        if len(rules) != 1:
            raise ValueError(
                "frames takes exactly one of every_s, fps, every_n or keyframes, got "
                + (", ".join(rules) or "none")
            )
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s:g}) must be after start_s ({self.start_s:g})")
        return self


class SourceConfig(_Strict):
    uri: str = Field(description="a folder (relative to this file) or s3://bucket/prefix")
    extensions: list[str] = Field(
        default_factory=lambda: [".jpg", ".jpeg", ".png"],
        description="files listed, case-insensitive (video: .mp4 .mkv .mov .ts)",
    )
    s3: S3Settings | None = Field(None, description="this source's override of the top `s3:`")
    labels: Literal["folder"] | None = Field(
        None, description="folder: an image's class is its top-level folder"
    )
    annotations: Annotations | None = Field(
        None, description="bounding boxes that follow the pixels: coco or yolo"
    )
    description: str = Field("", description="shown by `motoray sources` and /data_sources")
    kind: Literal["images", "video", "manifest"] = Field(
        "images",
        description="video: the files are videos, their sampled frames the images; manifest:"
        " images whose keys a file lists (`manifest:`), for a source too large to list",
    )
    manifest: str | None = Field(
        None,
        description="kind manifest: a Parquet or CSV file of keys (a `key` column), or an S3"
        " Inventory report's manifest.json; a path (relative to this file) or s3:// URI",
    )
    frames: FrameSampling | None = Field(None, description="video: which frames become images")

    @model_validator(mode="after")
    def _video_settings(self) -> SourceConfig:
        if self.kind != "video" and self.frames is not None:
            raise ValueError("frames is for `kind: video` sources")
        if (self.kind == "manifest") != (self.manifest is not None):
            raise ValueError("a `kind: manifest` source names its key file in `manifest:`")
        if self.kind == "video":
            if self.annotations is not None:  # boxes are matched to image files, not frames
                raise ValueError("annotations are for `kind: images` sources")
            if self.frames is None:
                raise ValueError("a video source needs frames, e.g. frames: {every_s: 0.5}")
            if "extensions" not in self.model_fields_set:
                self.extensions = list(VIDEO_EXTENSIONS)
        return self


class OutputConfig(_Strict):
    uri: str = Field("./outputs", description="the output root (a folder or s3://bucket/prefix)")
    s3: S3Settings | None = Field(None, description="the output's override of the top `s3:`")


class TLSConfig(_Strict):
    certfile: str = Field(description="PEM certificate (chain), relative to this file")
    keyfile: str = Field(description="its PEM private key")


class ServerConfig(_Strict):
    host: str = Field("127.0.0.1", description="address the API listens on")
    port: int = Field(5000, ge=1, le=65535, description="its port")
    auth_token: str | None = Field(
        None, description="the API's bearer token; $MOTORAY_API_TOKEN wins"
    )
    tls: TLSConfig | None = Field(None, description="serve HTTPS on the same port")
    # More jobs than CPUs starve the API on a small head.
    max_pending_jobs: PositiveInt = Field(
        4, description="queued and running jobs; more: 429 with Retry-After"
    )


class LimitsConfig(_Strict):
    """What one request or file may cost. Request budgets are checked before any pixel is
    read: at POST (422 naming the field) or, where the listing is needed, at job start."""

    max_image_pixels: PositiveInt = Field(
        50_000_000, description="a source image (or video frame) larger: a recorded failure"
    )
    max_file_bytes: PositiveInt = Field(
        64 * 1024 * 1024, description="a source image file larger: a recorded failure"
    )
    max_outputs_per_image: PositiveInt = Field(
        1000, description="every step (and CHAIN) of a request together"
    )
    max_outputs_per_job: PositiveInt = Field(
        50_000_000, description="images x outputs per image, checked at job start"
    )
    max_resize_side: PositiveInt = Field(8192, description="input_image_size, per side")
    max_resize_pixels: PositiveInt = Field(
        40_000_000, description="input_image_size, width x height"
    )
    task_bytes: PositiveInt = Field(
        512 * 1024 * 1024, description="pixels a task holds at once, in and out"
    )
    preview_max_images: PositiveInt = Field(32, description="images per contact sheet")
    preview_max_outputs: PositiveInt = Field(
        2000, description="images x outputs per image, per contact sheet"
    )
    preview_timeout_s: float = Field(
        8, gt=0, le=600, description="/preview and /plan: seconds, then a 422"
    )
    preview_memory_bytes: PositiveInt = Field(
        1024**3,
        description="/preview and /plan: memory one may add to its Ray worker (reserved and "
        "enforced), then a 422",
    )
    preview_max_running: PositiveInt = Field(
        4, description="/preview and /plan at once per API replica, then a 429"
    )
    job_timeout_s: float = Field(24 * 3600, gt=0, description="a job running longer ends FAILED")
    max_failed_fraction: float = Field(
        0.5, ge=0, le=1, description="more of the images (or videos) failed: the job FAILED"
    )
    max_annotation_bytes: PositiveInt = Field(
        1024**3, description="a source's COCO file, read whole by the job's driver"
    )


class OperatorsConfig(_Strict):
    disabled: list[str] = Field(
        default_factory=list, description="built-in operators turned off (requests: 422)"
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="operator plugins: module paths or `motoray.operators` entry point names",
    )


class LoggingConfig(_Strict):
    """Job log lines (job id, source, stage, counts): where they go and how they look."""

    format: Literal["json", "text", "handler"] = Field(
        "json", description="handler: keep the sink's own formatter (python-logstash's)"
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG: also per-block progress"
    )
    sink: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
        description='"package.module:factory" returning a logging.Handler (watchtower\'s '
        "CloudWatchLogHandler, logging.handlers.SysLogHandler, ...); absent: stderr",
    )
    sink_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the sink's factory"
    )


class Config(_Strict):
    sources: dict[str, SourceConfig] = Field(
        default_factory=dict, description="data sources by name: what a request's name picks"
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="where jobs write")
    s3: S3Settings = Field(
        default_factory=S3Settings, description="defaults for every S3 source and output"
    )
    server: ServerConfig = Field(default_factory=ServerConfig, description="the HTTP API")
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="what one request or file may cost"
    )
    operators: OperatorsConfig = Field(
        default_factory=OperatorsConfig, description="built-ins turned off, plugins added"
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="job log lines")
    path: str | None = Field(None, exclude=True)  # where it was loaded from

    def api_token(self) -> str:
        """The API's bearer token: MOTORAY_API_TOKEN where the service starts, else
        server.auth_token. No token, no service: the API is never open."""
        token = os.environ.get(TOKEN_ENV) or self.server.auth_token
        if not token:
            raise ValueError(f"no API token: set {TOKEN_ENV} (or server.auth_token in the config)")
        return token

    def source_s3(self, name: str) -> S3Settings:
        return self.s3.merged(self.sources[name].s3)

    def output_s3(self) -> S3Settings:
        return self.s3.merged(self.output.s3)

    def annotated_sources(self) -> set[str]:
        """The sources whose images carry bounding boxes."""
        return {name for name, source in self.sources.items() if source.annotations}


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get("MOTORAY_CONFIG") or DEFAULT_CONFIG).expanduser()


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    """Read and validate the config; relative local URIs become absolute."""
    path = config_path(explicit)
    if not path.is_file():
        raise FileNotFoundError(
            f"config file not found: {path} (pass --config FILE or set MOTORAY_CONFIG)"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    config = Config.model_validate(raw)
    base = path.resolve().parent
    for source in config.sources.values():
        source.uri = _absolute(source.uri, base)
        if source.manifest is not None:
            source.manifest = _absolute(source.manifest, base)
    config.output.uri = _absolute(config.output.uri, base)
    for s3 in (config.s3, config.output.s3, *(source.s3 for source in config.sources.values())):
        if s3 is not None and s3.ca_bundle:
            s3.ca_bundle = _absolute(s3.ca_bundle, base)
    config.path = str(path.resolve())
    return config


def _absolute(uri: str, base: Path) -> str:
    if "://" in uri:
        return uri
    return str((base / Path(uri).expanduser()).resolve())
