"""What a source's annotations are once read: categories, and each image's boxes as its
file gives them. Small and picklable: an image's boxes travel with it to the workers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

# How far a box may pass the image's edge and still be taken (then clipped): annotation
# tools round, and a box ending at 1280.4 on a 1280-pixel image is not an error.
EDGE_TOLERANCE_PX = 1.0
EDGE_TOLERANCE_FRACTION = 1e-3  # YOLO's normalised coordinates


class AnnotationError(ValueError):
    """Annotations that cannot be used; the message names the file, and the line or entry."""


@dataclass(frozen=True)
class Category:
    id: int  # COCO's category_id (a YOLO source's class i is i + 1: 0 is torchvision's background)
    name: str


@dataclass(frozen=True)
class ImageBoxes:
    """One image's boxes, as its annotation file gives them."""

    category: tuple[int, ...]  # index into the source's categories
    xywh: tuple[tuple[float, float, float, float], ...]  # x, y, width, height
    normalised: bool  # YOLO: fractions of the image's width and height; COCO: pixels
    size: tuple[int, int] | None  # COCO: the (width, height) the file declares
    origin: str  # named in errors: "annotations.json images[3]", "labels/a.txt"

    def to_json(self) -> str:
        return json.dumps([self.category, self.xywh, self.normalised, self.size, self.origin])

    @classmethod
    def from_json(cls, text: str) -> ImageBoxes:
        category, xywh, normalised, size, origin = json.loads(text)
        return cls(
            tuple(category),
            tuple(tuple(b) for b in xywh),
            normalised,
            None if size is None else tuple(size),
            origin,
        )

    def corners(self, width: int, height: int) -> np.ndarray:
        """M x 4 corners (x0, y0, x1, y1) in the pixels of the image as decoded (upright,
        full size), clipped to it. AnnotationError if the file declares another size."""
        if self.size is not None and self.size != (width, height):
            raise AnnotationError(
                f"{self.origin}: declares {self.size[0]}x{self.size[1]}, the image is "
                f"{width}x{height} (width x height, EXIF orientation applied)"
            )
        xywh = np.array(self.xywh, np.float64).reshape(-1, 4)
        if self.normalised:
            xywh = xywh * [width, height, width, height]
        corners = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return np.clip(corners, 0, [width, height, width, height])


@dataclass(frozen=True)
class SourceAnnotations:
    """Everything a source's annotations say."""

    format: str  # "coco" | "yolo"
    categories: tuple[Category, ...]
    boxes: dict[str, ImageBoxes] = field(default_factory=dict)  # by image key; absent: none

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    def counts(self, keys) -> dict[str, int]:
        """Boxes per category name over `keys`, every category listed."""
        per = np.zeros(len(self.categories), np.int64)
        for key in keys:
            if (found := self.boxes.get(key)) is not None:
                per += np.bincount(found.category, minlength=len(per))
        return {c.name: int(n) for c, n in zip(self.categories, per)}

    def majority(self, key: str) -> str | None:
        """The most frequent category of an image (ties: the smaller name); None: no boxes."""
        found = self.boxes.get(key)
        if found is None or not found.category:
            return None
        counts = np.bincount(found.category, minlength=len(self.categories))
        best = counts.max()
        return min(self.categories[i].name for i in np.flatnonzero(counts == best))


def problems_message(path: str, problems: list[str]) -> str:
    """One error for a file: its first problem, and how many more there are."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{path}: {problems[0]}{more}"
