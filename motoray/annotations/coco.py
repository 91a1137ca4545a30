"""COCO detection files: read a source's, write one per split.

In: one JSON file for the whole source (`images`, `annotations`, `categories`); an image is
matched by its `file_name`, relative to the source root. Every problem is reported with the
file and the entry (`annotations[17]`): broken JSON (line and column), a box outside its
image or of negative size, an unknown category or image id, an image the source lacks.

Out: `annotations/<split>.json`, built from the manifest's rows in manifest order, so ids
(images and annotations numbered from 1 in that order) are the same on every rerun.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from motoray.annotations.model import (
    EDGE_TOLERANCE_PX,
    AnnotationError,
    Category,
    ImageBoxes,
    SourceAnnotations,
    Triage,
    clipped,
    polygon_bounds,
    problems_message,
)
from motoray.storage import Storage

FOLDER = "annotations"  # in the job folder: annotations/<split>.json
# No real image's side or coordinate: a bigger int would not even convert to a float.
_BIG = 2**31
_MAX_KEY = 1024  # a file_name longer than any storage's key is no file gone, only a bad entry


def split_file(split: str) -> str:
    return f"{FOLDER}/{split}.json"


def read(
    storage: Storage, path: str, keys: Sequence[str], max_bytes: int, on_error: str = "fail"
) -> SourceAnnotations:
    """The COCO file at `path` below the source root, checked against the listing `keys`."""
    try:
        data = storage.read(path, max_bytes)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: not found in the source {storage.uri}") from None
    return parse(data, path, set(keys), on_error)


def parse(data: bytes, path: str, keys: set[str], on_error: str = "fail") -> SourceAnnotations:
    """The file's boxes, its imperfect entries dealt with as `on_error` says (model.Triage).
    What is wrong with the file as a whole (broken JSON, no lists) always fails the job."""
    try:
        document = json.loads(data)
    except json.JSONDecodeError as e:
        raise AnnotationError(
            f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text: {e.reason}") from None
    except RecursionError:
        raise AnnotationError(f"{path}: nested too deeply to be a COCO file") from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise AnnotationError(f"{path}: a COCO file is a JSON object, got {kind}")
    lists, not_lists = {}, []
    for name in ("images", "annotations", "categories"):
        value = document.get(name, [] if name == "annotations" else None)
        if not isinstance(value, list):
            not_lists.append(f'"{name}" must be a list')
        lists[name] = value if isinstance(value, list) else []
    if not_lists:
        raise AnnotationError(problems_message(path, not_lists))
    triage = Triage(on_error)
    categories, category_index = _categories(lists["categories"], path, triage)
    listed = _images(lists["images"], keys, path, triage)
    images = listed.taken
    found: dict[int, list[tuple[int, tuple[float, float, float, float], bool]]] = {
        image_id: [] for image_id in images
    }
    for index, entry in enumerate(lists["annotations"]):
        where = f"annotations[{index}]"
        if not isinstance(entry, dict):
            triage.bad(path, where, "not an object")
            continue
        image_id, category_id = entry.get("image_id"), entry.get("category_id")
        if not _is_int(image_id) or image_id not in images:
            if (unknown := listed.unknown(image_id)) is not None:  # None: a failed image's
                triage.bad(path, where, unknown)
            continue
        if not _is_int(category_id) or category_id not in category_index:
            triage.bad(path, where, f"unknown category_id {_shown(category_id)}")
            continue
        crowd = entry.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float):
            triage.bad(path, where, f"iscrowd must be 0 or 1, got {_shown(crowd)}")
            continue
        _, width, height = images[image_id]
        box = _box(entry, width, height, path, where, triage)
        if box is not None:
            found[image_id].append((category_index[category_id], box, bool(crowd)))
    if triage.problems:
        raise AnnotationError(problems_message(path, triage.problems))
    boxes = {
        key: ImageBoxes(
            tuple(category for category, _, _ in found[image_id]),
            tuple(box for _, box, _ in found[image_id]),
            normalised=False,
            size=(width, height),
            origin=f"{path} {key}",
            crowd=_crowd_flags(found[image_id]),
        )
        for image_id, (key, width, height) in images.items()
    }
    return SourceAnnotations(
        "coco",
        categories,
        boxes,
        failed=listed.failed,
        mended=tuple(triage.mended),
        polygons=triage.polygons,
    )


def _crowd_flags(found: list[tuple[int, tuple, bool]]) -> tuple[bool, ...]:
    """ImageBoxes.crowd: one flag per box, or () when none is a crowd region."""
    flags = tuple(crowd for _, _, crowd in found)
    return flags if any(flags) else ()


def _categories(
    entries: list, path: str, triage: Triage
) -> tuple[tuple[Category, ...], dict[int, int]]:
    categories, seen_names = [], set()
    for index, entry in enumerate(entries):
        where = f"categories[{index}]"
        if not isinstance(entry, dict):
            triage.bad(path, where, "not an object")
            continue
        category_id, name = entry.get("id"), entry.get("name")
        if not _is_int(category_id) or not isinstance(name, str) or not name:
            triage.bad(path, where, "needs an integer id and a name")
        elif any(c.id == category_id for c in categories) or name in seen_names:
            triage.bad(path, where, f"id {category_id} or name {_shown(name)} is used twice")
        else:
            categories.append(Category(category_id, name))
            seen_names.add(name)
    categories.sort(key=lambda c: c.id)
    return tuple(categories), {c.id: i for i, c in enumerate(categories)}


@dataclass
class _Images:
    """The images[] entries: those taken, by id (source key, width, height); under clip or
    skip, the images they fail (by key, the reason: recorded failures of the job), the ids
    of files gone (their annotations go with them) and of entries skipped."""

    taken: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    skipped: dict[int, str] = field(default_factory=dict)  # id -> "images[3]"

    def unknown(self, image_id: Any) -> str | None:
        """Why an annotation's image_id takes no image; None when its image is a failure."""
        if _is_int(image_id) and image_id in self.gone:
            return None
        if _is_int(image_id) and image_id in self.skipped:
            return f"image_id {image_id}: its entry {self.skipped[image_id]} was skipped"
        return f"image_id {_shown(image_id)} is not in images"


