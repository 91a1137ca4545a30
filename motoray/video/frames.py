"""The worker's side of a video source: range items in, frames out, as images are.

Each item is one time range of one video; what it yields is, for every sampled frame, an
item of its own (key `<video>#t=<ms>`, the range's split, label and group) with its pixels,
and for what could not be decoded an item naming the position with the reason. The worker
treats both exactly as it treats decoded and failed images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from motoray.storage import Refused
from motoray.video.sampling import Sampler, frame_key, milliseconds, parse_frame_key

if TYPE_CHECKING:
    from motoray.pipeline.jobspec import JobSpec
    from motoray.pipeline.source import Item


def decoded(spec: JobSpec, items: Sequence[Item]) -> Iterator[tuple[Item, np.ndarray | str]]:
    """(frame item, pixels) for every sampled frame of every range, in order; (item, reason)
    for damage, with the position in the key where there is one."""
    for item in items:
        yield from _range(spec, item)


def _range(spec: JobSpec, item: Item) -> Iterator[tuple[Item, np.ndarray | str]]:
    from motoray.video.decoder import Frame, VideoError, open_video, span_frames  # PyAV
    from motoray.video.display import NotDeinterlaced

    start = item.span[0] if item.span else None
    try:
        with open_video(
            spec.source, item.key, spec.frames, spec.limits.max_image_pixels, item.version
        ) as video:
            try:
                sampler = Sampler.of(spec.frames, video.rate)
            except ValueError as e:  # every_n on a stream that states no rate
                raise VideoError(str(e)) from None
            for found in span_frames(video, sampler, item.span or (None, None), spec.size):
                if isinstance(found, Frame):
                    key = frame_key(item.key, milliseconds(found.time))
                    shown = found.shown.to_json()
                    yield replace(item, key=key, span=None, display=shown), found.image
                elif found.time is None:
                    yield _at(item, start), found.reason
                else:
                    at = milliseconds(found.time)
                    yield _at(item, at), f"at t={at / 1000:.3f} s: {found.reason}"
    except (VideoError, NotDeinterlaced, Refused, FileNotFoundError) as e:
        # The whole range is lost; name it by its start, so ranges of one video stay apart.
        yield _at(item, start), str(e)


def _at(item: Item, time_ms: int | None) -> Item:
    key = item.key if time_ms is None else frame_key(item.key, time_ms)
    return replace(item, key=key, span=None)


def lineage(key: str) -> dict[str, str | int | None]:
    """The manifest's `video` and `time_ms` of a frame key."""
    video, time_ms = parse_frame_key(key) or (key, None)
    return {"video": video, "time_ms": time_ms}
