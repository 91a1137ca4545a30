"""The example plugin, examples/plugins/motoray_invert.py: registered, validated, run on Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from motoray.config import OperatorsConfig
from motoray.imageio import load_image
from motoray.ops import enabled, registry
from motoray.spec import RequestError, parse_requests

PLUGINS = Path(__file__).resolve().parents[2] / "examples" / "plugins"


@pytest.fixture
def plugin_path(monkeypatch):
    """examples/plugins importable here; the registry and sys.modules as they were after."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield
    sys.modules.pop("motoray_invert", None)  # so that the next test registers it afresh


def test_plugin_operator_is_enabled_next_to_the_built_ins(plugin_path):
    assert "INVERT" not in enabled()
    operators = enabled(plugins=["motoray_invert"])
    assert {"INVERT", "CROP", "GRAYSCALE"} <= set(operators)
    images = np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3)
    np.testing.assert_array_equal(operators["INVERT"].kernel(images, [{}]), 255 - images)


def test_a_request_using_the_plugin_validates(plugin_path):
    operators = enabled(plugins=["motoray_invert"])
    body = {"name": "MotoGP", "augmentations": [{"INVERT": {}, "FLIP": {}}]}
    [request] = parse_requests(body, operators, ["MotoGP"])
    assert sorted(name for name, _ in request.steps) == ["FLIP", "INVERT"]
    extra = {"name": "MotoGP", "augmentations": [{"INVERT": {"strength": 1}}]}
    with pytest.raises(RequestError, match=r"INVERT\.strength: Extra inputs are not permitted"):
        parse_requests(extra, operators)


def test_a_disabled_built_in_is_rejected_with_the_available_ones(plugin_path):
    operators = enabled(disabled=["GRAYSCALE"], plugins=["motoray_invert"])
    body = {"name": "MotoGP", "augmentations": [{"GRAYSCALE": {}}]}
    available = "COLOR_JITTER, CROP, FLIP, INVERT, RANDOM_CROP, RANDOM_RESIZED_CROP, ROTATE"
    with pytest.raises(RequestError) as info:
        parse_requests(body, operators)
    assert str(info.value) == (
        f"augmentations.0: Value error, unknown operator 'GRAYSCALE'; available: {available}"
    )


def test_a_missing_plugin_module_is_an_import_error(plugin_path):
    with pytest.raises(ModuleNotFoundError, match="motoray_nonexistent"):
        enabled(plugins=["motoray_nonexistent"])


@pytest.mark.usefixtures("ray_local", "plugin_path")
def test_plugin_end_to_end_writes_inverted_images(frames, make_config):
    """Workers cannot import examples/plugins: the pipeline ships the plugin by value."""
    from ray import cloudpickle

    from motoray.pipeline import run_job

    config = make_config(MotoGP=frames)
    config.operators = OperatorsConfig(plugins=["motoray_invert"])
    body = {"name": "MotoGP", "input_image_size": [96, 54], "augmentations": [{"INVERT": {}}]}
    [request] = parse_requests(body, enabled(plugins=config.operators.plugins), ["MotoGP"])
    record = run_job(request, config, "invert")

    assert record["state"] == "SUCCEEDED" and record["counts"]["outputs"] == 50
    job_dir = Path(config.output.uri) / "MotoGP" / "invert"
    for row in pq.read_table(job_dir / "manifest.parquet").to_pylist():
        assert row["operator"] == "INVERT"
        output = load_image((job_dir / row["output_path"]).read_bytes()).astype(float)
        frame = load_image((frames / row["source_path"]).read_bytes(), (96, 54))
        assert np.abs(output - (255 - frame.astype(float))).mean() < 5  # JPEG tolerance
    cloudpickle.unregister_pickle_by_value(sys.modules["motoray_invert"])
