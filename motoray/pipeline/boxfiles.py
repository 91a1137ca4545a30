"""What a job with boxes counts and writes beside its images: boxes kept and dropped per
split, and the annotation files of the whole job (COCO per split, YOLO's data.yaml)."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from motoray.annotations import coco, yolo
from motoray.jobs.record import BoxCounts, SplitCounts
from motoray.pipeline.jobspec import JobSpec


def count_boxes(per_split: dict[str, SplitCounts], made: pa.Table, skipped: pa.Table) -> None:
    """Boxes kept and dropped by the outputs of one block, and outputs skipped, per split
    (Arrow sums per split: a block has thousands of outputs)."""
    kept = pc.count_substring(made["boxes"], '{"bbox": ')
    crowd = pc.count_substring(made["boxes"], '"iscrowd": 1')
    sums = (
        pa.table(
            {"split": made["split"], "kept": kept, "dropped": made["boxes_dropped"], "crowd": crowd}
        )
        .group_by("split")
        .aggregate([("kept", "sum"), ("dropped", "sum"), ("crowd", "sum")])
    )
    names = ("split", "kept_sum", "dropped_sum", "crowd_sum")
    for split, n, dropped, crowds in zip(*(sums[name].to_pylist() for name in names)):
        counted = per_split[split].boxes = per_split[split].boxes or BoxCounts()
        counted.kept += n
        counted.dropped += dropped
        counted.in_ += n + dropped
        if crowds:
            counted.crowd = (counted.crowd or 0) + crowds
    for split, n in Counter(skipped["split"].to_pylist()).items():
        counted = per_split[split].boxes = per_split[split].boxes or BoxCounts()
        counted.outputs_skipped += n


def write_box_files(
    spec: JobSpec, coco_files: coco.CocoWriter | None, per_split: dict[str, SplitCounts]
) -> list[str]:
    """The annotation files of the whole job (COCO per split, YOLO's data.yaml), written
    after every output and counted with them. Their bytes follow from the manifest."""
    files = coco_files.files() if coco_files is not None else {}
    if spec.boxes is not None and spec.boxes.yolo:
        splits = [name for name, c in per_split.items() if c.outputs]
        crowd = sum((c.boxes.crowd or 0) for c in per_split.values() if c.boxes is not None)
        files[yolo.DATA_FILE] = yolo.data_yaml(splits, spec.boxes.names, crowd)
    for name, data in files.items():
        spec.job_dir.write(name, data)
    return list(files)
