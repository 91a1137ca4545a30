"""PyAV (FFmpeg): open a video from storage, read its metadata, decode one time range.

The stream decoded is the one `ffmpeg` would pick (the largest picture, the default one
first), unless the source names one (`frames.stream`). A task decoding the range [a, b) of
it seeks to the last keyframe before a and decodes forward from that keyframe's packet:
packets before it are not decoded and frames shown before it are dropped (their pixels
would depend on where decoding started). A container's edit list may discard the keyframe's
own picture (a clip trimmed mid-GOP): the frames after it are kept. Frames before a only
tell the time of the frame before the range's first, which the sampling rule needs, and
decoding stops at the first frame at or after b. Sampled frames are shown as a player shows
them (display.py).

Damage is recorded with its time: a packet the demuxer flags corrupt (an MPEG-TS continuity
gap, a broken PES), data the decoder refuses (FFmpeg's `err_detect=explode`), or a frame it
flags corrupt (concealed). From there to the next whole keyframe, frames are not outputs:
they may show another frame's pixels under their own time. Decoding goes on.

So a range costs its own frames and at most one GOP before them, wherever it lies in the
video. `Video.stats` counts what was decoded; a range that no seek could reach is decoded
from the video's start (same frames, growing cost) and logged as a warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import IO

import av
import numpy as np

from motoray.config import FrameSampling
from motoray.storage import Storage
from motoray.video import display
from motoray.video.display import Shown
from motoray.video.sampling import Sampler, Span, in_span, milliseconds

log = logging.getLogger("motoray.video")

# FFmpeg's frame and slice threads. A fixed count, not one per core: around damaged data,
# which frame reports the error depends on it, and outputs must not depend on the node.
DECODE_THREADS = 2
# Seek this much further back (ms) each time no keyframe before the range's start is found
# after a seek (containers index keyframes by decoding time, which can lead the presentation
# time; an MPEG-TS seek lands on any frame, often just after the keyframe); then decode from
# the very start. Doubling: a seek too far back costs reading, not decoding (see _decoded).
SEEK_BACKOFF_MS = (0, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000)
# Packets read after a seek, before the range, are held (not decoded) from the last keyframe
# on; a GOP longer than this (a stream with one keyframe) is decoded as it comes instead.
MAX_HELD_BYTES = 64 * 1024 * 1024
# A video whose data ends this much before its declared end is reported as cut short.
END_SLACK_S = Fraction(1, 2)
# ffmpeg's stream choice (fftools): a default-disposition stream scores this many pixels more.
DEFAULT_STREAM_BONUS = 5_000_000
MAX_DAMAGE_PER_RANGE = 20  # then the rest of the range is given up, and that is recorded


class VideoError(ValueError):
    """A listed file that is not a video motoray can decode; str(e) is the recorded reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says about it, read without decoding."""

    duration_ms: int  # 0 when the container does not say
    rate: Fraction | None  # nominal frames per second
    width: int  # coded, before display.py's treatment
    height: int
    codec: str
    version: str | None = None  # the storage's name for the version read (pinned for tasks)


@dataclass(frozen=True)
class Frame:
    time: Fraction  # seconds from the video's start
    image: np.ndarray  # HxWx3 uint8 RGB, as a player shows it
    shown: Shown  # what that took


@dataclass(frozen=True)
class Damage:
    time: Fraction | None  # where decoding failed; None: the video could not be read at all
    reason: str


@dataclass
class DecodeStats:
    """What an open video has cost so far. A range decoded from the video's start gives the
    same frames as one decoded from its keyframe, only slower: these numbers tell them apart."""

    packets: int = 0  # demuxed
    frames: int = 0  # out of the decoder
    seek_failures: int = 0  # ranges decoded from the video's start: no seek worked


class Video:
    """An open video stream: the container over a storage file object, and its clock."""

    def __init__(
        self, file: IO[bytes], frames: FrameSampling, max_pixels: int, name: str = ""
    ) -> None:
        self._file = file
        self.frames = frames
        self._max_pixels = max_pixels
        self.name = name  # for log lines
        self.stats = DecodeStats()
        self.seek_error: str | None = None  # FFmpeg's reason, when a seek failed outright
        self._open()

    def oversized(self, width: int, height: int) -> str | None:
        """Why frames of this size are refused; None if they are not."""
        if width * height <= self._max_pixels:
            return None
        return (
            f"frames too large: {width}x{height} pixels > limit {self._max_pixels} "
            "(limits.max_image_pixels)"
        )

    def _open(self) -> None:
        self._file.seek(0)
        try:
            self.container = av.open(self._file, mode="r")
        except av.error.FFmpegError as e:
            raise VideoError(f"not a readable video ({_message(e)})") from None
        try:
            stream = self.stream = _programme(self.container, self.frames.stream)
            context = stream.codec_context
            if context is None or not context.codec.is_decoder:
                raise VideoError("unsupported codec: FFmpeg has no decoder for its video stream")
            self.sar = display.sample_aspect_ratio(stream)
            shown = self.sar if self.frames.square_pixels else 1
            if error := self.oversized(round(context.width * shown), context.height):
                raise VideoError(error)
        except VideoError:
            self.close_container()
            raise
        context.thread_type = "AUTO"
        context.thread_count = DECODE_THREADS
        context.options = {"err_detect": "explode"}
        self.time_base = Fraction(stream.time_base or 1)
        self.origin = stream.start_time if stream.start_time is not None else 0
        rate = stream.average_rate or stream.guessed_rate
        self.rate = Fraction(rate) if rate else None
        self.declared_end = _declared_duration(self.container, stream, self.origin)
        self.last_pts: int | None = None  # the latest presentation time demuxed

    def reopen(self) -> None:
        self.close_container()
        self._open()

    def info(self) -> VideoInfo:
        context = self.stream.codec_context
        duration = 0 if self.declared_end is None else milliseconds(self.declared_end)
        return VideoInfo(duration, self.rate, context.width, context.height, context.codec.name)

    def time(self, pts: int) -> Fraction:
        return (pts - self.origin) * self.time_base

    def pts(self, time_ms: int) -> int:
        return self.origin + int(Fraction(time_ms, 1000) / self.time_base)

    def close_container(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


@contextlib.contextmanager
def open_video(
    storage: Storage,
    key: str,
    frames: FrameSampling,
    max_pixels: int,
    version: str | None = None,
) -> Iterator[Video]:
    """The video at `key`, read as the version `version` (None: as it is); VideoError (with
    the reason) if it cannot be decoded, Refused (a changed object among them) and
    FileNotFoundError as for images."""
    with storage.open(key, version) as file:
        video = Video(file, frames, max_pixels, key)
        try:
            yield video
        finally:
            video.close_container()


def probe(
    storage: Storage,
    key: str,
    frames: FrameSampling,
    max_pixels: int,
    version: str | None = None,
) -> VideoInfo:
    """The container's metadata: duration, rate, size, codec, and the version read (which
    the tasks then read too). Reads headers, no frame."""
    with storage.open(key, version) as file:
        video = Video(file, frames, max_pixels, key)
        try:
            return replace(video.info(), version=getattr(file, "version", version))
        finally:
            video.close_container()


def span_frames(
    video: Video, sampler: Sampler, span: Span, size: tuple[int, int] | None
) -> Iterator[Frame | Damage]:
    """The sampled frames of the range `span`, in time order, and the damage found in it."""
    start_ms = span[0]
    backoffs = list(SEEK_BACKOFF_MS) if start_ms is not None else []
    seeked = False
    video.seek_error = None
    while True:
        if backoffs:  # the last keyframe before the range: at least 1 tick before its start
            seek: int | None = video.pts(start_ms - backoffs.pop(0)) - 1
            if seek < video.origin:
                seek, backoffs = None, []  # the range starts that close to the video's start
        else:
            seek = None
            if seeked:
                _seek_failed(video, start_ms)
        if seek is None and seeked:
            video.reopen()
        scan = _Scan(video, sampler, span, size)
        try:
            yield from scan.run(seek)
            return
        except _SeekTooLate:
            seeked = True
            continue


def _seek_failed(video: Video, start_ms: int) -> None:
    """No seek reached a keyframe before the range's start, so the range is decoded from the
    video's start. Its frames are the same either way, so the range is not given up, but its
    cost grows with its position (a whole video's ranges: quadratic): counted and logged."""
    video.stats.seek_failures += 1
    reason = f" (FFmpeg: {video.seek_error})" if video.seek_error else ""
    log.warning(
        "%s: no seek up to %d s back reached a keyframe before t=%.3f s%s; decoding the range "
        "from the video's start",
        video.name or "a video",
        SEEK_BACKOFF_MS[-1] // 1000,
        start_ms / 1000,
        reason,
    )


class _SeekTooLate(Exception):
    """The seek landed after the range's start: seek further back."""


class _Error:
    def __init__(self, pts: int | None, reason: str, fatal: bool = False) -> None:
        self.pts, self.reason, self.fatal = pts, reason, fatal


class _Scan:
    """One pass over a range after one seek."""

    def __init__(self, video: Video, sampler: Sampler, span: Span, size) -> None:
        self.video, self.sampler, self.span, self.size = video, sampler, span, size

    def run(self, seek: int | None) -> Iterator[Frame | Damage]:
        video, span = self.video, self.span
        if self.sampler.period is None:
            video.stream.codec_context.skip_frame = "NONKEY"  # keyframes only: skip the rest
        start_ms, end_ms = span
        shower = display.deinterlacer(video.stream, video.frames.deinterlace)
        previous: Fraction | None = None  # the time of the frame before, in presentation order
        first: Fraction | None = None  # of the first frame decoded since the seek
        damaged = False  # since the last damage, no whole keyframe yet: frames may show it
        # Damage met and not yet recorded: (its time, reason), recorded at the first frame
        # it spoils (frames decoded after it may be shown before it).
        unsaid: tuple[Fraction | None, str] | None = None
        damages = 0
        fatal = False
        for item in _decoded(video, seek, start_ms):
            if isinstance(item, _Error):
                time = video.time(item.pts) if item.pts is not None else previous
                if seek is not None and (first is None or (time is not None and time < first)):
                    continue  # what references frames before the seek: not damage
                if not damaged:
                    # The frame before it is whole: shown with itself as its next.
                    yield from self._shown(shower.finish())
                    damaged, unsaid = True, (time, item.reason)
                if item.fatal:
                    fatal = True
                    break
                continue
            time = video.time(item.pts)
            if previous is not None and time <= previous:
                continue  # not after the frame before: out of order, skipped
            if first is None:
                if start_ms is not None and seek is not None and time * 1000 >= start_ms:
                    raise _SeekTooLate
                first = time
            if unsaid is not None:
                at, reason = unsaid
                unsaid, at = None, time if at is None else min(at, time)
                if in_span(at, span):
                    damages += 1
                    yield Damage(at, reason)
            if damaged and item.key_frame:
                damaged = False
            # Checked at open too; a stream may change size midway (a TS of two clips).
            if (error := video.oversized(item.width, item.height)) and not damaged:
                yield from self._shown(shower.finish())
                damaged = True
                if in_span(time, span):
                    damages += 1
                    yield Damage(time, error)
            if damages >= MAX_DAMAGE_PER_RANGE:
                yield Damage(time, "too much damage: the rest of the range is skipped")
                return
            if end_ms is not None and time * 1000 >= end_ms:
                if not damaged:  # the range's last frame needs its next to be deinterlaced
                    yield from self._shown(shower.feed(item, time, False))
                return  # the next range's
            if not damaged:
                wanted = in_span(time, span) and self.sampler.sampled(
                    time, previous, item.key_frame
                )
                yield from self._shown(shower.feed(item, time, wanted))
                if self.sampler.period is None:  # keyframes alone: each its own run
                    yield from self._shown(shower.finish())
            previous = time
        yield from self._shown(shower.finish())
        if unsaid is not None and (unsaid[0] is None or in_span(unsaid[0], span)):
            yield Damage(*unsaid)
        if fatal:
            return
        if seek is not None and first is None:
            raise _SeekTooLate  # past the end of the data: look further back
        # The data ended: before the end of this range, or well before the declared end.
        last = None if video.last_pts is None else video.time(video.last_pts)
        owned = in_span(last, span) if last is not None else start_ms is None
        declared = video.declared_end
        short = end_ms is not None or (
            declared is not None and (last or 0) + END_SLACK_S < declared
        )
        if owned and short and not damaged:
            if last is None:
                yield Damage(None, "no frame could be read (truncated?)")
            else:
                gap = (
                    f", {float(declared - last):.3f} s before its declared end" if declared else ""
                )
                yield Damage(last, f"the video data ends here{gap} (truncated?)")

    def _shown(self, done) -> Iterator[Frame]:
        video = self.video
        for frame, time, deinterlaced in done:
            image, shown = display.pixels(
                frame, self.size, video.sar, video.frames.square_pixels, deinterlaced
            )
            yield Frame(time, image, shown)


def _decoded(
    video: Video, seek: int | None, start_ms: int | None
) -> Iterator[av.VideoFrame | _Error]:
    """Frames in presentation order after seeking to `seek` (None: from the start), from the
    first keyframe packet on, with the damage met on the way in its place.

    After a seek, packets before the range's start are demuxed but not decoded: decoding
    begins at the last keyframe before the range. An MP4 or MKV seek lands on a keyframe,
    but an MPEG-TS one lands on any frame near the target, and a seek backed off lands
    seconds early: decoding from there would cost frames the range never uses. Frames shown
    before the keyframe decoding began at (an open GOP's leading pictures) are dropped."""
    if seek is not None:
        try:
            video.container.seek(seek, stream=video.stream, backward=True)
        except av.error.FFmpegError as e:
            video.seek_error = _message(e)
            return  # treated as a seek past the end: the caller looks further back
    # Packets since the last keyframe before the range; None once decoding has begun.
    gop: list[av.Packet] | None = [] if seek is not None and start_ms is not None else None
    held = 0  # their bytes
    begun: int | None = None  # the presentation time of the keyframe decoding began at
    packets = video.container.demux(video.stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as e:
            yield _Error(None, f"damaged container data ({_message(e)})", fatal=True)
            return
        video.stats.packets += 1
        if packet.pts is not None and (video.last_pts is None or packet.pts > video.last_pts):
            video.last_pts = packet.pts  # where the data ends, even when frames are skipped
        if gop is None:
            if begun is None and not packet.is_keyframe:
                continue  # before any keyframe (a capture started mid-GOP): not decodable
            backlog = [packet]
        else:
            before = packet.pts is not None and video.time(packet.pts) * 1000 < start_ms
            if before and packet.is_keyframe:
                gop, held = [], 0
            elif not gop:
                if before:
                    continue  # before any keyframe: not decodable, and not this seek's to decode
                if packet.pts is not None:
                    raise _SeekTooLate  # in the range, no keyframe before it: seek further back
            gop.append(packet)
            held += packet.size
            if before and held <= MAX_HELD_BYTES:
                continue
            # In the range, or the data's end: decode from the keyframe before it. (Or a GOP
            # too long to hold, as from a stream with one keyframe: decode it as it comes.)
            backlog, gop = gop, None
        for item in backlog:
            if begun is None:
                begun = item.pts if item.pts is not None else item.dts
            if item.is_corrupt:  # a gap in an MPEG-TS, a broken PES: the demuxer says so
                yield _Error(item.pts, "damaged video data (the container flags it corrupt)")
            try:
                frames = item.decode()
            except av.error.FFmpegError as e:
                yield _Error(item.pts, f"damaged video data ({_message(e)})")
                continue
            video.stats.frames += len(frames)
            for frame in frames:
                if frame.pts is None:
                    yield _Error(None, "a frame without a presentation time")
                elif begun is not None and frame.pts < begun:
                    continue  # shown before the keyframe decoding began at: not decodable
                elif frame.is_corrupt:  # the decoder concealed what it could not decode
                    yield _Error(frame.pts, "damaged video data (a frame the decoder concealed)")
                else:
                    yield frame


def _declared_duration(container, stream, origin: int) -> Fraction | None:
    """Seconds from the first frame to the end, as the container states it: the stream's own
    duration (MP4, MOV), else the container's, which Matroska counts from time 0 rather than
    from the first frame (MPEG-TS estimates it from the first and last timestamps)."""
    if stream.duration:
        return stream.duration * Fraction(stream.time_base)
    if not container.duration:
        return None
    duration = Fraction(container.duration, av.time_base)
    if "matroska" in container.format.name:
        duration -= origin * Fraction(stream.time_base)
    return max(duration, Fraction(0))


def _programme(container, index: int | None) -> av.video.stream.VideoStream:
    """The video stream at `index`, or the one `ffmpeg` picks: by picture size, a stream of
    default disposition counting 5 Mpx more (ffmpeg's own score), the first of equals."""
    streams = [s for s in container.streams.video if not _attached_picture(s)]
    if index is not None:
        named = [s for s in streams if s.index == index]
        if not named:
            found = ", ".join(str(s.index) for s in streams) or "none"
            raise VideoError(f"no video stream {index} (frames.stream); its video streams: {found}")
        return named[0]
    if not streams:
        raise VideoError("not a video: the file has no video stream")

    def score(stream) -> tuple[int, int]:
        context = stream.codec_context
        pixels = (context.width or 0) * (context.height or 0) if context is not None else 0
        default = bool(stream.disposition & av.stream.Disposition.default)
        return pixels + DEFAULT_STREAM_BONUS * default, -stream.index

    return max(streams, key=score)


def _attached_picture(stream) -> bool:
    """Cover art in an audio file is a 'video stream' of one picture."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _message(error: av.error.FFmpegError) -> str:
    return error.strerror or str(error)
