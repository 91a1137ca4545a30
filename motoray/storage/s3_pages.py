"""One ListObjectsV2 page, fetched and parsed for a fraction of botocore's CPU.

botocore spends ~20-25 ms of CPU parsing a 1,000-key page (a generic shape-driven parser
building a dict per key), more than the request's latency: a listing with many requests in
flight is CPU-bound. Here the request is still made by the client: it is presigned
(SigV4, the client's endpoint, addressing style, credentials and parameter handlers,
EncodingType=url included) and sent through botocore's own HTTP session class; only the
answer is read here, just the fields a listing needs. Anything but a
200 (an error, a throttle, a dropped connection) is asked again through the client, so
retries and error codes are exactly botocore's.
"""

from __future__ import annotations

import html
import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session
from botocore.utils import get_environ_proxies

from motoray.storage.s3 import CONCURRENCY, S3Storage

_sessions: dict[tuple[Any, ...], URLLib3Session] = {}
_sessions_lock = threading.Lock()


@dataclass(frozen=True)
class Page:
    keys: list[tuple[str, str | None]]  # (full key, ETag) in S3's order
    truncated: bool  # more keys after the last one (possibly past the caller's end)


def list_page(storage: S3Storage, prefix: str, start_after: str | None, max_keys: int,
              until: str | None = None) -> Page:  # fmt: skip
    """The page of keys under `prefix` after `start_after`; keys past `until` are not
    parsed (the page then counts as the end: nothing after it is wanted)."""
    params = {"Bucket": storage.bucket, "Prefix": prefix, "MaxKeys": max_keys}
    if start_after:
        params["StartAfter"] = start_after
    client = storage._client
    url = client.generate_presigned_url("list_objects_v2", Params=params, ExpiresIn=900)
    try:
        response = _session(storage, url).send(_get(url))
    except Exception:  # a connection error: botocore's retries decide
        response = None
    if response is None or response.status_code != 200:
        return _botocore_page(client, params, until)
    return parse_page(response.content, until)


def parse_page(body: bytes, until: str | None = None) -> Page:
    """The keys, ETags and IsTruncated of a ListObjectsV2 answer, as botocore gives them."""
    if b"<![CDATA[" in body or b"<!--" in body or b"<Contents " in body:
        return _parsed_tree(body, until)  # XML written unlike S3's: the full parser
    return _scanned(body, until)


# S3 writes a page in one fixed form (no CDATA, no comments, no attributes in it): its keys
# are read by a scan ~5x cheaper than building the tree, each <Contents> on its own (a
# missing ETag cannot borrow the next one's). Checked against botocore (tests/storage).
_TEXT = {tag: re.compile(rf"<{tag}>([^<]*)</{tag}>".encode()) for tag in
         ("Key", "ETag", "IsTruncated", "EncodingType")}  # fmt: skip


def _scanned(body: bytes, until: str | None) -> Page:
    head, *items = body.split(b"<Contents>")
    tail = items[-1].rpartition(b"</Contents>")[2] if items else head
    encoded = (_text(head, "EncodingType") or _text(tail, "EncodingType")) == "url"
    keys = []
    for item in items:
        key = _text(item, "Key") or ""
        if encoded:  # botocore asked for it (XML 1.0 cannot carry every key); so it decodes
            key = unquote_plus(key)
        if until is not None and key > until:
            return Page(keys, False)
        keys.append((key, _text(item, "ETag")))
    truncated = (_text(head, "IsTruncated") or _text(tail, "IsTruncated")) == "true"
    return Page(keys, truncated)


def _text(part: bytes, tag: str) -> str | None:
    found = _TEXT[tag].search(part)
    if found is None:
        return None
    text = found.group(1).decode()
    return html.unescape(text) if "&" in text else text  # &amp; &lt; &quot; &#13; ...


def _parsed_tree(body: bytes, until: str | None) -> Page:
    root = ElementTree.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = root.findtext(f"{ns}EncodingType") == "url"
    keys, key_tag, etag_tag = [], f"{ns}Key", f"{ns}ETag"
    for item in root.iterfind(f"{ns}Contents"):
        key = item.findtext(key_tag) or ""
        if encoded:
            key = unquote_plus(key)
        if until is not None and key > until:
            return Page(keys, False)
        keys.append((key, item.findtext(etag_tag)))
    return Page(keys, root.findtext(f"{ns}IsTruncated") == "true")


def _botocore_page(client: Any, params: dict, until: str | None) -> Page:
    listed = client.list_objects_v2(**params)
    keys = []
    for obj in listed.get("Contents", ()):
        if until is not None and obj["Key"] > until:
            return Page(keys, False)
        keys.append((obj["Key"], obj.get("ETag")))
    return Page(keys, bool(listed.get("IsTruncated")))


def _get(url: str) -> Any:
    return AWSRequest(method="GET", url=url).prepare()


def _session(storage: S3Storage, url: str) -> URLLib3Session:
    """botocore's HTTP session, set up as the client's (CA bundle, proxies, pool size)."""
    scheme_host = url.split("/", 3)[:3]
    key = (os.getpid(), *scheme_host, storage.settings.ca_bundle)  # a fork's pool is not its own
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = URLLib3Session(
                verify=storage.settings.ca_bundle or True,
                proxies=get_environ_proxies(url),
                max_pool_connections=CONCURRENCY,
            )
        return session
