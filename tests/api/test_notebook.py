"""examples/quickstart.ipynb, executed with nbclient against a real Ray and a real service.

The cluster and the service are the API tests' own (tests/api/conftest.py): a `ray start
--head` child with its own temp dir, ports and Ray token, and `motoray serve` on it. The
notebook's kernel gets what a user's shell would hold: the service's URL and token, the
config, the dashboard URL and the Ray token.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from tests.api.conftest import FRAMES, ray_job_ids
from tests.conftest import REPO

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
OUTPUTS_PER_FRAME = 4  # the seed request: one CROP + three RANDOM_CROP


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_notebook_runs_against_a_live_service(service) -> None:
    cluster = service.ray
    before = ray_job_ids(cluster)
    nb = run_notebook(
        MOTORAY_URL=service.url,
        MOTORAY_API_TOKEN=service.token,
        MOTORAY_CONFIG=str(service.config_path),
        RAY_DASHBOARD_URL=cluster.dashboard_url,
        **cluster.env,
    )
    text = "\n".join(cell_text(cell) for cell in nb.cells if cell.cell_type == "code")
    [http_id] = re.findall(r"^job (\S+)$", text, re.MULTILINE)  # as the notebook prints them
    [ray_id] = re.findall(r"^Ray Job +(quickstart-\S+):", text, re.MULTILINE)
    # The Ray Job the notebook submitted, nothing else: the HTTP job is the service's own.
    assert ray_job_ids(cluster) - before == {ray_id}
    outputs = service.config_path.parent / "outputs" / "MotoGP"
    http_job, ray_job = outputs / http_id, outputs / ray_id

    # Ray's and the service's own views of the two jobs.
    with service.client() as http:
        status = http.get(f"/data_prep/{http_id}").raise_for_status().json()
        assert status["state"] == "SUCCEEDED"
        assert status["output"] == str(http_job)
    ray_auth = {"Authorization": f"Bearer {cluster.env['RAY_AUTH_TOKEN']}"}
    with httpx.Client(headers=ray_auth, timeout=60) as http:
        info = http.get(f"{cluster.dashboard_url}/api/jobs/{ray_id}")
        assert info.raise_for_status().json()["status"] == "SUCCEEDED"
    for job in (http_job, ray_job):
        record = json.loads((job / "job.json").read_text())
        assert record["state"] == "SUCCEEDED"
        assert record["counts"]["images_failed"] == 0

    # Same request and seed: the same files, byte for byte.
    http_files = output_files(http_job)
    assert len(http_files) == FRAMES * OUTPUTS_PER_FRAME
    assert http_files == output_files(ray_job)

    # What the reader sees: progress, images inline, both states, the comparison.
    assert f"SUCCEEDED {FRAMES}/{FRAMES} images" in text
    assert "SUCCEEDED\n" in text  # the Ray Job's last state line
    assert f"job {ray_id}: SUCCEEDED" in text  # `motoray run`'s summary in its logs
    assert "byte-identical" in text
    images = displayed_images(nb)
    assert {"image/png", "image/jpeg"} <= {kind for kind, _ in images}
    png = next(Image.open(io.BytesIO(data)) for kind, data in images if kind == "image/png")
    # The contact sheet: three frames, each a 270x270 crop and three 80x80 crops.
    assert png.width > 270 + 3 * 80 and png.height > 3 * 270


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
