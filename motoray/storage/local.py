"""A local folder as a source or sink."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from motoray.storage.base import IMAGE_EXTENSIONS
from motoray.storage.keys import safe_key


@dataclass(frozen=True)
class LocalStorage:
    root: Path

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def list(self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"source folder does not exist: {self.root}")
        wanted = tuple(e.lower() for e in extensions)
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.lower().endswith(wanted) and not name.startswith("."):
                    key = Path(dirpath, name).relative_to(self.root).as_posix()
                    if _canonical(key):
                        keys.append(key)
        return sorted(keys)

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        # Files only, as on S3 where a "folder" is not an object.
        return self._path(key).is_file()

    def write(self, key: str, data: bytes) -> None:
        # In place, not temp-file-and-rename: that doubled the cost of a small output. A
        # killed task may leave half a file, but its retry rewrites the same bytes, and
        # job.json (write_new) is what says a job's files are complete.
        path = self._path(key)
        try:
            path.write_bytes(data)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

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
        return True

    def child(self, prefix: str) -> LocalStorage:
        return LocalStorage(self._path(prefix))


def _temp_file(path: Path, data: bytes) -> Path:
    """`data` in a hidden file next to `path` (same file system, so rename/link work).

    Not mkstemp: its files are private (0600); results are meant for other users, so the
    umask decides, as for any file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _canonical(key: str) -> bool:
    """False for a name the other methods would rewrite (a backslash is a separator to
    safe_key), so it is skipped here as S3Storage.list skips it."""
    try:
        return safe_key(key) == key
    except ValueError:
        return False
