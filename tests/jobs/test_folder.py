"""A job's folder as its life uses it, on a real local folder and on the in-memory storage:
inputs written once, runs numbered, a stop marked, log lines kept per run, the output root's
list of unended jobs, and none of it seen by a listing of the job's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.jobs.folder import AcceptedJobs, JobExistsError, JobFolder, find
from motoray.jobs.record import JobRecord, JobStatus, accept
from motoray.storage import LocalStorage, MemoryStorage
from tests.conftest import parse_one


def config_at(root: Path) -> Config:
    return Config(
        sources={"MotoGP": SourceConfig(uri="/data/MotoGP"), "soccer": SourceConfig(uri="/s")},
        output=OutputConfig(uri=str(root)),
    )


def accepted(config: Config, job_id: str, name: str = "MotoGP"):
    [inputs] = accept([parse_one({"name": name}, config)], config, job_id)
    return inputs


@pytest.fixture(params=["local", "memory"])
def storage(request, tmp_path):
    return LocalStorage(tmp_path / "job") if request.param == "local" else MemoryStorage()


def test_inputs_are_written_once_per_job_id(tmp_path):
    config = config_at(tmp_path)
    inputs = accepted(config, "j1")
    folder = JobFolder.of(inputs)
    folder.accept(inputs)
    folder.accept(inputs)  # a retried write of the same inputs is fine
    assert folder.inputs() == inputs
    other = inputs.model_copy(update={"request": {"name": "MotoGP", "seed": 7}})
    with pytest.raises(JobExistsError):
        folder.accept(other)  # an id used before is not a new job
    assert folder.inputs() == inputs


def test_runs_are_numbered_and_a_stop_is_kept(storage):
    folder = JobFolder(storage)
    assert folder.runs() == 0
    assert [folder.claim_run() for _ in range(3)] == [0, 1, 2]
    assert folder.runs() == 3
    assert not folder.stop_asked()
    folder.ask_stop()
    folder.ask_stop()  # idempotent
    assert folder.stop_asked()


def test_log_lines_of_every_run_in_order(storage):
    folder = JobFolder(storage)
    for run in range(2):
        assert folder.claim_run() == run
        log = folder.log(run)
        log({"message": f"run {run} started", "stage": "started"})
        log({"message": f"run {run} listed", "stage": "listed"})
    messages = [line["message"] for line in folder.log_lines()]
    assert messages == ["run 0 started", "run 0 listed", "run 1 started", "run 1 listed"]


def test_the_folders_bookkeeping_is_not_among_its_files(tmp_path):
    """The job's check of its own files, and users' listings, see outputs only (local
    folders and S3 list no hidden names)."""
    storage = LocalStorage(tmp_path)
    folder = JobFolder(storage)
    folder.claim_run()
    folder.ask_stop()
    folder.log(0)({"message": "x"})
    storage.write("train/a.jpg", b"jpeg")
    assert storage.list(("",)) == ["train/a.jpg"]


def test_job_json_is_committed_once(storage):
    folder = JobFolder(storage)
    assert folder.record() is None
    record = JobRecord(job_id="j", state=JobStatus.SUCCEEDED, request={}, output=storage.uri)
    folder.commit(record)
    folder.commit(record)  # a retried PUT that had landed: the same bytes
    assert folder.record() == record
    with pytest.raises(JobExistsError):
        folder.commit(record.model_copy(update={"state": JobStatus.FAILED}))


def test_the_roots_list_of_unended_jobs(tmp_path):
    config = config_at(tmp_path)
    index = AcceptedJobs.at(str(tmp_path))
    assert list(index.folders()) == []  # nothing accepted yet: no folder either
    first, second = accepted(config, "j1"), accepted(config, "j2", "soccer")
    index.add(first)
    index.add(second)
    assert sorted(index.folders()) == sorted([first.output, second.output])
    index.remove("j1")
    index.remove("j1")  # gone already: fine
    assert list(index.folders()) == [second.output]


def test_a_job_is_found_by_id_under_any_source(tmp_path):
    config = config_at(tmp_path)
    inputs = accepted(config, "j1", "soccer")
    JobFolder.of(inputs).accept(inputs)
    found = find(config, "j1")
    assert found is not None and found.uri == inputs.output
    assert json.loads(Path(inputs.output, ".motoray", "inputs.json").read_text())["job_id"] == "j1"
    assert find(config, "j2") is None
