"""Real-world inputs, locally and in S3 (moto's real server): every broken file is recorded with
its reason while the job succeeds, and no name (source key, source name, job id) can leave the
job folder or land on another's output."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from motoray.config import Config, LimitsConfig, OutputConfig, S3Settings, SourceConfig
from motoray.imageio import encode_jpeg, load_image
from motoray.ops import operators_for
from motoray.pipeline.layout import job_folder
from motoray.spec import RequestError, parse_requests
from motoray.storage import Storage
from motoray.storage.keys import safe_key, safe_name
from tests.conftest import run_job
from tests.corpus import (
    BACKGROUND,
    BAD_REASONS,
    GOOD_VARIANTS,
    ODD_HEADER,
    write_bad_image_corpus,
    write_good_variants,
)
from tests.s3server import S3Endpoint, s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("ray_local")


@dataclass(frozen=True)
class Place:
    """Where a test's frames and results live: a fresh local folder or a fresh S3 bucket."""

    uri: str
    settings: S3Settings = field(default_factory=S3Settings)
    s3: Any = None  # raw boto3 client when on S3

    def put(self, files: dict[str, bytes]) -> None:
        """Write exactly these names, bypassing motoray's key checks: hostile names included."""
        for key, data in files.items():
            if self.s3 is not None:
                self.s3.put_object(Bucket=self.uri.removeprefix("s3://"), Key=key, Body=data)
            else:
                path = Path(self.uri, key)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)

    def everything(self) -> list[str]:
        """Every file or object below the root, hidden ones included."""
        if self.s3 is not None:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.uri.removeprefix("s3://")
            )
            return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))
        root = Path(self.uri)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def config(self, *names: str, **limits: int) -> Config:
        """Sources `names` all read `in/`; results go to `out/`."""
        return Config(
            sources={name: SourceConfig(uri=f"{self.uri}/in") for name in names},
            output=OutputConfig(uri=f"{self.uri}/out"),
            s3=self.settings,
            limits=LimitsConfig(**limits),
        )


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "local":
        (tmp_path / "place").mkdir()
        return Place(str(tmp_path / "place"))
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    return Place(f"s3://{endpoint.new_bucket()}", endpoint.settings(), endpoint.client())


def _run(config: Config, body: dict, job_id: str) -> tuple[dict, Storage]:
    record = run_job(body, config, job_id)
    job = job_folder(config, body["name"], job_id)
    assert json.loads(job.read("job.json")) == record  # what the job wrote is what it returned
    return record, job


def _manifest(job: Storage) -> list[dict]:
    return pq.read_table(io.BytesIO(job.read("manifest.parquet"))).to_pylist()


def _files(directory: Path) -> dict[str, bytes]:
    files = (p for p in directory.rglob("*") if p.is_file())
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in files}


def _noise_jpeg(size: int) -> bytes:
    """A valid JPEG that is large in bytes: noise does not compress."""
    pixels = np.random.default_rng(7).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encode_jpeg(pixels, quality=95)


FILE_LIMIT = 150_000


