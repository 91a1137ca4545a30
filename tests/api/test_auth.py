"""401 on every protected route without the token or with a wrong one; /healthz is open."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.conftest import EXAMPLES

SEED = (EXAMPLES / "seed_sample.json").read_bytes()
PROTECTED = [
    ("POST", "/data_prep"),
    ("GET", "/data_prep/20990101-000000-abcdef"),
    ("DELETE", "/data_prep/20990101-000000-abcdef"),
    ("GET", "/data_sources"),
    ("GET", "/operators"),
]


def _wrong_headers(token: str) -> dict[str, dict[str, str]]:
    basic = base64.b64encode(f"user:{token}".encode()).decode()
    return {
        "none": {},
        "wrong-token": {"Authorization": "Bearer not-the-token"},
        "token-prefix": {"Authorization": f"Bearer {token[:-1]}"},
        "token-plus-one": {"Authorization": f"Bearer {token}x"},
        "empty-bearer": {"Authorization": "Bearer"},
        "basic-scheme": {"Authorization": f"Basic {basic}"},
        "token-without-scheme": {"Authorization": token},
        "other-header": {"X-API-Token": token},
    }


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "case",
    [
        "none",
        "wrong-token",
        "token-prefix",
        "token-plus-one",
        "empty-bearer",
        "basic-scheme",
        "token-without-scheme",
        "other-header",
    ],
)
def test_protected_route_is_401(service, method, path, case):
    headers = {"Content-Type": "application/json", **_wrong_headers(service.token)[case]}
    with httpx.Client(base_url=service.url, timeout=60) as anonymous:
        response = anonymous.request(method, path, content=SEED, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in response.json()["error"]


def test_auth_comes_before_validation(service):
    """Without a token, even a malformed body tells nothing but 401."""
    with service.client(token=None) as anonymous:
        response = anonymous.post(
            "/data_prep", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401


def test_healthz_and_docs_need_no_token(service):
    with service.client(token=None) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_the_right_token_is_accepted(api, method, path):
    body = json.dumps({"name": "nope"}).encode()  # a 422, not a job
    response = api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 404, 422), response.text
