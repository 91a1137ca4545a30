"""Deterministic synthetic broadcast-like frames (motorbike race) for tests and benchmarks.

Each clip is one scene: sky and clouds, a textured grass band, an asphalt track with kerbs,
a leaderboard overlay, and bikes. Frames of a clip share the scene while the camera pans, the
bikes move and the race clock ticks, so frames of a clip look alike and clips differ.

With `annotations` ("coco" or "yolo"), every bike and its rider are solid rectangles, each of
a colour no other object of the frame has, in lanes that never overlap, and their true boxes
are written too: `annotations.json` (COCO) at the root, or a `.txt` beside each frame (YOLO,
classes `bike`, `rider`). The pixels are the ground truth: the region of an object's colour
is its box, whatever a pipeline does to the frame.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from motoray.imageio import encode_jpeg

__all__ = [
    "CLASSES",
    "SampleObject",
    "frame_name",
    "frame_objects",
    "render_frame",
    "write_sample_frames",
]

# Block "font": glyph 0 is a space, 1-10 are the digits 0-9, the rest are letter-like.
_GLYPHS = 40
_DIGIT = 1
# Seven-segment digits 0-9 as segment bit masks (bit 0 = a ... bit 6 = g).
_SEVEN_SEGMENT = (0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F)
_BIKE_COLOURS = np.array(
    [(220, 30, 30), (30, 80, 220), (250, 200, 20), (20, 160, 60), (240, 120, 20), (30, 30, 30)],
    dtype=np.uint8,
)
CLASSES = ("bike", "rider")  # annotated frames: category ids 1, 2; YOLO classes 0, 1
# One colour per object of a frame: corners of the RGB cube, far from each other, from sky,
# grass, asphalt, kerbs and the leaderboard, and from any blend of two of those (the edges
# resampling and JPEG smear), so each object's region can be found in any output.
OBJECT_COLOURS = ((255, 0, 255), (0, 255, 255), (255, 255, 0), (0, 0, 255), (0, 255, 0))
LANES = len(OBJECT_COLOURS) // 2  # a bike and its rider per lane
MIN_OBJECT_SIDE = 4  # pixels: an object the frame's edge cuts thinner is neither drawn nor boxed
Annotations = Literal["coco", "yolo"]


def frame_name(index: int, frames_per_clip: int = 10) -> str:
    """The file name of frame `index`: clip{c:03d}_frame{f:04d}.jpg."""
    clip, frame = divmod(index, frames_per_clip)
    return f"clip{clip:03d}_frame{frame:04d}.jpg"


def write_sample_frames(
    directory: str | Path,
    count: int,
    size: tuple[int, int] = (1280, 720),
    *,
    seed: int = 0,
    frames_per_clip: int = 10,
    quality: int = 90,
    unique: int | None = None,
    annotations: Annotations | None = None,
) -> list[Path]:
    """Write `count` JPEG frames named clip{c:03d}_frame{f:04d}.jpg; return their paths in order.

    `annotations`: objects are solid rectangles (`frame_objects`), and their boxes are written
    as `annotations.json` (COCO) at the root, or as a `.txt` beside each frame (YOLO).

    Frame i is clip i // frames_per_clip, frame i % frames_per_clip. The bytes depend only on
    (i, size, seed, frames_per_clip, quality), so two calls write identical files (existing
    files are overwritten).

    `unique` caps the rendering work for big data sets: only the first `unique` frames (rounded
    up to whole clips) are rendered; every later clip is a byte-for-byte copy of one of those
    clips under its own name (clip c copies clip c % unique_clips). Copies keep whole clips
    together, but the same picture then appears under several clip names, so use it for
    throughput tests, not for checking split leakage.
    """
    if count < 0 or frames_per_clip < 1 or (unique is not None and unique < 1):
        raise ValueError("count must be >= 0, frames_per_clip and unique >= 1")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    unique_clips = math.ceil(unique / frames_per_clip) if unique is not None else None
    paths: list[Path] = []
    boxes: list[list[SampleObject]] = []
    scene: _Scene | None = None
    for i in range(count):
        clip, frame = divmod(i, frames_per_clip)
        path = directory / frame_name(i, frames_per_clip)
        if unique_clips is not None and clip >= unique_clips:
            copied = (clip % unique_clips) * frames_per_clip + frame
            shutil.copyfile(paths[copied], path)
            boxes.append(boxes[copied] if annotations else [])
        else:
            if scene is None or scene.clip != clip:
                scene = _Scene(size, seed, clip, frames_per_clip, annotated=bool(annotations))
            path.write_bytes(encode_jpeg(scene.render(frame), quality))
            boxes.append(scene.objects(frame) if annotations else [])
        paths.append(path)
    if annotations == "coco":
        (directory / "annotations.json").write_text(_coco(paths, boxes, size))
    elif annotations == "yolo":
        for path, objects in zip(paths, boxes):
            path.with_suffix(".txt").write_text(_yolo(objects, size))
    return paths


@dataclass(frozen=True)
class SampleObject:
    """One object of an annotated frame: what it is, its colour, its box in the frame."""

    category: str  # one of CLASSES
    colour: tuple[int, int, int]
    box: tuple[int, int, int, int]  # x, y, width, height in pixels


def frame_objects(
    index: int, size: tuple[int, int] = (1280, 720), *, seed: int = 0, frames_per_clip: int = 10
) -> list[SampleObject]:
    """The objects of annotated frame `index`: exactly what its annotations say."""
    clip, frame = divmod(index, frames_per_clip)
    return _Scene(size, seed, clip, frames_per_clip, annotated=True).objects(frame)


def _coco(paths: list[Path], boxes: list[list[SampleObject]], size: tuple[int, int]) -> str:
    images, annotations = [], []
    for number, (path, objects) in enumerate(zip(paths, boxes), start=1):
        images.append({"id": number, "file_name": path.name, "width": size[0], "height": size[1]})
        for obj in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": CLASSES.index(obj.category) + 1,
                    "bbox": list(obj.box),
                    "area": obj.box[2] * obj.box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    document = {"images": images, "annotations": annotations, "categories": categories}
    return json.dumps(document, indent=1) + "\n"


def _yolo(objects: list[SampleObject], size: tuple[int, int]) -> str:
    width, height = size
    lines = []
    for obj in objects:
        x, y, w, h = obj.box
        cx, cy = (x + w / 2) / width, (y + h / 2) / height
        lines.append(
            f"{CLASSES.index(obj.category)} {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}\n"
        )
    return "".join(lines)


def render_frame(
    index: int,
    size: tuple[int, int] = (1280, 720),
    *,
    seed: int = 0,
    frames_per_clip: int = 10,
    annotated: bool = False,
) -> np.ndarray:
    """Frame `index` as an HxWx3 uint8 array: what write_sample_frames encodes."""
    clip, frame = divmod(index, frames_per_clip)
    return _Scene(size, seed, clip, frames_per_clip, annotated=annotated).render(frame)


@dataclass
class _Bike:
    x: float  # world x of the centre at frame 0
    y: int  # ground line
    scale: float  # height in pixels
    speed: float  # pixels per frame
    colour: np.ndarray
    number: int


class _Scene:
    """Everything that is fixed for one clip; render(frame) adds what moves."""

    def __init__(
        self,
        size: tuple[int, int],
        seed: int,
        clip: int,
        frames_per_clip: int,
        annotated: bool = False,
    ) -> None:
        self.width, self.height = width, height = size
        self.clip = clip
        self.annotated = annotated
        rng = np.random.default_rng([seed, clip])
        # The camera pans back and forth over a background wider than the frame.
        self.margin = max(8, width // 12)
        self.pan_step = self.margin / max(1, min(frames_per_clip - 1, 12))
        self.background = _background(rng, width + self.margin, height)
        # Sensor noise: a pool sliced at a per-frame offset, far cheaper than fresh noise.
        self.noise = rng.integers(-1, 2, size=(height, width + 61), dtype=np.int8)
        self.bikes = _bikes(rng, width, height)
        self.glyphs = _glyph_font(np.random.default_rng([seed]))
        # Six lines of "P ABC  NAME   0:00": position, team code, rider name, gap/clock.
        self.board_text = rng.integers(_DIGIT + 10, _GLYPHS, size=(6, 18))
        self.board_text[:, [1, 5, 6, 12, 13, 14]] = 0
        self.board_text[:, 0] = _DIGIT + np.arange(1, 7)
        self.board_text[:, 15:] = _DIGIT + rng.integers(0, 10, size=(6, 3))
        # Its own generator: plain frames draw exactly what they always drew.
        self.lanes = _lanes(np.random.default_rng([seed, clip, 1]), width, height)

    def objects(self, frame: int) -> list[SampleObject]:
        """Each lane's bike and rider at this frame, clipped to it (see MIN_OBJECT_SIDE)."""
        objects = []
        for lane in self.lanes:
            for category, (dx, top, w, h) in zip(CLASSES, lane.parts):
                span = self.width + 2 * lane.length
                x = round((lane.x + lane.speed * frame) % span - lane.length) + dx
                x0, x1 = max(x, 0), min(x + w, self.width)
                if x1 - x0 >= MIN_OBJECT_SIDE and h >= MIN_OBJECT_SIDE:
                    colour = OBJECT_COLOURS[len(objects)]
                    objects.append(SampleObject(category, colour, (x0, top, x1 - x0, h)))
        return objects

    def render(self, frame: int) -> np.ndarray:
        width = self.width
        # Triangle wave: the camera pans right then back, never jumps.
        travel = (frame * self.pan_step) % (2 * self.margin)
        offset = round(self.margin - abs(travel - self.margin))
        image = self.background[:, offset : offset + width].astype(np.int16)
        shift = (frame * 7) % 61
        image += self.noise[:, shift : shift + width, None]
        np.clip(image, 0, 255, out=image)
        image = image.astype(np.uint8)
        if not self.annotated:
            for bike in sorted(self.bikes, key=lambda b: b.y):  # far bikes first
                # Bikes wrap around so that long clips keep them in view.
                span = width + self.margin + 2 * bike.scale
                x = (bike.x + bike.speed * frame) % span - bike.scale - offset
                _draw_bike(image, bike, x)
        self._draw_board(image, frame)
        for obj in self.objects(frame) if self.annotated else ():
            x, y, w, h = obj.box
            image[y : y + h, x : x + w] = obj.colour  # over everything: wholly visible
        return image

    def _draw_board(self, image: np.ndarray, frame: int) -> None:
        # A leaderboard overlay: positions, names and a race clock that ticks every frame.
        text = self.board_text.copy()
        text[0, -3:] = _DIGIT + (self.clip * 100 + frame) // np.array([100, 10, 1]) % 10
        cell = max(1, self.height // 250)
        pixels = _typeset(self.glyphs, text, cell)
        top, left = max(cell, self.height // 20), max(cell, self.width // 30)
        h, w = pixels.shape
        h, w = min(h, self.height - top), min(w, self.width - left)
        box = image[top - cell : top + h + cell, left - cell : left + w + cell]
        box[:] = box // 4 + np.array([10, 20, 60], dtype=np.uint8)  # darkened blue band
        region = image[top : top + h, left : left + w]
        region[pixels[:h, :w]] = (255, 255, 255)


@dataclass
class _Lane:
    """A horizontal band of an annotated clip: one bike and its rider riding along it."""

    x: float  # where the bike's left edge starts, in the wrapped coordinate
    speed: float  # pixels per frame
    length: int  # the bike's width
    parts: tuple[tuple[int, int, int, int], ...]  # per class: x offset, top, width, height


def _lanes(rng: np.random.Generator, width: int, height: int) -> list[_Lane]:
    """LANES lanes, each a bike with its rider above it, a gap between them and between
    lanes, so no two objects ever touch."""
    band = height / LANES
    lanes = []
    for number in range(LANES):
        top = round(number * band + 0.1 * band)
        rider_h, bike_h = round(0.3 * band), round(0.4 * band)
        bike_w = round(bike_h * rng.uniform(1.5, 2.2))
        rider_w = round(bike_w * rng.uniform(0.5, 0.7))
        gap = max(2, round(0.08 * band))
        parts = ((0, top + rider_h + gap, bike_w, bike_h), (bike_w // 4, top, rider_w, rider_h))
        speed = rng.uniform(0.5, 1.5) * width / 40 * rng.choice([-1, 1])
        lanes.append(_Lane(rng.uniform(0, width), speed, bike_w, parts))
    return lanes


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    horizon = int(height * rng.uniform(0.28, 0.38))
    grass_end = horizon + int(height * rng.uniform(0.10, 0.16))
    image = np.empty((height, width, 3), dtype=np.int16)
    x = np.arange(width)

    # Sky: vertical gradient plus soft clouds (coarse noise upsampled by Pillow).
    t = np.linspace(0.0, 1.0, horizon)[:, None, None]
    top, low = (
        rng.uniform([40, 90, 160], [90, 140, 220]),
        rng.uniform([150, 185, 215], [185, 215, 245]),
    )
    clouds = _smooth_noise(rng, width, horizon, cell=max(4, height // 12))
    image[:horizon] = (top + (low - top) * t + 70 * np.clip(clouds - 0.55, 0, 1)[..., None]).astype(
        np.int16
    )

    # Grass: mowing stripes and strong per-pixel texture (this is what costs JPEG bytes).
    rows = grass_end - horizon
    stripes = 12 * (((x + np.arange(rows)[:, None] * 2) // max(1, width // 14)) % 2)
    blades = rng.integers(-10, 11, size=(rows, width), dtype=np.int16)
    green = rng.uniform([40, 110, 30], [70, 150, 50]).astype(np.int16)
    image[horizon:grass_end] = green + (stripes + blades)[..., None] * np.array([1, 2, 1]) // 2

    # Kerb: red and white blocks along the track edge.
    kerb = max(2, height // 60)
    red = ((x // max(4, width // 40)) % 2).astype(bool)
    image[grass_end : grass_end + kerb] = np.where(red[:, None], [200, 30, 30], [235, 235, 235])

    # Asphalt: brighter towards the camera, fine gravel noise, a white racing line.
    track = slice(grass_end + kerb, height)
    rows = height - grass_end - kerb
    shade = np.linspace(70, 110, rows)[:, None]
    gravel = rng.integers(-6, 7, size=(rows, width), dtype=np.int16)
    image[track] = (shade + gravel)[..., None].astype(np.int16) + np.array([0, 0, 4], np.int16)
    line = grass_end + kerb + rows // 3
    image[line : line + max(1, height // 200)] = 230
    return np.clip(image, 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cell: int) -> np.ndarray:
    coarse = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
    smooth = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(smooth)


def _bikes(rng: np.random.Generator, width: int, height: int) -> list[_Bike]:
    bikes = []
    for number in rng.choice(np.arange(1, 100), size=int(rng.integers(3, 7)), replace=False):
        depth = rng.uniform(0.0, 1.0)  # 0 = far (near the kerb), 1 = close to the camera
        bikes.append(
            _Bike(
                x=rng.uniform(0, width),
                y=int(height * (0.55 + 0.4 * depth)),
                scale=height * (0.08 + 0.14 * depth),
                speed=rng.uniform(-1, 1) * width / 60,
                colour=_BIKE_COLOURS[rng.integers(len(_BIKE_COLOURS))],
                number=int(number),
            )
        )
    return bikes


def _draw_bike(image: np.ndarray, bike: _Bike, x: float) -> None:
    s = bike.scale
    y = bike.y
    tyre = (25, 25, 25)
    _ellipse(image, x - 0.45 * s, y - 0.22 * s, 0.22 * s, 0.22 * s, tyre)  # rear wheel
    _ellipse(image, x + 0.45 * s, y - 0.22 * s, 0.22 * s, 0.22 * s, tyre)  # front wheel
    _ellipse(image, x, y - 0.45 * s, 0.55 * s, 0.2 * s, bike.colour)  # fairing
    _ellipse(image, x - 0.1 * s, y - 0.75 * s, 0.2 * s, 0.18 * s, (240, 240, 240))  # rider
    _ellipse(image, x + 0.05 * s, y - 0.95 * s, 0.1 * s, 0.1 * s, bike.colour // 2)  # helmet
    plate = (int(y - 0.52 * s), int(y - 0.38 * s), int(x + 0.1 * s), int(x + 0.35 * s))
    _rectangle(image, *plate, (250, 250, 250))


def _ellipse(image: np.ndarray, cx: float, cy: float, rx: float, ry: float, colour: object) -> None:
    height, width = image.shape[:2]
    x0, x1 = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
    y0, y1 = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    inside = ((xx - cx) / max(rx, 0.5)) ** 2 + ((yy - cy) / max(ry, 0.5)) ** 2 <= 1.0
    image[y0:y1, x0:x1][inside] = colour


def _rectangle(image: np.ndarray, y0: int, y1: int, x0: int, x1: int, colour: object) -> None:
    height, width = image.shape[:2]
    # Clamp both ends: a negative stop would index from the far edge.
    y0, y1 = np.clip((y0, y1), 0, height)
    x0, x1 = np.clip((x0, x1), 0, width)
    image[y0:y1, x0:x1] = colour


def _glyph_font(rng: np.random.Generator) -> np.ndarray:
    """_GLYPHS 7x5 stroke bitmaps, each padded to an 8x6 cell (see _DIGIT)."""
    # Strokes on the 7x5 grid: the seven segments a-g, then a centre bar and two diagonals.
    strokes = np.zeros((10, 7, 5), dtype=bool)
    strokes[0, 0, :] = strokes[3, 6, :] = strokes[6, 3, :] = True  # a, d, g
    strokes[1, :4, 4] = strokes[2, 3:, 4] = True  # b, c
    strokes[4, 3:, 0] = strokes[5, :4, 0] = True  # e, f
    strokes[7, :, 2] = True
    strokes[8][np.arange(7), np.arange(7) * 4 // 6] = True
    strokes[9][np.arange(7), 4 - np.arange(7) * 4 // 6] = True
    masks = np.zeros((_GLYPHS, 10), dtype=bool)
    masks[_DIGIT : _DIGIT + 10, :7] = (np.array(_SEVEN_SEGMENT)[:, None] >> np.arange(7)) & 1
    masks[_DIGIT + 10 :] = rng.random((_GLYPHS - _DIGIT - 10, 10)) < 0.4
    glyphs = np.zeros((_GLYPHS, 8, 6), dtype=bool)
    glyphs[:, :7, :5] = np.einsum("gs,syx->gyx", masks, strokes)
    return glyphs


def _typeset(glyphs: np.ndarray, text: np.ndarray, cell: int) -> np.ndarray:
    """Render a (lines, chars) array of glyph indices as a boolean pixel mask."""
    lines, chars = text.shape
    bitmap = glyphs[text].transpose(0, 2, 1, 3).reshape(lines * 8, chars * 6)
    return bitmap.repeat(cell, axis=0).repeat(cell, axis=1)
