"""Boxes end to end, with the truth taken from pixels, not from our own maths.

`motoray sample-data --annotations` draws every object as a solid rectangle of a colour no
other object of its frame has. Whatever a job does to a frame, an object's box in an output
must cover the region where its colour is in that output's pixels (IoU >= 0.9), and an
object the output dropped must show less than `min_visibility` of itself there.
"""

from __future__ import annotations

import functools
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.imageio import load_image
from motoray.sample_data import CLASSES, SampleObject, frame_objects, write_sample_frames
from tests.conftest import outputs_in_memory, run_job
from tests.s3server import s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("ray_local")

SIZE, RESIZED = (1280, 720), (480, 270)
FRAMES = 20
SEED_STEPS = {
    "CROP": {"crop_dimensions": [[270, 270]], "crop_type": "left_down_center"},
    "RANDOM_CROP": {"crop_dimensions": [80, 80], "target_count": 3},
}
TRUTH_REQUEST = {
    "name": "frames",
    "input_image_size": list(RESIZED),
    "augmentations": [
        SEED_STEPS,  # the seed request
        {"FLIP": {}, "ROTATE": {"angle": 90}},
        {"RANDOM_RESIZED_CROP": {"size": [224, 224], "scale": [0.25, 1], "target_count": 2}},
        {"CHAIN": [{"RANDOM_CROP": {"crop_dimensions": [200, 200]}},
                   {"FLIP": {"direction": "vertical"}}, {"ROTATE": {"angle": 270}}]},
    ],
    "train_test_split": {"train_ratio": 80, "test_ratio": 20},
    "output": {"annotations": ["coco", "yolo"]},
}  # fmt: skip
MIN_VISIBILITY = 0.3  # the default
# How far a visible fraction measured from pixels may stray from the exact one: an edge
# pixel half covered by the colour may be counted or not.
PIXEL_SLACK = 0.05


@pytest.fixture(scope="module")
def coco_frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("annotated") / "frames"
    write_sample_frames(folder, FRAMES, SIZE, annotations="coco")
    return folder


def _config(folder: Path, output: Path, annotations: dict | None = None) -> Config:
    annotations = {"format": "coco"} if annotations is None else annotations
    return Config(
        sources={"frames": SourceConfig(uri=str(folder), annotations=annotations or None)},
        output=OutputConfig(uri=str(output)),
    )


# --- the truth, from pixels ------------------------------------------------------------------


@functools.cache  # a frame's scene is drawn to know its objects: once per frame
def _objects(source_path: str, size: tuple[int, int] = SIZE) -> list[SampleObject]:
    clip, frame = (int(n) for n in re.search(r"clip(\d+)_frame(\d+)", source_path).groups())
    return frame_objects(clip * 10 + frame, size)


