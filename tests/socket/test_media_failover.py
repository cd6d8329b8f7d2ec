"""Failover for real: two ``python -m media_server`` processes on Redis, one is SIGKILLed mid-call.

Participants are room sockets on the real ASGI application (WebsocketCommunicator)
with in-process aiortc peers that signal over them, as browsers do. The room is
placed on one node; that node is killed; the web process's own monitor notices,
both sockets get ``media_reconnect``, and publishing and subscribing again over
the same sockets lands on the surviving node, where video flows again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as aioredis

from media_server import aiortc_hooks
from rooms.media_nodes import NodeDirectory
from tests.conftest import redis_test_prefix, redis_test_url
from tests.media_server.ms_helpers import recv_frames
from tests.procs import MediaServer, Peer

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = redis_test_url()


class Node(MediaServer):
    """One media server process registered in the test's registry prefix (the shared test Redis)."""

    def __init__(self, name: str, prefix: str, secret: str, log: Path) -> None:
        super().__init__(name, redis_url=REDIS_URL, prefix=prefix, secret=secret, log=log)


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])  # the in-process peers gather loopback only
    yield
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])


@contextlib.asynccontextmanager
async def running_nodes(names: tuple[str, ...], settings: Any, tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    """Media server processes registered under a fresh prefix (Django's settings point at it); stopped after."""
    prefix = redis_test_prefix("failover")
    settings.MEDIA_REDIS_URL = REDIS_URL
    settings.MEDIA_REDIS_PREFIX = prefix
    started = {name: Node(name, prefix, settings.MEDIA_SECRET, tmp_path / f"{name}.log") for name in names}
    directory = NodeDirectory()
    try:
        await registered(directory, started)
        yield started
    finally:
        for node in started.values():
            node.stop()
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await directory.close()


async def registered(directory: NodeDirectory, started: dict[str, Node], timeout: float = 90) -> None:
    """Wait for every node to register; a node imports aiortc and the C path first (seconds, more on a busy machine)."""
    deadline = time.monotonic() + timeout
    while not set(started) <= {r["node"] for r in await directory.nodes()}:
        for node in started.values():
            assert node.proc.poll() is None, node.log.read_text()[-3000:]
        assert time.monotonic() < deadline, "media nodes did not register"
        await asyncio.sleep(0.1)


@pytest.fixture
async def nodes(settings: Any, tmp_path: Path, loopback_ice: None) -> AsyncIterator[dict[str, Node]]:
    async with running_nodes(("n1", "n2"), settings, tmp_path) as started:
        yield started


async def test_participants_of_a_killed_node_are_told_and_moved_to_the_other_node(
    world: Any, nodes: dict[str, Node]
) -> None:
    room = await world.room()
    host_sock, _ = await world.host(room)
    guest_sock, _ = await world.member(room, name="Guest")
    host, guest = Peer(host_sock), Peer(guest_sock)
    try:
        await host.publish()
        video = await guest.subscribe_video(host_sock.participant_id)
        await recv_frames(video, 5, timeout=20)

        directory = NodeDirectory()
        first = await directory.lookup(room.public_id)
        assert first is not None and first.node_id in nodes
        survivor = next(name for name in nodes if name != first.node_id)

        killed_at = time.monotonic()
        os.kill(nodes[first.node_id].proc.pid, signal.SIGKILL)
        told = [await s.expect("media_reconnect", timeout=20) for s in (host_sock, guest_sock)]
        told_after = time.monotonic() - killed_at
        assert all(f == {"type": "media_reconnect", "reason": "media_node_lost", "node": first.node_id} for f in told)

        # What the browser does on media_reconnect: drop its connections, publish and subscribe again.
        await host.drop_media()
        await guest.drop_media()
        await host.publish()
        video = await guest.subscribe_video(host_sock.participant_id)
        await recv_frames(video, 5, timeout=20)
        moved_after = time.monotonic() - killed_at
        now = await directory.lookup(room.public_id)
        assert now is not None and now.node_id == survivor
        assert [r["node"] for r in await directory.nodes()] == [survivor]
        print(f"\nfailover: told after {told_after:.1f} s, video again after {moved_after:.1f} s")
        await directory.close()
    finally:
        await host.drop_media()
        await guest.drop_media()


async def test_the_only_node_restarted_takes_the_room_back_and_clients_are_told_when_it_registers(
    world: Any, settings: Any, tmp_path: Path, loopback_ice: None
) -> None:
    """kill -9 of the only media server: media_unavailable (retryable, never the capacity message) while it is
    down; when it registers again both sockets get media_reconnect (media_node_available), and media flows."""
    async with running_nodes(("solo",), settings, tmp_path) as started:
        room = await world.room()
        host_sock, _ = await world.host(room)
        guest_sock, _ = await world.member(room, name="Guest")
        host, guest = Peer(host_sock), Peer(guest_sock)
        try:
            await host.publish()
            video = await guest.subscribe_video(host_sock.participant_id)
            await recv_frames(video, 5, timeout=20)

            os.kill(started["solo"].proc.pid, signal.SIGKILL)
            for sock in (host_sock, guest_sock):
                assert (await sock.expect("media_reconnect", timeout=20))["reason"] == "media_node_lost"
            await host.drop_media()
            await guest.drop_media()
            await host_sock.send({"type": "subscribe", "ref": "down"})
            error = await host_sock.expect("error", timeout=15)
            assert (error["code"], error["ref"], error["retry_after"]) == ("media_unavailable", "down", 1)
            assert error["message"] == "The media server is restarting; retrying…"

            restarted = Node("solo", settings.MEDIA_REDIS_PREFIX, settings.MEDIA_SECRET, tmp_path / "solo-2.log")
            started["solo-2"] = restarted  # stopped by running_nodes
            for sock in (host_sock, guest_sock):
                told = await sock.expect("media_reconnect", timeout=30)
                assert told == {"type": "media_reconnect", "reason": "media_node_available", "node": "solo"}
            await host.publish()
            video = await guest.subscribe_video(host_sock.participant_id)
            await recv_frames(video, 5, timeout=20)
        finally:
            await host.drop_media()
            await guest.drop_media()
