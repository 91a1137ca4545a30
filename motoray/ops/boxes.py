"""Boxes through the operators: the box kernels, pure NumPy, vectorised over a whole stack.

A stack's boxes are one (M, 4) float64 array of corners `x0, y0, x1, y1` in the pixels of
the current image (the continuous plane: pixel (r, c) covers [c, c+1) x [r, r+1)), and an
`owner` array saying which image of the stack each row belongs to. A box kernel maps rows
through an operator's geometry with that image's concrete params, as the pixel kernel maps
the image; it never clips: `apply_step` clips to the output after every stage and keeps
the unclipped rows too, so a box's visible fraction is exact after any chain.

Every built-in geometry here is axis-aligned (scale, shift, mirror, quarter turn), so a box
stays a box and clipping commutes with every later stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Shape = tuple[int, int]  # (height, width) of the images the boxes are in
# (corners M x 4, owner M, concrete params per image, input shape) -> corners M x 4
BoxKernel = Callable[[np.ndarray, np.ndarray, list[dict], Shape], np.ndarray]


@dataclass(frozen=True)
class Boxes:
    """The boxes of a stack of images, as they go through the stages of a step."""

    visible: np.ndarray  # M x 4 corners, clipped to the image at every stage
    whole: np.ndarray  # M x 4 corners, never clipped: the box as if the image had no edges
    owner: np.ndarray  # M image indices (into the stack), ascending
    category: np.ndarray  # M category indices (into the source's categories)
    crowd: np.ndarray | None = None  # M bools: a crowd region (COCO iscrowd); None: none is

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, np.intp), np.zeros(0, np.intp))

    def is_crowd(self) -> np.ndarray:
        """One bool per row."""
        return np.zeros(len(self), bool) if self.crowd is None else self.crowd

    def __len__(self) -> int:
        return len(self.owner)

    def take(self, images: np.ndarray) -> Boxes:
        """The boxes of `images` (ascending stack indices), renumbered 0..len(images)-1."""
        rows = np.isin(self.owner, images)
        owner = np.searchsorted(images, self.owner[rows])
        crowd = None if self.crowd is None else self.crowd[rows]
        return Boxes(self.visible[rows], self.whole[rows], owner, self.category[rows], crowd)

    def mapped(self, kernel: BoxKernel, params: list[dict], shape: Shape, out: Shape) -> Boxes:
        """Through one stage: both versions in one kernel call, then clipped to `out`."""
        both = kernel(
            np.concatenate([self.visible, self.whole]),
            np.concatenate([self.owner, self.owner]),
            params,
            shape,
        )
        visible, whole = both[: len(self)], both[len(self) :]
        return Boxes(clip(visible, out), whole, self.owner, self.category, self.crowd)

    def of_image(self, image: int) -> np.ndarray:
        """Visible corners of one image's objects, for a window placed on one: a crowd
        region is many objects, not one, and never places a window."""
        return self.visible[(self.owner == image) & ~self.is_crowd()]


def clip(corners: np.ndarray, shape: Shape) -> np.ndarray:
    """Corners clipped to an image of `shape`; a box wholly outside becomes empty (x0 == x1
    or y0 == y1) on the nearest edge."""
    height, width = shape
    return np.clip(corners, 0, [width, height, width, height])


def visibility(boxes: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """(visible area in pixels, visible fraction of the whole box) of every row."""
    size = boxes.visible[:, 2:] - boxes.visible[:, :2]
    area = np.prod(np.maximum(size, 0), axis=1)
    whole = np.prod(boxes.whole[:, 2:] - boxes.whole[:, :2], axis=1)
    fraction = np.divide(area, whole, out=np.zeros_like(area), where=whole > 0)
    return area, fraction


def per_box(params: list[dict], owner: np.ndarray, name: str) -> np.ndarray:
    """One param of every box's image, as a float column."""
    return np.array([p[name] for p in params], np.float64)[owner]


# --- the box kernels of the built-ins ---------------------------------------------------------


def keep_boxes(corners: np.ndarray, owner: np.ndarray, params: list[dict], shape: Shape):
    """Colour operators move no pixel: boxes stay where they are."""
    return corners


