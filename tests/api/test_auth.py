"""401 on every protected route without the token or with a wrong one; /healthz is open.

In process (no request here reaches a job), but one: the right token on a real job id's
route, on the live service."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import EXAMPLES

SEED = (EXAMPLES / "seed_sample.json").read_bytes()
UNKNOWN_JOB = "20990101-000000-abcdef"  # a well-formed id: looking it up asks Ray
PROTECTED = [
    ("POST", "/data_prep"),
    ("POST", "/data_prep/preview"),
    ("POST", "/data_prep/plan"),
    ("GET", f"/data_prep/{UNKNOWN_JOB}"),
    ("DELETE", f"/data_prep/{UNKNOWN_JOB}"),
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
def test_protected_route_is_401(app, method, path, case):
    headers = {"Content-Type": "application/json", **_wrong_headers(app.token)[case]}
    with app.client(token=None) as anonymous:
        response = anonymous.request(method, path, content=SEED, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in response.json()["error"]


def test_auth_comes_before_validation(app):
    """Without a token, even a malformed body tells nothing but 401."""
    with app.client(token=None) as anonymous:
        response = anonymous.post(
            "/data_prep", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401
    assert "line" not in response.text  # nothing about the body


def test_healthz_and_docs_need_no_token(app):
    with app.client(token=None) as anonymous:
        assert anonymous.get("/healthz").json()["status"] == "ok"
        assert anonymous.get("/openapi.json").json()["info"]["title"] == "motoray"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/data_prep", 422),  # {"name": "nope"}: not a registered source
        ("POST", "/data_prep/preview", 422),
        ("POST", "/data_prep/plan", 422),
        ("GET", "/data_prep/no such job", 404),  # not an id a job can have: no Ray asked
        ("DELETE", "/data_prep/no such job", 404),
        ("GET", "/data_sources", 200),
        ("GET", "/operators", 200),
    ],
)
def test_the_right_token_is_accepted(app_api, method, path, status):
    body = json.dumps({"name": "nope"}).encode()  # a 422, not a job
    headers = {"Content-Type": "application/json"}
    response = app_api.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_the_right_token_reaches_the_job_lookup(api, method):
    """The one route that asks Ray: the live service, where the lookup finds no such job."""
    response = api.request(method, f"/data_prep/{UNKNOWN_JOB}")
    assert response.status_code == 404, response.text
    assert response.json()["error"].startswith("unknown job")
