"""What one range of a video costs: a task seeks to the keyframe before its range and decodes
(and, on S3, reads) only about its range, not the video up to it. The frames would be the
same either way, so only the decoder's counters and the recorded GETs can tell."""

from __future__ import annotations

import itertools
import logging
from fractions import Fraction

import av
import pytest

from motoray.config import FrameSampling
from motoray.storage import LocalStorage, Storage
from motoray.storage.ranged import BLOCK_BYTES
from motoray.storage.s3 import S3Storage
from motoray.video import decoder
from motoray.video.decoder import DecodeStats, Frame, open_video, span_frames
from motoray.video.sample import (
    GOP_SECONDS,
    frame_counter,
    render_clip,
    write_clip,
    write_sample_videos,
)
from motoray.video.sampling import Sampler, Span, spans
from tests.video.conftest import FPS, SECONDS, SIZE

EVERY_HALF_S = FrameSampling(every_s=0.5)
GOP = GOP_SECONDS * FPS  # frames from one keyframe to the next
# Decoding stops at the first frame at or after the range's end; FFmpeg's frame threads
# may hand out one more before the scan sees it.
PAST_THE_END = 2


def decode(storage: Storage, key: str, span: Span) -> tuple[list[Frame], DecodeStats]:
    """What one task does with one range (motoray.video.frames), and what it cost."""
    with open_video(storage, key, FrameSampling(every_s=0.5), 10**8) as video:
        sampler = Sampler.of(EVERY_HALF_S, video.rate)
        found = list(span_frames(video, sampler, span, None))
    assert all(isinstance(f, Frame) for f in found), found
    return found, video.stats


