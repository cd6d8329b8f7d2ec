"""Node registry: this media process announces itself in Redis so that Django can place rooms on it.

Key layout (docs/protocol.md §2 "Node registry", protocol version 1; ``<p>`` is ``MEDIA_REDIS_PREFIX``):

* ``<p>:media:node:<node>``: this node's record, JSON (``node_record``), expiring after ``ttl``;
* ``<p>:media:load``: sorted set, node → placement score (load + rooms/1000; ``+inf`` while draining);
* ``<p>:media:rooms:<node>`` (written by Django): the rooms placed on the node;
* ``<p>:media:expires``: sorted set, node → when its registration expires (Redis ``TIME`` of the last
  heartbeat + ``ttl``, in ms); 0 after a clean shutdown.

Each heartbeat also re-announces the node's rooms, so that after Redis restarts empty a room's placement
is back within one heartbeat, without waiting for the node's next media event (which Django adopts too).

Django (``rooms.media_nodes``) owns the room keys (``<p>:media:room:<room>``, ``<p>:media:rooms:<node>``)
and fails over nodes whose registration has expired. A node that finds itself declared dead
(its heartbeat came too late, or another process registered under its ID) closes every room: its
participants have been told to reconnect elsewhere. It then registers again as a new, empty node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import RedisError

from .protocol import ADOPT_ROOMS_LUA, PROTOCOL_VERSION
from .service import MediaService

logger = logging.getLogger(__name__)

TTL_INTERVALS = 2.5  # a registration expires after this many heartbeat intervals: one beat may be missed
ROOM_WEIGHT = 0.001  # placement score per room, so that idle nodes still take turns

# KEYS: record, load, expires, rooms (Django's set of rooms placed on this node). ARGV: node, boot,
# record JSON, score, ttl ms, prefix, room placement ttl ms, then the rooms this node hosts. Returns
# "new" (registered), "ok" (refreshed), "expired" (too late, and rooms were placed here: Django fails
# this node over; it registers as "new" once it has) or "restarted" (the record belongs to an earlier
# process with this node ID: it is expired now, so that its rooms fail over). An expired node without
# rooms has nothing to fail over: it registers. A registered node re-announces its rooms: those without
# a placement (Redis restarted empty) are placed back on it, unless failover took them (ADOPT_ROOMS_LUA).
HEARTBEAT_SCRIPT = (
    ADOPT_ROOMS_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = redis.call('ZSCORE', KEYS[3], ARGV[1])
if expires then
  if now > tonumber(expires) then
    if redis.call('SCARD', KEYS[4]) > 0 then return 'expired' end
    expires = false
  else
    local previous = redis.call('GET', KEYS[1])
    if previous and cjson.decode(previous)['boot'] ~= ARGV[2] then
      redis.call('ZADD', KEYS[3], 0, ARGV[1])
      return 'restarted'
    end
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[1])
adopt_rooms(ARGV[6], ARGV[1], ARGV[7], true, 8)
if expires then return 'ok' end
return 'new'
"""
)

# KEYS: record, load, expires. ARGV: node, boot. A clean shutdown: no new rooms, and the rooms this
# node had fail over at once (its registration expired at time 0) instead of after the TTL.
DEREGISTER_SCRIPT = """
local previous = redis.call('GET', KEYS[1])
if previous and cjson.decode(previous)['boot'] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  return 1
end
return 0
"""


def registry_keys(prefix: str, node_id: str) -> tuple[str, str, str, str]:
    """The node's record key, the load set, the expiry set and the set of rooms placed on the node."""
    return (
        f"{prefix}:media:node:{node_id}",
        f"{prefix}:media:load",
        f"{prefix}:media:expires",
        f"{prefix}:media:rooms:{node_id}",
    )


def placement_score(*, load: float, rooms: int, draining: bool) -> float:
    """What Django sorts nodes by: lower is emptier; draining nodes sort last (and are never chosen)."""
    return math.inf if draining else load + rooms * ROOM_WEIGHT


