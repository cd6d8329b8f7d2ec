"""What the room socket does with the database: join, snapshot, heartbeat, leave.

Every public function here is synchronous and is one ``database_sync_to_async``
hop of the consumer. Writes go through ``rooms.services``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from chat.selectors import chat_page, participant_ids_for
from chat.services import message_public
from conference.errors import DomainError
from conference.turn import ice_servers_for
from recordings.models import Recording

from . import services
from .grants import Grant
from .models import Participant, Room
from .selectors import seated_participants, waiting_participants
from .socket_protocol import PROTOCOL_VERSION, Close

# Catching up on missed chat stops after this many messages (the client pages the rest over REST).
MAX_SYNC_MESSAGES = 1000


class SocketRefused(Exception):
    """The socket must be closed with ``close_code`` after an error frame with ``code``."""

    def __init__(self, close_code: Close, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


@dataclass
class SocketSession:
    """Who a joined socket speaks for. ``admitted``/``role`` follow lobby and role events."""

    room_id: str
    room_pk: int
    participant_id: str
    participant_pk: int
    grant_version: int
    user_id: int | None
    role: str
    admitted: bool
    # Participant records that are "me" for private chat visibility (a user may have rejoined).
    chat_identity: list[int] = field(default_factory=list)
    # The room is end-to-end encrypted (fixed at creation): the socket relays e2ee_* key frames.
    e2ee: bool = False
    # The room's last-N setting (None: by room size), passed to the media server; follows room_updated.
    last_n: int | None = None
    # Inside a breakout room (breakouts/): the session of the meeting's participant, whose seat this socket
    # keeps (heartbeat) while it speaks for the breakout's participant record.
    meeting: SocketSession | None = None

    @property
    def is_moderator(self) -> bool:
        return self.admitted and self.role in ("host", "moderator")


@dataclass
class Entry:
    """Frames to send after entering, and the highest chat seq already covered by them."""

    frames: list[dict[str, Any]]
    chat_high_water: int


@dataclass
class Tick:
    close_code: Close | None = None
    swept: list[str] = field(default_factory=list)


_REFUSALS = {
    "room_ended": (Close.ROOM_ENDED, "The room has ended."),
    "removed": (Close.REMOVED, "You were removed from this room."),
    "denied": (Close.DENIED, "You were not admitted."),
    "bad_token": (Close.BAD_TOKEN, "The join token is invalid, expired or revoked."),
    "room_full": (Close.ROOM_FULL, "The room is full."),
}
_DOMAIN_REFUSALS = {
    "room_ended": "room_ended",
    "removed_from_room": "removed",
    "grant_revoked": "bad_token",
    "room_full": "room_full",
    "participant_not_found": "bad_token",
    "room_not_found": "room_ended",
    "participant_denied": "denied",
}


def _refuse(code: str) -> SocketRefused:
    close_code, message = _REFUSALS[code]
    return SocketRefused(close_code, code, message)


def socket_join(
    *,
    grant: Grant | None,
    room_id: str,
    user: AbstractBaseUser | AnonymousUser | None,
    last_seq: int | None = None,
    media_state: Mapping[str, bool] | None = None,
) -> tuple[SocketSession, Entry]:
    """The ``join`` frame in one database hop: ``socket_authenticate`` and ``socket_enter`` in one transaction.

    ``grant``: the frame's token as ``grant_read`` read it (``None``: forged, malformed or expired). Refused as
    those two would refuse it, in the same order: no room with this ID (``room_not_found``); a bad grant
    (``bad_token``), one for another room (``wrong_room``) or another user (``user_mismatch``); the room has
    ended; the participant was removed or denied; the grant was replaced; the room is full. The room and the
    participant are read once, under the room's lock (``services.participant_connect_by_grant``).
    """
    refusal = _grant_refusal(grant=grant, room_id=room_id, user=user)
    if refusal is not None or grant is None:
        if not Room.objects.filter(public_id=room_id).exists():
            raise _room_not_found()
        raise refusal or _refuse("bad_token")
    try:
        participant = services.participant_connect_by_grant(grant=grant, media_state=media_state)
    except DomainError as exc:
        if exc.code == "room_not_found":
            raise _room_not_found() from exc
        raise _refuse(_DOMAIN_REFUSALS.get(exc.code, "bad_token")) from exc
    room = participant.room
    session = SocketSession(
        room_id=room_id,
        room_pk=room.pk,
        participant_id=participant.public_id,
        participant_pk=participant.pk,
        grant_version=grant.version,
        user_id=participant.user_id,
        role=participant.role,
        admitted=participant.state == Participant.State.ADMITTED,
        e2ee=room.e2ee,
        last_n=room.last_n,
    )
    return session, _entered(session=session, participant=participant, last_seq=last_seq)


def _room_not_found() -> SocketRefused:
    return SocketRefused(Close.ROOM_NOT_FOUND, "room_not_found", "No room has this ID.")


def _grant_refusal(
    *, grant: Grant | None, room_id: str, user: AbstractBaseUser | AnonymousUser | None
) -> SocketRefused | None:
    """Why a join grant cannot be for this socket, from the grant alone (no database)."""
    if grant is None:
        return _refuse("bad_token")
    if grant.room_id != room_id:
        return SocketRefused(Close.FORBIDDEN, "wrong_room", "This join token is for another room.")
    if user is not None and user.is_authenticated and grant.user_id != user.pk:
        return SocketRefused(Close.FORBIDDEN, "user_mismatch", "This join token belongs to someone else.")
    return None


def socket_enter(
    *, session: SocketSession, last_seq: int | None = None, media_state: Mapping[str, bool] | None = None
) -> Entry:
    """Mark the participant present and build what the socket sends first.

    Admitted: ``room_snapshot``, then (if ``last_seq`` is given) every chat
    message after it and ``chat_synced``. Waiting: ``lobby_waiting``.
    ``media_state``: the join frame's (muted, camera off, sharing), stored with the connect.
    Updates ``session`` (admitted, role, chat identity).
    """
    try:
        participant = services.participant_connect(
            room_id=session.room_id,
            participant_pk=session.participant_pk,
            grant_version=session.grant_version,
            media_state=media_state,
        )
    except DomainError as exc:
        raise _refuse(_DOMAIN_REFUSALS.get(exc.code, "bad_token")) from exc
    session.role = participant.role
    session.admitted = participant.state == Participant.State.ADMITTED
    return _entered(session=session, participant=participant, last_seq=last_seq)


def _entered(*, session: SocketSession, participant: Participant, last_seq: int | None) -> Entry:
    """What a socket sends first once its participant is connected (``participant.room`` read under the lock)."""
    if not session.admitted:
        return Entry(frames=[{"type": "lobby_waiting", "participantId": participant.public_id}], chat_high_water=0)
    room = participant.room
    session.chat_identity = participant_ids_for(room=room, user_id=participant.user_id, participant=participant)
    snapshot = room_snapshot(participant=participant, room_current=True)
    frames = [snapshot]
    high_water = snapshot["chat"]["head_seq"]
    if last_seq is not None:
        missed, high_water = chat_missed(session=session, after_seq=last_seq, high_water=high_water)
        frames.extend(missed)
    return Entry(frames=frames, chat_high_water=high_water)


def recording_state(*, room: Room) -> dict[str, Any]:
    latest = Recording.objects.filter(room=room).order_by("-created_at").values_list("public_id", "status").first()
    if latest is None:
        return {"recordingId": None, "status": "none"}
    return {"recordingId": latest[0], "status": latest[1]}


def room_snapshot(*, participant: Participant, room_current: bool = False) -> dict[str, Any]:
    """Everything a newly joined (or admitted) socket needs to draw the room.

    ``room_current``: ``participant.room`` was just read (services.participant_connect): not read again.
    """
    room = participant.room
    if not room_current:
        room.refresh_from_db(
            fields=["chat_seq", "locked", "name", "max_participants", "waiting_room", "status", "last_n"]
        )
    me = {**services.participant_public(participant), "state": participant.state}
    snapshot: dict[str, Any] = {
        "type": "room_snapshot",
        "protocol": PROTOCOL_VERSION,
        "room": {"roomId": room.public_id, "status": room.status, **services.room_settings_public(room)},
        "you": me,
        "participants": services.participants_public(seated_participants(room=room)),
        "recording_state": recording_state(room=room),
        "chat": {"head_seq": room.chat_seq},
        "ice_servers": ice_servers_for(user=participant.public_id),
    }
    if participant.is_moderator:
        snapshot["lobby"] = _lobby(room)
    return snapshot


def _lobby(room: Room) -> list[dict[str, Any]]:
    return services.participants_public(waiting_participants(room=room))


def lobby_list(*, session: SocketSession) -> dict[str, Any]:
    """``lobby_list``: the waiting room now, for a socket whose participant just became a moderator.

    The socket joins the moderators' group first, so a ``lobby_request`` or
    ``lobby_resolved`` committed meanwhile reaches it after this list.
    """
    return {"type": "lobby_list", "lobby": _lobby(Room(pk=session.room_pk, public_id=session.room_id))}


def chat_missed(*, session: SocketSession, after_seq: int, high_water: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Chat messages this participant may see with seq > ``after_seq``, oldest first, then ``chat_synced``.

    Returns the frames and the new high-water mark (the highest seq covered).
    """
    room = Room(pk=session.room_pk, public_id=session.room_id)
    identity = session.chat_identity or [session.participant_pk]
    frames: list[dict[str, Any]] = []
    cursor, more = after_seq, True
    while more and len(frames) < MAX_SYNC_MESSAGES:
        page, more = chat_page(room=room, participant_ids=identity, after=cursor, limit=200)
        for message in page:
            frames.append({"type": "chat_message", "message": message_public(message)})
            cursor = message.seq
    up_to = cursor if more else max(cursor, high_water)
    frames.append({"type": "chat_synced", "up_to": up_to, "more": more})
    return frames, max(high_water, cursor)


