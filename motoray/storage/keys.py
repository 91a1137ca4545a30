"""Keys that cannot escape their root, whatever a user or a file name contains."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def safe_key(key: str) -> str:
    """Reject keys that would leave the storage root ("..", absolute paths, NUL)."""
    parts = key.replace("\\", "/").split("/")
    if key.startswith("/") or "\0" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe storage key: {key!r}")
    return "/".join(parts)


def safe_name(text: str, max_length: int = 80) -> str:
    """One path segment made of word characters, dots and dashes (no '..')."""
    name = _UNSAFE.sub("_", text).strip("._") or "_"
    return name[:max_length]
