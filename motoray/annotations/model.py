"""What a source's annotations are once read: categories, each image's boxes as its file
gives them, and what the reader did with imperfect entries. Small and picklable: an image's
boxes travel with it to the workers."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    # COCO's iscrowd per box: a region of many objects, not one; () when none is
    crowd: tuple[bool, ...] = ()

    def to_json(self) -> str:
        fields = [self.category, self.xywh, self.normalised, self.size, self.origin, self.crowd]
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> ImageBoxes:
        category, xywh, normalised, size, origin, crowd = json.loads(text)
        return cls(
            tuple(category),
            tuple(tuple(b) for b in xywh),
            normalised,
            None if size is None else tuple(size),
            origin,
            tuple(crowd),
        )

    def crowd_flags(self) -> np.ndarray:
        """One bool per box: whether it is a crowd region."""
        return np.array(self.crowd or [False] * len(self.category), bool)

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
class Mended:
    """An entry the reader clipped or skipped (annotations.on_error: clip or skip)."""

    file: str  # "annotations.json", "labels/a.txt"
    entry: str  # "annotations[17]", "images[3]", "line 2"
    action: str  # "clipped" | "skipped"
    reason: str


@dataclass
class Triage:
    """A reader's imperfect entries, dealt with as `annotations.on_error` says. "fail": each
    is a problem (the job fails, naming the first); "clip": a box past the image's edge is
    clipped to it (skipped if nothing is left), anything else is skipped; "skip": every one
    is skipped. Each clipped or skipped entry is recorded."""

    on_error: str
    problems: list[str] = field(default_factory=list)  # "entry: reason", for the error
    mended: list[Mended] = field(default_factory=list)
    polygons: int = 0  # boxes taken from a polygon's bounds

    @property
    def lenient(self) -> bool:
        """Whether the job goes on past a bad entry (and a polygon may stand for a box)."""
        return self.on_error != "fail"

    def bad(self, file: str, entry: str, reason: str) -> None:
        """An entry that cannot be used."""
        if self.lenient:
            self.mended.append(Mended(file, entry, "skipped", reason))
        else:
            self.problems.append(f"{entry}: {reason}")

    def outside(
        self,
        file: str,
        entry: str,
        reason: str,
        corners: tuple[float, float, float, float],
        size: tuple[float, float],
    ) -> tuple[float, float, float, float] | None:
        """A box (x0, y0, x1, y1) past the edge of an image of `size`: clipped to it under
        "clip" (None: nothing left inside), else bad."""
        if self.on_error != "clip":
            self.bad(file, entry, reason)
            return None
        width, height = size
        x0, y0, x1, y1 = corners
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        if x1 <= x0 or y1 <= y0:
            self.mended.append(Mended(file, entry, "skipped", f"{reason}: no area inside it"))
            return None
        self.mended.append(Mended(file, entry, "clipped", reason))
        return x0, y0, x1, y1


def clipped(text: str, most: int = 80) -> str:
    """Text of a user's file in a message, clipped: an entry or a line may hold anything."""
    return text if len(text) <= most else f"{text[: most - 3]}..."


def polygon_bounds(values: Sequence[float]) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of a flat polygon [x1, y1, x2, y2, ...] of at least 3 points."""
    if len(values) < 6 or len(values) % 2:
        return None
    xs, ys = values[0::2], values[1::2]
    return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class SourceAnnotations:
    """Everything a source's annotations say."""

    format: str  # "coco" | "yolo"
    categories: tuple[Category, ...]
    boxes: dict[str, ImageBoxes] = field(default_factory=dict)  # by image key: the listed ones
    # Images the annotations fail (an images[] entry whose file is gone or that was skipped,
    # a label file that cannot be read), each with its reason: recorded failures of the job.
    failed: dict[str, str] = field(default_factory=dict)
    mended: tuple[Mended, ...] = ()  # entries clipped or skipped
    polygons: int = 0  # boxes taken from a polygon's bounds
    unlisted: tuple[str, ...] = ()  # images of the listing the annotations do not list
    unlisted_action: str = "negative"  # what they are: "skip" (left out) or "negative"
    on_error: str = "fail"

    def usable(self, keys: Sequence[str]) -> list[str]:
        """The images a job processes: the listing without those the annotations failed,
        and without the unlisted ones under `unlisted: skip`."""
        left_out = self.failed.keys() | (
            set(self.unlisted) if self.unlisted_action == "skip" else set()
        )
        return [key for key in keys if key not in left_out]

    def report(self) -> dict:
        """job.json's `annotations`: the settings, what was done, each entry mended."""
        actions = [m.action for m in self.mended]
        return {
            "unlisted": self.unlisted_action,
            "on_error": self.on_error,
            "unlisted_images": list(self.unlisted),
            "clipped": actions.count("clipped"),
            "skipped": actions.count("skipped"),
            "from_polygons": self.polygons,
            "entries": [m.__dict__ for m in self.mended],
        }

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
