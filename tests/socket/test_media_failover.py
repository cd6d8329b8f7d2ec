"""Failover for real: two ``python -m media_server`` processes on Redis, one is SIGKILLed mid-call.

Participants are room sockets on the real ASGI application (WebsocketCommunicator)
with in-process aiortc peers that signal over them, as browsers do. The room is
placed on one node; that node is killed; the web process's own monitor notices,
both sockets get ``media_reconnect``, and publishing and subscribing again over
the same sockets lands on the surviving node, where video flows again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from redis import asyncio as aioredis

from media_server import aiortc_hooks
from rooms.media_nodes import NodeDirectory
from tests.media_server.ms_helpers import PatternVideoTrack, ToneAudioTrack, recv_frames, stop_process
from tests.socket.conftest import free_port

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


class Node:
    """One media server process registered in the test's registry prefix."""

    def __init__(self, name: str, prefix: str, secret: str, log: Path) -> None:
        self.name = name
        self.port = free_port()
        env = {
            **os.environ,
            "MEDIA_SECRET": secret,
            "MEDIA_DEV": "1",  # the test settings' development secret
            "MEDIA_CONTROL_PORT": str(self.port),
            "MEDIA_NODE_ID": name,
            "MEDIA_ICE_ADDRESSES": "127.0.0.1",
            "MEDIA_EVENTS_URL": f"http://127.0.0.1:{free_port()}/internal/media/v1/events",  # nobody: dropped
            "MEDIA_REDIS_URL": REDIS_URL,
            "MEDIA_REDIS_PREFIX": prefix,
            "PYTHONUNBUFFERED": "1",
        }
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "media_server"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])  # the in-process peers gather loopback only
    yield
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])


@pytest.fixture
async def nodes(settings: Any, tmp_path: Path, loopback_ice: None) -> AsyncIterator[dict[str, Node]]:
    prefix = f"test-failover-{uuid.uuid4().hex[:10]}"
    settings.MEDIA_REDIS_URL = REDIS_URL
    settings.MEDIA_REDIS_PREFIX = prefix
    started = {name: Node(name, prefix, settings.MEDIA_SECRET, tmp_path / f"{name}.log") for name in ("n1", "n2")}
    directory = NodeDirectory()
    try:
        deadline = time.monotonic() + 30
        while {r["node"] for r in await directory.nodes()} != set(started):
            for node in started.values():
                assert node.proc.poll() is None, node.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "media nodes did not register"
            await asyncio.sleep(0.1)
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


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class Peer:
    """One participant's media, signaled over its room socket like static/js/call.js does."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.pcs: list[RTCPeerConnection] = []
        self.ref = 0

    def _ref(self) -> int:
        self.ref += 1
        return self.ref

    async def publish(self) -> None:
        pc = new_pc()
        self.pcs.append(pc)
        pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
        pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        ref = self._ref()
        await self.sock.send({"type": "offer", "pc": "camera", "sdp": pc.localDescription.sdp, "ref": ref})
        answer = await self.sock.expect("answer", timeout=15, ref=ref)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def subscribe_video(self, publisher: str) -> Any:
        """Subscribe (again, until the publisher's tracks are there); returns the publisher's video track."""
        for _ in range(50):
            ref = self._ref()
            await self.sock.send({"type": "subscribe", "ref": ref})
            offer = await self.sock.expect("offer", timeout=15, ref=ref)
            if offer["sdp"] is not None:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the publisher's tracks never appeared")
        pc = new_pc()
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.sock.send(
            {"type": "answer", "pc": "subscribe", "sdp": pc.localDescription.sdp, "revision": offer["revision"]}
        )
        mid = next(t["mid"] for t in offer["tracks"] if t["participant"] == publisher and t["kind"] == "video")
        return next(t for t in pc.getTransceivers() if t.mid == mid).receiver.track

    async def drop_media(self) -> None:
        for pc in self.pcs:
            await pc.close()
        self.pcs.clear()


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
