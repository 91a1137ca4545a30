"""An S3 prefix listed in key ranges, many requests at once, on a real S3-protocol server:
every key once, the same keys and ETags as one serial LIST stream."""

from __future__ import annotations

import pytest

from motoray.pipeline import listing
from motoray.pipeline.listing import Listed, s3_keys, s3_versions
from motoray.storage.s3_ranges import TOP, between, list_range

KEYS = (
    [f"flat/{n:05d}.jpg" for n in range(400)]  # a flat folder: cut by key ranges
    + [f"video{v:03d}/frame_{f:03d}.jpg" for v in range(12) for f in range(15)]
    + ["a.jpg", "Z.png", "~tilde.jpg", "zz/ü/é.jpg", "zz/日本.jpg", "zz/\U0001f3cd.jpg"]
    + ["notes.txt", ".hidden/x.jpg", "flat/.x.jpg"]  # never listed
)


@pytest.fixture(scope="module")
def source(s3_endpoint):
    storage = s3_endpoint.storage("root")
    for key in KEYS:
        storage.write(key, key.encode())
    storage._client.put_object(Bucket=storage.bucket, Key="root/dir/", Body=b"")  # a marker
    s3_endpoint.storage().write("elsewhere.jpg", b"x")  # another bucket
    return storage


@pytest.mark.parametrize(
    ("after", "until"),
    [("a", "b"), ("flat/00001.jpg", "flat/00399.jpg"), ("a", "a\x00b"), ("zz/", "zz/" + TOP),
     ("", "\x7f"), ("video0", "video1"), ("日", "本")],
)  # fmt: skip
def test_a_cut_falls_strictly_between_its_ends(after, until):
    middle = between(after, until)
    assert middle is None or after < middle < until
    if middle is not None:
        middle.encode()  # UTF-8: S3 can take it
        assert all(ord(c) >= 0x20 for c in middle)  # no control character


def test_between_finds_a_cut_in_any_range_wider_than_one_key():
    assert between("a", "a") is None
    assert between("flat/00001.jpg", "flat/00399.jpg") is not None


@pytest.mark.parametrize("threads", [1, 8])
def test_ranges_list_every_key_once_as_a_serial_listing(source, threads):
    serial = source.list_versions()
    assert len(serial) == 400 + 180 + 6
    root = f"{source.prefix}/"
    found = list_range(source, None, root + TOP, (".jpg", ".png"), threads, page_keys=25)
    assert found == serial
    # Two ranges that meet at a key split the listing between them, none twice.
    cut = root + "flat/00123.jpg"
    below = list_range(source, None, cut, (".jpg", ".png"), threads, page_keys=25)
    above = list_range(source, cut, root + TOP, (".jpg", ".png"), threads, page_keys=25)
    assert not below.keys() & above.keys() and below | above == serial
    assert max(below) == "flat/00123.jpg"


def test_tasks_list_the_prefix_into_blocks_in_key_order(source, ray_local):
    dataset = s3_keys(source, (".jpg", ".png"))
    rows = dataset.take_all()
    assert [row["key"] for row in rows] == list(source.list_versions())
    assert [row["version"] for row in rows] == list(source.list_versions().values())


def test_a_job_lists_a_prefix_of_many_pages_by_tasks(s3_endpoint, ray_local):
    storage = s3_endpoint.storage("many")
    client = storage._client
    for n in range(1100):  # two pages
        client.put_object(Bucket=storage.bucket, Key=f"many/v{n % 9}/{n:05d}.jpg", Body=b"")
    listed = s3_versions(storage, (".jpg",))
    assert list(listed) == list(storage.list_versions((".jpg",)))
    assert listed == storage.list_versions((".jpg",)) and len(listed) == 1100


@pytest.mark.parametrize("page_keys", [1000, 25])  # one page, listed here, or ranges in tasks
def test_a_spread_jobs_listing_is_held_by_ray_with_its_etags(
    source, ray_local, monkeypatch, page_keys
):
    """At `spread_from` keys or more the listing stays in Ray's blocks, keys in order with
    their ETags; below it, the keys come back as the serial listing gives them."""
    monkeypatch.setattr(listing, "LIST_PAGE_KEYS", page_keys)  # the first page's size
    serial = source.list_versions((".jpg", ".png"))
    assert s3_versions(source, (".jpg", ".png"), len(serial) + 1) == serial
    held = s3_versions(source, (".jpg", ".png"), len(serial))
    assert isinstance(held, Listed) and held.count == len(serial)
    rows = held.keys.take_all()
    assert {row["key"]: row["version"] for row in rows} == serial
    assert [row["key"] for row in rows] == list(serial)
