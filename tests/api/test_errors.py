"""Bad requests: each one a clear 4xx that names its field, never a 5xx.

None of them reaches a job, so they run against the app in process (tests/api/conftest.py),
with its real request model, error handlers and config."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import post_json
from tests.conftest import EXAMPLES
from tests.test_spec import _with as seed_with

SEED = json.loads((EXAMPLES / "seed_sample.json").read_text())[0]
JSON = "application/json"
AUG = ("augmentations", 0)


def _with(path: tuple, value=None, delete=False) -> bytes:
    """The seed request with one field changed, as the original clients send it (a list)."""
    return json.dumps([seed_with(path, value, delete)]).encode()


def _raw(text: str) -> bytes:
    return text.encode()


BIG = "A" * 100_000
CASES = [
    # (id, body, content type, status, error location ("" = body, None = any), word in message)
    ("empty-body", b"", JSON, 400, "", "empty body"),
    ("whitespace-body", b"  \n ", JSON, 400, "", "empty body"),
    ("seed-text-verbatim", (EXAMPLES / "seed_sample_verbatim.txt").read_bytes(), JSON, 400, "",
     "line 1 column"),
    ("truncated-json", _raw('[{"name": "MotoGP"'), JSON, 400, "", "line 1 column"),
    ("not-utf8", b'[{"name": "\xff\xfe"}]', JSON, 400, "", "UTF-8"),
    ("nested-too-deep", b"[" * 100_000, JSON, 400, "", "nested"),
    ("integer-5000-digits", _raw('[{"name": "MotoGP", "seed": ' + "9" * 5000 + "}]"), JSON,
     400, "", "digits"),
    ("text-plain", json.dumps([SEED]).encode(), "text/plain", 415, None, "application/json"),
    ("form-encoded", b"name=MotoGP", "application/x-www-form-urlencoded", 415, None, "json"),
    ("no-content-type", json.dumps([SEED]).encode(), None, 415, None, "application/json"),
    ("body-over-1mib", _raw(json.dumps([{"name": "MotoGP", "x": "A" * 1_100_000}])), JSON,
     413, None, "larger"),
    ("json-number", b"42", JSON, 422, "", ""),
    ("json-string", b'"MotoGP"', JSON, 422, "", ""),
    ("json-null", b"null", JSON, 422, "", ""),
    ("empty-list", b"[]", JSON, 422, "", "empty list"),
    ("empty-object", b"{}", JSON, 422, "name", "required"),
    ("too-many-requests", json.dumps([SEED] * 101).encode(), JSON, 422, "", "at most"),
    ("name-missing", _with(("name",), delete=True), JSON, 422, "0.name", "required"),
    ("name-not-string", _with(("name",), 123), JSON, 422, "0.name", "string"),
    ("name-path-traversal", _with(("name",), "../../etc"), JSON, 422, "0.name", "pattern"),
    ("unknown-source", _with(("name",), "soccer"), JSON, 422, "0.name", "registered: MotoGP"),
    ("size-one-value", _with(("input_image_size",), [480]), JSON, 422,
     "0.input_image_size.1", "required"),
    ("size-negative", _with(("input_image_size",), [-1, 270]), JSON, 422,
     "0.input_image_size.0", "greater"),
    ("size-huge", _with(("input_image_size",), [10**12, 10**12]), JSON, 422,
     "0.input_image_size.0", "less"),
    ("size-strings", _with(("input_image_size",), ["480", "270"]), JSON, 422,
     "0.input_image_size.0", "integer"),
    ("augmentations-not-list", _with(("augmentations",), "CROP"), JSON, 422,
     "0.augmentations", "list"),
    ("unknown-operator", _with(AUG, {"BLUR": {"radius": 2}}), JSON, 422, "0.augmentations.0",
     "available: "),
    ("empty-augmentation", _with(AUG, {}), JSON, 422, "0.augmentations.0", "empty"),
    ("crop-unknown-position", _with((*AUG, "CROP", "crop_type"), "middle"), JSON, 422,
     "0.augmentations.0.CROP.crop_type", "top_left"),
    ("crop-dims-missing", _with((*AUG, "CROP", "crop_dimensions"), delete=True), JSON, 422,
     "0.augmentations.0.CROP.crop_dimensions", "required"),
    ("crop-larger-than-size", _with((*AUG, "CROP", "crop_dimensions"), [[300, 270]]), JSON,
     422, "0.augmentations.0.CROP", "at least 300x270"),
    ("crop-extra-field", _with((*AUG, "CROP", "padding"), 4), JSON, 422,
     "0.augmentations.0.CROP.padding", "extra"),
    ("random-count-zero", _with((*AUG, "RANDOM_CROP", "target_count"), 0), JSON, 422,
     "0.augmentations.0.RANDOM_CROP.target_count", "greater"),
    ("random-count-huge", _with((*AUG, "RANDOM_CROP", "target_count"), 10**18), JSON, 422,
     "0.augmentations.0.RANDOM_CROP.target_count", "less"),
    ("random-count-float", _with((*AUG, "RANDOM_CROP", "target_count"), 2.5), JSON, 422,
     "0.augmentations.0.RANDOM_CROP.target_count", "integer"),
    ("split-not-summing", _with(("train_test_split", "test_ratio"), 30), JSON, 422,
     "0.train_test_split", "sum to 100"),
    ("split-negative", _with(("train_test_split", "train_ratio"), -20), JSON, 422,
     "0.train_test_split.train_ratio", "greater"),
    ("split-group-by-video-on-images", _with(("train_test_split", "group_by"), "video"), JSON,
     422, "0.train_test_split.group_by", "for video sources"),
    ("split-segments-on-images", _with(("train_test_split", "group_by"), "segment:30"), JSON,
     422, "0.train_test_split.group_by", "for video sources"),
    ("split-stratify-without-labels", _with(("train_test_split", "stratify"), True), JSON, 422,
     "0.train_test_split.stratify", "needs a labelled source"),
    ("split-nan", _raw(json.dumps([SEED]).replace('"test_ratio": 20', '"test_ratio": NaN')),
     JSON, 422, "0.train_test_split.test_ratio", "finite"),
    ("seed-negative", _with(("seed",), -1), JSON, 422, "0.seed", "greater"),
    ("seed-over-64-bits", _with(("seed",), 2**64), JSON, 422, "0.seed", "less"),
    ("quality-out-of-range", _with(("output",), {"quality": 0}), JSON, 422, "0.output.quality",
     "greater"),
    ("include-original-not-bool", _with(("include_original",), "maybe"), JSON, 422,
     "0.include_original", "boolean"),
    ("boxes-visibility-over-1", _with(("boxes",), {"min_visibility": 1.5}), JSON, 422,
     "0.boxes.min_visibility", "less than or equal to 1"),
    ("boxes-without-annotations", _with(("boxes",), {}), JSON, 422, "0.boxes",
     "source with annotations"),
    ("extra-top-level-field", _with(("priority",), "high"), JSON, 422, "0.priority", "extra"),
    ("huge-name-not-echoed", _with(("name",), BIG), JSON, 422, "0.name", "pattern"),
    ("huge-operator-name-not-echoed", _with(AUG, {BIG: {}}), JSON, 422, "0.augmentations.0",
     "unknown operator"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "status", "loc", "word"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_request_is_a_clear_4xx(app_api, body, content_type, status, loc, word):
    headers = {"Content-Type": content_type} if content_type else {}  # httpx adds none
    response = app_api.post("/data_prep", content=body, headers=headers)
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert len(response.content) < 20_000  # never the input echoed back
    assert BIG[:400] not in response.text  # messages are clipped
    messages = [e["msg"] for e in error["errors"]] + [error["error"]]
    if loc is not None:
        locs = [".".join(map(str, e["loc"])) for e in error["errors"]]
        assert loc in locs, error
        messages = [e["msg"] for e in error["errors"] if ".".join(map(str, e["loc"])) == loc]
    assert any(word.lower() in m.lower() for m in messages), error


def test_the_table_keeps_up_with_the_api(app_api):
    """What a maintainer checks when the request grows: every field of the request has a
    case, and the table causes exactly the client errors POST /data_prep documents (but 401,
    test_auth.py, and 429, which needs pending jobs: test_data_prep.py)."""
    schema = app_api.get("/openapi.json").json()
    fields = set(schema["components"]["schemas"]["DataPrepRequest"]["properties"])
    tried = {loc.split(".")[1] for *_, loc, _ in CASES if loc and loc.startswith("0.")}
    assert fields - tried == set(), "fields without a bad-request case"
    documented = schema["paths"]["/data_prep"]["post"]["responses"]
    client_errors = {int(status) for status in documented if status.startswith("4")}
    assert {status for *_, status, _, _ in CASES} == client_errors - {401, 429}


def test_every_error_of_every_request_is_reported(app_api):
    body = json.loads(_with(("seed",), -1)) + json.loads(_with(("name",), 7))
    body[0]["output"] = {"quality": 500}
    response = app_api.post("/data_prep", content=json.dumps(body), headers={"Content-Type": JSON})
    assert response.status_code == 422
    locs = {".".join(map(str, e["loc"])) for e in response.json()["errors"]}
    assert locs == {"0.seed", "0.output.quality", "1.name"}


def test_a_config_that_refuses_the_request_is_a_422_at_post(app, app_api):
    """What depends on the config (its limits, its source's kind and labels) is refused
    with the request, not accepted and then FAILED."""

    def one_output_per_job(config: dict) -> None:
        config["limits"] = {"max_outputs_per_job": 1}

    with app.edited_config(one_output_per_job):
        response = post_json(app_api, [SEED])
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "loc": [0, "augmentations"],
            "msg": "makes 4 outputs per image; at most 1 per job (limits.max_outputs_per_job)",
        }
    ]


def test_many_errors_are_capped(app, app_api):
    def hundred_pending(config: dict) -> None:  # or the body's length is the one error
        config["server"]["max_pending_jobs"] = 100

    body = [{"name": 1, "seed": -1, "x": 0}] * 100  # 300 errors
    with app.edited_config(hundred_pending):
        response = post_json(app_api, body)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert len(errors) == 101 and errors[-1]["msg"] == "... and 200 more errors"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/data_prep", 405),
        ("GET", "/data_prep", 405),
        ("PATCH", "/data_prep/x", 405),
        ("POST", "/data_sources", 405),
        ("GET", "/no_such_route", 404),
        ("POST", "/data_prep/x", 405),
    ],
)
def test_unknown_routes_and_methods(app_api, method, path, status):
    response = app_api.request(method, path)
    assert response.status_code == status
    assert "error" in response.json()


def test_only_ray_itself_being_down_is_a_503():
    """A task that ran and raised (an annotation file's OverflowError, say) is not "Ray
    unreachable; retry later": retrying changes nothing. A hostile audit got that 503."""
    from ray.exceptions import GetTimeoutError, RayTaskError

    from motoray.api.errors import _ray_unreachable

    task_error = RayTaskError(
        "plan", "traceback", OverflowError("int too large")
    ).as_instanceof_cause()
    assert not _ray_unreachable(task_error)
    assert _ray_unreachable(GetTimeoutError("no answer"))
    assert _ray_unreachable(ConnectionError("GCS unreachable"))
