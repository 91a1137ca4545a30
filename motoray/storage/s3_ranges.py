"""An S3 prefix listed in key ranges, many LIST requests in flight instead of one stream.

A range (after, until] holds the keys k with after < k <= until (S3 orders keys by their
UTF-8 bytes, which is Python's order of str). A request lists one page of a range from
StartAfter; while a range has more pages and threads are idle, what is left of it is cut in
two at a key between its ends (`between`), so a flat prefix of 10^6 keys fans out after a
few pages. Where a prefix has folders, one request with the delimiter finds them: they cut
the prefix into first ranges (`folder_bounds`). Every key is in exactly one range. No Ray
here: pipeline/listing.py runs ranges in tasks.
"""

from __future__ import annotations

from bisect import bisect_right
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from itertools import pairwise

from motoray.storage.s3 import LIST_PAGE_KEYS, S3Storage, _hidden, list_errors
from motoray.storage.s3_pages import list_page

TOP = "\U0010ffff"  # above every key of a prefix (no UTF-8 key holds a larger code point)
# Cuts are made of printable characters (a control character in StartAfter makes some
# S3-compatible servers fail the request): printable ASCII first, as keys mostly are.
_DIGITS = ((0x20, 0x7F), (0x20, 0x110000))


def between(after: str, until: str) -> str | None:
    """A string strictly between `after` and `until`, near the middle of their key space;
    None if there is none worth cutting at."""
    for first, end in _DIGITS:
        base, width = end - first, max(len(after), len(until)) + 1
        low, high = _number(after, width, first, base), _number(until, width, first, base)
        middle = _text((low + high) // 2, width, first, base)
        if after < middle < until:
            return middle
    return None


def _number(text: str, width: int, first: int, base: int) -> int:
    value = 0
    for i in range(width):
        digit = min(max(ord(text[i]) - first, 0), base - 1) if i < len(text) else 0
        value = value * base + digit
    return value


def _text(value: int, width: int, first: int, base: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, base)
        digits.append(digit + first)
    chars = [chr(0xE000 if 0xD800 <= d <= 0xDFFF else d) for d in reversed(digits)]
    return "".join(chars).rstrip(" ")


def folder_bounds(storage: S3Storage) -> tuple[list[str], bool]:
    """The folders right below the prefix (their full keys, as the first ranges' ends), from
    one delimited request (none for a flat prefix), and whether more follow them."""
    root = f"{storage.prefix}/" if storage.prefix else ""
    with list_errors(storage):
        page = storage._client.list_objects_v2(
            Bucket=storage.bucket, Prefix=root, Delimiter="/", MaxKeys=LIST_PAGE_KEYS
        )
    folders = sorted(p["Prefix"] for p in page.get("CommonPrefixes", ()))
    return folders, bool(page.get("IsTruncated"))


def ahead(first: str, last: str, end: str, cuts: int) -> list[str]:
    """Up to `cuts` keys after `last` and before `end`, each about as far from the one
    before as `last` is from `first` (a page's first and last keys): where pages to come
    will likely end, keys being about as dense ahead as in the page just read.

    Distances are counted in the keys' own alphabet, per position: the characters the two
    keys have there, all ten digits where either has a digit (numbered frames), and "" where
    a key may end. Counted over all of Unicode, "frame_9" to "frame_10" would cross the
    empty space of ":" to "~" and most cuts would fall where there is no key."""
    width = max(len(first), len(last))
    alphabets = []
    for i in range(width):
        seen = {key[i] for key in (first, last) if i < len(key)}
        if any(c.isdigit() for c in seen):
            seen |= set("0123456789")
        ends = i >= min(len(first), len(last))
        alphabets.append(([""] if ends else []) + sorted(seen))
    low, high = _mixed(first, alphabets), _mixed(last, alphabets)
    total = 1
    for alphabet in alphabets:
        total *= len(alphabet)
    step = (high - low) * 9 // 10  # a little short of a page: most pieces take one request
    found: list[str] = []
    at = high + step
    while step > 0 and at < total and len(found) < cuts:
        cut = _unmixed(at, alphabets)
        if not (found[-1] if found else last) < cut < end:
            break
        found.append(cut)
        at += step
    return found


def _mixed(key: str, alphabets: list[list[str]]) -> int:
    value = 0
    for i, alphabet in enumerate(alphabets):
        char = key[i] if i < len(key) else ""
        value = value * len(alphabet) + max(bisect_right(alphabet, char) - 1, 0)
    return value


def _unmixed(value: int, alphabets: list[list[str]]) -> str:
    chars = []
    for alphabet in reversed(alphabets):
        value, digit = divmod(value, len(alphabet))
        chars.append(alphabet[digit])
    return "".join(reversed(chars))


def list_range(
    storage: S3Storage,
    after: str | None,
    until: str,
    extensions: tuple[str, ...],
    threads: int,
    page_keys: int = LIST_PAGE_KEYS,
) -> dict[str, str | None]:
    """The keys (relative to the prefix, with their ETags) of the range (after, until] of
    full bucket keys, listed by up to `threads` requests in flight of `page_keys` each."""
    root = f"{storage.prefix}/" if storage.prefix else ""
    wanted = tuple(e.lower() for e in extensions)
    found: dict[str, str | None] = {}

    def page(start: str | None, end: str) -> tuple[str | None, str, str | None]:
        """One page of (start, end]: where the range goes on (None: done), its end, and
        the page's first key."""
        with list_errors(storage):
            listed = list_page(storage, root, start, page_keys, until=end)
        for key, etag in listed.keys:
            relative = key[len(root) :]
            if relative.lower().endswith(wanted) and not _hidden(relative):
                found[relative] = etag
        if not (listed.truncated and listed.keys):
            return None, end, None
        return listed.keys[-1][0], end, listed.keys[0][0]

    with ThreadPoolExecutor(threads) as pool:
        pending = {pool.submit(page, after or None, until)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                start, end, first = future.result()
                if start is None:
                    continue
                idle = threads - 1 - len(pending)
                # Pieces about a page long where the page says how dense keys are; else
                # halves of the key space between the page's end and the range's.
                cuts = ahead(first, start, end, idle) if idle > 0 and first else []
                if not cuts and idle > 0 and (middle := between(start, end)) is not None:
                    cuts = [middle]
                bounds = [start, *cuts, end]
                pending |= {pool.submit(page, a, b) for a, b in pairwise(bounds)}
    return found
