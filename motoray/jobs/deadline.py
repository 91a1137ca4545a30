"""When a job must end: `limits.job_timeout_s` after it was accepted, across resumes.

Two moments. At `at`, the driver's loop and the job's tasks stop and the job ends FAILED
(JobTimeout), which a job that is only slow reaches. At `give_up_at`, a little later, a job
stuck where nothing looks at the clock (a storage call that never returns, a task that
never ends) is given up on from outside: its job.json says FAILED, its slot is freed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from motoray.jobs.record import JobInputs

GRACE = 0.05  # of the limit, plus GRACE_S: time for the gentle end to come first
GRACE_S = 1.0


@dataclass(frozen=True)
class Deadline:
    limit_s: float  # limits.job_timeout_s
    at: float  # epoch seconds
    give_up_at: float

    @classmethod
    def of(cls, inputs: JobInputs) -> Deadline:
        limit = inputs.config.limits.job_timeout_s
        at = inputs.accepted_at + limit
        return cls(limit, at, at + limit * GRACE + GRACE_S)

    def passed(self) -> bool:
        return time.time() > self.at

    def watchdog(self, give_up: Callable[[], None]) -> threading.Timer:
        """A started timer calling `give_up` at `give_up_at` (cancel it once the job ends)."""
        timer = threading.Timer(max(0.0, self.give_up_at - time.time()), give_up)
        timer.daemon = True
        timer.start()
        return timer

    def reason(self, resuming: bool = False) -> str:
        if resuming:
            return (
                f"JobTimeout: past limits.job_timeout_s ({self.limit_s:g} s) before it could resume"
            )
        return f"JobTimeout: stuck past limits.job_timeout_s ({self.limit_s:g} s)"
