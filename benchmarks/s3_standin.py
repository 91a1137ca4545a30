"""An S3 stand-in for the benchmark: objects in memory, a fixed latency added to every
request, answered fast otherwise. moto's server costs ~40 ms of CPU per request on this
machine, which hides the client side; this measures how motoray copes with cloud latency.

A LIST page is a join of <Contents> elements made once per key (S3's CPU is not ours to
count): real ListObjectsV2 XML (namespace, ETag, EncodingType=url), with StartAfter,
ContinuationToken, a delimiter and max-keys.

Enough of the S3 API for motoray: ListObjectsV2, GetObject (with Range), PutObject (with
If-None-Match), HeadObject. Path-style addressing, no signature checks. Not for tests of
S3 behaviour: moto is for those.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import threading
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import web


class S3StandIn:
    """`with S3StandIn(latency_s=0.03) as s3:` -> s3.url, s3.objects (bucket -> key -> bytes)."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.objects: dict[str, dict[str, bytes]] = {}
        self.requests = 0
        # bucket -> (its size, its keys sorted, encoded? -> each key's <Contents>)
        self._sorted: dict[str, tuple[int, list[str], dict[bool, list[str]]]] = {}
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> S3StandIn:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{bucket}", self._bucket)
        app.router.add_route("*", "/{bucket}/{key:.*}", self._object)
        self._runner = runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()

    async def _wait(self) -> None:
        self.requests += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    async def _bucket(self, request: web.Request) -> web.Response:
        await self._wait()
        self.objects.setdefault(request.match_info["bucket"], {})
        if request.method == "PUT":
            return web.Response()
        prefix = request.query.get("prefix", "")
        after = request.query.get("continuation-token") or request.query.get("start-after", "")
        most = min(int(request.query.get("max-keys", 1000)), 1000)
        delimiter = request.query.get("delimiter", "")
        encoded = request.query.get("encoding-type") == "url"
        keys, contents, folders, more = self._page(
            request.match_info["bucket"], prefix, after, most, delimiter, encoded
        )
        common = "".join(f"<CommonPrefixes><Prefix>{_encode(p, encoded)}</Prefix></CommonPrefixes>"
                         for p in folders)  # fmt: skip
        # Past a folder's keys: a continuation after a folder must not list them again.
        last = max([*keys, *(f + "\U0010ffff" for f in folders)]) if more else ""
        token = f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if more else ""
        body = "".join((
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{request.match_info['bucket']}</Name>",
            f"<Prefix>{_encode(prefix, encoded)}</Prefix>",
            f"<KeyCount>{len(keys) + len(folders)}</KeyCount><MaxKeys>{most}</MaxKeys>",
            "<EncodingType>url</EncodingType>" if encoded else "",
            f"<IsTruncated>{str(more).lower()}</IsTruncated>{token}",
            *contents, common, "</ListBucketResult>",
        ))  # fmt: skip
        return web.Response(text=body, content_type="application/xml")

    async def _object(self, request: web.Request) -> web.Response:
        await self._wait()
        bucket = self.objects.setdefault(request.match_info["bucket"], {})
        key = request.match_info["key"]
        if request.method == "PUT":
            if request.headers.get("If-None-Match") == "*" and key in bucket:
                return _error(412, "PreconditionFailed")
            bucket[key] = await request.read()
            return web.Response(headers={"ETag": '"0"'})
        data = bucket.get(key)
        if data is None:
            return _error(404, "NoSuchKey")
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(data))})
        ranged = request.headers.get("Range", "")
        if ranged.startswith("bytes="):
            if not data:
                return _error(416, "InvalidRange")
            start, _, end = ranged.removeprefix("bytes=").partition("-")
            first, last = int(start), min(int(end or len(data) - 1), len(data) - 1)
            return web.Response(
                body=data[first : last + 1],
                status=206,
                headers={"Content-Range": f"bytes {first}-{last}/{len(data)}"},
            )
        return web.Response(body=data)

    def _page(
        self, name: str, prefix: str, after: str, most: int, delimiter: str, encoded: bool
    ) -> tuple[list[str], list[str], list[str], bool]:
        """Up to `most` keys and folders together after `after` under `prefix`: the keys,
        their <Contents> elements, the folders, and whether more follow. Bisected in a
        sorted index of the bucket, each key's element made once: the stand-in's CPU is
        not what the benchmark measures, S3's latency is."""
        keys, fragments = self._index(name, encoded)
        start = bisect.bisect_right(keys, max(after, prefix)) if after else bisect.bisect_left(
            keys, prefix
        )  # fmt: skip
        if not delimiter:  # a page is a slice of the index
            stop = min(start + most, bisect.bisect_left(keys, prefix + "\U0010ffff"))
            more = stop < len(keys) and keys[stop].startswith(prefix)
            return keys[start:stop], fragments[start:stop], [], more
        page, contents, folders = [], [], []
        i = start
        while i < len(keys) and keys[i].startswith(prefix) and len(page) + len(folders) < most:
            rest = keys[i][len(prefix) :]
            cut = rest.find(delimiter)
            if cut < 0:
                page.append(keys[i])
                contents.append(fragments[i])
                i += 1
                continue
            folders.append(prefix + rest[: cut + len(delimiter)])
            i = bisect.bisect_left(keys, folders[-1] + "\U0010ffff")  # past the folder's keys
        more = i < len(keys) and keys[i].startswith(prefix)
        return page, contents, folders, more

    def _index(self, name: str, encoded: bool) -> tuple[list[str], list[str]]:
        """The bucket's keys, sorted, and their <Contents> elements; kept until the bucket
        changes (a sort of 10^6 keys per request would be the stand-in's cost)."""
        bucket = self.objects.setdefault(name, {})
        cached = self._sorted.get(name)
        if cached is None or cached[0] != len(bucket):
            cached = self._sorted[name] = (len(bucket), sorted(bucket), {})
        _, keys, fragments = cached
        if encoded not in fragments:
            fragments[encoded] = [_contents(k, bucket[k], encoded) for k in keys]
        return keys, fragments[encoded]


def _encode(key: str, encoded: bool) -> str:
    """A key as S3 writes it in XML: url-encoded when the request asks (XML 1.0 cannot
    hold every character a key may), escaped always."""
    return escape(quote(key, safe="/") if encoded else key)


def _contents(key: str, data: bytes, encoded: bool) -> str:
    return (
        f"<Contents><Key>{_encode(key, encoded)}</Key>"
        "<LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        f"<ETag>&quot;{hashlib.md5(data).hexdigest()}&quot;</ETag>"
        f"<Size>{len(data)}</Size><StorageClass>STANDARD</StorageClass></Contents>"
    )


def _error(status: int, code: str) -> web.Response:
    body = f'<?xml version="1.0"?><Error><Code>{code}</Code><Message>{code}</Message></Error>'
    return web.Response(text=body, status=status, content_type="application/xml")
