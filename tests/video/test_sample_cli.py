"""`motoray sample-data --video` as a user runs it (a subprocess): the clips it writes decode
with PyAV as stated, and show what the help promises: bikes that move, a ticker that
scrolls, a scene cut half way and a frame counter."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from motoray.sample_data import _Scene
from motoray.video.sample import _Ticker, frame_counter

WIDTH, HEIGHT, SECONDS, FPS = 320, 180, 4, 20
FRAMES = SECONDS * FPS


def decoded(path: Path) -> tuple[tuple, list[np.ndarray]]:
    """(codec, width, height, rate, duration in s) as the container states them, and the
    frames, which must be shown 1/FPS apart from 0."""
    with av.open(str(path)) as container:
        [stream] = container.streams.video
        stated = (
            stream.codec_context.name,
            stream.width,
            stream.height,
            stream.average_rate,
            stream.duration * stream.time_base,
        )
        frames = list(container.decode(stream))
    assert [frame.time for frame in frames] == [i / FPS for i in range(FRAMES)]
    return stated, [frame.to_ndarray(format="rgb24") for frame in frames]


def sample_data(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`motoray sample-data FOLDER ARGS` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "motoray.cli", "sample-data", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_sample_data_video_writes_the_clips_the_help_describes(tmp_path):
    folder = tmp_path / "broadcast"
    size = f"{WIDTH}x{HEIGHT}"
    args = ["--video", "--count", "2", "--size", size, "--seconds", str(SECONDS), "--fps", str(FPS)]
    result = sample_data(folder, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 2 clips (320x180, 4 s at 20 fps) to {folder}"
    assert sorted(p.name for p in folder.iterdir()) == ["clip000.mp4", "clip001.mp4"]

    firsts = []
    for clip, path in enumerate(sorted(folder.iterdir())):
        stated, images = decoded(path)
        assert stated == ("h264", WIDTH, HEIGHT, FPS, SECONDS)
        firsts.append(images[0])

        # The frame counter: every frame's number, read back from its pixels.
        assert [frame_counter(image) for image in images] == list(range(FRAMES))

        # The scene cut: the one large change between consecutive frames, half way (the
        # picture above the ticker; the camera pans and the bikes move in between).
        ticker = _Ticker((WIDTH, HEIGHT), clip)  # where the generator draws it
        picture = [image[: ticker.top] for image in images]
        changes = [difference(a, b).mean() for a, b in itertools.pairwise(picture)]
        cut = int(np.argmax(changes)) + 1
        assert cut == FRAMES // 2
        assert changes[cut - 1] > 3 * max(changes[: cut - 1] + changes[cut:]), changes
        assert min(changes) > 0.5  # never a frozen picture

        # The ticker: a red band whose text scrolls left a few pixels a frame.
        band = [image[ticker.top : ticker.top + ticker.band].astype(np.int16) for image in images]
        red, green, blue = np.median(np.concatenate(band).reshape(-1, 3), axis=0)
        assert red > 150 and green < 80 and blue < 80
        still = np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(band)])
        scrolled = min(
            np.mean(
                [np.abs(b[:, :-step] - a[:, step:]).mean() for a, b in itertools.pairwise(band)]
            )
            for step in range(1, 9)
        )
        assert scrolled < still / 4, (scrolled, still)

        # The bikes: where the picture differs from the same scene drawn without them, the
        # scene drawn with them matches it far better (x264 blurs their edges); and they move
        # against the (panning) background.
        scene = _Scene((WIDTH, HEIGHT), 0, 2 * clip, FRAMES // 2)
        bare = _Scene((WIDTH, HEIGHT), 0, 2 * clip, FRAMES // 2)
        bare.bikes = []
        masks = []
        for index in (0, 10, 20):
            shown = picture[index]
            without = difference(shown, bare.render(index)[: ticker.top]).sum(axis=2)
            bikes = without > 90
            with_bikes = difference(shown, scene.render(index)[: ticker.top]).sum(axis=2)
            assert bikes.sum() > 500, (clip, index)
            assert with_bikes[bikes].mean() < without[bikes].mean() / 2, (clip, index)
            masks.append(bikes)
        overlap = [(masks[0] & m).sum() / (masks[0] | m).sum() for m in masks[1:]]
        assert max(overlap) < 0.7, overlap
    assert difference(*firsts).mean() > 10  # two clips, two scenes


def test_sample_data_interlaced_writes_field_coded_ts_clips(tmp_path):
    folder = tmp_path / "1080i"
    args = ["--video", "--interlaced", "--count", "1", "--size", "320x180", "--seconds", "1"]
    result = sample_data(folder, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"wrote 1 interlaced clips (320x180, 1 s at 25 fps) to {folder}"
    )
    with av.open(str(folder / "clip000.ts")) as container:
        [stream] = container.streams.video
        frames = list(container.decode(stream))
        assert stream.codec_context.field_order == 2  # interlaced, top field first
    assert len(frames) == 25 and all(frame.interlaced_frame for frame in frames)
    assert [frame_counter(f.to_ndarray(format="rgb24")) for f in frames] == list(range(25))
