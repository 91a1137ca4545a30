"""The one small interface every data source and sink implements."""

from __future__ import annotations

from typing import Protocol

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class Storage(Protocol):
    """A folder-like place addressed by relative keys ("a/b.jpg").

    Implementations must be picklable (they travel to Ray workers), so they
    create network clients lazily.
    """

    uri: str

    def list(self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
        """Every key below the root whose name ends with one of `extensions`, sorted."""
        ...

    def read(self, key: str) -> bytes: ...

    def size(self, key: str) -> int: ...

    def write(self, key: str, data: bytes) -> None:
        """Create or replace `key`. Not atomic everywhere (a local file is written in place):
        a job's files count as complete once its commit marker (`write_new`) exists."""
        ...

    def write_new(self, key: str, data: bytes) -> bool:
        """Create `key` whole, only if it does not exist; False if it already did. Atomic:
        a reader never sees it half written (the commit marker)."""
        ...

    def exists(self, key: str) -> bool: ...

    def child(self, prefix: str) -> Storage:
        """The storage rooted at `prefix` below this one."""
        ...
