"""What a subscriber is told about its bandwidth (the ``bandwidth`` object of ``forwarded_tracks``).

Pure (no aiortc, no I/O), next to the allocator it describes (:mod:`media_server.layers`) but apart from
its policy: it only compares the levels the allocator chose with the ones it would choose on an unlimited
link. docs/protocol.md §1 *Large rooms: last-N* and §2 *Events* document the wire shape.

* a video the publisher sends (some layer is active) that gets no level is ``paused_bandwidth``;
* one that gets a lower level than the ideal (the highest the publisher sends that the subscriber's tile
  can use: ``layers.allocate`` on an infinite estimate) is ``reduced``;
* a video the publisher sends nothing for (a camera that is off) has no reason: it is not a bandwidth
  matter, and the client shows it as "camera off".

The link's ``state`` sums it up: ``low`` when a video is paused for bandwidth, ``limited`` when one is
reduced, else ``good``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .layers import VideoDemand, allocate

PAUSED = "paused_bandwidth"
REDUCED = "reduced"
GOOD, LIMITED, LOW = "good", "limited", "low"


def track_reasons(demands: Sequence[VideoDemand], levels: Sequence[int | None]) -> list[str | None]:
    """For each video (``demands[i]`` given level ``levels[i]``, None = paused): why it is below its best, if it is."""
    ideal = allocate(float("inf"), demands)
    reasons: list[str | None] = []
    for level, best in zip(levels, ideal, strict=True):
        if best is None:
            reasons.append(None)  # the publisher sends nothing: camera off, not bandwidth
        elif level is None:
            reasons.append(PAUSED)
        elif level < best:
            reasons.append(REDUCED)
        else:
            reasons.append(None)
    return reasons


def link_state(reasons: Sequence[str | None]) -> str:
    """``low`` if any video is paused for bandwidth, ``limited`` if any is reduced, else ``good``."""
    if PAUSED in reasons:
        return LOW
    if REDUCED in reasons:
        return LIMITED
    return GOOD


@dataclass(frozen=True)
class LimitedTrack:
    """One video below its best for bandwidth: its m-line's track description (``TrackInfo.to_json``) and why."""

    track: dict[str, Any]
    reason: str


def bandwidth_json(estimate_bps: float | None, limited: Sequence[LimitedTrack]) -> dict[str, Any]:
    """The ``bandwidth`` object: ``state``, ``estimate_bps`` (int, None before the first estimate), ``tracks``."""
    return {
        "state": link_state([t.reason for t in limited]),
        "estimate_bps": None if estimate_bps is None else int(estimate_bps),
        "tracks": [{**t.track, "reason": t.reason} for t in limited],
    }


def report_key(limited: Sequence[LimitedTrack]) -> tuple[str, ...]:
    """What must change for the client to be told again (the estimate alone does not: it moves every 0.5 s)."""
    return tuple(sorted(f"{t.track.get('mid')}:{t.track.get('participant')}:{t.reason}" for t in limited))
