"""Box kernels against the pixel kernels: every operator case of tests/ops/cases.py, through
the pipeline's own loop (`apply_step`), on images whose only bright pixels are one box per
image. Where the bright pixels land is where the box must land. No Ray, no JPEG."""

from __future__ import annotations

import json

import numpy as np
import pytest

from motoray.annotations.sanitise import BoxRules, kept, records
from motoray.ops import BUILTINS, operators_for
from motoray.ops.boxes import Boxes, clip, window_containing_a_box
from motoray.ops.steps import apply_step, make_steps
from motoray.seeding import derive_rng
from motoray.spec import RequestError, parse_requests
from tests.ops.cases import CASES

GEOMETRY = [c for c in CASES if c.operator not in ("COLOR_JITTER", "GRAYSCALE")]
COLOUR = [c for c in CASES if c.operator in ("COLOR_JITTER", "GRAYSCALE")]


def _boxed_images(batch: int, hw: tuple[int, int], seed: int = 5) -> tuple[np.ndarray, Boxes]:
    """Black images, each with one white box (whole pixels) at a random place."""
    rng = np.random.default_rng(seed)
    height, width = hw
    images = np.zeros((batch, height, width, 3), np.uint8)
    corners = []
    for n in range(batch):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = rng.integers(x0 + 1, width + 1), rng.integers(y0 + 1, height + 1)
        images[n, y0:y1, x0:x1] = 255
        corners.append([x0, y0, x1, y1])
    corners = np.array(corners, np.float64)
    owner, category = np.arange(batch), np.zeros(batch, np.intp)
    return images, Boxes(corners, corners.copy(), owner, category)


def _bright_box(image: np.ndarray) -> np.ndarray | None:
    """Corners of the region where the image is bright (half way up the edge), or None."""
    ys, xs = np.nonzero(image[..., 0] >= 128)
    if not len(xs):
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _steps(case):
    op = BUILTINS[case.operator]
    return make_steps([(case.operator, op.params.model_validate(case.params))], BUILTINS)


@pytest.mark.parametrize("case", GEOMETRY, ids=lambda c: c.id)
def test_boxes_land_where_their_pixels_land(case):
    images, boxes = _boxed_images(6, case.image_hw)
    [step] = _steps(case)
    keys = [f"img{i}" for i in range(len(images))]
    # Resampling (RANDOM_RESIZED_CROP) moves an edge by up to half an output pixel.
    tolerance = 0.5 if case.operator == "RANDOM_RESIZED_CROP" else 0.0
    for out in apply_step(step, images, keys, seed=3, boxes=boxes):
        assert out.members is None and not out.skipped
        for n, image in enumerate(out.images):
            bright = _bright_box(image)
            visible = out.boxes.of_image(n)[0]
            if bright is None:  # the box left the output, or shrank below half a pixel
                area = np.prod(np.maximum(visible[2:] - visible[:2], 0))
                assert area < 1 or min(visible[2:] - visible[:2]) < 1, visible
                continue
            # A box may end inside a pixel (scaled): that pixel is bright if mostly covered.
            expected = np.round(visible) if tolerance else visible
            np.testing.assert_allclose(bright, expected, atol=tolerance + 1e-9)


@pytest.mark.parametrize("case", COLOUR, ids=lambda c: c.id)
def test_colour_operators_leave_boxes_alone(case):
    images, boxes = _boxed_images(4, case.image_hw)
    [step] = _steps(case)
    for out in apply_step(step, images, [f"k{i}" for i in range(4)], seed=0, boxes=boxes):
        np.testing.assert_array_equal(out.boxes.visible, boxes.visible)
        np.testing.assert_array_equal(out.boxes.whole, boxes.whole)


