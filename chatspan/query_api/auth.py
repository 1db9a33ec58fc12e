"""Who is asking: an admin (an API key) or one user (a signed token).

Admin keys come from ``CHATSPAN_ADMIN_API_KEYS`` and are compared in constant time.
User tokens are HS256 JWTs signed with ``CHATSPAN_JWT_SECRET`` and must carry ``exp``
(and ``aud`` / ``iss`` matching ``CHATSPAN_JWT_AUDIENCE`` / ``CHATSPAN_JWT_ISSUER`` when
those are set). The user is the claim that names them: ``CHATSPAN_JWT_USER_CLAIM`` when
set, else ``user_id`` (Dify console tokens carry the account id there), else ``sub``
unless it is one of Dify's passport subjects, which name a kind of token, not a user. A
Dify web-app passport (an end user's session with one app, signed with the same
``SECRET_KEY``) is never a user token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatspan.config import ApiSettings
from chatspan.instrumentation.shapes.dify_identity import CONSOLE_PASSPORT, WEB_APP_PASSPORT
from chatspan.query_api.state import State

bearer = HTTPBearer(auto_error=False, description="An admin API key or a user's JWT")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    """An admin, who may read everything, or a user, who may read their own history."""

    is_admin: bool
    user_id: str | None = None


def principal(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    settings = state.settings
    if state.insecure:
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
    required = ["exp"]
    required += ["aud"] if settings.jwt_audience else []
    required += ["iss"] if settings.jwt_issuer else []
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": required},
        )
    except jwt.PyJWTError:
        return None
    return _named_user(claims, settings.jwt_user_claim)


def _named_user(claims: dict[str, Any], claim: str | None) -> str | None:
    """The user a verified token names, or None when it names none."""
    subject = claims.get("sub")
    if subject == WEB_APP_PASSPORT:
        return None
    if claim:
        user_id = claims.get(claim)
    elif "user_id" in claims:
        user_id = claims["user_id"]
    else:
        user_id = None if subject == CONSOLE_PASSPORT else subject
    return str(user_id) if user_id not in (None, "") else None


Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal, Depends(principal)]
