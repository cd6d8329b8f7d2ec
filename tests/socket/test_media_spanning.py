"""A room spanning two real ``python -m media_server`` processes (MEDIA_SPAN_ROOMS, docs/scaling.md "Cascading").

With a cap of one participant per node, the host lands on one node and the
guest on the other; Django sets up the relays between them and each sees the
other's video. Killing the guest's node reconnects the guest only: the host
is not told to reconnect, and the guest publishes and subscribes again on the
surviving node. (The nodes' events go nowhere here, so subscribers ask for
their offers again instead of waiting for pushed renegotiations.)
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from redis import asyncio as aioredis

from rooms.media_nodes import NodeDirectory
from tests.media_server.ms_helpers import recv_frames
from tests.socket import test_media_failover as failover
from tests.socket.test_media_failover import REDIS_URL, Node, Peer

# The failover test's fixtures: two registered media processes, loopback-only ICE for the in-process peers.
nodes = failover.nodes
loopback_ice = failover.loopback_ice

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def spanning(settings: Any) -> None:
    settings.MEDIA_SPAN_ROOMS = True
    settings.MEDIA_SPAN_PARTICIPANTS_PER_NODE = 1


async def members(prefix: str, room: str) -> dict[str, str]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return dict(await client.hgetall(f"{prefix}:media:members:{room}"))
    finally:
        await client.aclose()


async def test_room_spans_two_nodes_and_survives_losing_one(
    world: Any, nodes: dict[str, Node], spanning: None, settings: Any
) -> None:
    room = await world.room()
    host_sock, _ = await world.host(room)
    guest_sock, _ = await world.member(room, name="Guest")
    host_id, guest_id = host_sock.participant_id, guest_sock.participant_id
    host, guest = Peer(host_sock), Peer(guest_sock)
    directory = NodeDirectory()
    try:
        await host.publish()
        await guest.publish()
        placed = await members(settings.MEDIA_REDIS_PREFIX, room.public_id)
        assert set(placed) == {host_id, guest_id} and placed[host_id] != placed[guest_id], placed
        # Each subscriber gets the other's video through the relay between the two processes.
        video = await guest.subscribe_video(host_id)
        await recv_frames(video, 5, timeout=20)
        video = await host.subscribe_video(guest_id)
        await recv_frames(video, 5, timeout=20)

        os.kill(nodes[placed[guest_id]].proc.pid, signal.SIGKILL)
        told = await guest_sock.expect("media_reconnect", timeout=20)
        assert told["node"] == placed[guest_id]
        # What the browser does on media_reconnect: drop its connections, publish and subscribe again.
        await guest.drop_media()
        await guest.publish()
        video = await guest.subscribe_video(host_id)
        await recv_frames(video, 5, timeout=20)
        now = await members(settings.MEDIA_REDIS_PREFIX, room.public_id)
        assert now == {host_id: placed[host_id], guest_id: placed[host_id]}  # over the cap: no other node lives
        # The host was not told to reconnect; its node now carries the guest's new publication too.
        video = await host.subscribe_video(guest_id)
        await recv_frames(video, 5, timeout=20)
        assert not [f for f in host_sock.pending if f["type"] == "media_reconnect"]
    finally:
        await directory.close()
        await host.drop_media()
        await guest.drop_media()
        await asyncio.sleep(0)