def scale_boxes(corners: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """A resize by (sx, sy) per row: pixel edges map linearly, as in the resampling filter."""
    return corners * np.stack([sx, sy, sx, sy], axis=1)


def shift_boxes(corners: np.ndarray, owner: np.ndarray, params: list[dict], shape: Shape):
    """CROP, RANDOM_CROP: the window's top-left corner becomes the origin."""
    x, y = per_box(params, owner, "x"), per_box(params, owner, "y")
    return corners - np.stack([x, y, x, y], axis=1)


def flip_boxes(corners: np.ndarray, owner: np.ndarray, params: list[dict], shape: Shape):
    """FLIP: x -> W - x (horizontal) or y -> H - y (vertical); the corners swap."""
    height, width = shape
    horizontal = np.array([p["direction"] == "horizontal" for p in params])[owner]
    x0, y0, x1, y1 = corners.T
    mirrored_x = np.stack([width - x1, y0, width - x0, y1], axis=1)
    mirrored_y = np.stack([x0, height - y1, x1, height - y0], axis=1)
    return np.where(horizontal[:, None], mirrored_x, mirrored_y)


def rotate_boxes(corners: np.ndarray, owner: np.ndarray, params: list[dict], shape: Shape):
    """ROTATE, counter-clockwise as np.rot90: a point (x, y) of an H x W image goes to
    (y, W - x) at 90, (W - x, H - y) at 180 and (H - y, x) at 270."""
    height, width = shape
    angle = per_box(params, owner, "angle")[:, None]
    x0, y0, x1, y1 = corners.T
    turned = {
        90: np.stack([y0, width - x1, y1, width - x0], axis=1),
        180: np.stack([width - x1, height - y1, width - x0, height - y0], axis=1),
        270: np.stack([height - y1, x0, height - y0, x1], axis=1),
    }
    return np.where(angle == 90, turned[90], np.where(angle == 180, turned[180], turned[270]))


def resized_crop_boxes(corners: np.ndarray, owner: np.ndarray, params: list[dict], shape: Shape):
    """RANDOM_RESIZED_CROP: shift to the recorded box, then scale it to `size`."""
    shifted = shift_boxes(corners, owner, params, shape)
    out_h, out_w = params[0]["size"]  # one size per call, as the pixel kernel
    sx = out_w / per_box(params, owner, "width")
    sy = out_h / per_box(params, owner, "height")
    return scale_boxes(shifted, sx, sy)


# --- object-aware windows ---------------------------------------------------------------------


def window_containing_a_box(
    rng: np.random.Generator, image_hw: Shape, crop_hw: Shape, boxes: np.ndarray
) -> dict | None:
    """A crop_hw window at a position drawn uniformly among the integer positions whose
    window holds at least one of `boxes` whole; None if there is no such position.

    Each box allows a rectangle of top-left positions; their union is cut into the cells
    of the rectangles' edges, and one integer draw picks a position over the whole union,
    so every allowed position is equally likely however the rectangles overlap.
    """
    (H, W), (h, w) = image_hw, crop_hw
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    # Positions x with x <= x0 and x + w >= x1, inside [0, W - w]: inclusive ranges.
    x_lo = np.maximum(np.ceil(boxes[:, 2] - w), 0).astype(np.int64)
    x_hi = np.minimum(np.floor(boxes[:, 0]), W - w).astype(np.int64)
    y_lo = np.maximum(np.ceil(boxes[:, 3] - h), 0).astype(np.int64)
    y_hi = np.minimum(np.floor(boxes[:, 1]), H - h).astype(np.int64)
    fits = (x_lo <= x_hi) & (y_lo <= y_hi)
    if not fits.any():
        return None
    x_lo, x_hi, y_lo, y_hi = x_lo[fits], x_hi[fits] + 1, y_lo[fits], y_hi[fits] + 1  # half-open
    xs, ys = np.unique(np.concatenate([x_lo, x_hi])), np.unique(np.concatenate([y_lo, y_hi]))
    # Cell (i, j) = [ys[i], ys[i+1]) x [xs[j], xs[j+1]); it is allowed if a rectangle covers it.
    covered = (
        (y_lo[:, None, None] <= ys[None, :-1, None])
        & (ys[None, 1:, None] <= y_hi[:, None, None])
        & (x_lo[:, None, None] <= xs[None, None, :-1])
        & (xs[None, None, 1:] <= x_hi[:, None, None])
    ).any(axis=0)
    heights, widths = np.diff(ys), np.diff(xs)
    counts = (heights[:, None] * widths[None, :] * covered).ravel()
    cumulative = np.cumsum(counts)
    pick = int(rng.integers(0, int(cumulative[-1])))
    cell = int(np.searchsorted(cumulative, pick, side="right"))
    offset = pick - (int(cumulative[cell - 1]) if cell else 0)
    row, column = divmod(cell, len(widths))
    dy, dx = divmod(offset, int(widths[column]))
    return {"x": int(xs[column]) + dx, "y": int(ys[row]) + dy, "width": w, "height": h}