def _grown(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` dilated by a square of side 2 * radius + 1: along rows, then columns."""
    for axis in (0, 1):
        shifts = range(-radius, radius + 1)
        mask = np.logical_or.reduce([np.roll(mask, d, axis) for d in shifts])
    return mask


def colour_region(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Where `colour` is: pixels close to it (hysteresis: within 100 of it, and within 2
    pixels of one within 60), so an edge counts where it is about half the colour, and the
    blend of two other colours at their own edges does not."""
    distance = np.sqrt(((image.astype(np.int32) - np.array(colour)) ** 2).sum(-1))
    return (distance < 100) & _grown(distance < 60, 2)


def region_iou(bbox: list[float], region: np.ndarray) -> float:
    """IoU of a box [x, y, w, h] (continuous) and a region of pixels."""
    x, y, w, h = bbox
    height, width = region.shape
    columns, rows = np.arange(width), np.arange(height)
    cover_x = np.clip(np.minimum(columns + 1, x + w) - np.maximum(columns, x), 0, 1)
    cover_y = np.clip(np.minimum(rows + 1, y + h) - np.maximum(rows, y), 0, 1)
    inter = float((np.outer(cover_y, cover_x) * region).sum())
    return inter / (w * h + region.sum() - inter)


def _area_scale(row: dict) -> float:
    """Output pixels per source pixel: the resize, and RANDOM_RESIZED_CROP's own resize."""
    scale = RESIZED[0] / SIZE[0] * RESIZED[1] / SIZE[1]
    params = json.loads(row["params"])
    for stage in params.get("chain", [params]):
        if "size" in stage:
            scale *= stage["size"][0] / stage["height"] * stage["size"][1] / stage["width"]
    return scale


def check_against_pixels(row: dict, image: np.ndarray) -> tuple[int, int]:
    """Every kept box is its object's colour region; every dropped object shows less than
    min_visibility of itself. Returns (kept, dropped)."""
    objects = _objects(row["source_path"])
    regions = [colour_region(image, obj.colour) for obj in objects]
    boxes = json.loads(row["boxes"])
    matched = []
    for box in boxes:
        scores = {
            n: region_iou(box["bbox"], regions[n])
            for n, obj in enumerate(objects)
            if obj.category == box["category"]
        }
        best = max(scores, key=scores.get)
        assert scores[best] >= 0.9, (row["output_path"], box, scores)
        matched.append(best)
    assert len(set(matched)) == len(matched), row["output_path"]
    dropped = [n for n in range(len(objects)) if n not in matched]
    assert len(dropped) == row["boxes_dropped"], row["output_path"]
    for n in dropped:
        obj = objects[n]
        whole = obj.box[2] * obj.box[3] * _area_scale(row)
        shown = regions[n].sum() / whole
        assert shown < MIN_VISIBILITY + PIXEL_SLACK, (row["output_path"], obj, shown)
    return len(boxes), len(dropped)


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.slow
def test_boxes_match_the_pixels_in_every_output_and_load_as_coco_and_yolo(coco_frames, tmp_path):
    from pycocotools.coco import COCO

    config = _config(coco_frames, tmp_path / "out")
    record = run_job(TRUTH_REQUEST, config, "truth")
    assert record["state"] == "SUCCEEDED", record.get("error")
    job = Path(record["output"])
    manifest = pq.read_table(job / "manifest.parquet").to_pylist()
    assert len(manifest) == FRAMES * 9 == record["counts"]["outputs"]
    kept = dropped = 0
    for row in manifest:
        image = load_image((job / row["output_path"]).read_bytes())
        assert image.shape[:2] == (row["height"], row["width"])
        k, d = check_against_pixels(row, image)
        kept, dropped = kept + k, dropped + d
    assert kept > 300 and dropped > 100  # both outcomes happen, often

    # job.json: boxes in, kept and dropped per split; the source's boxes per split.
    coco_source = json.loads((coco_frames / "annotations.json").read_text())
    per_image = {i["id"]: i["file_name"] for i in coco_source["images"]}
    split_of = {row["source_path"]: row["split"] for row in manifest}
    for split, counts in record["counts"]["splits"].items():
        rows = [row for row in manifest if row["split"] == split]
        boxes = counts["boxes"]
        assert boxes["kept"] == sum(len(json.loads(r["boxes"])) for r in rows)
        assert boxes["dropped"] == sum(r["boxes_dropped"] for r in rows)
        assert boxes["in"] == boxes["kept"] + boxes["dropped"]
        assert boxes["source"] == sum(
            split_of[per_image[a["image_id"]]] == split for a in coco_source["annotations"]
        )
        assert boxes["outputs_skipped"] == 0

    # COCO: one file per split, loaded by pycocotools, matching the manifest.
    for split in ("train", "test"):
        coco = COCO(str(job / "annotations" / f"{split}.json"))  # runs createIndex
        rows = [row for row in manifest if row["split"] == split]
        assert len(coco.getImgIds()) == len(rows)
        assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(CLASSES)
        for image_id, row in zip(sorted(coco.getImgIds()), rows):
            image = coco.loadImgs(image_id)[0]
            assert image["file_name"] == row["output_path"] and (job / image["file_name"]).exists()
            assert (image["width"], image["height"]) == (row["width"], row["height"])
            ours = [(a["bbox"], coco.loadCats(a["category_id"])[0]["name"])
                    for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]  # fmt: skip
            assert ours == [(b["bbox"], b["category"]) for b in json.loads(row["boxes"])]

    # YOLO: a label beside every output image, Ultralytics' conventions, and data.yaml.
    data = yaml.safe_load((job / "data.yaml").read_text())
    assert data == {
        "train": "train",
        "val": "test",
        "test": "test",
        "names": {0: "bike", 1: "rider"},
    }
    for row in manifest:
        label = (job / row["output_path"]).with_suffix(".txt").read_text()
        parsed = [line.split() for line in label.splitlines()]
        assert all(len(values) == 5 for values in parsed)
        expected = json.loads(row["boxes"])
        assert len(parsed) == len(expected)
        for values, box in zip(parsed, expected):
            assert data["names"][int(values[0])] == box["category"]
            cx, cy, w, h = (float(v) for v in values[1:])
            assert all(0 <= v <= 1 for v in (cx, cy, w, h))
            x, y, bw, bh = box["bbox"]
            width, height = row["width"], row["height"]
            assert (cx - w / 2) * width == pytest.approx(x, abs=1e-3)
            assert (cy - h / 2) * height == pytest.approx(y, abs=1e-3)
            assert (w * width, h * height) == pytest.approx((bw, bh), abs=1e-3)

    # The folder holds exactly that; a rerun writes the same bytes, annotation ids included.
    files = sorted(str(p.relative_to(job)) for p in job.rglob("*") if p.is_file())
    outputs = [row["output_path"] for row in manifest]
    labels = [str(Path(p).with_suffix(".txt")) for p in outputs]
    coco_files = ["annotations/test.json", "annotations/train.json"]
    assert files == sorted(
        [*outputs, *labels, *coco_files, "data.yaml", "manifest.parquet", "job.json"]
    )
    again = Path(run_job(TRUTH_REQUEST, config, "truth-again")["output"])
    for name in files:
        if name != "job.json":
            assert (again / name).read_bytes() == (job / name).read_bytes(), name


def test_contains_box_crops_hold_a_whole_object_and_skip_what_cannot(coco_frames, tmp_path):
    body = {
        "name": "frames",
        "input_image_size": list(RESIZED),
        "augmentations": [
            {"RANDOM_CROP": {"crop_dimensions": [100, 120], "target_count": 3,
                             "placement": "contains_box"}},
            {"RANDOM_CROP": {"crop_dimensions": [20, 20], "placement": "contains_box"}},
        ],
    }  # fmt: skip
    record = run_job(body, _config(coco_frames, tmp_path / "out"), "contains")
    assert record["state"] == "SUCCEEDED", record.get("error")
    job = Path(record["output"])
    manifest = pq.read_table(job / "manifest.parquet").to_pylist()
    # Every object is taller than 20 pixels once resized: no 20 x 20 window holds one whole.
    assert {row["operator"] for row in manifest} == {"RANDOM_CROP"}
    assert len(manifest) == FRAMES * 3 == record["counts"]["outputs"]
    assert record["counts"]["splits"]["all"]["boxes"]["outputs_skipped"] == FRAMES
    assert record["counts"]["splits"]["all"]["images"] == FRAMES
    scale = RESIZED[0] / SIZE[0]
    for row in manifest:
        window = json.loads(row["params"])
        image = load_image((job / row["output_path"]).read_bytes())
        whole = []
        for obj in _objects(row["source_path"]):
            x, y, w, h = (v * scale for v in obj.box)
            x, y = x - window["x"], y - window["y"]
            if x >= 0 and y >= 0 and x + w <= 120 and y + h <= 100:
                whole.append(obj)
        assert whole, row["output_path"]  # 100% of outputs
        # ... and the pixels agree: that object's colour is all there, kept whole.
        obj = whole[0]
        region = colour_region(image, obj.colour)
        assert region.sum() >= 0.9 * obj.box[2] * obj.box[3] * scale**2
        check_against_pixels(row, image)


def test_anywhere_is_byte_identical_with_or_without_annotations(coco_frames):
    body = {**TRUTH_REQUEST, "output": {}}
    boxed_rows, boxed = outputs_in_memory(_config(coco_frames, Path("unused")), body)
    plain_rows, plain = outputs_in_memory(_config(coco_frames, Path("unused"), {}), body)
    assert boxed == plain  # every output's name and bytes
    assert [(r["output_path"], r["params"]) for r in boxed_rows] == [
        (r["output_path"], r["params"]) for r in plain_rows
    ]
    assert "boxes" in boxed_rows[0] and "boxes" not in plain_rows[0]


def test_a_yolo_source_writes_yolo_labels_by_default(tmp_path):
    folder = tmp_path / "yolo"
    write_sample_frames(folder, 6, (640, 360), annotations="yolo")
    config = _config(folder, tmp_path / "out", {"format": "yolo", "classes": list(CLASSES)})
    body = {
        "name": "frames",
        "augmentations": [{"FLIP": {}, "CROP": {"crop_dimensions": [[200, 300]]}}],
    }
    record = run_job(body, config, "yolo")
    assert record["state"] == "SUCCEEDED", record.get("error")
    job = Path(record["output"])
    manifest = pq.read_table(job / "manifest.parquet").to_pylist()
    assert not (job / "annotations").exists()  # the source's format only: YOLO
    assert yaml.safe_load((job / "data.yaml").read_text())["names"] == {0: "bike", 1: "rider"}
    for row in manifest:
        image = load_image((job / row["output_path"]).read_bytes())
        check_against_pixels_scaled(row, image, 1.0)
        lines = (job / row["output_path"]).with_suffix(".txt").read_text().splitlines()
        assert len(lines) == len(json.loads(row["boxes"]))


def check_against_pixels_scaled(row: dict, image: np.ndarray, scale: float) -> None:
    """check_against_pixels for frames that are not resized (source size = output size)."""
    objects = _objects(row["source_path"], (640, 360))
    for box in json.loads(row["boxes"]):
        best = max(
            region_iou(box["bbox"], colour_region(image, obj.colour))
            for obj in objects
            if obj.category == box["category"]
        )
        assert best >= 0.9, (row["output_path"], box)


def test_webdataset_samples_carry_their_boxes(coco_frames, tmp_path):
    body = {**TRUTH_REQUEST, "output": {"format": "webdataset"}}
    record = run_job(body, _config(coco_frames, tmp_path / "out"), "shards")
    job = Path(record["output"])
    manifest = {r["output_path"]: r for r in pq.read_table(job / "manifest.parquet").to_pylist()}
    files = sorted(str(p.relative_to(job)) for p in job.rglob("*") if p.is_file())
    assert files == [
        "job.json",
        "manifest.parquet",
        "test/shard-000000.tar",
        "train/shard-000000.tar",
    ]
    samples = 0
    for shard in ("train", "test"):
        with tarfile.open(job / shard / "shard-000000.tar") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if not name.endswith(".json"):
                continue
            sample = json.loads(data)
            row = manifest[name.removesuffix(".json") + ".jpg"]
            assert sample["boxes"] == json.loads(row["boxes"])
            assert sample["boxes_dropped"] == row["boxes_dropped"]
            image = load_image(members[name.removesuffix(".json") + ".jpg"])
            check_against_pixels(row, image)
            samples += 1
    assert samples == len(manifest) == FRAMES * 9


def test_plan_counts_boxes_and_stratify_uses_the_commonest_class(tmp_path):
    from motoray.dry_run import dry_run
    from motoray.imageio import encode_jpeg
    from tests.conftest import parse_one

    folder = tmp_path / "pitch"
    folder.mkdir()
    images, annotations = [], []
    for n in range(20):
        (folder / f"f{n:02d}.jpg").write_bytes(encode_jpeg(np.full((36, 64, 3), 80, np.uint8)))
        images.append({"id": n + 1, "file_name": f"f{n:02d}.jpg", "width": 64, "height": 36})
        # 10 frames mostly "ball", 10 mostly "player" (hashed apart by the seed, not by name)
        common, rare = (1, 2) if n % 2 else (2, 1)
        for category in (common, common, rare):
            annotations.append({"id": len(annotations) + 1, "image_id": n + 1,
                                "category_id": category, "bbox": [1, 1, 10, 10]})  # fmt: skip
    categories = [{"id": 1, "name": "ball"}, {"id": 2, "name": "player"}]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(document))
    config = _config(folder, tmp_path / "out")
    split = {"train_ratio": 80, "test_ratio": 20, "stratify": True}
    body = {"name": "frames", "augmentations": [{"FLIP": {}}], "train_test_split": split}
    planned = dry_run(parse_one(body, config), config, cpus=2)
    report = planned["split"]["splits"]
    assert report["train"]["labels"] == {"ball": 8, "player": 8}
    assert report["test"]["labels"] == {"ball": 2, "player": 2}
    boxes = planned["counts"]["boxes"]
    assert boxes["boxes"] == 60 and boxes["images_with_boxes"] == 20
    assert boxes["splits"]["test"] == {"boxes": 12, "categories": {"ball": 6, "player": 6}}
    record = run_job(body, config, "stratified")
    assert record["counts"]["splits"]["test"]["boxes"]["source"] == 12
    manifest = pq.read_table(Path(record["output"]) / "manifest.parquet").to_pylist()
    assert {row["label"] for row in manifest} == {None}  # stratified by boxes, not labelled


def test_the_contact_sheet_draws_every_outputs_boxes(coco_frames, tmp_path):
    from motoray.preview import OBJECT_BOX, contact_sheet
    from tests.conftest import parse_one

    config = _config(coco_frames, tmp_path / "out")
    body = {**TRUTH_REQUEST, "output": {}}
    sheet = load_image(contact_sheet(parse_one(body, config), config, count=2))
    drawn = (sheet == np.array(OBJECT_BOX, np.uint8)).all(-1).sum()
    plain = load_image(
        contact_sheet(
            parse_one(body, _config(coco_frames, tmp_path, {})),
            _config(coco_frames, tmp_path, {}),
            count=2,
        )
    )
    assert sheet.shape == plain.shape
    assert drawn > 1000 and (plain == np.array(OBJECT_BOX, np.uint8)).all(-1).sum() == 0


def test_a_boxed_job_on_s3_writes_what_the_local_one_writes(s3_endpoint, tmp_path):  # noqa: F811
    """A YOLO source in Ultralytics' images/ + labels/ layout, on moto's S3 and in a folder:
    the same outputs, labels, COCO files and manifest, byte for byte, every object SSE-KMS."""
    folder = tmp_path / "frames"
    for path in write_sample_frames(folder / "images" / "day1", 8, (640, 360), annotations="yolo"):
        label = path.with_suffix(".txt")
        (folder / "labels" / "day1").mkdir(parents=True, exist_ok=True)
        label.rename(folder / "labels" / "day1" / label.name)
    s3 = s3_endpoint.client()
    kms_key = s3_endpoint.client("kms").create_key()["KeyMetadata"]["Arn"]
    source, out = s3_endpoint.new_bucket("boxes-src"), s3_endpoint.new_bucket("boxes-out")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.put_object(Bucket=source, Key=f"raw/{path.relative_to(folder)}", Body=path.read_bytes())
    yolo_source = {"format": "yolo", "classes": list(CLASSES)}
    on_s3 = Config(
        sources={"frames": SourceConfig(uri=f"s3://{source}/raw", annotations=yolo_source)},
        output=OutputConfig(uri=f"s3://{out}/datasets"),
        s3=s3_endpoint.settings(kms_key_id=kms_key),
    )
    local = _config(folder, tmp_path / "out", yolo_source)
    body = {
        "name": "frames",
        "input_image_size": [320, 180],
        "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [90, 120], "target_count": 2,
                                           "placement": "contains_box"}, "ROTATE": {"angle": 270}}],
        "train_test_split": {"train_ratio": 75, "test_ratio": 25},
        "output": {"annotations": ["coco", "yolo"]},
    }  # fmt: skip
    remote_record = run_job(body, on_s3, "boxes")
    local_record = run_job(body, local, "boxes")
    assert remote_record["state"] == local_record["state"] == "SUCCEEDED"
    assert remote_record["counts"] == local_record["counts"]
    assert remote_record["counts"]["splits"]["train"]["boxes"]["source"] > 0
    local_dir = Path(local_record["output"])
    local_files = sorted(str(p.relative_to(local_dir)) for p in local_dir.rglob("*") if p.is_file())
    assert "annotations/train.json" in local_files and "data.yaml" in local_files
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=out, Prefix="datasets/frames/boxes/"
    )
    keys = sorted(o["Key"] for page in pages for o in page.get("Contents", ()))
    assert [k.removeprefix("datasets/frames/boxes/") for k in keys] == local_files
    for key, name in zip(keys, local_files):
        head = s3.head_object(Bucket=out, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", kms_key)
        if name != "job.json":  # timings differ
            remote = s3.get_object(Bucket=out, Key=key)["Body"].read()
            assert remote == (local_dir / name).read_bytes(), name
