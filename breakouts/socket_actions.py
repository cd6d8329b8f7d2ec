"""Breakout frames of the room socket, entries of ``rooms.socket_actions.ACTIONS`` (one database hop each).

Managing frames (open, assign, broadcast, close) act as the person's participant record in the *meeting*
(``session.meeting`` when the socket is inside a breakout). Moving frames (``breakout_join``,
``breakout_leave``) return ``switch_to``: the session the socket speaks for from now on; the consumer
follows its groups and tells the media server the old record left its media room.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conference.errors import DomainError
from rooms import presence
from rooms import services as room_services
from rooms.models import Participant

from . import services

if TYPE_CHECKING:
    from rooms.presence import SocketSession
    from rooms.socket_actions import ActionResult
    from rooms.socket_protocol import ClientFrame

Action = Callable[["SocketSession", Participant, "ClientFrame"], "ActionResult"]


def _result(**kwargs: Any) -> ActionResult:
    from rooms.socket_actions import ActionResult  # that module's table imports this one

    return ActionResult(**kwargs)


def _main(session: SocketSession) -> tuple[SocketSession, Participant]:
    """The meeting's session and participant record behind this socket (fresh: roles change)."""
    main = session.meeting or session
    participant = Participant.objects.select_related("room").get(pk=main.participant_pk)
    if participant.grant_version != main.grant_version:
        raise DomainError("A newer join replaced this socket.", code="session_replaced")
    return main, participant


def _state_reply(meeting: Any, frame: ClientFrame) -> dict[str, Any]:
    from rooms.socket_protocol import reply

    state = services.session_public(services.live_session(meeting=meeting))
    return reply({"type": "breakouts_state", "breakouts": state}, frame.ref)


def _get(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    _main_session, main = _main(session)
    return _result(frames=[_state_reply(main.room, frame)])


def _open(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    _main_session, main = _main(session)
    data = frame.data
    services.breakouts_open(
        meeting_id=main.room.public_id,
        actor=main,
        count=data["count"],
        names=data["names"],
        duration_minutes=data["duration_minutes"],
        assignments=data["assignments"],
        auto=data["auto"],
    )
    return _result()


def _assign(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    _main_session, main = _main(session)
    services.breakout_assign(
        meeting_id=main.room.public_id,
        actor=main,
        participant_id=frame.data["participantId"],
        breakout_id=frame.data["breakoutId"],
    )
    return _result()


def _broadcast(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    _main_session, main = _main(session)
    services.breakouts_broadcast(meeting_id=main.room.public_id, actor=main, text=frame.data["text"])
    return _result()


def _close(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    _main_session, main = _main(session)
    delay = frame.data["delay_seconds"]
    kwargs = {} if delay is None else {"delay_seconds": delay}
    services.breakouts_close(meeting_id=main.room.public_id, actor=main, **kwargs)
    return _result()


def _leave_breakout(session: SocketSession) -> None:
    """This socket's breakout record leaves its breakout room (others there get ``participant_left``)."""
    inner = Participant.objects.select_related("room").filter(pk=session.participant_pk).first()
    if inner is not None:
        room_services.participant_leave(participant=inner, grant_version=session.grant_version, reason="left")


def _moved(new: SocketSession, *, breakout: dict[str, Any] | None, ref: Any) -> ActionResult:
    from rooms.socket_protocol import reply

    entry = presence.socket_enter(session=new)
    frames = [reply({"type": "breakout_moved", "breakout": breakout}, ref), *entry.frames]
    return _result(frames=frames, switch_to=new, chat_high_water=entry.chat_high_water)


def _join(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    main_session, main = _main(session)
    target = frame.data["breakoutId"]
    inner = services.breakout_enter(participant=main, breakout_id=target)
    if session.meeting is not None:
        _leave_breakout(session)
    new = presence.SocketSession(
        room_id=inner.room.public_id,
        room_pk=inner.room.pk,
        participant_id=inner.public_id,
        participant_pk=inner.pk,
        grant_version=inner.grant_version,
        user_id=inner.user_id,
        role=inner.role,
        admitted=True,
        e2ee=False,
        last_n=inner.room.last_n,
        meeting=main_session,
    )
    name = inner.room.breakout.name
    services.breakout_state_changed(meeting_id=main.room.public_id)
    return _moved(new, breakout={"breakoutId": target, "name": name, "meetingId": main.room.public_id}, ref=frame.ref)


def return_to_meeting(*, session: SocketSession, ref: Any = None) -> ActionResult:
    """Leave the breakout this socket is in and speak for the meeting's record again (its seat was kept)."""
    if session.meeting is None:
        raise DomainError("You are not in a breakout room.", code="not_in_breakout")
    _leave_breakout(session)
    main = session.meeting
    services.breakout_state_changed(meeting_id=main.room_id)
    return _moved(main, breakout=None, ref=ref)


def _leave(session: SocketSession, actor: Participant, frame: ClientFrame) -> ActionResult:
    return return_to_meeting(session=session, ref=frame.ref)


BREAKOUT_ACTIONS: dict[str, Action] = {
    "breakouts_get": _get,
    "breakouts_open": _open,
    "breakout_assign": _assign,
    "breakouts_broadcast": _broadcast,
    "breakouts_close": _close,
    "breakout_join": _join,
    "breakout_leave": _leave,
}
