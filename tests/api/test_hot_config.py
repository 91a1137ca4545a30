"""A config edit reaches the running service: new sources and operators, no redeploy."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import post_json, wait_for


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


def test_a_job_runs_with_the_config_it_was_accepted_with(service, api, tmp_path):
    """The config changes between POST and the job's driver starting: a source moved and
    a new output root. The job still reads and writes where it was accepted to, and its
    status is found there."""
    response = post_json(api, {"name": "MotoGP", "input_image_size": [160, 90]})
    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    accepted = api.get(f"/data_prep/{job['job_id']}").json()["output"]

    def move_everything(config: dict) -> None:
        config["sources"]["MotoGP"]["uri"] = str(tmp_path / "moved-away")
        config["output"]["uri"] = str(tmp_path / "new-outputs")

    with service.edited_config(move_everything):
        final = wait_for(api, job["job_id"])
    assert final["state"] == "SUCCEEDED", final["error"]
    assert final["output"] == accepted
    assert final["progress"]["images_done"] == final["progress"]["images_total"] > 0
    assert json.loads((Path(accepted) / "job.json").read_text())["state"] == "SUCCEEDED"
    assert not (tmp_path / "new-outputs").exists()
