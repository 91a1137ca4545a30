from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import ExifTags, Image, ImageFile

from motoray import imageio, jpegmarkers
from motoray.imageio import DecodeError, encode_jpeg, encode_png, load_image
from motoray.sample_data import render_frame
from tests.corpus import (
    BACKGROUND,
    BAD_REASONS,
    GOOD_SIZE,
    GOOD_VARIANTS,
    HALF_ALPHA,
    MARKER,
    write_bad_image_corpus,
    write_good_variants,
)

WIDTH, HEIGHT = GOOD_SIZE


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bad")
    assert write_bad_image_corpus(directory) == BAD_REASONS
    return directory


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("good")
    assert write_good_variants(directory) == sorted(GOOD_VARIANTS)
    return directory


@pytest.fixture(scope="module")
def frame_jpeg() -> bytes:
    return encode_jpeg(render_frame(3, (1920, 1080)), quality=90)


def _full_decode_resize(data: bytes, size: tuple[int, int]) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- bad inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BAD_REASONS))
def test_bad_corpus_is_rejected_with_reason(bad_dir: Path, name: str) -> None:
    with pytest.raises(DecodeError) as error:
        load_image((bad_dir / name).read_bytes(), (32, 24))
    assert BAD_REASONS[name] in str(error.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff", "truncated JPEG"),
        (b"\xff\xd8", "truncated JPEG"),
        (b"\x89PNG", "truncated PNG"),
        (b"\x00\x01\x02\x03", "not an image (unknown format, starts with 00010203)"),
        (b"   \n", "not an image (looks like text)"),
        (b"\xef\xbb\xbf<html><body>oops</body></html>", "not an image (looks like HTML)"),
        (b'{"error": "NoSuchKey"}', "not an image (looks like JSON)"),
        (b"BM\x00\x00\x00\x00\x00\x00\x00\x00", "unsupported format BMP"),
        (b"II*\x00\x08\x00\x00\x00", "unsupported format TIFF"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "unsupported format PDF"),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00", "unsupported format ISO-BMFF/heic"),
    ],
)
def test_small_bad_inputs(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as error:
        load_image(data)
    assert reason in str(error.value)


def test_limits_are_checked_before_decoding(good_dir: Path) -> None:
    data = (good_dir / "rgb.jpg").read_bytes()
    with pytest.raises(DecodeError) as error:
        load_image(data, max_bytes=100)
    assert str(error.value) == f"file too large: {len(data)} bytes > limit 100"
    with pytest.raises(DecodeError) as error:
        load_image(data, max_pixels=1000)
    assert str(error.value) == f"image too large: {WIDTH}x{HEIGHT} pixels > limit 1000"
    assert load_image(data, max_bytes=len(data), max_pixels=WIDTH * HEIGHT).shape == (48, 64, 3)


def test_bomb_does_not_depend_on_or_change_pillow_globals(bad_dir: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # even with Pillow's own guard off, ours holds
    try:
        with pytest.raises(DecodeError, match="image too large: 30000x30000"):
            load_image((bad_dir / "bomb.png").read_bytes())
    finally:
        Image.MAX_IMAGE_PIXELS = before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _scan_bomb(point_transform: int) -> bytes:
    """A valid 16x16 grey progressive JPEG of 1 + 63 * (point_transform + 1) scans: every
    AC coefficient in scans of its own, refined bit by bit, each block one EOB. A scan bomb in
    miniature: at 7000x7000, 883 such scans take seconds to decode."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    def scan(first: int, last: int, high: int, low: int) -> bytes:
        # One component, tables 0; four blocks of one 0 bit (DC: no change; AC: end of
        # block), padded with 1s.
        return segment(0xDA, bytes([1, 1, 0x00, first, last, high << 4 | low])) + b"\x0f"

    one_code = bytes([1] + [0] * 15 + [0])  # one code of 1 bit, for symbol 0
    data = b"\xff\xd8" + segment(0xDB, bytes([0] + [1] * 64))
    data += segment(0xC2, bytes([8, 0, 16, 0, 16, 1, 1, 0x11, 0]))  # progressive, 16x16, grey
    data += segment(0xC4, b"\x00" + one_code) + segment(0xC4, b"\x10" + one_code)
    data += scan(0, 0, 0, 0)
    for k in range(1, 64):
        data += scan(k, k, 0, point_transform)
        data += b"".join(scan(k, k, low + 1, low) for low in reversed(range(point_transform)))
    return data + b"\xff\xd9"


def test_a_scan_bomb_is_refused_before_decoding() -> None:
    """Over 100 scans is refused (libjpeg would pass over the whole image for each); a real
    progressive JPEG, and FF DA bytes that are not scans (after the end), are not."""
    bomb = _scan_bomb(1)
    assert simplejpeg.decode_jpeg(bomb, "GRAY", strict=True).shape == (16, 16, 1)  # valid
    with pytest.raises(DecodeError, match=r"^too many JPEG scans: 127 > limit 100"):
        load_image(bomb)
    assert load_image(_scan_bomb(0)).shape == (16, 16, 3)  # 64 scans

    buffer = io.BytesIO()
    Image.fromarray(render_frame(3, (320, 180))).save(buffer, "JPEG", progressive=True)
    progressive = buffer.getvalue()
    assert 5 <= progressive.count(b"\xff\xda") <= 20  # libjpeg's standard script
    assert load_image(progressive).shape == (180, 320, 3)
    # A Motion Photo's video after the end holds FF DA bytes: counted, but not scans.
    assert load_image(progressive + b"\xff\xda" * 150).shape == (180, 320, 3)
    # A walk that long is refused rather than taken: no real JPEG has 400 segments.
    comments = b"\xff\xfe\x00\x02" * 400
    with pytest.raises(DecodeError, match="too many JPEG scans"):
        load_image(progressive[:2] + comments + progressive[2:] + b"\xff\xda" * 150)


def test_a_sequential_file_of_one_scan_is_settled_at_its_header() -> None:
    """Most files are sequential with one scan of every component: libjpeg refuses a second
    scan there, so such a file is not counted (no pass over its bytes), and scans repeated
    300 times fail fast as damage instead of being decoded 300 times."""
    buffer = io.BytesIO()
    Image.fromarray(render_frame(3, (320, 180))).save(buffer, "JPEG")
    sequential = buffer.getvalue()
    assert jpegmarkers.one_scan_of_all(sequential)
    assert not jpegmarkers.one_scan_of_all(_scan_bomb(0))  # progressive
    start, end = sequential.find(b"\xff\xda"), len(sequential) - 2
    repeated = sequential[:start] + sequential[start:end] * 300 + sequential[end:]
    with pytest.raises(DecodeError):
        load_image(repeated)
    # Non-interleaved (a scan per component): several scans are allowed, so it is counted.
    frame = b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10\x03" + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    first_scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    assert not jpegmarkers.one_scan_of_all(b"\xff\xd8" + frame + first_scan)
    assert jpegmarkers.one_scan_of_all(
        b"\xff\xd8" + frame + b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    )


def test_mutated_files_never_raise_anything_but_decode_error(good_dir: Path) -> None:
    # Every prefix length class and many single-byte corruptions: decode or DecodeError.
    rng = np.random.default_rng(7)
    for name in ("rgb.jpg", "progressive.jpg", "rgba.png", "gray16.png", "exif_rotate6.jpg"):
        data = (good_dir / name).read_bytes()
        candidates = [data[:n] for n in rng.integers(0, len(data), 40)]
        for position in rng.integers(0, len(data), 60):
            corrupt = bytearray(data)
            corrupt[position] ^= int(rng.integers(1, 256))
            candidates.append(bytes(corrupt))
        for candidate in candidates:
            try:
                image = load_image(candidate, (20, 10))
            except DecodeError as error:
                assert str(error)
            else:
                assert image.shape == (10, 20, 3) and image.dtype == np.uint8


def test_bad_size_argument_is_a_plain_value_error() -> None:
    data = encode_png(np.zeros((4, 4, 3), np.uint8))
    for size in [(0, 10), (10, -1), (10,), (2.5, 3)]:
        with pytest.raises(ValueError) as error:
            load_image(data, size)  # type: ignore[arg-type]
        assert not isinstance(error.value, DecodeError)


# --- good variants -----------------------------------------------------------------------


def _tolerance(name: str) -> int:
    return 12 if name.endswith(".jpg") else 1


@pytest.mark.parametrize("name", sorted(GOOD_VARIANTS))
def test_good_variant_decodes_upright_rgb(good_dir: Path, name: str) -> None:
    image = load_image((good_dir / name).read_bytes())
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert image.dtype == np.uint8
    assert image.flags.writeable
    marker, background = GOOD_VARIANTS[name]
    tol = _tolerance(name)
    np.testing.assert_allclose(image[MARKER].reshape(-1, 3).mean(0), marker, atol=tol)
    np.testing.assert_allclose(image[BACKGROUND].reshape(-1, 3).mean(0), background, atol=tol)


@pytest.mark.parametrize("name", sorted(GOOD_VARIANTS))
def test_good_variant_resizes_after_rotation(good_dir: Path, name: str) -> None:
    # Half size: JPEGs take the draft path (with axes swapped for EXIF 6/8).
    image = load_image((good_dir / name).read_bytes(), (WIDTH // 2, HEIGHT // 2))
    assert image.shape == (HEIGHT // 2, WIDTH // 2, 3)
    marker, background = GOOD_VARIANTS[name]
    inner_marker = image[2:6, 2:6].reshape(-1, 3).mean(0)  # away from the blurred edge
    inner_background = image[14:24, 10:18].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(inner_marker, marker, atol=_tolerance(name) + 2)
    np.testing.assert_allclose(inner_background, background, atol=_tolerance(name) + 2)


def test_exif_rotation_swaps_axes(good_dir: Path) -> None:
    for name in ("exif_rotate6.jpg", "exif_rotate8.jpg"):
        data = (good_dir / name).read_bytes()
        assert Image.open(io.BytesIO(data)).size == (HEIGHT, WIDTH)  # stored portrait
        assert load_image(data).shape == (HEIGHT, WIDTH, 3)  # displayed landscape
        # Not a full resize of the stored image: a non-square target proves the swap.
        assert load_image(data, (40, 10)).shape == (10, 40, 3)


def test_sixteen_bit_is_scaled_not_clipped(good_dir: Path) -> None:
    image = load_image((good_dir / "gray16.png").read_bytes())
    assert image.max() == 255
    assert np.all(image[BACKGROUND] == 64)  # 16384 / 65535 * 255, where clipping gives 255


def test_alpha_composites_on_white(good_dir: Path) -> None:
    image = load_image((good_dir / "rgba.png").read_bytes())
    assert np.all(image[MARKER] == 255)  # alpha 0
    np.testing.assert_allclose(image[HALF_ALPHA], 127, atol=1)  # black at alpha 128


# --- resize ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [(480, 270), (960, 540), (640, 360), (224, 224), (479, 269), (1920, 1080), (2000, 9)]
)
def test_resize_gives_exact_shape(frame_jpeg: bytes, size: tuple[int, int]) -> None:
    image = load_image(frame_jpeg, size)
    assert image.shape == (size[1], size[0], 3)


def test_draft_path_matches_full_decode(frame_jpeg: bytes) -> None:
    for size in [(480, 270), (960, 540), (640, 360), (300, 200)]:
        fast = load_image(frame_jpeg, size)
        full = _full_decode_resize(frame_jpeg, size)
        assert _mean_abs_diff(fast, full) < 3, size


def _pillow_encoded(image: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90, **options)
    return buf.getvalue()


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"subsampling": 0}, {"gray": True}, {"odd": True}]
    + [{"cmyk": True}, {"cmyk": True, "progressive": True, "odd": True}, {"keep_rgb": True}]
    + [{"orientation": o} for o in range(2, 9)]
    + [{"orientation": 6, "odd": True}, {"orientation": 5, "gray": True}]
    + [{"orientation": 8, "cmyk": True}],
)
def test_jpegs_take_the_direct_path_with_pillows_pixels(options: dict) -> None:
    """libjpeg-turbo straight into NumPy must give exactly the pixels the Pillow path gives,
    at every draft scale and with the resize after it; CMYK, RGB-coded and EXIF-rotated too."""
    frame = render_frame(5, (1283, 721) if options.pop("odd", False) else (1280, 720))
    image = Image.fromarray(frame[..., 1] if options.pop("gray", False) else frame)
    if options.pop("cmyk", False):
        image = image.convert("CMYK")
    if "orientation" in options:
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = options.pop("orientation")
        options["exif"] = exif.tobytes()
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90, **options)
    data = buf.getvalue()
    for size in [None, (640, 360), (320, 180), (160, 90), (480, 270), (100, 100), (2000, 900)]:
        direct = imageio._decode_jpeg_direct(data, size, max_pixels=10**8)
        assert direct is not None, size
        np.testing.assert_array_equal(direct, imageio._decode(data, "JPEG", size, 10**8))
        assert direct.flags.writeable and direct.flags.c_contiguous


def test_jpegs_over_the_limit_or_with_unreadable_headers_go_to_pillow() -> None:
    data = _pillow_encoded(render_frame(5, (64, 48)))
    assert imageio._decode_jpeg_direct(data, None, max_pixels=100) is None
    sof = data.index(b"\xff\xc0")
    no_frame_header = data[:sof] + data[sof + 2 + int.from_bytes(data[sof + 2 : sof + 4], "big") :]
    assert imageio._decode_jpeg_direct(no_frame_header, None, 10**8) is None
    with pytest.raises(DecodeError, match="corrupt JPEG"):
        load_image(no_frame_header)


def test_no_resize_when_already_at_size(frame_jpeg: bytes) -> None:
    full = np.asarray(Image.open(io.BytesIO(frame_jpeg)).convert("RGB"))
    np.testing.assert_array_equal(load_image(frame_jpeg, (1920, 1080)), full)
    np.testing.assert_array_equal(load_image(frame_jpeg), full)


# --- encode ------------------------------------------------------------------------------


def test_encode_jpeg_is_deterministic_and_round_trips() -> None:
    frame = render_frame(0, (320, 180))
    data = encode_jpeg(frame)
    assert data == encode_jpeg(frame.copy())
    assert data[:3] == b"\xff\xd8\xff"
    assert _mean_abs_diff(load_image(data), frame) < 6  # small, noisy frame: q90 is lossy
    assert len(encode_jpeg(frame, quality=50)) < len(data)


def test_encode_png_is_lossless_and_deterministic() -> None:
    frame = render_frame(0, (320, 180))
    data = encode_png(frame)
    assert data == encode_png(frame.copy())
    np.testing.assert_array_equal(load_image(data), frame)
    gray = frame[..., 1]
    np.testing.assert_array_equal(load_image(encode_png(gray))[..., 0], gray)
    rgba = np.dstack([frame, np.zeros(frame.shape[:2], np.uint8)])
    assert np.all(load_image(encode_png(rgba)) == 255)  # fully transparent -> white


def test_encode_accepts_non_contiguous_views() -> None:
    frame = render_frame(0, (320, 180))
    view = frame[::2, ::2]
    np.testing.assert_array_equal(load_image(encode_png(view)), view)
    assert load_image(encode_jpeg(view)).shape == view.shape


@pytest.mark.parametrize(
    ("array", "error"),
    [
        (np.zeros((4, 4, 3), np.float32), TypeError),
        (np.zeros((4, 4, 2), np.uint8), ValueError),
        (np.zeros((4,), np.uint8), ValueError),
    ],
)
def test_encode_rejects_bad_arrays(array: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_jpeg(array)
    with pytest.raises(error):
        encode_png(array)


def test_encode_jpeg_rejects_alpha() -> None:
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((4, 4, 4), np.uint8))
