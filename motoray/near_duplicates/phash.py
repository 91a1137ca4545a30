"""A 64-bit perceptual hash (pHash) of an image's centre: pure NumPy, many images at once.

Only the centre is hashed, the middle 60% of each side (MARGIN): broadcast puts what it
lays over a shot on its edges (tickers, score bugs, logos, replay wipes), and the shot is in
the middle. On the replays of `motoray sample-data --replays`, the whole frame put a ticker
copy 20 bits from its shot and two distinct shots of one track 6 bits apart; the centre puts
copies within 4 bits and distinct shots 8 or more apart.

The centre in grey, squashed to 32x32, goes through a 2-D DCT; the 8x8 lowest frequencies
(DC included) become 64 bits, each set where its coefficient is above their median. The bits
are those of `imagehash.phash` (row-major, the first one the most significant), so hashes
compare with the tools users already run. Re-encoding, rescaling and a small overlay change
a few bits; a different shot changes about half of them.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

SIDE = 32  # the grey image the DCT sees
MARGIN = 0.2  # of each side, left out of the hash (see above)
LOW = 8  # the low frequencies kept: LOW * LOW = 64 bits
BITS = LOW * LOW


def _dct_matrix(n: int) -> np.ndarray:
    """The (unnormalised) DCT-II as a matrix; scale does not matter to a median cut."""
    k = np.arange(n)[:, None]
    return np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))


# Only the LOW rows of the DCT are ever used: 8x32 @ 32x32 @ 32x8 per image.
_DCT_LOW = _dct_matrix(SIDE)[:LOW]
_WEIGHTS = (1 << np.arange(BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)


def phash(grey: np.ndarray) -> np.ndarray:
    """uint64 hashes of N grey 32x32 images (N x 32 x 32, any real dtype), or of one."""
    grey = np.asarray(grey, dtype=np.float64)
    single = grey.ndim == 2
    stack = grey[None] if single else grey
    if stack.shape[1:] != (SIDE, SIDE):
        raise ValueError(f"phash needs {SIDE}x{SIDE} grey images, got {grey.shape}")
    low = _DCT_LOW @ stack @ _DCT_LOW.T  # N x 8 x 8
    flat = low.reshape(len(stack), BITS)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    hashes = (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)
    return hashes[0] if single else hashes


def centre(image: Image.Image) -> Image.Image:
    """The part of the image that is hashed."""
    width, height = image.size
    box = (width * MARGIN, height * MARGIN, width * (1 - MARGIN), height * (1 - MARGIN))
    return image.crop(tuple(round(side) for side in box))


def grey_32(image: Image.Image) -> np.ndarray:
    """The 32x32 grey pixels pHash reads of the image's centre, as imagehash makes them
    of what it is given (Lanczos)."""
    small = centre(image).convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def grey_32_of_bytes(data: bytes, max_pixels: int) -> tuple[np.ndarray, int]:
    """Decode an image file just enough for its hash: a JPEG at 1/8 scale or less (its DCT
    does most of the shrinking), in grey. Also returns its pixel count (full size). Raises
    what Pillow raises for a file it cannot read, ValueError for one over `max_pixels`."""
    found = _grey_jpeg(data, max_pixels)
    if found is not None:
        return found
    with Image.open(io.BytesIO(data)) as image:
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise ValueError(f"{image.width}x{image.height} is over limits.max_image_pixels")
        # JPEG only: the smallest scale whose centre still covers 32x32.
        image.draft("L", (round(SIDE / (1 - 2 * MARGIN)),) * 2)
        return grey_32(image), pixels


def _grey_jpeg(data: bytes, max_pixels: int) -> tuple[np.ndarray, int] | None:
    """The same through libjpeg-turbo straight (simplejpeg): the scale draft() picks, in
    grey, the same pixels for ~10% less CPU than Pillow's draft. None where it cannot decode
    the file cleanly (not a JPEG, CMYK, damage, a warning): Pillow then decides."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except Exception:  # not a JPEG libjpeg reads
        return None
    if width * height > max_pixels or colorspace in ("CMYK", "YCCK"):
        return None  # Pillow names the one, and converts the other its own way
    fits = min(width, height) // round(SIDE / (1 - 2 * MARGIN))
    scale = next(s for s in (8, 4, 2, 1) if s <= max(fits, 1))  # as draft() picks it
    try:
        grey = simplejpeg.decode_jpeg(
            data, "GRAY", strict=True, min_height=-(-height // scale), min_width=-(-width // scale)
        )
    except Exception:  # damage or a warning: Pillow refuses or reads it as it does
        return None
    return grey_32(Image.fromarray(grey[:, :, 0])), width * height


def grey_32_of_pixels(rgb: np.ndarray) -> np.ndarray:
    """The same for decoded pixels (a video frame, an image as a job decodes it), HxWx3
    uint8: shrunk in two steps (Pillow's reducing_gap), ~2x faster than Lanczos alone from
    a large image; the same pixels as Lanczos alone below 128x128 (a video frame's 58x58)."""
    grey = centre(Image.fromarray(rgb)).convert("L")
    small = grey.resize((SIDE, SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(small, dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes, elementwise."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))
