"""Clips as broadcasters, editors and phones write them, made with PyAV (FFmpeg's encoders
and muxers), each frame's number burned into its pixels (`draw_counter`): interlaced fields,
stream-copy trims with an edit list, display matrices, non-square pixels, several streams
or programmes, dropouts."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from motoray.video.sample import draw_counter

FPS = 25
SIZE = (320, 180)  # width, height
BALL = 28  # radius, pixels
SPEED = 300  # pixels per second: 6 pixels between the two fields of a frame


def ball_x(seconds: float, width: int = SIZE[0]) -> float:
    return 40 + (SPEED * seconds) % (width - 80)


def scene(seconds: float, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A textured background and a shaded ball moving right: smooth vertical detail, so
    that combing (rows from two instants interleaved) shows against it."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = 90 + 30 * np.sin(2 * np.pi * y / 37) + 15 * np.sin(2 * np.pi * x / 53)
    cx, cy = ball_x(seconds, width), height * 0.45
    inside = (x - cx) ** 2 + (y - cy) ** 2 <= BALL**2
    image[inside] = 190 + 50 * np.cos(2 * np.pi * (y[inside] - cy) / 19)
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def interlaced_frames(count: int, top_first: bool) -> Iterator[np.ndarray]:
    """Frames of two fields 1/(2 FPS) s apart, the first field shown first."""
    for index in range(count):
        first, second = scene(index / FPS), scene((index + 0.5) / FPS)
        frame = first.copy()
        frame[1 if top_first else 0 :: 2] = second[1 if top_first else 0 :: 2]
        draw_counter(frame, index)
        yield frame


def progressive_frames(
    count: int, size: tuple[int, int] = SIZE, numbered_from: int = 0
) -> Iterator[np.ndarray]:
    for index in range(count):
        frame = scene(index / FPS, size)
        draw_counter(frame, numbered_from + index)
        yield frame


def encode(
    path: Path,
    frames: Iterable[np.ndarray],
    codec: str = "libx264",
    *,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    gop: int = 2 * FPS,
    sar: Fraction | None = None,
    rotation: tuple[int, bool, bool] | None = None,
) -> Path:
    """Frames at FPS into `path`; `rotation` = (degrees counter-clockwise, hflip, vflip) of
    the display matrix."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = None
        for index, image in enumerate(frames):
            if stream is None:
                stream = container.add_stream(codec, rate=FPS)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.gop_size = gop
                stream.codec_context.options = dict(options or {})
                if codec == "libx264":
                    stream.codec_context.options |= {"preset": "veryfast", "threads": "1"}
                if sar is not None:
                    stream.codec_context.sample_aspect_ratio = sar
                if rotation is not None:
                    degrees, hflip, vflip = rotation
                    stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def interlaced_h264(path: Path, count: int = 100) -> Path:
    """1080i-style H.264: field-coded (+ilme+ildct), top field first, in MPEG-TS."""
    x264 = {"flags": "+ilme+ildct", "x264-params": "interlaced=1:tff=1"}
    return encode(path, interlaced_frames(count, top_first=True), options=x264)


def interlaced_mpeg2(path: Path, count: int = 100) -> Path:
    """SD broadcast MPEG-2, interlaced; FFmpeg's encoder codes the bottom field first."""
    options = {"flags": "+ilme+ildct", "b": "4M"}
    return encode(path, interlaced_frames(count, top_first=False), "mpeg2video", options=options)


def comb_ratio(image: np.ndarray, seconds: float) -> float:
    """Mean difference of adjacent rows over that of rows two apart, around the ball where
    its two fields were (1 and below: no combing; combed fields: well above)."""
    height, width = image.shape[:2]
    cx, cy = ball_x(seconds, width), height * 0.45
    left, right = int(cx - BALL - 4), int(cx + BALL + SPEED / FPS / 2 + 4)
    top, bottom = int(cy - BALL - 4), int(cy + BALL + 4)
    luma = image[top:bottom, max(left, 0) : right].astype(np.float32).mean(axis=2)
    adjacent = np.abs(luma[1:] - luma[:-1]).mean()
    two_apart = np.abs(luma[2:] - luma[:-2]).mean()
    return float(adjacent / two_apart)