def test_a_chain_composes_the_box_kernels():
    body = {
        "name": "MotoGP",
        "augmentations": [
            {
                "CHAIN": [
                    {"RANDOM_CROP": {"crop_dimensions": [40, 60], "target_count": 2}},
                    {"ROTATE": {"angle": 90}},
                    {"FLIP": {"direction": "vertical"}},
                    {"CROP": {"crop_dimensions": [[30, 20]], "crop_type": "bottom_right"}},
                ]
            }
        ],
    }
    [request] = parse_requests(body, BUILTINS)
    [step] = make_steps(request.steps, BUILTINS)
    images, boxes = _boxed_images(8, (50, 70), seed=11)
    outputs = list(apply_step(step, images, [f"k{i}" for i in range(8)], seed=1, boxes=boxes))
    assert [out.copy for out in outputs] == [0, 1]
    for out in outputs:
        for n, image in enumerate(out.images):
            visible = out.boxes.of_image(n)[0]
            bright = _bright_box(image)
            if bright is None:
                assert np.prod(np.maximum(visible[2:] - visible[:2], 0)) == 0
            else:
                np.testing.assert_array_equal(bright, visible)


def test_visibility_is_of_the_whole_box_through_every_stage():
    """A box half cut by stage 0 and half again by stage 1 is a quarter visible."""
    corners = np.array([[10.0, 10.0, 30.0, 30.0]])
    boxes = Boxes(clip(corners, (40, 40)), corners, np.zeros(1, np.intp), np.zeros(1, np.intp))
    crop = BUILTINS["CROP"]
    first = boxes.mapped(
        crop.box_kernel, [{"x": 20, "y": 0, "width": 20, "height": 40}], (40, 40), (40, 20)
    )
    second = first.mapped(
        crop.box_kernel, [{"x": 0, "y": 20, "width": 20, "height": 20}], (40, 20), (20, 20)
    )
    np.testing.assert_array_equal(second.visible, [[0, 0, 10, 10]])
    np.testing.assert_array_equal(second.whole, [[-10, -10, 10, 10]])
    [(text, dropped)] = records(second, 1, BoxRules(min_visibility=0.3), ["bike"])
    assert (text, dropped) == ("[]", 1)  # 25% visible
    [(text, dropped)] = records(second, 1, BoxRules(min_visibility=0.25), ["bike"])
    assert (text, dropped) == ('[{"bbox": [0.0, 0.0, 10.0, 10.0], "category": "bike"}]', 0)


def test_min_area_drops_what_min_visibility_keeps():
    corners = np.array([[0.0, 0.0, 3.0, 3.0], [0.0, 0.0, 30.0, 30.0]])
    boxes = Boxes(corners, corners, np.zeros(2, np.intp), np.zeros(2, np.intp))
    assert kept(boxes, BoxRules(min_visibility=0.3, min_area=10)).tolist() == [False, True]
    assert kept(boxes, BoxRules(min_visibility=0.3, min_area=9)).tolist() == [True, True]


# --- contains_box ----------------------------------------------------------------------------


def _allowed(image_hw, crop_hw, corners) -> set[tuple[int, int]]:
    """Every top-left position whose window holds one of the boxes whole, by enumeration."""
    (H, W), (h, w) = image_hw, crop_hw
    return {
        (x, y)
        for y in range(H - h + 1)
        for x in range(W - w + 1)
        for x0, y0, x1, y1 in corners
        if x <= x0 and x + w >= x1 and y <= y0 and y + h >= y1
    }


def test_contains_box_windows_are_uniform_over_the_allowed_positions():
    corners = np.array([[3.5, 2.0, 7.0, 6.0], [5.0, 4.0, 9.2, 7.0], [0.0, 0.0, 19.0, 3.0]])
    allowed = _allowed((12, 16), (6, 8), corners)
    assert 10 < len(allowed) < 60  # overlapping rectangles of positions; one box never fits
    seen: dict[tuple[int, int], int] = {}
    draws = 200 * len(allowed)
    for n in range(draws):
        window = window_containing_a_box(derive_rng(n)[1], (12, 16), (6, 8), corners)
        position = (window["x"], window["y"])
        assert position in allowed
        seen[position] = seen.get(position, 0) + 1
    assert set(seen) == allowed
    assert max(seen.values()) < 1.4 * 200 and min(seen.values()) > 0.6 * 200  # uniform


