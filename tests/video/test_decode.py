"""Real clips (x264 in MP4, MKV, MPEG-TS) through the job's own worker, in memory: exact
sampling read back from the pixels, any cut into ranges, damaged and foreign files."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from motoray.config import FrameSampling
from motoray.imageio import load_image
from motoray.video.sample import frame_counter, render_clip, write_clip, write_sample_videos
from motoray.video.sampling import Sampler, milliseconds, spans
from tests.conftest import outputs_in_memory
from tests.video.conftest import FPS, SIZE, request, shown_ms, video_config


def made(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row.get("error") is None]


def test_every_output_shows_the_frame_its_key_names(clips, tmp_path):
    config = video_config(clips, tmp_path)
    rows, files = outputs_in_memory(config, request())
    assert not [row for row in rows if row.get("error")]
    for video in ("clip000.mp4", "clip001.mp4", "clip002.mp4"):
        times = [row["time_ms"] for row in rows if row["video"] == video]
        assert len(times) == 20  # every_s 0.5 on 10 s
        assert times == sorted(times) and times[:3] == [0, 520, 1000]
    for row in rows:
        assert row["source_path"] == f"{row['video']}#t={row['time_ms']}"
        assert f"_{row['time_ms']}ms." in row["output_path"]  # the name carries it too
        assert shown_ms(files[row["output_path"]]) == row["time_ms"]
        assert (row["width"], row["height"]) == (160, 90)


@pytest.fixture(scope="module")
def clip_30fps(tmp_path_factory) -> Path:
    """5 s at 30 fps: every_n must go by the stream's rate, not the 25 fps of the others."""
    folder = tmp_path_factory.mktemp("at30")
    write_sample_videos(folder, 1, SIZE, seconds=5, fps=30)
    return folder


@pytest.mark.parametrize("range_s", [60, 1.3])
def test_every_n_takes_every_nth_frame_read_back_from_the_pixels(clip_30fps, tmp_path, range_s):
    config = video_config(clip_30fps, tmp_path, every_n=7, range_s=range_s)
    rows, files = outputs_in_memory(config, request())
    counters = [frame_counter(load_image(files[row["output_path"]])) for row in rows]
    assert counters == list(range(0, 150, 7))  # frames 0, 7, ... 147 of 150
    assert [row["time_ms"] for row in rows] == [milliseconds(Fraction(n, 30)) for n in counters]


@pytest.mark.parametrize(
    "frames",
    [{"every_s": 0.5}, {"fps": 3, "start_s": 1.2, "end_s": 8.7}, {"keyframes": True}],
    ids=["every_s", "fps-window", "keyframes"],
)
def test_cut_into_1_3_or_7_ranges_the_outputs_are_identical(clips, tmp_path, frames):
    body = request(
        augmentations=[{"RANDOM_CROP": {"crop_dimensions": [40, 40], "target_count": 2}}],
        include_original=True,
        train_test_split={"train_ratio": 50, "test_ratio": 50},
    )
    results = []
    for range_s, count in ((10, 1), (3.4, 3), (1.5, 7)):
        assert len(spans(10_000, round(range_s * 1000))) == count
        config = video_config(clips, tmp_path, **frames, range_s=range_s)
        results.append(outputs_in_memory(config, body))
    assert results[0][0] and not [r for r in results[0][0] if r.get("error")]
    assert results[0] == results[1] == results[2]  # rows (seeds, boxes) and bytes
    for row in made(results[0][0]):
        if row["operator"] == "ORIGINAL":
            assert shown_ms(results[0][1][row["output_path"]]) == row["time_ms"]


def _clip(path: Path, times: list[Fraction], start: Fraction = Fraction(0)) -> Path:
    write_clip(path, render_clip(0, len(times), SIZE), times, FPS, start=start)
    return path


def test_variable_frame_rate_clip_is_sampled_by_its_timestamps(tmp_path):
    folder = tmp_path / "vfr"
    folder.mkdir()
    # 25 fps on average, with jitter, a burst and a stall (phone footage does this).
    steps = [40 + (i % 3) * 7 - 7 for i in range(200)]
    steps[50:60] = [10] * 10
    steps[120] = 900
    times = [Fraction(sum(steps[:i]), 1000) for i in range(200)]
    _clip(folder / "phone.mkv", times)
    config = video_config(folder, tmp_path / "out", every_s=0.5, range_s=2.3)
    rows, files = outputs_in_memory(config, request())
    sampler = Sampler.of(FrameSampling(every_s=0.5), None)
    expected, previous = [], None
    for index, time in enumerate(times):
        if sampler.sampled(time, previous, False):
            expected.append((milliseconds(time), index))
        previous = time
    assert [(r["time_ms"], frame_counter(load_image(files[r["output_path"]]))) for r in rows] == (
        expected
    )
    assert len(expected) < len(range(0, milliseconds(times[-1]), 500)) + 1  # the stall: fewer


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])
def test_a_video_that_starts_late_is_timed_from_its_start(tmp_path, suffix):
    folder = tmp_path / "late"
    folder.mkdir()
    # MPEG-TS starts its clock where the broadcast was; the MKV is told to start at 5 s.
    _clip(folder / f"late{suffix}", [Fraction(i, FPS) for i in range(100)], Fraction(5))
    config = video_config(folder, tmp_path / "out", every_s=0.5, range_s=1.3)
    rows, files = outputs_in_memory(config, request())
    assert [r["time_ms"] for r in rows] == [0, 520, 1000, 1520, 2000, 2520, 3000, 3520]
    assert all(shown_ms(files[r["output_path"]]) == r["time_ms"] for r in rows)


