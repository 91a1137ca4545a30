"""The driver's side of a video source: every video's metadata, its split, its ranges.

No frame is decoded here. Each video is probed (its container's headers, a few ranged reads
on S3); the split is decided per video, or per time segment with `group_by:
"segment:<seconds>"`, weighted by the frames the metadata promises; each video becomes
items, one per time range, which the worker decodes (`frames.py`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction

from motoray.config import FrameSampling
from motoray.spec import TrainTestSplit, segment_seconds
from motoray.split import Assignment, assign, group_names
from motoray.storage import Refused, Storage
from motoray.video.decoder import VideoError, VideoInfo, probe
from motoray.video.sampling import Sampler, Span, segment_index, segment_name, spans

PROBE_THREADS = 16  # headers are small reads: latency-bound on S3


@dataclass(frozen=True)
class VideoPlan:
    """Every listed video's metadata (or why it cannot be read) and how it is cut."""

    videos: dict[str, VideoInfo | str]
    frames: FrameSampling
    segment_ms: int | None  # group_by "segment:<seconds>"
    listed: dict[str, str | None] = field(default_factory=dict)  # the listing's versions

    def version(self, key: str) -> str | None:
        """The version tasks read: the one probed, else (unreadable) the one listed, so a
        video replaced since is recorded as changed, not read anew."""
        info = self.videos[key]
        return self.listed.get(key) if isinstance(info, str) else info.version

    def spans(self, key: str) -> list[Span]:
        info = self.videos[key]
        if isinstance(info, str):
            return [(None, None)]  # the worker meets the same problem and records it
        range_ms = round(self.frames.range_s * 1000)
        return spans(info.duration_ms, range_ms, self.segment_ms)

    def unit(self, key: str, span: Span) -> str:
        """What the split places: the video, or the segment `span` lies in."""
        if self.segment_ms is None or isinstance(self.videos[key], str):
            return key
        return segment_name(key, segment_index(span, self.segment_ms), self.segment_ms)

    def units(self) -> dict[str, tuple[str, int]]:
        """unit -> (its video, the frames the metadata promises in it), in listing order."""
        units: dict[str, tuple[str, int]] = {}
        for key, info in self.videos.items():
            for span in self.spans(key):
                unit = self.unit(key, span)
                if unit not in units:
                    units[unit] = (key, self._expected(info, span))
        return units

    def _expected(self, info: VideoInfo | str, span: Span) -> int:
        """Frames promised in the video (no segments) or in the segment `span` lies in."""
        if isinstance(info, str):
            return 0
        try:
            sampler = Sampler.of(self.frames, info.rate)
        except ValueError:
            return 0  # every_n without a rate: the worker records why
        duration = Fraction(info.duration_ms, 1000)
        if self.segment_ms is None:
            return sampler.count(Fraction(0), duration)
        segment = Fraction(self.segment_ms, 1000)
        begin = segment_index(span, self.segment_ms) * segment
        return sampler.count(begin, min(begin + segment, duration))

    def expected_frames(self) -> int:
        return sum(frames for _, frames in self.units().values())

    def assign(
        self,
        split: TrainTestSplit | None,
        seed: int,
        labels: Mapping[str, str | None] | None,
        group_by: str,
        merged: Mapping[str, str] | None = None,
    ) -> Assignment:
        """Split of every unit (video or segment), weighted by its promised frames: a group
        is one video by default, so no video has frames in two splits."""
        units = self.units()
        if group_by in ("video",) or group_by.startswith("segment:"):
            groups: dict[str, str | None] = {unit: unit for unit in units}
        else:  # folder, regex: over the video's key; each unit follows its video
            by_video = group_names(list(self.videos), group_by)
            groups = {unit: by_video[video] or video for unit, (video, _) in units.items()}
        unit_labels = None if labels is None else {u: labels[v] for u, (v, _) in units.items()}
        sizes = {unit: frames for unit, (_, frames) in units.items()}
        return assign(
            list(units),
            split,
            seed,
            unit_labels,
            groups=groups,
            sizes=sizes,
            group_by=group_by,
            merged=merged,
        )

    def opening(self, key: str, frames: int) -> tuple[str, str, Span]:
        """The start of a video long enough for about `frames` sampled frames: what previews
        and plans decode instead of the whole video."""
        period_ms = 2000 if self.frames.every_s is None else round(self.frames.every_s * 1000)
        if self.frames.fps is not None:
            period_ms = math.ceil(1000 / self.frames.fps)
        elif self.frames.every_n is not None:
            period_ms = self.frames.every_n * 1000 // 24  # a guess at the rate, only to stop
        end = round(self.frames.start_s * 1000) + frames * period_ms
        first = self.spans(key)[0]
        return key, self.unit(key, first), (None, end if first[1] is None else min(end, first[1]))

    def ranges(self, keys: Sequence[str]) -> list[tuple[str, str, Span]]:
        """(video, unit, time range) for every range of every video, in listing and time
        order: the items of a job."""
        return [(key, self.unit(key, span), span) for key in keys for span in self.spans(key)]


def probe_all(
    storage: Storage,
    keys: Sequence[str],
    frames: FrameSampling,
    group_by: str | None,
    max_pixels: int,
    listed: dict[str, str | None] | None = None,
) -> VideoPlan:
    """Every video's metadata, read in parallel from the version `listed` (where given); a
    file that is not a decodable video gets its reason instead (recorded as its failure by
    the worker). Storage errors fail the job."""
    listed = listed or {}

    def one(key: str) -> VideoInfo | str:
        try:
            return probe(storage, key, frames, max_pixels, listed.get(key))
        except (VideoError, Refused, FileNotFoundError) as e:
            return str(e)

    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        videos = dict(zip(keys, pool.map(one, keys)))
    segment = group_by is not None and group_by.startswith("segment:")
    segment_ms = round(segment_seconds(group_by) * 1000) if segment else None
    return VideoPlan(videos, frames, segment_ms, listed)
