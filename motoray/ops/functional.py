"""Pure NumPy kernels shared by operators (no Ray, no Pillow)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

POSITIONS = (
    "top_left",
    "top_center",
    "top_right",
    "center_left",
    "center",
    "center_right",
    "bottom_left",
    "bottom_center",
    "bottom_right",
)
# The original system's name: it cut img[0:h, 0:w].
ALIASES = {"left_down_center": "top_left"}


def position_box(position: str, image_hw: tuple[int, int], crop_hw: tuple[int, int]) -> dict:
    """The crop box {x, y, width, height} of a named position; centred offsets use floor."""
    (H, W), (h, w) = image_hw, crop_hw
    vertical, _, horizontal = ALIASES.get(position, position).partition("_")
    if position == "center":
        vertical, horizontal = "center", "center"
    y = {"top": 0, "center": (H - h) // 2, "bottom": H - h}[vertical]
    x = {"left": 0, "center": (W - w) // 2, "right": W - w}[horizontal]
    return {"x": x, "y": y, "width": w, "height": h}


def random_box(rng: np.random.Generator, image_hw: tuple[int, int], crop_hw: tuple[int, int]):
    """A box of size crop_hw at a uniformly random position inside the image."""
    (H, W), (h, w) = image_hw, crop_hw
    y, x = (int(v) for v in rng.integers(0, [H - h + 1, W - w + 1]))
    return {"x": x, "y": y, "width": w, "height": h}


def crop(images: np.ndarray, boxes: list[dict]) -> np.ndarray:
    """Cut one same-sized box per image: images N x H x W x C -> N x h x w x C.

    One gather over a strided window view, instead of a Python loop of slices.
    """
    h, w = boxes[0]["height"], boxes[0]["width"]
    windows = sliding_window_view(images, (h, w), axis=(1, 2))  # N, H-h+1, W-w+1, C, h, w
    ys = np.fromiter((b["y"] for b in boxes), dtype=np.intp, count=len(boxes))
    xs = np.fromiter((b["x"] for b in boxes), dtype=np.intp, count=len(boxes))
    return np.ascontiguousarray(windows[np.arange(len(boxes)), ys, xs].transpose(0, 2, 3, 1))
