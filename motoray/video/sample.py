"""Deterministic synthetic broadcast-like clips for the demo, the tests and the benchmark.

Each clip shows the scenes of `motoray.sample_data` (a track, moving bikes, a ticking race
clock), a news ticker scrolling along the bottom, one scene cut half way, and a bar code of
the frame's number along the bottom edge: `frame_counter` reads it back from any frame, even
resized and JPEG-encoded, so a test can tell exactly which frame an output shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from motoray.sample_data import _DIGIT, _GLYPHS, _glyph_font, _Scene, _typeset

COUNTER_BITS = 20  # frames 0 .. 1,048,575: 11 hours at 25 fps
STRIP = 16  # the bar code is the bottom 1/STRIP of the picture
GOP_SECONDS = 2  # a keyframe every 2 s, as broadcast encoders do


def write_sample_videos(
    directory: str | Path,
    count: int,
    size: tuple[int, int] = (640, 360),
    *,
    seconds: float = 10,
    fps: int = 25,
    seed: int = 0,
    suffix: str = ".mp4",
    crf: int = 23,
    interlaced: bool = False,
) -> list[Path]:
    """`count` clips clip{c:03d}<suffix> (.mp4, .mkv, .mov or .ts) of `seconds` at `fps`;
    `crf` is x264's quality (lower: better and bigger). `interlaced`: as 1080i broadcast is,
    each frame two fields 1/(2 fps) s apart, top field first, field-coded."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frames = round(seconds * fps)
    paths = []
    for clip in range(count):
        path = directory / f"clip{clip:03d}{suffix}"
        times = [Fraction(i, fps) for i in range(frames)]
        if interlaced:
            images = _woven(render_clip(clip, 2 * frames, size, seed, counter=False))
        else:
            images = render_clip(clip, frames, size, seed)
        write_clip(path, images, times, fps, crf=crf, interlaced=interlaced)
        paths.append(path)
    return paths


def _woven(images):
    """Pairs of frames at twice the rate woven into one: the first's rows are the top
    field (shown first), the second's the bottom field; the counter is the pair's index."""
    pairs = iter(images)
    for index, (first, second) in enumerate(zip(pairs, pairs)):
        first[1::2] = second[1::2]
        draw_counter(first, index)
        yield first


def render_clip(clip: int, frames: int, size: tuple[int, int], seed: int = 0, counter: bool = True):
    """The clip's frames as HxWx3 arrays, one at a time: scene cut at the half, ticker, bar."""
    scenes = [_Scene(size, seed, 2 * clip + n, max(frames // 2, 1)) for n in (0, 1)]
    ticker = _Ticker(size, seed + clip)
    for index in range(frames):
        cut = index >= frames // 2
        image = scenes[cut].render(index - cut * (frames // 2))
        ticker.draw(image, index)
        if counter:
            draw_counter(image, index)
        yield image


def write_clip(
    path: Path,
    images,
    times: Sequence[Fraction],
    fps: int,
    *,
    start: Fraction = Fraction(0),
    codec: str = "libx264",
    crf: int = 23,
    gop: int | None = None,
    interlaced: bool = False,
) -> None:
    """Encode `images` shown at `times` (seconds, plus `start`): H.264 (x264, one thread, so
    the bytes are the same everywhere), a keyframe every `gop` frames (default GOP_SECONDS),
    B-frames; an MP4 keeps its index at the front, so a cut-off file still has its first
    frames."""
    import av

    variable = any(t != Fraction(i, fps) for i, t in enumerate(times))
    time_base = Fraction(1, 1000) if variable or start else Fraction(1, fps)
    options = {"movflags": "+faststart"} if path.suffix in (".mp4", ".mov") else {}
    with av.open(str(path), "w", options=options) as container:
        stream = None
        for image, time in zip(images, times):
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
                stream.codec_context.gop_size = gop or GOP_SECONDS * fps
                if codec == "libx264":
                    x264 = {"preset": "veryfast", "threads": "1", "crf": str(crf)}
                    if interlaced:  # field-coded, top field first, flagged so per frame
                        x264 |= {"flags": "+ilme+ildct", "x264-params": "interlaced=1:tff=1"}
                    stream.codec_context.options = x264
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round((start + time) / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        if stream is not None:
            container.mux(stream.encode())


def draw_counter(image: np.ndarray, index: int) -> None:
    """The frame's number as COUNTER_BITS black and white cells along the bottom edge."""
    height, width = image.shape[:2]
    top = height - height // STRIP
    for bit in range(COUNTER_BITS):
        left, right = bit * width // COUNTER_BITS, (bit + 1) * width // COUNTER_BITS
        image[top:, left:right] = 255 if index >> bit & 1 else 0


def frame_counter(image: np.ndarray) -> int:
    """The number `draw_counter` drew, read from the middle of each cell (any size)."""
    height, width = image.shape[:2]
    strip = height // STRIP
    row = slice(height - strip + strip // 4, height - strip // 4 or height)
    value = 0
    for bit in range(COUNTER_BITS):
        left, right = bit * width // COUNTER_BITS, (bit + 1) * width // COUNTER_BITS
        margin = (right - left) // 4
        cell = image[row, left + margin : right - margin]
        value |= int(cell.mean() > 127) << bit
    return value


class _Ticker:
    """A band of scrolling text above the bar code, as news channels run."""

    def __init__(self, size: tuple[int, int], seed: int) -> None:
        width, height = size
        rng = np.random.default_rng([seed, 7])
        text = rng.integers(_DIGIT, _GLYPHS, size=(1, 4 * width // 6 + 1))
        text[0, rng.random(text.shape[1]) < 0.15] = 0  # word gaps
        self.cell = max(1, height // 180)
        self.pixels = _typeset(_glyph_font(np.random.default_rng([seed])), text, self.cell)
        self.band = 8 * self.cell + 2 * self.cell
        self.top = height - height // STRIP - self.band
        self.speed = max(1, width // 200)

    def draw(self, image: np.ndarray, index: int) -> None:
        width = image.shape[1]
        band = image[self.top : self.top + self.band]
        band[:] = (200, 20, 20)
        shift = index * self.speed % (self.pixels.shape[1] - width)
        text = self.pixels[:, shift : shift + width]
        band[self.cell : self.cell + text.shape[0]][text] = (255, 255, 255)
