"""Frames as a player shows them: deinterlaced, turned upright, with square pixels.

FFmpeg's player defaults, applied to the sampled frames only:
- interlaced frames (flagged by the decoder, or all frames of a stream whose field order
  says so) go through FFmpeg's `bwdif` (one frame out per frame in), which needs the frame
  before and after each one it deinterlaces: every decoded frame passes through the filter,
  and only the sampled ones are filtered (its timeline switch, `enable`), the rest pass
  untouched (a reference, no copy);
- the display matrix is applied as `ffmpeg -autorotate` does (90/180/270 and flips);
- non-square pixels (a sample aspect ratio other than 1:1) are resampled to the display
  width, unless `square_pixels` is off; then the manifest says the ratio.

Frame by frame, deinterlacing depends on the frame and its two neighbours only: whatever
range a frame is decoded in, it gets the same pixels. A run of frames is ended (its last
frame seen as its own next) where the data is damaged and at the end of the video.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

# AVFieldOrder: what a stream's codec parameters say about its fields.
_PROGRESSIVE = 1
_TOP_FIRST = (2, 4)  # TT, TB: the top field is shown first
_BOTTOM_FIRST = (3, 5)  # BB, BT
DEINTERLACER = "bwdif"


class NotDeinterlaced(ValueError):
    """Frames that need deinterlacing and that bwdif cannot take."""


@dataclass(frozen=True)
class Shown:
    """What was done to one frame to show it as a player does (the manifest's `display`)."""

    deinterlaced: bool
    orientation: str  # an FFmpeg transpose/flip name, "none" for upright frames
    sar: Fraction  # of the coded frame
    square_pixels: bool  # resampled to square pixels (or already square)

    def to_json(self) -> str:
        return json.dumps(
            {
                "deinterlace": DEINTERLACER if self.deinterlaced else "none",
                "orientation": self.orientation,
                "sar": f"{self.sar.numerator}:{self.sar.denominator}",
                "square_pixels": self.square_pixels,
            },
            sort_keys=True,
        )


class Deinterlacer:
    """bwdif over one run of consecutive frames, filtering only the frames `wanted`.

    `feed` yields (frame as shown, its tag, deinterlaced?) for the frame before the one fed,
    which is complete once its next is known; `finish` yields the last one. The filter runs
    on a run's first frame whether it is wanted or not: bwdif treats the first frame it
    filters as a video's first (no frame before it), so that must be the run's first, and
    every frame after it is filtered the same wherever the run began."""

    def __init__(self, stream: av.video.stream.VideoStream, mode: str) -> None:
        order = stream.codec_context.field_order
        # `auto`: frames flagged interlaced by the decoder, or all of a stream that says its
        # fields are ordered; `always`: every frame. Parity from the stream where it says.
        self.every_frame = mode == "always" or order in _TOP_FIRST + _BOTTOM_FIRST
        parity = "tff" if order in _TOP_FIRST else "bff" if order in _BOTTOM_FIRST else "auto"
        self._options = f"mode=send_frame:parity={parity}:deint=all"
        self._time_base = stream.time_base
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[int, int, str] | None = None  # of the frames the graph takes
        # Frames fed, not yet out: (frame, tag, wanted, deinterlaced, first of the run).
        self._pending: deque[tuple[av.VideoFrame, object, bool, bool, bool]] = deque()
        self._enabled: bool | None = None
        self._last: av.VideoFrame | None = None

    def _start(self, frame: av.VideoFrame) -> None:
        self._graph = graph = av.filter.Graph()
        source = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format, time_base=self._time_base
        )
        self._filter = graph.add(DEINTERLACER, self._options)
        sink = graph.add("buffersink")
        source.link_to(self._filter)
        self._filter.link_to(sink)
        try:
            graph.configure()
        except (av.error.FFmpegError, ValueError) as e:  # a pixel format bwdif does not take
            raise NotDeinterlaced(
                f"cannot deinterlace {frame.format.name} frames of {frame.width}x{frame.height}"
                f" ({e}); set frames.deinterlace: off to keep them as decoded"
            ) from None
        self._shape = (frame.width, frame.height, frame.format.name)
        self._enabled = None

    def feed(
        self, frame: av.VideoFrame, tag: object, wanted: bool
    ) -> Iterator[tuple[av.VideoFrame, object, bool]]:
        first = self._shape != (frame.width, frame.height, frame.format.name)
        if first:
            yield from self.finish()  # (a stream that changes size midway: a new run)
            self._start(frame)
        # The filter decides about the frame before this one when this one arrives.
        if self._pending:
            self._enable(self._pending[-1])
        self._graph.push(frame)
        deinterlaced = self.every_frame or frame.interlaced_frame
        self._pending.append((frame, tag, wanted, deinterlaced, first))
        self._last = frame
        yield from self._drain()

    def finish(self) -> Iterator[tuple[av.VideoFrame, object, bool]]:
        """The run's last frame, with itself as its next (as at the end of a video)."""
        if self._last is not None and self._pending and self._pending[-1][2]:
            self._enable(self._pending[-1])
            self._graph.push(self._last)
            self._pending.append((self._last, None, False, False, False))
            yield from self._drain()
        self._pending.clear()
        self._last = self._graph = self._shape = None

    def _enable(self, pending: tuple[av.VideoFrame, object, bool, bool, bool]) -> None:
        _, _, wanted, deinterlaced, first = pending
        on = first or (wanted and deinterlaced)
        if on != self._enabled:
            self._filter.process_command("enable", "1" if on else "0")
            self._enabled = on

    def _drain(self) -> Iterator[tuple[av.VideoFrame, object, bool]]:
        while True:
            try:
                shown = self._graph.pull()
            except (BlockingIOError, av.error.EOFError):
                return
            frame, tag, wanted, deinterlaced, _ = self._pending.popleft()
            if wanted:  # a progressive frame as decoded (the run's first is filtered anyway)
                yield shown if deinterlaced else frame, tag, deinterlaced


