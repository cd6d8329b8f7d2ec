"""Who may do what to a room, for the REST API."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

from conference.errors import Forbidden

from .models import Participant, Room
from .selectors import participant_was_admitted


def require_host(*, room: Room, user: User | AnonymousUser) -> None:
    if not user.is_authenticated or room.host_id != user.pk:
        raise Forbidden("Only the room's host can do this.", code="not_host")


def require_admitted(*, room: Room, user: User | AnonymousUser, participant: Participant | None) -> None:
    """The caller is, or was, admitted to this room (by account, or by a guest's grant)."""
    if participant is not None and participant.room_id == room.pk and participant.admitted_at is not None:
        return
    if participant_was_admitted(room=room, user=user):
        return
    raise Forbidden("Only people admitted to this room can do this.", code="not_admitted")


def is_room_moderator(*, room: Room, user: User | AnonymousUser) -> bool:
    if not user.is_authenticated:
        return False
    if room.host_id == user.pk:
        return True
    return room.participants.filter(user=user, role="moderator").exclude(state=Participant.State.REMOVED).exists()
