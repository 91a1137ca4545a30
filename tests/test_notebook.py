"""examples/quickstart.ipynb, executed with nbclient against a real Ray and a real service.

The cluster is a `ray start --head` child with its own temp dir, ports and Ray token
(motoray.server.start_local_ray), so Ray Jobs work next to any in-process Ray of other
tests. The notebook's kernel gets what a user's shell would hold: the service's URL and
token, the config, the dashboard URL and the Ray token.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from motoray.sample_data import write_sample_frames
from tests.api.conftest import own_ray, start_service, stop_service, write_config

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
FRAMES = 8
FRAME_SIZE = (320, 180)
OUTPUTS_PER_FRAME = 4  # the seed request: one CROP + three RANDOM_CROP


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.fixture
def ray_cluster():
    with own_ray() as local:
        yield local


@pytest.mark.timeout(900)
def test_quickstart_notebook_runs_against_a_live_service(tmp_path: Path, ray_cluster) -> None:
    write_sample_frames(tmp_path / "MotoGP", FRAMES, FRAME_SIZE)
    config_path = write_config(tmp_path / "motoray.yaml", {"MotoGP": tmp_path / "MotoGP"})
    token = secrets.token_urlsafe(24)
    process, url, log_path = start_service(
        config_path, token, ray_cluster.env, "--address", ray_cluster.address
    )
    try:
        nb = run_notebook(
            MOTORAY_URL=url,
            MOTORAY_API_TOKEN=token,
            MOTORAY_CONFIG=str(config_path),
            RAY_DASHBOARD_URL=ray_cluster.dashboard_url,
            **ray_cluster.env,
        )
        jobs = sorted((tmp_path / "outputs" / "MotoGP").iterdir())
        assert len(jobs) == 2, jobs  # the HTTP job and the Ray Job, nothing else
        (ray_job,) = [job for job in jobs if job.name.startswith("quickstart-")]
        (http_job,) = [job for job in jobs if job != ray_job]

        # Ray's and the service's own views of the two jobs.
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            status = http.get(f"{url}/data_prep/{http_job.name}").raise_for_status().json()
            assert status["state"] == "SUCCEEDED"
            assert status["output"] == str(http_job)
        ray_auth = {"Authorization": f"Bearer {ray_cluster.env['RAY_AUTH_TOKEN']}"}
        with httpx.Client(headers=ray_auth, timeout=60) as http:
            info = http.get(f"{ray_cluster.dashboard_url}/api/jobs/{ray_job.name}")
            assert info.raise_for_status().json()["status"] == "SUCCEEDED"
        for job in jobs:
            record = json.loads((job / "job.json").read_text())
            assert record["state"] == "SUCCEEDED"
            assert record["counts"]["images_failed"] == 0

        # Same request and seed: the same files, byte for byte.
        http_files = output_files(http_job)
        assert len(http_files) == FRAMES * OUTPUTS_PER_FRAME
        assert http_files == output_files(ray_job)

        # What the reader sees: progress, images inline, both states, the comparison.
        text = "\n".join(cell_text(cell) for cell in nb.cells if cell.cell_type == "code")
        assert f"SUCCEEDED {FRAMES}/{FRAMES} images" in text
        assert "SUCCEEDED\n" in text  # the Ray Job's last state line
        assert f"job {ray_job.name}: SUCCEEDED" in text  # `motoray run`'s summary in its logs
        assert "byte-identical" in text
        images = displayed_images(nb)
        assert {"image/png", "image/jpeg"} <= {kind for kind, _ in images}
        png = next(Image.open(io.BytesIO(data)) for kind, data in images if kind == "image/png")
        # The contact sheet: three frames, each a 270x270 crop and three 80x80 crops.
        assert png.width > 270 + 3 * 80 and png.height > 3 * 270
    finally:
        assert stop_service(process) == 0, log_path.read_text()


def run_notebook(**env: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    kernel_env = {**os.environ, **env}
    kernel_env.pop("RAY_ADDRESS", None)
    client = NotebookClient(
        nb,
        timeout=300,  # per cell: the jobs run on a possibly loaded machine
        startup_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # where Jupyter would run it
    )
    client.execute(env=kernel_env)
    return nb


def output_files(job: Path) -> dict[str, bytes]:
    """Every image of a job folder by relative path (job.json and the manifest aside)."""
    return {
        str(path.relative_to(job)): path.read_bytes()
        for path in job.rglob("*.jpg")
        if path.is_file()
    }


def cell_text(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "text/plain" in output.get("data", {}):
            parts.append(output.data["text/plain"])
    return "".join(parts)


def displayed_images(nb) -> list[tuple[str, bytes]]:
    return [
        (kind, base64.b64decode(output.data[kind]))
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        for kind in ("image/png", "image/jpeg")
        if kind in output.get("data", {})
    ]
