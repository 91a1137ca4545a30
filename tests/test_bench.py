"""The bench (`python -m benchmarks`, `make bench`) at toy size: every part of it runs and
reports what it says it reports.

No speed is asserted here (a timed test on a shared machine only measures the neighbours),
and nothing that holds for any speed either. What is asserted: the report's structure (every
variant, every ratio of every round, the sizes asked for), the fast decode path's fidelity
to the full-decode reference, and that the service job's time budget accounts for all of
its time. A child process: the bench starts and stops its own Ray cluster and service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

VARIANTS = {
    "turbo_floor",
    "pillow_floor",
    "naive",
    "service",
    "ray_job_submit",
    "in_process",
    "boxes",
    "ray_data",
}
IMAGES, SLOW_IMAGES, SERVICE_JOBS, S3_IMAGES, FIXED_JOBS = 4, 2, 1, 2, 2
# Where the last service job's time went, from POST to the client seeing SUCCEEDED, in order.
BUDGET_PARTS = [
    "post_to_job_start_s",
    "listing_and_split_s",
    "split_to_first_result_s",
    "first_to_last_result_s",
    "manifest_s",
    "checks_and_job_json_s",
    "job_end_to_client_sees_it_s",
]


def test_bench_runs_every_part_and_reports_it(tmp_path):
    output = tmp_path / "result.json"
    command = [
        sys.executable, "-m", "benchmarks", "--frames", str(tmp_path / "frames"),
        "--images", str(IMAGES), "--slow-images", str(SLOW_IMAGES), "--repeats", "1",
        "--workers", "2", "--service-jobs", str(SERVICE_JOBS), "--s3-images", str(S3_IMAGES),
        "--videos", "2", "--video-seconds", "2", "--output", str(output),
        "--fixed-jobs", str(FIXED_JOBS), "--idle-seconds", "1", "--quiet-seconds", "0",
        "--no-warm-up",  # for timings only; ~25 s of this test (a `ray job submit` among them)
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the harness is not installed
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=540, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(output.read_text())

    # Every variant measured once, every ratio between two of them, per round.
    assert result["images"] == IMAGES and result["repeats"] == 1
    assert set(result["images_per_s_median"]) == set(result["peak_rss_mib_median"]) == VARIANTS
    ratios = result["ratios_per_round"]
    assert set(result["ratios_median"]) == set(ratios)
    assert all(len(per_round) == 1 for per_round in ratios.values()), ratios
    assert all(set(name.split(" / ")) <= VARIANTS for name in ratios), ratios
    assert result["memory_growth"]["images"] == [IMAGES, IMAGES]
    assert result["service_post_to_running"]["jobs"] == SERVICE_JOBS
    assert set(result["cold"]["per_run"]) == {"motoray_run_s", "ray_start_stop_s"}
    assert all(len(runs) == 1 for runs in result["cold"]["per_run"].values())

    # The service's costs beside the pixels: per 1-image job, `ray job submit`'s, idle.
    fixed = result["fixed_cost"]
    assert fixed["jobs"] == len(fixed["wall_s"]) == FIXED_JOBS
    assert fixed["task_cpu_s"] > 0 and fixed["wall_s_median"] > 0
    small = result["small_job"]
    assert {"plain_tasks", "dataset"} <= set(small) and small["dataset"]["cpu_s"] > 0
    submit = result["ray_job_submit"]
    assert submit["per_run"]["motoray_run_s"] and submit["per_run"]["true_s"]
    assert submit["overhead_s"] == pytest.approx(submit["motoray_run_s"] - submit["true_s"])
    for idle in result["idle"].values():
        titles = {row["title"] for row in idle["processes"]}
        # every process of the service and its Ray: its GCS, the runner, the API replica
        assert {"gcs_server", "ray::JobRunner", "ray::ServeReplica"} <= titles, titles
        assert idle["cores"] == pytest.approx(
            sum(row["cores"] for row in idle["processes"]), abs=0.01
        )
    for layout in ("files", "webdataset"):
        s3 = result["s3_images_per_s_per_core"][layout]
        assert set(s3) == {"0ms", "30ms", "100ms", "30ms / 0ms"}, s3

    # The fast decode path (in-decoder downscale) stays close to full decode + resize.
    assert result["fidelity"]["mean_abs_diff"] < 3
    assert result["fidelity"]["psnr_db_min"] > 30

    # "Where the service path's time went" leaves nothing out: its parts make the whole.
    budget = result["service_time_budget_s"]
    whole = budget["post_to_client_sees_succeeded_s"]
    assert sum(budget[part] for part in BUDGET_PARTS) == pytest.approx(whole, abs=0.05), budget

    # The video floor and a video job, on two 2 s clips: every frame decoded, counted.
    video = result["video"]
    assert video["clips"] == 2 and video["decoded_frames"] == 100
    assert len(video["ratios_per_round"]) == 1
    assert len(sorted((tmp_path / "frames").parent.glob("videos/clip*.mp4"))) == 2
    # The same on interlaced clips, deinterlaced by both.
    interlaced = result["video_interlaced"]
    assert interlaced["clips"] == 2 and interlaced["decoded_frames"] == 100
    assert len(interlaced["ratios_per_round"]) == 1
    assert len(sorted((tmp_path / "frames").parent.glob("videos-interlaced/clip*.ts"))) == 2

    # What a reader of the printed report looks for.
    for line in [
        *(f"  {name:30} " for name in ratios),
        "fast decode vs full",
        "where the service path's time went",
        "POST -> RUNNING on the warm service",
        "S3 webdataset img/s per core",
        "video (2 clips",
        "cold `motoray run` (1 image, no Ray running before)",
        "1-image POST -> SUCCEEDED on the warm service",
        "a 1-image job from this process",
        "`ray job submit` overhead beyond `ray job submit -- true`",
        "idle right after start:",
        "idle after the last job:",
    ]:
        assert line in done.stdout, line
