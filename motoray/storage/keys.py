"""Keys that cannot escape their root, whatever a user or a file name contains."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)
_HASH_CHARS = 8


def safe_key(key: str) -> str:
    """Reject keys that would leave the storage root ("..", absolute paths, NUL)."""
    parts = key.replace("\\", "/").split("/")
    if key.startswith("/") or "\0" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe storage key: {key!r}")
    return "/".join(parts)


def safe_name(text: str, max_length: int = 80) -> str:
    """One path segment of word characters, dots and dashes: never "", "." or "..", never
    hidden, at most `max_length` bytes of UTF-8 (file systems count bytes, not characters).

    A name that is already safe is kept as it is. Any other name gets a short hash of the
    original text, so that names differing only in what was replaced or cut off ("a b",
    "a/b", "../a_b", a long name and its prefix) still name different folders.
    """
    # NFC: a file system that normalises (macOS) must not merge two names we keep apart.
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", text)).strip("._") or "_"
    if name == text and len(name.encode()) <= max_length:
        return name
    digest = hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=8).hexdigest()
    room = max(max_length - _HASH_CHARS - 1, 1)
    # Cut on a byte budget; "ignore" drops a character split in half. Re-strip so the cut
    # never leaves a trailing dot or underscore before the hash.
    head = name.encode()[:room].decode(errors="ignore").rstrip("._") or "_"
    return f"{head}-{digest[:_HASH_CHARS]}"
