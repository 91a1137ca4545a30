"""The contact sheet shows the boxes a real job records, where it records them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from motoray.cli import main
from motoray.preview import BOX_WIDTH, CAPTION, PAD, PALETTE, contact_sheet
from tests.conftest import copy_frames, parse_one, run_job


@pytest.fixture
def source(frames, tmp_path) -> Path:
    folder = tmp_path / "MotoGP"
    copy_frames(frames, folder, 6)
    return folder


def _sheet(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def _ring_share(sheet: np.ndarray, box: tuple[int, int, int, int], colour) -> float:
    """Share of the pixels on the rectangle (x0, y0, x1, y1 inclusive) that are `colour`."""
    x0, y0, x1, y1 = box
    ring = np.concatenate(
        [sheet[y0, x0 : x1 + 1], sheet[y1, x0 : x1 + 1], sheet[y0:y1, x0], sheet[y0:y1, x1]]
    )
    return float(np.all(ring == colour, axis=1).mean())


@pytest.mark.usefixtures("ray_local")
def test_seed_sample_sheet_draws_the_manifest_boxes(source, make_config, seed_request):
    config = make_config(MotoGP=source)
    request = parse_one(seed_request, config)
    sheet = _sheet(contact_sheet(request, config, count=4))

    # Rows of: the 480x270 original, the 270x270 crop, three 80x80 crops.
    row_height = CAPTION + 270 + PAD
    assert sheet.shape == (PAD + 4 * row_height, PAD + 480 + 270 + 3 * 80 + 5 * PAD, 3)

    run_job(request, config, "real")
    rows = pq.read_table(Path(config.output.uri) / "MotoGP" / "real" / "manifest.parquet")
    colours = {"CROP": PALETTE[0], "RANDOM_CROP": PALETTE[1]}
    first_four = sorted({r["source_path"] for r in rows.to_pylist()})[:4]
    checked = 0
    for index, key in enumerate(first_four):
        top = PAD + index * row_height + CAPTION
        for row in (r for r in rows.to_pylist() if r["source_path"] == key):
            p = json.loads(row["params"])
            x0, y0 = PAD + p["x"], top + p["y"]  # the original is drawn 1:1
            x1, y1 = x0 + p["width"] - 1, y0 + p["height"] - 1
            colour = colours[row["operator"]]
            assert _ring_share(sheet, (x0, y0, x1, y1), colour) > 0.8
            # Exactly there: one pixel outside, and just inside the outline, is picture.
            assert _ring_share(sheet, (x0 - 1, y0 - 1, x1 + 1, y1 + 1), colour) < 0.3
            inside = (x0 + BOX_WIDTH, y0 + BOX_WIDTH, x1 - BOX_WIDTH, y1 - BOX_WIDTH)
            assert _ring_share(sheet, inside, colour) < 0.3
            checked += 1
    assert checked == 16


def test_a_bad_image_gets_a_failed_tile_and_the_cli_writes_png(source, tmp_path):
    (source / "aaa_broken.jpg").write_bytes(b"not a jpeg")  # listed first
    (tmp_path / "motoray.yaml").write_text(
        f"sources:\n  MotoGP:\n    uri: {source}\noutput:\n  uri: {tmp_path / 'out'}\n"
    )
    request = {
        "name": "MotoGP",
        "input_image_size": [160, 90],
        "augmentations": [{"FLIP": {}}],
    }
    (tmp_path / "request.json").write_text(json.dumps([request]))
    out = tmp_path / "sheet.png"
    argv = ["preview", str(tmp_path / "request.json"), "--config", str(tmp_path / "motoray.yaml")]
    assert main([*argv, "-o", str(out), "--count", "2"]) == 0
    sheet = _sheet(out.read_bytes())
    assert sheet.shape[0] == PAD + 2 * CAPTION + 3 * CAPTION + 90 + 2 * PAD  # failed row, ok row
    assert main([*argv, "--count", "0"]) == 2
