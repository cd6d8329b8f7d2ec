"""Rate limits against guessing and flooding, counted in the cache (Redis where ``REDIS_URL`` is set).

Counting is django-ratelimit's (``django_ratelimit.core.get_usage``: fixed windows with per-key jitter,
``cache.add`` + ``cache.incr``, atomic on Redis, so every web process shares one count). What is counted,
per what, and how fast (``settings.THROTTLE_RATES``), is decided here; docs/security.md says why.

Two ways to count:

* :func:`hit` counts every request (guest joins, lobby requests, token/registration calls) and refuses the
  one past the limit;
* :func:`check` + :func:`record_failure` count only failures (wrong room or account passwords): the check
  comes before the password is hashed, so a throttled guess costs no hashing at all. Concurrent guesses can
  overshoot a limit by at most the number in flight (each was checked before the others failed).

A refusal is :class:`Throttled`: ``429`` with ``Retry-After`` and ``{"error": {"code": "throttled", ...}}``.
Keys are the client address from ``conference.client_address`` (trusted proxies only), a room ID or an
account name, hashed by django-ratelimit before they reach the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework import status
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from .client_address import client_address
from .errors import DomainError

MESSAGES = {
    "room_password_address": "Too many wrong room passwords from your address. Try again later.",
    "room_password_room": "Too many wrong passwords for this room. Try again later.",
    "login_address": "Too many failed sign-ins from your address. Try again later.",
    "login_account": "Too many failed sign-ins for this account. Try again later.",
    "auth_address": "Too many sign-in and registration requests from your address. Try again later.",
    "guest_join_address": "Too many guest joins from your address. Try again later.",
    "guest_join_room": "Too many guests are joining this room right now. Try again later.",
    "lobby_room": "Too many people are asking to join this room right now. Try again later.",
}


class Throttled(DomainError):
    """A rate limit was reached: 429, ``Retry-After`` seconds in ``retry_after`` and the details."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "throttled"

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(MESSAGES.get(scope, "Too many requests."), scope=scope, retry_after_seconds=retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limit:
    """One counter: ``scope`` names the rate in ``settings.THROTTLE_RATES``; ``key`` what it counts per."""

    scope: str
    key: str


def _usage(request: HttpRequest, limit: Limit, *, increment: bool) -> dict[str, Any] | None:
    rate = settings.THROTTLE_RATES.get(limit.scope)
    if not rate:
        return None
    usage: dict[str, Any] | None = get_usage(
        request,
        group=f"conference.{limit.scope}",
        key=lambda _group, _request: limit.key,
        rate=rate,
        increment=increment,
    )
    return usage


def _retry_after(usage: dict[str, Any]) -> int:
    return max(1, int(usage["time_left"]))


def hit(request: HttpRequest, *limits: Limit) -> None:
    """Count this request against every limit; raise :class:`Throttled` if any is now exceeded."""
    for limit in limits:
        usage = _usage(request, limit, increment=True)
        if usage is not None and usage["should_limit"]:
            raise Throttled(limit.scope, _retry_after(usage))


def check(request: HttpRequest, *limits: Limit) -> None:
    """Raise :class:`Throttled` if any limit has no attempt left; counts nothing."""
    for limit in limits:
        usage = _usage(request, limit, increment=False)
        if usage is not None and usage["count"] >= usage["limit"]:
            raise Throttled(limit.scope, _retry_after(usage))


def record_failure(request: HttpRequest, *limits: Limit) -> None:
    """Count a failed attempt against every limit."""
    for limit in limits:
        _usage(request, limit, increment=True)


def by_address(scope: str, request: HttpRequest) -> Limit:
    return Limit(scope, client_address(request))


def room_password_limits(request: HttpRequest, room_id: str) -> tuple[Limit, ...]:
    return by_address("room_password_address", request), Limit("room_password_room", room_id)


def login_limits(request: HttpRequest, username: str) -> tuple[Limit, ...]:
    return by_address("login_address", request), Limit("login_account", username.strip().lower()[:150])


class AddressThrottle(BaseThrottle):
    """DRF throttle: every request of the view counts against ``auth_address`` per client address."""

    scope = "auth_address"

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            hit(request._request, by_address(self.scope, request._request))
        except Throttled as exc:
            self._wait = exc.retry_after
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
