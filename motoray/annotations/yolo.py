"""YOLO (Ultralytics) labels: read a source's, write one per output plus data.yaml.

In: one `.txt` per image, `class cx cy w h` per line, normalised to the image's size. As
Ultralytics finds them: the last `images/` folder of the image's path replaced by `labels/`
(`images/train/a.jpg` -> `labels/train/a.txt`), else beside the image (`a.jpg` -> `a.txt`).
An image without a label file has no boxes. Problems are reported with file and line.

Out: `<output stem>.txt` beside every output image (empty when it has no box), and
`data.yaml` at the job root naming the split folders and the classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import yaml

from motoray.annotations.model import (
    EDGE_TOLERANCE_FRACTION,
    AnnotationError,
    Category,
    ImageBoxes,
    SourceAnnotations,
    problems_message,
)
from motoray.storage import Refused, Storage

LABEL_EXTENSION = ".txt"
DATA_FILE = "data.yaml"
READ_THREADS = 32  # label files are tiny: reading them is all latency
# Ultralytics' split keys; motoray's split names map onto them.
ULTRALYTICS_SPLITS = {"train": "train", "validation": "val", "test": "test", "all": "train"}


def label_key(image_key: str, labels: set[str]) -> str | None:
    """The label file of an image, Ultralytics' way: a `labels/` mirror of its `images/`
    folder, else beside it; None if neither exists."""
    stem = image_key.rsplit(".", 1)[0]
    path = f"/{stem}"
    if "/images/" in path:
        head, _, tail = path.rpartition("/images/")
        mirrored = f"{head}/labels/{tail}{LABEL_EXTENSION}".removeprefix("/")
        if mirrored in labels:
            return mirrored
    beside = f"{stem}{LABEL_EXTENSION}"
    return beside if beside in labels else None


def read(
    storage: Storage, keys: Sequence[str], classes: Sequence[str], max_bytes: int
) -> SourceAnnotations:
    """Every image's label file, read on a thread pool (their latency overlaps)."""
    labels = set(storage.list((LABEL_EXTENSION,)))
    found = {key: path for key in keys if (path := label_key(key, labels)) is not None}
    with ThreadPoolExecutor(READ_THREADS) as pool:
        texts = dict(zip(found, pool.map(lambda p: _read(storage, p, max_bytes), found.values())))
    boxes, problems = {}, []
    for key, path in found.items():
        try:
            boxes[key] = parse(texts[key], path, len(classes))
        except AnnotationError as e:
            problems.append(str(e))
    if problems:
        more = f" (and {len(problems) - 1} more label files)" if len(problems) > 1 else ""
        raise AnnotationError(problems[0] + more)
    categories = tuple(Category(i + 1, name) for i, name in enumerate(classes))
    return SourceAnnotations("yolo", categories, boxes)


def _read(storage: Storage, path: str, max_bytes: int) -> bytes:
    """A label file's bytes; one the storage refuses (a FIFO, too large) is named."""
    try:
        return storage.read(path, max_bytes)
    except Refused as e:
        raise AnnotationError(f"{path}: {e}") from None


def parse(data: bytes, path: str, classes: int) -> ImageBoxes:
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text: {e.reason}") from None
    category, xywh, problems = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = _line(line.split(), classes)
        if isinstance(parsed, str):
            problems.append(f"line {number}: {parsed}")
        else:
            category.append(parsed[0])
            xywh.append(parsed[1])
    if problems:
        raise AnnotationError(problems_message(path, problems))
    return ImageBoxes(tuple(category), tuple(xywh), normalised=True, size=None, origin=path)


def _line(values: list[str], classes: int):
    """(class, (x, y, w, h) as fractions) or what is wrong with the line."""
    if len(values) != 5:
        return f"{len(values)} values, a box is 5: class cx cy w h"
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return f"not a number in {' '.join(values)!r}"
    if not all(math.isfinite(v) for v in numbers):
        return "not a finite number"
    number, cx, cy, w, h = numbers
    if number != int(number) or not 0 <= number < classes:
        return f"unknown class {values[0]} (classes: 0 to {classes - 1})"
    if w < 0 or h < 0:
        return f"negative size (w {values[3]}, h {values[4]})"
    x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    tolerance = EDGE_TOLERANCE_FRACTION
    if min(x0, y0) < -tolerance or max(x1, y1) > 1 + tolerance:
        return f"box outside the image ({' '.join(values[1:])}, normalised)"
    return int(number), (x0, y0, w, h)


# --- writing ---------------------------------------------------------------------------------


def label_file(output_path: str) -> str:
    """`train/a.1f2e.0-crop-0.jpg` -> `train/a.1f2e.0-crop-0.txt`: beside the image."""
    return output_path.rsplit(".", 1)[0] + LABEL_EXTENSION


def label_text(boxes: list[dict], class_of: dict[str, int], width: int, height: int) -> bytes:
    """One `class cx cy w h` line per box, normalised to the output's size, 6 decimals."""
    lines = []
    for box in boxes:
        x, y, w, h = box["bbox"]
        cx, cy = (x + w / 2) / width, (y + h / 2) / height
        number = class_of[box["category"]]
        lines.append(f"{number} {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}")
    return "".join(f"{line}\n" for line in lines).encode()


def data_yaml(splits: Sequence[str], names: Sequence[str]) -> bytes:
    """Ultralytics' dataset file. No `path`: Ultralytics then takes the folder of this file,
    so the job folder can be moved or downloaded as it is."""
    document: dict = {}
    for split in sorted(splits, key=list(ULTRALYTICS_SPLITS).index):
        document.setdefault(ULTRALYTICS_SPLITS[split], split)
    if "val" not in document:  # Ultralytics needs one; validate on test, else on train
        document["val"] = document.get("test", document.get("train"))
    document["names"] = dict(enumerate(names))
    header = "# motoray: the job's splits and classes, for `yolo train data=data.yaml`\n"
    return (header + yaml.safe_dump(document, sort_keys=False)).encode()
