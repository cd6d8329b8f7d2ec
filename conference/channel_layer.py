"""channels-redis' layer with fewer Redis round trips per group call; same keys, same semantics.

A join sends several room events (``group_send``) and adds its socket to two or
three groups (``group_add``); the media server's events of a join are four
group sends. channels-redis 4.3 makes each ``group_send`` **four** round trips
(expire the group's old members; read the members; expire each target channel's
old messages in a ``MULTI`` pipeline; then ``EVAL`` the delivery script, whose
text it sends every time) and each ``group_add`` two (``ZADD``, ``EXPIRE``).
Each round trip costs the web process CPU in redis-py (connection checkout,
command packing, reply parsing) and a task switch: ~0.05-0.1 ms each at load
~10 (docs/benchmarks.md §4, seventh session; a join on Redis cost daphne ~43-46 ms
against ~29 ms on the in-memory layer there).

Here ``group_send`` is **two** round trips: the group's expiry and read in one
pipeline, then one ``EVALSHA`` (``EVAL`` once after a Redis restart or script
flush) that expires each target channel's old messages and delivers, as the two
last steps did. ``group_add`` is **one**: ``ZADD`` and ``EXPIRE`` in one
pipeline. The Redis commands, keys, message encoding (one message per receiving
process, with its channels in ``__asgi_channel__``), capacity and expiry rules
are channels-redis' own (tests/socket/test_channel_layer_calls.py runs both
layers side by side); only the grouping into round trips differs. The per-channel
expiry now runs inside the delivery script instead of just before it, which is
atomic where channels-redis' pipeline was not.

Receiving (``receive``: a clean-up script, ``BZPOPMIN``, the backup ``ZADD`` and
its ``ZPOPMIN``) is channels-redis' unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer
from redis.exceptions import NoScriptError

logger = logging.getLogger(__name__)

# KEYS: the target channels' keys. ARGV: one message per key, one capacity per key, then the expiry cutoff of
# old messages, the time now (the new message's score) and the expiry (the key's TTL). channels-redis' delivery
# script with its preceding per-key ZREMRANGEBYSCORE pipeline folded in.
GROUP_SEND_LUA = """
local over_capacity = 0
local cutoff = ARGV[#ARGV - 2]
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""
GROUP_SEND_SHA = hashlib.sha1(GROUP_SEND_LUA.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)


class RedisChannelLayer(BaseRedisChannelLayer):  # type: ignore[misc]
    """channels-redis' ``RedisChannelLayer`` with ``group_send`` in two round trips and ``group_add`` in one."""

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (its score: now) and renew the group's expiry, in one round trip."""
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        group_key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zadd(group_key, {channel: time.time()})
            pipe.expire(group_key, self.group_expiry)
            await pipe.execute()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``: read the members, then deliver, two round trips."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        channel_names = [x.decode("utf8") for x in members]
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_connection.items():
            args = [
                *(messages[k] for k in keys),
                *(capacities[k] for k in keys),
                int(time.time()) - int(self.expiry),
                time.time(),
                self.expiry,
            ]
            target = self.connection(index)
            try:
                over_capacity = await target.evalsha(GROUP_SEND_SHA, len(keys), *keys, *args)
            except NoScriptError:  # a restarted (or flushed) Redis: EVAL sends the text and caches it again
                over_capacity = await target.eval(GROUP_SEND_LUA, len(keys), *keys, *args)
            if over_capacity > 0:
                logger.info("%s of %s channels over capacity in group %s", over_capacity, len(channel_names), group)
