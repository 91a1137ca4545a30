"""Output bytes pinned: fixed 40-frame inputs, fixed requests, committed digests.

A refactor or a speed-up must not change one output byte. The digests are split so a
deliberate change says what it changed: `pixels` covers every output file's bytes and what
the manifest says made it (source, split, operator, params), `names` covers where the files
went. The input frames are generated (deterministic), and their own digest is checked first:
if it moves, a dependency changed the inputs, not motoray its outputs.

Regenerate (only for an intended change, and say so in the commit):
    MOTORAY_GOLDEN_WRITE=1 .venv/bin/pytest tests/test_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from motoray.sample_data import write_sample_frames
from tests.conftest import EXAMPLES, run_request

pytestmark = pytest.mark.usefixtures("ray_local")

DIGESTS = Path(__file__).with_name("golden.json")
FRAMES, SIZE = 40, (960, 540)
EVERY_OPERATOR = {
    "name": "MotoGP",
    "input_image_size": [320, 180],
    "augmentations": [
        {
            "CROP": {"crop_dimensions": [[96, 128], [180, 180]], "crop_type": "bottom_right"},
            "FLIP": {"direction": "vertical"},
            "GRAYSCALE": {},
        },
        {"ROTATE": {"angle": 90}, "COLOR_JITTER": {"brightness": [0.5, 1.5], "target_count": 2}},
        {"RANDOM_RESIZED_CROP": {"size": [64, 48], "target_count": 2}},
        {"CHAIN": [{"RANDOM_CROP": {"crop_dimensions": [100, 100], "target_count": 2}},
                   {"ROTATE": {"angle": 270}}]},
    ],
    "train_test_split": {"train_ratio": 70, "validation_ratio": 10, "test_ratio": 20},
    "include_original": True,
    "seed": 7,
}  # fmt: skip
REQUESTS = {
    "seed_sample": json.loads((EXAMPLES / "seed_sample.json").read_text())[0],
    "every_operator": EVERY_OPERATOR,
    "webdataset": {**EVERY_OPERATOR, "output": {"format": "webdataset", "shard_size_mb": 1}},
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inputs_digest(paths: list[Path]) -> str:
    return _sha("".join(_sha(p.read_bytes()) for p in paths).encode())


def _digests(job_dir: Path) -> dict[str, str]:
    manifest = pq.read_table(job_dir / "manifest.parquet").to_pylist()
    # job.json holds timings; the manifest's own bytes are covered row by row.
    files = sorted(p for p in job_dir.rglob("*") if p.is_file() and p.suffix in (".jpg", ".tar"))
    made = sorted(
        json.dumps([r["source_path"], r["split"], r["operator"], r["params"]]) for r in manifest
    )
    return {
        "pixels": _sha(json.dumps([sorted(_sha(p.read_bytes()) for p in files), made]).encode()),
        "names": _sha("\n".join(str(p.relative_to(job_dir)) for p in files).encode()),
        "manifest": _sha(json.dumps(manifest, sort_keys=True).encode()),
    }


@pytest.fixture(scope="module")
def golden_frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("golden") / "MotoGP"
    paths = write_sample_frames(folder, FRAMES, SIZE)
    inputs = _inputs_digest(paths)
    expected = json.loads(DIGESTS.read_text())["inputs"] if DIGESTS.exists() else inputs
    assert inputs == expected, "sample_data now writes other frames: a dependency changed them"
    return folder


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_outputs_match_the_committed_digest(name, golden_frames, make_config):
    import ray

    # As in a fresh driver: the job must ask for ordered results itself.
    ray.data.DataContext.get_current().execution_options.preserve_order = False
    record, job_dir = run_request(make_config(MotoGP=golden_frames), REQUESTS[name], name)
    assert record["state"] == "SUCCEEDED" and record["counts"]["images_failed"] == 0
    got = _digests(job_dir)
    if os.environ.get("MOTORAY_GOLDEN_WRITE"):
        known = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
        known.update(inputs=_inputs_digest(sorted(golden_frames.iterdir())), **{name: got})
        DIGESTS.write_text(json.dumps(dict(sorted(known.items())), indent=2) + "\n")
    assert got == json.loads(DIGESTS.read_text())[name]