def _images(entries: list, keys: set[str], path: str, triage: Triage) -> _Images:
    """The first entry of an id or a file_name is taken, a later one is bad. Under clip or
    skip, an image whose file is gone, or whose only entry is bad, is a failure."""
    images = _Images()
    named: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"images[{index}]"
        if not isinstance(entry, dict):
            triage.bad(path, where, "not an object")
            continue
        image_id, name = entry.get("id"), entry.get("file_name")
        width, height = entry.get("width"), entry.get("height")
        key = _key(name) if isinstance(name, str) else None
        if not _is_int(image_id) or key is None:
            problem = "needs an integer id and a file_name"
        elif not (_is_int(width) and _is_int(height) and 0 < width < _BIG and 0 < height < _BIG):
            problem = "needs a positive integer width and height"
        elif image_id in images.taken or key in named:
            problem = f"id {image_id} or file_name {_shown(name)} is used twice"
        elif key not in keys and triage.lenient and len(key) <= _MAX_KEY:  # gone: a failure
            images.failed[key] = f"{path} {where} lists it; it is not in the source"
            images.gone.add(image_id)
            continue
        elif key not in keys:
            problem = f"file_name {_shown(name)} is not an image of the source"
        else:
            images.taken[image_id] = (key, width, height)
            named.add(key)
            continue
        triage.bad(path, where, problem)
        if triage.lenient and _is_int(image_id) and image_id not in images.taken:
            images.skipped[image_id] = where
        if triage.lenient and key in keys:
            images.failed.setdefault(key, f"{path} {where} was skipped: {problem}")
    images.failed = {key: reason for key, reason in images.failed.items() if key not in named}
    return images