def socket_tick(*, session: SocketSession) -> Tick:
    """Heartbeat: keep this participant's seat and time out participants of the room nobody has seen.

    Returns a close code if this socket should not live on (removed, replaced, room ended, timed out).
    """
    row = (
        Participant.objects.filter(pk=session.participant_pk)
        .values_list("grant_version", "state", "room__status")
        .first()
    )
    if row is None or row[2] == Room.Status.ENDED:
        return Tick(close_code=Close.ROOM_ENDED)
    version, state, _ = row
    if state == Participant.State.REMOVED:
        return Tick(close_code=Close.REMOVED)
    if state == Participant.State.DENIED:
        return Tick(close_code=Close.DENIED)
    if version != session.grant_version:
        return Tick(close_code=Close.REPLACED)
    if state == Participant.State.LEFT:
        return Tick(close_code=Close.HEARTBEAT_TIMEOUT)
    services.participant_touch(participant_ids=[session.participant_pk])
    return Tick(swept=services.room_sweep_absent(room_pk=session.room_pk))


def socket_leave(*, session: SocketSession) -> bool:
    """The socket closed: the participant leaves unless a newer grant (a reload) took over."""
    participant = Participant.objects.select_related("room").filter(pk=session.participant_pk).first()
    if participant is None:
        return False
    return services.participant_leave(participant=participant, grant_version=session.grant_version)
