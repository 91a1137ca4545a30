"""Broadcast video as it really is, through the job's own worker: interlaced fields, display
matrices, non-square pixels, several streams or programmes, stream-copy trims, dropouts.
Every clip carries its frame numbers in its pixels; what an output shows is read back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from motoray.imageio import encode_jpeg, load_image
from motoray.video.display import upright
from motoray.video.sample import frame_counter, write_sample_videos
from tests.conftest import outputs_in_memory
from tests.video import footage
from tests.video.conftest import video_config

FPS = footage.FPS


def made(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row.get("error") is None]


def shown(files: dict[str, bytes], row: dict) -> np.ndarray:
    return load_image(files[row["output_path"]])


RULES = ("every_s", "fps", "every_n", "keyframes")


def run(folder: Path, out: Path, body: dict | None = None, **frames) -> tuple[list, dict]:
    if not any(rule in frames for rule in RULES):
        frames["every_s"] = 0.5
    config = video_config(folder, out, **frames)
    return outputs_in_memory(config, body or {"name": "broadcast"})


def one_clip(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


# Interlaced fields --------------------------------------------------------------------------

INTERLACED = {"h264-ts": footage.interlaced_h264, "mpeg2-ts": footage.interlaced_mpeg2}


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory) -> dict[str, Path]:
    """Each interlaced clip in a folder of its own, and a progressive encode of the motion."""
    root = tmp_path_factory.mktemp("interlaced")
    folders = {}
    for name, write in INTERLACED.items():
        folders[name] = root / name
        folders[name].mkdir()
        write(folders[name] / "field.ts")
    folders["progressive"] = root / "progressive"
    folders["progressive"].mkdir()
    footage.encode(folders["progressive"] / "frames.ts", footage.progressive_frames(100))
    return folders


def comb(rows: list[dict], files: dict[str, bytes]) -> float:
    ratios = [footage.comb_ratio(shown(files, row), row["time_ms"] / 1000) for row in rows]
    return float(np.median(ratios))


@pytest.mark.parametrize("clip", sorted(INTERLACED))
def test_interlaced_frames_are_deinterlaced_as_a_player_shows_them(interlaced, tmp_path, clip):
    rows, files = run(interlaced[clip], tmp_path)
    progressive = comb(*run(interlaced["progressive"], tmp_path / "p"))
    assert len(made(rows)) == len(rows) == 8
    for row in rows:
        assert frame_counter(shown(files, row)) * 1000 // FPS == row["time_ms"]
        assert '"deinterlace": "bwdif"' in row["display"]
    # Rows of the two fields (20 ms apart) no longer alternate over the moving ball.
    assert comb(rows, files) < 1.5 * progressive, (comb(rows, files), progressive)


@pytest.mark.parametrize("clip", sorted(INTERLACED))
def test_deinterlace_off_keeps_the_decoded_pixels(interlaced, tmp_path, clip):
    rows, files = run(interlaced[clip], tmp_path, deinterlace="off")
    progressive = comb(*run(interlaced["progressive"], tmp_path / "p"))
    assert comb(rows, files) > 1.5 * progressive  # combed, as decoded
    with av.open(str(interlaced[clip] / "field.ts")) as container:
        stream = container.streams.video[0]
        origin = stream.start_time
        decoded = {
            round((frame.pts - origin) * stream.time_base * 1000): frame.to_ndarray(format="rgb24")
            for frame in container.decode(stream)
        }
    for row in rows:
        assert '"deinterlace": "none"' in row["display"]
        assert files[row["output_path"]] == encode_jpeg(decoded[row["time_ms"]], 90)


@pytest.mark.parametrize("frames", [{"every_s": 0.5}, {"keyframes": True}], ids=["every_s", "keys"])
def test_deinterlaced_outputs_do_not_depend_on_the_ranges(interlaced, tmp_path, frames):
    results = [
        run(interlaced["h264-ts"], tmp_path / str(range_s), **frames, range_s=range_s)
        for range_s in (60, 1.3, 0.7)
    ]
    assert results[0][0] and results[0] == results[1] == results[2]
    if "keyframes" in frames:  # each keyframe alone: its own fields, no neighbour's
        progressive = comb(*run(interlaced["progressive"], tmp_path / "p", keyframes=True))
        assert comb(*results[0]) < 1.5 * progressive


# Display matrix, pixel aspect -------------------------------------------------------------


@pytest.mark.parametrize("degrees", [0, 90, 180, 270, -90])
@pytest.mark.parametrize("flips", [(False, False), (True, False), (False, True)])
def test_the_display_matrix_is_applied_as_players_apply_it(tmp_path, degrees, flips):
    """PyAV's writer: the picture shown is the coded one turned `degrees` counter-clockwise,
    then mirrored. Every one of the 8 orientations comes out as that picture."""
    folder = one_clip(tmp_path, "phone")
    coded = next(footage.progressive_frames(1))
    footage.encode(folder / "phone.mp4", [coded] * 3, rotation=(degrees, *flips))
    rows, files = run(folder, tmp_path / "out", every_s=1)
    [row] = rows
    expected = np.rot90(coded, degrees // 90)
    expected = expected[:, ::-1] if flips[0] else expected
    expected = expected[::-1] if flips[1] else expected
    image = shown(files, row)
    assert image.shape == expected.shape
    assert np.abs(image.astype(int) - expected).mean() < 6  # x264 + JPEG, same picture


def test_a_rotated_phone_clip_comes_out_upright(tmp_path):
    """Held upright, a phone records 320x180 and says -90 degrees: players show 180x320."""
    folder = one_clip(tmp_path, "phone")
    # What the viewer sees (counter at its bottom), stored turned a quarter counter-clockwise.
    upright_frames = footage.progressive_frames(50, (180, 320))
    coded = [np.ascontiguousarray(np.rot90(image, 1)) for image in upright_frames]
    footage.encode(folder / "phone.mp4", coded, rotation=(-90, False, False))
    body = {"name": "broadcast", "input_image_size": [90, 160]}
    rows, files = run(folder, tmp_path / "out", body)
    assert len(rows) == 4
    for row in rows:
        assert (row["width"], row["height"]) == (90, 160)
        assert frame_counter(shown(files, row)) * 1000 // FPS == row["time_ms"]
        assert '"orientation": "clock"' in row["display"]


def test_upright_matches_ffmpeg_transpose_filters():
    """The NumPy turns are FFmpeg's transpose/hflip/vflip filters, pixel for pixel."""
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 2
    filters = {
        "clock": "transpose=clock",
        "cclock": "transpose=cclock",
        "clock_flip": "transpose=clock_flip",
        "cclock_flip": "transpose=cclock_flip",
        "hflip": "hflip",
        "vflip": "vflip",
        "hflip+vflip": "hflip,vflip",
    }
    for turn, chain in filters.items():
        graph = av.filter.Graph()
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        source = graph.add_buffer(width=6, height=4, format=frame.format, time_base=Fraction(1, 25))
        last = source
        for step in chain.split(","):
            name, _, args = step.partition("=")
            node = graph.add(name, args or None)
            last.link_to(node)
            last = node
        last.link_to(graph.add("buffersink"))
        graph.configure()
        graph.push(frame)
        assert np.array_equal(graph.pull().to_ndarray(format="rgb24"), upright(image, turn)), turn


