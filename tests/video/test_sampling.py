"""The sampling rule and the cutting of videos into ranges, on plain numbers (no decoding)."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from motoray.config import FrameSampling
from motoray.video.sampling import (
    Sampler,
    frame_key,
    in_span,
    milliseconds,
    parse_frame_key,
    segment_index,
    segment_name,
    spans,
)


def sampled(
    sampler: Sampler, times: list[Fraction], keyframes: set[int] = frozenset()
) -> list[int]:
    """One pass over the whole video: the sampled frames' times in ms."""
    chosen, previous = [], None
    for index, time in enumerate(times):
        if sampler.sampled(time, previous, index in keyframes):
            chosen.append(milliseconds(time))
        previous = time
    return chosen


def sampled_by_ranges(sampler, times, ranges, keyframes=frozenset()) -> list[int]:
    """What the tasks of `ranges` sample together: each decides its own frames, knowing only
    the frame before its first one (as a task that decoded from an earlier keyframe does)."""
    chosen = []
    for span in ranges:
        previous = None
        for index, time in enumerate(times):
            if in_span(time, span) and sampler.sampled(time, previous, index in keyframes):
                chosen.append(milliseconds(time))
            previous = time
    return chosen


CFR_25 = [Fraction(i, 25) for i in range(250)]  # 10 s at 25 fps


def test_every_half_second_of_a_10s_25fps_clip_is_20_frames():
    times = sampled(Sampler.of(FrameSampling(every_s=0.5), Fraction(25)), CFR_25)
    assert len(times) == 20
    # Each target takes the first frame shown at or after it: 0.5 s falls between frames.
    assert times[:4] == [0, 520, 1000, 1520]


@pytest.mark.parametrize(
    "frames",
    [{"every_s": 0.5}, {"fps": 2}, {"every_n": 25, "start_s": 1}, {"every_s": 0.04, "end_s": 3}],
)
def test_settings_agree_with_their_targets(frames):
    sampler = Sampler.of(FrameSampling(**frames), Fraction(25))
    times = sampled(sampler, CFR_25)
    assert len(times) == sampler.count(Fraction(0), Fraction(10))
    # Every sampled frame is the first at or after its target, and no target is skipped.
    targets = [sampler.start + k * sampler.period for k in range(len(times))]
    for target, ms in zip(targets, times):
        assert Fraction(ms, 1000) >= target and Fraction(ms, 1000) - target < Fraction(1, 25)


def test_every_n_frames_needs_the_rate_and_follows_it():
    with pytest.raises(ValueError, match="frame rate"):
        Sampler.of(FrameSampling(every_n=5), None)
    sampler = Sampler.of(FrameSampling(every_n=5), Fraction(30000, 1001))  # 29.97 fps
    times = [Fraction(i * 1001, 30000) for i in range(300)]
    assert sampled(sampler, times) == [milliseconds(t) for t in times[::5]]


def test_variable_frame_rate_is_sampled_by_time_not_by_count():
    rng = random.Random(4)
    times, t = [], Fraction(0)
    for _ in range(400):
        times.append(t)
        t += Fraction(rng.choice([20, 33, 40, 80, 200]), 1000)  # bursts and gaps
    sampler = Sampler.of(FrameSampling(every_s=0.25), None)
    chosen = sampled(sampler, times)
    # Every target finds the first frame at or after it; a long gap serves several at once.
    expected = sorted(
        {milliseconds(min(x for x in times if x >= k * Fraction(1, 4))) for k in range(200)
         if k * Fraction(1, 4) <= times[-1]}
    )  # fmt: skip
    assert chosen == expected


def test_keyframes_between_start_and_end():
    sampler = Sampler.of(FrameSampling(keyframes=True, start_s=2, end_s=8), Fraction(25))
    keys = set(range(0, 250, 50))
    assert sampled(sampler, CFR_25, keys) == [2000, 4000, 6000]


@pytest.mark.parametrize("seed", range(20))
def test_any_cut_into_ranges_samples_the_same_frames(seed):
    rng = random.Random(seed)
    times = sorted(
        {Fraction(rng.randrange(0, 60_000), 1000) for _ in range(rng.randrange(50, 900))}
    )
    frames = rng.choice([{"every_s": 0.5}, {"fps": 3}, {"every_s": 1.7, "start_s": 4}])
    sampler = Sampler.of(FrameSampling(**frames), Fraction(25))
    duration = milliseconds(times[-1])
    whole = sampled(sampler, times)
    for range_ms in (duration + 1, rng.randrange(2_000, 20_000), rng.randrange(700, 2_000)):
        assert sampled_by_ranges(sampler, times, spans(duration, range_ms)) == whole


@pytest.mark.parametrize("seed", range(20))
def test_ranges_tile_the_time_line_and_stay_inside_segments(seed):
    rng = random.Random(seed)
    duration, range_ms = rng.randrange(0, 500_000), rng.randrange(100, 90_000)
    segment_ms = rng.choice([None, rng.randrange(100, 120_000)])
    cut = spans(duration, range_ms, segment_ms)
    assert cut[0][0] is None and cut[-1][1] is None  # frames before or after the metadata
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cut))
    assert all(a[1] > a[0] for a in cut[1:-1])
    if segment_ms:
        for span in cut:
            index = segment_index(span, segment_ms)
            assert span[1] is None or span[1] <= (index + 1) * segment_ms


def test_ranges_are_a_function_of_the_duration():
    assert spans(10_000, 10_000) == [(None, None)]
    assert spans(10_000, 3_400) == [(None, 3400), (3400, 6800), (6800, None)]
    assert len(spans(10_000, 1_500)) == 7
    assert spans(10_000, 4_000, segment_ms=2_500) == [
        (None, 2500), (2500, 4000), (4000, 5000), (5000, 7500), (7500, 8000), (8000, None)
    ]  # fmt: skip


def test_keys_and_segment_names():
    assert frame_key("race/a.mp4", 1500) == "race/a.mp4#t=1500"
    assert parse_frame_key("race/a.mp4#t=1500") == ("race/a.mp4", 1500)
    assert parse_frame_key("race/a#t=1.jpg") is None
    assert segment_name("a.mp4", 1, 60_000) == "a.mp4#t=60,120"
    assert segment_name("a.mp4", 3, 2_500) == "a.mp4#t=7.5,10"
    assert milliseconds(Fraction(1001, 30000)) == 33 and milliseconds(Fraction(1, 2000)) == 1