def _box(entry: dict, width: int, height: int, path: str, where: str, triage: Triage):
    """The entry's box (x, y, w, h); under clip or skip, a segmentation-only entry's box is
    its polygons' bounds."""
    bbox = entry.get("bbox")
    if bbox in (None, []) and triage.lenient and (polygon := _polygon_box(entry)) is not None:
        triage.polygons += 1
        bbox = polygon
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        triage.bad(path, where, "bbox must be 4 finite numbers [x, y, width, height]")
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        triage.bad(path, where, f"bbox {bbox} has a negative size")
        return None
    tolerance = EDGE_TOLERANCE_PX
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        reason = f"bbox {bbox} is outside its image ({width}x{height})"
        inside = triage.outside(path, where, reason, (x, y, x + w, y + h), (width, height))
        if inside is None:
            return None
        x0, y0, x1, y1 = inside
        return (x0, y0, x1 - x0, y1 - y0)
    return (x, y, w, h)


def _polygon_box(entry: dict) -> list[float] | None:
    """[x, y, w, h] around every polygon of the entry's `segmentation` (COCO's list of flat
    [x1, y1, x2, y2, ...] lists); None for none, or for RLE."""
    polygons = entry.get("segmentation")
    if not isinstance(polygons, list) or not polygons:
        return None
    bounds = []
    for polygon in polygons:
        if not (isinstance(polygon, list) and all(_is_number(v) for v in polygon)):
            return None
        if (found := polygon_bounds(polygon)) is None:
            return None
        bounds.append(found)
    x0, y0 = min(b[0] for b in bounds), min(b[1] for b in bounds)
    x1, y1 = max(b[2] for b in bounds), max(b[3] for b in bounds)
    return [x0, y0, x1 - x0, y1 - y0]


def _is_number(value: Any) -> bool:
    """A finite JSON number of a size an image can have (False for NaN and infinities)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and -_BIG < value < _BIG


def _shown(value: Any) -> str:
    return clipped(repr(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key(file_name: str) -> str:
    """A file_name as a source key: `./a/b.jpg` and `a/b.jpg` are the same image."""
    return file_name.removeprefix("./")


# --- writing ---------------------------------------------------------------------------------


class CocoWriter:
    """The per-split COCO files of a job, fed the manifest's rows in manifest order.

    Entries are serialised as they come (the file never exists as Python objects), so the
    driver holds about the size of the files, as it does for the manifest.
    """

    def __init__(self, categories: Sequence[Category]) -> None:
        self._categories = [{"id": c.id, "name": c.name} for c in categories]
        self._id_of = {c.name: c.id for c in categories}
        self._splits: dict[str, _SplitFile] = {}

    def add(self, rows: Iterable[dict]) -> None:
        """Rows with output_path, split, width, height and boxes (the manifest's JSON)."""
        for row in rows:
            split = self._splits.setdefault(row["split"], _SplitFile())
            split.images_seen += 1
            image_id = split.images_seen
            split.images.append(
                {
                    "id": image_id,
                    "file_name": row["output_path"],
                    "width": row["width"],
                    "height": row["height"],
                }
            )
            for box in json.loads(row["boxes"]):
                split.annotations_seen += 1
                _, _, w, h = box["bbox"]
                split.annotations.append(
                    {
                        "id": split.annotations_seen,
                        "image_id": image_id,
                        "category_id": self._id_of[box["category"]],
                        "bbox": box["bbox"],
                        "area": round(w * h, 3),
                        "iscrowd": box.get("iscrowd", 0),
                    }
                )

    def files(self) -> dict[str, bytes]:
        """annotations/<split>.json for every split that has outputs."""
        return {
            split_file(name): split.document(self._categories)
            for name, split in sorted(self._splits.items())
        }


class _SplitFile:
    def __init__(self) -> None:
        self.images = _JsonArray()
        self.annotations = _JsonArray()
        self.images_seen = 0
        self.annotations_seen = 0

    def document(self, categories: list[dict]) -> bytes:
        head = b'{"info": {"description": "motoray"}, "categories": '
        return b"".join(
            [
                head,
                json.dumps(categories).encode(),
                b', "images": ',
                self.images.finish(),
                b', "annotations": ',
                self.annotations.finish(),
                b"}\n",
            ]
        )


class _JsonArray:
    """A JSON array written one element at a time."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._buffer.write(b"[")
        self._empty = True

    def append(self, value: dict) -> None:
        if not self._empty:
            self._buffer.write(b",\n")
        self._buffer.write(json.dumps(value).encode())
        self._empty = False

    def finish(self) -> bytes:
        return self._buffer.getvalue() + b"]"
