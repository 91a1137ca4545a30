"""A job's inputs: what the service accepted is what the driver runs, and nothing secret."""

from __future__ import annotations

import json
import shlex

import pytest

from motoray import jobs
from motoray.config import Config, ServerConfig, SourceConfig
from motoray.jobs import RequestTooLarge, accept, entrypoint, job_ids
from motoray.pipeline.job import parse_request
from motoray.priority import BATCH_NICENESS
from motoray.record import JobInputs
from tests.conftest import EXAMPLES, parse_one

CONFIG = Config(
    sources={"MotoGP": SourceConfig(uri="/data/MotoGP")},
    server=ServerConfig(auth_token="secret-token"),
)


@pytest.mark.parametrize("example", ["seed_sample.json", "augment_only.json"])
def test_the_driver_runs_the_request_that_was_validated(example):
    request = parse_one(json.loads((EXAMPLES / example).read_text())[0], CONFIG)
    [inputs] = accept([request], CONFIG, "job-1")
    travelled = JobInputs.model_validate_json(inputs.model_dump_json())  # as in Ray's metadata
    assert parse_request(travelled) == request
    assert travelled.output.endswith("/MotoGP/job-1")
    assert travelled.config.sources == CONFIG.sources


def test_the_config_snapshot_holds_no_token():
    [inputs] = accept([parse_one({"name": "MotoGP"}, CONFIG)], CONFIG, "job-1")
    assert "secret-token" not in inputs.model_dump_json()


def test_the_entrypoint_is_a_job_id_not_a_request():
    command = shlex.split(entrypoint("20261129-000000-abcdef", "10.0.0.1:6379"))
    assert command[:3] == ["nice", "-n", str(BATCH_NICENESS)]  # it only waits
    command = command[3:]
    assert command[0].endswith("motoray")
    assert command[1:] == ["run-job", "20261129-000000-abcdef", "--address", "10.0.0.1:6379"]


def test_inputs_too_large_for_the_metadata_are_refused(monkeypatch):
    [inputs] = accept([parse_one({"name": "MotoGP"}, CONFIG)], CONFIG, "job-1")
    monkeypatch.setattr(jobs, "MAX_INPUTS_BYTES", 100)
    with pytest.raises(RequestTooLarge, match="limit is 100"):
        jobs.JobService._metadata(inputs)


def test_job_ids_of_a_list_body():
    assert job_ids(1, "base") == ["base"]
    assert job_ids(3, "base") == ["base-0", "base-1", "base-2"]
