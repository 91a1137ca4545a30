"""The hash pre-pass on a worker: items in, one row per image (per sampled frame) out. No Ray.

The driver sends only the items whose object is not in the cache as it is now (`identity`:
the listing's ETag, or a local file's size and mtime). Each is decoded at reduced scale (a
JPEG at 1/8 or less) and hashed. A file that cannot be decoded gets a row with a null hash:
it is never anyone's near-duplicate, and the job records its failure where it processes it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from motoray.near_duplicates.phash import grey_32_of_bytes, grey_32_of_pixels, phash
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.source import Item
from motoray.storage import Refused
from motoray.storage.local import LocalStorage

# One row per image: the item it came from (an image's key, or a video range's id), the
# object's identity, the image's key, its hash (null: not decodable) and its pixels.
SCHEMA = pa.schema(
    [
        ("item", pa.string()),
        ("version", pa.string()),
        ("key", pa.string()),
        ("hash", pa.uint64()),
        ("pixels", pa.int64()),
    ]
)
FRAME_SIDE = 96  # a video frame is decoded to this square (its centre: 58x58) to be hashed


def item_id(spec: JobSpec, item: Item) -> str:
    """What the cache knows an item by: an image's key; a video range with the sampling
    that picks its frames (another sampling, other frames)."""
    if spec.frames is None:
        return item.key
    sampling = json.dumps(spec.frames.model_dump(mode="json"), sort_keys=True)
    return f"{item.key}#span={item.span}#frames={sampling}"


def hash_items(spec: JobSpec, items: Sequence[Item]) -> pa.Table:
    """Every image's row (SCHEMA) of `items`, read as the object is now (its `identity`)."""
    rows: list[dict] = []
    for item in items:
        item = dataclasses.replace(item, version=identity(spec, item))  # read what is keyed
        # A range without a frame still gets a row: a rerun then knows it, decodes nothing.
        found = (_frames(spec, item) if spec.frames else None) or [_image(spec, item)]
        rows += [{"item": item_id(spec, item), "version": item.version, **row} for row in found]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def identity(spec: JobSpec, item: Item) -> str:
    """The object's identity: the version listed (S3: its ETag), else a local file's size
    and mtime (one lstat), else what opening it names."""
    if item.version is not None:
        return item.version
    try:
        if isinstance(spec.source, LocalStorage):
            return spec.source.version_of(item.key)
        with spec.source.open(item.key) as f:
            return f.version
    except (Refused, FileNotFoundError):
        return ""  # unreadable: hashed again next time, and failed by the job itself


def _image(spec: JobSpec, item: Item) -> dict:
    if spec.frames is not None:  # a range that gave no frame
        return {"key": item.key, "hash": None, "pixels": 0}
    try:
        data = spec.source.read(item.key, spec.limits.max_file_bytes, item.version)
        grey, pixels = grey_32_of_bytes(data, spec.limits.max_image_pixels)
    except Exception:  # a damaged or refused file: no hash; the job records why
        return {"key": item.key, "hash": None, "pixels": 0}
    return {"key": item.key, "hash": int(phash(grey)), "pixels": pixels}


def _frames(spec: JobSpec, item: Item) -> list[dict]:
    from motoray.video import frames as video_frames

    small = dataclasses.replace(spec, size=(FRAME_SIDE, FRAME_SIDE))
    found = [
        (frame.key, None if isinstance(image, str) else grey_32_of_pixels(image))
        for frame, image in video_frames.decoded(small, [item])
    ]
    grey = [g for _, g in found if g is not None]
    hashes = iter(phash(np.stack(grey)).tolist() if grey else [])
    return [  # pixels: 0, dedupe is for image sources
        {"key": key, "hash": None if g is None else next(hashes), "pixels": 0} for key, g in found
    ]
