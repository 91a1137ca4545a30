"""Storage in a dict: what a job would write, kept in memory (previews, estimates, tests)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from motoray.storage.base import IMAGE_EXTENSIONS, Refused
from motoray.storage.keys import safe_key


@dataclass
class MemoryStorage:
    """A folder-like dict; `child` views share it, as folders share a disk."""

    files: dict[str, bytes] = field(default_factory=dict)
    prefix: str = ""
    concurrency = 0

    @property
    def uri(self) -> str:
        return f"memory://{self.prefix}"

    def _key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def list(self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        wanted = tuple(e.lower() for e in extensions)
        return sorted(
            k[len(root) :] for k in self.files if k.startswith(root) and k.lower().endswith(wanted)
        )

    def list_versions(
        self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    ) -> dict[str, str | None]:
        return dict.fromkeys(self.list(extensions))

    def read(self, key: str, max_bytes: int | None = None, version: str | None = None) -> bytes:
        # Versions are not kept: what tests and previews put here does not change under them.
        try:
            data = self.files[self._key(key)]
        except KeyError:
            raise FileNotFoundError(f"{self.uri}/{key}") from None
        if max_bytes is not None and len(data) > max_bytes:
            raise Refused(f"file too large: {len(data)} bytes > limit {max_bytes}")
        return data

    def open(self, key: str, version: str | None = None) -> io.BytesIO:
        file = io.BytesIO(self.read(key))
        file.version = version
        return file

    def size(self, key: str) -> int:
        return len(self.read(key))

    def exists(self, key: str) -> bool:
        return self._key(key) in self.files

    def delete(self, key: str) -> None:
        self.files.pop(self._key(key), None)

    def write(self, key: str, data: bytes) -> None:
        self.files[self._key(key)] = bytes(data)

    def write_new(self, key: str, data: bytes) -> bool:
        if self.exists(key):
            return False
        self.write(key, data)
        return True

    def sync(self) -> None:
        """Nothing to do: memory is as durable as it gets."""

    def child(self, prefix: str) -> MemoryStorage:
        return MemoryStorage(self.files, self._key(prefix))

    @property
    def total_bytes(self) -> int:
        """What was written, in all."""
        return sum(map(len, self.files.values()))
