"""A config edit reaches the running service: new sources and operators, no redeploy; and
never a job it has accepted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.api.conftest import FRAMES, post_json, wait_for


def test_a_new_source_is_served_without_redeploy(service, api, tmp_path):
    from motoray.sample_data import write_sample_frames

    write_sample_frames(tmp_path / "soccer", 3, (320, 180), seed=7)
    assert post_json(api, {"name": "soccer"}).status_code == 422

    def add_soccer(config: dict) -> None:
        config["sources"]["soccer"] = {"uri": str(tmp_path / "soccer"), "description": "new"}

    with service.edited_config(add_soccer):
        names = [s["name"] for s in api.get("/data_sources").json()["sources"]]
        assert names == ["MotoGP", "soccer"]
        response = post_json(api, {"name": "soccer", "input_image_size": [160, 90]})
        assert response.status_code == 202, response.text
        [job] = response.json()["jobs"]
        final = wait_for(api, job["job_id"])
        assert final["state"] == "SUCCEEDED", final["error"]
        assert final["source"] == "soccer"
        assert final["progress"]["images_done"] == 3
    names = [s["name"] for s in api.get("/data_sources").json()["sources"]]
    assert names == ["MotoGP"]


def test_operators_follow_the_config(app, app_api):
    """In process: what the request model and the catalog make of the config file."""
    request = {"name": "MotoGP", "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [8, 8]}}]}

    def disable_random_crop(config: dict) -> None:
        config.setdefault("operators", {})["disabled"] = ["RANDOM_CROP"]

    with app.edited_config(disable_random_crop):
        operators = [op["name"] for op in app_api.get("/operators").json()["operators"]]
        assert "RANDOM_CROP" not in operators and "CROP" in operators
        response = post_json(app_api, request)
        assert response.status_code == 422
        assert "unknown operator 'RANDOM_CROP'" in response.json()["errors"][0]["msg"]
        schema = app_api.get("/openapi.json").json()["components"]["schemas"]["Augmentation"]
        assert "RANDOM_CROP" not in schema["properties"]
    # enabled again by the edit being undone
    assert "RANDOM_CROP" in [op["name"] for op in app_api.get("/operators").json()["operators"]]
    schema = app_api.get("/openapi.json").json()["components"]["schemas"]["Augmentation"]
    assert "RANDOM_CROP" in schema["properties"]


def test_a_broken_config_keeps_the_last_good_one(app, app_api):
    original = app.config_path.read_text()
    app.config_path.write_text("sources: [this is: not valid")
    try:
        assert [s["name"] for s in app_api.get("/data_sources").json()["sources"]] == ["MotoGP"]
        assert app_api.get("/operators").status_code == 200
    finally:
        app.config_path.write_text(original)


def _unseen(path: Path, text: str) -> None:
    """Replace the config file by `text`, keeping the file's size and modification time:
    the API's ConfigFile, which reloads when either changes, keeps the config it has, while
    the file says what a driver re-reading it would find. That is an edit landing between
    a POST's validation and its driver's start, made certain instead of raced for (the warm
    runner starts a job before the 202, so an edit after the 202 proves nothing)."""
    before = path.stat()
    data = text.encode()
    assert len(data) < before.st_size, "no room: pad the file first"
    data += b"#" * (before.st_size - len(data) - 1) + b"\n"  # a YAML comment
    new = path.with_name(".unseen-" + path.name)
    new.write_bytes(data)
    os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(new, path)  # at once: no reader sees a mix


@pytest.mark.parametrize("edit", ["half-written", "moved and FLIP disabled"])
def test_a_job_runs_with_the_config_it_was_accepted_with(service, api, tmp_path, edit):
    """The file changes after the API validated a request against it: half written (it does
    not load), or valid but with the source moved, a new output root and the requested
    operator disabled. The job runs with the config it was accepted with: it reads the
    source, makes its FLIPs and writes them where its status says, under the old root."""
    original = service.config_path.read_text()
    config = yaml.safe_load(original)
    outputs = Path(config["output"]["uri"])
    if edit == "half-written":
        text = "sources: {MotoGP: {uri: "
    else:
        config["sources"]["MotoGP"]["uri"] = str(tmp_path / "moved-away")
        config["sources"]["elsewhere"] = {"uri": str(tmp_path)}
        config["output"]["uri"] = str(tmp_path / "new-outputs")
        config["operators"] = {"disabled": ["FLIP"]}
        text = yaml.safe_dump(config)
    body = {"name": "MotoGP", "input_image_size": [160, 90], "augmentations": [{"FLIP": {}}]}
    try:
        service.config_path.write_text(original + "#" + " " * 2000 + "\n")  # room for it
        assert api.get("/data_sources").status_code == 200  # the API has this one now
        _unseen(service.config_path, text)
        names = [s["name"] for s in api.get("/data_sources").json()["sources"]]
        assert names == ["MotoGP"], "the API saw the edit: the test proves nothing"
        response = post_json(api, body)
        assert response.status_code == 202, response.text
        [job] = response.json()["jobs"]
        final = wait_for(api, job["job_id"])
    finally:
        service.config_path.write_text(original)
    assert final["state"] == "SUCCEEDED", final["error"]
    job_dir = Path(final["output"])
    assert job_dir.is_relative_to(outputs)
    assert json.loads((job_dir / "job.json").read_text())["state"] == "SUCCEEDED"
    rows = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert {row["operator"] for row in rows} == {"FLIP"} and len(rows) == FRAMES
    assert not (tmp_path / "new-outputs").exists()
