"""Rate limits around the REST join (``RoomJoinApi``), before any password is hashed.

In order: guest joins count per client address and per room (every one); in a waiting-room room, requests
from anyone but the host count per room (lobby floods); a join that carries a password for a password room
is refused while the client address or the room has no wrong-password attempts left, and a wrong password
counts against both. Rates: ``settings.THROTTLE_RATES``; mechanics: ``conference.throttles``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.http import HttpRequest

from conference import throttles
from conference.errors import DomainError

from .models import Room


@contextmanager
def join_throttled(request: HttpRequest, *, room: Room, password: str) -> Iterator[None]:
    """Wrap ``services.participant_join``: refuse throttled callers first, count wrong passwords after."""
    user = request.user
    if not user.is_authenticated:
        throttles.hit(
            request,
            throttles.by_address("guest_join_address", request),
            throttles.Limit("guest_join_room", room.public_id),
        )
    if room.waiting_room and not (user.is_authenticated and room.host_id == user.pk):
        throttles.hit(request, throttles.Limit("lobby_room", room.public_id))
    password_limits = throttles.room_password_limits(request, room.public_id)
    if room.has_password and password:
        throttles.check(request, *password_limits)
    try:
        yield
    except DomainError as exc:
        if exc.code == "room_password_invalid":
            throttles.record_failure(request, *password_limits)
        raise
