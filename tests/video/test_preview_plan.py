"""Plans and previews of a video source: counts from container metadata, frames from the
openings of the first videos (no Ray: both run the job's own code in process)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from motoray.dry_run import dry_run
from motoray.preview import CAPTION, PAD, contact_sheet
from tests.conftest import outputs_in_memory, parse_one
from tests.video.conftest import request, video_config

BODY = request(
    augmentations=[{"RANDOM_CROP": {"crop_dimensions": [40, 40], "target_count": 2}}],
    train_test_split={"train_ratio": 67, "test_ratio": 33},
)


def test_plan_counts_frames_from_metadata_as_the_job_makes_them(clips, tmp_path):
    config = video_config(clips, tmp_path, every_s=0.5, range_s=4)
    plan = dry_run(parse_one(BODY, config), config, cpus=2)
    counts = plan["counts"]
    assert counts["videos"] == 3 and counts["videos_unreadable"] == 0
    assert counts["images_total"] == 60 and counts["outputs"] == 120
    rows, _ = outputs_in_memory(config, BODY)  # what the job's worker makes
    made = {}
    for row in rows:
        made.setdefault(row["split"], set()).add(row["source_path"])
    assert {s: c["images"] for s, c in counts["splits"].items()} == {
        s: len(keys) for s, keys in made.items()
    }
    assert plan["split"]["group_by"] == "video"
    assert plan["estimate"]["sample"]["images"] >= 2 and plan["estimate"]["bytes"] > 0
    assert plan["estimate"]["duration_s"] > 0


def test_plan_names_videos_it_cannot_read(clips, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.mp4").write_bytes((clips / "clip000.mp4").read_bytes())
    (folder / "b.mp4").write_text("text")
    config = video_config(folder, tmp_path / "out", fps=1, end_s=4)
    counts = dry_run(parse_one(BODY, config), config, cpus=2)["counts"]
    assert counts["videos"] == 2 and counts["videos_unreadable"] == 1
    assert counts["images_total"] == 4


def test_preview_shows_the_first_frames_with_their_keys(clips, tmp_path):
    config = video_config(clips, tmp_path, every_s=0.5)
    png = contact_sheet(parse_one(BODY, config), config, count=3)
    sheet = np.asarray(Image.open(io.BytesIO(png)))
    # Three rows (frames at 0, 0.52 and 1 s of the first clip), each the resized 160x90
    # frame and its two 40x40 crops.
    assert sheet.shape[0] == PAD + 3 * (CAPTION + 90 + PAD)
    assert sheet.shape[1] == PAD + (160 + PAD) + 2 * (40 + PAD)