def test_non_square_pixels_are_shown_square(tmp_path):
    """A 480x360 anamorphic clip (SAR 4:3) shows as 640x360: its round disc stays round."""
    folder = one_clip(tmp_path, "sd")
    width, height, radius = 480, 360, 100
    y, x = np.mgrid[0:height, 0:width]
    disc = ((x * Fraction(4, 3) - 320) ** 2 + (y - 180) ** 2 <= radius**2).astype(np.uint8)
    coded = np.repeat((disc * 200 + 30)[..., None], 3, axis=2)
    footage.encode(folder / "sd.mp4", [coded] * 5, sar=Fraction(4, 3))
    rows, files = run(folder, tmp_path / "out", every_s=1)
    image = shown(files, rows[0])
    assert image.shape[:2] == (360, 640)
    ys, xs = np.nonzero(image.mean(axis=2) > 115)
    measured = (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)
    assert abs(measured - 1) < 0.02, measured
    assert '"sar": "4:3", "square_pixels": true' in rows[0]["display"]
    kept, kept_files = run(folder, tmp_path / "kept", every_s=1, square_pixels=False)
    assert shown(kept_files, kept[0]).shape[:2] == (360, 480)
    assert '"sar": "4:3", "square_pixels": false' in kept[0]["display"]


# Streams and programmes ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mkv", "ts"])
def test_the_programme_stream_is_taken_not_the_first(tmp_path, kind):
    folder = one_clip(tmp_path, kind)
    if kind == "mkv":
        footage.two_streams(folder / "two.mkv")
    else:
        footage.two_programmes(folder / "two.ts", tmp_path)
    rows, files = run(folder, tmp_path / "out")
    assert len(rows) == 4
    for row in rows:
        image = shown(files, row)
        assert image.shape[:2] == (360, 640)
        assert frame_counter(image) * 1000 // FPS == row["time_ms"]  # the programme's numbers


