"""Time-limited TURN credentials (the "TURN REST API" convention coturn's ``use-auth-secret`` checks).

The username is ``<expiry unix time>:<user>`` and the password is
``base64(HMAC-SHA1(secret, username))``. coturn recomputes the HMAC with its
``static-auth-secret`` and refuses the username once its expiry has passed, so
no per-user state is shared between Django and coturn. The media server has
its own copy of ``turn_credentials`` (``media_server/turn.py``; it never imports
Django); ``tests/api/test_turn_credentials.py`` checks both agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, TypedDict

from django.conf import settings


class TurnCredentials(TypedDict):
    username: str
    credential: str


def turn_credentials(*, secret: str, user: str, ttl: int, now: float) -> TurnCredentials:
    """Credentials valid until ``now + ttl`` (seconds) for ``user`` (must not contain ':')."""
    if not secret:
        raise ValueError("a TURN secret is required")
    if ":" in user:
        raise ValueError("the TURN user must not contain ':'")
    username = f"{int(now) + int(ttl)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {"username": username, "credential": base64.b64encode(digest).decode("ascii")}


def ice_servers_for(*, user: str, now: float | None = None) -> list[dict[str, Any]]:
    """``ICE_SERVERS`` plus, when ``TURN_SECRET`` and ``TURN_URLS`` are set, one TURN entry with fresh credentials."""
    servers: list[dict[str, Any]] = list(settings.ICE_SERVERS)
    if settings.TURN_SECRET and settings.TURN_URLS:
        creds = turn_credentials(
            secret=settings.TURN_SECRET,
            user=user,
            ttl=settings.TURN_TTL_SECONDS,
            now=time.time() if now is None else now,
        )
        servers.append({"urls": list(settings.TURN_URLS), **creds})
    return servers
