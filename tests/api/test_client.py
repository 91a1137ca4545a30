"""`motoray submit`: the exit status says how the jobs ended; --wait prints the summary."""

from __future__ import annotations

import json
import subprocess

from tests.api.conftest import motoray_bin
from tests.conftest import EXAMPLES


def _submit(service, request_file, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [motoray_bin(), "submit", str(request_file), "--url", service.url, *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env={"MOTORAY_API_TOKEN": service.token, "PATH": "/usr/bin:/bin"},
    )


def test_submit_wait_follows_the_job_to_its_summary(service):
    result = _submit(service, EXAMPLES / "seed_sample.json", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": SUCCEEDED" in result.stdout
    assert "train:" in result.stdout and "test:" in result.stdout
    assert "img" in result.stderr  # the progress bar


def test_submit_exit_status_on_a_failed_job(service, tmp_path):
    def add_missing_source(config: dict) -> None:
        config["sources"]["gone"] = {"uri": str(tmp_path / "no-such-folder")}

    request = tmp_path / "gone.json"
    request.write_text(json.dumps([{"name": "gone"}]))
    with service.edited_config(add_missing_source):
        result = _submit(service, request, "--wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ": FAILED" in result.stdout and "error:" in result.stdout


def test_submit_exit_status_on_a_refused_request(service):
    result = _submit(service, EXAMPLES / "seed_sample_verbatim.txt", "--wait")
    assert result.returncode == 2
    assert "HTTP 400" in result.stderr and "line 1 column" in result.stderr
    wrong = _submit(service, EXAMPLES / "seed_sample.json", "--token", "wrong")
    assert wrong.returncode == 2 and "HTTP 401" in wrong.stderr


def test_submit_gives_up_on_a_service_that_never_gets_healthy(capsys):
    """--ready-timeout: a port where nothing answers is retried until the limit, then exit 2."""
    import socket

    from motoray.client import submit

    with socket.socket() as unused:  # bound, never listening: every connection is refused
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
        status = submit(str(EXAMPLES / "seed_sample.json"), url, ready_timeout=1.2)
    assert status == 2
    error = capsys.readouterr().err
    assert f"gave up waiting for a healthy service at {url}" in error, error
