"""The job entrypoint: the request it carries is the request that was validated."""

from __future__ import annotations

import json
import shlex

import pytest

from motoray import jobs
from motoray.jobs import RequestTooLarge, entrypoint, job_ids
from motoray.ops import enabled
from motoray.spec import parse_requests
from tests.conftest import EXAMPLES


@pytest.mark.parametrize("example", ["seed_sample.json", "augment_only.json"])
def test_the_entrypoint_carries_the_same_request(example):
    [request] = parse_requests(json.loads((EXAMPLES / example).read_text()), enabled(), ["MotoGP"])
    command = entrypoint(request, "/etc/motoray.yaml", "job-1", "10.0.0.1:6379")
    printf, run = command.split(" | ")
    carried = shlex.split(printf)[2]
    [again] = parse_requests(json.loads(carried), enabled(), ["MotoGP"])
    assert again == request
    assert shlex.split(run)[1:] == [
        "run", "/dev/stdin", "--config", "/etc/motoray.yaml",
        "--job-id", "job-1", "--address", "10.0.0.1:6379", "--quiet",
    ]  # fmt: skip
    assert shlex.split(run)[0].endswith("motoray")


def test_a_request_too_large_for_a_command_line_is_refused(monkeypatch):
    [request] = parse_requests(json.loads((EXAMPLES / "seed_sample.json").read_text()), enabled())
    monkeypatch.setattr(jobs, "MAX_REQUEST_BYTES", 100)
    with pytest.raises(RequestTooLarge, match="limit is 100"):
        entrypoint(request, "/c.yaml", "j", "a:1")


def test_job_ids_follow_motoray_run():
    assert job_ids(1, "base") == ["base"]
    assert job_ids(3, "base") == ["base-0", "base-1", "base-2"]
