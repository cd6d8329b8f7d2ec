"""Removed means removed: a removed guest's browser stays out for the rest of the meeting, until the host
lets them back.

Signed-in people are recognised by their account (``participant_join`` refuses a removed one). A guest has
no account, so the REST join gives each guest browser a random key in a signed, HTTP-only cookie
(``conference_browser``, one year) and stores it on the guest's participant. A join from a browser whose key
belongs to a removed participant of that room is refused with ``403 removed_from_room``, whatever name it
gives; the removed participant's grants were already revoked by the removal (``grant_revoked``). The host
undoes a removal with ``participant_allow_rejoin`` (``DELETE /api/v1/rooms/{roomId}/removals/{participantId}``):
the participant becomes ``left`` and may join again.
"""

from __future__ import annotations

import secrets

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from conference.errors import Conflict, Forbidden, NotFound

from .models import Participant, Room

COOKIE = "conference_browser"
_SALT = "conference.rooms.removals"
_MAX_AGE = 365 * 24 * 3600


def browser_key(request: HttpRequest) -> tuple[str, bool]:
    """This browser's key from its signed cookie, or a new one ("" never: a forged cookie gets a new key), and
    whether it is new (then no participant has it: ``refuse_removed_browser`` need not look)."""
    key = request.get_signed_cookie(COOKIE, default="", salt=_SALT)
    if isinstance(key, str) and 16 <= len(key) <= 32:
        return key, False
    return secrets.token_urlsafe(18), True


def set_browser_cookie(response: HttpResponse, key: str, *, secure: bool) -> None:
    response.set_signed_cookie(COOKIE, key, salt=_SALT, max_age=_MAX_AGE, httponly=True, samesite="Lax", secure=secure)


def refuse_removed_browser(*, room: Room, key: str) -> None:
    """Raise ``removed_from_room`` if a participant of ``room`` with this browser key was removed."""
    if room.participants.filter(browser_key=key, state=Participant.State.REMOVED).exists():
        raise Forbidden("You were removed from this room.", code="removed_from_room")


def remember_browser(*, participant: Participant, key: str) -> None:
    """Record the guest browser that joined as ``participant`` (the newest browser key wins)."""
    if participant.user_id is None and participant.browser_key != key:
        Participant.objects.filter(pk=participant.pk).update(browser_key=key)
        participant.browser_key = key


@transaction.atomic
def participant_allow_rejoin(*, user: User, room_id: str, participant_id: str) -> Participant:
    """The host lets a removed participant (account or guest browser) join again: removed → left.

    Rules, in order: the room exists; the caller is its host; the participant exists in the room; it was
    removed (``409 not_removed`` otherwise).
    """
    room = Room.objects.select_for_update().filter(public_id=room_id).first()
    if room is None:
        raise NotFound("No room has this ID.", code="room_not_found")
    if room.host_id != user.pk:
        raise Forbidden("Only the host can let a removed participant back.", code="not_host")
    target = room.participants.select_for_update().filter(public_id=participant_id).first()
    if target is None:
        raise NotFound("No participant has this ID in this room.", code="participant_not_found")
    if target.state != Participant.State.REMOVED:
        raise Conflict("This participant was not removed.", code="not_removed")
    target.state = Participant.State.LEFT
    target.save(update_fields=["state"])
    return target
