"""Video fixtures: real clips encoded by PyAV (x264) with a frame counter in their pixels."""

from __future__ import annotations

from pathlib import Path

import pytest

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.imageio import load_image
from motoray.video.sample import frame_counter, write_sample_videos
from tests.s3server import s3_endpoint  # noqa: F401  (fixture)

FPS = 25
SECONDS = 10
SIZE = (320, 180)
SMALL = [160, 90]  # input_image_size of most requests here


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """Three 10 s 25 fps clips: clip000.mp4, clip001.mp4, clip002.mp4."""
    folder = tmp_path_factory.mktemp("broadcast")
    write_sample_videos(folder, 3, SIZE, seconds=SECONDS, fps=FPS)
    return folder


def video_config(uri: Path | str, output: Path, name: str = "broadcast", **frames) -> Config:
    frames = frames or {"every_s": 0.5}
    source = SourceConfig(uri=str(uri), kind="video", frames=frames)
    return Config(sources={name: source}, output=OutputConfig(uri=str(output)))


def request(name: str = "broadcast", **fields) -> dict:
    return {"name": name, "input_image_size": SMALL, **fields}


def shown_ms(jpeg: bytes, fps: int = FPS) -> int:
    """The time of the frame an output shows, read back from its pixels (constant rate)."""
    return frame_counter(load_image(jpeg)) * 1000 // fps
