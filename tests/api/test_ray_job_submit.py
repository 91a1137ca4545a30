"""`ray job submit` as the README writes it, pasted as `motoray serve` prints it.

The service starts its own local Ray, as in `make demo`, on the config of a copy of the
repository layout (.gitignore, the example request, motoray.yaml with its relative
./data/sample/MotoGP and ./outputs, six small frames), with no venv on its PATH and a HOME
of its own (the Ray token is made there, as ~/.ray/auth_token). Its working directory is the
test's, not the copy's: the job finds the request only through --working-dir. The printed
command runs through /bin/sh in the copy, with nothing else set.
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

import pytest

from motoray.bench.service import spawn_service
from motoray.commands import bin_dir
from motoray.waiting import wait_until
from tests.api.conftest import stop_service
from tests.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.slow

REQUEST = "examples/requests/seed_sample.json"
PRINTED = re.compile(
    r"^a Ray Job, from the repository root: (RAY_AUTH_MODE=token (\S+) job submit "
    r"--address (http://127\.0\.0\.1:\d+) --working-dir \. -- motoray run (\S+))$",
    re.MULTILINE,
)


@dataclass
class Demo:
    repo: Path  # the copy of the repository layout, where the user pastes the command
    command: str  # as printed by `motoray serve`
    env: dict[str, str]  # the user's shell: no Ray settings, the venv not activated


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    from motoray.sample_data import write_sample_frames

    repo = tmp_path_factory.mktemp("repo")
    (repo / "examples" / "requests").mkdir(parents=True)
    shutil.copy(EXAMPLES / "seed_sample.json", repo / REQUEST)
    shutil.copy(REPO / "motoray.yaml", repo)  # the source and outputs relative to it
    shutil.copy(REPO / ".gitignore", repo)  # data/ and outputs/ stay out of the upload
    write_sample_frames(repo / "data" / "sample" / "MotoGP", 6, (480, 270))

    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir())
    env = {**os.environ, "PATH": path, "HOME": str(tmp_path_factory.mktemp("home"))}
    env.pop("RAY_AUTH_MODE", None)  # the printed command sets it
    log = tmp_path_factory.mktemp("log") / "serve.log"  # not in the upload
    try:  # No --address: the service starts (and owns) a local Ray, as `make demo` does.
        process, _ = spawn_service(repo / "motoray.yaml", secrets.token_urlsafe(16), log, env=env)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        # /healthz may answer just before `serve` prints its lines
        printed = wait_until(lambda: PRINTED.search(log.read_text()), 30, what="the command")
        command, ray, _, request = printed.groups()
        assert shutil.which(ray, path=path) == str(Path(bin_dir(), "ray"))  # the venv's
        assert request == REQUEST
        yield Demo(repo, command, env)
    finally:
        assert stop_service(process) == 0, log.read_text()


def submit(demo: Demo, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        " ".join([demo.command, *extra]),
        shell=True,  # pasted into a shell, `RAY_AUTH_MODE=token` prefix and all
        cwd=demo.repo,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_printed_command_runs_the_request(demo):
    result = submit(demo)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Job 'raysubmit_\w+' succeeded", output), output
    # The service's config: frames from the repository's data/, results in its outputs/
    [job_file] = (demo.repo / "outputs" / "MotoGP").glob("*/job.json")
    record = json.loads(job_file.read_text())
    assert record["state"] == "SUCCEEDED"
    counts = record["counts"]
    assert (counts["images_total"], counts["images_done"], counts["images_failed"]) == (6, 6, 0)
    assert counts["outputs"] == 24  # 4 per image: one CROP, three RANDOM_CROP
    assert counts["splits"] == {
        "train": {"images": 5, "outputs": 20},
        "test": {"images": 1, "outputs": 4},
    }
    assert len(list(job_file.parent.rglob("*.jpg"))) == 24


def test_config_from_the_upload_may_not_write_into_it(demo):
    """`--config motoray.yaml` is the uploaded copy's: its ./outputs would vanish with it."""
    result = submit(demo, "--config", "motoray.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "./motoray.yaml: output folder ./outputs is inside the job's copy" in output, output
