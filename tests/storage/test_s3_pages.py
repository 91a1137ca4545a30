"""A ListObjectsV2 page parsed by motoray (s3_pages) against botocore's own parse of the
same listing, on a real S3-protocol server, with keys that break naive XML or URL code."""

from __future__ import annotations

import pytest

from motoray.storage.s3_pages import list_page, parse_page
from motoray.storage.s3_ranges import ahead

HOSTILE = [
    "a b/with space.jpg",
    "amp&er<sand>.jpg",
    "quote\"apos'.jpg",
    "plus+sign%41.jpg",
    # "\n" and "\r" in keys: moto's server answers 404 to their PUT (werkzeug paths)
    "tab\there.jpg",
    "ünï/cödé/日本/\U0001f3cd.jpg",
    "x" * 900 + ".jpg",  # near S3's 1,024-byte key limit
    "trailing space .jpg",
    "]]>cdata.jpg",
]


@pytest.fixture(scope="module")
def hostile(s3_endpoint):
    storage = s3_endpoint.storage("h")
    for n, key in enumerate(HOSTILE):
        storage._client.put_object(Bucket=storage.bucket, Key=f"h/{key}", Body=key.encode() * n)
    return storage


def _botocore_pages(storage, max_keys: int) -> list[tuple[list[tuple[str, str]], bool]]:
    pages, token = [], {}
    while True:
        listed = storage._client.list_objects_v2(
            Bucket=storage.bucket, Prefix="h/", MaxKeys=max_keys, **token
        )
        keys = [(o["Key"], o["ETag"]) for o in listed.get("Contents", ())]
        pages.append((keys, listed["IsTruncated"]))
        if not listed["IsTruncated"]:
            return pages
        token = {"StartAfter": keys[-1][0]}


@pytest.mark.parametrize("max_keys", [1, 3, 1000])
def test_pages_give_the_keys_etags_and_truncation_botocore_gives(hostile, max_keys):
    expected = _botocore_pages(hostile, max_keys)
    found, after = [], None
    while True:
        page = list_page(hostile, "h/", after, max_keys)
        found.append((page.keys, page.truncated))
        if not page.truncated:
            break
        after = page.keys[-1][0]
    assert found == expected
    assert sorted(k for keys, _ in found for k, _ in keys) == sorted(f"h/{k}" for k in HOSTILE)


def test_a_page_stops_at_the_end_it_is_given(hostile):
    keys = sorted(f"h/{k}" for k in HOSTILE)
    page = list_page(hostile, "h/", keys[1], 1000, until=keys[4])
    assert [k for k, _ in page.keys] == keys[2:5] and not page.truncated


def test_an_error_is_botocores_error(s3_endpoint):
    from botocore.exceptions import ClientError

    storage = s3_endpoint.storage("e")
    missing = type(storage)("no-such-bucket-here", "", storage.settings)
    with pytest.raises(ClientError) as raised:
        list_page(missing, "", None, 10)
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"


def test_a_page_without_encoding_or_namespace_is_read_as_written():
    body = (
        b"<ListBucketResult><IsTruncated>true</IsTruncated>"
        b"<Contents><Key>a+b%20&amp;.jpg</Key><ETag>&quot;e&quot;</ETag></Contents>"
        b"</ListBucketResult>"
    )
    assert parse_page(body).keys == [("a+b%20&.jpg", '"e"')] and parse_page(body).truncated


def test_cuts_ahead_step_about_a_page_and_stay_inside_the_range():
    cuts = ahead("in/v000/f_000000.jpg", "in/v000/f_000999.jpg", "in/\U0010ffff", 5)
    assert len(cuts) == 5 and cuts[0] > "in/v000/f_000999.jpg"
    assert cuts == sorted(cuts) and cuts[-1] < "in/v000/f_006000.jpg"
    assert ahead("a", "b", "b\x00", 4) == []  # no room


def test_url_encoded_keys_are_decoded_as_botocore_decodes_them():
    body = (
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
        b"<Contents><Key>new%0Aline+sp%2B%26.jpg</Key><ETag>&quot;e&quot;</ETag></Contents>"
        b"</ListBucketResult>"
    )
    assert parse_page(body).keys == [("new\nline sp+&.jpg", '"e"')]


def test_xml_written_unlike_s3s_is_read_by_the_full_parser():
    body = (
        b"<ListBucketResult><!-- a comment --><IsTruncated>false</IsTruncated>"
        b"<Contents><Key><![CDATA[a<b&c.jpg]]></Key></Contents>"
        b'<Contents kind="x"><Key>d&#13;e.jpg</Key><ETag>&quot;f&quot;</ETag></Contents>'
        b"</ListBucketResult>"
    )
    assert parse_page(body).keys == [("a<b&c.jpg", None), ("d\re.jpg", '"f"')]


def test_a_contents_without_etag_does_not_borrow_the_next_ones():
    body = (
        b"<ListBucketResult><IsTruncated>true</IsTruncated>"
        b"<Contents><Key>a.jpg</Key></Contents>"
        b"<Contents><Key>b&#13;&lt;.jpg</Key><ETag>&quot;f&quot;</ETag></Contents>"
        b"</ListBucketResult>"
    )
    assert parse_page(body) == parse_page(body.replace(b"<Contents>", b"<Contents >"))
    assert parse_page(body).keys == [("a.jpg", None), ("b\r<.jpg", '"f"')]
    assert parse_page(body).truncated
