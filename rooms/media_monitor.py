"""Media node failover: every web process runs one :class:`MediaNodeMonitor`; one of them at a time acts.

Why here and not in Celery beat: failover has to happen within seconds, and
the web processes are the ones holding the participants' sockets. Beat ticks
go through the broker to a worker (one more hop, and no worker at all in some
deployments), while every web process already has Redis and the channel layer.
Each monitor tries every ``MEDIA_FAILOVER_INTERVAL_SECONDS`` (0.5 s) to take or
renew a Redis lock (``<prefix>:media:monitor``, 3 intervals); only the holder
scans, so N web processes cost one scan per interval. If the holder dies, the
lock expires and another process takes over. The failover script itself hands
each dead node's rooms out once, so even two holders could never move a room twice.

For every dead node the holder sends ``media_reconnect`` to each of its rooms
(the browsers publish and subscribe again, which places the room on a live
node) and fails the recordings that were running there. In a room that spans
nodes (``MEDIA_SPAN_ROOMS``) only the participants placed on the dead node get
``media_reconnect``, and the room's surviving nodes drop what the dead node
relayed to them; the rest of the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from . import groups, media_nodes
from .media_nodes import LostNode, NodeDirectory

if TYPE_CHECKING:
    from .media_client import MediaClient

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
LOCK_INTERVALS = 3  # the lock outlives this many missed renewals


def media_reconnect_frame(*, node: str) -> dict[str, Any]:
    """The socket frame telling a room's participants that their media node is gone (docs/protocol.md §1)."""
    return {"type": "media_reconnect", "reason": "media_node_lost", "node": node}


def _fail_recordings(room_ids: list[str], node: str) -> int:
    from recordings.services import recordings_fail_for_lost_node  # recordings depends on rooms, not the reverse

    return recordings_fail_for_lost_node(room_ids=room_ids, node=node)


class MediaNodeMonitor:
    """Owns the failover task of one web process (started by the first ASGI call; ``close()`` stops it)."""

    def __init__(self, nodes: NodeDirectory, media: MediaClient | None = None) -> None:
        self.nodes = nodes
        self.media = media
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"
        self._task: asyncio.Task[None] | None = None
        self.failed_over: list[tuple[str, list[str]]] = []  # what this process handled (tests, logs)

    def ensure_started(self) -> None:
        """Start the task on the running loop, once, if the node registry is in use."""
        if not media_nodes.enabled():
            return
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # (A task of another, finished loop is dropped: tests run one loop per test.)
            self._task = loop.create_task(self._run(), name="media-failover")

    async def close(self) -> None:
        if self._task is not None and self._task.get_loop() is asyncio.get_running_loop():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run_once(self) -> list[tuple[str, list[str]]]:
        """If this process holds the lock: fail over every dead node. Returns the (node, rooms) handled."""
        interval = settings.MEDIA_FAILOVER_INTERVAL_SECONDS
        if not await self.nodes.hold_lock(self.holder, interval * LOCK_INTERVALS):
            return []
        lost = await self.nodes.failover_nodes()
        for dead in lost:
            await self._node_lost(dead)
        return [(dead.node, dead.rooms) for dead in lost]

    async def _node_lost(self, dead: LostNode) -> None:
        node, rooms = dead.node, dead.rooms
        logger.warning("media node %s is gone: moving its %d rooms", node, len(rooms))
        self.failed_over.append((node, rooms))
        layer = get_channel_layer()
        frame = media_reconnect_frame(node=node)
        for room in rooms:
            members = dead.members.get(room)
            if members is not None:
                await self._members_lost(room, node, members)
            elif layer is not None:
                await layer.group_send(groups.room_group(room), {"type": "room.event", "event": frame})
        if rooms:
            try:
                failed = await database_sync_to_async(_fail_recordings)(rooms, node)
            except Exception:
                logger.exception("could not fail the recordings of media node %s", node)
            else:
                if failed:
                    logger.warning("%d recordings on media node %s failed", failed, node)

    async def _members_lost(self, room: str, node: str, participants: list[str]) -> None:
        """A spanning room lost one node: reconnect its participants only; the other nodes forget it."""
        layer = get_channel_layer()
        frame = media_reconnect_frame(node=node)
        if layer is not None:
            for participant in participants:
                await layer.group_send(
                    groups.participant_group(room, participant), {"type": "room.event", "event": frame}
                )
        if self.media is None:
            return
        try:
            survivors = await self.nodes.room_nodes(room)
        except (RedisError, OSError) as exc:
            logger.warning("room %s: surviving media nodes unknown: %s", room, exc)
            return
        for survivor in survivors:
            await self.media.forget_origin(room=room, node=survivor, origin=node)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("media failover monitor: %s", exc)
            except Exception:
                logger.exception("media failover monitor failed")
            await asyncio.sleep(settings.MEDIA_FAILOVER_INTERVAL_SECONDS)


def with_media_monitor(app: ASGIApp, monitor: MediaNodeMonitor) -> ASGIApp:
    """Wrap the ASGI application so that the first call (daphne has no lifespan events) starts ``monitor``."""

    async def application(
        scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        monitor.ensure_started()
        await app(scope, receive, send)

    return application
