"""Strict decoding: damaged real frames are a DecodeError with a reason, never a picture.

The corpus is made of rendered race frames encoded the ways frames arrive (motoray's
encoder, Pillow baseline, progressive, EXIF-rotated, CMYK, RGB-coded, with restart markers;
PNG RGB and RGBA), then damaged the ways uploads and disks damage them: cut anywhere in the
image data, with an EOI/IEND appended (an interrupted upload a tool "repaired"), zero-padded
to the full length (a preallocated file), bits flipped, a block zeroed. Each damaged file
is checked through load_image (JPEGs: the direct libjpeg-turbo path) and, for JPEGs, through
the Pillow path too, which takes the JPEGs libjpeg-turbo cannot read: Pillow swallows libjpeg's
warnings, so that path must check the scan itself.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import ExifTags, Image

from motoray import imageio
from motoray.imageio import DecodeError, encode_jpeg, encode_png, load_image
from motoray.sample_data import render_frame, write_sample_frames

SIZE = (480, 270)
EOI, IEND = b"\xff\xd9", struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
CUTS = (0.05, 0.3, 0.6, 0.9, 0.995)  # fractions of the image data (the scans, the IDATs)


def _pillow(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}), **options)
    return buf.getvalue()


@functools.cache
def _sources() -> dict[str, bytes]:
    """Intact files, name -> bytes. 640x360 keeps the corpus quick; the scan is ~50-250 KB."""
    frame = render_frame(11, (640, 360))
    image = Image.fromarray(frame)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    rgba = np.dstack(
        [frame, np.linspace(0, 255, frame.shape[1], dtype=np.uint8)[None].repeat(360, 0)]
    )
    return {
        "motoray.jpg": encode_jpeg(frame, 90),
        "pillow.jpg": _pillow(image),
        "gray.jpg": encode_jpeg(frame[..., 1], 90),
        "progressive.jpg": _pillow(image, progressive=True),
        "exif_rotate6.jpg": _pillow(image, exif=exif.tobytes()),
        "exif_progressive.jpg": _pillow(image, exif=exif.tobytes(), progressive=True),
        "restart_markers.jpg": _pillow(image, restart_marker_blocks=4),
        "cmyk.jpg": _pillow(image.convert("CMYK")),
        "cmyk_progressive.jpg": _pillow(image.convert("CMYK"), progressive=True),
        "rgb_coded.jpg": _pillow(image, keep_rgb=True),
        "rgb.png": encode_png(frame),
        "rgba.png": encode_png(rgba),
        "pillow.png": _pillow(image, "PNG", optimize=True),
    }


def _scan_span(data: bytes) -> tuple[int, int]:
    """From the end of the first scan header to the EOI: the entropy-coded data."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big"), data.rindex(EOI)


def _chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """PNG chunks as (type, offset of the length field, data length)."""
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        chunks.append((data[at + 4 : at + 8], at, length))
        at += 12 + length
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _flip(data: bytes, position: int, bit: int = 0) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 1 << bit
    return bytes(damaged)


def _jpeg_damage(data: bytes) -> dict[str, bytes]:
    start, end = _scan_span(data)
    damaged = {}
    for fraction in CUTS:
        cut = data[: start + int((end - start) * fraction)]
        damaged[f"cut{fraction}"] = cut
        damaged[f"cut{fraction}+eoi"] = cut + EOI
        damaged[f"cut{fraction}+zeros"] = cut + bytes(len(data) - len(cut))
        damaged[f"cut{fraction}+zeros+eoi"] = cut + bytes(len(data) - len(cut) - 2) + EOI
    damaged["no_eoi"] = data[:end]  # every scan whole, only the EOI missing
    middle = (start + end) // 2
    damaged["zeroed_4k_block"] = data[:middle] + bytes(4096) + data[middle + 4096 :]
    # A progressive scan header's successive approximation bit flipped: libjpeg warns,
    # Pillow decodes the picture anyway.
    second = data.find(b"\xff\xda", start)
    if second > 0:
        first = data.index(b"\xff\xda")
        damaged["scan_header_al_flip"] = _flip(data, first + 5 + 2 * data[first + 4] + 2)
    # Progressive files: cut exactly between two scans, an EOI appended. libjpeg accepts these
    # without a warning (the format allows it), so only counting the scans catches them.
    scan = data.find(b"\xff\xda", start)
    while scan > 0:
        damaged[f"cut_before_scan_at_{scan}+eoi"] = data[:scan] + EOI
        scan = data.find(b"\xff\xda", scan + 2)
    return damaged


