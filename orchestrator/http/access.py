"""What every route depends on: bearer-token access, a read-only session, and the API's errors.

Bearer tokens come from the settings: a read token reads, a write token also submits sweeps; reads
are open without a token only with ``api_open_read``. Tokens are compared in constant time and
never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from cluster.settings import Settings


class ApiError(Exception):
    """A failure the API answers with its own status (auth: 401, 403)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# ----- auth --------------------------------------------------------------------------------------
READ, WRITE = "read", "write"
bearer = HTTPBearer(auto_error=False, description="A read or write token of the server.")


def _matches(token: str, tokens: list[str]) -> bool:
    """Constant time per token, and every token compared (no early exit reveals which matched)."""
    found = False
    for candidate in tokens:
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found


def grant(settings: Settings, token: str | None) -> str | None:
    """What a bearer token may do: WRITE, READ, or None (no token or an unknown one)."""
    if token is None:
        return None
    if _matches(token, settings.api_write_tokens):
        return WRITE
    if _matches(token, settings.api_read_tokens):
        return READ
    return None


def _credentials(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    return grant(request.app.state.settings, credentials.credentials if credentials else None)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, {"WWW-Authenticate": "Bearer"})


def require_read(access: Annotated[str | None, Depends(_credentials)], request: Request) -> None:
    if access is None and not request.app.state.settings.api_open_read:
        raise _unauthorized("this API needs a bearer token (Authorization: Bearer TOKEN)")


def require_write(access: Annotated[str | None, Depends(_credentials)]) -> None:
    if access is None:
        raise _unauthorized("submitting needs a write token (Authorization: Bearer TOKEN)")
    if access != WRITE:
        raise ApiError(403, "this token may read but not write; submitting needs a write token")


# ----- sessions ----------------------------------------------------------------------------------
def session(request: Request) -> Iterator[Session]:
    """A transaction of the request's own."""
    with request.app.state.sessions.begin() as db_session:
        yield db_session


DB = Annotated[Session, Depends(session)]
