"""Accepted means durable: a job outlives its runner's process and its service.

One `motoray serve` owning its Ray (as after `make demo`), on frames enough for a job to be
caught midway. In file order: an undisturbed job, whose files are the reference; the
runner's process killed mid-job (Ray starts it again, and it resumes the job); a job
stopped while its runner was dead, which stays stopped; then the whole service stopped
mid-job and started again on the same config: the job resumes, a stopped job stays
stopped, and a job whose time limit passed meanwhile ends FAILED without running again.
Every resumed job ends with the undisturbed job's files and manifest, byte for byte, and
job.json says it was resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from motoray.pipeline.layout import JOB_FILE
from motoray.waiting import wait_until
from tests.api.conftest import post_json, start_service, stop_service, wait_for
from tests.conftest import full_hd_jitter

pytestmark = pytest.mark.slow

FRAMES = 1200  # copies of 10 pictures: cheap to write; enough work that a job is still
# running when a loaded machine has posted another job and stopped the service (600 was not)
REQUEST = {  # the seed request, with one random crop fewer: 3 outputs per frame
    "name": "MotoGP",
    "input_image_size": [480, 270],
    "augmentations": [
        {"CROP": {"crop_dimensions": [[270, 270]], "crop_type": "left_down_center"}},
        {"RANDOM_CROP": {"crop_dimensions": [80, 80], "target_count": 2}},
    ],
    "train_test_split": {"train_ratio": 80, "test_ratio": 20},
}
OUTPUTS = 3 * FRAMES


@dataclass
class Resumable:
    root: Path
    config: Path
    token: str
    process: object
    url: str
    log: Path
    home: Path  # the service's HOME: its Ray token is made there
    reference: dict[str, str] = field(default_factory=dict)  # undisturbed job: path -> sha256
    stopped: str = ""  # the id of a job stopped while its runner was dead

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["HOME"] = str(self.home)
        self.process, self.url, self.log = start_service(self.config, self.token, env)

    def runner_pids(self) -> list[int]:
        return _pids(self.process.pid, "JobRunner")


def _pids(root: int, text: str) -> list[int]:
    found = []
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process(root).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if text in " ".join(process.cmdline()):
                    found.append(process.pid)
    return found


def job_hashes(job_dir: Path) -> dict[str, str]:
    """sha256 of every output and the manifest: all but job.json and the job's bookkeeping."""
    return {
        path.relative_to(job_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(job_dir.rglob("*"))
        if path.is_file() and path.name != JOB_FILE and ".motoray" not in path.parts
    }


def outputs(job_dir: Path) -> int:
    return sum(1 for _ in job_dir.rglob("*.jpg"))


@pytest.fixture(scope="module")
def resumable(tmp_path_factory) -> Iterator[Resumable]:
    from motoray.sample_data import write_sample_frames

    root = tmp_path_factory.mktemp("resume")
    write_sample_frames(root / "MotoGP", FRAMES, (640, 360), unique=10)
    config = root / "motoray.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": {"MotoGP": {"uri": str(root / "MotoGP")}},
                "output": {"uri": str(root / "outputs")},
                "server": {"max_pending_jobs": 8},
            }
        )
    )
    home = tmp_path_factory.mktemp("home")
    service = Resumable(root, config, secrets.token_urlsafe(16), None, "", Path(), home)
    service.start()
    try:
        with service.client() as api:
            final = wait_for(api, submit(api), timeout=300)
        assert final["state"] == "SUCCEEDED", final
        assert final["resumed"] == 0
        service.reference = job_hashes(Path(final["output"]))
        assert len(service.reference) == OUTPUTS + 1  # and the manifest
        yield service
    finally:
        if service.process.poll() is None:
            assert stop_service(service.process) == 0, service.log.read_text()


def submit(api: httpx.Client, body: dict = REQUEST) -> str:
    response = post_json(api, body)
    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    return job["job_id"]


def midway(api: httpx.Client, job_id: str) -> Path:
    """Once the job runs and has written some of its outputs (not all): its folder."""
    folder = Path(wait_for(api, job_id, ("RUNNING",), poll_s=0.05)["output"])
    wait_until(lambda: outputs(folder) >= 20, 120, interval=0.02, what="a first few outputs")
    assert not (folder / JOB_FILE).exists() and outputs(folder) < OUTPUTS, "not midway"
    return folder


