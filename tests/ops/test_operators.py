"""Every operator over one case list (geometry, determinism, serialisation, purity),
then each one against an independent reference (NumPy, Pillow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from pydantic import ValidationError

from motoray.ops import BUILTINS, functional, operators_for
from motoray.ops.functional import (
    color_jitter,
    crop,
    flip,
    grayscale,
    position_box,
    random_resized_box,
    resize,
    resized_crop,
    rotate,
    to_uint8,
)
from motoray.ops.steps import apply_step, make_steps
from motoray.seeding import derive_rng
from motoray.spec import RequestError, parse_requests
from tests.ops.cases import CASES, INVALID

CROPS = [c for c in CASES if c.operator in ("CROP", "RANDOM_CROP")]
RANDOM = [c for c in CASES if BUILTINS[c.operator].random and not c.one_outcome]


def _images(batch: int, hw: tuple[int, int], seed: int = 123) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, *hw, 3), dtype=np.uint8)


def _outputs(case, seed=0, batch=3, images=None):
    """Through the pipeline's own loop (`apply_step`): per copy, (params per image, outputs)."""
    op = BUILTINS[case.operator]
    [step] = make_steps([(case.operator, op.params.model_validate(case.params))], BUILTINS)
    images = _images(batch, case.image_hw) if images is None else images
    keys = [f"img{i}" for i in range(len(images))]
    results = [(out.params, out.images) for out in apply_step(step, images, keys, seed)]
    return images, results


# --- every operator -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_outputs_are_new_uint8_batches_of_the_expected_shapes(case):
    images, results = _outputs(case)
    before = images.copy()
    assert [out.shape for _, out in results] == [(3, *hw, 3) for hw in case.outputs_hw]
    for _, out in results:
        assert out.dtype == np.uint8
        # A chained operator may write into its input: outputs must not alias it.
        assert not np.shares_memory(out, images)
    np.testing.assert_array_equal(images, before)  # the input is left alone


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_same_seed_same_params_and_pixels_and_params_serialise(case):
    _, first = _outputs(case, seed=7)
    _, again = _outputs(case, seed=7)
    for (params, out), (params_again, out_again) in zip(first, again):
        assert params == params_again
        np.testing.assert_array_equal(out, out_again)
        assert json.loads(json.dumps(params)) == params  # recorded as JSON in the manifest


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_recorded_params_reproduce_the_output(case):
    """The manifest's params are enough: one image on its own gives the same pixels."""
    images, results = _outputs(case, batch=3)
    kernel = BUILTINS[case.operator].kernel
    for params, out in results:
        for i in range(len(images)):
            replayed = kernel(images[i : i + 1], json.loads(json.dumps(params[i : i + 1])))
            np.testing.assert_array_equal(replayed[0], out[i])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_working_in_small_steps_changes_nothing(case, monkeypatch):
    """Kernels bound their float copies by working on CHUNK_PIXELS at a time."""
    _, whole = _outputs(case)
    monkeypatch.setattr(functional, "CHUNK_PIXELS", 1)
    _, stepped = _outputs(case)
    for (_, out), (_, out_stepped) in zip(whole, stepped):
        np.testing.assert_array_equal(out, out_stepped)


@pytest.mark.parametrize("case", RANDOM, ids=lambda c: c.id)
def test_random_params_depend_on_seed_and_copy(case):
    _, seed0 = _outputs(case, seed=0, batch=4)
    _, seed1 = _outputs(case, seed=1, batch=4)
    drawn0 = [json.dumps(p, sort_keys=True) for params, _ in seed0 for p in params]
    drawn1 = [json.dumps(p, sort_keys=True) for params, _ in seed1 for p in params]
    assert drawn0 != drawn1
    assert len(set(drawn0)) > len(drawn0) // 2  # images and copies differ


@pytest.mark.parametrize(
    "case", [c for c in CASES if not BUILTINS[c.operator].random], ids=lambda c: c.id
)
def test_deterministic_operators_ignore_the_seed(case):
    _, seed0 = _outputs(case, seed=0)
    _, seed1 = _outputs(case, seed=1)
    assert [p for p, _ in seed0] == [p for p, _ in seed1]


@pytest.mark.parametrize("bad", INVALID, ids=lambda b: b.id)
def test_invalid_params_are_rejected_naming_the_field(bad):
    with pytest.raises(ValidationError) as info:
        BUILTINS[bad.operator].params.model_validate(bad.params)
    assert bad.field in {error["loc"][0] for error in info.value.errors()}


