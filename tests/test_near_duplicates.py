"""Near-duplicates without a cluster: the pHash kernel against imagehash, banded candidates
against all pairs, the merge through the split, the sidecar, the replays' shot ids, the
request's checks."""

from __future__ import annotations

import io
import itertools

import imagehash
import numpy as np
import pytest
from PIL import Image

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.imageio import encode_jpeg, load_image
from motoray.near_duplicates import cache, lsh
from motoray.near_duplicates.hashing import SCHEMA
from motoray.near_duplicates.phash import (
    _grey_jpeg,
    centre,
    grey_32,
    grey_32_of_bytes,
    hamming,
    phash,
)
from motoray.ops import operators_for
from motoray.sample_data import render_frame
from motoray.sample_replays import draw_shot, read_shot, shot_id
from motoray.spec import RequestError, TrainTestSplit, parse_one_for, parse_requests
from motoray.split import assign
from motoray.storage import open_storage


def _jpegs(count: int = 12, size=(1280, 720)) -> list[bytes]:
    return [encode_jpeg(render_frame(i * 7, size), 90) for i in range(count)]


def test_the_kernel_gives_imagehash_phash_bit_for_bit():
    for data in _jpegs():
        image = Image.open(io.BytesIO(data))
        grey = grey_32(image)
        expected = int(str(imagehash.phash(centre(image))), 16)
        assert int(phash(grey)) == expected
    stack = np.stack([grey_32(Image.open(io.BytesIO(d))) for d in _jpegs(4)])
    assert [int(h) for h in phash(stack)] == [int(phash(g)) for g in stack]  # vectorised


def test_the_reduced_scale_decode_stays_within_two_bits_of_imagehash():
    # A JPEG decoded at 1/8 scale (its DCT does the shrinking), against imagehash on the
    # full-size decode: the cheap path must not move hashes apart.
    distances = []
    for data in _jpegs():
        grey, pixels = grey_32_of_bytes(data, 10**8)
        reference = int(str(imagehash.phash(centre(Image.open(io.BytesIO(data))))), 16)
        distances.append(int(hamming(phash(grey), reference)))
        assert pixels == 1280 * 720
    assert max(distances) <= 2, distances


def _pillow_grey(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (53, 53))  # what grey_32_of_bytes asks of Pillow
        return grey_32(image)


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (300, 200), (40, 30)])
def test_the_libjpeg_grey_decode_has_pillows_draft_pixels(size):
    # Every scale draft() picks (1/8 down to 1/1): the same pixels, so the same bits.
    for data in _jpegs(3, size):
        assert _grey_jpeg(data, 10**8) is not None
        grey, pixels = grey_32_of_bytes(data, 10**8)
        assert np.array_equal(grey, _pillow_grey(data)) and pixels == size[0] * size[1]


def test_what_libjpeg_cannot_decode_cleanly_is_left_to_pillow():
    frame = render_frame(3, (320, 180))
    png = io.BytesIO()
    Image.fromarray(frame).save(png, "PNG")
    cmyk = io.BytesIO()
    Image.fromarray(frame).convert("CMYK").save(cmyk, "JPEG")
    for data in (png.getvalue(), cmyk.getvalue()):
        assert _grey_jpeg(data, 10**8) is None
        assert np.array_equal(grey_32_of_bytes(data, 10**8)[0], _pillow_grey(data))
    cut = _jpegs(1)[0][:-5000]
    assert _grey_jpeg(cut, 10**8) is None
    with pytest.raises(OSError):  # truncated: Pillow refuses it, as before
        grey_32_of_bytes(cut, 10**8)


def test_an_undecodable_or_oversized_file_raises():
    with pytest.raises(Exception):  # noqa: B017 - whatever Pillow raises; the caller records it
        grey_32_of_bytes(b"\xff\xd8\xff not a jpeg", 10**8)
    with pytest.raises(ValueError, match="max_image_pixels"):
        grey_32_of_bytes(_jpegs(1)[0], 1000)


