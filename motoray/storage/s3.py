"""An S3 bucket prefix (AWS or any S3-compatible endpoint) as a source or sink."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from motoray.config import S3Settings
from motoray.storage.base import CHANGED, IMAGE_EXTENSIONS, Changed, Refused
from motoray.storage.keys import safe_key
from motoray.storage.ranged import RangedReader

# Requests in flight per task: at ~30 ms a request (AWS), a CPU making ~150 images/s at
# ~5 requests each needs ~25 in flight; 64 leaves room for slower answers.
CONCURRENCY = 64
LIST_PAGE_KEYS = 1000  # the most S3 returns in one ListObjectsV2 page
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    max_pool_connections=CONCURRENCY,  # one connection per request in flight (default: 10)
    # What requests use already; said so that presigned URLs (s3_pages) are SigV4 too.
    signature_version="s3v4",
)
_MISSING = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_DENIED = {"AccessDenied", "Forbidden", "403"}
_ALREADY_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_NOT_THAT_VERSION = {"PreconditionFailed", "412"}

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for `settings`, shared by every thread of this process.

    Clients are thread-safe but sessions are not, so each client gets its own
    session, created under a lock. The pid is part of the key so a forked child
    never reuses its parent's connection pool.
    """
    key = (os.getpid(), settings.endpoint_url, settings.region, settings.ca_bundle)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # Credentials come from the standard AWS chain (env, profile, instance role).
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=settings.endpoint_url,
                region_name=settings.region,
                verify=settings.ca_bundle or None,
                config=_CLIENT_CONFIG,
            )
            _clients[key] = client
        return client


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _os_errors(what: str, version: str | None = None) -> Iterator[None]:
    """Turn S3 "not found" / "denied" into the errors a local folder raises, and a failed
    If-Match on `version` into Changed."""
    try:
        yield
    except ClientError as e:
        code = _code(e)
        if version is not None and code in _NOT_THAT_VERSION:
            raise Changed(
                f"{CHANGED}: {what} is no longer the object listed "
                f"(ETag {version.partition('@')[0]})"
            ) from None
        if version is not None and code in _MISSING:
            raise Changed(f"{CHANGED}: {what} was deleted") from None
        if code in _MISSING:
            raise FileNotFoundError(f"not found on S3 ({code}): {what}") from e
        if code in _DENIED:
            raise PermissionError(f"access denied on S3: {what}") from e
        raise


@contextmanager
def list_errors(storage: S3Storage) -> Iterator[None]:
    """A listing's missing bucket or denied LIST as the errors a local folder raises."""
    try:
        yield
    except ClientError as e:
        if _code(e) == "NoSuchBucket":
            raise FileNotFoundError(
                f"S3 bucket does not exist: {storage.bucket} "
                f"(endpoint {storage.settings.endpoint_url or 'AWS'})"
            ) from e
        if _code(e) in _DENIED:  # a source that cannot be listed is no smaller source
            raise PermissionError(f"access denied on S3: cannot list {storage.uri}") from e
        raise


