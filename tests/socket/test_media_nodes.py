"""Node registry, Django side: placement, failover, the monitor, the event filter (real Redis).

Node records are written with the media server's own heartbeat script, so both
sides of the registry protocol (docs/protocol.md §2 "Node registry") are exercised.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from redis import asyncio as aioredis

from media_server.registry import HEARTBEAT_SCRIPT, placement_score, registry_keys
from rooms import media_nodes
from rooms.media_client import MediaClient, MediaError
from rooms.media_monitor import MediaNodeMonitor
from rooms.media_nodes import NodeDirectory, NoMediaNode
from tests.conftest import MEDIA_EVENTS_PATH, media_events_request, redis_test_prefix, redis_test_url

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
REDIS_URL = redis_test_url()


class Registry:
    """Writes node records as media nodes do (their heartbeat script)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    async def node(
        self,
        node: str,
        *,
        load: float = 0.0,
        rooms: int = 0,
        draining: bool = False,
        url: str = "",
        boot: str = "b1",
        ttl_ms: int = 60_000,
    ) -> str:
        record = {
            "protocol": 1,
            "node": node,
            "boot": boot,
            "control_url": url or f"http://{node}.invalid:8790",
            "load": load,
            "rooms": rooms,
            "draining": draining,
        }
        score = placement_score(load=load, rooms=rooms, draining=draining)
        answer = await self.client.eval(
            HEARTBEAT_SCRIPT,
            4,
            *registry_keys(self.prefix, node),
            node,
            boot,
            json.dumps(record),
            "+inf" if score == float("inf") else repr(score),
            ttl_ms,
        )
        return answer.decode()

    async def kill(self, node: str) -> None:
        """What an expired heartbeat looks like to the failover script."""
        await self.client.zadd(f"{self.prefix}:media:expires", {node: 0})


@pytest.fixture
async def registry(settings: Any) -> AsyncIterator[Registry]:
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = redis_test_prefix("nodes")
    settings.MEDIA_REDIS_URL = REDIS_URL
    settings.MEDIA_REDIS_PREFIX = prefix
    yield Registry(client, prefix)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def directory() -> AsyncIterator[NodeDirectory]:
    d = NodeDirectory()
    yield d
    await d.close()


async def test_a_room_goes_to_the_least_loaded_live_non_draining_node_with_headroom(
    registry: Registry, directory: NodeDirectory
) -> None:
    await registry.node("busy", load=0.5)
    await registry.node("idle", load=0.1)
    await registry.node("drain", load=0.0, draining=True)
    await registry.node("full", load=1.2)
    node = await directory.place("room1")
    assert node.node_id == "idle"
    assert node.control_url == "http://idle.invalid:8790"
    assert node.record["load"] == 0.1
    assert await registry.client.sismember(f"{registry.prefix}:media:rooms:idle", "room1")


async def test_placement_is_sticky_for_the_rooms_life_and_released_when_it_ends(
    registry: Registry, directory: NodeDirectory
) -> None:
    await registry.node("a", load=0.1)
    await registry.node("b", load=0.2)
    assert (await directory.place("room1")).node_id == "a"
    await registry.node("a", load=0.9)  # a gets busy: the room stays
    assert (await directory.place("room1")).node_id == "a"
    assert (await directory.lookup("room1")).node_id == "a"  # type: ignore[union-attr]
    assert (await directory.place("room2")).node_id == "b"
    assert await directory.release("room1") == "a"
    assert await directory.lookup("room1") is None
    assert not await registry.client.sismember(f"{registry.prefix}:media:rooms:a", "room1")


async def test_idle_nodes_take_turns_and_lookup_never_places(registry: Registry, directory: NodeDirectory) -> None:
    await registry.node("a")
    await registry.node("b")
    assert await directory.lookup("room0") is None
    placed = [(await directory.place(f"room{i}")).node_id for i in range(6)]
    assert sorted(placed) == ["a", "a", "a", "b", "b", "b"]  # each placement counts before the next heartbeat


async def test_no_node_with_headroom_means_no_placement(registry: Registry, directory: NodeDirectory) -> None:
    """Nothing live (or only draining nodes: a rolling restart) is not "full": the caller retries soon."""
    with pytest.raises(NoMediaNode) as nothing:
        await directory.place("room1")
    assert not nothing.value.full
    await registry.node("drain", draining=True)
    with pytest.raises(NoMediaNode) as draining:
        await directory.place_member("room1", "p1", place=True)
    assert not draining.value.full
    await registry.node("full", load=1.0)
    with pytest.raises(NoMediaNode) as full:
        await directory.place("room1")
    assert full.value.full and str(full.value) == "No media server has room for another meeting."
    with pytest.raises(NoMediaNode) as full_sync:
        await sync_to_async(media_nodes.place_sync)("room1")
    assert full_sync.value.full


