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

Each pass the holder also probes every registered node's control port (one TCP
connect each, ``PROBE_TIMEOUT_SECONDS``): a refused connection means the node's
process is gone (``kill -9``, a crash), so the node is expired at once instead of
when its registration's TTL (2.5 heartbeats) runs out. A node whose host died
(no refusal) still goes after its TTL.

For every dead node the holder sends ``media_reconnect`` to each of its rooms
(the browsers publish and subscribe again, which places the room on a live
node) and fails the recordings that were running there. A room that finds no
live node then (``media_unavailable`` with ``retry_after``) stays an *orphan*;
when a node registers while orphans exist, the holder sends them
``media_reconnect`` again (reason ``media_node_available``), so their clients
try at once rather than at their next backoff step. In a room that spans
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
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from . import events, groups, media_nodes
from .media_nodes import LostNode, NodeDirectory

if TYPE_CHECKING:
    from .media_client import MediaClient

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
LOCK_INTERVALS = 3  # the lock outlives this many missed renewals
PROBE_TIMEOUT_SECONDS = 0.5  # a connect to a node's control port; only a refusal counts (not a timeout)
ORPHAN_MAX_AGE_SECONDS = 600.0  # rooms failed over longer ago than this are no longer told about new nodes


def media_reconnect_frame(*, node: str, reason: str = "media_node_lost") -> dict[str, Any]:
    """The socket frame telling a room's participants to publish and subscribe again (docs/protocol.md §1):
    their media node is gone (``media_node_lost``), or a node registered while they had none
    (``media_node_available``; ``node`` is then the new node)."""
    return {"type": "media_reconnect", "reason": reason, "node": node}


async def refuses(control_url: str) -> bool:
    """Whether nothing listens on ``control_url``'s port (connection refused). A timeout or any other error
    is not a refusal: a slow or unreachable host is left to its registration's TTL."""
    url = urlsplit(control_url)
    if not url.hostname:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            _, writer = await asyncio.open_connection(url.hostname, port)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    return False


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
        self.live: set[str] | None = None  # nodes seen live on this holder's last pass (None: not yet)

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
            self.live = None
            return []
        records = await self.nodes.nodes()
        await self._probe(records)
        lost = await self.nodes.failover_nodes()
        for dead in lost:
            await self._node_lost(dead)
        gone = {dead.node for dead in lost}
        live = {str(r.get("node")) for r in records} - gone
        if self.live is not None and live - self.live:
            await self._orphans_retry(sorted(live - self.live)[0])
        self.live = live
        return [(dead.node, dead.rooms) for dead in lost]

    async def _probe(self, records: list[dict[str, Any]]) -> None:
        """Expire every registered node whose control port refuses connections (its process is gone)."""
        urls = [(str(r.get("node")), str(r.get("control_url", ""))) for r in records]
        refused = await asyncio.gather(*(refuses(url) for _, url in urls))
        for (node, _), gone in zip(urls, refused, strict=True):
            if gone and await self.nodes.expire(node):
                logger.warning("media node %s refuses connections: failing it over now", node)

    async def _orphans_retry(self, node: str) -> None:
        """A node registered: rooms left without one (failed over, not placed since) publish and subscribe again."""
        rooms = await self.nodes.orphans(ORPHAN_MAX_AGE_SECONDS)
        layer = get_channel_layer()
        if not rooms or layer is None:
            return
        logger.warning("media node %s is live: %d rooms without media reconnect", node, len(rooms))
        frame = media_reconnect_frame(node=node, reason="media_node_available")
        for room in rooms:
            group = groups.room_group(room)
            await layer.group_send(group, events.layer_message(group, frame))

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
                group = groups.room_group(room)
                await layer.group_send(group, events.layer_message(group, frame))
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
                group = groups.participant_group(room, participant)
                await layer.group_send(group, events.layer_message(group, frame))
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
