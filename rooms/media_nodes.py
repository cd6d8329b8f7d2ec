"""Media node directory: which media node hosts which room (docs/protocol.md §2 "Node registry").

Media nodes register themselves in Redis (``media_server/registry.py``); this
module is Django's side of that registry. It is used only when
``MEDIA_REDIS_URL`` is set; without it every room is on the one node at
``MEDIA_CONTROL_URL``.

* **Placement** (``place``): a room is put on the least loaded live,
  non-draining node with headroom the first time media needs it, and stays
  there (sticky) until the room ends or its node dies. One Lua script reads and
  writes the placement, so two web processes can never place one room twice.
* **Failover** (``failover``): a node whose registration expired (no
  heartbeat for 2.5 intervals, a clean shutdown, or a control request refused)
  loses its rooms: their placements are deleted (the next request places them
  again) and the rooms are returned so that their participants can be told.
  One Lua script takes a dead node's rooms, so each dead node is handled once.

Every operation is one script call (``EVALSHA``) or one ``MGET``. The scripts build key names
from the prefix, so they need one Redis server, not a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from redis import asyncio as aioredis
from redis.commands.core import AsyncScript, Script

from conference.redis_retry import redis_retry
from media_server.protocol import ADOPT_ROOMS_LUA

ROOM_WEIGHT = 0.001  # placement score added per room placed (as media_server/registry.py counts rooms)
CANDIDATES = 16  # least loaded nodes looked at per placement (dead ones are skipped until failed over)

# Why a placement found no node: 'full' when a live, non-draining node exists (all are over budget), else
# 'none' (no node is live: the media servers are restarting). Appended to the placement scripts.
NO_NODE_LUA = """
local function no_node(p)
  for _, node in ipairs(redis.call('ZRANGE', p .. ':media:load', 0, -1)) do
    local record = redis.call('GET', p .. ':media:node:' .. node)
    if record and not cjson.decode(record)['draining'] then return 'full' end
  end
  return 'none'
end
"""

# ARGV: prefix, room, room ttl ms, "place"|"lookup", candidates, weight. Returns {node, record JSON}, false
# (lookup: not placed) or 'full'/'none' (place: no node, see NO_NODE_LUA). Placing takes the room off the
# orphans (rooms failed over and not placed again, see FAILOVER_SCRIPT).
PLACE_SCRIPT = (
    NO_NODE_LUA
    + """
local p = ARGV[1]
local room_key = p .. ':media:room:' .. ARGV[2]
local current = redis.call('GET', room_key)
if current then
  local record = redis.call('GET', p .. ':media:node:' .. current)
  if record then
    redis.call('PEXPIRE', room_key, ARGV[3])
    return {current, record}
  end
end
if ARGV[4] ~= 'place' then return false end
local candidates = redis.call('ZRANGEBYSCORE', p .. ':media:load', '-inf', '(1', 'LIMIT', 0, tonumber(ARGV[5]))
for _, node in ipairs(candidates) do
  local record = redis.call('GET', p .. ':media:node:' .. node)
  if record and not cjson.decode(record)['draining'] then
    redis.call('SET', room_key, node, 'PX', ARGV[3])
    redis.call('SADD', p .. ':media:rooms:' .. node, ARGV[2])
    redis.call('ZINCRBY', p .. ':media:load', ARGV[6], node)
    redis.call('ZREM', p .. ':media:orphans', ARGV[2])
    return {node, record}
  end
end
return no_node(p)
"""
)

# Spanning rooms (docs/scaling.md "Cascading"): each participant of a room is placed on a node of its own.
# ARGV: prefix, room, participant, room ttl ms, "place"|"lookup", candidates, weight, participants-per-node cap
# (0 = none). Returns {node, record, n1, record1, n2, record2, ...} (the participant's node, then every node of
# the room) or false. A participant keeps its node while that node lives. A new one goes to the room's home node
# (placed as by PLACE_SCRIPT) unless the home is over its packet budget (score >= 1) or holds the cap; then to a
# node of the room with headroom, then to the least loaded node with headroom, else to the home anyway.
PLACE_MEMBER_SCRIPT = (
    NO_NODE_LUA
    + """
