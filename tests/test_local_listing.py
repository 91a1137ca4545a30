"""A local tree listed by Ray tasks per folder subtree: the same keys as LocalStorage.list
(each once), on a tree with hostile names, links and hidden entries; a folder that cannot
be listed fails the listing, in the driver's top levels or in a task."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

from motoray.pipeline import local_listing
from motoray.pipeline.listing import Listed
from motoray.pipeline.local_listing import local_keys
from motoray.storage import LocalStorage
from tests.capabilities import can_drop, without_file_permission_override

EXTENSIONS = (".jpg", ".png")


def _keys(dataset: ray.data.Dataset) -> list[str]:
    return [row["key"] for row in dataset.take_all()]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    names = [
        "top.jpg", "UPPER.JPG", "notes.txt", ".hidden.jpg",
        "a b/c d/e f.jpg", "ünï/日本/\U0001f3cd.png", "amp&<x>/q'\"uote.jpg",
        ".git/objects/x.jpg", "deep/1/2/3/4/5/6/deep.jpg", "deep/1/.h/x.jpg",
        *(f"video{v:03d}/frame_{f:03d}.jpg" for v in range(30) for f in range(7)),
        *(f"season/race{r}/cam{c}/f{f}.jpg" for r in range(3) for c in range(4) for f in range(3)),
    ]  # fmt: skip
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / os.fsdecode(b"bad\xffname.jpg")).write_bytes(b"x")  # not UTF-8: spelt "\xff"
    (root / "bad\\xffname.jpg").write_bytes(b"x")  # the same key: listed once
    (root / "link-to-folder").symlink_to(root / "video001")  # not followed
    (root / "season" / "race0" / "link-up").symlink_to(root)  # a loop: not followed
    (root / "link-to-file.jpg").symlink_to(root / "top.jpg")  # listed (refused when read)
    (root / "broken.jpg").symlink_to(root / "nowhere.jpg")
    return root


def test_tasks_list_the_keys_local_storage_lists_each_once(tree, ray_local):
    expected = LocalStorage(tree).list(EXTENSIONS)
    assert "link-to-folder/frame_000.jpg" not in expected and len(expected) > 250
    found = _keys(local_keys(LocalStorage(tree), EXTENSIONS))
    assert len(found) == len(set(found)) and sorted(found) == expected


@pytest.mark.parametrize("enough", [1, 3, 1000])  # subtrees from level 1, 2 or 3
def test_subtrees_cut_at_any_level_give_the_same_keys(tree, ray_local, monkeypatch, enough):
    monkeypatch.setattr(local_listing, "SUBTREES_PER_CPU", enough)
    found = _keys(local_keys(LocalStorage(tree), EXTENSIONS))
    assert len(found) == len(set(found)) and sorted(found) == LocalStorage(tree).list(EXTENSIONS)


def test_a_subtree_that_cannot_be_listed_fails_its_task(tree, ray_local):
    """A folder gone (or unreadable) by the time its task walks it: the listing fails, it is
    not a smaller listing."""
    ref = local_listing._listed.remote(tree, [tree / "video001", tree / "gone"], (".jpg",))
    with pytest.raises(OSError, match="cannot list source folder"):
        ray.get(ref)


@pytest.mark.skipif(not can_drop(), reason="per-thread capabilities: Linux")
def test_a_folder_the_driver_cannot_list_fails_the_listing(tree, ray_local, monkeypatch):
    monkeypatch.setattr(local_listing, "SUBTREES_PER_CPU", 1000)  # the driver walks level 2
    (tree / "season").chmod(0)
    try:
        with pytest.raises(PermissionError, match=r"cannot list source folder .*season"):
            without_file_permission_override(lambda: local_keys(LocalStorage(tree), EXTENSIONS))
    finally:
        (tree / "season").chmod(0o755)


def test_a_missing_root_is_an_error(tmp_path, ray_local):
    with pytest.raises(FileNotFoundError, match="source folder does not exist"):
        local_keys(LocalStorage(tmp_path / "none"), EXTENSIONS)


@pytest.mark.parametrize("tasks_from", [0, 10**9])  # subtrees by tasks, or all walked here
def test_a_jobs_listing_is_local_storages_whoever_walks(tree, ray_local, monkeypatch, tasks_from):
    monkeypatch.setattr(local_listing, "LOCAL_TASKS_FROM", tasks_from)
    listed = local_listing.local_versions(LocalStorage(tree), EXTENSIONS)
    assert listed == LocalStorage(tree).list_versions(EXTENSIONS)
    assert list(listed) == LocalStorage(tree).list(EXTENSIONS)  # sorted, as a job expects


@pytest.mark.parametrize("tasks_from", [0, 10**9])
def test_a_spread_jobs_listing_is_held_by_ray_from_its_threshold_on(
    tree, ray_local, monkeypatch, tasks_from
):
    """At `spread_from` keys or more the listing stays in Ray's blocks, in key order; below
    it, the keys come back as local_versions gives them."""
    monkeypatch.setattr(local_listing, "LOCAL_TASKS_FROM", tasks_from)
    expected = LocalStorage(tree).list_versions(EXTENSIONS)
    storage = LocalStorage(tree)
    assert local_listing.local_versions(storage, EXTENSIONS, len(expected) + 1) == expected
    held = local_listing.local_versions(storage, EXTENSIONS, len(expected))
    assert isinstance(held, Listed) and held.count == len(expected)
    assert _keys(held.keys) == list(expected)
