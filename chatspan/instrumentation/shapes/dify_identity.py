"""Which app and which user a Dify chat's credential names, read as labels.

Dify names the app of a chat differently on each road in: the service API by its app
key, the web app by its passport (a JWT whose claims name the app and the end user),
the console debugger by the app id in its path (and the account in the console token).
Rows must carry Dify's app UUID whatever the road, so:

- Inside Dify's process the app, the end user and the message are the objects Dify's
  own request handling loads or creates for the request; they refine what is read here
  (see ``chatspan.instrumentation.dify_objects``).
- Tokens are read as labels only (their claims, unverified): Dify verifies them, and a
  request it refuses is no chat.
- The app key's SHA-256 digest names the app only when nothing else does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

WEB_APP_PASSPORT = "Web API Passport"  # the `sub` of a Dify web-app passport
CONSOLE_PASSPORT = "Console API Passport"  # the `sub` of a Dify console login token


def bearer_claims(authorization: str | None) -> Mapping[str, Any]:
    """The claims of a bearer JWT, unverified (labels only); empty when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


@functools.lru_cache(maxsize=256)
def app_key_digest(authorization: str | None) -> str | None:
    """A stable, non-secret name for the app behind a Dify app key (``key-`` + digest).

    The key itself must never be stored; a short SHA-256 digest tells apps apart without
    revealing anything. A process serves a handful of keys, so each digest is computed
    once and remembered (in memory only, beside the copies the app itself holds).
    """
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip().startswith("app-"):
        return None
    return "key-" + hashlib.sha256(token.strip().encode()).hexdigest()[:16]