def frames_in(span: Span) -> int:
    """Frames of the constant rate clip shown in [start, end)."""
    first, stop = (0 if t is None else -(-t * FPS // 1000) for t in span)
    return (SECONDS * FPS if span[1] is None else stop) - first


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_each_range_decodes_its_frames_and_at_most_one_gop_before(tmp_path, suffix):
    # MP4 and MKV seek to a keyframe by their index; MPEG-TS lands on any frame near the
    # target and must be walked back to the keyframe.
    write_sample_videos(tmp_path, 1, SIZE, seconds=SECONDS, fps=FPS, suffix=suffix)
    storage, key = LocalStorage(tmp_path), f"clip000{suffix}"
    whole, stats = decode(storage, key, (None, None))
    assert stats.frames == SECONDS * FPS and len(whole) == 20
    cut = spans(SECONDS * 1000, 1500)
    assert len(cut) == 7
    found, costs = [], []
    for span in cut:
        frames, stats = decode(storage, key, span)
        found += frames
        costs.append(stats.frames)
        assert stats.seek_failures == 0, span
        # From the keyframe before the range (at most a GOP early) to just past its end.
        assert stats.frames <= frames_in(span) + GOP + PAST_THE_END, (span, stats)
    assert [(f.time, frame_counter(f.image)) for f in found] == [
        (f.time, frame_counter(f.image)) for f in whole
    ]
    # Decoding each range from the video's start would cost about 4x the clip here (sum of
    # the ranges' ends); from its keyframe it costs the clip and at most a GOP per range.
    assert sum(costs) <= SECONDS * FPS + len(cut) * (GOP + PAST_THE_END), costs


@pytest.fixture(scope="module")
def one_keyframe(tmp_path_factory) -> LocalStorage:
    """long.ts and long.mp4: 135 s at 2 fps, small, with one keyframe, at the start (as
    intra refresh encoders make them). No scene cut: x264 would put a keyframe there."""
    folder = tmp_path_factory.mktemp("one_keyframe")
    count, fps = 270, 2
    times = [Fraction(i, fps) for i in range(count)]
    for suffix in (".ts", ".mp4"):
        images = itertools.islice(render_clip(0, 2 * count, (160, 90)), count)
        write_clip(folder / f"long{suffix}", images, times, fps, gop=count)
    return LocalStorage(folder)


def test_with_no_keyframe_within_reach_a_range_is_decoded_from_the_start_and_logged(
    one_keyframe, caplog
):
    # 30 s in: an MPEG-TS seek lands on any frame; backing off passes the start, and
    # decoding from it is then the plan, not a failure.
    with caplog.at_level(logging.WARNING, logger="motoray.video"):
        frames, stats = decode(one_keyframe, "long.ts", (30_000, 60_000))
    assert [frame_counter(f.image) for f in frames] == list(range(60, 120))  # all, at 2 fps
    assert stats.frames == 121 and stats.seek_failures == 0 and not caplog.records

    # 130 s in: no seek up to 128 s back finds a keyframe. The range is still decoded (its
    # frames are the right ones), from the start, and that is counted and logged.
    with caplog.at_level(logging.WARNING, logger="motoray.video"):
        frames, stats = decode(one_keyframe, "long.ts", (130_000, None))
    assert [frame_counter(f.image) for f in frames] == list(range(260, 270))
    assert stats.frames == 270 and stats.seek_failures == 1
    assert [r.getMessage() for r in caplog.records] == [
        "long.ts: no seek up to 128 s back reached a keyframe before t=130.000 s; decoding "
        "the range from the video's start"
    ]


@pytest.mark.parametrize("held", [decoder.MAX_HELD_BYTES, 50_000])  # 50 kB: ~25 s of it
def test_an_indexed_keyframe_far_back_is_sought_and_a_long_gop_is_not_held(
    one_keyframe, caplog, monkeypatch, held
):
    # The MP4's index names the one keyframe: the seek finds it (no failure). What lies
    # between it and the range is held undecoded, unless it is too much to hold.
    monkeypatch.setattr(decoder, "MAX_HELD_BYTES", held)
    with caplog.at_level(logging.WARNING, logger="motoray.video"):
        frames, stats = decode(one_keyframe, "long.mp4", (130_000, None))
    assert [frame_counter(f.image) for f in frames] == list(range(260, 270))
    assert stats.frames == 270 and stats.seek_failures == 0 and not caplog.records


def test_on_s3_a_range_reads_the_blocks_from_its_keyframe_to_its_end(recording_s3, tmp_path):
    endpoint, recorder = recording_s3
    # High quality, so that a keyframe's distance is a block or more of the object.
    [path] = write_sample_videos(tmp_path, 1, (480, 270), seconds=SECONDS, fps=FPS, crf=0)
    size = path.stat().st_size
    blocks = -(-size // BLOCK_BYTES)
    assert blocks >= 8
    bucket = endpoint.new_bucket("videos")
    endpoint.client().put_object(Bucket=bucket, Key=path.name, Body=path.read_bytes())
    storage = S3Storage(bucket, "", endpoint.settings())

    # Where each packet lies in the object (decoding order), from the local file.
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [
            (p.pts * stream.time_base * 1000, p.pos, p.is_keyframe)
            for p in container.demux(stream)
            if p.pts is not None
        ]
    read = []
    for span in spans(SECONDS * 1000, 2000):
        start, end = span
        recorder.gets.clear()
        frames, stats = decode(storage, path.name, span)
        assert frames and stats.seek_failures == 0
        assert all(byte_range for _, byte_range, _ in recorder.gets)  # never a whole object
        fetched = sorted(
            int(r.split("=")[1].split("-")[0]) // BLOCK_BYTES for _, r, _ in recorder.gets
        )
        read.append(sum(sent for *_, sent in recorder.gets))
        # Block 0: the MP4's index (at the front). Then from the block of the keyframe before
        # the range to that of the first packet past its end, and two more (frames the
        # decoder holds back, and the reader's read-ahead).
        keyframe = max((pos for ms, pos, key in packets if key and ms < (start or 0)), default=0)
        past = [pos for ms, pos, _ in packets if end is not None and ms >= end]
        last = past[0] // BLOCK_BYTES + 2 if past else blocks - 1
        allowed = {0, *range(keyframe // BLOCK_BYTES, last + 1)}
        assert set(fetched) <= allowed, (span, fetched, sorted(allowed))
        assert len(fetched) == len(set(fetched)), fetched  # no block read twice
    print(f"bytes read per 2 s range: {read} of {size}")
