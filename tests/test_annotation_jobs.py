"""Annotation semantics through whole jobs on a real local Ray: crowd regions through a crop
and a flip (kept in COCO, left out of YOLO, true to the pixels), unlisted images under each
setting, and an imperfect export under `on_error`, every entry counted in job.json."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from motoray.annotations import AnnotationError
from motoray.config import Config, OutputConfig, SourceConfig
from motoray.imageio import load_image
from motoray.jobs.record import JobRecord
from motoray.sample_data import write_sample_frames
from tests.conftest import run_job
from tests.test_annotation_policies import YOLO_EXPORT, H, W, coco_export  # noqa: F401
from tests.test_annotations import _image
from tests.test_boxes import RESIZED, SIZE, check_against_pixels

pytestmark = pytest.mark.usefixtures("ray_local")

CROWD_REQUEST = {
    "name": "frames",
    "input_image_size": list(RESIZED),
    "augmentations": [
        {"CHAIN": [{"CROP": {"crop_dimensions": [[270, 270]], "crop_type": "center"}},
                   {"FLIP": {}}]},
    ],
    "train_test_split": {"train_ratio": 50, "test_ratio": 50},
    "boxes": {"min_visibility": 0.1},
    "output": {"annotations": ["coco", "yolo"]},
}  # fmt: skip


def _config(root: Path, output: Path, **annotations) -> Config:
    return Config(
        sources={"frames": SourceConfig(uri=str(root), annotations=annotations)},
        output=OutputConfig(uri=str(output)),
    )


def _manifest(record: dict) -> list[dict]:
    return pq.read_table(Path(record["output"]) / "manifest.parquet").to_pylist()


@pytest.fixture(scope="module")
def crowded_frames(tmp_path_factory) -> Path:
    """Sample frames whose riders are marked as crowd regions."""
    folder = tmp_path_factory.mktemp("crowd") / "frames"
    write_sample_frames(folder, 6, SIZE, annotations="coco")
    document = json.loads((folder / "annotations.json").read_text())
    rider = next(c["id"] for c in document["categories"] if c["name"] == "rider")
    for annotation in document["annotations"]:
        annotation["iscrowd"] = int(annotation["category_id"] == rider)
    assert 0 < sum(a["iscrowd"] for a in document["annotations"]) < len(document["annotations"])
    (folder / "annotations.json").write_text(json.dumps(document))
    return folder


def test_a_crowd_region_survives_a_crop_and_a_flip_in_coco_and_is_left_out_of_yolo(
    crowded_frames, tmp_path
):
    from pycocotools.coco import COCO

    config = _config(crowded_frames, tmp_path / "out", format="coco")
    record = run_job(CROWD_REQUEST, config, "crowd")
    assert record["state"] == "SUCCEEDED"
    job = Path(record["output"])
    rows = _manifest(record)
    crowd_in_manifest = 0
    for row in rows:  # boxes true to the pixels, crowd regions flagged
        check_against_pixels(row, load_image((job / row["output_path"]).read_bytes()))
        boxes = json.loads(row["boxes"])
        for box in boxes:
            assert box.get("iscrowd", 0) == (box["category"] == "rider")
        crowd_in_manifest += sum(box.get("iscrowd", 0) for box in boxes)
        # YOLO: one line per box that is not a crowd region
        lines = (job / row["output_path"]).with_suffix(".txt").read_text().splitlines()
        assert len(lines) == sum(not box.get("iscrowd") for box in boxes)
        assert all(line.split()[0] == "0" for line in lines)  # bikes only: class 0
    assert crowd_in_manifest > 0

    crowd_in_coco = 0
    for split in ("train", "test"):
        coco = COCO(str(job / "annotations" / f"{split}.json"))
        rider = coco.getCatIds(catNms=["rider"])[0]
        for annotation in coco.dataset["annotations"]:
            assert annotation["iscrowd"] == (annotation["category_id"] == rider)
            crowd_in_coco += annotation["iscrowd"]
        assert coco.getAnnIds(iscrowd=True) or not coco.getAnnIds(catIds=[rider])
    assert crowd_in_coco == crowd_in_manifest

    counted = sum(s["boxes"].get("crowd", 0) for s in record["counts"]["splits"].values())
    assert counted == crowd_in_manifest
    data_yaml = (job / "data.yaml").read_text()
    assert f"# {crowd_in_manifest} crowd regions (COCO iscrowd: 1) are left out" in data_yaml
    assert yaml.safe_load(data_yaml)["names"] == {0: "bike", 1: "rider"}


# --- unlisted images and an imperfect export -------------------------------------------------


@pytest.fixture
def export(coco_export) -> Path:  # noqa: F811  (the fixture imported above)
    """COCO_EXPORT's images (gone.jpg is not there) plus one image it does not list."""
    return coco_export


REQUEST = {
    "name": "frames",
    "augmentations": [{"FLIP": {}}],
    "boxes": {"min_visibility": 0, "min_area": 0},
    "output": {"annotations": ["coco", "yolo"]},
}