def test_no_window_when_every_box_is_bigger_than_the_crop():
    corners = np.array([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 20.0, 5.0]])
    assert window_containing_a_box(derive_rng(0)[1], (12, 24), (8, 8), corners) is None
    assert window_containing_a_box(derive_rng(0)[1], (12, 24), (8, 8), np.zeros((0, 4))) is None


def test_contains_box_skips_images_without_a_window_and_keeps_the_others_seeds():
    body = {"name": "M", "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [10, 10],
            "target_count": 3, "placement": "contains_box"}}]}  # fmt: skip
    [request] = parse_requests(body, BUILTINS)
    [step] = make_steps(request.steps, BUILTINS)
    images = np.zeros((3, 30, 30, 3), np.uint8)
    corners = np.array([[2.0, 2.0, 8.0, 8.0], [0.0, 0.0, 25.0, 25.0]])  # image 1: too big
    boxes = Boxes(corners, corners, np.array([0, 1]), np.zeros(2, np.intp))  # image 2: none
    outputs = list(apply_step(step, images, ["a", "b", "c"], seed=0, boxes=boxes))
    made = [out for out in outputs if len(out.images)]
    skipped = [out for out in outputs if out.skipped]
    assert [out.copy for out in made] == [0, 1, 2] == [out.copy for out in skipped]
    assert all(out.skipped == (1, 2) and not len(out.members) for out in skipped)
    assert all(not out.skipped and list(out.members) == [0] for out in made)
    for out in made:
        x, y = out.params[0]["x"], out.params[0]["y"]
        assert x <= 2 and x + 10 >= 8 and y <= 2 and y + 10 >= 8  # holds the box whole
        np.testing.assert_array_equal(out.boxes.visible, out.boxes.whole)  # whole, so kept


def test_anywhere_draws_the_same_with_or_without_boxes():
    body = {"name": "M", "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [10, 10],
            "target_count": 4}}]}  # fmt: skip
    [request] = parse_requests(body, BUILTINS)
    [step] = make_steps(request.steps, BUILTINS)
    images, boxes = _boxed_images(5, (30, 40))
    keys = [f"k{i}" for i in range(5)]
    plain = list(apply_step(step, images, keys, seed=9))
    boxed = list(apply_step(step, images, keys, seed=9, boxes=boxes))
    assert [out.params for out in plain] == [out.params for out in boxed]
    for a, b in zip(plain, boxed):
        np.testing.assert_array_equal(a.images, b.images)


# --- what a request may ask of a source ------------------------------------------------------


