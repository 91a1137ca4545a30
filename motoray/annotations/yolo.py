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
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from motoray.annotations.model import (
    EDGE_TOLERANCE_FRACTION,
    AnnotationError,
    Category,
    ImageBoxes,
    SourceAnnotations,
    Triage,
    clipped,
    polygon_bounds,
    problems_message,
)
from motoray.storage import Refused, Storage

LABEL_EXTENSION = ".txt"
_OUTPUT_EXTENSION = r"\.[^.]*$"  # an output image's, replaced by LABEL_EXTENSION
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
    storage: Storage,
    keys: Sequence[str],
    classes: Sequence[str],
    max_bytes: int,
    on_error: str = "fail",
) -> SourceAnnotations:
    """Every image's label file, read on a thread pool (their latency overlaps); imperfect
    lines dealt with as `on_error` says (model.Triage). Under clip or skip, an image whose
    label file cannot be read is a failure of the job, not the job's end."""
    labels = set(storage.list((LABEL_EXTENSION,)))
    found = {key: path for key in keys if (path := label_key(key, labels)) is not None}
    with ThreadPoolExecutor(READ_THREADS) as pool:
        texts = dict(zip(found, pool.map(lambda p: _read(storage, p, max_bytes), found.values())))
    triage = Triage(on_error)
    boxes, failed, problems = {}, {}, []
    for key, path in found.items():
        try:
            boxes[key] = parse(texts[key], path, len(classes), triage)
        except AnnotationError as e:
            if triage.lenient:
                failed[key] = str(e)
            else:
                problems.append(str(e))
    if problems:
        more = f" (and {len(problems) - 1} more label files)" if len(problems) > 1 else ""
        raise AnnotationError(problems[0] + more)
    categories = tuple(Category(i + 1, name) for i, name in enumerate(classes))
    return SourceAnnotations(
        "yolo",
        categories,
        boxes,
        failed=failed,
        mended=tuple(triage.mended),
        polygons=triage.polygons,
    )


def _read(storage: Storage, path: str, max_bytes: int) -> bytes | AnnotationError:
    """A label file's bytes; one the storage refuses (a FIFO, too large) is named."""
    try:
        return storage.read(path, max_bytes)
    except Refused as e:
        return AnnotationError(f"{path}: {e}")


def parse(
    data: bytes | AnnotationError, path: str, classes: int, triage: Triage | None = None
) -> ImageBoxes:
    """One label file's boxes. AnnotationError for a file that cannot be read, and (under
    `fail`) for any bad line."""
    triage = triage or Triage("fail")
    if isinstance(data, AnnotationError):
        raise data
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text: {e.reason}") from None
    category, xywh, problems = [], [], len(triage.problems)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = _line(line.split(), classes, path, f"line {number}", triage)
        if parsed is not None:
            category.append(parsed[0])
            xywh.append(parsed[1])
    if len(triage.problems) > problems:
        raise AnnotationError(problems_message(path, triage.problems[problems:]))
    return ImageBoxes(tuple(category), tuple(xywh), normalised=True, size=None, origin=path)


def _line(values: list[str], classes: int, path: str, where: str, triage: Triage):
    """(class, (x, y, w, h) as fractions), or None for a line dealt with by `triage`. Under
    clip or skip, a polygon line (`class x1 y1 x2 y2 ...`, Ultralytics' segments) gives its
    bounds."""
    polygon = len(values) >= 7 and len(values) % 2 == 1 and triage.lenient
    if len(values) != 5 and not polygon:
        return triage.bad(path, where, f"{len(values)} values, a box is 5: class cx cy w h")
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return triage.bad(path, where, f"not a number in {clipped(' '.join(values))!r}")
    if not all(math.isfinite(v) for v in numbers):
        return triage.bad(path, where, "not a finite number")
    number = numbers[0]
    if number != int(number) or not 0 <= number < classes:
        return triage.bad(path, where, f"unknown class {values[0]} (classes: 0 to {classes - 1})")
    if polygon:
        triage.polygons += 1
        x0, y0, x1, y1 = polygon_bounds(numbers[1:])
        w, h = x1 - x0, y1 - y0
    else:
        cx, cy, w, h = numbers[1:]
        if w < 0 or h < 0:
            return triage.bad(path, where, f"negative size (w {values[3]}, h {values[4]})")
        x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    tolerance = EDGE_TOLERANCE_FRACTION
    if min(x0, y0) < -tolerance or max(x1, y1) > 1 + tolerance:
        shown = clipped(" ".join(values[1:])) if not polygon else "a polygon"
        reason = f"box outside the image ({shown}, normalised)"
        if (inside := triage.outside(path, where, reason, (x0, y0, x1, y1), (1, 1))) is None:
            return None
        x0, y0, x1, y1 = inside
        w, h = x1 - x0, y1 - y0
    return int(number), (x0, y0, w, h)


# --- writing ---------------------------------------------------------------------------------


def label_file(output_path: str) -> str:
    """`train/a.1f2e.0-crop-0.jpg` -> `train/a.1f2e.0-crop-0.txt`: beside the image."""
    return re.sub(_OUTPUT_EXTENSION, LABEL_EXTENSION, output_path)


def label_files(output_paths: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`label_file` of every path, in Arrow (a large job's outputs, no Python string each)."""
    return pc.replace_substring_regex(output_paths, _OUTPUT_EXTENSION, LABEL_EXTENSION)


def label_text(boxes: list[dict], class_of: dict[str, int], width: int, height: int) -> bytes:
    """One `class cx cy w h` line per box, normalised to the output's size, 6 decimals. A
    crowd region is left out: YOLO has no crowd flag, and as a box it would teach a detector
    that a crowd is one object (data.yaml says how many were left out)."""
    lines = []
    for box in boxes:
        if box.get("iscrowd"):
            continue
        x, y, w, h = box["bbox"]
        cx, cy = (x + w / 2) / width, (y + h / 2) / height
        number = class_of[box["category"]]
        lines.append(f"{number} {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}")
    return "".join(f"{line}\n" for line in lines).encode()


def data_yaml(splits: Sequence[str], names: Sequence[str], crowd: int = 0) -> bytes:
    """Ultralytics' dataset file. No `path`: Ultralytics then takes the folder of this file,
    so the job folder can be moved or downloaded as it is. `crowd`: crowd regions left out
    of the labels, said in a comment."""
    document: dict = {}
    for split in sorted(splits, key=list(ULTRALYTICS_SPLITS).index):
        document.setdefault(ULTRALYTICS_SPLITS[split], split)
    if "val" not in document:  # Ultralytics needs one; validate on test, else on train
        document["val"] = document.get("test", document.get("train"))
    document["names"] = dict(enumerate(names))
    header = "# motoray: the job's splits and classes, for `yolo train data=data.yaml`\n"
    if crowd:
        header += (
            f"# {crowd} crowd regions (COCO iscrowd: 1) are left out of the labels: YOLO has "
            "no crowd flag\n"
        )
    return (header + yaml.safe_dump(document, sort_keys=False)).encode()
