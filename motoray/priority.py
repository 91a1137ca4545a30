"""Batch work yields the CPU to the API: a node that runs both (a laptop, the head of a
small cluster) must keep answering /healthz and status polls while jobs run.

Ray starts its worker processes at niceness 15 (`RAY_worker_niceness`), actors included,
so the API's replica and proxy would share the CPU evenly with pipeline tasks and lose it
to every Ray Job's supervisor and driver (Ray runs those at 0). motoray's Ray starts
workers at 0, and everything else lowers itself: pipeline tasks most, the job runner (the
drivers of the service's jobs) less.
"""

from __future__ import annotations

import os

BATCH_NICENESS = 10  # pipeline tasks
DRIVER_NICENESS = 5  # job drivers: above their own tasks, below the API
RAY_WORKER_NICENESS = "RAY_worker_niceness"  # read by the raylet when `ray start` runs


def lower_priority(niceness: int, pid: int = 0) -> None:
    """Lower a process's CPU priority to `niceness` (pid 0: this one, which on Linux means
    the calling thread and the threads it starts from then on: the thread doing the work).
    Never raised (that needs privileges): calling it again, as a reused Ray worker does,
    changes nothing."""
    if hasattr(os, "setpriority") and os.getpriority(os.PRIO_PROCESS, pid) < niceness:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)


def as_batch_work() -> None:
    lower_priority(BATCH_NICENESS)
