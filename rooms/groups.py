"""Channel-layer group names. The name encodes the authorization scope:
a socket is only ever added to the groups of the room it was admitted to."""

from __future__ import annotations


def room_group(room_id: str) -> str:
    return f"room.{room_id}"


def moderators_group(room_id: str) -> str:
    return f"room.{room_id}.moderators"


def participant_group(room_id: str, participant_id: str) -> str:
    return f"room.{room_id}.participant.{participant_id}"
