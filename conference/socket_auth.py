"""``session_auth_if_cookie``: Channels' session and user lookup only for sockets that can have a user.

``AuthMiddlewareStack`` parses the cookies, makes a session store and looks the
user up on Channels' database thread (``database_sync_to_async``: a hand-over
from the event loop to that thread and back, with connection upkeep on both
sides) for every socket, also for a guest, who has no session and is
authenticated by its join grant alone (rooms/presence.py). A socket whose
request carries no session cookie can only be anonymous, so it gets
``AnonymousUser`` at once; one with the cookie goes through the full stack as
before (its user must match the grant's). docs/benchmarks.md §4 has the
figures (issue 19).
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

Scope = dict[str, Any]


def has_session_cookie(scope: Scope) -> bool:
    """Whether the socket's request sends Django's session cookie (any value: the stack judges it)."""
    name = settings.SESSION_COOKIE_NAME
    for header, value in scope.get("headers") or ():
        if header == b"cookie" and name in parse_cookie(value.decode("latin1")):
            return True
    return False


class SessionAuthIfCookie:
    """ASGI middleware: ``AuthMiddlewareStack(inner)`` with a session cookie, else ``inner`` with
    ``scope["user"]`` an ``AnonymousUser`` (and no ``session`` or ``cookies`` in the scope)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if has_session_cookie(scope):
            return await self.with_session(scope, receive, send)
        return await self.inner({**scope, "user": AnonymousUser()}, receive, send)