@pytest.mark.parametrize("max_distance", [0, 1, 3, 6, 10, 12, 20])
@pytest.mark.parametrize("at_once", [lsh.COMPARED_AT_ONCE, 7])  # a run compared in slices
def test_banded_candidates_find_exactly_the_pairs_all_pairs_would(
    max_distance, at_once, monkeypatch
):
    monkeypatch.setattr(lsh, "COMPARED_AT_ONCE", at_once)
    rng = np.random.default_rng(max_distance)
    seeds = rng.integers(0, 2**63, size=60, dtype=np.uint64)
    hashes = list(seeds)
    for base in seeds[:30]:  # copies at every distance around the threshold
        for flips in (max_distance, max_distance + 1, rng.integers(0, 20)):
            bits = rng.choice(64, size=int(flips), replace=False)
            hashes.append(base ^ np.uint64(sum(1 << int(b) for b in bits)))
    hashes.append(seeds[0])  # an identical hash
    # Many hashes sharing every band but the last's value: one long run in each band.
    hashes += [np.uint64(v) for v in rng.integers(0, 2**10, size=40, dtype=np.uint64)]
    hashes = np.array(hashes, dtype=np.uint64)
    groups = np.arange(len(hashes))
    unique, _, _, _ = lsh.collapse(hashes, groups, np.zeros(len(hashes), dtype=np.int64))
    found = []
    for band in range(max_distance + 1):
        a, b = lsh.band_pairs(unique, band, max_distance)
        found += list(zip(a.tolist(), b.tolist()))
    assert len(found) == len(set(found))  # each pair in one band only
    every = {
        (i, j)
        for i, j in itertools.combinations(range(len(unique.hashes)), 2)
        if hamming(unique.hashes[i], unique.hashes[j]) <= max_distance
    }
    assert set(found) == every


def test_identical_hashes_join_their_groups_and_count_pairs_across_splits():
    hashes = np.array([5, 5, 5, 9], dtype=np.uint64)
    groups = np.array([2, 0, 1, 3])
    splits = np.array([0, 2, 0, 2])  # train, test, train, test
    unique, a, b, across = lsh.collapse(hashes, groups, splits)
    assert unique.hashes.tolist() == [5, 9] and unique.group.tolist() == [0, 3]
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 1), (0, 2)]
    assert across == 2  # the test image of hash 5 with each of its two train copies


def test_union_find_names_components_by_their_smallest_node_whatever_the_order():
    edges = [("c", "b"), ("e", "d"), ("b", "a"), ("x", "y")]
    names = []
    for order in itertools.permutations(edges):
        union = lsh.UnionFind()
        for a, b in order:
            union.union(a, b)
        names.append(union.components())
    assert all(n == names[0] for n in names)
    assert names[0] == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", "x": "x", "y": "x"}


def test_merged_groups_share_a_split_and_the_rest_is_as_without():
    keys = [f"live/clip{c}/f{f}.jpg" for c in range(20) for f in range(3)]
    keys += [f"replays/r{r}/f{f}.jpg" for r in range(5) for f in range(3)]
    split = TrainTestSplit(train_ratio=80, test_ratio=20, group_by="folder")
    alone = assign(keys, split, seed=1)
    merged = {f"replays/r{r}": f"live/clip{r}" for r in range(5)}
    merged |= {f"live/clip{r}": f"live/clip{r}" for r in range(5)}
    together = assign(keys, split, seed=1, merged=merged)
    for r in range(5):
        assert together.split[f"replays/r{r}/f0.jpg"] == together.split[f"live/clip{r}/f0.jpg"]
        assert together.group[f"replays/r{r}/f1.jpg"] == f"live/clip{r}"
    assert assign(keys, split, seed=1, merged={}).split == alone.split
    # A one-image group merged is named by its key; one not merged stays a group of its own.
    single = TrainTestSplit(train_ratio=50, test_ratio=50)
    placed = assign(["a.jpg", "b.jpg", "c.jpg"], single, seed=0, merged={"b.jpg": "a.jpg"})
    assert placed.group == {"a.jpg": None, "b.jpg": "a.jpg", "c.jpg": None}


def test_the_sidecar_keeps_other_items_and_ignores_a_damaged_file(tmp_path):
    config = Config(
        sources={"s": SourceConfig(uri=str(tmp_path))},
        output=OutputConfig(uri=str(tmp_path / "out")),
    )
    folder, key = cache.sidecar(config, "s")
    assert cache.load(folder, key).num_rows == 0  # none yet

    def rows(items, version):
        table = {"item": items, "version": [version] * len(items), "key": items,
                 "hash": list(range(len(items))), "pixels": [1] * len(items)}  # fmt: skip
        return SCHEMA.empty_table().from_pydict(table, schema=SCHEMA)

    cache.save(folder, key, cache.load(folder, key), rows(["a", "b"], "v1"))
    cache.save(folder, key, cache.load(folder, key), rows(["b", "c"], "v2"))
    kept = cache.load(folder, key)
    assert sorted(zip(kept["item"].to_pylist(), kept["version"].to_pylist())) == [
        ("a", "v1"), ("b", "v2"), ("c", "v2")
    ]  # fmt: skip
    assert (tmp_path / "out/.motoray/near_duplicates/s.v1.parquet").exists()
    open_storage(str(tmp_path / "out/.motoray/near_duplicates")).write(key, b"not parquet")
    assert cache.load(folder, key).num_rows == 0