def test_a_source_can_name_the_stream(tmp_path):
    folder = one_clip(tmp_path, "mkv")
    footage.two_streams(folder / "two.mkv")
    rows, files = run(folder, tmp_path / "out", every_s=0.5, stream=0)
    assert {shown(files, r).shape[:2] for r in rows} == {(90, 160)}
    assert all(frame_counter(shown(files, r)) >= 10_000 for r in rows)  # the preview's numbers
    rows, _ = run(folder, tmp_path / "out", every_s=0.5, stream=3)
    [error] = [r["error"] for r in rows]
    assert error == "no video stream 3 (frames.stream); its video streams: 0, 1"


# Edit lists --------------------------------------------------------------------------------


def test_a_clip_trimmed_mid_gop_with_stream_copy_keeps_its_first_frames(tmp_path):
    """`ffmpeg -ss 3.02 -c copy`: the MP4 starts with the keyframe at 2 s and an edit list
    that discards everything before 3.02 s. Every target from 0 ms is sampled."""
    source = footage.encode(tmp_path / "race.mp4", footage.progressive_frames(250))
    folder = one_clip(tmp_path, "trimmed")
    footage.trim(source, folder / "trimmed.mp4", Fraction(151, 50))
    config = video_config(folder, tmp_path / "out", every_s=0.2, range_s=1.3)
    rows, files = outputs_in_memory(config, {"name": "broadcast"})
    from motoray.pipeline import source as listing
    from tests.conftest import parse_one

    request = parse_one({"name": "broadcast"}, config)
    storage, keys = listing.list_source(request, config)
    promised = listing.probe(request, config, storage, keys).expected_frames()
    assert not [r for r in rows if r.get("error")]
    assert [r["time_ms"] for r in rows] == list(range(0, 200 * len(rows), 200))
    assert len(rows) == promised
    first = 76  # the trim point, 3.02 s: the frame at 3.04 s is shown first
    for row in rows:
        assert frame_counter(shown(files, row)) == first + row["time_ms"] // 40


# Dropouts --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    for suffix in (".ts", ".mkv"):
        write_sample_videos(folder, 1, (320, 180), seconds=10, suffix=suffix)
    return folder


def _time_of_byte(path: Path, offset: int) -> float:
    """The time of the packet whose data holds byte `offset`."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        at = 0.0
        for packet in container.demux(stream):
            if packet.pos is not None and packet.pos <= offset and packet.pts is not None:
                at = float((packet.pts - stream.start_time) * stream.time_base)
        return at


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [(".ts", "zeroed"), (".mkv", "zeroed"), (".ts", "lost packets")],
)
@pytest.mark.parametrize("range_s", [60, 1.3])
def test_a_dropout_is_recorded_and_never_shown_under_another_key(
    clean, tmp_path, suffix, damage, range_s
):
    data = bytearray((clean / f"clip000{suffix}").read_bytes())
    middle = len(data) // 2
    if damage == "zeroed":
        data[middle : middle + 4096] = bytes(4096)
    else:
        data = bytearray(footage.drop_ts_packets(bytes(data), 0.5, 30))
    where = _time_of_byte(clean / f"clip000{suffix}", middle)
    folder = one_clip(tmp_path, "damaged")
    (folder / f"feed{suffix}").write_bytes(bytes(data))
    rows, files = run(folder, tmp_path / "out", every_s=0.2, range_s=range_s)

    for row in made(rows):  # what is kept shows the frame its key names
        assert frame_counter(shown(files, row)) * 1000 // FPS == row["time_ms"]
    [failure] = [r for r in rows if r.get("error")]
    at = int(failure["source_path"].rpartition("#t=")[2])
    assert abs(at / 1000 - where) <= 2, (at, where)  # within one GOP (2 s) of the damage
    assert "damaged video data" in failure["error"]
    kept = {r["time_ms"] for r in made(rows)}
    targets = set(range(0, 10_000, 200))
    next_keyframe = (round(where * 1000) // 2000 + 1) * 2000  # keyframes every 2 s
    assert {t for t in targets if t < at} <= kept  # every frame before it
    assert {t for t in targets if t >= next_keyframe} <= kept  # from the next keyframe on


def test_interlaced_sample_clips_are_1080i_style_and_come_out_deinterlaced(tmp_path):
    folder = one_clip(tmp_path, "sample")
    write_sample_videos(folder, 1, (320, 180), seconds=2, suffix=".ts", interlaced=True)
    with av.open(str(folder / "clip000.ts")) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert stream.codec_context.field_order == 2  # top field first
    assert all(frame.interlaced_frame for frame in frames)
    assert [frame_counter(f.to_ndarray(format="rgb24")) for f in frames] == list(range(50))
    rows, files = run(folder, tmp_path / "out")
    assert [r["time_ms"] for r in rows] == [0, 520, 1000, 1520]
    for row in rows:
        assert '"deinterlace": "bwdif"' in row["display"]
        assert frame_counter(shown(files, row)) * 1000 // FPS == row["time_ms"]
