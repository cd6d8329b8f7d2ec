"""Media control protocol v1: pure to/from-JSON functions and domain errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
PUBLISH_PCS = ("camera", "screen")
ICE_PCS = ("camera", "screen", "subscribe")
SOURCES = {
    ("camera", "video"): "camera",
    ("camera", "audio"): "microphone",
    ("screen", "video"): "screen",
    ("screen", "audio"): "screen_audio",
}
RECORDING_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # docs/protocol.md §3 (Django issues rec + 10)


TIMEOUT_HEADER = "X-Conference-Timeout"
"""Optional request header: seconds after which the caller gives up (publish, subscribe, answer are then
refused with ``request_expired`` if they have not started; see docs/protocol.md)."""
MAX_TIMEOUT = 300.0


class MediaError(Exception):
    """A domain error with a protocol error code and HTTP status."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(MediaError):
    status, code = 400, "bad_request"


class InvalidSdp(MediaError):
    status, code = 400, "invalid_sdp"


class RequestExpired(MediaError):
    """The caller's ``X-Conference-Timeout`` passed while the request waited for its room: not done."""

    status, code = 503, "request_expired"


class Unauthorized(MediaError):
    status, code = 401, "unauthorized"


class StaleRequest(Unauthorized):
    code = "stale_request"


class ReplayedRequest(Unauthorized):
    code = "replayed_request"


class NotFound(MediaError):
    status, code = 404, "not_found"


class RoomNotFound(MediaError):
    status, code = 404, "room_not_found"


class ParticipantNotFound(MediaError):
    status, code = 404, "participant_not_found"


class PeerNotFound(MediaError):
    status, code = 404, "peer_not_found"


class ProtocolMismatch(MediaError):
    status, code = 409, "protocol_mismatch"


class StaleRevision(MediaError):
    status, code = 409, "stale_revision"


class NoCommonCodec(MediaError):
    status, code = 422, "no_common_codec"


class RecordingNotFound(MediaError):
    status, code = 404, "recording_not_found"


class RecordingInProgress(MediaError):
    status, code = 409, "recording_in_progress"


class RecordingExists(MediaError):
    status, code = 409, "recording_exists"


class SpoolUnwritable(MediaError):
    status, code = 409, "spool_unwritable"


class RelayDisabled(MediaError):
    status, code = 409, "relay_disabled"


class RelayNotFound(MediaError):
    status, code = 404, "relay_not_found"


