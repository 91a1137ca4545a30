"""Regular expressions from users run in linear time (RE2): no pattern can make a listing of
keys take exponential time, as `(a|a)*#` does in Python's `re`."""

from __future__ import annotations

import functools

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error comes back to the user; not also on stderr


@functools.lru_cache(maxsize=64)
def compile_user_regex(pattern: str):
    """The compiled pattern; ValueError naming what RE2 cannot do (backreferences,
    lookaround) or what is wrong."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"invalid regular expression {pattern!r}: {reason} (RE2 syntax: no backreferences "
            "or lookaround)"
        ) from None
