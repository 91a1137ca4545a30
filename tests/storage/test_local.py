"""LocalStorage's errors are the storage's: a folder it cannot list, or a file it may not
read, raises (and so fails a job) instead of quietly leaving images out. What is wrong with
one entry (a link loop, a name that is not UTF-8) is Refused: recorded per image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from motoray.seeding import stable_hash
from motoray.storage import LocalStorage, Refused
from tests.capabilities import can_drop, without_file_permission_override

needs_drop = pytest.mark.skipif(not can_drop(), reason="per-thread capabilities: Linux")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Two readable folders and one that nobody without an override may list."""
    for key in ("a/1.jpg", "b/2.jpg", "locked/3.jpg", "4.jpg"):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"jpeg")
    (tmp_path / "locked").chmod(0)
    yield tmp_path
    (tmp_path / "locked").chmod(0o755)  # so that pytest can remove it


@needs_drop
def test_the_fixture_really_locks_a_folder(source: Path) -> None:
    """The test below means something: this thread (root) may list it, a bound one may not."""
    assert LocalStorage(source).list() == ["4.jpg", "a/1.jpg", "b/2.jpg", "locked/3.jpg"]
    with pytest.raises(PermissionError):
        without_file_permission_override(lambda: list((source / "locked").iterdir()))


@needs_drop
def test_a_folder_that_cannot_be_listed_fails_the_listing(source: Path) -> None:
    storage = LocalStorage(source)
    with pytest.raises(PermissionError, match=r"cannot list source folder .*locked"):
        without_file_permission_override(storage.list)


@needs_drop
def test_an_unreadable_root_fails_the_listing(source: Path) -> None:
    storage = LocalStorage(source / "locked")
    with pytest.raises(PermissionError, match="cannot list source folder"):
        without_file_permission_override(storage.list)


@needs_drop
def test_a_file_that_may_not_be_read_raises_not_refused(source: Path) -> None:
    """A PermissionError (the storage's), not Refused (the file's, recorded per image)."""
    (source / "a" / "1.jpg").chmod(0)
    storage = LocalStorage(source)
    with pytest.raises(PermissionError):
        without_file_permission_override(lambda: storage.read("a/1.jpg"))


def test_a_name_that_is_not_utf8_is_listed_as_text_and_refused(tmp_path: Path) -> None:
    """os.walk gives such a name with surrogate escapes, which no UTF-8 consumer (seeds, the
    manifest, job.json) accepts: listed instead with its bytes as \\xNN (so it has a
    backslash, and never names a file) and refused on read, like a name with a backslash."""
    folder = os.fsencode(tmp_path)
    (tmp_path / "ok.jpg").write_bytes(b"jpeg")
    os.mkdir(os.path.join(folder, b"caf\xe9"))  # Latin-1, as an old camera or share writes it
    for name in (b"bad\xff\xfename.jpg", b"caf\xe9/1.jpg"):
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"jpeg")
        os.close(fd)
    storage = LocalStorage(tmp_path)

    keys = storage.list()

    assert keys == ["bad\\xff\\xfename.jpg", "caf\\xe9/1.jpg", "ok.jpg"]
    for key in keys:
        key.encode()  # valid text: no surrogates
        stable_hash(7, key)
    for key in keys[:2]:
        with pytest.raises(Refused, match="refused: a name that is not UTF-8 text or has a"):
            storage.read(key)
        with pytest.raises(Refused, match="not UTF-8"):
            storage.open(key)
    assert storage.read("ok.jpg") == b"jpeg"


def test_a_link_loop_is_refused_not_an_error(tmp_path: Path) -> None:
    """ELOOP is the entry's fault (Refused, recorded per image), not the storage's: unlike
    EACCES or EIO it must not fail the job."""
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    (tmp_path / "a.jpg").symlink_to("b.jpg")
    (tmp_path / "b.jpg").symlink_to("a.jpg")
    storage = LocalStorage(tmp_path)

    assert storage.list() == ["a.jpg", "b.jpg", "loop.jpg"]
    for key in storage.list():
        with pytest.raises(Refused, match="refused: a symbolic link loop"):
            storage.read(key)
        with pytest.raises(Refused, match="refused: a symbolic link loop"):
            storage.open(key)


def test_version_of_names_a_file_as_open_does_and_refuses_what_open_refuses(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.jpg").write_bytes(b"x" * 10)
    (root / "inside.jpg").symlink_to(root / "sub" / "a.jpg")
    (tmp_path / "outside.jpg").write_bytes(b"y")
    (root / "out.jpg").symlink_to(tmp_path / "outside.jpg")
    os.mkfifo(root / "pipe.jpg")
    storage = LocalStorage(root)
    for key in ("sub/a.jpg", "inside.jpg"):  # lstat for the file, open for the link
        with storage.open(key) as f:
            assert storage.version_of(key) == f.version
    os.utime(root / "sub" / "a.jpg", ns=(0, 5))
    assert storage.version_of("sub/a.jpg") == "10-5"
    for key in ("out.jpg", "pipe.jpg"):
        with pytest.raises(Refused):
            storage.version_of(key)
    with pytest.raises(FileNotFoundError):
        storage.version_of("gone.jpg")
