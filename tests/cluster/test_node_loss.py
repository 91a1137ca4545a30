"""A worker node dies in the middle of a job: the job succeeds, with exactly a clean run's files.

One cluster for three sources, frames, video clips, then a small job's frames (its start is
most of the cost). The first two take Ray Data's path, the small job plain Ray tasks.
The cluster work runs in its own process (scripts/node_loss_check.py), not in pytest's: the
session `ray_local` fixture may already have called ray.init here, and a second cluster's
driver cannot share a process with it (ray.init(ignore_reinit_error=True) would silently
keep the first one). A subprocess also gets its own RAY_TMPDIR, so the address file that
`ray.cluster_utils.Cluster` writes is not where other `ray.init()` calls on this machine
look, and everything it started dies with its process group whatever happens here.

The cluster checks its nodes' health every second (Ray's default: every 3 s, dead after 5
misses): the killed node is declared dead within ~5 s, which is what the report waits for
(the node dead, and the NODE_DIED task events), not 15 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motoray.pipeline.ray_data import IMAGES_PER_BLOCK
from motoray.sample_data import write_sample_frames
from motoray.video.sample import write_sample_videos

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "node_loss_check.py"
FRAMES = 200
SMALL_FRAMES = IMAGES_PER_BLOCK  # the most a small job holds; full-HD, so its tasks last
DATASET_TASK, SMALL_JOB_TASK = "MapBatches(_write_files)", "_one_block"
CLIP_SECONDS = 10
TIMEOUT_S = 420
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}

pytestmark = pytest.mark.slow


def job_hashes(job_dir: Path) -> dict[str, str]:
    """sha256 of every file under the job folder (hidden ones too) but job.json."""
    return {
        p.relative_to(job_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(job_dir.rglob("*"))
        if p.is_file() and p.name != "job.json"
    }


@pytest.fixture(scope="module")
def node_loss(tmp_path_factory) -> tuple[dict, Path]:
    """The script's report on frames, video clips and a small job, and the output root."""
    folder = tmp_path_factory.mktemp("node-loss")
    write_sample_frames(folder / "frames", FRAMES, (640, 360))
    write_sample_videos(folder / "clips", 4, (640, 360), seconds=CLIP_SECONDS)
    write_sample_frames(folder / "small", SMALL_FRAMES, (1920, 1080))
    output = folder / "outputs"
    # 4 clips x 10 s, every 0.2 s, 2.5 s per task: 16 range tasks, 200 frames.
    video = ["--clips", str(folder / "clips"), "--every-s", "0.2", "--range-s", "2.5"]
    sources = ["--frames", str(folder / "frames"), *video, "--small", str(folder / "small")]
    return run_check(sources, output), output


def run_check(sources: list[str], output: Path) -> dict:
    # Short, private temp dir: Ray's unix socket paths must fit in 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="motoray-nodeloss-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, **FAST_HEALTH_CHECKS}
    env.pop("RAY_ADDRESS", None)
    report = output.parent / "report.json"
    command = [sys.executable, str(SCRIPT), *sources, "--output", str(output)]
    command += ["--report", str(report)]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the Ray nodes it starts are in it
    )
    try:
        log, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        pytest.fail(f"node_loss_check.py timed out after {TIMEOUT_S} s:\n{log[-4000:]}")
    finally:
        # Stragglers of the group it leads (a worker of the killed node, say).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert process.returncode == 0, f"node_loss_check.py failed:\n{log[-4000:]}"
    return json.loads(report.read_text())


def test_worker_node_killed_mid_job_changes_no_output_byte(node_loss) -> None:
    report, output = node_loss
    frames = report["frames"]
    assert frames["outputs_expected"] == FRAMES * 4  # seed request: a CROP, 3 RANDOM_CROPs
    check_lossy_job_equals_clean(frames, output / "frames", DATASET_TASK)


def test_worker_node_killed_mid_video_job_changes_no_output_byte(node_loss) -> None:
    report, output = node_loss
    video = report["video"]
    assert video["clean"]["counts"]["images_done"] == 4 * CLIP_SECONDS * 5
    assert video["outputs_expected"] == 4 * CLIP_SECONDS * 5 * 4
    check_lossy_job_equals_clean(video, output / "video", DATASET_TASK)
    manifest = pq.read_table(output / "video" / "MotoGP" / "node-loss" / "manifest.parquet")
    assert set(manifest["video"].to_pylist()) == {f"clip00{n}.mp4" for n in range(4)}


def test_worker_node_killed_mid_small_job_changes_no_output_byte(node_loss) -> None:
    """A small job's plain tasks are retried like Ray Data's: the node killed ran one."""
    report, output = node_loss
    small = report["small"]
    assert small["outputs_expected"] == SMALL_FRAMES * 4
    check_lossy_job_equals_clean(small, output / "small", SMALL_JOB_TASK)


def check_lossy_job_equals_clean(report: dict, output: Path, task: str) -> None:
    print(json.dumps(report["kill"]), f"node-loss job: {report['node_loss_s']} s")
    assert report["clean"]["state"] == "SUCCEEDED"
    assert report["node_loss"]["state"] == "SUCCEEDED"
    assert report["node_loss"]["counts"] == report["clean"]["counts"]
    assert report["clean"]["counts"]["images_failed"] == 0
    expected = report["outputs_expected"]

    # The kill landed mid-job: some outputs written, not all, job not finished...
    kill = report["kill"]
    assert kill["killed"], f"the job finished before the kill: {kill}"
    assert 0 < kill["outputs_at_kill"] < expected and not kill["job_json_at_kill"]
    # ...the node (picked while it ran a pipeline task of the path under test) really died,
    # and that work ran again.
    assert kill["task"] == task, kill
    nodes = {n["node_id"]: n for n in report["nodes"]}
    assert not nodes[kill["node_id"]]["alive"]
    assert nodes[kill["replacement_id"]]["alive"]
    # Task events are best effort in Ray's state API (late or dropped under heavy load, and
    # the task the victim was seen running may have ended just before the kill): when they
    # were recorded, they must show the lost attempt and its retry.
    if attempts := report["task_attempts"]:
        assert any(a["on_killed_node"] and a["error_type"] == "NODE_DIED" for a in attempts)
        assert any(a["attempt"] > 0 and a["state"] == "FINISHED" for a in attempts), attempts

    # Nothing missing, nothing duplicated, nothing half written: the same files, byte for byte.
    clean, lossy = output / "MotoGP" / "clean", output / "MotoGP" / "node-loss"
    hashes = job_hashes(lossy)
    assert hashes == job_hashes(clean)
    assert len(hashes) == expected + 1  # + manifest.parquet
    manifest = pq.read_table(lossy / "manifest.parquet")
    paths = manifest["output_path"].to_pylist()
    assert len(paths) == len(set(paths)) == expected
    assert set(paths) == set(hashes) - {"manifest.parquet"}
    record = json.loads((lossy / "job.json").read_text())
    assert record["state"] == "SUCCEEDED" and record["failures"] == []