def trim(source: Path, target: Path, at: Fraction) -> Path:
    """`ffmpeg -ss AT -c copy`: packets from the keyframe before `at`, timestamps shifted so
    that `at` is 0; the MP4 muxer writes an edit list that discards what comes before."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        shift = int(at / stream.time_base)
        inp.seek(shift, stream=stream, backward=True)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            out.mux(packet)
    return target


def two_streams(path: Path, count: int = 50) -> Path:
    """A 160x90 preview as stream 0, the 640x360 programme as stream 1."""
    sizes = ((160, 90), (640, 360))
    with av.open(str(path), "w") as container:
        streams = []
        for width, height in sizes:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.options = {"preset": "veryfast", "threads": "1"}
            streams.append(stream)
        for index in range(count):
            for stream in streams:
                image = scene(index / FPS, (stream.width, stream.height))
                draw_counter(image, index + (10_000 if stream.width == 160 else 0))
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, FPS)
                container.mux(stream.encode(frame))
        for stream in streams:
            container.mux(stream.encode())
    return path


def two_programmes(path: Path, work: Path, count: int = 50) -> Path:
    """An MPEG-TS of two programmes (services 1 and 2): the 160x90 preview in the first,
    the 640x360 programme in the second, their packets interleaved as a multiplex carries
    them, with one PAT that lists both."""
    parts = []
    for service, (width, height), base in ((1, (160, 90), 10_000), (2, (640, 360), 0)):
        frames = []
        for index in range(count):
            image = scene(index / FPS, (width, height))
            draw_counter(image, index + base)
            frames.append(image)
        options = {
            "mpegts_service_id": str(service),
            "mpegts_pmt_start_pid": hex(0x1000 + 0x100 * service),
            "mpegts_start_pid": hex(0x100 * service),
        }
        part = encode(work / f"service{service}.ts", frames, container_options=options)
        parts.append([p for p in _ts_packets(part.read_bytes()) if _pid(p) not in (0, 0x11)])
    pat = _pat({1: 0x1100, 2: 0x1200})
    out, counter = bytearray(), 0
    longest = max(map(len, parts))
    for index in range(longest):
        if index % 40 == 0:  # a PAT every 40 packets, as a multiplexer repeats it
            out += _with_counter(pat, counter)
            counter = (counter + 1) % 16
        for packets in parts:
            if index < len(packets):
                out += packets[index]
    path.write_bytes(bytes(out))
    return path


def drop_ts_packets(data: bytes, start: float, count: int) -> bytes:
    """A dropout on a satellite feed: `count` TS packets of the video lost at `start` (a
    fraction of the file); their continuity counters then jump."""
    packets = _ts_packets(data)
    first = int(len(packets) * start)
    kept = [p for i, p in enumerate(packets) if not (first <= i < first + count and _pid(p))]
    return b"".join(kept)


def _ts_packets(data: bytes) -> list[bytes]:
    return [data[i : i + 188] for i in range(0, len(data) - 187, 188)]


def _pid(packet: bytes) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


def _pat(programmes: dict[int, int]) -> bytes:
    """A PAT TS packet (PID 0) listing programme number -> PMT PID."""
    body = b"".join(struct.pack(">HH", n, 0xE000 | pid) for n, pid in programmes.items())
    length = 5 + len(body) + 4
    section = struct.pack(">BHHBBB", 0x00, 0xB000 | length, 1, 0xC1, 0, 0) + body
    section += struct.pack(">I", _crc32_mpeg2(section))
    packet = bytes([0x47, 0x40, 0x00, 0x10, 0x00]) + section
    return packet + b"\xff" * (188 - len(packet))


def _with_counter(packet: bytes, counter: int) -> bytes:
    return packet[:3] + bytes([(packet[3] & 0xF0) | counter]) + packet[4:]


def _crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (not zlib's: not reflected, no final xor)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc
