"""Signaling between room sockets and the media server.

``media_event_frames`` (pure) maps one media-server event (docs/protocol.md §2)
to the socket frames it produces and the groups they go to;
``relay_client_frame`` sends one validated client signaling frame to the media
server and returns the frame to answer with, if any.
"""

from __future__ import annotations

import re
from typing import Any

from . import groups
from .media_client import MediaClient, subscribe_connection
from .socket_protocol import ClientFrame, reply

_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _ids(event: dict[str, Any]) -> tuple[str, str] | None:
    room, participant = event.get("room"), event.get("participant")
    if not isinstance(room, str) or not _ID.match(room):
        return None
    if not isinstance(participant, str) or not _ID.match(participant):
        return None
    return room, participant


def _track(t: dict[str, Any]) -> dict[str, Any]:
    return {key: t.get(key) for key in ("mid", "participant", "pc", "source", "kind")}


def _track_list(raw: Any) -> list[dict[str, Any]]:
    tracks = raw if isinstance(raw, list) else []
    return [_track(t) for t in tracks if isinstance(t, dict)]


BANDWIDTH_STATES = frozenset({"good", "limited", "low"})
BANDWIDTH_REASONS = frozenset({"paused_bandwidth", "reduced"})


def _bandwidth(raw: Any) -> dict[str, Any] | None:
    """The ``bandwidth`` object of ``forwarded_tracks`` (docs/protocol.md), reduced to its documented shape.

    None when the media server sent none (an older one) or an unknown ``state``; tracks with an unknown
    ``reason`` are left out (a newer server's reasons mean nothing to this client contract).
    """
    if not isinstance(raw, dict) or raw.get("state") not in BANDWIDTH_STATES:
        return None
    estimate = raw.get("estimate_bps")
    tracks = raw.get("tracks")
    return {
        "state": raw["state"],
        "estimate_bps": estimate if isinstance(estimate, int) and not isinstance(estimate, bool) else None,
        "tracks": [
            {**_track(t), "reason": t["reason"]}
            for t in (tracks if isinstance(tracks, list) else [])
            if isinstance(t, dict) and t.get("reason") in BANDWIDTH_REASONS
        ],
    }


def media_event_frames(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (group, frame) pairs an event from the media server turns into; [] for unknown or malformed events."""
    ids = _ids(event)
    if ids is None:
        return []
    room, participant = ids
    kind = event.get("type")
    if kind == "subscribe_offer" and isinstance(event.get("sdp"), str):
        frame = {
            "type": "offer",
            "pc": "subscribe",
            "sdp": event["sdp"],
            "revision": event.get("revision"),
            "tracks": event.get("tracks", []),
            **subscribe_connection(event),
        }
        return [(groups.participant_group(room, participant), frame)]
    if kind == "active_speaker":
        return [(groups.room_group(room), {"type": "active_speaker", "participantId": participant})]
    if kind == "peer_state":
        frame = {
            "type": "media_state",
            "pc": event.get("pc"),
            "state": event.get("state"),
            "reason": event.get("reason"),
        }
        return [(groups.participant_group(room, participant), frame)]
    if kind == "publication":
        frame = {
            "type": "publication",
            "participantId": participant,
            "pc": event.get("pc"),
            "state": event.get("state"),
            "sources": event.get("sources", []),
        }
        return [(groups.room_group(room), frame)]
    if kind == "forwarded_tracks":
        frame = {
            "type": "forwarded_tracks",
            "last_n": event.get("last_n"),
            "video": _track_list(event.get("video")),
            "audio": _track_list(event.get("audio")),
            "audio_pooled": event.get("audio_pooled") is True,
        }
        bandwidth = _bandwidth(event.get("bandwidth"))
        if bandwidth is not None:
            frame["bandwidth"] = bandwidth
        # Additions an older media server does not send (docs/protocol.md §1 *Spare m-lines*): relayed when present.
        spare = event.get("spare")
        if isinstance(spare, list):
            frame["spare"] = [mid for mid in spare if isinstance(mid, str)]
        revision = event.get("revision")
        if isinstance(revision, int) and not isinstance(revision, bool):
            frame["revision"] = revision
        frame.update(subscribe_connection(event))
        return [(groups.participant_group(room, participant), frame)]
    if kind == "track_unavailable":
        raw_track = event.get("track")
        track: dict[str, Any] = raw_track if isinstance(raw_track, dict) else {}
        frame = {
            "type": "track_unavailable",
            "mid": event.get("mid"),
            "reason": event.get("reason"),
            "codec": event.get("codec"),
            "track": {key: track.get(key) for key in ("mid", "participant", "pc", "source", "kind")},
        }
        return [(groups.participant_group(room, participant), frame)]
    return []


async def relay_client_frame(
    media: MediaClient, *, room: str, participant: str, frame: ClientFrame, last_n: int | None = None
) -> dict[str, Any] | None:
    """Relay offer/answer/ice_candidate/subscribe/unpublish/video_preferences; raises ``MediaError``.

    ``last_n`` (the room's setting) goes with ``subscribe``.
    """
    data = frame.data
    if frame.type == "offer":
        sdp = await media.publish(room=room, participant=participant, pc=data["pc"], sdp=data["sdp"])
        return reply({"type": "answer", "pc": data["pc"], "sdp": sdp}, frame.ref)
    if frame.type == "subscribe":
        offer = await media.subscribe(room=room, participant=participant, last_n=last_n)
        return reply({"type": "offer", "pc": "subscribe", **offer}, frame.ref)
    if frame.type == "answer":
        await media.subscribe_answer(room=room, participant=participant, sdp=data["sdp"], revision=data["revision"])
    elif frame.type == "ice_candidate":
        await media.ice(room=room, participant=participant, pc=data["pc"], candidate=data["candidate"])
    elif frame.type == "unpublish":
        await media.unpublish(room=room, participant=participant, pc=data["pc"])
    elif frame.type == "video_preferences":
        await media.preferences(room=room, participant=participant, pinned=data["pinned"], tiles=data["tiles"])
    return None
