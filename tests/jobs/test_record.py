"""A job's inputs: what the service accepted is what the driver runs, and nothing secret."""

from __future__ import annotations

import json

import pydantic
import pytest

from motoray.config import Config, ServerConfig, SourceConfig
from motoray.jobs.record import JobInputs, JobRecord, JobStatus, accept, job_ids
from motoray.pipeline.job import parse_request
from tests.conftest import EXAMPLES, parse_one

CONFIG = Config(
    sources={"MotoGP": SourceConfig(uri="/data/MotoGP")},
    server=ServerConfig(auth_token="secret-token"),
)


@pytest.mark.parametrize("example", ["seed_sample.json", "augment_only.json"])
def test_the_driver_runs_the_request_that_was_validated(example):
    request = parse_one(json.loads((EXAMPLES / example).read_text())[0], CONFIG)
    [inputs] = accept([request], CONFIG, "job-1")
    stored = JobInputs.model_validate_json(inputs.model_dump_json())  # as in inputs.json
    assert stored == inputs
    assert parse_request(stored) == request
    assert stored.output.endswith("/MotoGP/job-1")
    assert stored.config.sources == CONFIG.sources
    assert stored.source == "MotoGP"


def test_the_config_snapshot_holds_no_token():
    [inputs] = accept([parse_one({"name": "MotoGP"}, CONFIG)], CONFIG, "job-1")
    assert "secret-token" not in inputs.model_dump_json()


def test_accepted_inputs_are_frozen():
    [inputs] = accept([parse_one({"name": "MotoGP"}, CONFIG)], CONFIG, "job-1")
    with pytest.raises(pydantic.ValidationError):
        inputs.output = "/elsewhere"  # type: ignore[misc]


def test_a_body_is_accepted_at_one_time():
    """Its jobs' time limits count from the same moment."""
    request = parse_one({"name": "MotoGP"}, CONFIG)
    inputs = accept([request, request, request], CONFIG, "base")
    assert [i.job_id for i in inputs] == ["base-0", "base-1", "base-2"]
    assert len({i.accepted_at for i in inputs}) == 1


def test_job_ids_of_a_list_body():
    assert job_ids(1, "base") == ["base"]
    assert job_ids(3, "base") == ["base-0", "base-1", "base-2"]


def test_terminal_states():
    assert [s for s in JobStatus if s.is_terminal()] == ["SUCCEEDED", "FAILED", "STOPPED"]


def test_job_json_says_how_many_times_it_was_resumed():
    record = JobRecord(job_id="j", state=JobStatus.SUCCEEDED, request={}, output="/o", resumed=2)
    data = json.loads(record.to_json())
    assert data["state"] == "SUCCEEDED" and data["resumed"] == 2
    assert "resumed:  2 time(s)" in "\n".join(record.summary_lines())