def stages(api: httpx.Client, job_id: str) -> list[str]:
    return [line["stage"] for line in api.get(f"/data_prep/{job_id}/logs").json()["lines"]]


def kill_the_runner_midway(api: httpx.Client, resumable) -> tuple[str, Path, int]:
    """A job posted and midway, then its runner's process killed: (its id, folder, the pid)."""
    job_id = submit(api)
    folder = midway(api, job_id)
    [runner] = resumable.runner_pids()
    os.kill(runner, signal.SIGKILL)
    return job_id, folder, runner


def test_the_runners_process_killed_mid_job(resumable):
    """Ray starts the runner again; the new one resumes the job from its folder."""
    with resumable.client() as api:
        job_id, folder, runner = kill_the_runner_midway(api, resumable)
        final = wait_for(api, job_id, timeout=300)
        assert final["state"] == "SUCCEEDED", final
        assert final["resumed"] == 1
        assert stages(api, job_id).count("started") == 2
    assert job_hashes(folder) == resumable.reference
    assert json.loads((folder / JOB_FILE).read_text())["resumed"] == 1
    assert runner not in resumable.runner_pids()


def test_a_job_stopped_while_its_runner_is_dead_stays_stopped(resumable):
    """The stop is marked in the job's folder: the runner that comes next does not run it."""
    with resumable.client() as api:
        job_id, folder, runner = kill_the_runner_midway(api, resumable)
        stopped = api.delete(f"/data_prep/{job_id}")
        assert stopped.status_code == 200, stopped.text
        assert wait_for(api, job_id)["state"] == "STOPPED"
        wait_until(lambda: resumable.runner_pids() != [runner], 120, what="a new runner")
        written = outputs(folder)
        time.sleep(3)  # a resumed run would have started writing by now
        assert outputs(folder) == written
        assert not (folder / JOB_FILE).exists()
        assert stages(api, job_id).count("started") == 1
        assert api.get(f"/data_prep/{job_id}").json()["state"] == "STOPPED"
    resumable.stopped = job_id


def test_the_whole_service_stopped_and_started_again_mid_job(resumable):
    """A service stopped with jobs running (its Ray goes with it) resumes them when started
    again on the same config and output root; a stopped job stays stopped; a job whose time
    limit passed while no service ran ends FAILED without running again."""
    limit_s = 40
    with resumable.client() as api:
        job_id = submit(api)
        folder = midway(api, job_id)
        # Then, just before the stop (its clock runs from acceptance: under load, one posted
        # first once timed out before the stop), a job far longer than its time limit.
        original = resumable.config.read_text()
        edited = yaml.safe_load(original)
        edited["limits"] = {"job_timeout_s": limit_s}
        resumable.config.write_text(yaml.safe_dump(edited))
        try:
            late_id = submit(api, full_hd_jitter(300))
        finally:
            resumable.config.write_text(original)
        late = wait_for(api, late_id, ("RUNNING",), poll_s=0.05)
    assert stop_service(resumable.process) == 0
    log = resumable.log.read_text()
    unended = ", ".join(sorted([job_id, late_id]))
    expected = "2 unfinished job(s) resume when motoray serve starts again on this config: "
    assert expected + unended in log, log
    give_up_at = datetime.fromisoformat(late["submitted_at"]).timestamp() + limit_s * 1.05 + 1
    time.sleep(max(0.0, give_up_at - time.time()))  # its time is up while no service runs

    resumable.start()
    with resumable.client() as api:
        final = wait_for(api, job_id, timeout=300)
        assert final["state"] == "SUCCEEDED", final
        assert final["resumed"] == 1
        timed_out = wait_for(api, late_id, timeout=120)
        assert timed_out["state"] == "FAILED", timed_out
        assert "past limits.job_timeout_s (40 s) before it could resume" in timed_out["error"]
        assert stages(api, late_id).count("listed") == 1  # its first run's: none since
        assert api.get(f"/data_prep/{resumable.stopped}").json()["state"] == "STOPPED"
    assert job_hashes(folder) == resumable.reference
    assert json.loads((folder / JOB_FILE).read_text())["resumed"] == 1
