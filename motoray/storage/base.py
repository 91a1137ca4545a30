"""The one small interface every data source and sink implements."""

from __future__ import annotations

from typing import IO, Protocol

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class Refused(ValueError):
    """A listed source entry motoray will not read: a link out of the source, not a regular
    file, a key that would leave the root, or larger than allowed. Recorded per image, like
    a damaged file. (Access and I/O errors are OSErrors: they fail the job.)"""


CHANGED = "changed during the job"  # how every Changed's reason starts


class Changed(Refused):
    """The object is no longer the version the job listed or probed (replaced, grown or cut
    short while the job ran): recorded per image or video, never read as a mix of two."""


class Storage(Protocol):
    """A folder-like place addressed by relative keys ("a/b.jpg").

    Implementations must be picklable (they travel to Ray workers), so they
    create network clients lazily.
    """

    uri: str
    # Requests worth keeping in flight per task, on I/O threads: an object store at tens of
    # milliseconds a request needs many to keep a CPU busy; 0 (local files): none, the task
    # does its I/O itself.
    concurrency: int

    def list(self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
        """Every key below the root whose name ends with one of `extensions`, sorted; entries
        `read` will refuse are listed too, so that they are recorded, not silently skipped."""
        ...

    def list_versions(
        self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    ) -> dict[str, str | None]:
        """What `list` gives, each key with the version the listing saw (S3: its ETag), or
        None where a listing does not say (local folders: a stat per file would cost)."""
        ...

    def read(self, key: str, max_bytes: int | None = None, version: str | None = None) -> bytes:
        """The object's bytes; Refused if it is not one motoray reads, or is larger than
        `max_bytes` (checked before more than max_bytes + 1 bytes are read); Changed if it is
        no longer `version` (None: any)."""
        ...

    def open(self, key: str, version: str | None = None) -> IO[bytes]:
        """A seekable binary file object over the object, for files read in place rather
        than whole (videos); refuses what `read` refuses. Every read is of one version: its
        name is the file object's `version` (`version` if given: Changed if the object is
        no longer it, then or at any later read). The caller closes it."""
        ...

    def size(self, key: str) -> int: ...

    def write(self, key: str, data: bytes) -> None:
        """Create or replace `key`. Not atomic everywhere (a local file is written in place):
        a job's files count as complete once its commit marker (`write_new`) exists."""
        ...

    def write_new(self, key: str, data: bytes) -> bool:
        """Create `key` whole, only if it does not exist; False if it already did. Atomic:
        a reader never sees it half written (the commit marker)."""
        ...

    def sync(self) -> None:
        """Make what was written here durable (before a commit marker says it is there)."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key` if it is there (a job's bookkeeping; never a job's outputs)."""
        ...

    def child(self, prefix: str) -> Storage:
        """The storage rooted at `prefix` below this one."""
        ...
