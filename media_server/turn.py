"""Time-limited TURN credentials for the media server's own ICE agents (coturn ``use-auth-secret``).

The same convention as ``conference/turn.py`` (the media server never imports
Django, so the few lines are duplicated; ``tests/api/test_turn_credentials.py`` checks both
agree): username ``<expiry unix time>:<user>``, password
``base64(HMAC-SHA1(secret, username))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from .config import Config, IceServer


def turn_credentials(*, secret: str, user: str, ttl: int, now: float) -> tuple[str, str]:
    """``(username, credential)`` valid until ``now + ttl`` (seconds) for ``user`` (must not contain ':')."""
    if not secret:
        raise ValueError("a TURN secret is required")
    if ":" in user:
        raise ValueError("the TURN user must not contain ':'")
    username = f"{int(now) + int(ttl)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(config: Config, now: float | None = None) -> tuple[IceServer, ...]:
    """``config.ice_servers`` plus, when TURN is configured, one TURN entry with fresh credentials."""
    if not (config.turn_secret and config.turn_urls):
        return config.ice_servers
    username, credential = turn_credentials(
        secret=config.turn_secret,
        user="media-" + config.node_id.replace(":", "_"),
        ttl=config.turn_ttl,
        now=time.time() if now is None else now,
    )
    return (*config.ice_servers, IceServer(urls=config.turn_urls, username=username, credential=credential))
