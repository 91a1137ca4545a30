"""Geometry, determinism and serialisation of every operator over one case list."""

from __future__ import annotations

import json

import numpy as np
import pytest

from motoray.ops import registered
from motoray.ops.functional import crop, position_box
from motoray.seeding import derive_rng
from tests.ops.cases import CASES


def _outputs(case, seed=0, batch=3):
    op = registered()[case.operator]
    params = op.params.model_validate(case.params)
    rng = np.random.default_rng(123)
    images = rng.integers(0, 256, (batch, *case.image_hw, 3), dtype=np.uint8)
    results = []
    for copy in range(op.copies(params)):
        sampled = [
            op.sample(params, derive_rng(seed, f"img{i}", 0, copy)[1], case.image_hw, copy)
            for i in range(batch)
        ]
        results.append((sampled, op.kernel(images, sampled)))
    return images, results


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_output_shapes_and_pixels_match_recorded_boxes(case):
    images, results = _outputs(case)
    assert [out.shape[1:3] for _, out in results] == case.outputs_hw
    for boxes, out in results:
        for image, box, cut in zip(images, boxes, out):
            x, y, w, h = box["x"], box["y"], box["width"], box["height"]
            assert 0 <= x <= image.shape[1] - w and 0 <= y <= image.shape[0] - h
            np.testing.assert_array_equal(cut, image[y : y + h, x : x + w])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_same_seed_same_params_and_params_serialise(case):
    _, first = _outputs(case, seed=7)
    _, again = _outputs(case, seed=7)
    assert [b for b, _ in first] == [b for b, _ in again]
    for boxes, _ in first:
        assert json.loads(json.dumps(boxes)) == boxes  # recorded as JSON in the manifest


def test_random_crop_positions_depend_on_seed_and_copy():
    case = next(c for c in CASES if c.id == "random-seed")
    _, seed0 = _outputs(case, seed=0)
    _, seed1 = _outputs(case, seed=1)
    boxes0 = [b for boxes, _ in seed0 for b in boxes]
    boxes1 = [b for boxes, _ in seed1 for b in boxes]
    assert boxes0 != boxes1
    assert len({(b["x"], b["y"]) for b in boxes0}) > len(boxes0) // 2  # copies differ


@pytest.mark.parametrize(
    ("position", "expected_xy"),
    [
        # image 11 x 8 (H x W), crop 4 x 3: free space 7 rows, 5 cols -> floor 3 and 2
        ("top_left", (0, 0)),
        ("left_down_center", (0, 0)),
        ("top_center", (2, 0)),
        ("top_right", (5, 0)),
        ("center_left", (0, 3)),
        ("center", (2, 3)),
        ("center_right", (5, 3)),
        ("bottom_left", (0, 7)),
        ("bottom_center", (2, 7)),
        ("bottom_right", (5, 7)),
    ],
)
def test_every_position_against_hand_computed_boxes(position, expected_xy):
    box = position_box(position, (11, 8), (4, 3))
    assert (box["x"], box["y"], box["width"], box["height"]) == (*expected_xy, 3, 4)
    image = np.arange(11 * 8 * 3, dtype=np.int32).reshape(1, 11, 8, 3)
    x, y = expected_xy
    np.testing.assert_array_equal(crop(image, [box])[0], image[0, y : y + 4, x : x + 3])


def test_centre_of_even_remainder_is_exact():
    assert position_box("center", (10, 10), (4, 6)) == {"x": 2, "y": 3, "width": 6, "height": 4}


def test_crop_dimensions_single_pair_is_accepted_as_one_size():
    params = registered()["CROP"].params.model_validate({"crop_dimensions": [270, 270]})
    assert params.crop_dimensions == [(270, 270)]
