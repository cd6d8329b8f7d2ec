"""Join grants: short-lived signed tokens bound to one participant of one room.

A grant names the room, the participant, the user (or none for guests) and
the participant's ``grant_version``; bumping the version revokes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

SALT = "conference.rooms.join-grant"


@dataclass(frozen=True)
class Grant:
    room_id: str
    participant_id: str
    user_id: int | None
    version: int


def grant_issue(*, room_id: str, participant_id: str, user_id: int | None, version: int) -> str:
    payload = {"r": room_id, "p": participant_id, "u": user_id, "v": version}
    return signing.dumps(payload, salt=SALT, compress=False)


def grant_read(token: str, *, max_age: int | None = None) -> Grant | None:
    """The grant inside ``token``, or None if it is forged, malformed or expired."""
    try:
        payload = signing.loads(
            token, salt=SALT, max_age=settings.JOIN_GRANT_TTL_SECONDS if max_age is None else max_age
        )
        return Grant(
            room_id=str(payload["r"]),
            participant_id=str(payload["p"]),
            user_id=int(payload["u"]) if payload["u"] is not None else None,
            version=int(payload["v"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
