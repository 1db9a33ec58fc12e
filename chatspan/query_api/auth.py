"""Who is asking: an admin (an API key) or one user (a signed token).

Admin keys come from ``CHATSPAN_ADMIN_API_KEYS`` and are compared in constant time.
User tokens are HS256 JWTs signed with ``CHATSPAN_JWT_SECRET`` and must carry ``exp``;
the user is the ``user_id`` claim when present (Dify console tokens carry the account
id there), else ``sub``, unless ``CHATSPAN_JWT_USER_CLAIM`` names another claim.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatspan.config import ApiSettings

bearer = HTTPBearer(auto_error=False, description="An admin API key or a user's JWT")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    """An admin, who may read everything, or a user, who may read their own history."""

    is_admin: bool
    user_id: str | None = None


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    settings: ApiSettings = request.app.state.settings
    if request.app.state.insecure:
        return Principal(is_admin=True)
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an Authorization: Bearer credential is required",
            _CHALLENGE,
        )
    token = credentials.credentials
    if key_matches(token, settings.admin_api_keys):
        return Principal(is_admin=True)
    user_id = _user_from_token(token, settings)
    if user_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the credential is not valid", _CHALLENGE)
    return Principal(is_admin=False, user_id=user_id)


def require_admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this endpoint needs an admin key")
    return who


def require_reader_of(user_id: str, who: Principal) -> None:
    """An admin, or the user whose history it is."""
    if not who.is_admin and who.user_id != user_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a user token may read only its own history")


def key_matches(token: str, keys: tuple[str, ...]) -> bool:
    """Whether `token` is one of `keys`, compared in constant time."""
    matched = False
    for key in keys:  # every key is compared, so timing tells nothing about which
        matched |= hmac.compare_digest(token.encode(), key.encode())
    return matched


def _user_from_token(token: str, settings: ApiSettings) -> str | None:
    if not settings.jwt_secret or token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(
            token, settings.jwt_secret, algorithms=["HS256"], options={"require": ["exp"]}
        )
    except jwt.PyJWTError:
        return None
    claim = settings.jwt_user_claim or ("user_id" if "user_id" in claims else "sub")
    user_id = claims.get(claim)
    return str(user_id) if user_id not in (None, "") else None


Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal, Depends(principal)]
