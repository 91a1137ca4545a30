"""Plugins: examples/plugins/motoray_invert.py by module path and by entry point, enabled and
disabled per config, validated, run on Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from motoray.config import OperatorsConfig
from motoray.imageio import load_image
from motoray.ops import BUILTINS, operators_for
from motoray.spec import RequestError, parse_requests
from tests.conftest import run_job

PLUGINS = Path(__file__).resolve().parents[2] / "examples" / "plugins"
INVERT = OperatorsConfig(plugins=["motoray_invert"])


@pytest.fixture
def plugin_path(monkeypatch):
    """examples/plugins importable here; sys.modules as it was after."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield
    sys.modules.pop("motoray_invert", None)


def test_plugin_operator_is_enabled_next_to_the_built_ins(plugin_path):
    assert "INVERT" not in operators_for()
    operators = operators_for(INVERT)
    assert {"INVERT", "CROP", "GRAYSCALE"} <= set(operators)
    images = np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3)
    np.testing.assert_array_equal(operators["INVERT"].kernel(images, [{}]), 255 - images)


def test_the_set_follows_the_config_both_ways(plugin_path):
    """Once imported, a plugin is still gone when the config no longer names it."""
    assert "INVERT" in operators_for(INVERT)
    assert "INVERT" not in operators_for(OperatorsConfig(plugins=[]))
    assert "motoray_invert" in sys.modules
    assert set(operators_for()) == set(BUILTINS)


def test_a_plugin_found_by_its_entry_point(plugin_path, tmp_path, monkeypatch):
    """An installed package advertises its operator in the `motoray.operators` group."""
    dist = tmp_path / "motoray_invert_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: motoray-invert-pkg\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[motoray.operators]\ninvert = motoray_invert:OPERATOR\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    operators = operators_for(OperatorsConfig(plugins=["invert"]))
    assert operators["INVERT"].description.startswith("The negative")


def test_a_request_using_the_plugin_validates(plugin_path):
    operators = operators_for(INVERT)
    body = {"name": "MotoGP", "augmentations": [{"INVERT": {}, "FLIP": {}}]}
    [request] = parse_requests(body, operators, ["MotoGP"])
    assert sorted(name for name, _ in request.steps) == ["FLIP", "INVERT"]
    extra = {"name": "MotoGP", "augmentations": [{"INVERT": {"strength": 1}}]}
    with pytest.raises(RequestError, match=r"INVERT\.strength: Extra inputs are not permitted"):
        parse_requests(extra, operators)


def test_a_disabled_built_in_is_rejected_with_the_available_ones(plugin_path):
    operators = operators_for(OperatorsConfig(disabled=["GRAYSCALE"], plugins=["motoray_invert"]))
    body = {"name": "MotoGP", "augmentations": [{"GRAYSCALE": {}}]}
    available = "COLOR_JITTER, CROP, FLIP, INVERT, RANDOM_CROP, RANDOM_RESIZED_CROP, ROTATE"
    with pytest.raises(RequestError) as info:
        parse_requests(body, operators)
    assert str(info.value) == (
        f"augmentations.0: Value error, unknown operator 'GRAYSCALE'; available: {available}"
    )


def test_a_missing_or_empty_plugin_module_is_a_clear_error(plugin_path):
    with pytest.raises(ModuleNotFoundError, match="motoray_nonexistent"):
        operators_for(OperatorsConfig(plugins=["motoray_nonexistent"]))
    with pytest.raises(TypeError, match="plugin 'json' defines no OPERATOR"):
        operators_for(OperatorsConfig(plugins=["json"]))


@pytest.mark.usefixtures("ray_local", "plugin_path")
def test_plugin_end_to_end_writes_inverted_images(frames, make_config):
    """Workers cannot import examples/plugins: the pipeline ships the plugin by value."""
    from ray import cloudpickle

    config = make_config(MotoGP=frames)
    config.operators = INVERT
    body = {"name": "MotoGP", "input_image_size": [96, 54], "augmentations": [{"INVERT": {}}]}
    record = run_job(body, config, "invert")

    assert record["state"] == "SUCCEEDED" and record["counts"]["outputs"] == 50
    job_dir = Path(config.output.uri) / "MotoGP" / "invert"
    for row in pq.read_table(job_dir / "manifest.parquet").to_pylist():
        assert row["operator"] == "INVERT"
        output = load_image((job_dir / row["output_path"]).read_bytes()).astype(float)
        frame = load_image((frames / row["source_path"]).read_bytes(), (96, 54))
        assert np.abs(output - (255 - frame.astype(float))).mean() < 5  # JPEG tolerance
    cloudpickle.unregister_pickle_by_value(sys.modules["motoray_invert"])
