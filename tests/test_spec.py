"""Request validation: the original request is accepted, bad ones name their field."""

from __future__ import annotations

import copy

import pytest

from motoray.config import OperatorsConfig
from motoray.ops import operators_for
from motoray.spec import RequestError, parse_json, parse_requests, request_model
from tests.conftest import EXAMPLES

OPS = operators_for()
SOURCES = ["MotoGP", "soccer"]
SEED = parse_json((EXAMPLES / "seed_sample.json").read_bytes())[0]


def _with(path: tuple, value=None, delete=False) -> dict:
    request = copy.deepcopy(SEED)
    target = request
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return request


AUG = ("augmentations", 0)
INVALID = [
    # (id, request, expected error location, a word the message must contain)
    ("missing-name", _with(("name",), delete=True), "name", "required"),
    ("name-not-string", _with(("name",), 42), "name", "string"),
    ("name-empty", _with(("name",), ""), "name", "pattern"),
    ("name-path-traversal", _with(("name",), "../etc"), "name", "pattern"),
    ("unknown-source", _with(("name",), "tennis"), "name", "MotoGP"),
    ("size-one-value", _with(("input_image_size",), [480]), "input_image_size.1", "required"),
    ("size-three-values", _with(("input_image_size",), [1, 2, 3]), "input_image_size", "2 items"),
    ("size-zero", _with(("input_image_size",), [0, 270]), "input_image_size.0", "greater"),
    ("size-negative", _with(("input_image_size",), [480, -1]), "input_image_size.1", "greater"),
    ("size-huge", _with(("input_image_size",), [10**6, 270]), "input_image_size.0", "less"),
    ("size-string", _with(("input_image_size",), ["480", 270]), "input_image_size.0", "integer"),
    ("size-float", _with(("input_image_size",), [480.5, 270]), "input_image_size.0", "integer"),
    ("size-bool", _with(("input_image_size",), [True, 270]), "input_image_size.0", "integer"),
    ("augmentations-not-list", _with(("augmentations",), {"CROP": {}}), "augmentations", "list"),
    ("unknown-operator", _with(AUG, {"BLUR": {}}), "augmentations.0", "unknown operator"),
    ("empty-augmentation", _with(AUG, {}), "augmentations.0", "empty augmentation"),
    (
        "crop-bad-position",
        _with((*AUG, "CROP", "crop_type"), "middle"),
        "augmentations.0.CROP.crop_type",
        "top_left",
    ),
    (
        "crop-dims-missing",
        _with((*AUG, "CROP", "crop_dimensions"), delete=True),
        "augmentations.0.CROP.crop_dimensions",
        "required",
    ),
    (
        "crop-dims-empty",
        _with((*AUG, "CROP", "crop_dimensions"), []),
        "augmentations.0.CROP.crop_dimensions",
        "at least 1",
    ),
    (
        "crop-dims-zero",
        _with((*AUG, "CROP", "crop_dimensions"), [[0, 10]]),
        "augmentations.0.CROP.crop_dimensions.0.0",
        "greater",
    ),
    (
        "crop-extra-field",
        _with((*AUG, "CROP", "crop_typ"), "center"),
        "augmentations.0.CROP.crop_typ",
        "Extra",
    ),
    (
        "crop-larger-than-size",
        _with((*AUG, "CROP", "crop_dimensions"), [[300, 270]]),
        "augmentations.0.CROP",
        "at least 300x270",
    ),
    (
        "random-count-zero",
        _with((*AUG, "RANDOM_CROP", "target_count"), 0),
        "augmentations.0.RANDOM_CROP.target_count",
        "greater",
    ),
    (
        "random-count-huge",
        _with((*AUG, "RANDOM_CROP", "target_count"), 10**9),
        "augmentations.0.RANDOM_CROP.target_count",
        "less",
    ),
    (
        "random-count-string",
        _with((*AUG, "RANDOM_CROP", "target_count"), "3"),
        "augmentations.0.RANDOM_CROP.target_count",
        "integer",
    ),
    (
        "random-dims-nested",
        _with((*AUG, "RANDOM_CROP", "crop_dimensions"), [[80, 80]]),
        "augmentations.0.RANDOM_CROP.crop_dimensions.0",
        "integer",
    ),
    (
        "random-larger-than-size",
        _with((*AUG, "RANDOM_CROP", "crop_dimensions"), [80, 481]),
        "augmentations.0.RANDOM_CROP",
        "at least 80x481",
    ),
    (
        "split-not-summing",
        _with(("train_test_split", "test_ratio"), 30),
        "train_test_split",
        "sum to 100",
    ),
    (
        "split-negative",
        _with(("train_test_split", "train_ratio"), -20),
        "train_test_split.train_ratio",
        "greater",
    ),
    (
        "split-missing-test",
        _with(("train_test_split", "test_ratio"), delete=True),
        "train_test_split.test_ratio",
        "required",
    ),
    (
        "split-nan",
        _with(("train_test_split", "test_ratio"), float("nan")),
        "train_test_split.test_ratio",
        "finite",
    ),
    ("seed-negative", _with(("seed",), -1), "seed", "greater"),
    ("seed-string", _with(("seed",), "abc"), "seed", "integer"),
    ("unknown-top-level-field", _with(("priority",), "high"), "priority", "Extra"),
    ("quality-out-of-range", _with(("output",), {"quality": 101}), "output.quality", "less"),
    (
        "include-original-not-bool",
        _with(("include_original",), "maybe"),
        "include_original",
        "bool",
    ),
    (
        "boxes-visibility-above-one",
        _with(("boxes",), {"min_visibility": 2}),
        "boxes.min_visibility",
        "less",
    ),
]