def test_a_request_error_gives_the_path_to_the_field():
    body = {"name": "MotoGP", "augmentations": [{"ROTATE": {"angle": 45}}]}
    with pytest.raises(RequestError) as info:
        parse_requests(body, operators_for(), ["MotoGP"])
    assert [e["loc"] for e in info.value.errors] == [["augmentations", 0, "ROTATE", "angle"]]


def test_kernels_chain():
    """Every kernel takes and gives N x H x W x C uint8, so outputs can feed the next one."""
    images = _images(2, (27, 48))
    boxes = [random_resized_box(derive_rng(0, i)[1], (48, 27), (0.2, 1), (0.5, 2)) for i in (0, 1)]
    out = rotate(images, [{"angle": 90}] * 2)
    out = resized_crop(out, [{**box, "size": [16, 12]} for box in boxes])
    out = color_jitter(out, [{"brightness": 1.2, "contrast": 0.8, "saturation": 0.5}] * 2)
    out = flip(grayscale(out), [{"direction": "vertical"}] * 2)
    assert out.shape == (2, 16, 12, 3) and out.dtype == np.uint8


# --- CROP and RANDOM_CROP ---------------------------------------------------------------


@pytest.mark.parametrize("case", CROPS, ids=lambda c: c.id)
def test_crop_pixels_match_recorded_boxes(case):
    images, results = _outputs(case)
    for boxes, out in results:
        for image, box, cut in zip(images, boxes, out):
            x, y, w, h = box["x"], box["y"], box["width"], box["height"]
            assert 0 <= x <= image.shape[1] - w and 0 <= y <= image.shape[0] - h
            np.testing.assert_array_equal(cut, image[y : y + h, x : x + w])


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
    params = BUILTINS["CROP"].params.model_validate({"crop_dimensions": [270, 270]})
    assert params.crop_dimensions == [(270, 270)]


# --- FLIP and ROTATE ---------------------------------------------------------------------


