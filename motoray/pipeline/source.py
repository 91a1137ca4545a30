"""What a job reads: the source's listing, and where each image goes (split, label, group),
decided before any pixel is read."""

from __future__ import annotations

from dataclasses import dataclass

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

    def placement(self) -> dict[str, str | None]:
        return {"split": self.split, "label": self.label, "group": self.group}


def list_source(request: RequestBase, config: Config) -> tuple[Storage, list[str]]:
    source_config = config.sources[request.name]
    source = open_storage(source_config.uri, config.source_s3(request.name))
    return source, source.list(tuple(source_config.extensions))


def place(request: RequestBase, config: Config, keys: list[str]) -> Assignment:
    """Label, split group and split of every image."""
    labels = labels_of(keys, config.sources[request.name].labels)
    return assign(keys, request.train_test_split, request.seed, labels)


def items(keys: list[str], assignment: Assignment) -> list[Item]:
    return [Item(key, **assignment.placement(key)) for key in keys]