def test_bad_corpus_exact_failures_and_every_good_image_processed(
    place: Place, tmp_path: Path
) -> None:
    write_bad_image_corpus(tmp_path / "corpus" / "bad")
    write_good_variants(tmp_path / "corpus" / "good")
    corpus = {f"in/{key}": data for key, data in _files(tmp_path / "corpus").items()}
    bad = {key: data for key, data in corpus.items() if key.startswith("in/bad/")}
    good = {key: data for key, data in corpus.items() if key.startswith("in/good/")}
    big = {"in/big/too_large.jpg": _noise_jpeg(400)}
    too_large = len(big["in/big/too_large.jpg"])
    # The bomb is small on disk: it must trip the pixel limit, not the file-size limit.
    assert max(len(data) for data in bad.values()) < FILE_LIMIT < too_large
    place.put(bad | good | big)
    config = place.config("corpus", max_file_bytes=FILE_LIMIT)

    record, job = _run(config, {"name": "corpus", "input_image_size": [64, 48]}, "corpus")

    assert record["state"] == "SUCCEEDED"
    expected = {f"bad/{name}": reason for name, reason in BAD_REASONS.items()}
    expected["big/too_large.jpg"] = f"file too large: {too_large} bytes > limit {FILE_LIMIT}"
    failures = record["failures"]
    assert [f["source_path"] for f in failures] == sorted(expected)  # exactly these, sorted
    for failure in failures:
        assert expected[failure["source_path"]] in failure["reason"], failure
    assert failures[0] == {"source_path": "bad/bomb.png", "reason": expected["bad/bomb.png"]}
    assert record["counts"] == {
        "images_total": len(bad) + len(good) + 1,
        "images_done": len(bad) + len(good) + 1,
        "images_failed": len(bad) + 1,
        "outputs": len(good),
        "splits": {"all": {"images": len(good), "outputs": len(good)}},
    }

    # Every good variant came out upright, the right colours, at the requested size; the one
    # with an odd header says so in the manifest's notes.
    rows = {row["source_path"]: row for row in _manifest(job)}
    assert sorted(rows) == sorted(f"good/{name}" for name in GOOD_VARIANTS)
    noted = {key: row["notes"] for key, row in rows.items() if row["notes"] is not None}
    assert noted == {f"good/{ODD_HEADER[0]}": ODD_HEADER[1]}
    for name, (marker, background) in GOOD_VARIANTS.items():
        image = load_image(job.read(rows[f"good/{name}"]["output_path"]))
        assert image.shape == (48, 64, 3), name
        inner_marker = image[3:13, 3:13].reshape(-1, 3).mean(0)  # away from JPEG ringing
        np.testing.assert_allclose(inner_marker, marker, atol=16, err_msg=name)
        inner_background = image[BACKGROUND][3:-3, 3:-3].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(inner_background, background, atol=16, err_msg=name)


def test_pixel_limit_is_configurable(place: Place) -> None:
    large, small = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(large, format="PNG")
    Image.new("RGB", (32, 24), (200, 10, 10)).save(small, format="PNG")
    place.put({"in/large.png": large.getvalue(), "in/small.png": small.getvalue()})
    config = place.config("limits", max_image_pixels=3000)  # 64x48 = 3072 pixels

    record, job = _run(config, {"name": "limits"}, "pixels")

    assert record["failures"] == [
        {"source_path": "large.png", "reason": "image too large: 64x48 pixels > limit 3000"}
    ]
    assert [row["source_path"] for row in _manifest(job)] == ["small.png"]


# Names real folders and buckets contain: all must be processed, none may meet another's output.
AWKWARD_KEYS = [
    "cam a/frame 1.jpg",
    "cam b/frame 1.jpg",  # the same file name in another folder
    "cam a/frame_1.jpg",  # sanitises to what "frame 1" does
    "über/straße.jpg",
    "日本/フレーム.jpg",
    "e\u0301t\u00e9/frame.jpg",  # decomposed and composed accents
    "emoji 🏍/frame.jpg",
    "a..b/frame..1.jpg",
    "%2e%2e/frame.jpg",  # URL-encoded "..", literal here
    "dots.../frame.JPG",
    "x" * 200 + ".jpg",
]
# Hidden names are not listed; names that would leave the root or be rewritten by a key
# check are listed and refused, so they are recorded rather than silently skipped.
HIDDEN = {"local": [".hidden.jpg", ".git/frame.jpg"], "s3": [".hidden.jpg"]}
REFUSED = {
    "local": ["back\\slash.jpg"],
    "s3": ["../escape.jpg", "./dot.jpg", "a//b.jpg", "back\\slash.jpg"],
}


def _colour(i: int) -> tuple[int, int, int]:
    return (i * 67 % 256, i * 139 % 256, 255 - i * 23 % 256)