@pytest.fixture
def damaged(clips, tmp_path) -> Path:
    folder = tmp_path / "damaged"
    folder.mkdir()
    data = (clips / "clip000.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])  # an upload that stopped
    (folder / "notes.mp4").write_text("meeting notes, not a video\n" * 40)
    (folder / "empty.mkv").write_bytes(b"")
    mkv = _clip(tmp_path / "foreign.mkv", [Fraction(i, FPS) for i in range(10)])
    # A codec FFmpeg does not decode: the stream's codec id renamed in the MKV header.
    foreign = mkv.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_MOTORAY/NOPE!")
    (folder / "foreign.mkv").write_bytes(foreign)
    shutil.copy(clips / "clip001.mp4", folder / "good.mp4")
    return folder


@pytest.mark.parametrize("range_s", [60, 1.7])
def test_damaged_and_foreign_files_are_recorded_and_the_rest_is_kept(damaged, tmp_path, range_s):
    config = video_config(damaged, tmp_path / "out", every_s=0.5, range_s=range_s)
    rows, files = outputs_in_memory(config, request())
    failures = {r["source_path"]: r["error"] for r in rows if r.get("error")}
    assert failures.pop("notes.mp4").startswith("not a readable video (Invalid data")
    assert failures.pop("empty.mkv").startswith("not a readable video")
    assert failures.pop("foreign.mkv") == (
        "unsupported codec: FFmpeg has no decoder for its video stream"
    )
    # The cut file: its frames before the cut are kept; the failure says where it broke.
    [(where, reason)] = failures.items()
    video, _, at = where.partition("#t=")
    assert video == "cut.mp4" and f"at t={int(at) / 1000:.3f} s: " in reason
    assert "damaged video data" in reason or "truncated" in reason
    kept = [r["time_ms"] for r in made(rows) if r["video"] == "cut.mp4"]
    # Every frame the clean clip samples before the damage (x264's bytes are fixed: the cut
    # falls after the frame at 4.52 s), none after.
    clean = [row["time_ms"] for row in outputs_in_memory(video_config(damaged, tmp_path / "c"),
             request(), keys=["good.mp4"])[0]]  # fmt: skip
    assert 3000 < int(at) < 9000
    assert kept == [t for t in clean if t < int(at)]
    assert all(shown_ms(files[r["output_path"]]) == r["time_ms"] for r in made(rows))
    assert len([r for r in made(rows) if r["video"] == "good.mp4"]) == 20


def test_frames_over_the_pixel_limit_are_refused_before_decoding(clips, tmp_path):
    config = video_config(clips, tmp_path)
    config.limits.max_image_pixels = 320 * 180 - 1
    rows, _ = outputs_in_memory(config, request())
    assert {r["error"] for r in rows} == {
        "frames too large: 320x180 pixels > limit 57599 (limits.max_image_pixels)"
    }


def test_frames_that_grow_past_the_pixel_limit_midway_are_refused(tmp_path):
    """A stream checked at open may change size later: an MPEG-TS of a small clip then a
    big one once gave 8192x8192 outputs past a 50 Mpx limit. Each frame is checked."""
    folder = tmp_path / "switch"
    folder.mkdir()
    small, big = tmp_path / "small.ts", tmp_path / "big.ts"
    write_clip(small, render_clip(0, 25, (64, 36)), [Fraction(i, FPS) for i in range(25)], FPS)
    times = [Fraction(i, FPS) for i in range(25)]
    write_clip(big, render_clip(0, 25, SIZE), times, FPS, start=Fraction(2))
    (folder / "switch.ts").write_bytes(small.read_bytes() + big.read_bytes())
    config = video_config(folder, tmp_path / "out", every_s=0.2)
    config.limits.max_image_pixels = 64 * 36
    rows, _ = outputs_in_memory(config, request())
    refused = [r["error"] for r in rows if r.get("error")]
    width, height = SIZE
    too_large = f"frames too large: {width}x{height} pixels > limit 2304 (limits.max_image_pixels)"
    # The splice itself is flagged too (its continuity counters jump); no frame past the
    # limit is an output.
    splice = "at t=0.800 s: damaged video data (the container flags it corrupt)"
    assert any(error.endswith(too_large) for error in refused), refused
    assert set(refused) - {splice} == {e for e in refused if e.endswith(too_large)}, refused
    assert any(not r.get("error") for r in rows)  # the small clip's frames are kept