@pytest.mark.parametrize(
    ("request_body", "loc", "word"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_request_names_its_field(request_body, loc, word):
    with pytest.raises(RequestError) as info:
        parse_requests(request_body, OPS, SOURCES)
    error = info.value
    assert error.status == 422
    matching = [e for e in error.errors if ".".join(map(str, e["loc"])) == loc]
    assert matching, f"no error at {loc}: {error.errors}"
    assert any(word.lower() in e["msg"].lower() for e in matching), matching


def test_every_request_field_has_a_bad_case():
    """The table grows with the request: a new field without a case here fails this test."""
    fields = set(request_model(OPS).model_fields)
    assert fields - {loc.split(".")[0] for _, _, loc, _ in INVALID} == set()


def test_seed_sample_is_accepted_unchanged():
    body = parse_json((EXAMPLES / "seed_sample.json").read_bytes())
    [request] = parse_requests(body, OPS, SOURCES)
    assert request.input_image_size == (480, 270)
    assert [name for name, _ in request.steps] == ["CROP", "RANDOM_CROP"]
    assert request.train_test_split.fractions["train"] == pytest.approx(0.8)
    assert request.seed == 0


def test_one_object_and_fractions_are_accepted():
    body = _with(("train_test_split",), {"train_ratio": 0.7, "test_ratio": 0.3})
    [request] = parse_requests(body, OPS, SOURCES)
    assert request.train_test_split.fractions["train"] == pytest.approx(0.7)


def test_every_error_in_a_list_is_reported_with_its_index():
    body = [SEED, _with(("name",), 1), _with(("seed",), -5)]
    with pytest.raises(RequestError) as info:
        parse_requests(body, OPS, SOURCES)
    assert {e["loc"][0] for e in info.value.errors} == {1, 2}


def test_empty_list_is_rejected():
    with pytest.raises(RequestError, match="empty list"):
        parse_requests([], OPS, SOURCES)


def test_verbatim_seed_text_gets_a_parse_error_with_line_and_column():
    with pytest.raises(RequestError) as info:
        parse_json((EXAMPLES / "seed_sample_verbatim.txt").read_bytes())
    assert info.value.status == 400
    assert "line 1 column 146" in str(info.value)


def test_disabled_operator_is_unknown():
    ops = operators_for(OperatorsConfig(disabled=["RANDOM_CROP"]))
    with pytest.raises(RequestError, match="unknown operator 'RANDOM_CROP'; available: ") as info:
        parse_requests(SEED, ops, SOURCES)
    available = str(info.value).split("available: ")[1].split(", ")
    assert "CROP" in available and "RANDOM_CROP" not in available


# --- what the config already decides: refused with the request, never 202 then FAILED -----

SPLIT = {"train_ratio": 80, "test_ratio": 20}


def _config_errors(source: dict, **split) -> list[tuple[str, str]]:
    """(path, message) of every error of the seed request with `split`, on `source`."""
    from motoray.config import Config
    from motoray.spec import parse_for

    config = Config.model_validate({"sources": {"MotoGP": source}})
    try:
        parse_for(config, {**SEED, "train_test_split": {**SPLIT, **split}})
    except RequestError as e:
        return [(".".join(map(str, error["loc"])), error["msg"]) for error in e.errors]
    return []


IMAGES = {"uri": "frames/"}
VIDEOS = {"uri": "race/", "kind": "video", "frames": {"every_s": 1}}
COCO = {"uri": "frames/", "annotations": {"format": "coco"}}


@pytest.mark.parametrize(
    ("source", "split", "refused"),
    [
        (IMAGES, {"group_by": "video"}, "train_test_split.group_by"),
        (IMAGES, {"group_by": "segment:30"}, "train_test_split.group_by"),
        (VIDEOS, {"group_by": "image"}, "train_test_split.group_by"),
        (IMAGES, {"stratify": True}, "train_test_split.stratify"),
        (VIDEOS, {"stratify": True}, "train_test_split.stratify"),
        (IMAGES, {"group_by": "folder"}, None),
        (VIDEOS, {"group_by": "segment:30"}, None),
        (VIDEOS, {"group_by": "regex:^(\\w+)_"}, None),
        ({**IMAGES, "labels": "folder"}, {"stratify": True}, None),
        ({**VIDEOS, "labels": "folder"}, {"stratify": True}, None),
        (COCO, {"stratify": True}, None),  # by each image's commonest category
    ],
)
def test_what_the_source_config_refuses_is_a_request_error(source, split, refused):
    errors = _config_errors(source, **split)
    assert [where for where, _ in errors] == ([refused] if refused else [])


def test_config_refusals_say_what_to_do():
    [(_, stratify)] = _config_errors(IMAGES, stratify=True)
    assert stratify.startswith("stratify needs a labelled source: 'MotoGP' has neither")
    [(_, grouping)] = _config_errors(IMAGES, group_by="segment:30")
    assert (
        grouping
        == "\"segment:30\" is for video sources (`kind: video`); 'MotoGP' is a source of images"
    )


def test_a_request_over_the_job_budget_for_any_listing_is_refused():
    """limits.max_outputs_per_job below one image's outputs: no listing but an empty one
    (itself a failed job) could run, so it is refused with the request."""
    from motoray.config import Config
    from motoray.spec import parse_for

    config = Config.model_validate(
        {"sources": {"MotoGP": IMAGES}, "limits": {"max_outputs_per_job": 3}}
    )
    with pytest.raises(RequestError) as info:
        parse_for(config, SEED)  # 4 outputs per image
    assert info.value.errors == [
        {
            "loc": ["augmentations"],
            "msg": "makes 4 outputs per image; at most 3 per job (limits.max_outputs_per_job)",
        }
    ]