def test_a_plugin_without_a_box_kernel_is_refused_on_an_annotated_source(monkeypatch):
    from pathlib import Path

    from motoray.config import OperatorsConfig

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples" / "plugins"))
    operators = operators_for(OperatorsConfig(plugins=["motoray_invert"]))
    body = {"name": "frames", "augmentations": [{"CHAIN": [{"FLIP": {}}, {"INVERT": {}}]}]}
    with pytest.raises(RequestError) as info:
        parse_requests(body, operators, ["frames"], annotated={"frames"})
    assert info.value.status == 422
    assert info.value.errors == [
        {
            "loc": ["augmentations", 0, "CHAIN", 1, "INVERT"],
            "msg": "operator INVERT has no box kernel: it cannot move the boxes of source "
            "'frames', which has annotations",
        }
    ]
    parse_requests(body, operators, ["frames"])  # a source without boxes: fine


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"boxes": {"min_visibility": 0.5}}, ["boxes"]),
        ({"output": {"annotations": ["coco"]}}, ["output", "annotations"]),
        (
            {"augmentations": [{"RANDOM_CROP": {"crop_dimensions": [8, 8],
                                                "placement": "contains_box"}}]},
            ["augmentations", 0, "RANDOM_CROP"],
        ),
    ],
    ids=["boxes", "annotations", "contains_box"],
)  # fmt: skip
def test_asking_for_boxes_of_a_source_without_them_is_a_422(extra, where):
    body = {"name": "frames", "augmentations": [{"FLIP": {}}], **extra}
    with pytest.raises(RequestError) as info:
        parse_requests(body, BUILTINS, ["frames"])
    assert [e["loc"] for e in info.value.errors] == [where]
    assert "'frames'" in info.value.errors[0]["msg"]
    parse_requests(body, BUILTINS, ["frames"], annotated={"frames"})


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"format": "webdataset", "annotations": ["coco"]}, "carry their boxes in their .json"),
        ({"annotations": ["yolo", "yolo"]}, "names a format twice"),
        ({"annotations": ["voc"]}, "'coco' or 'yolo'"),
    ],
)
def test_bad_box_options_name_their_field(output, message):
    body = {"name": "frames", "augmentations": [{"FLIP": {}}], "output": output}
    with pytest.raises(RequestError, match=message):
        parse_requests(body, BUILTINS, ["frames"], annotated={"frames"})
    for bad in ({"min_visibility": 1.5}, {"min_area": -1}, {"min_visibility": 0.3, "x": 1}):
        with pytest.raises(RequestError, match="boxes"):
            parse_requests(
                {**body, "output": {}, "boxes": bad}, BUILTINS, ["frames"], annotated={"frames"}
            )


def test_a_crowd_region_places_no_window_and_keeps_its_flag_through_every_stage():
    """Image 0's only box that fits the crop is a crowd region: no window. Image 1's crowd
    region and object both fit: every window holds the object, and the crowd flag follows
    its box through a chain of crop and flip into the manifest's record."""
    body = {"name": "M", "augmentations": [{"CHAIN": [
        {"RANDOM_CROP": {"crop_dimensions": [12, 12], "target_count": 20,
                         "placement": "contains_box"}},
        {"FLIP": {}}]}]}  # fmt: skip
    [request] = parse_requests(body, BUILTINS)
    [step] = make_steps(request.steps, BUILTINS)
    images = np.zeros((2, 30, 30, 3), np.uint8)
    corners = np.array(
        [[2.0, 2.0, 8.0, 8.0], [0.0, 0.0, 25.0, 25.0],  # image 0: crowd fits, object does not
         [14.0, 14.0, 20.0, 20.0], [12.0, 18.0, 18.0, 24.0]]  # image 1: object, crowd
    )  # fmt: skip
    crowd = np.array([True, False, False, True])
    boxes = Boxes(corners, corners, np.array([0, 0, 1, 1]), np.zeros(4, np.intp), crowd)
    outputs = list(apply_step(step, images, ["a", "b"], seed=0, boxes=boxes))
    assert all(out.skipped == (0,) for out in outputs if out.skipped)
    made = [out for out in outputs if len(out.images)]
    assert len(made) == 20 and all(list(out.members) == [1] for out in made)
    crowd_records = 0
    for out in made:
        x, y = out.params[0]["chain"][0]["x"], out.params[0]["chain"][0]["y"]
        assert x <= 14 and x + 12 >= 20 and y <= 14 and y + 12 >= 20  # the object, whole
        assert out.boxes.crowd.tolist() == [False, True]
        [(text, _)] = records(out.boxes, 1, BoxRules(min_visibility=0.0, min_area=0), ["bike"])
        kept_boxes = json.loads(text)
        assert [box.get("iscrowd") for box in kept_boxes] == [None, 1][: len(kept_boxes)]
        crowd_records += len(kept_boxes) == 2
        flipped = 12 - (20 - x)  # FLIP: x -> 12 - x of the crop's right edge
        assert kept_boxes[0]["bbox"][0] == pytest.approx(flipped)
    assert crowd_records > 0  # windows that kept part of the crowd region, flagged
