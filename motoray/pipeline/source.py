"""What a job reads: the source's listing, its annotations, and where each image goes (split,
label, group), decided before any pixel is read. A video source's items are time ranges of
its videos (motoray/video/plan.py), placed per video or segment."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from motoray import annotations
from motoray.annotations import ImageBoxes, SourceAnnotations
from motoray.config import Config
from motoray.labels import labels_of
from motoray.pipeline.listing import Listed, held, manifest_key_list, manifest_keys, s3_versions
from motoray.pipeline.local_listing import local_versions
from motoray.spec import RequestBase
from motoray.split import Assignment, assign
from motoray.storage import LocalStorage, Storage, open_storage

if TYPE_CHECKING:
    from motoray.video.plan import VideoPlan


@dataclass(frozen=True)
class Item:
    """One source image and where it goes."""

    key: str
    split: str
    label: str | None = None
    group: str | None = None
    boxes: ImageBoxes | None = None  # an annotated source's boxes of this image; None: none
    # A video source: the time range of the video `key` this item stands for ([start, end)
    # in ms from its start; None: open), whose sampled frames are the images.
    span: tuple[int | None, int | None] | None = None
    # The version of `key` listed or probed, which is the one read (None: any).
    version: str | None = None
    # A video frame: what was done to show it as a player does (display.Shown, as JSON).
    display: str | None = None
    # Dropped as a near-duplicate (dedupe): the key of the image kept in its stead.
    duplicate_of: str | None = None

    def placement(self) -> dict[str, str | None]:
        return {"split": self.split, "label": self.label, "group": self.group}


def list_source(request: RequestBase, config: Config) -> tuple[Storage, list[str]]:
    storage, versions = list_versions(request, config)
    return storage, list(versions)


def list_versions(request: RequestBase, config: Config) -> tuple[Storage, dict[str, str | None]]:
    """The listing, each key with the version listed (what a job's tasks then read)."""
    source, found = listing(request, config)
    assert isinstance(found, dict)  # no spread_from: never held by Ray
    return source, found


def listing(
    request: RequestBase, config: Config, spread_from: int | None = None
) -> tuple[Storage, dict[str, str | None] | Listed]:
    """The listing, each key with the version listed; at `spread_from` keys or more (None:
    never) it stays in Ray's blocks (a `Listed`: the job runs spread) and never reaches
    this process whole."""
    source_config = config.sources[request.name]
    source = open_storage(source_config.uri, config.source_s3(request.name))
    extensions = tuple(source_config.extensions)
    if source_config.kind == "manifest":  # keys from its file: read whatever version is there
        if spread_from is not None:  # they never need this process, whatever their number
            return source, held(manifest_keys(config, request.name))
        return source, dict.fromkeys(manifest_key_list(config, request.name))
    if source.uri.startswith("s3://"):  # more than a page of keys: listed by tasks
        return source, s3_versions(source, extensions, spread_from)
    if isinstance(source, LocalStorage):  # a large tree: its subtrees walked by tasks
        return source, local_versions(source, extensions, spread_from)
    return source, source.list_versions(extensions)


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


def probe(
    request: RequestBase,
    config: Config,
    storage: Storage,
    keys: list[str],
    versions: dict[str, str | None] | None = None,
) -> VideoPlan | None:
    """A video source: every video's metadata (no frame decoded), read from the version
    listed. None for images."""
    source_config = config.sources[request.name]
    if source_config.kind != "video":
        return None
    from motoray.video.plan import probe_all

    split = request.train_test_split
    group_by = split.group_by if split is not None else None
    limit = config.limits.max_image_pixels
    return probe_all(storage, keys, source_config.frames, group_by, limit, versions or {})


def image_count(keys: list[str], videos: VideoPlan | None) -> int:
    """Images the job will make: the listing's, or the frames the videos' metadata promise."""
    return len(keys) if videos is None else videos.expected_frames()


def place(
    request: RequestBase,
    config: Config,
    keys: list[str],
    boxes: SourceAnnotations | None = None,
    videos: VideoPlan | None = None,
    merged: dict[str, str] | None = None,
) -> Assignment:
    """Label, split group and split of every image (of every video or segment). A source
    with boxes and no folder labels is stratified by each image's most frequent category;
    outputs stay unlabelled. `merged`: see split.assign."""
    labels = labels_of(keys, config.sources[request.name].labels)
    split = request.train_test_split
    group_by = _group_by(split, videos is not None)
    if videos is not None:
        return videos.assign(split, request.seed, labels, group_by, merged)
    if labels is None and boxes is not None and split is not None and split.stratify:
        majority = {k: boxes.majority(k) for k in keys}
        return replace(assign(keys, split, request.seed, majority, merged=merged), label={})
    return assign(keys, split, request.seed, labels, merged=merged)


def items(
    keys: list[str],
    assignment: Assignment,
    boxes: SourceAnnotations | None = None,
    videos: VideoPlan | None = None,
    versions: dict[str, str | None] | None = None,
    dropped: dict[str, str] | None = None,
) -> list[Item]:
    """Every image (every time range of every video) with its placement and the version of
    its object to read (the probed one for a video); `dropped`: image -> the near-duplicate
    kept in its stead (dedupe)."""
    if videos is not None:  # one item per time range of every video
        return [
            Item(key, **assignment.placement(unit), span=span, version=videos.version(key))
            for key, unit, span in videos.ranges(keys)
        ]
    found = {} if boxes is None else boxes.boxes
    versions, dropped = versions or {}, dropped or {}
    return [
        Item(
            key,
            **assignment.placement(key),
            boxes=found.get(key),
            version=versions.get(key),
            duplicate_of=dropped.get(key),
        )
        for key in keys
    ]


def sample(
    keys: list[str],
    assignment: Assignment,
    videos: VideoPlan | None,
    count: int,
    boxes: SourceAnnotations | None = None,
) -> list[Item]:
    """Items for previews and estimates: `count` images spread over the listing, or the
    openings of up to `count` videos, each long enough for about `count` frames."""
    if videos is None:
        step = max(1, -(-len(keys) // count))
        return items(keys[::step][:count], assignment, boxes)
    readable = [key for key in keys if not isinstance(videos.videos[key], str)]
    step = max(1, -(-len(readable) // count))
    return [
        Item(key, **assignment.placement(unit), span=span, version=videos.version(key))
        for key, unit, span in (videos.opening(key, count) for key in readable[::step][:count])
    ]


def _group_by(split, video: bool) -> str:
    """The split's grouping: frames of one video are near-duplicates, so a video source
    groups by video unless told otherwise. (A grouping of the other kind of source is
    refused with the request: spec.source_errors.)"""
    chosen = split.group_by if split is not None and "group_by" in split.model_fields_set else None
    return chosen or ("video" if video else "image")
