"""A request compiled into what every worker needs: small, picklable, no Ray."""

from __future__ import annotations

import math
from dataclasses import dataclass

from motoray.annotations import SourceAnnotations
from motoray.annotations.sanitise import BoxRules
from motoray.config import Config, FrameSampling, LimitsConfig
from motoray.ops import operators_for
from motoray.ops.steps import Step, make_steps
from motoray.spec import RequestBase
from motoray.storage import Storage


@dataclass(frozen=True)
class BoxSpec:
    """A source with annotations: how its boxes are kept, named and written."""

    rules: BoxRules
    names: tuple[str, ...]  # category names, by category index
    formats: tuple[str, ...]  # box files for trainers: "coco", "yolo"

    @property
    def yolo(self) -> bool:
        """Workers write a .txt label beside every output image."""
        return "yolo" in self.formats


@dataclass(frozen=True)
class JobSpec:
    source: Storage
    job_dir: Storage
    size: tuple[int, int] | None  # (width, height)
    steps: tuple[Step, ...]
    original: bool  # also write the resized image itself
    seed: int
    quality: int
    limits: LimitsConfig
    sharded: bool = False  # output.format "webdataset"
    shard_bytes: int = 0  # the size a shard aims at
    boxes: BoxSpec | None = None  # the source has annotations
    frames: FrameSampling | None = None  # a video source: which frames are its images
    hashed: bool = False  # each image's near-duplicate hash in its rows (near_duplicates)
    job_id: str = ""  # a job's (previews have none)
    deadline: float = math.inf  # time.time() past which the job's tasks stop writing

    def bytes_held(self, shape: tuple[int, ...]) -> int:
        """Bytes a decoded image holds while its steps run: itself and the largest step's
        outputs. The worker processes as many images together as `limits.task_bytes` allows."""
        height, width, channels = shape
        outputs = max((step.pixels_held((height, width)) for step in self.steps), default=0)
        return (height * width + outputs) * channels

    def misfit(self, shape: tuple[int, int]) -> str | None:
        """Why an image of this shape cannot go through every step (every stage of a chain)."""
        return next((m for step in self.steps if (m := step.misfit(shape))), None)


def job_spec(
    request: RequestBase,
    config: Config,
    source: Storage,
    job_dir: Storage,
    annotations: SourceAnnotations | None = None,
) -> JobSpec:
    boxes = None
    if annotations is not None:
        options = request.box_options
        boxes = BoxSpec(
            rules=BoxRules(options.min_visibility, options.min_area),
            names=annotations.names,
            formats=request.output.annotation_formats(annotations.format),
        )
    return JobSpec(
        source=source,
        job_dir=job_dir,
        size=request.input_image_size,
        steps=make_steps(request.steps, operators_for(config.operators)),
        original=request.writes_original,
        seed=request.seed,
        quality=request.output.quality,
        limits=config.limits,
        sharded=request.output.format == "webdataset",
        shard_bytes=request.output.shard_size_mb * 2**20,
        boxes=boxes,
        frames=config.sources[request.name].frames,
    )