def test_flip_is_np_flip_per_image():
    images = _images(4, (5, 7))
    directions = ["horizontal", "vertical", "vertical", "horizontal"]
    out = flip(images, [{"direction": d} for d in directions])
    for image, direction, flipped in zip(images, directions, out):
        axis = {"horizontal": 1, "vertical": 0}[direction]  # of one H x W x C image
        np.testing.assert_array_equal(flipped, np.flip(image, axis))


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotate_is_np_rot90(angle):
    images = _images(3, (5, 7))
    out = rotate(images, [{"angle": angle}] * 3)
    np.testing.assert_array_equal(out, np.rot90(images, angle // 90, axes=(1, 2)))


def test_rotate_90_is_counter_clockwise():
    image = np.zeros((1, 2, 3, 3), np.uint8)
    image[0, 0, -1] = 255  # top right
    assert rotate(image, [{"angle": 90}])[0, 0, 0, 0] == 255  # now top left


def test_rotate_mixes_angles_only_when_shapes_agree():
    square = _images(2, (6, 6))
    out = rotate(square, [{"angle": 90}, {"angle": 180}])
    np.testing.assert_array_equal(out[1], np.rot90(square[1], 2))
    with pytest.raises(ValueError, match="non-square"):
        rotate(_images(2, (6, 7)), [{"angle": 90}, {"angle": 180}])


# --- GRAYSCALE and COLOR_JITTER -------------------------------------------------------------


def test_grayscale_is_pillow_luma_in_three_channels():
    images = _images(2, (17, 23))
    out = grayscale(images)
    for image, gray in zip(images, out):
        luma = np.asarray(Image.fromarray(image).convert("L"))
        np.testing.assert_array_equal(gray, np.repeat(luma[..., None], 3, axis=-1))


NO_JITTER = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0}
ENHANCERS = {
    "brightness": ImageEnhance.Brightness,
    "contrast": ImageEnhance.Contrast,
    "saturation": ImageEnhance.Color,
}


def _pillow_jitter(image: np.ndarray, factors: dict) -> np.ndarray:
    pil = Image.fromarray(image)
    for name, enhancer in ENHANCERS.items():  # brightness, contrast, saturation
        pil = enhancer(pil).enhance(factors[name])
    return np.asarray(pil)


def test_jitter_at_factor_one_is_the_identity():
    images = _images(3, (17, 23))
    np.testing.assert_array_equal(color_jitter(images, [NO_JITTER] * 3), images)


@pytest.mark.parametrize("name", list(ENHANCERS))
@pytest.mark.parametrize("factor", [0.0, 0.3, 0.9, 1.3, 2.0, 3.0])
def test_each_jitter_factor_matches_pillow_image_enhance(name, factor):
    # Pillow truncates (we round), and rounds the mean and the luma it blends with.
    image = _images(1, (40, 60))[0]
    factors = {**NO_JITTER, name: factor}
    ours = color_jitter(image[None], [factors])[0]
    diff = np.abs(ours.astype(int) - _pillow_jitter(image, factors))
    assert diff.max() <= 1


@pytest.mark.parametrize("factors", [(0.5, 1.5, 0.7), (1.4, 0.6, 1.5), (0.8, 1.2, 1.2)])
def test_jitter_chain_matches_pillow_within_rounding(factors):
    # Pillow rounds to uint8 after every step; later factors amplify those errors.
    image = _images(1, (40, 60))[0]
    named = dict(zip(ENHANCERS, factors))
    diff = np.abs(color_jitter(image[None], [named])[0].astype(int) - _pillow_jitter(image, named))
    assert diff.max() <= 3 and diff.mean() < 1.5


def test_jitter_batch_uses_each_images_own_factors():
    images = _images(3, (9, 11))
    factors = [
        {"brightness": 0.5, "contrast": 1.0, "saturation": 2.0},
        {"brightness": 1.0, "contrast": 2.5, "saturation": 1.0},
        {"brightness": 1.7, "contrast": 0.2, "saturation": 0.0},
    ]
    out = color_jitter(images, factors)
    for image, f, jittered in zip(images, factors, out):
        np.testing.assert_array_equal(jittered, color_jitter(image[None], [f])[0])


def test_jitter_zero_factors_give_black_flat_gray_and_grayscale():
    image = _images(1, (9, 11))
    black = color_jitter(image, [{**NO_JITTER, "brightness": 0.0}])
    flat = color_jitter(image, [{**NO_JITTER, "contrast": 0.0}])
    gray = color_jitter(image, [{**NO_JITTER, "saturation": 0.0}])
    assert not black.any()
    assert len(np.unique(flat)) == 1
    assert np.abs(gray.astype(int) - grayscale(image)).max() <= 1


def test_jitter_of_one_big_image_holds_under_8_times_its_bytes():
    """A single image is never cut: its float copies are what a task holds beyond
    limits.task_bytes. Rounding in place left 7.7x (14.3x before) on one 40 Mpx image."""
    import tracemalloc

    image = np.random.default_rng(0).integers(0, 256, (1, 1080, 1920, 3), np.uint8)
    tracemalloc.start()
    try:
        color_jitter(image, [{"brightness": 1.2, "contrast": 0.8, "saturation": 1.3}])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * image.nbytes, peak / image.nbytes


def test_jitter_factors_are_drawn_inside_their_ranges():
    op = BUILTINS["COLOR_JITTER"]
    params = op.params.model_validate(
        {"brightness": [0.5, 0.7], "contrast": [1, 1], "saturation": [2, 3]}
    )
    for i in range(50):
        drawn = op.sample(params, derive_rng(0, i)[1], (10, 10), 0)
        assert 0.5 <= drawn["brightness"] <= 0.7 and drawn["contrast"] == 1.0
        assert 2 <= drawn["saturation"] <= 3


# --- RANDOM_RESIZED_CROP ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "ratio"), [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.3, 0.5), (0.5, 2)), ((1, 1), (1, 1))]
)
def test_random_resized_boxes_fit_and_respect_scale_and_ratio(scale, ratio):
    H, W = 270, 480
    for i in range(300):
        box = random_resized_box(derive_rng(0, i)[1], (H, W), scale, ratio)
        x, y, w, h = box["x"], box["y"], box["width"], box["height"]
        assert 0 <= x <= W - w and 0 <= y <= H - h and w > 0 and h > 0
        if box["fallback"]:
            continue
        # Sides are rounded to whole pixels: about 0.5 / 60 px at the smallest here.
        assert scale[0] * 0.97 <= w * h / (H * W) <= scale[1] * 1.03
        assert ratio[0] * 0.98 <= w / h <= ratio[1] * 1.02


def test_random_resized_box_falls_back_to_the_centre():
    # 10 x 100: no square of 90% of the area fits; the largest centred square does.
    # 100 x 10 with width / height 0.5: the largest centred 10 x 20 (width x height).
    box = random_resized_box(derive_rng(0)[1], (10, 100), (0.9, 1.0), (1.0, 1.0))
    assert box == {"x": 45, "y": 0, "width": 10, "height": 10, "fallback": True}
    tall = random_resized_box(derive_rng(0)[1], (100, 10), (0.9, 1.0), (0.5, 0.5))
    assert tall == {"x": 0, "y": 40, "width": 10, "height": 20, "fallback": True}
    # 2 x 4, 1-2% of the area, width / height >= 1: the height rounds to 0 every time;
    # the image's own ratio, 2, is in range, so the fallback is the whole image.
    whole = random_resized_box(derive_rng(0)[1], (2, 4), (0.01, 0.02), (1.0, 4.0))
    assert whole == {"x": 0, "y": 0, "width": 4, "height": 2, "fallback": True}


