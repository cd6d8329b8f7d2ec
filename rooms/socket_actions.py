"""Client frames that change or read room state, mapped to services (one hop each).

``perform`` runs synchronously in the consumer's single ``database_sync_to_async``
hop for the frame: it loads the acting participant fresh (roles change), calls
the service, and turns the outcome (or a :class:`DomainError`) into frames for
this socket. Everyone else hears about changes through the events the
services send on commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from breakouts.socket_actions import BREAKOUT_ACTIONS
from chat.services import chat_post
from conference.errors import DomainError

from . import services
from .models import Participant
from .presence import SocketSession, chat_missed
from .socket_protocol import ClientFrame, Close, error_frame, reply


@dataclass
class ActionResult:
    frames: list[dict[str, Any]] = field(default_factory=list)
    close_code: Close | None = None
    # Participants the media server must drop (removed), and whether the room's media must close.
    media_leave: list[str] = field(default_factory=list)
    media_close_room: bool = False
    chat_high_water: int | None = None
    # A breakout move (breakouts/socket_actions.py): the session this socket speaks for from now on.
    switch_to: SocketSession | None = None


class _Replaced(Exception):
    pass


def _actor(session: SocketSession) -> Participant:
    actor = Participant.objects.select_related("room").get(pk=session.participant_pk)
    if actor.grant_version != session.grant_version:
        raise _Replaced
    return actor


def _chat_send(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    message, _created = chat_post(
        sender=actor, text=frame.data["text"], client_id=frame.data["client_id"], recipient_id=frame.data["to"]
    )
    ack = {"type": "chat_ack", "client_id": message.client_id or None, "seq": message.seq, "id": message.public_id}
    return ActionResult(frames=[reply(ack, frame.ref)])


def _chat_sync(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    frames, high_water = chat_missed(session=session, after_seq=frame.data["after_seq"])
    frames[-1] = reply(frames[-1], frame.ref)
    return ActionResult(frames=frames, chat_high_water=high_water)


def _media_state(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    services.participant_update_media(participant=actor, **frame.data)
    return ActionResult()


def _hand(raised: bool) -> Callable[[SocketSession, Participant, ClientFrame], ActionResult]:
    def run(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
        services.participant_set_hand(participant=actor, raised=raised)
        return ActionResult()

    return run


def _mute(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    services.participant_request_mute(actor=actor, participant_id=frame.data["participantId"], kind=frame.data["kind"])
    return ActionResult()


def _remove(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    target = services.participant_remove(actor=actor, participant_id=frame.data["participantId"])
    return ActionResult(media_leave=[target.public_id])


def _promote(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    services.participant_set_role(actor=actor, participant_id=frame.data["participantId"], role=frame.data["role"])
    return ActionResult()


def _lock(locked: bool) -> Callable[[SocketSession, Participant, ClientFrame], ActionResult]:
    def run(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
        services.room_set_lock(actor=actor, locked=locked)
        return ActionResult()

    return run


def _end(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    services.room_end(room_id=session.room_id, actor=actor)
    return ActionResult(media_close_room=True)


def _lower_all(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    services.room_lower_all_hands(actor=actor)
    return ActionResult()


def _admit(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    services.participant_admit(actor=actor, participant_id=frame.data["participantId"])
    return ActionResult()


def _deny(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    services.participant_deny(actor=actor, participant_id=frame.data["participantId"])
    return ActionResult()


ACTIONS: dict[str, Callable[[SocketSession, Participant, ClientFrame], ActionResult]] = {
    "chat_send": _chat_send,
    "chat_sync": _chat_sync,
    "media_state": _media_state,
    "raise_hand": _hand(True),
    "lower_hand": _hand(False),
    "mute_participant": _mute,
    "remove_participant": _remove,
    "promote": _promote,
    "lock_room": _lock(True),
    "unlock_room": _lock(False),
    "end_room": _end,
    "lower_all_hands": _lower_all,
    "lobby_admit": _admit,
    "lobby_deny": _deny,
    **BREAKOUT_ACTIONS,
}


def perform(*, session: SocketSession, frame: ClientFrame) -> ActionResult:
    """Run one state-changing client frame; domain errors become an ``error`` frame echoing ``ref``."""
    try:
        actor = _actor(session)
        return ACTIONS[frame.type](session, actor, frame)
    except _Replaced:
        return ActionResult(
            frames=[error_frame("session_replaced", "A newer join replaced this socket.", frame.ref)],
            close_code=Close.REPLACED,
        )
    except Participant.DoesNotExist:
        return ActionResult(frames=[error_frame("participant_not_found", "You are not in this room.", frame.ref)])
    except DomainError as exc:
        return ActionResult(frames=[error_frame(exc.code, exc.message, frame.ref, **exc.details)])
