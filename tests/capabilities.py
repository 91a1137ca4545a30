"""Run a function as if file permissions applied to it, although the tests run as root.

Root reads a chmod 000 folder because it holds CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.
Linux keeps capabilities per thread, so one thread can drop those two from its effective set
(capset(2) with pid 0: the calling thread only) and meet EACCES like any user, while the
rest of the process (pytest, Ray's threads) keeps them. The thread ends afterwards: nothing
else ever runs with the lowered set.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_VERSION_3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def can_drop() -> bool:
    """Whether `without_file_permission_override` can work here (Linux)."""
    return sys.platform == "linux"


def _drop_in_this_thread() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def without_file_permission_override(function: Callable[[], T]) -> T:
    """`function()` on a new thread that file permissions bind (even as root); its result,
    or its exception raised here."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            if os.geteuid() == 0:
                _drop_in_this_thread()
            result["value"] = function()
        except BaseException as e:  # raised again in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]