@dataclass(frozen=True)
class TrackInfo:
    """One m-line of a subscribe connection and what it carries."""

    mid: str
    participant: str
    pc: str
    source: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {
            "mid": self.mid,
            "participant": self.participant,
            "pc": self.pc,
            "source": self.source,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class PublishRequest:
    pc: str
    sdp: str


@dataclass(frozen=True)
class AnswerRequest:
    sdp: str
    revision: int


@dataclass(frozen=True)
class IceRequest:
    pc: str
    candidate: Mapping[str, Any] | None = field(default=None)


def check_body(body: Any) -> Mapping[str, Any]:
    """Validate the envelope: a JSON object whose optional ``protocol`` is ours."""
    if not isinstance(body, Mapping):
        raise BadRequest("body must be a JSON object")
    version = body.get("protocol", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolMismatch(f"protocol {version!r} not supported", {"supported": [PROTOCOL_VERSION]})
    return body


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' must be a non-empty string", {"field": name})
    return value


def parse_publish(body: Any) -> PublishRequest:
    body = check_body(body)
    pc = _string(body, "pc")
    if pc not in PUBLISH_PCS:
        raise BadRequest(f"'pc' must be one of {list(PUBLISH_PCS)}", {"field": "pc"})
    return PublishRequest(pc=pc, sdp=_string(body, "sdp"))


@dataclass(frozen=True)
class Tile:
    """A remote video the client shows, and how large: its simulcast layer is capped at ``height``."""

    participant: str
    source: str
    width: int
    height: int


@dataclass(frozen=True)
class Preferences:
    """What one subscriber wants to see (last-N, media_server/lastn.py)."""

    pinned: tuple[str, ...] = ()
    tiles: tuple[Tile, ...] = ()


@dataclass(frozen=True)
class RoomSettings:
    last_n: int | None
    """Cameras forwarded to each subscriber; None = the default by room size (lastn.default_last_n)."""


ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_PINNED = 4
MAX_TILES = 100
MAX_TILE_SIDE = 8192
MAX_LAST_N = 100


def _participant_ids(value: Any, name: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise BadRequest(f"'{name}' must be a list of at most {limit} participant IDs", {"field": name})
    if not all(isinstance(v, str) and ID_RE.match(v) for v in value) or len(set(value)) != len(value):
        raise BadRequest(f"'{name}' must hold distinct participant IDs", {"field": name})
    return tuple(value)


def _tile(raw: Any) -> Tile:
    if not isinstance(raw, Mapping):
        raise BadRequest("each tile must be an object", {"field": "tiles"})
    participant, source = raw.get("participant"), raw.get("source")
    if not isinstance(participant, str) or not ID_RE.match(participant) or source not in ("camera", "screen"):
        raise BadRequest("a tile needs 'participant' (ID) and 'source' (camera|screen)", {"field": "tiles"})
    sides = [raw.get("width"), raw.get("height")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_TILE_SIDE for v in sides):
        raise BadRequest(f"tile 'width'/'height' must be integers in 0..{MAX_TILE_SIDE}", {"field": "tiles"})
    return Tile(participant=participant, source=str(source), width=int(raw["width"]), height=int(raw["height"]))


def parse_preferences(body: Any) -> Preferences:
    body = check_body(body)
    pinned = _participant_ids(body.get("pinned", []), "pinned", MAX_PINNED)
    tiles = body.get("tiles", [])
    if not isinstance(tiles, list) or len(tiles) > MAX_TILES:
        raise BadRequest(f"'tiles' must be a list of at most {MAX_TILES} tiles", {"field": "tiles"})
    return Preferences(pinned=pinned, tiles=tuple(_tile(t) for t in tiles))


def _last_n(body: Mapping[str, Any]) -> RoomSettings:
    value = body.get("last_n")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LAST_N):
        raise BadRequest(f"'last_n' must be null or an integer in 0..{MAX_LAST_N}", {"field": "last_n"})
    return RoomSettings(last_n=value)


def parse_room_settings(body: Any) -> RoomSettings:
    body = check_body(body)
    if "last_n" not in body:
        raise BadRequest("'last_n' is required (null = by room size)", {"field": "last_n"})
    return _last_n(body)


def parse_subscribe(body: Any) -> RoomSettings | None:
    """The room settings the subscribe request carries (``last_n``), None if it carries none."""
    body = check_body(body)
    return _last_n(body) if "last_n" in body else None


def parse_answer(body: Any) -> AnswerRequest:
    body = check_body(body)
    revision = body.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool):
        raise BadRequest("'revision' must be an integer", {"field": "revision"})
    return AnswerRequest(sdp=_string(body, "sdp"), revision=revision)


def parse_ice(body: Any) -> IceRequest:
    body = check_body(body)
    pc = _string(body, "pc")
    if pc not in ICE_PCS:
        raise BadRequest(f"'pc' must be one of {list(ICE_PCS)}", {"field": "pc"})
    if "candidate" not in body:
        raise BadRequest("'candidate' is required (null = end of candidates)", {"field": "candidate"})
    cand = body["candidate"]
    if cand is None:
        return IceRequest(pc=pc)
    if not isinstance(cand, Mapping) or not isinstance(cand.get("candidate"), str):
        raise BadRequest("'candidate.candidate' must be a string", {"field": "candidate"})
    mid = cand.get("sdpMid")
    index = cand.get("sdpMLineIndex")
    if (mid is not None and not isinstance(mid, str)) or (
        index is not None and (not isinstance(index, int) or isinstance(index, bool))
    ):
        raise BadRequest("'sdpMid' must be a string and 'sdpMLineIndex' an integer", {"field": "candidate"})
    return IceRequest(pc=pc, candidate=cand)


def check_recording_id(value: Any) -> str:
    """A recording ID safe to use as a spool directory name; raises BadRequest."""
    if not isinstance(value, str) or not RECORDING_ID_RE.match(value):
        raise BadRequest("'recording' must match ^[A-Za-z0-9_-]{1,32}$", {"field": "recording"})
    return value


def parse_start_recording(body: Any) -> str:
    """The recording ID of a start request."""
    return check_recording_id(check_body(body).get("recording"))


def parse_drain(body: Any) -> bool:
    """``POST /v1/drain {"draining": true|false}``: whether the node stops taking new rooms."""
    draining = check_body(body).get("draining", True)
    if not isinstance(draining, bool):
        raise BadRequest("draining must be true or false")
    return draining


@dataclass(frozen=True)
class RelayRequest:
    node: str
    url: str


def parse_relay(body: Any) -> RelayRequest:
    """``POST /v1/rooms/{room}/relays {"node": id, "url": control URL}``: relay the room to that node."""
    body = check_body(body)
    url = _string(body, "url")
    if not url.startswith(("http://", "https://")):
        raise BadRequest("'url' must be an http(s) URL", {"field": "url"})
    return RelayRequest(node=_string(body, "node"), url=url)


def recording_response(room: str, recording: str) -> dict[str, Any]:
    return {"protocol": PROTOCOL_VERSION, "room": room, "recording": recording}


def publish_response(pc: str, sdp: str) -> dict[str, Any]:
    return {"protocol": PROTOCOL_VERSION, "pc": pc, "sdp": sdp}


def subscribe_response(sdp: str | None, revision: int, tracks: list[TrackInfo], connection: str) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL_VERSION,
        "sdp": sdp,
        "revision": revision,
        "tracks": [t.to_json() for t in tracks],
        "connection": connection,
    }


