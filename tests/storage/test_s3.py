"""S3Storage against a real moto server on 127.0.0.1 (HTTP and HTTPS)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import SSLError

from motoray.config import S3Settings
from motoray.storage import LocalStorage, Refused, Storage, open_storage
from motoray.storage import s3 as s3_storage
from motoray.storage.s3 import S3Storage
from tests.s3server import S3Endpoint


def test_from_uri_and_open_storage() -> None:
    settings = S3Settings(region="eu-west-1")
    storage = open_storage("s3://bucket/raw/frames/", settings)
    assert storage == S3Storage("bucket", "raw/frames", settings)
    assert storage.uri == "s3://bucket/raw/frames"
    assert S3Storage.from_uri("s3://bucket").uri == "s3://bucket"
    assert S3Storage.from_uri("s3://bucket").settings == S3Settings()
    for bad in ("s3://", "s3:///prefix", "s3://bucket/a/../b", "gs://bucket"):
        with pytest.raises(ValueError):
            S3Storage.from_uri(bad)


def test_round_trip(s3_endpoint: S3Endpoint) -> None:
    storage = s3_endpoint.storage("raw")
    storage.write("cam0/0001.jpg", b"jpeg bytes")
    storage.write("cam0/0001.jpg", b"new jpeg bytes")  # overwrite

    assert storage.read("cam0/0001.jpg") == b"new jpeg bytes"
    assert storage.size("cam0/0001.jpg") == len(b"new jpeg bytes")
    assert storage.exists("cam0/0001.jpg")
    assert not storage.exists("cam0/0002.jpg")
    assert storage.list() == ["cam0/0001.jpg"]

    cam0 = storage.child("cam0")
    assert cam0.uri == f"s3://{storage.bucket}/raw/cam0"
    assert cam0.list() == ["0001.jpg"]
    assert cam0.read("0001.jpg") == b"new jpeg bytes"
    # The object really sits under bucket/raw/, not at the bucket root.
    s3 = s3_endpoint.client()
    assert s3.get_object(Bucket=storage.bucket, Key="raw/cam0/0001.jpg")["Body"].read()


def test_missing_keys_and_bucket(s3_endpoint: S3Endpoint) -> None:
    storage = s3_endpoint.storage("raw")
    with pytest.raises(FileNotFoundError):
        storage.read("nope.jpg")
    with pytest.raises(FileNotFoundError):
        storage.size("nope.jpg")
    assert storage.list() == []  # an empty prefix is just empty on S3

    gone = S3Storage("motoray-no-such-bucket", "", s3_endpoint.settings())
    with pytest.raises(FileNotFoundError, match="bucket does not exist: motoray-no-such-bucket"):
        gone.list()
    with pytest.raises(FileNotFoundError):
        gone.read("a.jpg")
    assert not gone.exists("a.jpg")


def test_list_paginates_filters_and_sorts(s3_endpoint: S3Endpoint, monkeypatch) -> None:
    monkeypatch.setattr(s3_storage, "LIST_PAGE_KEYS", 100)  # S3's 1000 would take 1100 PUTs
    storage = s3_endpoint.storage("frames")
    images = [f"cam{i % 3}/{i:04d}.jpg" for i in range(104)] + [
        f"cam9/{i:03d}.PNG" for i in range(40)
    ]
    texts = [f"notes/{i}.txt" for i in range(20)]
    ignored = [
        "frames/cam0/",  # directory marker
        "frames/cam0/.hidden.jpg",
        "framesX/outside.jpg",  # shares the prefix string, not the folder
        "elsewhere.jpg",
    ]
    refused = ["frames/odd//double-slash.jpg"]  # listed, so that it is recorded; refused on read
    s3 = s3_endpoint.client()
    keys = [f"frames/{k}" for k in images + texts] + ignored + refused
    with ThreadPoolExecutor(8) as pool:  # the server shares our GIL
        list(pool.map(lambda k: s3.put_object(Bucket=storage.bucket, Key=k, Body=b"x"), keys))

    first_page = s3.list_objects_v2(Bucket=storage.bucket, Prefix="frames/", MaxKeys=100)
    assert first_page["IsTruncated"]  # so listing them all takes a second page
    listed = storage.list()
    assert listed == sorted([*images, "odd//double-slash.jpg"])
    with pytest.raises(Refused):
        storage.read("odd//double-slash.jpg")
    assert storage.list((".png", ".TXT")) == sorted(images[-40:] + texts)
    assert storage.child("cam9").list() == [k.removeprefix("cam9/") for k in images[-40:]]


def test_sse_kms(s3_endpoint: S3Endpoint) -> None:
    key_arn = s3_endpoint.client("kms").create_key(Description="motoray test")["KeyMetadata"]["Arn"]
    storage = s3_endpoint.storage("enc", kms_key_id=key_arn)
    storage.write("a.jpg", b"secret")
    assert storage.write_new("b.jpg", b"secret too")

    s3 = s3_endpoint.client()
    for key in ("enc/a.jpg", "enc/b.jpg"):
        head = s3.head_object(Bucket=storage.bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == key_arn
    assert storage.read("a.jpg") == b"secret"

    storage.child("sub").write("c.jpg", b"children keep the key")
    head = s3.head_object(Bucket=storage.bucket, Key="enc/sub/c.jpg")
    assert head["SSEKMSKeyId"] == key_arn

    S3Storage(storage.bucket, "plain", s3_endpoint.settings()).write("d.jpg", b"no kms")
    assert "SSEKMSKeyId" not in s3.head_object(Bucket=storage.bucket, Key="plain/d.jpg")


def test_write_new_is_create_only(s3_endpoint: S3Endpoint) -> None:
    storage = s3_endpoint.storage("out")
    assert storage.write_new("manifest.json", b"first") is True
    assert storage.write_new("manifest.json", b"second") is False
    assert storage.read("manifest.json") == b"first"


@pytest.mark.parametrize("key", ["../escape.jpg", "a/../../b.jpg", "/abs.jpg", "a//b.jpg", ""])
def test_unsafe_keys_rejected(s3_endpoint: S3Endpoint, key: str) -> None:
    storage = S3Storage("any-bucket", "root", s3_endpoint.settings())
    with pytest.raises(Refused, match="refused: a key with"):  # recorded as an image failure
        storage.read(key)
    for call in (storage.size, storage.exists, storage.child):
        with pytest.raises(ValueError, match="unsafe storage key"):
            call(key)
    with pytest.raises(ValueError, match="unsafe storage key"):
        storage.write(key, b"x")
    with pytest.raises(ValueError, match="unsafe storage key"):
        storage.write_new(key, b"x")


def test_pickled_storage_works_here_and_in_another_process(s3_endpoint: S3Endpoint) -> None:
    storage = s3_endpoint.storage("p")
    storage.write("a.jpg", b"payload")
    assert storage.list() == ["a.jpg"]  # the client now exists in this process

    copy = pickle.loads(pickle.dumps(storage))
    assert copy == storage
    assert copy.read("a.jpg") == b"payload"

    # What a Ray worker does: unpickle in a fresh interpreter (env has the credentials).
    code = "import pickle, sys; s = pickle.load(sys.stdin.buffer); print(s.list(), s.size('a.jpg'))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(storage),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.decode().strip() == "['a.jpg'] 7"


def test_https_needs_the_ca_bundle(s3_https_endpoint: S3Endpoint) -> None:
    storage = s3_https_endpoint.storage("tls")
    assert storage.settings.ca_bundle
    storage.write("a.jpg", b"over tls")
    assert storage.read("a.jpg") == b"over tls"
    assert storage.list() == ["a.jpg"]

    untrusted = S3Storage(
        storage.bucket, storage.prefix, storage.settings.model_copy(update={"ca_bundle": None})
    )
    with pytest.raises(SSLError):  # default verify: the system CAs do not know ours
        untrusted.list()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path)
    return request.getfixturevalue("s3_endpoint").storage("root")


def test_local_and_s3_agree(storage: Storage) -> None:
    storage.write("a/1.jpg", b"one")
    storage.write("a/b/2.PNG", b"two!")
    storage.write("notes.txt", b"text")
    storage.write("a/1.jpg", b"uno")
    results = {
        "list": storage.list(),
        "txt": storage.list((".txt",)),
        "read": storage.read("a/1.jpg"),
        "size": storage.size("a/b/2.PNG"),
        # Not compared: exists("a/b") on a "folder" (True locally, False on S3).
        "exists": (storage.exists("a/1.jpg"), storage.exists("a/9.jpg")),
        "write_new": (storage.write_new("n.jpg", b"first"), storage.write_new("n.jpg", b"2nd")),
        "after_new": (storage.read("n.jpg"), storage.list()),
        "child": (storage.child("a").list(), storage.child("a/b").read("2.PNG")),
    }
    assert results == {
        "list": ["a/1.jpg", "a/b/2.PNG"],
        "txt": ["notes.txt"],
        "read": b"uno",
        "size": 4,
        "exists": (True, False),
        "write_new": (True, False),
        "after_new": (b"first", ["a/1.jpg", "a/b/2.PNG", "n.jpg"]),
        "child": (["1.jpg", "b/2.PNG"], b"two!"),
    }
    with pytest.raises(FileNotFoundError):
        storage.read("missing.jpg")
    with pytest.raises(ValueError):
        storage.read("../outside.jpg")
