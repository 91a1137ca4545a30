"""WebDataset shards: tar files of samples, byte-identical for the same samples.

A sample is the files that share a key (`<key>.jpg`, `<key>.json`); readers (the
`webdataset` package, `ray.data.read_webdataset`) group consecutive members by the part of
the name before its first dot, so keys have no dots. Every member gets the same fixed
metadata (mtime, owner, mode), so a shard's bytes depend only on its samples and their
order: a retried task rewrites the same shard. No Ray, no pixels.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Mapping

MTIME = 0  # fixed: the time a shard is written must not change its bytes
MODE = 0o644


def tar_bytes(samples: Iterable[tuple[str, Mapping[str, bytes]]]) -> bytes:
    """A tar of samples in the given order: (key, {extension: bytes}) -> `key.extension`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key, files in samples:
            for extension, data in files.items():
                member = tarfile.TarInfo(f"{key}.{extension}")
                member.size, member.mtime, member.mode = len(data), MTIME, MODE
                member.uid = member.gid = 0
                member.uname = member.gname = ""
                tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()
