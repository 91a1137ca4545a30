"""Which boxes an output keeps, and how the manifest records them.

Like albumentations' BboxParams(min_visibility, min_area): a box is clipped to the output,
then dropped if the visible part is less than `min_visibility` of the whole box, or less
than `min_area` pixels. Unlike it, every drop is counted (`boxes_dropped`), per output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from motoray.ops.boxes import Boxes, visibility

DECIMALS = 3  # of a pixel: boxes are recorded rounded, so their text is short and stable


@dataclass(frozen=True)
class BoxRules:
    min_visibility: float = 0.3
    min_area: float = 1.0


def kept(boxes: Boxes, rules: BoxRules) -> np.ndarray:
    """Which rows survive the output."""
    area, fraction = visibility(boxes)
    return (area > 0) & (area >= rules.min_area) & (fraction >= rules.min_visibility)


def records(
    boxes: Boxes, images: int, rules: BoxRules, names: Sequence[str]
) -> list[tuple[str, int]]:
    """For each of `images` outputs (the boxes' owners): the manifest's `boxes` JSON, a list
    of {"bbox": [x, y, width, height], "category": name} in output pixels (a crowd region
    adds "iscrowd": 1), and how many of its boxes were dropped."""
    keep = kept(boxes, rules)
    total = np.bincount(boxes.owner, minlength=images)
    corners = boxes.visible[keep]
    xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
    xywh = np.round(xywh, DECIMALS) + 0.0  # + 0.0: no "-0.0" in the text
    quoted = [json.dumps(name) for name in names]
    texts: list[list[str]] = [[] for _ in range(images)]
    crowd = boxes.is_crowd()[keep].tolist()
    for owner, category, (x, y, w, h), is_crowd in zip(
        boxes.owner[keep].tolist(), boxes.category[keep].tolist(), xywh.tolist(), crowd
    ):
        # Written out rather than json.dumps'd: the same text, several times faster.
        box = f'{{"bbox": [{x!r}, {y!r}, {w!r}, {h!r}], "category": {quoted[category]}'
        texts[owner].append(box + (', "iscrowd": 1}' if is_crowd else "}"))
    kept_per = np.bincount(boxes.owner[keep], minlength=images)
    return [
        ("[" + ", ".join(text) + "]", int(n - k))
        for text, n, k in zip(texts, total.tolist(), kept_per.tolist())
    ]
