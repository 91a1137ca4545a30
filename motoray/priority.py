"""Batch work yields the CPU to the API: a node that runs both (a laptop, the head of a
small cluster) must keep answering /healthz and status polls while jobs run."""

from __future__ import annotations

import os

BATCH_NICENESS = 10


def as_batch_work() -> None:
    """Lower this process's CPU priority (once: Ray reuses worker processes)."""
    if hasattr(os, "nice") and os.nice(0) < BATCH_NICENESS:
        os.nice(BATCH_NICENESS - os.nice(0))
