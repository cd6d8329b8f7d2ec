"""MediaService: the rooms registry and the operations behind the control API."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .cascade import Address, RelayEndpoint
from .config import Config
from .events import EventSink
from .metrics import Totals
from .protocol import (
    Preferences,
    RecordingNotFound,
    RelayDisabled,
    RelayNotFound,
    RequestExpired,
    RoomNotFound,
    RoomSettings,
    TrackInfo,
)
from .recorder import MANIFEST_NAME
from .room import Room

logger = logging.getLogger(__name__)


def _check_deadline(deadline: float | None, what: str) -> None:
    """Refuse work whose caller has given up (its timeout passed while the request waited for the room lock).

    Django answers its client ``media_unavailable`` when a control call times out, and the client starts
    over; doing the work anyway would only lengthen the queue of a busy room for connections nobody uses.
    """
    if deadline is not None and time.monotonic() > deadline:
        logger.warning("%s expired before its room was free; not done", what)
        raise RequestExpired(f"the caller's timeout passed before the {what} could start")


class MediaService:
    """All media state of one process. Create in ``main()``; ``close()`` ends everything.

    Rooms are created implicitly by publish/subscribe (Django is the
    authority on who may join); other operations on an unknown room or
    participant raise a 404 error.
    """

    def __init__(self, config: Config, events: EventSink) -> None:
        self.config = config
        self.events = events
        self.rooms: dict[str, Room] = {}
        self.forwarded_retired = 0
        self.retired = Totals()  # counters of closed rooms (media_server/metrics.py)
        self.draining = config.draining  # registered, but Django places no new room here (POST /v1/drain)
        self.relay: RelayEndpoint | None = None  # cascading (media_server/cascade.py); see start_relay()

    async def start_relay(self) -> RelayEndpoint:
        """Bind the relay endpoint (``config.relay_host``/``relay_port``) so rooms can span nodes."""
        if self.relay is None:
            self.relay = await RelayEndpoint.open(
                self.config.relay_host, self.config.relay_port, self.config.relay_announce
            )
            logger.info("relay endpoint on %s (announced as %s)", self.relay.local_address, self.relay.announce)
        return self.relay

    def _room(self, room_id: str, create: bool = False) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            if not create:
                raise RoomNotFound(f"room {room_id!r} not found")
            room = self.rooms[room_id] = Room(room_id, config=self.config, emit=self.events.emit, relay=self.relay)
        return room

    async def publish(self, *, room: str, participant: str, pc: str, sdp: str, deadline: float | None = None) -> str:
        r = self._room(room, create=True)
        async with r.lock:
            _check_deadline(deadline, "publish")
            return await r.publish(participant, pc, sdp)

    async def unpublish(self, *, room: str, participant: str, pc: str) -> None:
        r = self._room(room)
        async with r.lock:
            await r.unpublish(participant, pc)

    async def subscribe(
        self, *, room: str, participant: str, settings: RoomSettings | None = None, deadline: float | None = None
    ) -> tuple[str | None, int, list[TrackInfo], str]:
        r = self._room(room, create=True)
        async with r.lock:
            _check_deadline(deadline, "subscribe")
            if settings is not None:
                await r.set_last_n(settings.last_n)
            return await r.subscribe(participant)

    async def set_preferences(self, *, room: str, participant: str, preferences: Preferences) -> None:
        """Store a participant's video preferences (created implicitly, like subscribe)."""
        r = self._room(room, create=True)
        async with r.lock:
            await r.set_preferences(participant, preferences)

    async def set_room_settings(self, *, room: str, settings: RoomSettings) -> None:
        r = self._room(room)
        async with r.lock:
            await r.set_last_n(settings.last_n)

    async def subscribe_answer(
        self, *, room: str, participant: str, sdp: str, revision: int, deadline: float | None = None
    ) -> None:
        r = self._room(room)
        async with r.lock:
            _check_deadline(deadline, "subscribe answer")
            await r.subscribe_answer(participant, sdp, revision)

    async def add_ice(self, *, room: str, participant: str, pc: str, candidate: dict[str, Any] | None) -> None:
        r = self._room(room)
        async with r.lock:
            await r.add_ice(participant, pc, candidate)

    async def leave(self, *, room: str, participant: str) -> None:
        r = self._room(room)
        async with r.lock:
            await r.leave(participant)

    async def start_recording(self, *, room: str, recording: str) -> bool:
        """Start recording ``room`` (created empty if unknown); False if that recording already runs."""
        r = self._room(room, create=True)
        async with r.lock:
            return await r.start_recording(recording)

    async def stop_recording(self, *, room: str, recording: str) -> None:
        """Stop a recording; succeeds too for one already stopped whose manifest exists.

        Raises RecordingNotFound otherwise (never heard of, or failed).
        """
        r = self.rooms.get(room)
        if r is not None:
            async with r.lock:
                if await r.stop_recording(recording):
                    return
        if not (Path(self.config.recordings_spool_dir) / recording / MANIFEST_NAME).is_file():
            raise RecordingNotFound(f"no recording {recording!r} in room {room!r}")

    async def add_relay(self, *, room: str, node: str, url: str) -> bool:
        """Relay ``room``'s local publications to ``node`` (created empty if unknown); False if already."""
        r = self._room(room, create=True)
        async with r.lock:
            return r.add_relay(node, url)

    async def remove_relay(self, *, room: str, node: str) -> None:
        r = self._room(room)
        async with r.lock:
            await r.remove_relay(node)

    async def update_origin(self, *, room: str, origin: str, feedback: Address, tracks: list[dict[str, Any]]) -> str:
        """Another node's publications in ``room`` (created if unknown); returns our relay address."""
        if self.relay is None:
            raise RelayDisabled("this media node has no relay endpoint")
        r = self._room(room, create=True)
        async with r.lock:
            await r.update_origin(origin, feedback, tracks)
        return self.relay.announce

    async def remove_origin(self, *, room: str, origin: str) -> None:
        r = self._room(room)
        async with r.lock:
            if not await r.remove_origin(origin):
                raise RelayNotFound(f"room {room!r} has nothing relayed from {origin!r}")

    def relays(self, *, room: str) -> dict[str, Any]:
        return self._room(room).relay_status()

    async def close_room(self, *, room: str) -> None:
        r = self._room(room)
        del self.rooms[room]
        async with r.lock:
            await r.close()
        self.forwarded_retired += r.forwarded_packets()
        self.retired.add(r.retired)

    def health(self) -> dict[str, Any]:
        return {
            "node": self.config.node_id,
            "rooms": len(self.rooms),
            "peers": sum(r.peer_count() for r in self.rooms.values()),
            "forwarded_packets": self.forwarded_retired + sum(r.forwarded_packets() for r in self.rooms.values()),
            "events_dropped": self.events.dropped,
            "draining": self.draining,
            "relay": self.relay.announce if self.relay is not None else None,
        }

    async def close(self) -> None:
        """Close every room (and with it every connection and task)."""
        for room_id in list(self.rooms):
            await self.close_room(room=room_id)
        if self.relay is not None:
            self.relay.close()
