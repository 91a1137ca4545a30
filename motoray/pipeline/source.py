"""What a job reads: the source's listing, its annotations, and where each image goes (split,
label, group), decided before any pixel is read."""

from __future__ import annotations

from dataclasses import dataclass, replace

from motoray import annotations
from motoray.annotations import ImageBoxes, SourceAnnotations
from motoray.config import Config
from motoray.labels import labels_of
from motoray.spec import RequestBase
from motoray.split import Assignment, assign
from motoray.storage import Storage, open_storage


@dataclass(frozen=True)
class Item:
    """One source image and where it goes."""

    key: str
    split: str
    label: str | None = None
    group: str | None = None
    boxes: ImageBoxes | None = None  # an annotated source's boxes of this image; None: none

    def placement(self) -> dict[str, str | None]:
        return {"split": self.split, "label": self.label, "group": self.group}


def list_source(request: RequestBase, config: Config) -> tuple[Storage, list[str]]:
    source_config = config.sources[request.name]
    source = open_storage(source_config.uri, config.source_s3(request.name))
    return source, source.list(tuple(source_config.extensions))


def read_annotations(
    request: RequestBase, config: Config, storage: Storage, keys: list[str]
) -> SourceAnnotations | None:
    """The source's annotations, checked against the listing; None for a source without."""
    declared = config.sources[request.name].annotations
    if declared is None:
        return None
    limits = config.limits
    return annotations.load(
        storage, keys, declared, limits.max_annotation_bytes, limits.max_file_bytes
    )


def place(
    request: RequestBase,
    config: Config,
    keys: list[str],
    boxes: SourceAnnotations | None = None,
) -> Assignment:
    """Label, split group and split of every image. A source with boxes and no folder labels
    is stratified by each image's most frequent category; outputs stay unlabelled."""
    labels = labels_of(keys, config.sources[request.name].labels)
    split = request.train_test_split
    if labels is None and boxes is not None and split is not None and split.stratify:
        by_class = assign(keys, split, request.seed, {k: boxes.majority(k) for k in keys})
        return replace(by_class, label={})
    return assign(keys, split, request.seed, labels)


def items(
    keys: list[str], assignment: Assignment, boxes: SourceAnnotations | None = None
) -> list[Item]:
    found = {} if boxes is None else boxes.boxes
    return [Item(key, **assignment.placement(key), boxes=found.get(key)) for key in keys]