local p = ARGV[1]
local room, who, ttl = ARGV[2], ARGV[3], ARGV[4]
local room_key = p .. ':media:room:' .. room
local members_key = p .. ':media:members:' .. room
local cap = tonumber(ARGV[8])
local function record_of(node) return redis.call('GET', p .. ':media:node:' .. node) end
local function room_nodes(first)
  local out, seen = {}, {}
  local nodes = {first, redis.call('GET', room_key) or first}
  for _, n in ipairs(redis.call('HVALS', members_key)) do table.insert(nodes, n) end
  for _, n in ipairs(nodes) do
    if not seen[n] then
      seen[n] = true
      local record = record_of(n)
      if record then table.insert(out, n); table.insert(out, record) end
    end
  end
  return out
end
local current = redis.call('HGET', members_key, who)
if current and record_of(current) then
  redis.call('PEXPIRE', members_key, ttl)
  redis.call('PEXPIRE', room_key, ttl)
  return room_nodes(current)
end
local home = redis.call('GET', room_key)
if home and not record_of(home) then home = nil end
if ARGV[5] ~= 'place' then
  if home then return room_nodes(home) end
  return false
end
local function usable(node)
  local record = record_of(node)
  return record and not cjson.decode(record)['draining']
end
local candidates = redis.call('ZRANGEBYSCORE', p .. ':media:load', '-inf', '(1', 'LIMIT', 0, tonumber(ARGV[6]))
if not home then
  for _, node in ipairs(candidates) do
    if usable(node) then home = node; break end
  end
  if not home then return no_node(p) end
  redis.call('ZREM', p .. ':media:orphans', room)
  redis.call('SET', room_key, home, 'PX', ttl)
  redis.call('SADD', p .. ':media:rooms:' .. home, room)
  redis.call('ZINCRBY', p .. ':media:load', ARGV[7], home)
end
local counts = {}
for _, n in ipairs(redis.call('HVALS', members_key)) do counts[n] = (counts[n] or 0) + 1 end
local function fits(node)
  if not usable(node) or (cap > 0 and (counts[node] or 0) >= cap) then return false end
  local score = redis.call('ZSCORE', p .. ':media:load', node)
  return score and tonumber(score) < 1
end
local chosen = nil
if fits(home) then chosen = home end
if not chosen then
  for node, _ in pairs(counts) do
    if fits(node) then chosen = node; break end
  end
end
if not chosen then
  for _, node in ipairs(candidates) do
    if fits(node) then chosen = node; break end
  end
end
if not chosen then chosen = home end
redis.call('HSET', members_key, who, chosen)
redis.call('PEXPIRE', members_key, ttl)
redis.call('SADD', p .. ':media:rooms:' .. chosen, room)
return room_nodes(chosen)
"""
)

# ARGV: prefix, room, participant. The participant left: forget its node.
FORGET_MEMBER_SCRIPT = """
redis.call('HDEL', ARGV[1] .. ':media:members:' .. ARGV[2], ARGV[3])
return 1
"""

# ARGV: prefix, room. The room ended: forget its placement. Returns the node it was on, or false.
RELEASE_SCRIPT = """
local room_key = ARGV[1] .. ':media:room:' .. ARGV[2]
local members_key = ARGV[1] .. ':media:members:' .. ARGV[2]
local node = redis.call('GET', room_key)
if node then
  redis.call('DEL', room_key)
  redis.call('SREM', ARGV[1] .. ':media:rooms:' .. node, ARGV[2])
end
for _, member_node in ipairs(redis.call('HVALS', members_key)) do
  redis.call('SREM', ARGV[1] .. ':media:rooms:' .. member_node, ARGV[2])