class NodeRegistrar:
    """Keeps this node's record in Redis fresh every ``interval`` seconds.

    Create in ``main()``, ``start()`` it, ``close()`` it on shutdown (which
    deregisters the node). Redis errors are logged and retried on the next beat.
    """

    def __init__(self, service: MediaService, *, client: aioredis.Redis | None = None) -> None:
        config = service.config
        self.service = service
        self.node_id = config.node_id
        self.boot = secrets.token_hex(8)  # tells this process apart from an earlier one with the same node ID
        self.interval = config.heartbeat_interval
        self.ttl_ms = int(config.heartbeat_interval * TTL_INTERVALS * 1000)
        self.prefix = config.redis_prefix
        self.room_ttl_ms = int(config.room_placement_ttl * 1000)
        self.started_at = time.time()
        # A pooled connection that died (Redis restarted) is replaced and the heartbeat retried at once (≤ 0.7 s),
        # so a Redis restart does not cost this node a heartbeat; Django's clients use the same policy.
        retry = Retry(EqualJitterBackoff(cap=0.4, base=0.05), 3)
        self._redis = client or aioredis.Redis.from_url(
            config.redis_url, socket_timeout=config.heartbeat_interval, retry=retry
        )
        self._keys = registry_keys(config.redis_prefix, config.node_id)
        self._heartbeat = self._redis.register_script(HEARTBEAT_SCRIPT)
        self._deregister = self._redis.register_script(DEREGISTER_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._last_forwarded: tuple[float, int] | None = None
        self.forwarded_pps = 0.0
        self.state = "unregistered"  # the last heartbeat's answer
        self.beats = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="media-registry")

    async def close(self) -> None:
        """Stop the heartbeat and deregister (the node's rooms fail over at once)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self._deregister(keys=list(self._keys[:3]), args=[self.node_id, self.boot])
        except RedisError as exc:
            logger.warning("could not deregister node %s: %s", self.node_id, exc)
        await self._redis.aclose()

    def record(self) -> dict[str, Any]:
        """This node's registry record (docs/protocol.md §2 "Node registry")."""
        config, health = self.service.config, self.service.health()
        now = time.monotonic()
        forwarded = int(health["forwarded_packets"])
        if self._last_forwarded is not None and now > self._last_forwarded[0]:
            then, before = self._last_forwarded
            self.forwarded_pps = max(0, forwarded - before) / (now - then)
        self._last_forwarded = (now, forwarded)
        load = self.forwarded_pps / config.capacity_pps
        return {
            "protocol": PROTOCOL_VERSION,
            "node": self.node_id,
            "boot": self.boot,
            "control_url": config.node_url,
            "ice_addresses": list(config.ice_addresses),
            "capacity_pps": config.capacity_pps,
            "forwarded_pps": round(self.forwarded_pps, 1),
            "load": round(load, 4),
            "peers": health["peers"],
            "rooms": health["rooms"],
            "draining": self.service.draining,
            "started_at": round(self.started_at, 3),
            "updated_at": round(time.time(), 3),
        }

    async def beat(self) -> str:
        """One heartbeat; returns the registry's answer (see HEARTBEAT_SCRIPT)."""
        record = self.record()
        score = placement_score(load=record["load"], rooms=record["rooms"], draining=record["draining"])
        answer = await self._heartbeat(
            keys=list(self._keys),
            args=[
                self.node_id,
                self.boot,
                json.dumps(record),
                "+inf" if math.isinf(score) else repr(score),
                self.ttl_ms,
                self.prefix,
                self.room_ttl_ms,
                *self.service.rooms,
            ],
        )
        state = answer.decode() if isinstance(answer, bytes) else str(answer)
        if state in ("expired", "restarted") and self.state != state:
            # Django has moved (or is moving) this node's rooms and told their participants to reconnect.
            logger.warning("node %s was declared dead (%s): closing its %d rooms", self.node_id, state, record["rooms"])
            await self.service.close()
        elif state == "new":
            logger.info("node %s registered at %s", self.node_id, record["control_url"])
        self.state = state
        self.beats += 1
        return state

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                logger.warning("registry heartbeat failed: %s", exc)
            await asyncio.sleep(self.interval)
