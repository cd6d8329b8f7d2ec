"""Join grants: short-lived signed tokens bound to one participant of one room.

A grant names the room, the participant, the user (or none for guests) and
the participant's ``grant_version``; bumping the version revokes it.

Rejoin tokens (``rejoin_issue``) are the longer-lived credential a browser
keeps per tab to take the same seat again after a reload: they name the room,
the participant, the user and the browser's session, and are checked against
the participant's state when used (``rooms.services.participant_rejoin``).
"""

from __future__ import annotations

import hashlib
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


# --- Rejoin tokens (a reload keeps the seat) ------------------------------------------------------------------

REJOIN_SALT = "conference.rooms.rejoin"


@dataclass(frozen=True)
class Rejoin:
    """Who may take a participant's seat again: the same user (None: a guest) from the same browser session."""

    room_id: str
    participant_id: str
    user_id: int | None
    browser: str


def browser_binding(session_key: str | None) -> str:
    """What ties a rejoin token to one browser: a digest of its Django session key ("" without a session)."""
    if not session_key:
        return ""
    return hashlib.sha256(f"{REJOIN_SALT}:{session_key}".encode()).hexdigest()[:32]


def rejoin_issue(*, room_id: str, participant_id: str, user_id: int | None, browser: str) -> str:
    """An opaque credential that lets this participant join again without password or lobby (docs/protocol.md §1)."""
    payload = {"r": room_id, "p": participant_id, "u": user_id, "b": browser}
    return signing.dumps(payload, salt=REJOIN_SALT, compress=False)


def rejoin_read(token: str) -> Rejoin | None:
    """The claim inside a rejoin token, or None if it is forged, malformed or older than REJOIN_TOKEN_TTL_SECONDS."""
    try:
        payload = signing.loads(token, salt=REJOIN_SALT, max_age=settings.REJOIN_TOKEN_TTL_SECONDS)
        return Rejoin(
            room_id=str(payload["r"]),
            participant_id=str(payload["p"]),
            user_id=int(payload["u"]) if payload["u"] is not None else None,
            browser=str(payload["b"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
