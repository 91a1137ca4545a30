"""Seeds derived from names, stable across processes, machines and retries.

Python's hash() is salted per process, so every seed comes from BLAKE2b over
the parts instead: the same (job seed, source key, operator index, copy index)
gives the same random numbers on any worker, in any batch, on any retry.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(*parts: object, bits: int = 64) -> int:
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=bits // 8).digest(), "big")


def derive_rng(*parts: object) -> tuple[int, np.random.Generator]:
    """The derived seed (worth recording) and a generator seeded with it."""
    seed = stable_hash(*parts)
    return seed, np.random.Generator(np.random.PCG64(seed))