def test_awkward_source_keys_stay_inside_the_job_folder_and_apart(place: Place) -> None:
    kind = "local" if place.s3 is None else "s3"
    images = {
        key: encode_jpeg(np.full((16, 16, 3), _colour(i), np.uint8), quality=95)
        for i, key in enumerate(AWKWARD_KEYS)
    }
    hostile = {key: images[AWKWARD_KEYS[0]] for key in HIDDEN[kind] + REFUSED[kind]}
    place.put({f"in/{key}": data for key, data in (images | hostile).items()})
    config = place.config("weird")

    record, job = _run(config, {"name": "weird", "input_image_size": [16, 16]}, "awkward")

    assert record["state"] == "SUCCEEDED"
    assert {f["source_path"] for f in record["failures"]} == set(REFUSED[kind])
    assert all(f["reason"].startswith("refused: ") for f in record["failures"])
    rows = _manifest(job)
    assert sorted(row["source_path"] for row in rows) == sorted(images)  # no hostile one made
    outputs = [row["output_path"] for row in rows]
    assert len(set(outputs)) == len(outputs)
    for row in rows:
        # One plain segment below the split folder, whatever the source key was.
        split, name = row["output_path"].split("/")
        assert split == "all" and safe_key(name) == name and not name.startswith(".")
        assert len(name.encode()) < 255
        # ...and it holds this key's own picture, not a neighbour's that was written over it.
        colour = _colour(AWKWARD_KEYS.index(row["source_path"]))
        image = load_image(job.read(row["output_path"]))
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), colour, atol=4)

    written = [key for key in place.everything() if not key.startswith("in/")]
    expected = [f"out/weird/awkward/{p}" for p in (*outputs, "manifest.parquet", "job.json")]
    assert written == sorted(expected)


HOSTILE_JOB_IDS = [
    "../escape",
    "../../../../tmp/escape",
    "..",
    ".",
    "",
    "/abs",
    "a/b",
    "a_b",
    "x y",
    "x_y",
    "\\..\\win",
    ".hidden",
    "日本語",
    "e\u0301",
    "\u00e9",
    "x" * 300,
    "x" * 301,
]


def test_job_ids_are_made_safe_and_stay_distinct(tmp_path: Path) -> None:
    config = Config(output=OutputConfig(uri=str(tmp_path / "out")))
    root = tmp_path.resolve() / "out" / "MotoGP"
    folders = [Path(job_folder(config, "MotoGP", job_id).uri) for job_id in HOSTILE_JOB_IDS]
    assert len(set(folders)) == len(folders)
    for folder in folders:
        assert folder.parent == root, folder  # one level below the source folder, always
        assert folder.name not in ("", ".", "..") and not folder.name.startswith(".")
        assert len(folder.name.encode()) <= 80
    assert [safe_name(n) for n in ("MotoGP", "seed", "20250101-120000-a1b2c3")] == [
        "MotoGP",
        "seed",
        "20250101-120000-a1b2c3",
    ]  # ordinary names are kept as they are


def test_hostile_job_ids_and_source_names_end_to_end(tmp_path: Path) -> None:
    frame = encode_jpeg(np.full((18, 32, 3), 90, np.uint8))
    place = Place(str(tmp_path / "place"))
    place.put({"in/frame.jpg": frame})
    # Source names differing only in what sanitising replaces are still two folders.
    config = place.config("Moto GP", "Moto_GP")

    for name, job_id in [
        ("Moto GP", "../../escape"),
        ("Moto_GP", "../../escape"),
        ("Moto GP", "a/b"),
    ]:
        record, job = _run(config, {"name": name}, job_id)
        assert record["state"] == "SUCCEEDED" and record["counts"]["outputs"] == 1
        assert Path(job.uri).parent.parent == (tmp_path / "place" / "out").resolve()

    written = place.everything()
    assert len(written) == 1 + 3 * 3  # the frame; per job one output, manifest and job.json
    assert all(key.startswith(("in/", "out/")) for key in written)
    assert sorted(os.listdir(tmp_path)) == ["place"]  # nothing escaped next to the root
    assert len({key.split("/")[1] for key in written if key.startswith("out/")}) == 2

    # A request cannot name a source with a path in it: refused before anything runs.
    with pytest.raises(RequestError):
        parse_requests({"name": "../Moto GP"}, operators_for(), [*config.sources, "../Moto GP"])


def test_local_results_are_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    place = Place(str(tmp_path / "place"))
    place.put({"in/frame.jpg": encode_jpeg(np.full((18, 32, 3), 90, np.uint8))})
    old = os.umask(0o022)
    try:
        _, job = _run(place.config("MotoGP"), {"name": "MotoGP"}, "modes")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in Path(job.uri).rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o644}, modes  # not 0600: datasets are shared