def test_shot_ids_survive_resizing_and_re_encoding():
    for clip, frame in [(0, 0), (3, 5), (200, 4095)]:
        image = render_frame(clip * 10, (640, 360))
        draw_shot(image, shot_id(clip, frame))
        for size, quality in [((640, 360), 90), ((320, 180), 40), ((480, 270), 75)]:
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
            again = load_image(encode_jpeg(small, quality))
            assert read_shot(again, 360) == shot_id(clip, frame)


def _near(split: dict, source: SourceConfig | None = None) -> list[dict]:
    body = {"name": "s", "input_image_size": [64, 64], "train_test_split": split}
    config = Config(sources={"s": source or SourceConfig(uri="frames/")})
    with pytest.raises(RequestError) as info:
        parse_one_for(config, body)
    assert info.value.status == 422
    return info.value.errors


@pytest.mark.parametrize("bad", [-1, 13, "6", 6.5, True, 10**30])
def test_a_bad_max_distance_is_a_422_naming_the_field(bad):
    split = {"train_ratio": 80, "test_ratio": 20, "near_duplicates": {"max_distance": bad}}
    [error] = _near(split)
    assert error["loc"][-3:] == ["train_test_split", "near_duplicates", "max_distance"]


def test_unknown_options_and_dedupe_on_video_are_refused_naming_the_field():
    split = {"train_ratio": 80, "test_ratio": 20, "near_duplicates": {"distance": 3}}
    [error] = _near(split)
    assert error["loc"][-2:] == ["near_duplicates", "distance"]
    split = {"train_ratio": 80, "test_ratio": 20, "near_duplicates": {"dedupe": True}}
    video = SourceConfig(uri="race/", kind="video", frames={"every_s": 1})
    [error] = _near(split, video)
    assert error["loc"] == ["train_test_split", "near_duplicates", "dedupe"]
    assert "video source" in error["msg"]


def test_the_default_and_a_request_without_it_dump_as_before():
    body = {"name": "s", "input_image_size": [64, 64],
            "train_test_split": {"train_ratio": 80, "test_ratio": 20}}  # fmt: skip
    [request] = parse_requests(body, operators_for(), ["s"])
    assert "near_duplicates" not in request.model_dump(mode="json")["train_test_split"]
    body["train_test_split"]["near_duplicates"] = {}
    [request] = parse_requests(body, operators_for(), ["s"])
    near = request.train_test_split.near_duplicates
    assert (near.max_distance, near.dedupe) == (6, False)


@pytest.mark.slow  # starts a Ray of its own
def test_the_bench_measures_and_records_its_block_and_the_page_shows_it(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from docgen.benchmarks import near_duplicates
    from tests.conftest import REPO

    result = tmp_path / "result.json"
    result.write_text(json.dumps({"images": 1, "near_duplicates": {"stale": True}}))
    command = [
        sys.executable, "-m", "benchmarks.near_duplicates", "--images", "12", "--rounds", "1",
        "--rss-images", "30", "--rss-frame", "64x36", "--workers", "2",
        "--work", str(tmp_path / "work"), "--record", str(result),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    recorded = json.loads(result.read_text())
    assert recorded["images"] == 1  # the rest of the file kept; the block replaced
    block = recorded["near_duplicates"]
    assert block["images"] == 12 and block["rounds"] == 1
    assert all(len(block["seconds"][v]) == 1 for v in ("without", "first", "rerun"))
    assert block["driver_peak_rss"]["images"] == 30 and block["driver_peak_rss"]["ratio"] > 0
    assert block["driver_peak_rss"]["frame"] == [64, 36]
    assert len(list((tmp_path / "work/frames-30-64x36").iterdir())) == 30
    assert len(list((tmp_path / "work/frames-12").iterdir())) == 12  # timed: 1280x720
    page = near_duplicates(recorded)
    assert f"**{block['ratios_median']['first / without']}**" in page
    assert f"**{block['driver_peak_rss']['ratio']}**" in page

    # --rss-images 0: new rounds, the memory line kept from the run before, dated.
    command[command.index("--rss-images") + 1] = "0"
    done = subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = json.loads(result.read_text())["near_duplicates"]
    assert (
        again["run"]["date"] >= block["run"]["date"] and "--rss-images 0" in again["run"]["command"]
    )
    kept = again["driver_peak_rss"]
    assert kept == {"measured": block["run"]["date"], **block["driver_peak_rss"]}
    assert f"(run of {block['run']['date']})" in near_duplicates({"near_duplicates": again})
