"""Reading a source's annotations: COCO and YOLO (both Ultralytics layouts), and a corpus of
bad annotation files, each refused with the file and the line or entry it is wrong at."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from motoray import annotations
from motoray.annotations import AnnotationError
from motoray.config import Config, OutputConfig, SourceConfig
from motoray.imageio import encode_jpeg
from motoray.sample_data import render_frame
from motoray.storage import LocalStorage
from tests.conftest import run_job

COCO = {"format": "coco", "path": "annotations.json"}
YOLO = {"format": "yolo", "classes": ["bike", "rider"]}
LIMIT = 2**20


def _image(path: Path, size=(64, 36)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(render_frame(0, size), quality=80))


def _coco_document(**changes) -> dict:
    document = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 36},
            {"id": 2, "file_name": "sub/b.jpg", "width": 64, "height": 36},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 30, 20]},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [40.5, 0, 23.5, 36]},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 64.4, 10]},  # rounding
        ],
        "categories": [{"id": 9, "name": "rider"}, {"id": 7, "name": "bike"}],
    }
    return document | changes


def _load(root: Path, config: dict, keys=None):
    from pydantic import TypeAdapter

    from motoray.config import Annotations

    declared = TypeAdapter(Annotations).validate_python(config)
    storage = LocalStorage(root)
    keys = storage.list() if keys is None else keys
    return annotations.load(storage, keys, declared, LIMIT, LIMIT)


@pytest.fixture
def coco_source(tmp_path) -> Path:
    for name in ("a.jpg", "sub/b.jpg", "c.jpg"):
        _image(tmp_path / name)
    return tmp_path


def test_coco_boxes_categories_and_images_without_boxes(coco_source):
    (coco_source / "annotations.json").write_text(json.dumps(_coco_document()))
    found = _load(coco_source, COCO)
    assert found.format == "coco"
    assert [(c.id, c.name) for c in found.categories] == [(7, "bike"), (9, "rider")]
    assert set(found.boxes) == {"a.jpg", "sub/b.jpg"}  # c.jpg: in the source, no boxes
    a = found.boxes["a.jpg"]
    assert a.category == (0, 1) and a.size == (64, 36) and not a.normalised
    assert a.corners(64, 36).tolist() == [[1, 2, 31, 22], [40.5, 0, 64, 36]]
    assert found.boxes["sub/b.jpg"].corners(64, 36).tolist() == [[0, 0, 64, 10]]  # clipped
    assert found.counts(["a.jpg", "sub/b.jpg", "c.jpg"]) == {"bike": 2, "rider": 1}
    assert found.majority("a.jpg") == "bike"  # a tie: the smaller name
    assert found.majority("c.jpg") is None
    with pytest.raises(AnnotationError, match="declares 64x36, the image is 32x18"):
        a.corners(32, 18)


def test_yolo_labels_beside_the_image_or_in_a_labels_mirror(tmp_path):
    _image(tmp_path / "images" / "train" / "a.jpg")
    _image(tmp_path / "images" / "train" / "b.jpg")
    _image(tmp_path / "loose" / "c.jpg")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.25 0.5\n\n1 0.1 0.9 0.2 0.2\n"
    )
    (tmp_path / "loose" / "c.txt").write_text("1 0.5 0.5 1 1\n")
    found = _load(tmp_path, YOLO)
    assert set(found.boxes) == {"images/train/a.jpg", "loose/c.jpg"}  # b.jpg: no label file
    assert [(c.id, c.name) for c in found.categories] == [(1, "bike"), (2, "rider")]
    a = found.boxes["images/train/a.jpg"]
    assert a.category == (0, 1) and a.normalised and a.origin == "labels/train/a.txt"
    corners = a.corners(64, 36).ravel().tolist()
    assert corners == pytest.approx([24, 9, 40, 27, 0, 28.8, 12.8, 36])


BAD_COCO = [
    ("broken-json", b'{"images": [\n  {"id": 1,,}\n]}', "invalid JSON at line 2 column 12"),
    (
        "outside",
        {"annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [50, 0, 30, 10]}]},
        "annotations[0]: bbox [50, 0, 30, 10] is outside its image (64x36)",
    ),
    (
        "negative-size",
        {"annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, -2]}]},
        "annotations[0]: bbox [1, 1, 5, -2] has a negative size",
    ),
    (
        "unknown-category",
        {"annotations": [{"id": 1, "image_id": 2, "category_id": 7, "bbox": [0, 0, 4, 4]},
                         {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 2]}]},
        "annotations[1]: unknown category_id 3",
    ),
    (
        "missing-image",
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 36},
                    {"id": 2, "file_name": "gone.jpg", "width": 64, "height": 36}]},
        "images[1]: file_name 'gone.jpg' is not an image of the source",
    ),
    (
        "unknown-image-id",
        {"annotations": [{"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 1, 5, 2]}]},
        "annotations[0]: image_id 5 is not in images",
    ),
    ("not-an-object", b"[1, 2]", "a COCO file is a JSON object, got list"),
    (
        "no-bbox",
        {"annotations": [{"id": 1, "image_id": 1, "category_id": 7}]},
        "annotations[0]: bbox must be 4 finite numbers",
    ),
    # Found by a hostile audit: these failed the job with OverflowError or RecursionError,
    # naming no file, and plan/preview answered 503.
    (
        "huge-bbox-int",
        {"annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10**400, 0, 1, 1]}]},
        "annotations[0]: bbox must be 4 finite numbers",
    ),
    (
        "huge-width",
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 10**400, "height": 36}]},
        "images[0]: needs a positive integer width and height",
    ),
    ("too-deep", b'{"images": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "content", "message"), BAD_COCO, ids=[c[0] for c in BAD_COCO])
def test_bad_coco_files_name_the_file_and_the_entry(coco_source, case, content, message):
    data = content if isinstance(content, bytes) else json.dumps(_coco_document(**content)).encode()
    (coco_source / "annotations.json").write_bytes(data)
    with pytest.raises(AnnotationError) as info:
        _load(coco_source, COCO)
    assert str(info.value).startswith(f"annotations.json: {message}"), str(info.value)


def test_every_problem_is_counted_and_a_missing_file_is_named(coco_source):
    bad = [{"id": i, "image_id": 1, "category_id": 7, "bbox": [0, 0, -1, 1]} for i in range(4)]
    (coco_source / "annotations.json").write_text(json.dumps(_coco_document(annotations=bad)))
    with pytest.raises(AnnotationError, match=r"annotations\[0\]: .* \(and 3 more\)$"):
        _load(coco_source, COCO)
    with pytest.raises(AnnotationError, match=r"^labels\.json: not found in the source"):
        _load(coco_source, {**COCO, "path": "labels.json"})


BAD_YOLO = [
    ("four-numbers", "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n",
     "line 2: 4 values, a box is 5: class cx cy w h"),
    ("outside", "0 0.95 0.5 0.2 0.2\n",
     "line 1: box outside the image (0.95 0.5 0.2 0.2, normalised)"),
    ("negative-size", "\n\n1 0.5 0.5 -0.2 0.2\n", "line 3: negative size (w -0.2, h 0.2)"),
    ("unknown-class", "2 0.5 0.5 0.2 0.2\n", "line 1: unknown class 2 (classes: 0 to 1)"),
    ("fractional-class", "0.5 0.5 0.5 0.2 0.2\n", "line 1: unknown class 0.5"),
    ("not-a-number", "0 0.5 half 0.2 0.2\n", "line 1: not a number in '0 0.5 half 0.2 0.2'"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "message"), BAD_YOLO, ids=[c[0] for c in BAD_YOLO])
def test_bad_yolo_lines_name_the_file_and_the_line(tmp_path, case, text, message):
    _image(tmp_path / "images" / "a.jpg")
    _image(tmp_path / "images" / "b.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "labels" / "b.txt").write_text(text)
    with pytest.raises(AnnotationError) as info:
        _load(tmp_path, YOLO)
    assert str(info.value).startswith(f"labels/b.txt: {message}"), str(info.value)


def test_a_label_file_the_storage_refuses_is_named(tmp_path):
    """A FIFO where a label file should be failed the job without naming it."""
    _image(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    os.mkfifo(tmp_path / "labels" / "a.txt")
    with pytest.raises(AnnotationError) as info:
        _load(tmp_path, YOLO)
    assert str(info.value) == "labels/a.txt: refused: a FIFO, not a regular file"


@pytest.mark.usefixtures("ray_local")
def test_a_job_on_bad_annotations_fails_before_reading_a_pixel(coco_source, tmp_path):
    document = _coco_document()
    document["annotations"][2]["bbox"] = [0, 0, 90, 10]
    (coco_source / "annotations.json").write_text(json.dumps(document))
    config = Config(
        sources={"frames": SourceConfig(uri=str(coco_source), annotations=COCO)},
        output=OutputConfig(uri=str(tmp_path / "out")),
    )
    with pytest.raises(AnnotationError):
        run_job({"name": "frames", "augmentations": [{"FLIP": {}}]}, config, "bad-boxes")
    record = json.loads((tmp_path / "out" / "frames" / "bad-boxes" / "job.json").read_text())
    assert record["state"] == "FAILED"
    assert record["error"] == (
        "AnnotationError: annotations.json: annotations[2]: bbox [0, 0, 90, 10] is outside "
        "its image (64x36)"
    )
    assert "counts" not in record  # no image was processed
    assert sorted(p.name for p in (tmp_path / "out" / "frames" / "bad-boxes").iterdir()) == [
        "job.json"
    ]


def test_the_config_names_what_each_format_needs(tmp_path):
    with pytest.raises(ValueError, match="classes"):
        SourceConfig(uri=str(tmp_path), annotations={"format": "yolo"})
    with pytest.raises(ValueError, match=r"'coco', 'yolo'|tag"):
        SourceConfig(uri=str(tmp_path), annotations={"format": "voc"})
    assert SourceConfig(uri="x", annotations={"format": "coco"}).annotations.path == (
        "annotations.json"
    )
    config = Config(sources={"a": SourceConfig(uri="x", annotations=YOLO), "b": {"uri": "y"}})
    assert config.annotated_sources() == {"a"}
