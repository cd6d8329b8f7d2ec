"""End-to-end encryption key exchange on the room socket (docs/protocol.md §1, docs/security.md).

The server only relays: participants of an e2ee room send their ECDH public
key (``e2ee_public_key``, to everyone or to one participant) and their media
key wrapped for one participant (``e2ee_key``). The server never sees a media
key; it stamps ``from`` with the sender's participant ID (so nobody can speak
for someone else) and routes through the room's groups, so a frame only
reaches sockets admitted to this room. Pure: no database, no channel layer.
"""

from __future__ import annotations

from typing import Any

from . import groups
from .socket_protocol import ClientFrame, FrameError


def e2ee_relay(*, room_id: str, sender_id: str, room_e2ee: bool, frame: ClientFrame) -> tuple[str, dict[str, Any]]:
    """The group to send to and the frame to send for a validated ``e2ee_*`` client frame.

    Raises :class:`FrameError` ``e2ee_not_enabled`` in rooms without end-to-end
    encryption and ``invalid_frame`` for a frame addressed to its sender.
    """
    if not room_e2ee:
        raise FrameError("e2ee_not_enabled", "This room is not end-to-end encrypted.", frame.ref)
    data = frame.data
    to = data.get("to")
    if to == sender_id:
        raise FrameError("invalid_frame", "'to' must be another participant.", frame.ref)
    event: dict[str, Any] = {"type": frame.type, "from": sender_id}
    if frame.type == "e2ee_public_key":
        event["public_key"] = data["public_key"]
    else:
        event.update(key_id=data["key_id"], wrapped_key=data["wrapped_key"], iv=data["iv"])
    if to is None:
        return groups.room_group(room_id), event
    event["to"] = to
    return groups.participant_group(room_id, to), event