@pytest.mark.parametrize(
    ("in_hw", "out_hw"),
    [
        ((270, 480), (224, 224)),  # down, more across than down
        ((100, 150), (224, 224)),  # up
        ((270, 480), (64, 64)),  # far down: the antialiasing filter is wide
        ((30, 40), (30, 40)),  # same size: exact
        ((30, 40), (60, 20)),  # up one way, down the other
        ((1, 1), (5, 3)),
        ((17, 1), (1, 9)),
    ],
)
def test_resize_matches_pillow_bilinear(in_hw, out_hw):
    image = _images(1, in_hw)[0]
    ours = to_uint8(resize(image, out_hw))
    theirs = np.asarray(Image.fromarray(image).resize(out_hw[::-1], Image.Resampling.BILINEAR))
    assert ours.shape == (*out_hw, 3)
    assert np.abs(ours.astype(int) - theirs).max() <= 1  # Pillow rounds between the passes
    if in_hw == out_hw:
        np.testing.assert_array_equal(ours, image)


def _fixed_order_rows(a: np.ndarray, size: int) -> np.ndarray:
    """The resize's promise, one float32 scalar at a time: each output is
    w0 * a0 + w1 * a1 + ..., rounded after every multiply and every add, in tap order."""
    index, weights = functional._taps(a.shape[0], size)
    out = np.zeros((size, a.shape[1]), np.float32)
    for i, j in np.ndindex(out.shape):
        total = weights[i, 0] * np.float32(a[index[i, 0], j])
        for k in range(1, index.shape[1]):
            total = np.float32(total + weights[i, k] * np.float32(a[index[i, k], j]))
        out[i, j] = total
    return out


@pytest.mark.parametrize(("in_hw", "out_hw"), [((9, 7), (4, 5)), ((3, 4), (7, 2))])
def test_float_kernels_round_in_a_fixed_order_not_blas(in_hw, out_hw):
    """Same request, same bytes on every CPU: a matmul sums in the order its BLAS kernel picks
    (the golden request's bytes moved between two machines), a fixed order does not."""
    image = _images(1, in_hw)[0]
    rows = _fixed_order_rows(image.reshape(in_hw[0], -1), out_hw[0]).reshape(out_hw[0], -1, 3)
    columns = rows.transpose(1, 0, 2).reshape(in_hw[1], -1)
    expected = _fixed_order_rows(columns, out_hw[1]).reshape(out_hw[1], out_hw[0], 3)
    assert resize(image, out_hw).tobytes() == expected.transpose(1, 0, 2).tobytes()

    x = image.astype(np.float32)
    r, g, b = functional._LUMA_FLOAT
    luma = [
        np.float32(np.float32(p[0] * r) + p[1] * g) + np.float32(p[2] * b) for p in x.reshape(-1, 3)
    ]
    assert functional._luma(x[None]).tobytes() == np.array(luma, np.float32).tobytes()


def test_resized_crop_is_pillow_crop_then_resize():
    images = _images(3, (60, 80))
    boxes = [
        {"x": 0, "y": 0, "width": 80, "height": 60, "size": [32, 48]},
        {"x": 10, "y": 5, "width": 13, "height": 40, "size": [32, 48]},
        {"x": 79, "y": 59, "width": 1, "height": 1, "size": [32, 48]},
    ]
    out = resized_crop(images, boxes)
    for image, b, resized in zip(images, boxes, out):
        x, y, w, h = b["x"], b["y"], b["width"], b["height"]
        cut = Image.fromarray(image).crop((x, y, x + w, y + h))
        theirs = np.asarray(cut.resize((48, 32), Image.Resampling.BILINEAR))
        assert np.abs(resized.astype(int) - theirs).max() <= 1


def test_rrc_records_box_and_output_size():
    op = BUILTINS["RANDOM_RESIZED_CROP"]
    params = op.params.model_validate({"size": [32, 48]})
    drawn = op.sample(params, derive_rng(0)[1], (270, 480), 0)
    assert drawn["size"] == [32, 48]
    assert set(drawn) == {"x", "y", "width", "height", "size", "fallback"}
    assert params.scale == (0.08, 1.0) and params.ratio == (3 / 4, 4 / 3)
