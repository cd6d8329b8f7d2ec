"""Room socket protocol, version 1 (docs/protocol.md §1): pure parsing and validation.

Nothing here touches the database, the channel layer or the network: a
client frame (text) goes in, a validated :class:`ClientFrame` comes out or a
:class:`FrameError` is raised with the error code the client gets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from chat.models import MAX_MESSAGE_LENGTH

PROTOCOL_VERSION = 1
MAX_FRAME_CHARS = 128 * 1024
MAX_SDP_CHARS = 64 * 1024
MAX_TOKEN_CHARS = 4096
MAX_REF_CHARS = 64
MAX_CLIENT_ID_CHARS = 64
MAX_CANDIDATE_CHARS = 2048
MAX_REACTION_CHARS = 8
REACTIONS = frozenset({"👍", "👏", "😂", "❤️", "🎉", "😮", "🤔", "👋"})
PUBLISH_PCS = frozenset({"camera", "screen"})
ALL_PCS = PUBLISH_PCS | {"subscribe"}
_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
# E2EE key exchange blobs (base64): a raw P-256 public key is 65 bytes (88 chars); a wrapped
# 256-bit key is 48 bytes with its tag (64 chars); an AES-GCM IV is 12 bytes (16 chars).
MAX_E2EE_PUBLIC_KEY_CHARS = 256
MAX_E2EE_WRAPPED_KEY_CHARS = 256
MAX_E2EE_IV_CHARS = 32
# video_preferences (last-N): pins and the remote tiles the client shows.
MAX_PINNED = 4
MAX_TILES = 100
MAX_TILE_SIDE = 8192
VIDEO_SOURCES = frozenset({"camera", "screen"})


class Close(IntEnum):
    """WebSocket close codes the server uses (documented in docs/protocol.md §1)."""

    HEARTBEAT_TIMEOUT = 4000
    BAD_TOKEN = 4001
    FORBIDDEN = 4003
    ROOM_NOT_FOUND = 4004
    REPLACED = 4005
    JOIN_TIMEOUT = 4008
    REMOVED = 4009
    ROOM_ENDED = 4010
    DENIED = 4011
    ROOM_FULL = 4013
    PROTOCOL_VIOLATION = 4400
    SERVICE_UNAVAILABLE = 4503  # the web process lost Redis (the channel layer): reconnect with backoff


class FrameError(Exception):
    """A client frame was rejected; the client gets an ``error`` frame with ``code``."""

    def __init__(self, code: str, message: str, ref: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclass(frozen=True)
class ClientFrame:
    """A validated client frame: ``data`` holds only the known, type-checked fields."""

    type: str
    ref: str | int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def error_frame(
    code: str, message: str, ref: str | int | None = None, *, retry_after: float | None = None, **details: Any
) -> dict[str, Any]:
    """An ``error`` frame; ``retry_after`` (seconds) marks a retryable error and says when to try again."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if retry_after is not None:
        frame["retry_after"] = retry_after
    if details:
        frame["details"] = details
    return frame


def reply(frame: dict[str, Any], ref: str | int | None) -> dict[str, Any]:
    """``frame`` echoing the client's ``ref`` (acks and answers)."""
    return {**frame, "ref": ref} if ref is not None else frame


def sdp_is_valid(sdp: str) -> bool:
    """A cheap structural check plus aiortc's parser: v=0 first, o=/s=/t= lines, at least one m= line."""
    if not sdp.startswith("v=0"):
        return False
    lines = sdp.replace("\r\n", "\n").split("\n")
    prefixes = {line[:2] for line in lines}
    if not {"o=", "s=", "t=", "m="} <= prefixes:
        return False
    try:
        from aiortc.sdp import SessionDescription

        SessionDescription.parse(sdp)
    except Exception:
        return False
    return True


# --- field checks --------------------------------------------------------------