def health_response(*, node: str, rooms: int, peers: int, forwarded_packets: int, **extra: Any) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL_VERSION,
        "status": "ok",
        "node": node,
        "rooms": rooms,
        "peers": peers,
        "forwarded_packets": forwarded_packets,
        **extra,
    }


def subscribe_offer_event(
    room: str, participant: str, sdp: str, revision: int, tracks: list[TrackInfo], connection: str
) -> dict[str, Any]:
    return {
        "type": "subscribe_offer",
        "room": room,
        "participant": participant,
        "sdp": sdp,
        "revision": revision,
        "tracks": [t.to_json() for t in tracks],
        "connection": connection,
    }


def track_unavailable_event(room: str, participant: str, track: TrackInfo, reason: str, codec: str) -> dict[str, Any]:
    """A track offered to ``participant`` that the SFU cannot forward to them (e.g. no common codec)."""
    return {
        "type": "track_unavailable",
        "room": room,
        "participant": participant,
        "mid": track.mid,
        "track": track.to_json(),
        "reason": reason,
        "codec": codec,
    }


def forwarded_tracks_event(
    room: str,
    participant: str,
    last_n: int | None,
    video: list[TrackInfo],
    audio: list[TrackInfo],
    audio_pooled: bool = False,
    bandwidth: dict[str, Any] | None = None,
    spare: list[str] | None = None,
    revision: int | None = None,
    connection: str | None = None,
) -> dict[str, Any]:
    """What ``participant``'s subscribe connection is currently fed with (last-N).

    ``audio_pooled``: the microphone m-lines are a pool re-mapped to whoever is heard.
    ``bandwidth``: the link's state, estimate and the videos paused or reduced for bandwidth
    (``bandwidth_report.bandwidth_json``; absent from older servers).
    ``spare``: the mids of negotiated m-lines that carry no track now (spare m-lines: a client forgets
    whom it mapped them to). ``revision``: the subscribe connection's latest offer revision (a client
    ignores the event of a connection older than the offer it applied last). ``connection``: the subscribe
    connection's name (``Subscriber.connection``: a client ignores the event of another connection, whose
    revisions may have restarted).
    """
    return {
        "type": "forwarded_tracks",
        "room": room,
        "participant": participant,
        "last_n": last_n,
        "video": [t.to_json() for t in video],
        "audio": [t.to_json() for t in audio],
        "audio_pooled": audio_pooled,
        **({"bandwidth": bandwidth} if bandwidth is not None else {}),
        **({"spare": spare} if spare is not None else {}),
        **({"revision": revision} if revision is not None else {}),
        **({"connection": connection} if connection is not None else {}),
    }


def active_speaker_event(room: str, participant: str) -> dict[str, Any]:
    return {"type": "active_speaker", "room": room, "participant": participant}


def peer_state_event(room: str, participant: str, pc: str, state: str, reason: str | None = None) -> dict[str, Any]:
    return {"type": "peer_state", "room": room, "participant": participant, "pc": pc, "state": state, "reason": reason}


def publication_event(room: str, participant: str, pc: str, state: str, sources: list[str]) -> dict[str, Any]:
    return {
        "type": "publication",
        "room": room,
        "participant": participant,
        "pc": pc,
        "state": state,
        "sources": sources,
    }


def recording_stopped_event(room: str, recording: str, manifest: str) -> dict[str, Any]:
    return {"type": "recording_stopped", "room": room, "recording": recording, "manifest": manifest}


def recording_failed_event(room: str, recording: str, reason: str) -> dict[str, Any]:
    return {"type": "recording_failed", "room": room, "recording": recording, "reason": reason}


# Node registry (docs/protocol.md §2): give rooms with no placement (Redis lost its keys: restarted empty)
# back to ``node``, which still hosts them, unless failover took them from a node (an orphan, waiting for a
# new placement). Run by the media node's heartbeat (its rooms) and by Django on a node's media events.
# adopt_rooms(prefix, node, room ttl ms, may adopt, first): the rooms are ARGV[first], ARGV[first + 1], ...;
# returns those placed on another node.
ADOPT_ROOMS_LUA = """
local function adopt_rooms(p, node, ttl, may_adopt, first)
  local elsewhere = {}
  for i = first, #ARGV do
    local room = ARGV[i]
    local room_key = p .. ':media:room:' .. room
    local host = redis.call('GET', room_key)
    if not host and may_adopt and not redis.call('ZSCORE', p .. ':media:orphans', room) then
      redis.call('SET', room_key, node, 'PX', ttl)
      redis.call('SADD', p .. ':media:rooms:' .. node, room)
      host = node
    end
    if host ~= node then table.insert(elsewhere, room) end
  end
  return elsewhere
end
"""
