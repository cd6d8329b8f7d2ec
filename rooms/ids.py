"""Unguessable short public identifiers.

Room IDs are 12 characters from a 31-character alphabet without look-alikes
(12 x log2(31) = 59.45 bits of randomness): short enough to read out, too many to enumerate
(tests/security/test_room_ids.py).
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no i, l, o, 0, 1
ROOM_ID_LENGTH = 12
ROOM_ID_RE = re.compile(rf"^[{ALPHABET}]{{{ROOM_ID_LENGTH}}}$")


def new_id(length: int = ROOM_ID_LENGTH, prefix: str = "") -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_room_id() -> str:
    return new_id()


def new_participant_id() -> str:
    return new_id(10, "p")


def new_recording_id() -> str:
    return new_id(10, "rec")


def new_message_id() -> str:
    return new_id(12, "m")
