"""The API against its own OpenAPI document, with schemathesis and every check it has.

Two halves, split where a case stops or starts reaching a job:

- in process: the schema-invalid ("negative") bodies of the POST routes, every one the
  coverage phase derives from the schema (over a thousand per route), against the app with
  its real request model (tests/api/conftest.py). None of them may reach a job: each must
  be refused, in the documented shape.
- live: the schemathesis CLI against the running service's /openapi.json, `--checks all`:
  the coverage phase's schema-valid cases, the examples, fuzzing (valid and invalid) and
  the stateful phase, which POSTs jobs, reads and stops them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests.api.conftest import in_process_app

CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def contract_schema(tmp_path_factory):
    """The schema of the app in process, loaded when the test runs (not at collection: a run
    that deselects this module pays nothing for it)."""
    app = in_process_app(tmp_path_factory.mktemp("contract"))
    return schemathesis.openapi.from_asgi(
        "/openapi.json",
        app.app,
        config=SchemathesisConfig.from_dict(
            {
                "seed": 1,
                "headers": {"Authorization": f"Bearer {app.token}"},
                "phases": {
                    "examples": {"enabled": False},
                    "fuzzing": {"enabled": False},
                    "stateful": {"enabled": False},
                },
                "generation": {"mode": "negative"},
            }
        ),
    )


SCHEMA = schemathesis.pytest.from_fixture("contract_schema").include(method="POST")


@SCHEMA.parametrize()
def test_invalid_bodies_are_refused_as_documented(case):
    case.call_and_validate()


def test_openapi_contract_holds(service, tmp_path):
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(CONFIG),
        "--no-color",
        "run", f"{service.url}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {service.token}",
        "--max-examples", "5",
        "--seed", "1",
        "--workers", "1",
        "--request-timeout", "60",
        "--report", "ndjson", "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    result = subprocess.run(  # in tmp_path: schemathesis keeps a cache in its working directory
        command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # Not only refusals: some cases started a job, and the stateful phase followed one.
    answered = statuses(next((tmp_path / "report").glob("*.ndjson")))
    assert 202 in answered["POST /data_prep"], answered
    assert 200 in answered["GET /data_prep/{job_id}"], answered


def statuses(report: Path) -> dict[str, set[int]]:
    """Every status each operation answered in a schemathesis NDJSON report."""
    found: dict[str, set[int]] = {}
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        for case_id, interaction in recorder.get("interactions", {}).items():
            response = interaction.get("response")
            if response:
                case = recorder["cases"][case_id]["value"]
                label = f"{case['method']} {case['path']}"
                found.setdefault(label, set()).add(response["status_code"])
    return found