end
redis.call('DEL', members_key)
redis.call('ZREM', ARGV[1] .. ':media:orphans', ARGV[2])
return node
"""

# ARGV: prefix, max nodes. Takes every node whose registration has expired: returns {node, {rooms}, lost, ...};
# lost = JSON {room: [participants placed on the node]} for spanning rooms (their member entries are deleted).
# The rooms whose placement went become orphans (<p>:media:orphans, room -> when) until placed again or released.
FAILOVER_SCRIPT = """
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', p .. ':media:expires', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, node in ipairs(dead) do
  local rooms_key = p .. ':media:rooms:' .. node
  local rooms = redis.call('SMEMBERS', rooms_key)
  local lost = {}
  local spanning = false
  for _, room in ipairs(rooms) do
    local room_key = p .. ':media:room:' .. room
    if redis.call('GET', room_key) == node then
      redis.call('DEL', room_key)
      redis.call('ZADD', p .. ':media:orphans', now, room)
    end
    local members_key = p .. ':media:members:' .. room
    local members = redis.call('HGETALL', members_key)
    local gone = {}
    for i = 1, #members, 2 do
      if members[i + 1] == node then
        table.insert(gone, members[i])
        redis.call('HDEL', members_key, members[i])
      end
    end
    if #members > 0 then lost[room] = gone; spanning = true end
  end
  redis.call('DEL', rooms_key, p .. ':media:node:' .. node)
  redis.call('ZREM', p .. ':media:expires', node)
  redis.call('ZREM', p .. ':media:load', node)
  table.insert(out, node)
  table.insert(out, rooms)
  table.insert(out, spanning and cjson.encode(lost) or '{}')
