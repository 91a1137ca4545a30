"""`motoray serve` on its own, as after `make demo`: it starts and owns a local Ray, serves
HTTPS, prints a `ray job submit` line that works as pasted, and takes it all down on SIGTERM.

One service for the module (starting one that owns its Ray is most of the cost): the tests
run in file order and the last one stops it.

The service runs on the config of a copy of the repository layout (.gitignore, the example
request, motoray.yaml with its relative ./data/sample/MotoGP and ./outputs, plus TLS files
named relative to it), with no venv on its PATH and a HOME of its own (the Ray token is
made there, as ~/.ray/auth_token). Its working directory is the test's, not the copy's: the
job finds the request only through --working-dir. The printed command runs through /bin/sh
in the copy, with nothing else set.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from motoray.commands import bin_dir
from motoray.pipeline.layout import JOB_FILE
from motoray.waiting import wait_until
from tests.api.conftest import motoray_bin, self_signed, stop_service, wait_for
from tests.conftest import EXAMPLES, REPO, full_hd_jitter
from tests.service import spawn_service

pytestmark = pytest.mark.slow

REQUEST = "examples/requests/seed_sample.json"
FRAMES = 60  # copies of 6 pictures: cheap, and LONG_JOB on them outlasts the service
PRINTED = re.compile(
    r"^a Ray Job, from the repository root: (RAY_AUTH_MODE=token (\S+) job submit "
    r"--address (http://127\.0\.0\.1:\d+) --working-dir \. -- motoray run (\S+))$",
    re.MULTILINE,
)
# 60 x 1000 full-HD outputs: minutes of work, still running when the service stops however
# the machine's speed swings; the stop ends their tasks at their next output. (60 x 1000
# crops of 192x192 were not: in one CI run the first job had made all 60 images when the
# shutdown came, 6 s after it started, and the shutdown reported 1 unfinished job of 2.)
LONG_JOB = full_hd_jitter(1000)


@dataclass
class Alone:
    repo: Path  # the copy of the repository layout, where the user pastes the command
    command: str  # `ray job submit ...` as printed by `motoray serve`
    env: dict[str, str]  # the user's shell: no Ray settings, the venv not activated
    process: subprocess.Popen
    url: str  # https://
    cert: str
    token: str
    log: Path


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Iterator[Alone]:
    from motoray.sample_data import write_sample_frames

    repo = tmp_path_factory.mktemp("repo")
    (repo / "examples" / "requests").mkdir(parents=True)
    shutil.copy(EXAMPLES / "seed_sample.json", repo / REQUEST)
    shutil.copy(REPO / ".gitignore", repo)  # data/ and outputs/ stay out of the upload
    write_sample_frames(repo / "data" / "sample" / "MotoGP", FRAMES, (480, 270), unique=6)
    cert, key = self_signed(repo)
    # The repository's config (source and outputs relative to it), with relative TLS paths:
    # resolved against the config file, like every path in it.
    config = yaml.safe_load((REPO / "motoray.yaml").read_text())
    config["server"]["tls"] = {"certfile": cert.name, "keyfile": key.name}
    (repo / "motoray.yaml").write_text(yaml.safe_dump(config))

    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir())
    env = {**os.environ, "PATH": path, "HOME": str(tmp_path_factory.mktemp("home"))}
    env.pop("RAY_AUTH_MODE", None)  # the printed command sets it
    log = tmp_path_factory.mktemp("log") / "serve.log"  # not in the upload
    token = secrets.token_urlsafe(16)
    try:  # No --address: the service starts (and owns) a local Ray, as `make demo` does.
        process, url = spawn_service(repo / "motoray.yaml", token, log, env=env, verify=str(cert))
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        # /healthz may answer just before `serve` prints its lines
        printed = wait_until(lambda: PRINTED.search(log.read_text()), 30, what="the command")
        command, ray, _, request = printed.groups()
        assert shutil.which(ray, path=path) == str(Path(bin_dir(), "ray"))  # the venv's
        assert request == REQUEST
        yield Alone(repo, command, env, process, url, str(cert), token, log)
    finally:
        if process.poll() is None:
            assert stop_service(process) == 0, log.read_text()


def submit(alone: Alone, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        " ".join([alone.command, *extra]),
        shell=True,  # pasted into a shell, `RAY_AUTH_MODE=token` prefix and all
        cwd=alone.repo,
        env=alone.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_printed_command_runs_the_request(alone):
    result = submit(alone)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Job 'raysubmit_\w+' succeeded", output), output
    # The service's config: frames from the repository's data/, results in its outputs/
    [job_file] = (alone.repo / "outputs" / "MotoGP").glob("*/job.json")
    record = json.loads(job_file.read_text())
    assert record["state"] == "SUCCEEDED"
    counts = record["counts"]
    assert (counts["images_total"], counts["images_done"], counts["images_failed"]) == (60, 60, 0)
    assert counts["outputs"] == 240  # 4 per image: one CROP, three RANDOM_CROP
    assert counts["splits"] == {
        "train": {"images": 48, "outputs": 192},
        "test": {"images": 12, "outputs": 48},
    }
    assert len(list(job_file.parent.rglob("*.jpg"))) == 240


def test_config_from_the_upload_may_not_write_into_it(alone):
    """`--config motoray.yaml` is the uploaded copy's: its ./outputs would vanish with it."""
    result = submit(alone, "--config", "motoray.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "./motoray.yaml: output folder ./outputs is inside the job's copy" in output, output


def test_https_only_and_a_clean_shutdown(alone):
    """Last in the module: it stops the service."""
    headers = {"Authorization": f"Bearer {alone.token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=alone.url, headers=headers, verify=alone.cert, timeout=60) as api:
        response = api.post("/data_prep", content=json.dumps(LONG_JOB))
        assert response.status_code == 202, response.text
        [job] = response.json()["jobs"]
        assert job["status_url"].startswith("https://127.0.0.1:")
        running = wait_for(api, job["job_id"], states=("RUNNING",), poll_s=0.2)
    with pytest.raises(httpx.HTTPError):  # TLS only: no plain HTTP on the port
        httpx.get(alone.url.replace("https://", "http://") + "/healthz", timeout=10)

    # Without --wait, submit returns once the job is accepted.
    long_job = alone.log.with_name("long.json")
    long_job.write_text(json.dumps(LONG_JOB))
    submitted = subprocess.run(
        [motoray_bin(), "submit", str(long_job), "--url", alone.url,
         "--token", alone.token, "--cacert", alone.cert],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.startswith("job ")

    process = psutil.Process(alone.process.pid)
    started = process.children(recursive=True)  # ray start, GCS, raylet, workers, job drivers
    assert any("gcs_server" in " ".join(p.cmdline()) for p in started)
    assert stop_service(alone.process) == 0
    log = alone.log.read_text()
    # Not stopped: they resume when the service starts again (tests/api/test_resume.py).
    resume = "2 unfinished job(s) resume when motoray serve starts again"
    assert resume in log, log
    # Nothing of Ray's own after ours (once a "(raylet) Task ServeController.graceful_shutdown
    # failed ..." line): only the service's own lines.
    after = log.split("stopping ...\n", 1)[1].splitlines()
    ours = [line for line in after if line.startswith("stopped") or resume in line]
    assert ours == [line for line in after if line.strip()], after
    _, left = psutil.wait_procs(started, timeout=30)
    assert not left, [p.cmdline() for p in left]
    assert not (Path(running["output"]) / JOB_FILE).exists()  # not ended: no job.json