@dataclass(frozen=True)
class S3Storage:
    bucket: str
    prefix: str = ""  # no leading or trailing "/"; "" is the whole bucket
    # Not hashed: pydantic models are unhashable, and bucket + prefix identify the place.
    settings: S3Settings = field(default_factory=S3Settings, hash=False)
    concurrency = CONCURRENCY

    @classmethod
    def from_uri(cls, uri: str, settings: S3Settings | None = None) -> S3Storage:
        """`s3://bucket` or `s3://bucket/some/prefix` (a trailing "/" is ignored)."""
        if not uri.startswith("s3://"):
            raise ValueError(f"not an S3 URI: {uri}")
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"S3 URI has no bucket: {uri}")
        prefix = prefix.strip("/")
        return cls(bucket, safe_key(prefix) if prefix else "", settings or S3Settings())

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def _client(self) -> Any:
        # Looked up on every call, never stored on self: the storage stays picklable.
        return s3_client(self.settings)

    def _key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _encryption(self) -> dict[str, str]:
        if self.settings.kms_key_id:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.settings.kms_key_id}
        return {}

    def list(self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
        return list(self.list_versions(extensions))

    def list_versions(
        self, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    ) -> dict[str, str | None]:
        """Keys with their ETags: tasks read exactly what was listed (If-Match)."""
        wanted = tuple(e.lower() for e in extensions)
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root, PaginationConfig={"PageSize": LIST_PAGE_KEYS}
        )
        keys = {}
        with list_errors(self):
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"][len(root) :]
                    if key.lower().endswith(wanted) and not _hidden(key):
                        keys[key] = obj.get("ETag")
        return {key: keys[key] for key in sorted(keys)}

    def read(self, key: str, max_bytes: int | None = None, version: str | None = None) -> bytes:
        if not _canonical(key):
            raise Refused("refused: a key with '..', '//', a leading '/' or a backslash")
        # One ranged GET, no HEAD: a larger object shows itself by its extra byte.
        extra = {} if max_bytes is None else {"Range": f"bytes=0-{max_bytes}"}
        extra |= _pinned(version)
        try:
            with _os_errors(f"{self.uri}/{key}", version):
                response = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except ClientError as e:
            if _code(e) == "InvalidRange":  # the range of an empty object
                return b""
            raise
        if max_bytes is not None:
            total = int(response.get("ContentRange", "/0").rpartition("/")[2] or 0)
            if total > max_bytes:
                response["Body"].close()
                raise Refused(f"file too large: {total} bytes > limit {max_bytes}")
        return response["Body"].read()

    def open(self, key: str, version: str | None = None) -> RangedReader:
        """Ranged GETs of BLOCK_BYTES as the reader needs them, never the whole object; all
        of one version: the one HEAD found (its VersionId where the bucket keeps versions,
        else If-Match on its ETag), or `version`."""
        if not _canonical(key):
            raise Refused("refused: a key with '..', '//', a leading '/' or a backslash")
        where = f"{self.uri}/{key}"
        with _os_errors(where, version):
            head = self._client.head_object(
                Bucket=self.bucket, Key=self._key(key), **_pinned(version)
            )
        if version is None or "@" not in version:  # a bucket that keeps versions: the id
            version = head.get("ETag")
            if head.get("VersionId") not in (None, "null"):
                version = f"{version}@{head['VersionId']}"
        pin = _pinned(version)

        def fetch(first: int, last: int) -> bytes:
            with _os_errors(where, version):
                response = self._client.get_object(
                    Bucket=self.bucket, Key=self._key(key), Range=f"bytes={first}-{last}", **pin
                )
            return response["Body"].read()

        return RangedReader(fetch, head["ContentLength"], where, version)

    def size(self, key: str) -> int:
        with _os_errors(f"{self.uri}/{key}"):
            return self._client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        with _os_errors(f"{self.uri}/{key}"):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def write(self, key: str, data: bytes) -> None:
        # A PUT is atomic on S3: readers see the old object or the whole new one.
        with _os_errors(f"{self.uri}/{key}"):
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **self._encryption()
            )

    def write_new(self, key: str, data: bytes) -> bool:
        # S3 conditional write: 412 if the key exists, 409 if a concurrent write raced us.
        # If a retried PUT had in fact landed, the retry sees 412 and this returns False
        # for our own object: a caller that must know compares what is there.
        try:
            with _os_errors(f"{self.uri}/{key}"):
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=data,
                    IfNoneMatch="*",
                    **self._encryption(),
                )
        except ClientError as e:
            if _code(e) in _ALREADY_EXISTS:
                return False
            raise
        return True

    def sync(self) -> None:
        """Nothing to do: a PUT is durable when it returns."""

    def child(self, prefix: str) -> S3Storage:
        return S3Storage(self.bucket, self._key(prefix), self.settings)


def _pinned(version: str | None) -> dict[str, str]:
    """GET/HEAD arguments that read only `version`: "<ETag>" (If-Match) or
    "<ETag>@<VersionId>" (a version id names an object that never changes)."""
    if version is None:
        return {}
    etag, _, version_id = version.partition("@")
    return {"VersionId": version_id} if version_id else {"IfMatch": etag}


def _hidden(key: str) -> bool:
    """Hidden names, as LocalStorage skips them ("a/" directory markers end with no
    extension and are never listed)."""
    return any(part.startswith(".") and part not in (".", "..") for part in key.split("/"))


def _canonical(key: str) -> bool:
    """False for keys the other methods would reject or rewrite ("../a", "/a", "a//b",
    "a\\b"): listed, then refused when read, so they are recorded, not lost."""
    try:
        return safe_key(key) == key
    except ValueError:
        return False
