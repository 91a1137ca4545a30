"""CHAIN: operators applied one after the other inside one step.

Most checks run the job's own worker in memory (`worker.outputs`) on real JPEG files; one
job runs on the real local Ray.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from motoray.dry_run import dry_run
from motoray.imageio import load_image
from motoray.ops import BUILTINS, operators_for
from motoray.sample_data import write_sample_frames
from motoray.spec import RequestError, parse_requests
from tests.conftest import outputs_in_memory, parse_one, run_job
from tests.ops.cases import CASES

SIZE = (160, 90)  # width, height
DIMS = [[32, 32], [48, 40]]
CHAIN = {
    "CHAIN": [
        {"RANDOM_CROP": {"crop_dimensions": [64, 80], "target_count": 2}},
        {"CROP": {"crop_dimensions": DIMS, "crop_type": "bottom_right"}},
        {"ROTATE": {"angle": 90}},
    ]
}
REQUEST = {"name": "clips", "input_image_size": list(SIZE), "augmentations": [CHAIN]}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_sample_frames(folder, 6, (320, 180), frames_per_clip=3)
    return folder


_outputs = outputs_in_memory


def _error(output, image, x, y, h, w, dx=0, dy=0, turns=1) -> float:
    """Mean absolute difference of `output` and a box of `image` turned by 90 degrees."""
    box = image[y + dy : y + dy + h, x + dx : x + dx + w]
    return float(np.abs(output - np.rot90(box, turns)).mean())


def _errors(body: dict) -> dict[str, str]:
    with pytest.raises(RequestError) as info:
        parse_requests(body, operators_for())
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors}


def test_every_stage_is_sampled_from_the_shape_before_it_and_recorded(clips, make_config):
    config = make_config(clips=clips)
    rows, files = _outputs(config, REQUEST)
    assert len(rows) == 6 * 2 * 2 and all(row["error"] is None for row in rows)
    resized = {}
    for row in rows:
        assert row["operator"] == "RANDOM_CROP+CROP+ROTATE"
        *_, copy = Path(row["output_path"]).stem.rpartition("-")
        assert row["output_path"].endswith(f".0-random_crop-crop-rotate-{copy}.jpg")
        first, second, third = json.loads(row["params"])["chain"]
        assert [s.pop("operator") for s in (first, second, third)] == [
            "RANDOM_CROP",
            "CROP",
            "ROTATE",
        ]
        # Copy index = c0 * 2 + c1: the last stage with copies varies fastest.
        h, w = DIMS[int(copy) % 2]
        assert (first["height"], first["width"]) == (64, 80) and "seed" in first
        assert second == {"x": 80 - w, "y": 64 - h, "width": w, "height": h}
        assert third == {"angle": 90}
        assert (row["height"], row["width"]) == (w, h)  # rotated by 90: sides swapped

        key = row["source_path"]
        if key not in resized:
            resized[key] = load_image((clips / key).read_bytes(), SIZE).astype(float)
        x, y = first["x"] + second["x"], first["y"] + second["y"]
        output = load_image(files[row["output_path"]])
        error = partial(_error, output, resized[key], x, y, h, w)
        # JPEG re-encoding of a small crop: close, and closer than one pixel away or turned.
        assert error() < 10
        assert error() < min(error(dx=-1), error(dy=-1), error(turns=-1))

    by_copy = {}
    for row in rows:
        if row["source_path"] == rows[0]["source_path"]:
            copy = int(Path(row["output_path"]).stem.rpartition("-")[2])
            by_copy[copy] = json.loads(row["params"])["chain"][0]
    # Copies 0, 1 share the first crop (c0 = 0); 2, 3 share the other one.
    assert by_copy[0] == by_copy[1] and by_copy[2] == by_copy[3] and by_copy[0] != by_copy[2]


def test_stage_zero_is_seeded_as_the_same_plain_step(clips, make_config):
    config = make_config(clips=clips)
    crop = {"RANDOM_CROP": {"crop_dimensions": [40, 50], "target_count": 3}}
    chained = {"CHAIN": [crop, {"FLIP": {}}]}
    plain_rows, _ = _outputs(config, {**REQUEST, "augmentations": [crop]})
    chain_rows, _ = _outputs(config, {**REQUEST, "augmentations": [chained]})
    assert len(plain_rows) == len(chain_rows) == 6 * 3
    for plain, chain in zip(plain_rows, chain_rows):
        assert plain["source_path"] == chain["source_path"]
        stages = json.loads(chain["params"])["chain"]
        assert stages[0] == {"operator": "RANDOM_CROP", **json.loads(plain["params"])}
        assert stages[1] == {"operator": "FLIP", "direction": "horizontal"}


def test_later_random_stages_have_their_own_seeds_and_batches_change_nothing(clips, make_config):
    config = make_config(clips=clips)
    body = {
        **REQUEST,
        "augmentations": [
            {
                "CHAIN": [
                    {"CROP": {"crop_dimensions": DIMS}},
                    {"RANDOM_CROP": {"crop_dimensions": [16, 16], "target_count": 2}},
                ]
            }
        ],
    }
    rows, files = _outputs(config, body)
    seeds = [json.loads(row["params"])["chain"][1]["seed"] for row in rows]
    assert len(set(seeds)) == len(rows) == 6 * 4
    keys = sorted({row["source_path"] for row in rows})
    for key in keys[:2]:  # one image alone gives what it gave in the batch of all six
        alone_rows, alone_files = _outputs(config, body, [key])
        assert alone_rows == [row for row in rows if row["source_path"] == key]
        assert alone_files == {path: files[path] for path in alone_files}


def test_a_later_stage_too_big_for_some_images_skips_those_images(make_config, tmp_path):
    source = tmp_path / "sizes"
    write_sample_frames(source / "small", 1, (200, 100))  # rotated: 200 high, 100 wide
    write_sample_frames(source / "large", 1, (400, 300))
    config = make_config(clips=source)
    body = {
        "name": "clips",
        "augmentations": [
            {"CHAIN": [{"ROTATE": {"angle": 90}}, {"CROP": {"crop_dimensions": [[150, 150]]}}]}
        ],
    }
    rows, _ = _outputs(config, body)  # not knowable at request time: no input_image_size
    [failed] = [row for row in rows if row["error"] is not None]
    assert failed["source_path"].startswith("small/")
    assert failed["error"] == (
        "CROP needs at least 150x150 (height x width), CHAIN stage 0 (ROTATE) makes 200x100"
    )
    [ok] = [row for row in rows if row["error"] is None]
    assert ok["source_path"].startswith("large/") and (ok["height"], ok["width"]) == (150, 150)


@pytest.mark.parametrize(
    ("chain", "where", "message"),
    [
        ([{"FLIP": {"direction": "sideways"}}], "CHAIN.0.FLIP.direction", "'horizontal' or"),
        ([{"FLIP": {}}, {"SHEAR": {}}], "CHAIN.1", "unknown operator 'SHEAR'"),
        (
            [{"FLIP": {}, "GRAYSCALE": {}}],
            "CHAIN.0",
            "exactly one operator, got 2 (FLIP, GRAYSCALE)",
        ),
        ([{}], "CHAIN.0", "exactly one operator, got 0"),
        ([{"FLIP": None}], "CHAIN.0", "exactly one operator, got 0"),
        ([{"CHAIN": [{"FLIP": {}}]}], "CHAIN.0", "CHAIN cannot be nested"),
        ([], "CHAIN", "at least 1 item"),
        ([{"FLIP": {}}] * 9, "CHAIN", "at most 8 items"),
        (  # knowable without input_image_size: the crop fixes the size
            [
                {"RANDOM_CROP": {"crop_dimensions": [80, 80]}},
                {"CROP": {"crop_dimensions": [*DIMS, [90, 60]]}},
            ],
            "CHAIN.1.CROP",
            "needs an image of at least 90x60 (height x width) "
            "but CHAIN stage 0 (RANDOM_CROP) makes 80x80",
        ),
    ],
    ids=[
        "bad-param",
        "unknown",
        "two",
        "none",
        "null",
        "nested",
        "empty",
        "long",
        "misfit",
    ],
)
def test_invalid_chains_are_rejected_with_their_path(chain, where, message):
    errors = _errors({"name": "clips", "augmentations": [{"FLIP": {}}, {"CHAIN": chain}]})
    assert message in errors[f"augmentations.1.{where}"], errors


def test_a_chain_multiplying_past_the_output_budget_is_rejected():
    chain = [
        {"RANDOM_CROP": {"crop_dimensions": [8, 8], "target_count": 100}},
        {"COLOR_JITTER": {"target_count": 11}},
    ]
    errors = _errors({"name": "clips", "augmentations": [{"FLIP": {}}, {"CHAIN": chain}]})
    assert errors["augmentations"] == (
        "makes 1101 outputs per image, every step together; at most 1000 "
        "(limits.max_outputs_per_image)"
    )


def test_sizes_are_followed_through_the_chain_from_input_image_size():
    rotate_then_crop = [{"ROTATE": {"angle": 270}}, {"CROP": {"crop_dimensions": [[60, 100]]}}]
    errors = _errors(
        {
            "name": "clips",
            "input_image_size": [160, 90],
            "augmentations": [{"CHAIN": rotate_then_crop}],
        }
    )
    assert errors == {
        "augmentations.0.CHAIN.1.CROP": "needs an image of at least 60x100 (height x width) but "
        "CHAIN stage 0 (ROTATE) makes 160x90"
    }
    too_big_first = [{"CROP": {"crop_dimensions": [[100, 100]]}}, {"FLIP": {}}]
    errors = _errors(
        {
            "name": "clips",
            "input_image_size": [160, 90],
            "augmentations": [{"CHAIN": too_big_first}],
        }
    )
    assert errors == {
        "augmentations.0.CHAIN.0.CROP": "needs an image of at least 100x100 (height x width) but "
        "input_image_size is 160x90 (width x height)"
    }
    fits = [{"ROTATE": {"angle": 90}}, {"CROP": {"crop_dimensions": [[160, 90]]}}]
    parse_requests(
        {"name": "clips", "input_image_size": [160, 90], "augmentations": [{"CHAIN": fits}]},
        operators_for(),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_declared_output_shapes_match_the_shared_cases(case):
    op = BUILTINS[case.operator]
    params = op.params.model_validate(case.params)
    assert [
        op.output_shape(params, case.image_hw, c) for c in range(op.copies(params))
    ] == case.outputs_hw
    unknown = [op.output_shape(params, None, c) for c in range(op.copies(params))]
    assert unknown == case.outputs_hw or unknown == [None] * len(unknown)


@pytest.mark.usefixtures("ray_local")
def test_a_chain_job_on_ray_matches_its_plan(clips, make_config):
    config = make_config(clips=clips)
    body = {**REQUEST, "augmentations": [{"GRAYSCALE": {}}, CHAIN]}
    request = parse_one(body, config)
    planned = dry_run(request, config)
    record = run_job(request, config, "chain")
    assert record["counts"]["outputs"] == planned["counts"]["outputs"] == 6 * (1 + 4)
    assert planned["outputs_per_image"] == 5
    job_dir = Path(record["output"])
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    assert sorted({row["operator"] for row in manifest}) == ["GRAYSCALE", "RANDOM_CROP+CROP+ROTATE"]
    in_memory, files = _outputs(config, body)
    assert manifest == [
        {k: v for k, v in row.items() if k not in ("shard", "error")} for row in in_memory
    ]
    assert all((job_dir / path).read_bytes() == data for path, data in files.items())
