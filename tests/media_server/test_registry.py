"""Node registry, media side: a NodeRegistrar on a real Redis (docs/protocol.md §2 "Node registry")."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis import asyncio as aioredis

from media_server.config import DEFAULT_CAPACITY_PPS, ConfigError, parse_config
from media_server.events import EventSink
from media_server.registry import NodeRegistrar, placement_score
from media_server.service import MediaService
from tests.conftest import redis_test_prefix, redis_test_url
from tests.procs import PrivateRedis

REDIS_URL = redis_test_url()


@pytest_asyncio.fixture
async def redis_prefix() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = redis_test_prefix("reg")
    yield client, prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def make_service(media_config: Any, prefix: str, **changes: Any) -> MediaService:
    config = dataclasses.replace(
        media_config,
        redis_url=changes.pop("redis_url", REDIS_URL),
        redis_prefix=prefix,
        node_url="http://10.0.0.7:8790",
        heartbeat_interval=0.2,
        **changes,
    )
    events = EventSink(url="http://127.0.0.1:9/closed", secret="s", node_id=config.node_id)
    return MediaService(config, events)


@pytest.mark.redis
async def test_a_node_registers_its_record_load_and_expiry_and_deregisters_on_close(
    media_config: Any, redis_prefix: tuple[aioredis.Redis, str]
) -> None:
    client, prefix = redis_prefix
    service = make_service(media_config, prefix)
    registrar = NodeRegistrar(service)
    assert await registrar.beat() == "new"
    assert await registrar.beat() == "ok"
    record = json.loads(await client.get(f"{prefix}:media:node:test-node"))
    assert record["node"] == "test-node"
    assert record["protocol"] == 1
    assert record["control_url"] == "http://10.0.0.7:8790"
    assert record["ice_addresses"] == ["127.0.0.1"]
    assert record["capacity_pps"] == DEFAULT_CAPACITY_PPS
    assert record["peers"] == 0 and record["rooms"] == 0 and record["draining"] is False
    assert record["forwarded_pps"] == 0
    assert record["boot"] == registrar.boot
    ttl = await client.pttl(f"{prefix}:media:node:test-node")
    assert 0 < ttl <= 500  # 2.5 heartbeat intervals
    assert await client.zscore(f"{prefix}:media:load", "test-node") == 0
    assert await client.zscore(f"{prefix}:media:expires", "test-node") > 0

    await registrar.close()
    assert await client.get(f"{prefix}:media:node:test-node") is None
    assert await client.zscore(f"{prefix}:media:load", "test-node") is None
    # Expired at time 0: Django fails its rooms over at once instead of waiting for the TTL.
    assert await client.zscore(f"{prefix}:media:expires", "test-node") == 0


@pytest.mark.redis
async def test_a_node_declared_dead_closes_its_rooms_and_registers_again_once_failed_over(
    media_config: Any, redis_prefix: tuple[aioredis.Redis, str]
) -> None:
    client, prefix = redis_prefix
    service = make_service(media_config, prefix)
    registrar = NodeRegistrar(service)
    assert await registrar.beat() == "new"
    service._room("room-a", create=True)
    assert await registrar.beat() == "ok"
    await client.sadd(f"{prefix}:media:rooms:test-node", "room-a")  # Django placed room-a here
    await client.zadd(f"{prefix}:media:expires", {"test-node": 0})  # what a late heartbeat looks like
    assert await registrar.beat() == "expired"
    assert service.rooms == {}  # its participants were told to reconnect elsewhere
    assert await registrar.beat() == "expired"  # not revived until Django has failed it over
    await client.zrem(f"{prefix}:media:expires", "test-node")  # what Django's failover does
    await client.delete(f"{prefix}:media:rooms:test-node")
    assert await registrar.beat() == "new"
    await registrar.close()


@pytest.mark.redis
async def test_an_expired_node_without_placed_rooms_registers_again_at_once(
    media_config: Any, redis_prefix: tuple[aioredis.Redis, str]
) -> None:
    """A clean restart of an idle node needs no failover (nobody to tell), so it need not wait for one."""
    _client, prefix = redis_prefix
    first = NodeRegistrar(make_service(media_config, prefix))
    assert await first.beat() == "new"
    await first.close()
    second = NodeRegistrar(make_service(media_config, prefix))
    assert await second.beat() == "new"
    assert await second.beat() == "ok"
    await second.close()


@pytest.mark.redis
async def test_a_second_process_with_the_same_node_id_expires_the_first_ones_registration(
    media_config: Any, redis_prefix: tuple[aioredis.Redis, str]
) -> None:
    client, prefix = redis_prefix
    first = NodeRegistrar(make_service(media_config, prefix))
    assert await first.beat() == "new"
    second = NodeRegistrar(make_service(media_config, prefix))  # a restart: same ID, new process
    assert await second.beat() == "restarted"
    assert await client.zscore(f"{prefix}:media:expires", "test-node") == 0
    # No room was placed on it: it registers at once. A close by the old process leaves it alone.
    assert await second.beat() == "new"
    await first.close()
    assert json.loads(await client.get(f"{prefix}:media:node:test-node"))["boot"] == second.boot
    await second.close()


@pytest.mark.redis
async def test_draining_and_load_set_the_placement_score(
    media_config: Any, redis_prefix: tuple[aioredis.Redis, str]
) -> None:
    client, prefix = redis_prefix
    service = make_service(media_config, prefix, draining=True)
    registrar = NodeRegistrar(service)
    await registrar.beat()
    assert math.isinf(await client.zscore(f"{prefix}:media:load", "test-node"))
    assert json.loads(await client.get(f"{prefix}:media:node:test-node"))["draining"] is True
    service.draining = False
    service._room("room-a", create=True)
    await registrar.beat()
    assert await client.zscore(f"{prefix}:media:load", "test-node") == pytest.approx(0.001)
    await registrar.close()
    assert placement_score(load=0.5, rooms=3, draining=False) == pytest.approx(0.503)


async def test_drain_control_route_toggles_draining(media: Any) -> None:
    resp = await media.http.post("/v1/drain", json={"protocol": 1, "draining": True}, headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["draining"] is True
    assert media.service.draining is True
    resp = await media.http.post("/v1/drain", json={"protocol": 1, "draining": "yes"}, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"
    resp = await media.http.post("/v1/drain", json={"protocol": 1, "draining": False}, headers=AUTH)
    assert (await resp.json())["draining"] is False


def test_registry_configuration_from_environment_and_flags() -> None:
    config = parse_config(
        ["--redis-url", "redis://r:6379/3", "--capacity-pps", "5000"],
        env={"MEDIA_DEV": "1", "MEDIA_CONTROL_PORT": "8801", "MEDIA_CONTROL_HOST": "10.1.2.3"},
    )
    assert config.redis_url == "redis://r:6379/3"
    assert config.redis_prefix == "conference"
    assert config.capacity_pps == 5000
    assert config.heartbeat_interval == 2.0
    assert config.room_placement_ttl == 43200
    assert config.node_url == "http://10.1.2.3:8801"
    assert config.draining is False
    config = parse_config(["--draining"], env={"MEDIA_DEV": "1", "MEDIA_NODE_URL": "http://media-7:8790/"})
    assert config.draining is True and config.node_url == "http://media-7:8790" and config.redis_url == ""
    for bad in (
        {"MEDIA_REDIS_URL": "http://nope"},
        {"MEDIA_CAPACITY_PPS": "-1"},
        {"MEDIA_HEARTBEAT_SECONDS": "x"},
        {"MEDIA_ROOM_PLACEMENT_TTL_SECONDS": "0"},
    ):
        with pytest.raises(ConfigError):
            parse_config([], env={"MEDIA_DEV": "1", **bad})


AUTH = {"Authorization": "Bearer test-secret"}


@pytest.mark.redis
async def test_after_redis_restarts_empty_the_heartbeat_places_the_nodes_rooms_back_on_it(media_config: Any) -> None:
    """A private redis-server is killed and started again, empty: the node's next heartbeat registers it and
    re-announces its rooms, so each has its placement again at once (no media event needed). A room failover
    took from it (an orphan) or that is placed on another node is left alone."""
    private = PrivateRedis()
    private.start()
    try:
        service = make_service(media_config, "heal", redis_url=private.url)
        registrar = NodeRegistrar(service)
        for room in ("room-a", "room-b", "room-c"):
            service._room(room, create=True)
        client = aioredis.Redis.from_url(private.url)
        try:
            assert await registrar.beat() == "new"
            private.kill()
            private.start()  # same port, no keys
            await client.zadd("heal:media:orphans", {"room-b": 1})  # failed over meanwhile, waiting for a placement
            await client.set("heal:media:room:room-c", "other-node")  # placed elsewhere
            assert await registrar.beat() == "new"
            assert await client.get("heal:media:room:room-a") == b"test-node"
            assert 0 < await client.pttl("heal:media:room:room-a") <= media_config.room_placement_ttl * 1000
            assert await client.smembers("heal:media:rooms:test-node") == {b"room-a"}
            assert await client.get("heal:media:room:room-b") is None
            assert await client.get("heal:media:room:room-c") == b"other-node"
            assert await registrar.beat() == "ok"
        finally:
            await client.aclose()
            await registrar.close()
    finally:
        private.stop()
