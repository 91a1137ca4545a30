"""`motoray bench` at toy size: it runs every variant and reports what the issue asks for.

No speed is asserted here (a timed test on a shared machine only measures the neighbours);
what is asserted is that the fast decode path stays close to the full-decode reference.
A child process: the bench starts and shuts down its own Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_runs_every_variant_and_keeps_fidelity(tmp_path):
    output = tmp_path / "result.json"
    motoray = str(Path(sys.executable).with_name("motoray"))
    command = [motoray, "bench", "--frames", str(tmp_path / "frames"), "--images", "40"]
    command += ["--slow-images", "8", "--repeats", "1", "--workers", "2", "--service-jobs", "2"]
    command += ["--videos", "2", "--video-seconds", "2", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads(output.read_text())
    variants = {"floor", "naive", "motoray", "raydata"}
    assert set(result["images_per_s_median"]) == variants
    assert all(rate > 0 for rate in result["images_per_s_median"].values())
    assert set(result["ratios_median"]) == {"c/a", "c/b", "c/d"}
    assert all(mib > 0 for mib in result["memory_growth"]["peak_rss_mib"])
    assert result["fidelity"]["mean_abs_diff"] < 3
    assert result["fidelity"]["psnr_db_min"] > 30
    assert result["cold_run_s"] > 0
    assert result["service_post_to_running"]["jobs"] == 2
    assert (
        0
        < result["service_post_to_running"]["median_s"]
        <= result["service_post_to_running"]["max_s"]
    )
    assert "motoray / floor   (c/a)" in done.stdout and "POST -> RUNNING" in done.stdout
    video = result["video"]  # the video floor and a video job, on two 2 s clips
    assert video["clips"] == 2 and video["decoded_frames"] == 100
    assert all(rate > 0 for rate in video["decoded_frames_per_s_median"].values())
    assert len(video["ratios_per_round"]) == 1 and "video (2 clips" in done.stdout
    floor = sorted((tmp_path / "frames").parent.glob("videos/clip*.mp4"))
    assert len(floor) == 2
