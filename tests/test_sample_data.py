from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from motoray.imageio import encode_jpeg, load_image
from motoray.sample_data import frame_name, render_frame, write_sample_frames

SIZE = (320, 180)


def _read_all(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_names_and_order(tmp_path: Path) -> None:
    paths = write_sample_frames(tmp_path, 23, SIZE, frames_per_clip=10)
    names = [p.name for p in paths]
    assert names[0] == "clip000_frame0000.jpg"
    assert names[9] == "clip000_frame0009.jpg"
    assert names[10] == "clip001_frame0000.jpg"
    assert names[-1] == "clip002_frame0002.jpg"
    assert names == [frame_name(i) for i in range(23)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert all(p.parent == tmp_path for p in paths)


def test_bytes_are_deterministic_and_independent_of_count(tmp_path: Path) -> None:
    first = _read_all(write_sample_frames(tmp_path / "a", 12, SIZE, seed=3, frames_per_clip=5))
    second = _read_all(write_sample_frames(tmp_path / "b", 12, SIZE, seed=3, frames_per_clip=5))
    fewer = _read_all(write_sample_frames(tmp_path / "c", 7, SIZE, seed=3, frames_per_clip=5))
    assert first == second
    assert fewer == first[:7]
    assert len(set(first)) == 12  # every frame differs
    other_seed = _read_all(write_sample_frames(tmp_path / "d", 12, SIZE, seed=4, frames_per_clip=5))
    assert not set(other_seed) & set(first)
    # Overwriting gives the same bytes again.
    assert _read_all(write_sample_frames(tmp_path / "a", 12, SIZE, seed=3, frames_per_clip=5)) == (
        first
    )


def test_frames_decode_at_the_requested_size(tmp_path: Path) -> None:
    for path in write_sample_frames(tmp_path, 3, (200, 120), quality=80):
        image = load_image(path.read_bytes())
        assert image.shape == (120, 200, 3)
        assert image.dtype == np.uint8


def test_frames_of_a_clip_look_alike(tmp_path: Path) -> None:
    frames = [render_frame(i, SIZE, frames_per_clip=5) for i in range(10)]
    within = [_mean_abs_diff(frames[0], frames[i]) for i in range(1, 5)]
    across = [_mean_abs_diff(frames[0], frames[i]) for i in range(5, 10)]
    assert max(within) > 0
    assert max(within) < min(across)


def test_files_hold_render_frame(tmp_path: Path) -> None:
    (path,) = write_sample_frames(tmp_path, 1, SIZE, seed=2, quality=95)
    assert path.read_bytes() == encode_jpeg(render_frame(0, SIZE, seed=2), quality=95)


def test_unique_copies_whole_clips(tmp_path: Path) -> None:
    paths = write_sample_frames(tmp_path, 27, SIZE, frames_per_clip=5, unique=7)
    data = _read_all(paths)
    # unique=7 rounds up to 2 whole clips (10 frames); clip c copies clip c % 2.
    assert len(set(data)) == 10
    for i in range(10, 27):
        clip, frame = divmod(i, 5)
        assert data[i] == data[(clip % 2) * 5 + frame]
    assert data[:10] == _read_all(
        write_sample_frames(tmp_path / "all", 10, SIZE, frames_per_clip=5)
    )


def test_full_hd_frame_size_is_broadcast_like() -> None:
    data = encode_jpeg(render_frame(0, (1920, 1080)), quality=90)
    assert 200_000 < len(data) < 600_000


def test_bad_arguments(tmp_path: Path) -> None:
    assert write_sample_frames(tmp_path, 0, SIZE) == []
    with pytest.raises(ValueError):
        write_sample_frames(tmp_path, 1, SIZE, frames_per_clip=0)
    with pytest.raises(ValueError):
        write_sample_frames(tmp_path, 1, SIZE, unique=0)