class Passthrough:
    """The Deinterlacer's interface for progressive streams and `deinterlace: off`."""

    def feed(
        self, frame: av.VideoFrame, tag: object, wanted: bool
    ) -> Iterator[tuple[av.VideoFrame, object, bool]]:
        if wanted:
            yield frame, tag, False

    def finish(self) -> Iterator[tuple[av.VideoFrame, object, bool]]:
        return iter(())


def deinterlacer(stream: av.video.stream.VideoStream, mode: str) -> Deinterlacer | Passthrough:
    """bwdif unless `off`, or the decoder says the stream is progressive (under `auto`)."""
    progressive = stream.codec_context.field_order == _PROGRESSIVE
    if mode == "off" or (mode == "auto" and progressive):
        return Passthrough()
    return Deinterlacer(stream, mode)


def sample_aspect_ratio(stream: av.video.stream.VideoStream) -> Fraction:
    """The container's ratio, else the codec's (FFmpeg's own preference); 1 when unknown."""
    for ratio in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if ratio and ratio > 0:
            return Fraction(ratio)
    return Fraction(1)


def orientation(frame: av.VideoFrame) -> str:
    """How `ffmpeg -autorotate` turns this frame upright, from its display matrix: an FFmpeg
    transpose direction or flip, or "none"."""
    matrix = _display_matrix(frame)
    if matrix is None:
        return "none"
    theta = -round(frame.rotation) % 360  # clockwise degrees, as ffmpeg computes it
    if theta == 90:
        return "cclock_flip" if matrix[3] > 0 else "clock"
    if theta == 270:
        return "clock_flip" if matrix[3] < 0 else "cclock"
    if theta == 180:
        flips = [name for name, on in (("hflip", matrix[0] < 0), ("vflip", matrix[4] < 0)) if on]
        return "+".join(flips) or "none"
    if theta == 0 and matrix[4] < 0:
        return "vflip"
    return "none"  # an angle that is not a multiple of 90: shown as coded


def _display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    for entry in frame.side_data:
        # PyAV 18.1.0 iterates the side data itself, 18.1.1 (a proper Mapping) its types.
        is_data = isinstance(entry, av.sidedata.sidedata.SideData)
        data = entry if is_data else frame.side_data[entry]
        if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            return np.frombuffer(bytes(data), dtype="<i4")
    return None


_TURNS = {
    "none": lambda image: image,
    "clock": lambda image: np.rot90(image, -1),
    "cclock": lambda image: np.rot90(image, 1),
    "cclock_flip": lambda image: image.transpose(1, 0, 2),
    "clock_flip": lambda image: image[::-1, ::-1].transpose(1, 0, 2),
    "hflip": lambda image: image[:, ::-1],
    "vflip": lambda image: image[::-1],
    "hflip+vflip": lambda image: image[::-1, ::-1],
}


def upright(image: np.ndarray, turn: str) -> np.ndarray:
    """`image` turned as FFmpeg's transpose/hflip/vflip filter of that name would."""
    return np.ascontiguousarray(_TURNS[turn](image))


def display_size(width: int, height: int, sar: Fraction, turn: str) -> tuple[int, int]:
    """(width, height) of the picture a player shows: square pixels, then upright."""
    shown_width = max(1, round(width * sar)) if sar != 1 else width
    sideways = turn in ("clock", "cclock", "clock_flip", "cclock_flip")
    return (height, shown_width) if sideways else (shown_width, height)


def pixels(
    frame: av.VideoFrame,
    size: tuple[int, int] | None,
    sar: Fraction,
    square_pixels: bool,
    deinterlaced: bool,
) -> tuple[np.ndarray, Shown]:
    """RGB as shown, at `size` (width, height of the upright picture) or its display size:
    scaled in the same swscale pass that converts from YUV (area averaging), then turned."""
    turn = orientation(frame)
    if size is None:
        size = display_size(frame.width, frame.height, sar if square_pixels else Fraction(1), turn)
    width, height = size
    if turn in ("clock", "cclock", "clock_flip", "cclock_flip"):
        width, height = height, width
    if (width, height) == (frame.width, frame.height):
        image = frame.to_ndarray(format="rgb24")
    else:
        image = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
    shown = Shown(deinterlaced, turn, sar, square_pixels or sar == 1)
    return upright(image, turn), shown
