"""conference.channel_layer: channels-redis' group calls in fewer round trips, interchangeable with channels-redis.

A web process on this layer and one on channels-redis' own (a rolling deploy) share groups and channels: each
delivers to the other's sockets, with the same capacity and expiry rules. Round trips are counted (each is one
write of packed commands to a Redis connection), never timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer
from redis.asyncio.connection import AbstractConnection

from conference import channel_layer
from conference.channel_layer import RedisChannelLayer
from tests.conftest import redis_delete_prefix, redis_test_prefix, redis_test_url

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


@pytest.fixture
async def layers() -> AsyncIterator[tuple[RedisChannelLayer, BaseRedisChannelLayer]]:
    """This layer and channels-redis' own on one Redis database and prefix (two web processes of a deploy)."""
    prefix = redis_test_prefix("layer-calls")
    config: dict[str, Any] = {"hosts": [{"address": redis_test_url()}], "prefix": prefix, "capacity": 3}
    ours, theirs = RedisChannelLayer(**config), BaseRedisChannelLayer(**config)
    try:
        yield ours, theirs
    finally:
        await ours.close_pools()
        await theirs.close_pools()
        redis_delete_prefix(prefix)


@contextmanager
def round_trips() -> Iterator[list[int]]:
    """Counts writes of packed commands to any async Redis connection (a pipeline is one) while inside."""
    count = [0]
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        count[0] += 1
        await original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


async def receive(layer: BaseRedisChannelLayer, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), 5)  # type: ignore[no-any-return]


async def nothing_for(layer: BaseRedisChannelLayer, channel: str) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), 0.3)
    except TimeoutError:
        return True
    return False


async def test_group_send_reaches_both_layers_channels_in_two_round_trips(
    layers: tuple[RedisChannelLayer, BaseRedisChannelLayer],
) -> None:
    ours, theirs = layers
    mine, yours, plain = await ours.new_channel(), await theirs.new_channel(), "plain.channel"
    for channel in (mine, yours, plain):
        await theirs.group_add("room.a", channel)
    await ours.connection(0).ping()  # the connection's own set-up (HELLO, SELECT, ...) is not counted
    with round_trips() as count:
        await ours.group_send("room.a", {"type": "room.event", "n": 1})
    assert count[0] == 2  # channels-redis: 4 (expire + read the group; expire the channels; EVAL)
    assert (await receive(ours, mine))["n"] == 1
    assert (await receive(theirs, yours))["n"] == 1
    assert (await receive(theirs, plain))["n"] == 1


async def test_group_add_is_one_round_trip_and_channels_redis_delivers_to_it(
    layers: tuple[RedisChannelLayer, BaseRedisChannelLayer],
) -> None:
    ours, theirs = layers
    channel = await ours.new_channel()
    await ours.connection(0).ping()
    with round_trips() as count:
        await ours.group_add("room.b", channel)
    assert count[0] == 1  # channels-redis: 2 (ZADD, EXPIRE)
    connection = ours.connection(0)
    ttl = await connection.ttl(ours._group_key("room.b"))
    assert 0 < ttl <= ours.group_expiry
    await theirs.group_send("room.b", {"type": "room.event", "n": 2})
    assert (await receive(ours, channel))["n"] == 2
    await ours.group_discard("room.b", channel)
    await ours.group_send("room.b", {"type": "room.event", "n": 3})
    assert await nothing_for(ours, channel)


async def test_group_send_keeps_capacity_and_expires_old_messages_and_members(
    layers: tuple[RedisChannelLayer, BaseRedisChannelLayer],
) -> None:
    ours, _ = layers
    full, stale_member = "full.channel", "stale.channel"
    await ours.group_add("room.c", full)
    for n in range(5):  # capacity 3: the last two are dropped, as channels-redis drops them
        await ours.group_send("room.c", {"type": "room.event", "n": n})
    assert [(await receive(ours, full))["n"] for _ in range(3)] == [0, 1, 2]
    assert await nothing_for(ours, full)

    connection = ours.connection(0)
    # A message older than the layer's expiry is dropped before delivery, freeing its place.
    old = ours.serialize({"type": "room.event", "n": "old"})
    key = (ours.prefix + full).encode()
    for _ in range(3):
        await connection.zadd(key, {old + str(_).encode(): time.time() - ours.expiry - 10})
    await ours.group_send("room.c", {"type": "room.event", "n": "new"})
    assert (await receive(ours, full))["n"] == "new"
    # A member older than the group expiry is not delivered to (and leaves the group).
    await connection.zadd(ours._group_key("room.c"), {stale_member: time.time() - ours.group_expiry - 10})
    await ours.group_send("room.c", {"type": "room.event", "n": "x"})
    assert await nothing_for(ours, stale_member)
    assert await connection.zscore(ours._group_key("room.c"), stale_member) is None


async def test_group_send_sends_its_script_when_redis_does_not_have_it(
    layers: tuple[RedisChannelLayer, BaseRedisChannelLayer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after a Redis restart (a SCRIPT FLUSH would empty the shared test server's cache for everyone)."""
    ours, _ = layers
    monkeypatch.setattr(channel_layer, "GROUP_SEND_SHA", "0" * 40)  # a script Redis never saw
    await ours.group_add("room.d", "d.channel")
    await ours.group_send("room.d", {"type": "room.event", "n": 4})
    await ours.group_send("room.d", {"type": "room.event", "n": 5})
    assert [(await receive(ours, "d.channel"))["n"] for _ in range(2)] == [4, 5]