def _str(raw: dict[str, Any], name: str, *, max_chars: int, required: bool = True, default: str = "") -> str:
    value = raw.get(name)
    if value is None and not required:
        return default
    if not isinstance(value, str):
        raise FrameError("invalid_frame", f"'{name}' must be a string.")
    if len(value) > max_chars:
        raise FrameError("invalid_frame", f"'{name}' is longer than {max_chars} characters.")
    if has_forbidden_characters(value):
        raise FrameError("invalid_characters", f"'{name}' contains a NUL character or a lone UTF-16 surrogate.")
    return value


def has_forbidden_characters(value: str) -> bool:
    """NUL (PostgreSQL text cannot store it) or a lone surrogate (JSON's \\ud800 escapes decode to one; it
    cannot be encoded as UTF-8, so storing or sending it would fail)."""
    return "\x00" in value or _SURROGATE.search(value) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _int(raw: dict[str, Any], name: str, *, required: bool = True, minimum: int = 0) -> int | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FrameError("invalid_frame", f"'{name}' must be an integer ≥ {minimum}.")
    return value


def _choice(raw: dict[str, Any], name: str, choices: frozenset[str]) -> str:
    value = raw.get(name)
    if value not in choices:
        raise FrameError("invalid_frame", f"'{name}' must be one of {', '.join(sorted(choices))}.")
    return str(value)


def _participant_id(raw: dict[str, Any], name: str = "participantId", *, required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise FrameError("invalid_frame", f"'{name}' must be a participant ID.")
    return value


def _sdp(raw: dict[str, Any]) -> str:
    value = raw.get("sdp")
    if not isinstance(value, str):
        raise FrameError("invalid_frame", "'sdp' must be a string.")
    if len(value) > MAX_SDP_CHARS:
        raise FrameError("sdp_too_large", f"An SDP has at most {MAX_SDP_CHARS} characters.")
    if not sdp_is_valid(value):
        raise FrameError("invalid_sdp", "The SDP does not parse.")
    return value


# --- per-type validators ----------------------------------------------------------

Validator = Callable[[dict[str, Any]], dict[str, Any]]


def _empty(raw: dict[str, Any]) -> dict[str, Any]:
    return {}


def _join(raw: dict[str, Any]) -> dict[str, Any]:
    protocol = raw.get("protocol", PROTOCOL_VERSION)
    if protocol != PROTOCOL_VERSION:
        raise FrameError("protocol_mismatch", f"This server speaks room socket protocol {PROTOCOL_VERSION}.")
    media_state = raw.get("media_state")
    if media_state is not None and not isinstance(media_state, dict):
        raise FrameError("invalid_frame", "'media_state' must be an object.")
    return {
        "token": _str(raw, "token", max_chars=MAX_TOKEN_CHARS),
        "last_seq": _int(raw, "last_seq", required=False),
        # the first media_state folded into the join (issue 19): one frame, hop and room event less per join
        "media_state": _media_state(media_state) if media_state else None,
    }


def _chat_send(raw: dict[str, Any]) -> dict[str, Any]:
    text = _str(raw, "text", max_chars=MAX_FRAME_CHARS)
    if len(text) > MAX_MESSAGE_LENGTH:
        raise FrameError("message_too_long", f"A message has at most {MAX_MESSAGE_LENGTH} characters.")
    if not text.strip():
        raise FrameError("empty_message", "A message needs text.")
    return {
        "text": text,
        "client_id": _str(raw, "client_id", max_chars=MAX_CLIENT_ID_CHARS, required=False),
        "to": _participant_id(raw, "to", required=False),
    }


def _chat_sync(raw: dict[str, Any]) -> dict[str, Any]:
    return {"after_seq": _int(raw, "after_seq")}


def _offer(raw: dict[str, Any]) -> dict[str, Any]:
    return {"pc": _choice(raw, "pc", PUBLISH_PCS), "sdp": _sdp(raw)}


def _answer(raw: dict[str, Any]) -> dict[str, Any]:
    pc, revision = _choice(raw, "pc", frozenset({"subscribe"})), _int(raw, "revision")
    return {"pc": pc, "revision": revision, "sdp": _sdp(raw)}


def _ice_candidate(raw: dict[str, Any]) -> dict[str, Any]:
    pc = _choice(raw, "pc", ALL_PCS)
    candidate = raw.get("candidate")
    if candidate is None:  # end of candidates
        return {"pc": pc, "candidate": None}
    if not isinstance(candidate, dict):
        raise FrameError("invalid_frame", "'candidate' must be an object or null.")
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 32):
        raise FrameError("invalid_frame", "'candidate.sdpMid' must be a short string or null.")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1024):
        raise FrameError("invalid_frame", "'candidate.sdpMLineIndex' must be a small integer or null.")
    return {
        "pc": pc,
        "candidate": {
            "candidate": _str(candidate, "candidate", max_chars=MAX_CANDIDATE_CHARS),
            "sdpMid": mid,
            "sdpMLineIndex": index,
        },
    }


