"""Pure NumPy kernels shared by operators (no Ray, no Pillow)."""

from __future__ import annotations

import math

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


def random_resized_box(
    rng: np.random.Generator,
    image_hw: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> dict:
    """torchvision's RandomResizedCrop.get_params, drawing from `rng`.

    Up to 10 tries of an area (a fraction of the image, uniform in `scale`) and an
    aspect ratio width / height (log-uniform in `ratio`); the first box that fits is
    placed uniformly at random. Otherwise the whole image, cut to the nearest ratio
    in range and centred (`fallback`: True).
    """
    H, W = image_hw
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = H * W * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= W and 0 < h <= H:
            y, x = (int(v) for v in rng.integers(0, [H - h + 1, W - w + 1]))
            return {"x": x, "y": y, "width": w, "height": h, "fallback": False}
    w, h, image_ratio = W, H, W / H
    if image_ratio < ratio[0]:
        h = min(H, max(1, round(W / ratio[0])))  # max(1, ...): torchvision can yield 0 here
    elif image_ratio > ratio[1]:
        w = min(W, max(1, round(H * ratio[1])))
    return {"x": (W - w) // 2, "y": (H - h) // 2, "width": w, "height": h, "fallback": True}


CHUNK_PIXELS = 1 << 22  # per vectorised step: bounds float copies to ~50 MB whatever the batch


def _chunks(images: np.ndarray) -> list[slice]:
    """Slices of whole images, about CHUNK_PIXELS pixels each."""
    step = max(1, CHUNK_PIXELS // (images.shape[1] * images.shape[2]))
    return [slice(i, i + step) for i in range(0, len(images), step)]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round half to even and clip: the one place floats become pixels again. Rounds `x`,
    a kernel's own float copy, in place: two more copies were most of a kernel's peak."""
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def _pixels(images: np.ndarray) -> np.ndarray:
    """N x H x W x C uint8 as N x H x W items of C bytes: moving whole pixels instead of
    single channels makes flips and rotations about twice as fast."""
    return images.view(np.dtype((np.void, images.shape[-1]))).reshape(images.shape[:-1])


def _channels(pixels: np.ndarray, c: int) -> np.ndarray:
    return pixels.view(np.uint8).reshape(*pixels.shape, c)


def flip(images: np.ndarray, params: list[dict]) -> np.ndarray:
    """Mirror each image: "horizontal" swaps left and right, "vertical" top and bottom."""
    pixels = _pixels(np.ascontiguousarray(images))
    out = np.empty_like(pixels)
    for n, p in enumerate(params):
        out[n] = pixels[n, :, ::-1] if p["direction"] == "horizontal" else pixels[n, ::-1]
    return _channels(out, images.shape[-1])


def rotate(images: np.ndarray, params: list[dict]) -> np.ndarray:
    """Turn each image counter-clockwise by its angle (90, 180 or 270), as np.rot90.

    90 and 270 swap height and width; one call may mix them with 180 only if the
    outputs still share a shape (square images).
    """
    pixels = _pixels(np.ascontiguousarray(images))
    turned = [np.rot90(image, p["angle"] // 90) for image, p in zip(pixels, params)]
    if len({t.shape for t in turned}) > 1:
        raise ValueError("cannot mix 180 with 90/270 on non-square images: shapes differ")
    out = np.empty((len(turned), *turned[0].shape), pixels.dtype)
    for n, t in enumerate(turned):
        out[n] = t
    return _channels(out, images.shape[-1])


# ITU-R 601-2 luma weights, in 1/65536ths: Pillow's convert("L") uses exactly these.
LUMA = (19595, 38470, 7471)
_LUMA_FLOAT = np.array(LUMA, np.float32) / 65536


def grayscale(images: np.ndarray, params: list[dict] | None = None) -> np.ndarray:
    """RGB -> luma, repeated over 3 channels so the outputs stay RGB; Pillow's "L" rounding.

    In float32, yet exact: every value stays an integer below 2**24.
    """
    luma = np.empty(images.shape[:-1], np.uint8)
    for part in _chunks(images):
        y = images[part].astype(np.float32) @ np.array(LUMA, np.float32)  # integers
        y += 0x8000
        y *= 1 / 65536  # a power of two: exact; the cast below floors, as Pillow's >> 16
        luma[part] = y
    return np.repeat(luma[..., None], 3, axis=-1)


def _luma(x: np.ndarray) -> np.ndarray:
    """Float luma of float RGB images N x H x W x 3 -> N x H x W x 1, in a fixed order of
    float32 operations (see _resample_rows: no BLAS)."""
    r, g, b = _LUMA_FLOAT
    luma = x[..., 0] * r
    term = x[..., 1] * g
    luma += term
    np.multiply(x[..., 2], b, out=term)
    luma += term
    return luma[..., None]


def color_jitter(images: np.ndarray, params: list[dict]) -> np.ndarray:
    """Brightness, then contrast, then saturation, each with its own factor per image.

    As torchvision's and Pillow's ImageEnhance: each step blends the image with a
    "degenerate" one, f * x + (1 - f) * base, in float, clipped to [0, 255] after
    every step and rounded once at the end:

        brightness b:  base = 0                          (b = 0: black)
        contrast   c:  base = mean luma of the image     (c = 0: flat gray)
        saturation s:  base = luma of each pixel         (s = 0: grayscale)

    A step whose factors are all 1 is skipped; all three at 1 give the image back.
    """
    out = np.empty_like(images)
    for part in _chunks(images):
        out[part] = _color_jitter(images[part], params[part])
    return out


def _color_jitter(images: np.ndarray, params: list[dict]) -> np.ndarray:
    x = images.astype(np.float32)
    for name in ("brightness", "contrast", "saturation"):
        factor = np.array([p[name] for p in params], np.float32)[:, None, None, None]
        if (factor == 1).all():
            continue
        if name == "brightness":
            x *= factor
        else:
            base = _luma(x)
            if name == "contrast":
                base = base.mean(axis=(1, 2), keepdims=True)
            x *= factor
            x += (1 - factor) * base
        np.clip(x, 0, 255, out=x)
    return to_uint8(x)


def _taps(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which source pixels make each of `size` output pixels, and their weights (size x K).

    Pillow's BILINEAR: a triangle filter on pixel centres that widens by the scale
    when shrinking (so downscaling is antialiased, as in Pillow and torchvision v2's
    antialias=True), renormalised at the edges (which replicate).
    """
    scale = length / size
    support = max(scale, 1.0)
    centre = ((np.arange(size) + 0.5) * scale)[:, None]
    first = np.maximum(np.floor(centre - support + 0.5), 0)
    taps = first + np.arange(2 * math.ceil(support) + 1)
    weights = np.maximum(1 - np.abs(taps + 0.5 - centre) / support, 0)
    weights[taps >= length] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.minimum(taps, length - 1).astype(np.intp), weights.astype(np.float32)


def _resample_rows(a: np.ndarray, size: int) -> np.ndarray:
    """Resample axis 0 of a 2-D array (uint8 or float32) to `size` rows of float32.

    Tap by tap, one float32 multiply and one add each, always in the same order. Not a
    matmul: BLAS sums a dot product in the order its CPU-specific kernel picks, and a
    request then made other bytes on another CPU (seen: two RANDOM_RESIZED_CROP outputs
    of the golden request moved by one level between machines).
    """
    if a.shape[0] == size:
        return a.astype(np.float32, copy=False)  # the weights would be the identity
    index, weights = _taps(a.shape[0], size)
    out = weights[:, :1] * a[index[:, 0]]
    for k in range(1, index.shape[1]):
        out += weights[:, k : k + 1] * a[index[:, k]]
    return out


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one H x W x C image to size (height, width); float32, not rounded.

    Separable: rows first, then the columns (transposed into rows).
    """
    (h, w, c), (out_h, out_w) = image.shape, size
    rows = _resample_rows(image.reshape(h, w * c), out_h)
    columns = rows.reshape(out_h, w, c).transpose(1, 0, 2).reshape(w, out_h * c)
    return _resample_rows(columns, out_w).reshape(out_w, out_h, c).transpose(1, 0, 2)


def resized_crop(images: np.ndarray, params: list[dict]) -> np.ndarray:
    """Cut each image's box and resize it to the recorded size: N x H x W x C -> N x h x w x C.

    Boxes differ in size from image to image, so this loops over the images; each
    resize is vectorised.
    """
    out_h, out_w = params[0]["size"]
    out = np.empty((len(images), out_h, out_w, images.shape[-1]), np.uint8)
    for n, (image, p) in enumerate(zip(images, params)):
        box = image[p["y"] : p["y"] + p["height"], p["x"] : p["x"] + p["width"]]
        out[n] = to_uint8(resize(box, p["size"]))
    return out