end
return out
"""

# ARGV: prefix, node. A control request to it was refused: expire it now (failover on the next pass).
EXPIRE_SCRIPT = """
if redis.call('ZSCORE', ARGV[1] .. ':media:expires', ARGV[2]) then
  redis.call('ZADD', ARGV[1] .. ':media:expires', 0, ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock. ARGV: holder, ttl ms. Take or renew the monitor lock; 1 if this holder has it.
LOCK_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


# ARGV: prefix, node, room ttl ms, room... The rooms this live node reports media for but that have no placement
# are placed back on it (ADOPT_ROOMS_LUA). Returns the rooms now placed elsewhere (their events are stale).
ADOPT_SCRIPT = (
    ADOPT_ROOMS_LUA
    + """
local live = redis.call('EXISTS', ARGV[1] .. ':media:node:' .. ARGV[2]) == 1
return adopt_rooms(ARGV[1], ARGV[2], ARGV[3], live, 4)
"""
)

# ARGV: prefix, max age ms. Drops orphans older than that; returns the others (rooms failed over, not placed since).
ORPHANS_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', ARGV[1] .. ':media:orphans', '-inf', now - tonumber(ARGV[2]))
return redis.call('ZRANGE', ARGV[1] .. ':media:orphans', 0, -1)
"""


SCRIPTS = {
    "place": PLACE_SCRIPT,
    "place_member": PLACE_MEMBER_SCRIPT,
    "forget_member": FORGET_MEMBER_SCRIPT,
    "release": RELEASE_SCRIPT,
    "failover": FAILOVER_SCRIPT,
    "expire": EXPIRE_SCRIPT,
    "lock": LOCK_SCRIPT,
    "orphans": ORPHANS_SCRIPT,
    "adopt": ADOPT_SCRIPT,
}


class NoMediaNode(Exception):
    """No live media node can take the room: ``full`` when live nodes exist but none has headroom, else none is
    live (the media servers are restarting: retry soon)."""

    def __init__(self, *, full: bool) -> None:
        super().__init__(
            "No media server has room for another meeting." if full else "No media server is running right now."
        )
        self.full = full

    @classmethod
    def from_script(cls, raw: Any) -> NoMediaNode:
        return cls(full=_text(raw) == "full")


@dataclass(frozen=True)
class MediaNode:
    """A registered media node, as its record in Redis describes it."""

    node_id: str
    control_url: str
    record: dict[str, Any]

    @classmethod
    def from_script(cls, raw: Any) -> MediaNode | None:
        if not raw or isinstance(raw, bytes | str):  # false, or why nothing was placed ('full'/'none')
            return None
        node, record_raw = (_text(part) for part in raw)
        record = json.loads(record_raw)
        return cls(node_id=node, control_url=str(record.get("control_url", "")).rstrip("/"), record=record)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def enabled() -> bool:
    """Whether rooms are placed on registered nodes (``MEDIA_REDIS_URL``) or all go to ``MEDIA_CONTROL_URL``."""
    return bool(settings.MEDIA_REDIS_URL)


def _prefix() -> str:
    return str(settings.MEDIA_REDIS_PREFIX)


def _room_ttl_ms() -> int:
    return int(settings.MEDIA_ROOM_PLACEMENT_TTL_SECONDS * 1000)


def spanning() -> bool:
    """Whether a room may span several nodes (``MEDIA_SPAN_ROOMS``; needs the node registry)."""
    return enabled() and bool(settings.MEDIA_SPAN_ROOMS)


@dataclass(frozen=True)
class LostNode:
    """A dead node from FAILOVER_SCRIPT: its rooms, and for spanning rooms the participants it carried."""

    node: str
    rooms: list[str]
    members: dict[str, list[str]]
    """room -> participants that were on the node, for rooms placed per participant (spanning)."""


def parse_failover(raw: Any) -> list[LostNode]:
    """FAILOVER_SCRIPT's flat answer."""
    items = list(raw or [])
    lost = []
    for i in range(0, len(items), 3):
        members = json.loads(_text(items[i + 2]) or "{}")
        lost.append(
            LostNode(
                node=_text(items[i]),
                rooms=sorted(_text(r) for r in items[i + 1]),
                members={room: sorted(ps) for room, ps in (members if isinstance(members, dict) else {}).items()},
            )
        )
    return lost


def parse_member_nodes(raw: Any) -> list[MediaNode]:
    """PLACE_MEMBER_SCRIPT's answer: the participant's node first, then the room's other nodes."""
    items = list(raw) if isinstance(raw, list | tuple) else []
    nodes = [MediaNode.from_script(items[i : i + 2]) for i in range(0, len(items), 2)]
    return [n for n in nodes if n is not None]


class NodeDirectory:
    """The async directory used by room sockets and the failover monitor.

    Holds one ``redis.asyncio`` client per event loop (tests run one loop per
    test, daphne one per process); the URL and prefix are read from settings.
    """

    def __init__(self) -> None:
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._url = ""

    def _redis(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._url != settings.MEDIA_REDIS_URL:
            # A client of another (finished) loop cannot be closed from here; it is dropped.
            self._url = settings.MEDIA_REDIS_URL
            self._client = aioredis.Redis.from_url(
                self._url, socket_timeout=settings.MEDIA_CONTROL_TIMEOUT_SECONDS, retry=redis_retry(asynchronous=True)
            )
            self._scripts = {name: self._client.register_script(text) for name, text in SCRIPTS.items()}
            self._loop = loop
        return self._client

    async def _script(self, name: str, *args: Any, keys: tuple[str, ...] = ()) -> Any:
        self._redis()
        return await self._scripts[name](keys=list(keys), args=[_prefix(), *args] if not keys else list(args))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

    async def place(self, room: str) -> MediaNode:
        """The node hosting ``room``, placing the room first if it has none (or its node died)."""
        raw = await self._script("place", room, _room_ttl_ms(), "place", CANDIDATES, ROOM_WEIGHT)
        node = MediaNode.from_script(raw)
        if node is None:
            raise NoMediaNode.from_script(raw)
        return node

    async def lookup(self, room: str) -> MediaNode | None:
        """The live node hosting ``room``, or None (never placed, ended, or its node died)."""
        return MediaNode.from_script(
            await self._script("place", room, _room_ttl_ms(), "lookup", CANDIDATES, ROOM_WEIGHT)
        )

    async def release(self, room: str) -> str | None:
        """The room ended: forget where it was. Returns the node it was on."""
        node = await self._script("release", room)
        return _text(node) if node else None

    async def hosts(self, rooms: list[str]) -> dict[str, str | None]:
        """The node each room is placed on (None: not placed)."""
        if not rooms:
            return {}
        values = await self._redis().mget([f"{_prefix()}:media:room:{room}" for room in rooms])
        return {room: _text(v) if v else None for room, v in zip(rooms, values, strict=True)}

    async def elsewhere(self, node: str, rooms: list[str]) -> set[str]:
        """Of ``rooms`` (a live ``node`` sent media events for them), those placed on another node.

        A room with no placement at all (Redis restarted empty) is placed back on ``node``, which still
        hosts it, unless failover took it from a node (an orphan); so a Redis restart neither drops the
        room's media events nor lets the next subscribe place the room on a second node.
        """
        if not rooms:
            return set()
        return {_text(r) for r in await self._script("adopt", node, _room_ttl_ms(), *rooms)}

    async def expire(self, node_id: str) -> bool:
        """Declare a node dead now (its control listener refused a connection)."""
        return bool(await self._script("expire", node_id))

    async def failover(self, max_nodes: int = 100) -> list[tuple[str, list[str]]]:
        """Take the nodes whose registration expired, with the rooms they hosted (each node only once)."""
        return [(lost.node, lost.rooms) for lost in await self.failover_nodes(max_nodes)]

    async def failover_nodes(self, max_nodes: int = 100) -> list[LostNode]:
        """``failover`` with, for spanning rooms, the participants each dead node carried."""
        return parse_failover(await self._script("failover", max_nodes))

    async def place_member(self, room: str, participant: str, *, place: bool) -> list[MediaNode]:
        """Spanning rooms: [the participant's node (placed first when ``place``), the room's other nodes...].

        Empty when not placed (lookup) or nothing is live; raises NoMediaNode when ``place`` finds no node.
        """
        cap = int(settings.MEDIA_SPAN_PARTICIPANTS_PER_NODE)
        mode = "place" if place else "lookup"
        raw = await self._script("place_member", room, participant, _room_ttl_ms(), mode, CANDIDATES, ROOM_WEIGHT, cap)
        if place and isinstance(raw, bytes | str):
            raise NoMediaNode.from_script(raw)
        return parse_member_nodes(raw)

    async def forget_member(self, room: str, participant: str) -> None:
        await self._script("forget_member", room, participant)

    async def room_nodes(self, room: str) -> list[MediaNode]:
        """Every live node of ``room`` (its home first), spanning or not."""
        return parse_member_nodes(
            await self._script("place_member", room, "", _room_ttl_ms(), "lookup", CANDIDATES, ROOM_WEIGHT, 0)
        )

    async def orphans(self, max_age_seconds: float) -> list[str]:
        """Rooms failed over less than ``max_age_seconds`` ago and not placed again since (older ones are dropped)."""
        return [_text(room) for room in await self._script("orphans", int(max_age_seconds * 1000))]

    async def hold_lock(self, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the monitor lock (``<prefix>:media:monitor``); True while ``holder`` has it."""
        key = f"{_prefix()}:media:monitor"
        return bool(await self._script("lock", holder, int(ttl_seconds * 1000), keys=(key,)))

    async def nodes(self) -> list[dict[str, Any]]:
        """The records of the registered nodes, least loaded first (for tests and operators)."""
        client = self._redis()
        ids = [_text(n) for n in await client.zrange(f"{_prefix()}:media:load", 0, -1)]
        if not ids:
            return []
        records = await client.mget([f"{_prefix()}:media:node:{n}" for n in ids])
        return [json.loads(r) for r in records if r]


@functools.lru_cache(maxsize=4)
def _sync_place_script(url: str) -> Script:
    """One client (connection pool) per process and URL, as Django's cache keeps one."""
    client = redis.Redis.from_url(
        url, socket_timeout=settings.MEDIA_CONTROL_TIMEOUT_SECONDS, retry=redis_retry(asynchronous=False)
    )
    return client.register_script(PLACE_SCRIPT)


def place_sync(room: str) -> MediaNode:
    """``NodeDirectory.place`` for synchronous callers (request threads, Celery workers)."""
    raw = _sync_place_script(settings.MEDIA_REDIS_URL)(
        args=[_prefix(), room, _room_ttl_ms(), "place", CANDIDATES, ROOM_WEIGHT]
    )
    node = MediaNode.from_script(raw)
    if node is None:
        raise NoMediaNode.from_script(raw)
    return node


def lookup_sync(room: str) -> MediaNode | None:
    """``NodeDirectory.lookup`` for synchronous callers."""
    raw = _sync_place_script(settings.MEDIA_REDIS_URL)(
        args=[_prefix(), room, _room_ttl_ms(), "lookup", CANDIDATES, ROOM_WEIGHT]
    )
    return MediaNode.from_script(raw)