def _unpublish(raw: dict[str, Any]) -> dict[str, Any]:
    return {"pc": _choice(raw, "pc", PUBLISH_PCS)}


def _media_state(raw: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, bool] = {}
    for name in ("audio_muted", "video_muted", "screen_sharing"):
        if name in raw:
            if not isinstance(raw[name], bool):
                raise FrameError("invalid_frame", f"'{name}' must be true or false.")
            state[name] = raw[name]
    if not state:
        raise FrameError("invalid_frame", "media_state needs audio_muted, video_muted or screen_sharing.")
    return state


def _reaction(raw: dict[str, Any]) -> dict[str, Any]:
    emoji = _str(raw, "emoji", max_chars=MAX_REACTION_CHARS)
    if emoji not in REACTIONS and (not emoji.strip() or any(ch.isspace() or ch.isalnum() for ch in emoji)):
        raise FrameError("invalid_reaction", "A reaction is one emoji.")
    return {"emoji": emoji}


def _base64(raw: dict[str, Any], name: str, *, max_chars: int) -> str:
    value = _str(raw, name, max_chars=max_chars)
    if not value or not _BASE64.match(value):
        raise FrameError("invalid_frame", f"'{name}' must be base64.")
    return value


def _e2ee_public_key(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "public_key": _base64(raw, "public_key", max_chars=MAX_E2EE_PUBLIC_KEY_CHARS),
        "to": _participant_id(raw, "to", required=False),
    }


def _e2ee_key(raw: dict[str, Any]) -> dict[str, Any]:
    key_id = _int(raw, "key_id")
    if key_id is None or key_id > 0xFFFFFFFF:
        raise FrameError("invalid_frame", "'key_id' must be an integer in 0..2^32-1.")
    return {
        "to": _participant_id(raw, "to"),
        "key_id": key_id,
        "wrapped_key": _base64(raw, "wrapped_key", max_chars=MAX_E2EE_WRAPPED_KEY_CHARS),
        "iv": _base64(raw, "iv", max_chars=MAX_E2EE_IV_CHARS),
    }


def _video_preferences(raw: dict[str, Any]) -> dict[str, Any]:
    pinned = raw.get("pinned", [])
    if not isinstance(pinned, list) or len(pinned) > MAX_PINNED:
        raise FrameError("invalid_frame", f"'pinned' must be a list of at most {MAX_PINNED} participant IDs.")
    ids = [_participant_id({"id": p}, "id") for p in pinned]
    if len(set(ids)) != len(ids):
        raise FrameError("invalid_frame", "'pinned' lists a participant twice.")
    tiles = raw.get("tiles", [])
    if not isinstance(tiles, list) or len(tiles) > MAX_TILES:
        raise FrameError("invalid_frame", f"'tiles' must be a list of at most {MAX_TILES} tiles.")
    out: list[dict[str, Any]] = []
    for tile in tiles:
        if not isinstance(tile, dict):
            raise FrameError("invalid_frame", "Each tile is an object {participant, source, width, height}.")
        width, height = tile.get("width"), tile.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_TILE_SIDE for v in (width, height)):
            raise FrameError("invalid_frame", f"A tile's 'width' and 'height' are integers in 0..{MAX_TILE_SIDE}.")
        out.append(
            {
                "participant": _participant_id(tile, "participant"),
                "source": _choice(tile, "source", VIDEO_SOURCES),
                "width": width,
                "height": height,
            }
        )
    return {"pinned": ids, "tiles": out}


