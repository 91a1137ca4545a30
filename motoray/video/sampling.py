"""Which frames of a video are sampled, and how a video is cut into work.

Pure functions of timestamps and the `frames` setting: no decoding, testable on lists of
numbers. Times are exact fractions of a second from the video's start (its first
presentation time), so that no float rounding decides whether a frame is in or out.

The rule for `every_s`, `fps` and `every_n`: targets lie at start_s + k * period (k >= 0,
before end_s), and each target takes the first frame shown at or after it. Equivalently, a
frame is sampled when a target lies in (previous frame's time, its own time]: that needs only
the frame and its predecessor, so every range of a video decides its own frames the way one
pass over the whole video would. `keyframes` takes every keyframe between start_s and end_s.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from motoray.config import FrameSampling
from motoray.storage.base import CHANGED

if TYPE_CHECKING:
    from motoray.jobs.record import Failure

FRAME_MARK = "#t="  # <video key>#t=<milliseconds>
KEYFRAME_INTERVAL_GUESS_S = 2  # plans only: keyframes are not counted without decoding

MAX_CUTS = 20_000  # per video: past that, the last range runs to the end (two weeks at 60 s)
Span = tuple[int | None, int | None]  # [start, end) in ms from the video's start; None: open


def frame_key(video_key: str, time_ms: int) -> str:
    """`race.mp4#t=1500`: the source key of the frame shown 1.5 s into race.mp4."""
    return f"{video_key}{FRAME_MARK}{time_ms}"


def parse_frame_key(key: str) -> tuple[str, int] | None:
    """(video key, milliseconds) of a frame key; None for any other key."""
    video, mark, time_ms = key.rpartition(FRAME_MARK)
    if not mark or not time_ms.isdigit():
        return None
    return video, int(time_ms)


def video_of(key: str) -> str:
    """The video of a frame key or of a failure's position; any other key is its own."""
    return key.rpartition(FRAME_MARK)[0] or key


def milliseconds(seconds: Fraction) -> int:
    """A time in whole milliseconds, rounded half up."""
    return math.floor(seconds * 1000 + Fraction(1, 2))


def exact_seconds(seconds: float) -> Fraction:
    """A setting in seconds as an exact number of milliseconds (settings are whole ms)."""
    return Fraction(round(seconds * 1000), 1000)


@dataclass(frozen=True)
class Sampler:
    """The `frames` setting of a source, made exact for one video."""

    period: Fraction | None  # seconds between targets; None: keyframes
    start: Fraction
    end: Fraction | None

    @classmethod
    def of(cls, frames: FrameSampling, rate: Fraction | None) -> Sampler:
        """`rate` (the stream's nominal frame rate) is needed by `every_n` only: ValueError
        without it."""
        if frames.every_s is not None:
            period = exact_seconds(frames.every_s)
        elif frames.fps is not None:
            period = 1 / Fraction(str(frames.fps))
        elif frames.every_n is not None:
            if not rate:
                raise ValueError("every_n needs the stream's frame rate, which it does not state")
            period = frames.every_n / rate
        else:
            period = None
        end = None if frames.end_s is None else exact_seconds(frames.end_s)
        return cls(period, exact_seconds(frames.start_s), end)

    def sampled(self, time: Fraction, previous: Fraction | None, keyframe: bool) -> bool:
        """Is the frame shown at `time` sampled? `previous`: the time of the frame before it
        in presentation order (None for the video's first frame)."""
        if self.period is None:
            return keyframe and self.start <= time and (self.end is None or time < self.end)
        last = math.floor((time - self.start) / self.period)  # the last target at or before
        if self.end is not None:
            last = min(last, math.ceil((self.end - self.start) / self.period) - 1)
        if last < 0:
            return False
        return previous is None or self.start + last * self.period > previous

    def count(self, begin: Fraction, stop: Fraction) -> int:
        """Frames sampled from the part [begin, stop) of a video, from metadata: exact for the
        targets of a constant frame rate video (every target finds its frame), an estimate for
        keyframes."""
        begin, stop = max(begin, self.start), stop if self.end is None else min(stop, self.end)
        if stop <= begin:
            return 0
        if self.period is None:
            return math.ceil((stop - begin) / KEYFRAME_INTERVAL_GUESS_S)
        first = math.ceil((begin - self.start) / self.period)
        return max(0, math.ceil((stop - self.start) / self.period) - first)


def spans(duration_ms: int, range_ms: int, segment_ms: int | None = None) -> list[Span]:
    """The time ranges a video is cut into: a fixed function of its duration (and of the
    segment length, so that no range straddles two segments). The first is open at the
    start and the last at the end, so every frame has a range whatever the metadata says."""
    step = min(range_ms, segment_ms or range_ms)
    duration_ms = min(duration_ms, step * MAX_CUTS)  # a container claiming a century
    cuts = set(range(range_ms, duration_ms, range_ms))
    if segment_ms:
        cuts |= set(range(segment_ms, duration_ms, segment_ms))
    bounds: list[int | None] = [None, *sorted(cuts), None]
    return list(itertools.pairwise(bounds))


def in_span(time: Fraction, span: Span) -> bool:
    start, end = span
    return (start is None or time * 1000 >= start) and (end is None or time * 1000 < end)


def segment_index(span: Span, segment_ms: int) -> int:
    """The segment a range lies in (ranges never straddle two)."""
    return (span[0] or 0) // segment_ms


def segment_name(video_key: str, index: int, segment_ms: int) -> str:
    """`race.mp4#t=60,120`: segment 1 of 60 s (a Media Fragments time range, in seconds)."""
    start, end = _seconds(index * segment_ms), _seconds((index + 1) * segment_ms)
    return f"{video_key}{FRAME_MARK}{start},{end}"


def _seconds(ms: int) -> str:
    whole, part = divmod(ms, 1000)
    return f"{whole}.{part:03d}".rstrip("0").rstrip(".")


def one_failure_per_changed_video(failures: list[Failure]) -> list[Failure]:
    """A video that changed during the job fails every range still to read it: one failure,
    at the earliest of them."""
    changed: dict[str, Failure] = {}
    kept = []
    for failure in failures:
        if not failure.reason.startswith(CHANGED):
            kept.append(failure)
            continue
        video = video_of(failure.source_path)
        earlier = changed.get(video)
        if earlier is None or _failed_at_ms(failure) < _failed_at_ms(earlier):
            changed[video] = failure
    return kept + list(changed.values())


def _failed_at_ms(failure: Failure) -> int:
    return (parse_frame_key(failure.source_path) or ("", -1))[1]
