"""Job metrics on Ray's Prometheus endpoint, scraped over HTTP after a real job.

The session's Ray exports metrics on its node's metrics port; the job's source has a name
of its own, so other tests' jobs do not add to the series read here.
"""

from __future__ import annotations

import contextlib
import urllib.request
import uuid

import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from motoray.waiting import wait_until
from tests.conftest import copy_frames, run_job

WAIT_S = 60  # ray_local exports every second (tests/conftest.py); Ray's default is 10 s


def _scrape(port: int, source: str) -> dict[str, float]:
    """Every motoray sample tagged with `source`, summed over workers: name -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ray_motoray_") and sample.labels.get("source") == source:
                name = sample.name
                if "state" in sample.labels:
                    name += f"[{sample.labels['state']}]"
                values[name] = values.get(name, 0) + sample.value
    return values


@pytest.mark.usefixtures("ray_local")
def test_counters_and_duration_on_the_prometheus_endpoint(frames, make_config, tmp_path):
    import ray

    source = f"metrics-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / source
    *_, last = copy_frames(frames, folder, 5)
    (folder / "truncated.jpg").write_bytes(last.read_bytes()[:500])
    config = make_config(**{source: folder})
    body = {
        "name": source,
        "input_image_size": [64, 36],
        "augmentations": [{"FLIP": {}, "GRAYSCALE": {}}],
    }
    record = run_job(body, config, "metered")
    manifest = pq.read_table(f"{record['output']}/manifest.parquet")
    expected = {
        "ray_motoray_images_processed_total": 6,
        "ray_motoray_images_failed_total": 1,
        "ray_motoray_outputs_written_total": 10,
        "ray_motoray_bytes_written_total": sum(manifest["bytes"].to_pylist()),
        "ray_motoray_job_duration_seconds_count[SUCCEEDED]": 1,
    }

    [port] = {node["MetricsExportPort"] for node in ray.nodes() if node["Alive"]}
    found: dict[str, float] = {}

    def exported() -> bool:
        found.update(_scrape(port, source))
        return all(found.get(name) == value for name, value in expected.items())

    with contextlib.suppress(TimeoutError):  # the assert below shows what was missing
        wait_until(exported, WAIT_S, interval=0.5, what="the job's metrics")
    assert {name: found.get(name) for name in expected} == expected
    assert found["ray_motoray_job_duration_seconds_bucket[SUCCEEDED]"] > 0  # le="+Inf" and others
