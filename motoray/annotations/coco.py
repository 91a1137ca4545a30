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
from typing import Any

from motoray.annotations.model import (
    EDGE_TOLERANCE_PX,
    AnnotationError,
    Category,
    ImageBoxes,
    SourceAnnotations,
    problems_message,
)
from motoray.storage import Storage

FOLDER = "annotations"  # in the job folder: annotations/<split>.json
# No real image's side or coordinate: a bigger int would not even convert to a float.
_BIG = 2**31


def split_file(split: str) -> str:
    return f"{FOLDER}/{split}.json"


def read(storage: Storage, path: str, keys: Sequence[str], max_bytes: int) -> SourceAnnotations:
    """The COCO file at `path` below the source root, checked against the listing `keys`."""
    try:
        data = storage.read(path, max_bytes)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: not found in the source {storage.uri}") from None
    return parse(data, path, set(keys))


def parse(data: bytes, path: str, keys: set[str]) -> SourceAnnotations:
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
    problems: list[str] = []
    lists = {}
    for name in ("images", "annotations", "categories"):
        value = document.get(name, [] if name == "annotations" else None)
        if not isinstance(value, list):
            problems.append(f'"{name}" must be a list')
        lists[name] = value if isinstance(value, list) else []
    categories, category_index = _categories(lists["categories"], problems)
    images = _images(lists["images"], keys, problems)
    found: dict[int, tuple[list[int], list[tuple[float, float, float, float]]]] = {
        image_id: ([], []) for image_id in images
    }
    for index, entry in enumerate(lists["annotations"]):
        where = f"annotations[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        image_id, category_id = entry.get("image_id"), entry.get("category_id")
        if image_id not in images:
            problems.append(f"{where}: image_id {image_id!r} is not in images")
            continue
        if category_id not in category_index:
            problems.append(f"{where}: unknown category_id {category_id!r}")
            continue
        _, width, height = images[image_id]
        box = _box(entry.get("bbox"), width, height, where, problems)
        if box is not None:
            found[image_id][0].append(category_index[category_id])
            found[image_id][1].append(box)
    if problems:
        raise AnnotationError(problems_message(path, problems))
    boxes = {
        key: ImageBoxes(
            tuple(found[image_id][0]),
            tuple(found[image_id][1]),
            normalised=False,
            size=(width, height),
            origin=f"{path} {key}",
        )
        for image_id, (key, width, height) in images.items()
    }
    return SourceAnnotations("coco", categories, boxes)


def _categories(entries: list, problems: list[str]) -> tuple[tuple[Category, ...], dict]:
    categories, seen_names = [], set()
    for index, entry in enumerate(entries):
        where = f"categories[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        category_id, name = entry.get("id"), entry.get("name")
        if not _is_int(category_id) or not isinstance(name, str) or not name:
            problems.append(f"{where}: needs an integer id and a name")
        elif any(c.id == category_id for c in categories) or name in seen_names:
            problems.append(f"{where}: id {category_id} or name {name!r} is used twice")
        else:
            categories.append(Category(category_id, name))
            seen_names.add(name)
    categories.sort(key=lambda c: c.id)
    return tuple(categories), {c.id: i for i, c in enumerate(categories)}


def _images(entries: list, keys: set[str], problems: list[str]) -> dict[int, tuple[str, int, int]]:
    """image id -> (source key, width, height)."""
    images: dict[int, tuple[str, int, int]] = {}
    named: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"images[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        image_id, name = entry.get("id"), entry.get("file_name")
        width, height = entry.get("width"), entry.get("height")
        if not _is_int(image_id) or not isinstance(name, str):
            problems.append(f"{where}: needs an integer id and a file_name")
        elif not (_is_int(width) and _is_int(height) and 0 < width < _BIG and 0 < height < _BIG):
            problems.append(f"{where}: needs a positive integer width and height")
        elif image_id in images or _key(name) in named:
            problems.append(f"{where}: id {image_id} or file_name {name!r} is used twice")
        elif _key(name) not in keys:
            problems.append(f"{where}: file_name {name!r} is not an image of the source")
        else:
            images[image_id] = (_key(name), width, height)
            named.add(_key(name))
    return images


def _box(bbox: Any, width: int, height: int, where: str, problems: list[str]):
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        and all(-_BIG < v < _BIG for v in bbox)  # False for NaN and infinities too
    ):
        problems.append(f"{where}: bbox must be 4 finite numbers [x, y, width, height]")
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        problems.append(f"{where}: bbox {bbox} has a negative size")
        return None
    tolerance = EDGE_TOLERANCE_PX
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        problems.append(f"{where}: bbox {bbox} is outside its image ({width}x{height})")
        return None
    return (x, y, w, h)


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
                        "iscrowd": 0,
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
