"""Bounding boxes: a source's annotations in (COCO, YOLO), a job's annotation files out.

The driver reads and checks a source's annotations before any pixel is read (`load`), and
every image's boxes travel with it to the workers; the operators move them with the pixels
(motoray.ops.boxes); `sanitise` decides which survive an output; coco.py and yolo.py write
what trainers read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from motoray.annotations import coco, yolo
from motoray.annotations.model import (
    AnnotationError,
    Category,
    ImageBoxes,
    Mended,
    SourceAnnotations,
)
from motoray.config import Annotations
from motoray.storage import Storage

__all__ = [
    "AnnotationError",
    "Category",
    "ImageBoxes",
    "Mended",
    "SourceAnnotations",
    "load",
]


def load(
    storage: Storage, keys: Sequence[str], config: Annotations, max_bytes: int, file_bytes: int
) -> SourceAnnotations:
    """A source's annotations, checked against its listing `keys`, as the source's
    `unlisted` and `on_error` say. `max_bytes` bounds a COCO file, `file_bytes` each YOLO
    label file. AnnotationError names the file and the entry."""
    if config.format == "coco":
        found = coco.read(storage, config.path, keys, max_bytes, config.on_error)
        where = f"not in {config.path}"
    else:
        found = yolo.read(storage, keys, config.classes, file_bytes, config.on_error)
        where = "without a label file"
    unlisted = tuple(key for key in keys if key not in found.boxes and key not in found.failed)
    if unlisted and config.unlisted == "fail":
        raise AnnotationError(
            f"{len(unlisted)} images {where} (annotations.unlisted: fail), e.g. {unlisted[0]!r}"
        )
    return replace(
        found, unlisted=unlisted, unlisted_action=config.unlisted, on_error=config.on_error
    )
