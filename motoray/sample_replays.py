"""Sample data with replays: the same shots again, as broadcast shows them, for near-duplicate
splits (`motoray sample-data --replays N`).

Live shots are the scenes of `motoray.sample_data` (frames) or `motoray.video.sample`
(clips). Replay `r` shows again the shots of live clip `replayed(r, clips)`, changed one of
four ways (REPLAY_KINDS): a replay wipe (a graphic sweeping in from the left), another
scale, another JPEG quality (frames) or x264 quality (clips), a ticker over it. Each frame
carries its shot's identity in its pixels, a block of black and white cells in its top-left
corner (`draw_shot`, read back by `read_shot` after any resize or re-encode): a test can
tell which frames are copies of which without trusting any hash.

    <dir>/live/clip003/frame0002.jpg      <dir>/replays/replay01/frame0002.jpg  (frames)
    <dir>/live/clip003.mp4                <dir>/replays/replay01.mp4            (clips)
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from motoray.imageio import encode_jpeg
from motoray.sample_data import _Scene

SHOT_BITS = 20  # the shot id: clip * SHOT_FRAMES + frame
SHOT_FRAMES = 4096
_COLUMNS, _ROWS = 5, 4
REPLAY_KINDS = ("wipe", "scale", "quality", "ticker")


def shot_id(clip: int, frame: int) -> int:
    return clip * SHOT_FRAMES + frame


def replayed(replay: int, clips: int) -> int:
    """The live clip replay `replay` shows again: spread over the clips."""
    return (replay * 5 + 1) % clips


def _cell(height: int) -> int:
    return max(6, height // 30)


def draw_shot(image: np.ndarray, shot: int) -> None:
    """The shot id as SHOT_BITS black and white cells in the top-left corner."""
    cell = _cell(image.shape[0])
    for bit in range(SHOT_BITS):
        row, column = divmod(bit, _COLUMNS)
        value = 255 if shot >> bit & 1 else 0
        image[row * cell : (row + 1) * cell, column * cell : (column + 1) * cell] = value


def read_shot(image: np.ndarray, drawn_height: int) -> int:
    """The shot id `draw_shot` drew on a frame `drawn_height` high, from any resized copy
    (read from the middle of each cell)."""
    scale = image.shape[0] / drawn_height
    cell = _cell(drawn_height) * scale
    value = 0
    for bit in range(SHOT_BITS):
        row, column = divmod(bit, _COLUMNS)
        y, x = round((row + 0.5) * cell), round((column + 0.5) * cell)
        reach = max(1, round(cell / 4))
        patch = image[y - reach : y + reach, x - reach : x + reach]
        value |= int(patch.mean() > 127) << bit
    return value


def replay_look(image: np.ndarray, kind: str, index: int) -> np.ndarray:
    """How a replay shows a live frame: `kind` one of REPLAY_KINDS (scale and quality are
    applied when the frame is encoded)."""
    image = image.copy()
    height, width = image.shape[:2]
    if kind == "wipe":  # a graphic sweeping in from the left edge
        reach = width // 10 + (index % 4) * width // 40
        band = image[height // 6 :, :reach].astype(np.int16)
        image[height // 6 :, :reach] = (band // 3 + (40, 60, 160)).clip(0, 255).astype(np.uint8)
    elif kind == "ticker":  # a red band of text along the bottom
        top = height - height // 10
        image[top:] = (200, 20, 20)
        stripes = (np.arange(width) // max(2, width // 80) + index) % 3 == 0
        image[top + height // 40 : height - height // 40, stripes] = 255
    return image


def write_replay_frames(
    directory: str | Path,
    clips: int = 12,
    replays: int = 6,
    frames_per_clip: int = 6,
    size: tuple[int, int] = (640, 360),
    *,
    seed: int = 0,
) -> list[Path]:
    """Live frames and replays of them (see the module docstring); returns every path."""
    directory = Path(directory)
    paths = []
    live = {}
    for clip in range(clips):
        scene = _Scene(size, seed, clip, frames_per_clip)
        for frame in range(frames_per_clip):
            image = scene.render(frame)
            draw_shot(image, shot_id(clip, frame))
            live[clip, frame] = image
            paths.append(_write(directory / f"live/clip{clip:03d}/frame{frame:04d}.jpg", image))
    for replay in range(replays):
        kind = REPLAY_KINDS[replay % len(REPLAY_KINDS)]
        clip = replayed(replay, clips)
        for frame in range(frames_per_clip):
            image = replay_look(live[clip, frame], kind, frame)
            quality = 40 if kind == "quality" else 90
            if kind == "scale":
                scaled = (size[0] * 3 // 4, size[1] * 3 // 4)
                image = np.asarray(Image.fromarray(image).resize(scaled, Image.Resampling.BILINEAR))
            path = directory / f"replays/replay{replay:02d}/frame{frame:04d}.jpg"
            paths.append(_write(path, image, quality))
    return paths


def _write(path: Path, image: np.ndarray, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(image, quality))
    return path


def write_replay_videos(
    directory: str | Path,
    clips: int = 6,
    replays: int = 4,
    size: tuple[int, int] = (320, 180),
    *,
    seconds: int = 4,
    fps: int = 10,
    seed: int = 0,
) -> list[Path]:
    """Live clips and replays of them, each replay a whole live clip shown again changed
    (frame i of a replay is frame i of its clip: sampled at the same times, the same shots)."""
    from motoray.video.sample import render_clip, write_clip

    directory = Path(directory)
    frames = seconds * fps
    times = [Fraction(i, fps) for i in range(frames)]
    live = {}
    paths = []
    for clip in range(clips):
        images = []
        for index, image in enumerate(render_clip(clip, frames, size, seed)):
            draw_shot(image, shot_id(clip, index))
            images.append(image)
        live[clip] = images
        path = directory / f"live/clip{clip:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, images, times, fps)
        paths.append(path)
    for replay in range(replays):
        kind = REPLAY_KINDS[replay % len(REPLAY_KINDS)]
        images = [
            replay_look(image, kind, i) for i, image in enumerate(live[replayed(replay, clips)])
        ]
        if kind == "scale":
            scaled = (size[0] * 3 // 4 // 2 * 2, size[1] * 3 // 4 // 2 * 2)  # even, for yuv420p
            images = [np.asarray(Image.fromarray(i).resize(scaled)) for i in images]
        path = directory / f"replays/replay{replay:02d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, images, times, fps, crf=35 if kind == "quality" else 23)
        paths.append(path)
    return paths
