"""Room events sent to sockets through the channel layer, only on commit.

Every event is delivered as a channel-layer message of type ``room.event``
carrying the frame to send (``event``); consumers forward it after applying
per-socket rules (e.g. a removed participant's socket closes). A chat message
is the one event fanned out at volume, so its frame travels encoded once
(``text``) with the two fields the per-socket rules need (``sender``, ``seq``):
each receiving socket writes the text as is instead of encoding it again.

Inside a room socket's database hop (:func:`collecting`) committed events are
not sent from the hop's thread: they are handed back to the consumer, which
sends them on its event loop once the hop has returned. That keeps the hop
from holding the database thread while the fan-out runs, and it is still
strictly after commit (a rolled-back transaction never registers them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import transaction

from . import groups

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
# (group, channel-layer message) pairs committed inside a collecting hop, in commit order.
Outgoing = list[tuple[str, dict[str, Any]]]
_collected: ContextVar[Outgoing | None] = ContextVar("room_events_collected", default=None)


def encode(frame: dict[str, Any]) -> str:
    """A frame as the room socket writes it."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def layer_message(group: str, event: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message for ``event`` sent to ``group`` (chat messages pre-encoded, see the module docs).

    It names its group: a socket forwards it only while it is still in that group (a socket that joins is
    added to the groups its grant could give before the database says which it may keep: rooms/consumers.py).
    """
    if event.get("type") == "chat_message":
        message = event["message"]
        return {
            "type": "room.event",
            "group": group,
            "text": encode(event),
            "sender": message["sender"],
            "seq": message["seq"],
        }
    return {"type": "room.event", "group": group, "event": event}


def _send_message(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the change is committed: a broken layer must not undo it
        logger.exception("could not send an event to %s", group)


def _send(group: str, event: dict[str, Any]) -> None:
    _send_message(group, layer_message(group, event))


def _committed(group: str, event: dict[str, Any]) -> None:
    collected = _collected.get()
    if collected is None:
        _send(group, event)
    else:
        collected.append((group, layer_message(group, event)))


def send_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _committed(group, event))


def to_room(room_id: str, event: dict[str, Any]) -> None:
    send_on_commit(groups.room_group(room_id), event)


def to_moderators(room_id: str, event: dict[str, Any]) -> None:
    send_on_commit(groups.moderators_group(room_id), event)


def to_participant(room_id: str, participant_id: str, event: dict[str, Any]) -> None:
    send_on_commit(groups.participant_group(room_id, participant_id), event)


def collecting(fn: Callable[P, R]) -> Callable[P, tuple[R, Outgoing]]:
    """``fn`` (a synchronous database hop) returning also the events it committed, unsent.

    The caller must :func:`publish` them. If ``fn`` raises, what it committed before is sent at once.
    """

    def run(*args: P.args, **kwargs: P.kwargs) -> tuple[R, Outgoing]:
        collected: Outgoing = []
        token = _collected.set(collected)
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            _collected.reset(token)
            for group, message in collected:
                _send_message(group, message)
            raise
        _collected.reset(token)
        return result, collected

    return run


async def publish(layer: BaseChannelLayer | None, outgoing: Outgoing) -> None:
    """Send what a :func:`collecting` hop committed, in commit order."""
    if layer is None:
        return
    for group, message in outgoing:
        try:
            await layer.group_send(group, message)
        except Exception:  # committed: a broken layer must not fail the frame that caused it
            logger.exception("could not send an event to %s", group)
