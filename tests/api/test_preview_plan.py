"""POST /data_prep/preview and /data_prep/plan: on the running service (both run as Ray
tasks); the requests they refuse before that, on the app in process."""

from __future__ import annotations

import io
import json

from PIL import Image

from tests.api.conftest import FRAMES
from tests.conftest import EXAMPLES

SEED = json.loads((EXAMPLES / "seed_sample.json").read_text())
JSON = {"Content-Type": "application/json"}


def test_preview_is_a_png_contact_sheet(api):
    response = api.post("/data_prep/preview?count=2", content=json.dumps(SEED[0]), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    sheet = Image.open(io.BytesIO(response.content))
    assert sheet.format == "PNG" and sheet.width >= 480 and sheet.height >= 2 * 270


def test_plan_counts_the_seed_request_without_running_it(api):
    response = api.post("/data_prep/plan", content=json.dumps(SEED), headers=JSON)
    assert response.status_code == 200, response.text
    [plan] = response.json()
    assert plan["counts"]["images_total"] == FRAMES
    assert plan["counts"]["outputs"] == 4 * FRAMES


def test_preview_and_plan_reject_bad_requests_with_the_field(app_api):
    bad = {**SEED[0], "input_image_size": [0, 270]}
    for path in ("/data_prep/preview", "/data_prep/plan"):
        response = app_api.post(path, content=json.dumps(bad), headers=JSON)
        assert response.status_code == 422
        assert "input_image_size" in response.text
    assert app_api.post("/data_prep/plan", content=b"{", headers=JSON).status_code == 400


def test_preview_and_plan_refuse_what_the_source_cannot_do_with_the_field(app_api):
    """The source of the app's config is of images, without labels."""
    split = {"train_ratio": 80, "test_ratio": 20, "group_by": "segment:30", "stratify": True}
    bad = {**SEED[0], "train_test_split": split}
    for path in ("/data_prep/preview", "/data_prep/plan"):
        response = app_api.post(path, content=json.dumps(bad), headers=JSON)
        assert response.status_code == 422, response.text
        locs = [error["loc"] for error in response.json()["errors"]]
        assert locs == [["train_test_split", "group_by"], ["train_test_split", "stratify"]]


def test_preview_and_plan_take_one_request_as_the_cli_does(app_api):
    for path in ("/data_prep/preview", "/data_prep/plan"):
        response = app_api.post(path, content=json.dumps(SEED * 2), headers=JSON)
        assert response.status_code == 422
        assert response.json()["errors"] == [{"loc": [], "msg": "takes one request, got 2"}]