def _png_damage(data: bytes) -> dict[str, bytes]:
    chunks = _chunks(data)
    idats = [(at, length) for kind, at, length in chunks if kind == b"IDAT"]
    start, end = idats[0][0], idats[-1][0] + 12 + idats[-1][1]
    damaged = {}
    for fraction in CUTS:
        cut = data[: start + int((end - start) * fraction)]
        damaged[f"cut{fraction}"] = cut
        damaged[f"cut{fraction}+iend"] = cut + IEND
        damaged[f"cut{fraction}+zeros"] = cut + bytes(len(data) - len(cut))
        # The zlib stream cut, but re-wrapped in a well-formed IDAT with a good CRC.
        stream = b"".join(data[at + 8 : at + 8 + length] for at, length in idats)
        repaired = _chunk(b"IDAT", stream[: int(len(stream) * fraction)])
        damaged[f"idat_stream_cut{fraction}_rewrapped"] = data[:start] + repaired + data[end:]
    damaged["no_iend"] = data[:end]  # all pixel data there, the file cut after it
    damaged["iend_crc_cut"] = data[:-2]
    damaged["ihdr_bit_flip"] = _flip(data, 8 + 8 + 5)  # in the height: IHDR's CRC is wrong
    for at, length in idats[:: max(1, len(idats) // 3)]:
        damaged[f"idat_bit_flip_at_{at}"] = _flip(data, at + 8 + length // 2, 3)
    damaged["idat_crc_flip"] = _flip(data, idats[0][0] + 8 + idats[0][1])
    damaged["iend_crc_flip"] = _flip(data, len(data) - 1)
    return damaged


def _damaged_corpus() -> list[tuple[str, str, bytes]]:
    corpus = []
    for source, data in _sources().items():
        damage = _png_damage(data) if source.endswith(".png") else _jpeg_damage(data)
        corpus += [(source, name, damaged) for name, damaged in damage.items()]
    return corpus


CORPUS = _damaged_corpus()


def _assert_rejected(data: bytes, source: str) -> str:
    """DecodeError at full size and at SIZE (the draft-scale decode), naming the format; for a
    JPEG, from the Pillow path on its own too."""
    fmt = "PNG" if source.endswith(".png") else "JPEG"
    for size in (None, SIZE):
        with pytest.raises(DecodeError) as error:
            load_image(data, size)
        reason = str(error.value)
        assert reason.startswith((f"truncated {fmt}", f"corrupt {fmt}")), reason
    if fmt == "JPEG":
        with pytest.raises(DecodeError, match=r"^(truncated|corrupt) JPEG: .*"):
            imageio._decode(data, "JPEG", SIZE, 10**8)
    return reason


@pytest.mark.parametrize(
    ("source", "damage", "data"), CORPUS, ids=[f"{s}-{d}" for s, d, _ in CORPUS]
)
def test_damaged_file_is_a_decode_error_with_a_reason(
    source: str, damage: str, data: bytes
) -> None:
    _assert_rejected(data, source)


def test_intact_sources_decode_and_progressive_scan_cuts_are_in_the_corpus() -> None:
    for name, data in _sources().items():  # the intact sources decode, on both paths
        image = load_image(data, SIZE)
        assert image.shape == (SIZE[1], SIZE[0], 3)
        if name.endswith(".jpg"):
            np.testing.assert_array_equal(image, imageio._decode(data, "JPEG", SIZE, 10**8))
    scan_cuts = [s for s, d, _ in CORPUS if d.startswith("cut_before_scan")]
    assert {"progressive.jpg", "exif_progressive.jpg", "cmyk_progressive.jpg"} <= set(scan_cuts)
    assert len(scan_cuts) >= 3 * 8


def test_cut_with_eoi_decodes_leniently_but_is_rejected(tmp_path: Path) -> None:
    """The issue's case: sample frames cut at 60% with an EOI appended decode (lenient libjpeg,
    as Pillow does) with their lower part grey. None is accepted; nor is the cut alone."""
    for path in write_sample_frames(tmp_path, 6, (640, 360), frames_per_clip=3):
        data = path.read_bytes()
        start, end = _scan_span(data)
        cut = data[: start + (end - start) * 6 // 10] + EOI
        lenient = simplejpeg.decode_jpeg(cut, "RGB", strict=False)
        intact = simplejpeg.decode_jpeg(data, "RGB")
        assert np.abs(lenient.astype(int) - intact).mean() > 5  # a damaged picture, not noise
        reason = _assert_rejected(cut, "frame.jpg")
        assert reason == "corrupt JPEG: premature end of data segment (libjpeg warning)"
        reason = _assert_rejected(data[: len(cut) - 2], "frame.jpg")
        assert reason == "truncated JPEG: premature end of JPEG file (libjpeg warning)"


@pytest.mark.parametrize("source", [s for s in _sources() if s.endswith(".jpg")])
def test_scan_bit_flips_libjpeg_warns_about_are_rejected(source: str) -> None:
    """JPEG has no checksum: most single-bit flips in a scan decode without a word from libjpeg
    (a block's colours change) and no decoder can tell. Those libjpeg does warn about (a bad
    Huffman code, a desync, a marker out of place) must be rejected on every path."""
    data = _sources()[source]
    colorspace = "CMYK" if source.startswith("cmyk") else "RGB"
    start, end = _scan_span(data)
    rng = np.random.default_rng(sum(data[:64]))
    warned = 0
    for position in rng.integers(start, end, 60):
        flipped = _flip(data, int(position), int(rng.integers(0, 8)))
        try:
            simplejpeg.decode_jpeg(flipped, colorspace, min_height=1, min_width=1)
        except ValueError as e:
            if not str(e).startswith(imageio._DAMAGE_WARNINGS):
                continue  # a libjpeg error: Pillow rejects it too (the mutation test covers it)
        else:
            continue
        warned += 1
        _assert_rejected(flipped, source)
    assert warned >= 5  # the test saw real cases, not none


def test_png_damage_is_caught_before_pillow_accepts_it() -> None:
    """What our chunk walk adds: Pillow alone decodes these to pictures."""
    data = _sources()["rgb.png"]
    damage = _png_damage(data)
    for name in ("no_iend", "iend_crc_cut", "iend_crc_flip", "idat_crc_flip"):
        image = Image.open(io.BytesIO(damage[name]))
        image.load()  # Pillow: no complaint
        assert "PNG" in _assert_rejected(damage[name], "rgb.png")


def test_intact_files_with_trailing_bytes_still_decode() -> None:
    """Strict about the image data, not about what follows it: bytes after EOI/IEND (a
    tool's trailer, a second concatenated image) are not damage."""
    for data in _sources().values():
        image = load_image(data + b"\x00" * 100 + b"trailer", SIZE)
        np.testing.assert_array_equal(image, load_image(data, SIZE))


def test_a_header_warning_is_not_damage() -> None:
    """libjpeg also warns about oddities it decodes exactly, e.g. an unknown JFIF revision: such
    a file still decodes, to the pixels it had before."""
    data = _sources()["pillow.jpg"]
    assert data[6:11] == b"JFIF\x00"
    odd = data[:11] + b"\x02" + data[12:]  # JFIF 2.01
    with pytest.raises(ValueError, match="unknown JFIF revision"):
        simplejpeg.decode_jpeg(odd, "RGB")
    np.testing.assert_array_equal(load_image(odd, SIZE), load_image(data, SIZE))
