"""A local folder as a source or sink.

As a source it is confined: it reads only regular files whose real path is under the root.
A link out of the root, a link loop, a FIFO, a device or a name that is not UTF-8 is listed
(so that it is recorded) and refused when read; links to folders are not followed. A folder
it cannot list, or a file it may not read, raises an OSError: the storage's error, which
fails a job.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from motoray.storage.base import CHANGED, IMAGE_EXTENSIONS, Changed, Refused
from motoray.storage.keys import safe_key

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


@dataclass(frozen=True)
class LocalStorage:
    root: Path
    # 0: a task reads and writes on its own thread. Measured on 6000 frames, 2 workers on
    # 2 CPUs: ~9% less CPU per image than 8 I/O threads (a page-cache copy is CPU work, not
    # waiting, so threads only compete with the task for its CPU).
    concurrency = 0

    @property
    def uri(self) -> str:
        return str(self.root)

    @functools.cached_property
    def _real_root(self) -> str:
        """Resolved once per storage object (a job's): per read, its stat per component cost
        ~3% of an image's CPU."""
        return os.path.realpath(self.root)

    def _path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def list(self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"source folder does not exist: {self.root}")
        keys = walk_keys(self.root, self.root, tuple(e.lower() for e in extensions))
        # A set: a name that is not UTF-8 and one spelling it out with backslashes ("\\xff")
        # give the same key (both refused); listed twice, one key would be two images.
        return sorted(set(keys))

    def list_versions(
        self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    ) -> dict[str, str | None]:
        return dict.fromkeys(self.list(extensions))

    def read(self, key: str, max_bytes: int | None = None, version: str | None = None) -> bytes:
        with self.open(key, version) as f:
            info = os.fstat(f.fileno())
            if max_bytes is not None and info.st_size > max_bytes:
                raise Refused(f"file too large: {info.st_size} bytes > limit {max_bytes}")
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:  # grew since fstat
            raise Refused(f"file too large: more than {max_bytes} bytes")
        return data

    def open(self, key: str, version: str | None = None) -> BinaryIO:
        if not _canonical(key):  # a name that is not UTF-8 is listed with backslashes
            raise Refused(
                "refused: a name that is not UTF-8 text or has a backslash"
                " (not portable to S3 keys)"
            )
        real, root = os.path.realpath(self._path(key)), self._real_root
        if os.path.commonpath([real, root]) != root:
            raise Refused("refused: a link to outside the source folder")
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as e:
            # realpath leaves a link it cannot resolve (a loop) as it is, and O_NOFOLLOW
            # refuses any link: ELOOP is this entry's fault. Other errors (EACCES, EIO) are
            # the storage's: they fail the job.
            if e.errno != errno.ELOOP:
                raise
            raise Refused("refused: a symbolic link loop") from None
        f = os.fdopen(fd, "rb")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            f.close()
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise Refused(f"refused: {kind}, not a regular file")
        # Its size and modification time name the version: a file rewritten in place or
        # replaced since it was probed is refused, not read as a mix of two.
        f.version = _version(info)
        if version is not None and f.version != version:
            f.close()
            raise Changed(f"{CHANGED}: {_changes(version, info)}")
        return f

    def version_of(self, key: str) -> str:
        """The version `open` names the file by, from one lstat where the key is a regular
        file, not a link (a listed file almost always; no realpath, open or close): the
        same inode, so the same size and mtime. Anything else is opened, and refused as
        `open` refuses it."""
        if _canonical(key):
            with contextlib.suppress(OSError):
                info = os.lstat(self._path(key))
                if stat.S_ISREG(info.st_mode):
                    return _version(info)
        with self.open(key) as f:
            return f.version

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        # Files only, as on S3 where a "folder" is not an object.
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def write(self, key: str, data: bytes) -> None:
        # In place, not temp-file-and-rename: that doubled the cost of a small output. A
        # killed task may leave half a file, but its retry rewrites the same bytes, and
        # job.json (write_new, after sync) is what says a job's files are complete.
        path = self._path(key)
        try:
            path.write_bytes(data)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def move(self, moves: Sequence[tuple[str, str]]) -> None:
        """Rename each (key, new key), replacing what the new key held; then remove the
        folders the moves left empty."""
        left = set()
        for key, to in moves:
            path, new = self._path(key), self._path(to)
            try:
                os.replace(path, new)
            except FileNotFoundError:
                new.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, new)
            left.update(path.relative_to(self.root).parents)
        left.discard(Path("."))
        for folder in sorted((self.root / f for f in left), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):  # not empty: it holds what stayed
                folder.rmdir()

    def write_new(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = _temp_file(path, data)
        try:
            # A hard link is created whole or not at all, and never replaces a file: a reader
            # polling for job.json never sees it half written.
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _sync_folder(path.parent)
        return True

    def sync(self) -> None:
        """Flush this file system's written data to disk, once, before the commit marker (an
        fsync per output costs more than its encode). On the node that commits the job: a
        local output folder is that node's, or a shared file system (NFS flushes on close)."""
        if not self.root.is_dir():
            return  # nothing was written here
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()  # not Linux: every file system
        finally:
            os.close(fd)

    def child(self, prefix: str) -> LocalStorage:
        return LocalStorage(self._path(prefix))


def _changes(version: str, info: os.stat_result) -> str:
    size = version.partition("-")[0]
    if size != str(info.st_size):
        return f"{size} bytes when probed, {info.st_size} now"
    return "rewritten since it was probed (same size, new modification time)"


def walk_keys(root: Path, top: Path, wanted: tuple[str, ...]) -> list[str]:
    """The keys (relative to `root`) of the files under `top` with a `wanted` extension
    (lower case), in no set order; `top` is `root` or a folder below it that is listed."""
    keys = []
    # followlinks=False: a link to a folder is never walked into (its files, if they are
    # under the root, are listed where they really are). A folder that cannot be listed
    # fails the listing: skipped, it would silently shrink the dataset.
    for dirpath, dirnames, filenames in os.walk(top, onerror=_unlistable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        keys += level_keys(root, dirpath, filenames, wanted)
    return keys


def level_keys(
    root: Path, dirpath: str, filenames: list[str], wanted: tuple[str, ...]
) -> list[str]:
    """The keys of the files os.walk found in one folder: hidden names skipped."""
    folder = os.path.relpath(dirpath, root)  # string work: a job lists twice
    prefix = "" if folder == "." else folder.replace(os.sep, "/") + "/"
    return [
        _text(prefix + name)
        for name in filenames
        if name.lower().endswith(wanted) and not name.startswith(".")
    ]


def _unlistable(error: OSError) -> None:
    """os.walk's onerror: a folder it cannot list (EACCES, EIO, ...) is the storage's error,
    not something to skip. OSError(errno, ...) keeps its kind (PermissionError, ...)."""
    raise OSError(
        error.errno, f"cannot list source folder {error.filename}: {error.strerror}"
    ) from error


def _load_syncfs():
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).syncfs
    return None


_syncfs = _load_syncfs()


def _sync_folder(folder: Path) -> None:
    """The new name itself durable: fsync of its folder."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_file(path: Path, data: bytes) -> Path:
    """`data` in a hidden file next to `path` (same file system, so rename/link work),
    flushed to disk. Not mkstemp: its files are private (0600); results are meant for other
    users, so the umask decides, as for any file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _text(key: str) -> str:
    """A key as valid text. os.walk gives the bytes of a name that is not UTF-8 as surrogate
    escapes, which seeds, the manifest and job.json cannot encode: such a name is listed with
    those bytes spelt "\\xff", so that it is recorded, and refused by `open` (a backslash),
    never read back as another file."""
    if key.isascii():  # almost every key, and cheap to check
        return key
    return os.fsencode(key).decode("utf-8", "backslashreplace")


def _canonical(key: str) -> bool:
    """False for a name the other methods would rewrite (a backslash is a separator to
    safe_key): refused, as S3Storage refuses such keys."""
    try:
        return safe_key(key) == key
    except ValueError:
        return False


def _version(info: os.stat_result) -> str:
    """A local file's version: its size and mtime (what open, lstat and caches key on)."""
    return f"{info.st_size}-{info.st_mtime_ns}"