async def test_no_live_node_is_a_retryable_media_unavailable_and_full_nodes_are_media_full(
    registry: Registry, settings: Any
) -> None:
    client = MediaClient()
    with pytest.raises(MediaError) as restarting:
        await client.publish(room="r1", participant="p1", pc="camera", sdp="v=0")
    error = restarting.value
    assert (error.code, error.status, error.retry_after) == (
        "media_unavailable",
        503,
        settings.MEDIA_RETRY_AFTER_SECONDS,
    )
    assert error.message == "The media server is restarting; retrying…"
    await registry.node("full", load=1.0)
    with pytest.raises(MediaError) as full:
        await client.subscribe(room="r1", participant="p1")
    assert (full.value.code, full.value.retry_after) == ("media_full", settings.MEDIA_FULL_RETRY_AFTER_SECONDS)
    assert full.value.message == "No media server has room for another meeting."
    await client.close()


async def test_concurrent_placements_from_many_web_processes_agree(registry: Registry) -> None:
    """Threads with their own Redis connections stand in for web processes racing to place one room."""
    for i in range(4):
        await registry.node(f"n{i}")
    results: list[str] = []
    start = threading.Barrier(12)

    def place() -> None:
        start.wait()
        results.append(media_nodes.place_sync("contested").node_id)

    threads = [threading.Thread(target=place) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        await asyncio.to_thread(t.join)
    assert len(results) == 12 and len(set(results)) == 1
    counts = [await registry.client.scard(f"{registry.prefix}:media:rooms:n{i}") for i in range(4)]
    assert sorted(counts) == [0, 0, 0, 1]


async def test_failover_hands_out_a_dead_nodes_rooms_once_and_they_are_placed_again(
    registry: Registry, directory: NodeDirectory
) -> None:
    await registry.node("a", load=0.1)
    await registry.node("b", load=0.2)
    for room in ("r1", "r2"):
        assert (await directory.place(room)).node_id == "a"
    assert await directory.failover() == []
    await registry.kill("a")
    assert await directory.failover() == [("a", ["r1", "r2"])]
    assert await directory.failover() == []  # handed out once
    assert await directory.lookup("r1") is None
    assert (await directory.place("r1")).node_id == "b"
    assert [n["node"] for n in await directory.nodes()] == ["b"]
    # The node comes back (its next heartbeat): it registers as a new, empty node.
    assert await registry.node("a", load=0.0) == "new"


async def test_a_room_whose_node_record_expired_is_placed_again_and_still_failed_over(
    registry: Registry, directory: NodeDirectory
) -> None:
    await registry.node("a", ttl_ms=150)
    assert (await directory.place("r1")).node_id == "a"
    await asyncio.sleep(0.3)
    await registry.node("b")
    assert (await directory.place("r1")).node_id == "b"  # a request arrived before the monitor
    # Everyone still on a is told anyway; the placement on b stays.
    assert await directory.failover() == [("a", ["r1"])]
    assert (await directory.lookup("r1")).node_id == "b"  # type: ignore[union-attr]


async def test_monitor_lock_has_one_holder_at_a_time(registry: Registry, directory: NodeDirectory) -> None:
    assert await directory.hold_lock("web-1", 0.3)
    assert not await directory.hold_lock("web-2", 0.3)
    assert await directory.hold_lock("web-1", 0.3)  # renewed
    await asyncio.sleep(0.4)
    assert await directory.hold_lock("web-2", 0.3)  # web-1 died: web-2 takes over


async def test_monitor_tells_the_rooms_of_a_dead_node_and_fails_their_recordings(
    registry: Registry, world: Any, settings: Any
) -> None:
    """The process's own monitor (started by the socket's first ASGI call) handles it."""
    from recordings.models import Recording
    from rooms.routing import media_monitor

    await registry.node("a")
    await registry.node("b")
    room = await world.room()
    host, _ = await world.host(room)
    directory = NodeDirectory()
    node = (await directory.place(room.public_id)).node_id
    recording = await sync_to_async(Recording.objects.create)(
        room=room, started_by=room.host_user, status=Recording.Status.RECORDING
    )
    await registry.kill(node)
    frame = await host.expect("media_reconnect")
    assert frame == {"type": "media_reconnect", "reason": "media_node_lost", "node": node}
    assert media_monitor.failed_over[-1] == (node, [room.public_id])
    state = await host.expect("recording_state")
    assert state["status"] == "failed" and state["reason"] == f"media_lost: node {node} stopped"
    await sync_to_async(recording.refresh_from_db)()
    assert recording.status == Recording.Status.FAILED
    other = MediaNodeMonitor(directory)
    await registry.kill("b")
    assert await other.run_once() == []  # the lock is held by the process's monitor
    await directory.close()


async def test_events_from_a_node_that_no_longer_hosts_the_room_are_dropped(
    registry: Registry, world: Any, settings: Any
) -> None:
    await registry.node("a")
    room = await world.room()
    host, _ = await world.host(room)
    directory = NodeDirectory()
    assert (await directory.place(room.public_id)).node_id == "a"
    await directory.close()
    client = AsyncClient()

    async def post(node: str) -> None:
        event = {"type": "active_speaker", "room": room.public_id, "participant": host.participant_id}
        body, headers = media_events_request({"protocol": 1, "node": node, "events": [event]})
        response = await client.post(MEDIA_EVENTS_PATH, body, content_type="application/json", headers=headers)
        assert response.status_code == 204

    await post("old-node")
    await host.nothing(0.3)
    await post("a")
    assert (await host.expect("active_speaker"))["participantId"] == host.participant_id


async def test_a_refused_control_connection_fails_the_node_over_and_unplaced_rooms_are_not_found(
    registry: Registry, directory: NodeDirectory
) -> None:
    from tests.socket.conftest import free_port

    await registry.node("gone", url=f"http://127.0.0.1:{free_port()}")
    client = MediaClient()
    with pytest.raises(MediaError) as excinfo:
        await client.subscribe(room="r1", participant="p1")
    assert excinfo.value.code == "media_unavailable"
    assert await registry.client.zscore(f"{registry.prefix}:media:expires", "gone") == 0
    assert await directory.failover() == [("gone", ["r1"])]
    with pytest.raises(MediaError) as excinfo:
        await client.ice(room="r1", participant="p1", pc="camera", candidate=None)
    assert (excinfo.value.code, excinfo.value.status) == ("room_not_found", 404)
    with pytest.raises(MediaError) as excinfo:
        await client.publish(room="r1", participant="p1", pc="camera", sdp="v=0")
    assert excinfo.value.code == "media_unavailable"  # no node left
    await client.close()


# -- spanning rooms (MEDIA_SPAN_ROOMS): per-participant placement ------------------------------------------


def ids(nodes: list[media_nodes.MediaNode]) -> list[str]:
    return [n.node_id for n in nodes]


async def test_spanning_participants_stay_on_the_home_node_until_the_cap(
    registry: Registry, directory: NodeDirectory, settings: Any
) -> None:
    settings.MEDIA_SPAN_ROOMS = True
    settings.MEDIA_SPAN_PARTICIPANTS_PER_NODE = 2
    await registry.node("a", load=0.1)
    await registry.node("b", load=0.2)
    await registry.node("c", load=0.3)
    assert ids(await directory.place_member("r1", "p1", place=True)) == ["a"]
    assert ids(await directory.place_member("r1", "p2", place=True)) == ["a"]
    assert ids(await directory.place_member("r1", "p3", place=True)) == ["b", "a"]  # over the cap: the next node
    assert ids(await directory.place_member("r1", "p4", place=True)) == ["b", "a"]  # a node of the room first
    assert ids(await directory.place_member("r1", "p1", place=False)) == ["a", "b"]  # sticky
    assert ids(await directory.room_nodes("r1")) == ["a", "b"]
    assert ids(await directory.place_member("r1", "nobody", place=False)) == ["a", "b"]  # falls back to the home


async def test_spanning_goes_elsewhere_when_the_home_is_over_budget_and_home_when_nothing_fits(
    registry: Registry, directory: NodeDirectory, settings: Any
) -> None:
    settings.MEDIA_SPAN_ROOMS = True
    settings.MEDIA_SPAN_PARTICIPANTS_PER_NODE = 0
    await registry.node("a", load=0.1)
    await registry.node("b", load=0.5)
    assert ids(await directory.place_member("r1", "p1", place=True)) == ["a"]
    await registry.node("a", load=1.2)  # the home is over its packet budget
    assert ids(await directory.place_member("r1", "p2", place=True)) == ["b", "a"]
    await registry.node("b", load=1.1)  # nowhere has headroom: the home anyway
    assert ids(await directory.place_member("r1", "p3", place=True)) == ["a", "b"]


async def test_failover_of_a_spanning_room_names_only_the_dead_nodes_participants(
    registry: Registry, directory: NodeDirectory, settings: Any
) -> None:
    settings.MEDIA_SPAN_ROOMS = True
    settings.MEDIA_SPAN_PARTICIPANTS_PER_NODE = 1
    await registry.node("a", load=0.1)
    await registry.node("b", load=0.2)
    await directory.place_member("r1", "p1", place=True)
    await directory.place_member("r1", "p2", place=True)
    await directory.place("r2")  # a room that does not span (no members): whole-room failover as before
    await registry.kill("b")
    lost = await directory.failover_nodes()
    assert [(x.node, x.rooms, x.members) for x in lost] == [("b", ["r1"], {"r1": ["p2"]})]
    assert ids(await directory.room_nodes("r1")) == ["a"]
    assert ids(await directory.place_member("r1", "p2", place=True)) == ["a"]  # only a lives: over the cap
    await directory.release("r1")
    assert await directory.room_nodes("r1") == []


async def test_the_monitor_fails_over_a_node_whose_control_port_refuses_without_waiting_for_its_ttl(
    registry: Registry, directory: NodeDirectory
) -> None:
    """kill -9 leaves the port closed: the next monitor pass (not the 5 s TTL) takes the node's rooms."""
    from tests.socket.conftest import free_port

    await registry.node("alive")  # unresolvable host (.invalid): not a refusal, left alone
    await registry.node("gone", url=f"http://127.0.0.1:{free_port()}", ttl_ms=60_000)
    await registry.client.sadd(f"{registry.prefix}:media:rooms:gone", "r1")
    await registry.client.set(f"{registry.prefix}:media:room:r1", "gone")
    monitor = MediaNodeMonitor(directory)
    assert await monitor.run_once() == [("gone", ["r1"])]
    assert [r["node"] for r in await directory.nodes()] == ["alive"]
    assert await directory.orphans(60) == ["r1"]


async def test_a_node_registering_while_rooms_have_none_tells_those_rooms_to_reconnect(
    registry: Registry, directory: NodeDirectory, world: Any
) -> None:
    """The room's only node died; the room stays an orphan until a node registers, then its sockets are told.

    The process's own monitor (started by the socket's first ASGI call) handles it.
    """
    await registry.node("a")
    room = await world.room()
    host, _ = await world.host(room)
    assert (await directory.place(room.public_id)).node_id == "a"
    await registry.kill("a")
    lost = await host.expect("media_reconnect")
    assert lost == {"type": "media_reconnect", "reason": "media_node_lost", "node": "a"}
    assert await directory.orphans(60) == [room.public_id]
    await host.nothing(1.2)  # no node: nothing more to say
    await registry.node("a", boot="b2")  # the restarted server registers again
    again = await host.expect("media_reconnect")
    assert again == {"type": "media_reconnect", "reason": "media_node_available", "node": "a"}
    assert (await directory.place(room.public_id)).node_id == "a"  # placed: no longer an orphan
    assert await directory.orphans(60) == []
    await host.nothing(1.2)  # told once


async def test_a_room_whose_placement_redis_lost_is_placed_back_on_the_node_that_reports_it(
    registry: Registry, world: Any, settings: Any
) -> None:
    """Redis restarted empty: the node's next events for the room are delivered and put the room back on that node
    (so the next subscribe does not place it on a second node); an orphan (failed over) is never adopted."""
    await registry.node("a", load=0.5)
    room = await world.room()
    host, _ = await world.host(room)
    directory = NodeDirectory()
    assert (await directory.place(room.public_id)).node_id == "a"
    await registry.client.delete(f"{registry.prefix}:media:room:{room.public_id}", f"{registry.prefix}:media:rooms:a")
    await registry.node("b")  # idle: a fresh placement would go here
    client = AsyncClient()
    event = {"type": "active_speaker", "room": room.public_id, "participant": host.participant_id}
    body, headers = media_events_request({"protocol": 1, "node": "a", "events": [event]})
    response = await client.post(MEDIA_EVENTS_PATH, body, content_type="application/json", headers=headers)
    assert response.status_code == 204
    assert (await host.expect("active_speaker"))["participantId"] == host.participant_id
    assert (await directory.place(room.public_id)).node_id == "a"
    assert await registry.client.sismember(f"{registry.prefix}:media:rooms:a", room.public_id)
    assert await directory.elsewhere("b", ["orphan-room"]) == set()  # b is live and the room unplaced: adopted
    await registry.client.delete(f"{registry.prefix}:media:room:orphan-room")
    await registry.client.zadd(f"{registry.prefix}:media:orphans", {"orphan-room": 1})
    assert await directory.elsewhere("b", ["orphan-room"]) == {"orphan-room"}  # failed over: not taken back
    await directory.close()
