"""Bearer-token auth for every route but /healthz.

The token comes from MOTORAY_API_TOKEN where the service was started, else from
the config's `server.auth_token` (read again when the file changes). Ray's own
token auth does not cover Serve's HTTP port, so the API needs its own.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from motoray.api.deps import ConfigDep
from motoray.api.errors import ApiError

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="`Authorization: Bearer <MOTORAY_API_TOKEN>`",
)


def require_token(
    request: Request,
    config: ConfigDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    expected = request.app.state.token or config.server.auth_token
    given = credentials.credentials if credentials else ""
    # Constant-time: the comparison does not tell how much of a guess was right.
    if not (expected and given and hmac.compare_digest(given.encode(), expected.encode())):
        raise ApiError(
            401,
            "missing or invalid token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
