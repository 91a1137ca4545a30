"""The baselines: the seed request's work per frame with no framework, picklable for a bare
`multiprocessing.Pool`. No motoray code, so they cannot inherit its mistakes.

    turbo floor   libjpeg-turbo (simplejpeg) decode at reduced scale, 4 crops, 4 encodes
                  (q90, 4:2:0), 4 file writes: the fastest bare path known
    Pillow floor  the same through Pillow (draft decode, resize, save)
    naive loop    full decode, resize, crop, save: what a prototype does
    video floor   a bare PyAV loop per clip: decode, sample every 0.5 s, resize, crop,
                  encode, write
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

SIZE = (480, 270)  # the seed request's input_image_size
CROP, RANDOM, COUNT = 270, 80, 3


def crops(image: np.ndarray, name: str) -> list[np.ndarray]:
    """The seed request's outputs: top-left 270x270, three random 80x80 (seeded by name)."""
    rng = np.random.default_rng(int.from_bytes(name.encode()[-8:], "little"))
    ys = rng.integers(0, SIZE[1] - RANDOM + 1, COUNT)
    xs = rng.integers(0, SIZE[0] - RANDOM + 1, COUNT)
    return [image[:CROP, :CROP]] + [image[y : y + RANDOM, x : x + RANDOM] for y, x in zip(ys, xs)]


def turbo_floor_one(task: tuple[str, str]) -> None:
    path, out = task
    data = Path(path).read_bytes()
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    fits = min(width // SIZE[0], height // SIZE[1])
    scale = next(s for s in (8, 4, 2, 1) if s <= max(fits, 1))  # in-decoder downscale
    image = simplejpeg.decode_jpeg(
        data, "RGB", min_height=-(-height // scale), min_width=-(-width // scale)
    )
    if image.shape[:2] != (SIZE[1], SIZE[0]):
        image = np.asarray(Image.fromarray(image).resize(SIZE, Image.Resampling.BILINEAR))
    stem = Path(path).stem
    for i, crop in enumerate(crops(image, path)):
        encoded = simplejpeg.encode_jpeg(np.ascontiguousarray(crop), 90, "RGB", "420")
        Path(out, f"{stem}_{i}.jpg").write_bytes(encoded)


def pillow_floor_one(task: tuple[str, str]) -> None:
    path, out = task
    image = Image.open(path)
    image.draft("RGB", SIZE)  # 1/2, 1/4 or 1/8 scale inside the decoder
    array = np.asarray(image.convert("RGB").resize(SIZE, Image.Resampling.BILINEAR))
    _save(crops(array, path), Path(out), Path(path).stem)


def naive_one(task: tuple[str, str]) -> None:
    path, out = task
    array = np.asarray(Image.open(path).convert("RGB").resize(SIZE, Image.Resampling.BILINEAR))
    _save(crops(array, path), Path(out), Path(path).stem)


def _save(images: list[np.ndarray], out: Path, stem: str) -> None:
    for i, image in enumerate(images):
        Image.fromarray(image).save(out / f"{stem}_{i}.jpg", quality=90)


VIDEO_FRAMES = {"every_s": 0.5}


def video_floor_one(task: tuple[str, str, bool]) -> int:
    """One clip the bare way: every frame decoded, each 0.5 s target takes the first frame at
    or after it, (deinterlaced: FFmpeg's bwdif on the sampled frames alone, the others let
    through its timeline switch) converted and resized by swscale in one pass, cropped,
    encoded, written."""
    import av

    from motoray.video.decoder import DECODE_THREADS

    path, out, deinterlace = task
    made, target, stem = 0, 0.0, Path(path).stem
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "AUTO", DECODE_THREADS
        frames = container.decode(stream)
        for frame in _bwdif_sampled(frames, stream) if deinterlace else frames:
            if frame.time + 1e-9 < target:
                continue
            image = frame.to_ndarray(
                format="rgb24", width=SIZE[0], height=SIZE[1], interpolation="AREA"
            )
            _save(crops(image, f"{path}{frame.pts}"), Path(out), f"{stem}_{frame.pts}")
            made += 1
            while target <= frame.time + 1e-9:
                target += VIDEO_FRAMES["every_s"]
    return made


def _bwdif_sampled(frames, stream):
    """The frames, those at or after each target deinterlaced by bwdif (which needs the
    frame after: each comes out one frame late, the last with itself as its next)."""
    import av

    graph = av.filter.Graph()
    context = stream.codec_context
    size = {"width": context.width, "height": context.height, "format": context.format}
    source = graph.add_buffer(**size, time_base=stream.time_base)
    bwdif = graph.add("bwdif", "mode=send_frame:parity=auto:deint=all")
    source.link_to(bwdif)
    bwdif.link_to(graph.add("buffersink"))
    graph.configure()
    target, last, wanted = 0.0, None, False
    for frame in frames:
        if last is not None:
            bwdif.process_command("enable", "1" if wanted else "0")
        graph.push(frame)
        if last is not None:
            shown = graph.pull()
            yield shown if wanted else last
        wanted = frame.time + 1e-9 >= target
        while target <= frame.time + 1e-9:
            target += VIDEO_FRAMES["every_s"]
        last = frame
    if last is not None:
        bwdif.process_command("enable", "1" if wanted else "0")
        graph.push(last)
        yield graph.pull() if wanted else last
