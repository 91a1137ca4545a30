"""The one way motoray waits for something: poll a check until it answers or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "a condition"
) -> T:
    """`check()` until it returns something truthy, which is returned; it may raise to give
    up early. TimeoutError after `timeout` seconds, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(interval)
