"""Annotation exports as tools write them, read under each `annotations.on_error` and
`annotations.unlisted` setting: what is kept, clipped, skipped, failed, and recorded.

The exports hold the imperfect entries real ones do: a box a few pixels past the edge, one
at x = -5, a segmentation-only annotation, an images[] entry whose file is gone, a
duplicated file_name; a YOLO box past the edge and a YOLO polygon line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from motoray import annotations
from motoray.annotations import AnnotationError
from motoray.config import Annotations
from motoray.storage import LocalStorage
from tests.test_annotations import _image

LIMIT = 2**20
W, H = 64, 36

COCO_EXPORT = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
        {"id": 2, "file_name": "b.jpg", "width": W, "height": H},
        {"id": 3, "file_name": "c.jpg", "width": W, "height": H},
        {"id": 4, "file_name": "gone.jpg", "width": W, "height": H},  # deleted since export
        {"id": 5, "file_name": "b.jpg", "width": W, "height": H},  # b.jpg listed twice
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [60, 2, 8, 10]},  # 4 px past edge
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [-5, 5, 20, 10]},  # x = -5
        {"id": 3, "image_id": 2, "category_id": 1,  # segmentation only
         "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]},
        {"id": 4, "image_id": 3, "category_id": 1, "bbox": [1, 1, 10, 10]},  # fine
        {"id": 5, "image_id": 4, "category_id": 1, "bbox": [1, 1, 10, 10]},  # of gone.jpg
        {"id": 6, "image_id": 5, "category_id": 1, "bbox": [2, 2, 5, 5]},  # of the duplicate
    ],
    "categories": [{"id": 1, "name": "bike"}],
}  # fmt: skip
YOLO_EXPORT = (
    "0 0.98 0.5 0.1 0.2\n"  # past the right edge: x1 = 1.03
    "0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n"  # a polygon (Ultralytics segments)
    "0 0.5 0.5 0.2 0.2\n"
)


def _read(root: Path, declared: dict):
    storage = LocalStorage(root)
    config = TypeAdapter(Annotations).validate_python(declared)
    return annotations.load(storage, storage.list((".jpg",)), config, LIMIT, LIMIT)


@pytest.fixture
def coco_export(tmp_path) -> Path:
    root = tmp_path / "coco"
    for name in ("a.jpg", "b.jpg", "c.jpg", "unlisted.jpg"):
        _image(root / name, (W, H))
    (root / "annotations.json").write_text(json.dumps(COCO_EXPORT))
    return root


@pytest.fixture
def yolo_export(tmp_path) -> Path:
    root = tmp_path / "yolo"
    for name in ("a.jpg", "unlabelled.jpg"):
        _image(root / "images" / name, (W, H))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(YOLO_EXPORT)
    return root


def _boxes(found, key: str) -> list[list[float]]:
    return [[round(v, 6) for v in box] for box in found.boxes[key].xywh]


def _mended(found) -> list[tuple[str, str, str]]:
    return [(m.file, m.entry, m.action) for m in found.mended]


def test_coco_on_error_fail_keeps_failing_the_job(coco_export):
    with pytest.raises(AnnotationError) as info:
        _read(coco_export, {"format": "coco", "on_error": "fail"})
    message = str(info.value)
    assert message.startswith(
        "annotations.json: images[3]: file_name 'gone.jpg' is not an image of the source"
    )
    # and: the duplicate, 2 boxes outside, the segmentation only, the annotations of gone.jpg
    # and of the duplicate (their image_ids are not in images)
    assert message.endswith("(and 6 more)")


def test_coco_on_error_clip(coco_export):
    found = _read(coco_export, {"format": "coco", "on_error": "clip"})
    assert _boxes(found, "a.jpg") == [[60, 2, 4, 10], [0, 5, 15, 10]]  # clipped to 64 x 36
    assert _boxes(found, "b.jpg") == [[10, 10, 20, 10]]  # the polygon's bounds
    assert _boxes(found, "c.jpg") == [[1, 1, 10, 10]]
    assert found.failed == {
        "gone.jpg": "annotations.json images[3] lists it; it is not in the source"
    }
    assert _mended(found) == [
        ("annotations.json", "images[4]", "skipped"),
        ("annotations.json", "annotations[0]", "clipped"),
        ("annotations.json", "annotations[1]", "clipped"),
        ("annotations.json", "annotations[5]", "skipped"),
    ]
    reasons = {m.entry: m.reason for m in found.mended}
    assert reasons["images[4]"] == "id 5 or file_name 'b.jpg' is used twice"
    assert reasons["annotations[0]"] == "bbox [60, 2, 8, 10] is outside its image (64x36)"
    assert reasons["annotations[5]"] == "image_id 5: its entry images[4] was skipped"
    assert found.polygons == 1
    report = found.report()
    assert (report["clipped"], report["skipped"], report["from_polygons"]) == (2, 2, 1)


def test_coco_on_error_skip(coco_export):
    found = _read(coco_export, {"format": "coco", "on_error": "skip"})
    assert _boxes(found, "a.jpg") == []  # both boxes past the edge: skipped
    assert _boxes(found, "b.jpg") == [[10, 10, 20, 10]]
    assert list(found.failed) == ["gone.jpg"]
    assert [(entry, action) for _, entry, action in _mended(found)] == [
        ("images[4]", "skipped"),
        ("annotations[0]", "skipped"),
        ("annotations[1]", "skipped"),
        ("annotations[5]", "skipped"),
    ]


def test_a_box_clipped_to_nothing_is_skipped_and_says_why(tmp_path):
    _image(tmp_path / "a.jpg", (W, H))
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [70, 2, 8, 10]}],
        "categories": [{"id": 1, "name": "bike"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    found = _read(tmp_path, {"format": "coco", "on_error": "clip"})
    assert _boxes(found, "a.jpg") == []
    [mended] = found.mended
    assert (mended.action, mended.reason) == (
        "skipped",
        "bbox [70, 2, 8, 10] is outside its image (64x36): no area inside it",
    )


def test_an_images_entry_that_is_skipped_fails_its_image(tmp_path):
    """Its boxes cannot be known: the image is a recorded failure, never a negative."""
    _image(tmp_path / "a.jpg", (W, H))
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 0, "height": H}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 10]}],
        "categories": [{"id": 1, "name": "bike"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    found = _read(tmp_path, {"format": "coco", "on_error": "skip", "unlisted": "negative"})
    assert found.failed == {
        "a.jpg": "annotations.json images[0] was skipped: needs a positive integer width and height"
    }
    assert found.unlisted == () and found.usable(["a.jpg"]) == []
    assert _mended(found) == [
        ("annotations.json", "images[0]", "skipped"),
        ("annotations.json", "annotations[0]", "skipped"),
    ]


def test_crowd_flags_are_read_and_checked(tmp_path):
    _image(tmp_path / "a.jpg", (W, H))
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 1, 30, 30], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 10], "iscrowd": 2},
        ],
        "categories": [{"id": 1, "name": "bike"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    with pytest.raises(AnnotationError, match=r"annotations\[2\]: iscrowd must be 0 or 1, got 2"):
        _read(tmp_path, {"format": "coco"})
    found = _read(tmp_path, {"format": "coco", "on_error": "skip"})
    assert found.boxes["a.jpg"].crowd == (False, True)
    assert found.boxes["a.jpg"].crowd_flags().tolist() == [False, True]


YOLO_CASES = [
    # (on_error, boxes of images/a.jpg as x, y, w, h, (line, action) recorded)
    ("clip", [[0.93, 0.4, 0.07, 0.2], [0.1, 0.1, 0.2, 0.3], [0.4, 0.4, 0.2, 0.2]],
     [("line 1", "clipped")]),
    ("skip", [[0.1, 0.1, 0.2, 0.3], [0.4, 0.4, 0.2, 0.2]], [("line 1", "skipped")]),
]  # fmt: skip


@pytest.mark.parametrize(("on_error", "boxes", "mended"), YOLO_CASES, ids=["clip", "skip"])
def test_yolo_box_past_the_edge_and_polygon_line(yolo_export, on_error, boxes, mended):
    found = _read(yolo_export, {"format": "yolo", "classes": ["bike"], "on_error": on_error})
    assert _boxes(found, "images/a.jpg") == boxes
    assert [(m.file, m.entry, m.action) for m in found.mended] == [
        ("labels/a.txt", entry, action) for entry, action in mended
    ]
    assert found.polygons == 1


def test_yolo_on_error_fail_keeps_failing_the_job(yolo_export):
    with pytest.raises(AnnotationError) as info:
        _read(yolo_export, {"format": "yolo", "classes": ["bike"]})
    assert str(info.value) == (
        "labels/a.txt: line 1: box outside the image (0.98 0.5 0.1 0.2, normalised) (and 1 more)"
    )


def test_a_yolo_label_file_that_cannot_be_read_fails_its_image_under_skip(yolo_export):
    (yolo_export / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 \xff\xfe 0.2\n")
    found = _read(yolo_export, {"format": "yolo", "classes": ["bike"], "on_error": "skip"})
    assert found.failed == {"images/a.jpg": "labels/a.txt: not UTF-8 text: invalid start byte"}
    assert found.unlisted == ("images/unlabelled.jpg",)


# --- unlisted images ---------------------------------------------------------------------------


@pytest.mark.parametrize("unlisted", ["skip", "negative"])
def test_unlisted_images_are_left_out_or_negatives(coco_export, yolo_export, unlisted):
    coco = _read(coco_export, {"format": "coco", "on_error": "clip", "unlisted": unlisted})
    assert coco.unlisted == ("unlisted.jpg",) and coco.unlisted_action == unlisted
    listing = ["a.jpg", "b.jpg", "c.jpg", "unlisted.jpg"]
    kept = ["a.jpg", "b.jpg", "c.jpg"] + (["unlisted.jpg"] if unlisted == "negative" else [])
    assert coco.usable(listing) == kept
    assert coco.report()["unlisted_images"] == ["unlisted.jpg"]
    declared = {"format": "yolo", "classes": ["bike"], "on_error": "clip", "unlisted": unlisted}
    yolo = _read(yolo_export, declared)
    assert yolo.unlisted == ("images/unlabelled.jpg",)


def test_unlisted_fail_names_how_many_and_one(coco_export, yolo_export):
    with pytest.raises(AnnotationError) as info:
        _read(coco_export, {"format": "coco", "on_error": "clip", "unlisted": "fail"})
    assert str(info.value) == (
        "1 images not in annotations.json (annotations.unlisted: fail), e.g. 'unlisted.jpg'"
    )
    with pytest.raises(AnnotationError, match="1 images without a label file"):
        declared = {"format": "yolo", "classes": ["bike"], "on_error": "clip", "unlisted": "fail"}
        _read(yolo_export, declared)


def test_an_empty_label_file_is_an_image_without_objects_not_an_unlisted_one(yolo_export):
    (yolo_export / "labels" / "unlabelled.txt").write_text("")
    found = _read(yolo_export, {"format": "yolo", "classes": ["bike"], "on_error": "clip"})
    assert found.unlisted == () and _boxes(found, "images/unlabelled.jpg") == []


def test_the_plan_counts_as_the_job_will(coco_export):
    """`motoray plan` leaves out what the job leaves out, and says what the reader did."""
    from motoray.config import Config, SourceConfig
    from motoray.dry_run import dry_run
    from motoray.spec import parse_one_for

    for unlisted, images in (("skip", 3), ("negative", 4)):
        declared = {"format": "coco", "on_error": "clip", "unlisted": unlisted}
        config = Config(
            sources={"frames": SourceConfig(uri=str(coco_export), annotations=declared)}
        )
        request = parse_one_for(config, {"name": "frames", "augmentations": [{"FLIP": {}}]})
        counts = dry_run(request, config, cpus=2)["counts"]
        assert counts["images_total"] == images
        assert counts["annotations"] == {
            "unlisted_images": 1,
            "unlisted": unlisted,
            "images_failed": 1,
            "entries_clipped": 2,
            "entries_skipped": 2,
        }


def test_what_an_entry_holds_is_clipped_in_what_job_json_records(tmp_path):
    """Under skip every bad entry is listed: a long image_id or file_name in each
    must not become megabytes of job.json."""
    _image(tmp_path / "a.jpg", (W, H))
    huge = "x" * 200_000
    document = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
            {"id": 2, "file_name": huge, "width": W, "height": H},
        ],
        "annotations": [{"id": n, "image_id": huge, "category_id": 1} for n in range(3)],
        "categories": [{"id": 1, "name": "bike"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    found = _read(tmp_path, {"format": "coco", "on_error": "skip"})
    assert found.failed == {}  # no file is named that long: a bad entry, not a file gone
    assert len(found.mended) == 4
    assert max(len(m.reason) for m in found.mended) < 150
    assert len(json.dumps(found.report())) < 2000
