"""A contact sheet of what a request will produce, before running it.

For each of the first `count` images of the source, one row: the resized original with every
crop box drawn on it (one colour per operator), then every output, captioned by operator; on
a source with annotations, every picture also shows its own object boxes (thin, red). The
outputs come from the job's own worker (`worker.outputs`), in memory: the same decode,
resize, sampling, kernels and JPEG encoding as a job, so the boxes are exactly those a job's
manifest will record. No Ray needed.

    motoray preview REQUEST.json -o sheet.png [--count N]     POST /data_prep/preview
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from motoray.config import Config
from motoray.imageio import encode_png, load_image
from motoray.pipeline import source, worker
from motoray.pipeline.jobspec import job_spec
from motoray.spec import RequestBase
from motoray.storage import MemoryStorage

TILE = 480  # pixels: tiles are shrunk to fit a TILE x TILE square, never enlarged
PAD = 8  # between tiles and around the sheet
CAPTION = 16  # text line above every tile; the image starts this far below the tile's top
BOX_WIDTH = 2  # outline width, drawn inside the box
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
ERROR = (255, 90, 90)
# Saturated colours that photographs rarely contain exactly, one per operator in request order.
PALETTE = ((255, 0, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0), (255, 128, 0), (0, 128, 255))
OBJECT_BOX = (255, 32, 32)  # an annotated object's box, as the manifest records it


def contact_sheet(request: RequestBase, config: Config, count: int = 4) -> bytes:
    """PNG bytes: one row per image for the first `count` images of the source."""
    most = config.limits.preview_max_images
    if not 1 <= count <= most:
        raise ValueError(f"count must be between 1 and {most} (limits.preview_max_images)")
    storage, keys = source.list_source(request, config)
    boxes = source.read_annotations(request, config, storage, keys)
    keys = boxes.usable(keys) if boxes is not None else keys  # as the job: unlisted, failed
    videos = source.probe(request, config, storage, keys)  # a video source: its metadata
    # The whole listing is split, so that each row shows the split a job would give it.
    assignment = source.place(request, config, keys, boxes=boxes, videos=videos)
    spec = replace(job_spec(request, config, storage, MemoryStorage(), boxes), original=True)
    if videos is None:
        made = list(worker.outputs(spec, source.items(keys[:count], assignment, boxes)))
    else:  # the first `count` frames of the first videos, from their openings alone
        made = _first_frames(spec, source.sample(keys, assignment, videos, count), count)
        keys = list(dict.fromkeys(row["source_path"] for row, _ in made))
    rows = [row for row, _ in made if "skipped" not in row]
    files = {row["output_path"]: data for row, data in made if data is not None}
    colours = {}
    for name, _ in request.steps:
        colours.setdefault(name, PALETTE[len(colours) % len(PALETTE)])
    sheet_rows = [
        _row(key, [r for r in rows if r["source_path"] == key], files, request, colours)
        for key in keys[:count]
    ]
    return encode_png(np.asarray(_assemble(sheet_rows)))


def _first_frames(spec, items: list[source.Item], count: int) -> list[worker.Output]:
    """Outputs of the first `count` frames (or failures) the items give, video by video."""
    made: list[worker.Output] = []
    for item in items:
        made += worker.outputs(spec, [item])
        if len({row["source_path"] for row, _ in made}) >= count:
            break
    keep = list(dict.fromkeys(row["source_path"] for row, _ in made))[:count]
    return [output for output in made if output.row["source_path"] in keep]


Tile = tuple[str, tuple[int, int, int], Image.Image]  # caption, caption colour, picture


def _row(
    key: str, rows: list[dict], files: dict[str, bytes], request: RequestBase, colours: dict
) -> list[Tile]:
    if rows and "error" in rows[0]:
        return [(f"{key}: failed", ERROR, _text_tile(rows[0]["error"]))]
    base = next(r for r in rows if r["operator"] == "ORIGINAL")
    where = base["split"] + (f"/{base['label']}" if base["label"] is not None else "")
    original = _fit(Image.fromarray(load_image(files[base["output_path"]])))
    scale = original.width / base["width"]
    draw = ImageDraw.Draw(original)
    _draw_objects(draw, base, scale)
    outputs = sorted(
        (r for r in rows if r["operator"] != "ORIGINAL" or request.writes_original),
        key=lambda r: _natural(r["output_path"]),
    )
    for row in outputs:
        box = json.loads(row["params"])
        if all(isinstance(box.get(k), int) for k in ("x", "y", "width", "height")):
            x0, y0 = round(box["x"] * scale), round(box["y"] * scale)
            x1 = max(x0, round((box["x"] + box["width"]) * scale) - 1)
            y1 = max(y0, round((box["y"] + box["height"]) * scale) - 1)
            draw.rectangle((x0, y0, x1, y1), outline=colours[row["operator"]], width=BOX_WIDTH)
    tiles: list[Tile] = [(f"{key} -> {where}", TEXT, original)]
    for row in outputs:
        picture = _fit(Image.fromarray(load_image(files[row["output_path"]])))
        _draw_objects(ImageDraw.Draw(picture), row, picture.width / row["width"])
        tiles.append((row["operator"], colours.get(row["operator"], TEXT), picture))
    return tiles


def _draw_objects(draw: ImageDraw.ImageDraw, row: dict, scale: float) -> None:
    """The output's own boxes (a source with annotations), in its picture's pixels."""
    for box in json.loads(row.get("boxes") or "[]"):
        x, y, w, h = (v * scale for v in box["bbox"])
        corners = (
            round(x),
            round(y),
            max(round(x), round(x + w) - 1),
            max(round(y), round(y + h) - 1),
        )
        draw.rectangle(corners, outline=OBJECT_BOX, width=1)


def _assemble(rows: list[list[Tile]]) -> Image.Image:
    width = PAD + max(sum(tile.width + PAD for _, _, tile in row) for row in rows)
    heights = [CAPTION + max(tile.height for _, _, tile in row) + PAD for row in rows]
    sheet = Image.new("RGB", (width, PAD + sum(heights)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    top = PAD
    for row, height in zip(rows, heights):
        left = PAD
        for caption, colour, tile in row:
            sheet.paste(tile, (left, top + CAPTION))
            draw.text((left, top + 2), _clip(draw, font, caption, tile.width), colour, font)
            left += tile.width + PAD
        top += height
    return sheet


def _fit(image: Image.Image) -> Image.Image:
    scale = min(1.0, TILE / max(image.size))
    if scale == 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _text_tile(text: str) -> Image.Image:
    tile = Image.new("RGB", (TILE, 3 * CAPTION), BACKGROUND)
    draw = ImageDraw.Draw(tile)
    draw.text((0, 0), _clip(draw, ImageFont.load_default(), text, TILE), ERROR)
    return tile


def _clip(draw: ImageDraw.ImageDraw, font, text: str, width: int) -> str:
    """The text, cut (with "..") to fit `width` pixels, but never below a few characters."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 4 and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def _natural(text: str) -> list:
    """Sort key that puts copy 2 before copy 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
