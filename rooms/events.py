"""Room events sent to sockets through the channel layer, only on commit.

Every event is delivered as a channel-layer message of type ``room.event``
carrying the frame to send (``event``); consumers forward it after applying
per-socket rules (e.g. a removed participant's socket closes).
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from . import groups

logger = logging.getLogger(__name__)


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "room.event", "event": event})
    except Exception:  # the change is committed: a broken layer must not undo it
        logger.exception("could not send %s to %s", event.get("type"), group)


def send_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _send(group, event))


def to_room(room_id: str, event: dict[str, Any]) -> None:
    send_on_commit(groups.room_group(room_id), event)


def to_moderators(room_id: str, event: dict[str, Any]) -> None:
    send_on_commit(groups.moderators_group(room_id), event)


def to_participant(room_id: str, participant_id: str, event: dict[str, Any]) -> None:
    send_on_commit(groups.participant_group(room_id, participant_id), event)
