"""Small on-disk image corpora for decoder, pipeline and storage tests.

write_bad_image_corpus: files that load_image must reject, with the reason it must give (under
the default limits). write_good_variants: unusual-but-valid files (modes, alpha, 16 bit, EXIF
rotation, CMYK, progressive) that must all decode to the same upright GOOD_SIZE picture: a
marker square at the top-left over a background, described per file in GOOD_VARIANTS.
Everything is deterministic and built in memory in well under a second.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_SIZE = (64, 48)  # (width, height) of every good variant once upright
MARKER = (slice(0, 16), slice(0, 16))  # rows, cols of the marker in the upright picture
BACKGROUND = (slice(24, 48), slice(16, 40))  # a patch of plain background
HALF_ALPHA = (slice(24, 48), slice(48, 64))  # rgba.png only: black at alpha 128 (~127 on white)

_RED, _BLUE = (220, 40, 40), (60, 110, 170)
_WHITE, _GRAY_MARK, _GRAY_BACK = (255,) * 3, (230,) * 3, (60,) * 3

# name -> (expected upright marker RGB, expected background RGB)
GOOD_VARIANTS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "rgb.jpg": (_RED, _BLUE),
    "progressive.jpg": (_RED, _BLUE),
    "cmyk.jpg": (_RED, _BLUE),
    "gray.jpg": (_GRAY_MARK, _GRAY_BACK),
    "exif_rotate6.jpg": (_RED, _BLUE),  # stored 48x64, displayed rotated 90 degrees clockwise
    "exif_rotate8.jpg": (_RED, _BLUE),  # stored 48x64, displayed rotated 90 degrees anticlockwise
    "rgb.png": (_RED, _BLUE),
    "gray.png": (_GRAY_MARK, _GRAY_BACK),
    "gray_alpha.png": (_WHITE, _GRAY_BACK),  # LA, marker fully transparent
    "palette.png": (_RED, _BLUE),  # P
    "palette_transparent.png": (_WHITE, _BLUE),  # P with a transparent palette index
    "rgb_colour_key.png": (_WHITE, _BLUE),  # RGB with a tRNS colour key on the marker colour
    "rgba.png": (_WHITE, _BLUE),  # marker alpha 0, plus the HALF_ALPHA patch
    "gray16.png": (_WHITE, (64, 64, 64)),  # I;16: marker 65535, background 16384
    "bilevel.png": (_WHITE, (0, 0, 0)),  # mode 1
    "junk_in_header.jpg": (_RED, _BLUE),  # 5 bytes libjpeg skips before DQT: kept, noted
}
# The one good variant whose manifest rows carry a note, and the note.
ODD_HEADER = ("junk_in_header.jpg", "JPEG header: 5 extraneous bytes before marker 0xdb")


# name -> a substring of str(DecodeError) that load_image must raise for it
BAD_REASONS: dict[str, str] = {
    "empty.jpg": "empty file",
    "truncated.jpg": "truncated JPEG",
    "truncated_header.jpg": "truncated JPEG",
    "truncated.png": "truncated PNG",
    "no_frame_header.jpg": "corrupt JPEG",
    "corrupt_idat.png": "corrupt PNG",
    "random.jpg": "not an image (unknown format",
    "html_page.jpg": "not an image (looks like HTML)",
    "s3_error.jpg": "not an image (looks like XML)",
    "gif_renamed.jpg": "unsupported format GIF",
    "webp_renamed.png": "unsupported format WEBP",
    "bomb.png": "image too large: 30000x30000 pixels > limit 50000000",
}


def write_bad_image_corpus(directory: str | Path) -> dict[str, str]:
    """Write every BAD_REASONS file into `directory`; return file name -> reason substring.

    The reasons hold under load_image's default limits (a "file too large" case depends on the
    caller's max_bytes, so it is not here: pass a small max_bytes to any good file instead).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in _bad_files().items():
        (directory / name).write_bytes(data)
    return dict(BAD_REASONS)