def _target(raw: dict[str, Any]) -> dict[str, Any]:
    return {"participantId": _participant_id(raw)}


def _mute(raw: dict[str, Any]) -> dict[str, Any]:
    return {"participantId": _participant_id(raw), "kind": _choice(raw, "kind", frozenset({"audio", "video"}))}


def _promote(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "participantId": _participant_id(raw),
        "role": _choice(raw, "role", frozenset({"moderator", "participant"})),
    }


# --- breakout rooms (breakouts/, docs/protocol.md §1 "Breakout rooms") ---------------------------------

MAX_BREAKOUT_FRAME_ROOMS = 20  # breakouts.models.MAX_BREAKOUTS


def _breakout_id(raw: dict[str, Any], *, required: bool = True) -> str | None:
    return _participant_id(raw, "breakoutId", required=required)  # room IDs have the same shape


def _breakouts_open(raw: dict[str, Any]) -> dict[str, Any]:
    count = _int(raw, "count", minimum=1)
    auto = raw.get("auto", False)
    if not isinstance(auto, bool):
        raise FrameError("invalid_frame", "'auto' must be true or false.")
    names = raw.get("names", [])
    if not isinstance(names, list) or len(names) > MAX_BREAKOUT_FRAME_ROOMS:
        raise FrameError("invalid_frame", f"'names' must be a list of at most {MAX_BREAKOUT_FRAME_ROOMS} names.")
    if not all(isinstance(n, str) and len(n) <= 80 and not has_forbidden_characters(n) for n in names):
        raise FrameError("invalid_frame", "Each name is a string of at most 80 characters.")
    assignments = raw.get("assignments", {})
    if not isinstance(assignments, dict) or len(assignments) > MAX_TILES:
        raise FrameError("invalid_frame", "'assignments' maps participant IDs to breakout indexes.")
    for pid, index in assignments.items():
        _participant_id({"id": pid}, "id")
        _int({"index": index}, "index")
    return {
        "count": count,
        "duration_minutes": _int(raw, "duration_minutes", required=False, minimum=1),
        "auto": auto,
        "names": names,
        "assignments": assignments,
    }


def _breakout_assign(raw: dict[str, Any]) -> dict[str, Any]:
    return {"participantId": _participant_id(raw), "breakoutId": _breakout_id(raw, required=False)}


def _breakouts_broadcast(raw: dict[str, Any]) -> dict[str, Any]:
    text = _str(raw, "text", max_chars=MAX_MESSAGE_LENGTH)
    if not text.strip():
        raise FrameError("empty_message", "A message needs text.")
    return {"text": text}


def _breakouts_close(raw: dict[str, Any]) -> dict[str, Any]:
    return {"delay_seconds": _int(raw, "delay_seconds", required=False)}


def _breakout_join(raw: dict[str, Any]) -> dict[str, Any]:
    return {"breakoutId": _breakout_id(raw)}


