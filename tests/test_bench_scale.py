"""The `scale` bench line (`python -m benchmarks.scale`) at toy size: it runs, records its
block into a result file beside what is there, and the benchmarks page renders it. No speed
is asserted (a timed test on a shared machine measures the neighbours)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from docgen.benchmarks import scale
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_scale_line_runs_records_and_renders(tmp_path):
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"load": [{"kept": True}]}))
    command = [sys.executable, "-m", "benchmarks.scale", "--sizes", "2000", "5000",
               "--list-keys", "3000", "--job-sizes", "100", "300",
               "--record", str(result)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the harness is not installed
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=540, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    recorded = json.loads(result.read_text())
    assert recorded["load"] == [{"kept": True}]  # the rest of the file is left as it was
    found = recorded["scale"]
    assert [run["keys"] for run in found["plan"]["runs"]] == [2000, 5000]
    assert all(run["driver_peak_rss_mib"] > 0 for run in found["plan"]["runs"])
    assert found["listing"]["keys"] == 3000 and found["listing"]["serial_requests"] >= 3
    assert [run["images"] for run in found["job"]["runs"]] == [100, 300]
    assert all(run["images_per_s"] > 0 for run in found["job"]["runs"])
    page = scale(recorded)
    assert "plan of 5,000 keys" in page and "S3 listing of 3,000 keys at 30 ms" in page
    assert "a job on 300 images" in page

    # One line measured again replaces only that line.
    command = [sys.executable, "-m", "benchmarks.scale", "--lines", "job",
               "--job-sizes", "100", "200", "--record", str(result)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=540, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = json.loads(result.read_text())["scale"]
    assert [run["images"] for run in again["job"]["runs"]] == [100, 200]
    assert again["plan"] == found["plan"] and again["listing"] == found["listing"]