def write_good_variants(directory: str | Path) -> list[str]:
    """Write every GOOD_VARIANTS file into `directory`; return their names (sorted)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in _good_files().items():
        (directory / name).write_bytes(data)
    return sorted(GOOD_VARIANTS)


@functools.cache
def _bad_files() -> dict[str, bytes]:
    jpeg, png = _photo("JPEG"), _photo("PNG")
    files = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) * 6 // 10],  # cut inside the entropy-coded data
        "truncated_header.jpg": jpeg[:40],  # cut inside the headers
        "truncated.png": png[: len(png) // 2],
        "no_frame_header.jpg": b"\xff\xd8\xff" + bytes(200),
        "corrupt_idat.png": _png(_png_header(8, 8, 8, 0), b"\x78\x9c" + bytes(50)),
        "random.jpg": np.random.default_rng(0).bytes(4096),
        "html_page.jpg": _HTML,
        "s3_error.jpg": _S3_ERROR,
        "gif_renamed.jpg": _encode(Image.new("P", (8, 8)), "GIF"),
        "webp_renamed.png": _encode(Image.new("RGB", (8, 8)), "WEBP"),
        "bomb.png": _bomb_png(),
    }
    assert files.keys() == BAD_REASONS.keys()
    return files


@functools.cache
def _good_files() -> dict[str, bytes]:
    width, height = GOOD_SIZE
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = _BLUE
    rgb[MARKER] = _RED
    colour = Image.fromarray(rgb)
    gray = Image.fromarray(np.where(rgb[..., 0] == _RED[0], 230, 60).astype(np.uint8))
    marker = np.zeros((height, width), bool)
    marker[MARKER] = True

    rgba = np.dstack([rgb, np.where(marker, 0, 255).astype(np.uint8)])
    rgba[HALF_ALPHA] = (0, 0, 0, 128)
    gray_alpha = Image.merge("LA", [gray, Image.fromarray(rgba[..., 3])])
    palette = colour.convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    sixteen = Image.fromarray(np.where(marker, 65535, 16384).astype(np.uint16))

    # EXIF 6: stored row 0 is the displayed right edge, stored column 0 the displayed top edge;
    # EXIF 8: stored row 0 is the displayed left edge, stored column 0 the displayed bottom.
    # So the displayed top-left marker is stored bottom-left (6) or top-right (8).
    stored = np.empty((width, height, 3), np.uint8)  # 48 wide, 64 tall
    stored[:] = _BLUE
    rotate6, rotate8 = stored.copy(), stored.copy()
    rotate6[-16:, :16] = _RED
    rotate8[:16, -16:] = _RED

    rgb_jpeg = _encode(colour, "JPEG", quality=95)
    dqt = rgb_jpeg.index(b"\xff\xdb")
    files = {
        "rgb.jpg": rgb_jpeg,
        "junk_in_header.jpg": rgb_jpeg[:dqt] + b"hello" + rgb_jpeg[dqt:],
        "progressive.jpg": _encode(colour, "JPEG", quality=95, progressive=True),
        "cmyk.jpg": _encode(colour.convert("CMYK"), "JPEG", quality=95),
        "gray.jpg": _encode(gray, "JPEG", quality=95),
        "exif_rotate6.jpg": _encode(Image.fromarray(rotate6), "JPEG", quality=95, exif=_exif(6)),
        "exif_rotate8.jpg": _encode(Image.fromarray(rotate8), "JPEG", quality=95, exif=_exif(8)),
        "rgb.png": _encode(colour, "PNG"),
        "gray.png": _encode(gray, "PNG"),
        "gray_alpha.png": _encode(gray_alpha, "PNG"),
        "palette.png": _encode(palette, "PNG"),
        "palette_transparent.png": _encode(palette, "PNG", transparency=palette.getpixel((0, 0))),
        "rgb_colour_key.png": _encode(colour, "PNG", transparency=_RED),
        "rgba.png": _encode(Image.fromarray(rgba), "PNG"),
        "gray16.png": _encode(sixteen, "PNG"),
        "bilevel.png": _encode(gray.point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG"),
    }
    assert files.keys() == GOOD_VARIANTS.keys()
    return files


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@functools.cache
def _photo(fmt: str) -> bytes:
    """A 256x192 noisy gradient, big enough that cutting it in half cuts image data."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:192, 0:256]
    base = np.dstack([x, y, x + y]) % 256
    noisy = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    return _encode(Image.fromarray(noisy), fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def _png(ihdr: bytes, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    return struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)


@functools.cache
def _bomb_png(side: int = 30_000) -> bytes:
    """A complete, valid 1-bit side x side PNG of zeros: ~110 KB on disk, 900 Mpixel decoded."""
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    idat = b"".join(compressor.compress(row * rows_per_block) for _ in range(side // 1000))
    idat += compressor.compress(row * (side % rows_per_block)) + compressor.flush()
    return _png(_png_header(side, side, 1, 0), idat)


_HTML = b"""<!DOCTYPE html>
<html><head><title>404 Not Found</title></head>
<body><h1>Not Found</h1><p>The requested frame was not found on this server.</p></body></html>
"""

_S3_ERROR = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
"""
