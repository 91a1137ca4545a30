"""Data sources and sinks: local folders and S3 behind one interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from motoray.storage.base import CHANGED, IMAGE_EXTENSIONS, Changed, Refused, Storage
from motoray.storage.local import LocalStorage
from motoray.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from motoray.config import S3Settings

__all__ = [
    "CHANGED",
    "IMAGE_EXTENSIONS",
    "Changed",
    "LocalStorage",
    "MemoryStorage",
    "Refused",
    "Storage",
    "open_storage",
]


def open_storage(uri: str, s3: S3Settings | None = None) -> Storage:
    """`s3://bucket/prefix` or a local path (absolute, or relative to the cwd)."""
    if uri.startswith("s3://"):
        from motoray.storage.s3 import S3Storage

        return S3Storage.from_uri(uri, s3)
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"unsupported storage URI scheme: {uri}")
    return LocalStorage(Path(uri.removeprefix("file://")).expanduser().resolve())