def test_an_imperfect_export_under_clip_is_counted_in_job_json(export, tmp_path):
    from pycocotools.coco import COCO

    config = _config(export, tmp_path / "out", format="coco", on_error="clip", unlisted="negative")
    record = run_job(REQUEST, config, "clip")
    assert record["state"] == "SUCCEEDED"
    assert record["annotations"] == {
        "unlisted": "negative",
        "on_error": "clip",
        "unlisted_images": ["unlisted.jpg"],
        "clipped": 2,
        "skipped": 2,
        "from_polygons": 1,
        "entries": [
            {"file": "annotations.json", "entry": "images[4]", "action": "skipped",
             "reason": "id 5 or file_name 'b.jpg' is used twice"},
            {"file": "annotations.json", "entry": "annotations[0]", "action": "clipped",
             "reason": "bbox [60, 2, 8, 10] is outside its image (64x36)"},
            {"file": "annotations.json", "entry": "annotations[1]", "action": "clipped",
             "reason": "bbox [-5, 5, 20, 10] is outside its image (64x36)"},
            {"file": "annotations.json", "entry": "annotations[5]", "action": "skipped",
             "reason": "image_id 5: its entry images[4] was skipped"},
        ],
    }  # fmt: skip
    assert record["failures"] == [
        {
            "source_path": "gone.jpg",
            "reason": "annotations.json images[3] lists it; it is not in the source",
        }
    ]
    counts = record["counts"]
    assert (counts["images_total"], counts["images_failed"], counts["outputs"]) == (5, 1, 4)
    flipped = {row["source_path"]: json.loads(row["boxes"]) for row in _manifest(record)}
    assert flipped["a.jpg"] == [  # clipped, then mirrored: x -> 64 - x
        {"bbox": [0.0, 2.0, 4.0, 10.0], "category": "bike"},
        {"bbox": [49.0, 5.0, 15.0, 10.0], "category": "bike"},
    ]
    assert flipped["b.jpg"] == [{"bbox": [34.0, 10.0, 20.0, 10.0], "category": "bike"}]
    assert flipped["unlisted.jpg"] == []  # negative: an image of no object, on purpose
    coco = COCO(str(Path(record["output"]) / "annotations" / "all.json"))
    assert len(coco.getImgIds()) == 4 and len(coco.getAnnIds()) == 4
    summary = "\n".join(JobRecord(**record).summary_lines())
    assert "annotations: 2 entries clipped, 2 skipped; 1 images unlisted (negatives)" in summary


def test_unlisted_images_are_left_out_by_default_and_listed(export, tmp_path):
    config = _config(export, tmp_path / "out", format="coco", on_error="skip")
    record = run_job(REQUEST, config, "skip")
    assert record["state"] == "SUCCEEDED"
    assert record["annotations"]["unlisted"] == "skip"
    assert record["annotations"]["unlisted_images"] == ["unlisted.jpg"]
    assert record["annotations"]["skipped"] == 4 and record["annotations"]["clipped"] == 0
    made = {row["source_path"] for row in _manifest(record)}
    assert made == {"a.jpg", "b.jpg", "c.jpg"}  # unlisted.jpg: not processed, not a failure
    assert record["counts"]["images_total"] == 4  # the three, and gone.jpg's failure
    assert [f["source_path"] for f in record["failures"]] == ["gone.jpg"]


def test_unlisted_fail_and_on_error_fail_end_the_job_before_a_pixel(export, tmp_path):
    config = _config(export, tmp_path / "out", format="coco", on_error="clip", unlisted="fail")
    with pytest.raises(AnnotationError, match=r"1 images not in annotations.json"):
        run_job(REQUEST, config, "unlisted-fail")
    config = _config(export, tmp_path / "out", format="coco")  # on_error: fail, as ever
    with pytest.raises(AnnotationError, match=r"file_name 'gone.jpg' is not an image"):
        run_job(REQUEST, config, "error-fail")
    for job_id in ("unlisted-fail", "error-fail"):
        job = tmp_path / "out" / "frames" / job_id
        assert [p.name for p in job.iterdir()] == ["job.json"]
        assert json.loads((job / "job.json").read_text())["state"] == "FAILED"


def test_a_yolo_export_with_a_polygon_line_and_a_box_past_the_edge(tmp_path):
    root = tmp_path / "yolo"
    _image(root / "images" / "a.jpg", (W, H))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(YOLO_EXPORT)
    config = _config(root, tmp_path / "out", format="yolo", classes=["bike"], on_error="clip")
    record = run_job({"name": "frames", "include_original": True}, config, "yolo")
    assert record["state"] == "SUCCEEDED"
    report = record["annotations"]
    assert (report["clipped"], report["skipped"], report["from_polygons"]) == (1, 0, 1)
    assert report["entries"][0]["file"] == "labels/a.txt"
    assert report["entries"][0]["entry"] == "line 1"
    [row] = _manifest(record)
    label = (Path(record["output"]) / row["output_path"]).with_suffix(".txt").read_text()
    assert label.splitlines() == [
        "0 0.965000 0.500000 0.070000 0.200000",  # clipped at the right edge
        "0 0.200000 0.250000 0.200000 0.300000",  # the polygon's bounds
        "0 0.500000 0.500000 0.200000 0.200000",
    ]