VALIDATORS: dict[str, Validator] = {
    "join": _join,
    "ping": _empty,
    "pong": _empty,
    "chat_send": _chat_send,
    "chat_sync": _chat_sync,
    "offer": _offer,
    "answer": _answer,
    "ice_candidate": _ice_candidate,
    "subscribe": _empty,
    "unpublish": _unpublish,
    "media_state": _media_state,
    "raise_hand": _empty,
    "lower_hand": _empty,
    "reaction": _reaction,
    "mute_participant": _mute,
    "remove_participant": _target,
    "promote": _promote,
    "lock_room": _empty,
    "unlock_room": _empty,
    "end_room": _empty,
    "lower_all_hands": _empty,
    "lobby_admit": _target,
    "lobby_deny": _target,
    "e2ee_public_key": _e2ee_public_key,
    "e2ee_key": _e2ee_key,
    "video_preferences": _video_preferences,
    "breakouts_get": _empty,
    "breakouts_open": _breakouts_open,
    "breakout_assign": _breakout_assign,
    "breakouts_broadcast": _breakouts_broadcast,
    "breakouts_close": _breakouts_close,
    "breakout_join": _breakout_join,
    "breakout_leave": _empty,
}
SIGNALING_TYPES = frozenset({"offer", "answer", "ice_candidate", "subscribe", "unpublish"})
# End-to-end encryption key exchange: opaque blobs relayed between participants of e2ee rooms.
E2EE_TYPES = frozenset({"e2ee_public_key", "e2ee_key"})
MODERATION_TYPES = frozenset(
    {
        "mute_participant",
        "remove_participant",
        "promote",
        "lock_room",
        "unlock_room",
        "end_room",
        "lower_all_hands",
        "lobby_admit",
        "lobby_deny",
    }
)


def parse_frame(text: str) -> ClientFrame:
    """Validate one client text frame. Raises :class:`FrameError` (with the client's ``ref`` when it has one)."""
    if len(text) > MAX_FRAME_CHARS:
        raise FrameError("frame_too_large", f"A frame has at most {MAX_FRAME_CHARS} characters.")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack allows
        raise FrameError("malformed_json", "The frame is not JSON (or nested too deeply).") from None
    if not isinstance(raw, dict):
        raise FrameError("invalid_frame", "A frame is a JSON object.")
    ref = raw.get("ref")
    if ref is not None and not (
        (isinstance(ref, str) and len(ref) <= MAX_REF_CHARS) or (isinstance(ref, int) and not isinstance(ref, bool))
    ):
        raise FrameError(
            "invalid_frame", f"'ref' must be an integer or a string of at most {MAX_REF_CHARS} characters."
        )
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise FrameError("invalid_frame", "A frame needs a string 'type'.", ref)
    validator = VALIDATORS.get(kind)
    if validator is None:
        raise FrameError("unknown_type", f"Unknown frame type {kind[:40]!r}.", ref)
    try:
        data = validator(raw)
    except FrameError as exc:
        exc.ref = ref
        raise
    return ClientFrame(type=kind, ref=ref, data=data)


# --- per-socket clocks (pure: the caller passes the time) ----------------------------


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` spends one if there is one."""

    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Liveness:
    """When a socket must time out its join, ping, be dropped or touch its presence.

    ``next_action(now)`` returns ``(action, delay)``: an action due now
    (``join_timeout``, ``drop``, ``ping``, ``touch``) or ``None`` and the
    seconds until something may be due.
    """

    join_timeout: float
    ping_after: float
    drop_after: float
    touch_every: float
    opened_at: float
    last_heard: float = 0.0
    last_touch: float = 0.0
    pinged: bool = False
    joined: bool = False

    def heard(self, now: float) -> None:
        self.last_heard = now
        self.pinged = False

    def mark_joined(self, now: float) -> None:
        self.joined = True
        self.last_touch = now

    def next_action(self, now: float) -> tuple[str | None, float]:
        if not self.joined:
            deadline = self.opened_at + self.join_timeout
            return ("join_timeout", 0.0) if now >= deadline else (None, deadline - now)
        silent = now - self.last_heard
        if silent >= self.drop_after:
            return "drop", 0.0
        if not self.pinged and silent >= self.ping_after:
            self.pinged = True
            return "ping", 0.0
        if now - self.last_touch >= self.touch_every:
            self.last_touch = now
            return "touch", 0.0
        deadlines = [self.last_heard + self.drop_after, self.last_touch + self.touch_every]
        if not self.pinged:
            deadlines.append(self.last_heard + self.ping_after)
        return None, max(0.01, min(deadlines) - now)
