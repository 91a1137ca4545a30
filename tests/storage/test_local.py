"""LocalStorage's errors are the storage's: a folder it cannot list, or a file it may not
read, raises (and so fails a job) instead of quietly leaving images out."""

from __future__ import annotations

from pathlib import Path

import pytest

from motoray.storage import LocalStorage
from tests.capabilities import can_drop, without_file_permission_override

pytestmark = pytest.mark.skipif(not can_drop(), reason="per-thread capabilities: Linux")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Two readable folders and one that nobody without an override may list."""
    for key in ("a/1.jpg", "b/2.jpg", "locked/3.jpg", "4.jpg"):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"jpeg")
    (tmp_path / "locked").chmod(0)
    yield tmp_path
    (tmp_path / "locked").chmod(0o755)  # so that pytest can remove it


def test_the_fixture_really_locks_a_folder(source: Path) -> None:
    """The test below means something: this thread (root) may list it, a bound one may not."""
    assert LocalStorage(source).list() == ["4.jpg", "a/1.jpg", "b/2.jpg", "locked/3.jpg"]
    with pytest.raises(PermissionError):
        without_file_permission_override(lambda: list((source / "locked").iterdir()))


def test_a_folder_that_cannot_be_listed_fails_the_listing(source: Path) -> None:
    storage = LocalStorage(source)
    with pytest.raises(PermissionError, match=r"cannot list source folder .*locked"):
        without_file_permission_override(storage.list)


def test_an_unreadable_root_fails_the_listing(source: Path) -> None:
    storage = LocalStorage(source / "locked")
    with pytest.raises(PermissionError, match="cannot list source folder"):
        without_file_permission_override(storage.list)


def test_a_file_that_may_not_be_read_raises_not_refused(source: Path) -> None:
    """A PermissionError (the storage's), not Refused (the file's, recorded per image)."""
    (source / "a" / "1.jpg").chmod(0)
    storage = LocalStorage(source)
    with pytest.raises(PermissionError):
        without_file_permission_override(lambda: storage.read("a/1.jpg"))
