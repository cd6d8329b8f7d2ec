"""Cascading for real: one room spans two ``python -m media_server`` processes on loopback.

The publisher is on node A, the subscriber on node B; A relays the room's
publications to B over the UDP relay (media_server/cascade.py). Events of
both processes go to one FakeDjango, which is how the subscriber on B gets its
renegotiation offers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ms_helpers import AUTH, FakeDjango, PublisherClient, SubscriberClient, recv_frames, stop_process, until

# The whole test, node start-up included (up to 90 s on a busy machine, see Node.wait_ready).
pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One media server process; ``http`` is a client session on its control API."""

    def __init__(self, name: str, events_url: str, log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {
            **os.environ,
            "MEDIA_SECRET": "test-secret",
            "MEDIA_DEV": "1",  # a short test secret
            "MEDIA_CONTROL_PORT": str(self.port),
            "MEDIA_NODE_ID": name,
            "MEDIA_ICE_ADDRESSES": "127.0.0.1",
            "MEDIA_EVENTS_URL": events_url,
            "MEDIA_RELAY_HOST": "127.0.0.1",
            "MEDIA_RELAY_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "media_server"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.http = aiohttp.ClientSession(base_url=self.url)

    async def wait_ready(self) -> dict[str, Any]:
        # A node imports aiortc, PyAV and the C path before it listens: seconds when idle, more than 30 s on a
        # busy 2-core machine (the log was still empty then). 90 s, as tests/socket/test_media_failover.py allows.
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                async with self.http.get("/v1/health", headers=AUTH) as resp:
                    if resp.status == 200:
                        return dict(await resp.json())
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"{self.name} did not start: {self.log.read_text()[-3000:]}"
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        await self.http.close()
        stop_process(self.proc)


@pytest_asyncio.fixture
async def nodes(fake_django: FakeDjango, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    url = fake_django.url  # type: ignore[attr-defined]
    a, b = Node("A", url, tmp_path / "a.log"), Node("B", url, tmp_path / "b.log")
    try:
        health = await asyncio.gather(a.wait_ready(), b.wait_ready())
        assert all(h["relay"].startswith("127.0.0.1:") for h in health), health
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def relay(origin: Node, target: Node, room: str) -> dict[str, Any]:
    async with origin.http.post(
        f"/v1/rooms/{room}/relays", json={"protocol": 1, "node": target.name, "url": target.url}, headers=AUTH
    ) as resp:
        body = dict(await resp.json())
        assert resp.status == 201, body
        return body


def offer_for(participant: str, node_tracks: Any) -> Any:
    return lambda e: e["type"] == "subscribe_offer" and e["participant"] == participant and node_tracks(e["tracks"])


async def test_publication_on_a_reaches_subscriber_on_b(nodes: tuple[Node, Node], fake_django: FakeDjango) -> None:
    a, b = nodes
    await relay(a, b, "r1")
    sub = SubscriberClient(b.http, "r1", "bob")  # type: ignore[arg-type]
    first = await sub.start()
    assert first["tracks"] == []  # nothing published yet
    pub = PublisherClient(a.http, "r1", "alice")  # type: ignore[arg-type]
    start = len(fake_django.events)
    await pub.start()

    # A syncs its publications to B; B renegotiates bob like for a local publication.
    offer = await fake_django.wait_for(offer_for("bob", lambda tracks: len(tracks) == 2), start=start)
    assert {(t["participant"], t["pc"], t["source"], t["kind"]) for t in offer["tracks"]} == {
        ("alice", "camera", "camera", "video"),
        ("alice", "camera", "microphone", "audio"),
    }
    answered = time.monotonic()
    await sub.answer(offer)
    frames = await recv_frames(sub.track("alice", "camera"), 1)
    first_frame = time.monotonic() - answered  # decodable only from a keyframe on
    print(f"first decoded frame on B {first_frame * 1000:.0f} ms after the answer")
    assert frames[0].width == 160
    audio = await recv_frames(sub.track("alice", "microphone"), 5)
    assert audio[0].sample_rate == 48000

    async with a.http.get("/v1/rooms/r1/relays", headers=AUTH) as resp:
        status = await resp.json()
    assert status["targets"][0]["node"] == "B" and status["targets"][0]["tracks"] == 2, status
    async with b.http.get("/v1/rooms/r1/relays", headers=AUTH) as resp:
        status = await resp.json()
    assert status["origins"] == [{"node": "A", "tracks": 2}], status

    # A keyframe request from B's subscriber travels back to A's publisher.
    await asyncio.sleep(0.6)  # leave A's and B's 500 ms PLI throttle windows
    before = pub.keyframe_requests
    receiver = sub.receiver("alice", "camera")
    await receiver._send_rtcp_pli(receiver.getSynchronizationSources()[0].source)
    assert await until(lambda: pub.keyframe_requests > before)

    # Unpublishing on A removes the tracks on B (bob is renegotiated).
    start = len(fake_django.events)
    async with a.http.delete("/v1/rooms/r1/participants/alice/publish/camera", headers=AUTH) as resp:
        assert resp.status == 204
    offer = await fake_django.wait_for(offer_for("bob", lambda tracks: tracks == []), start=start)
    await sub.answer(offer)
    await asyncio.gather(pub.close(), sub.close())


async def test_stopping_the_relay_and_closing_the_room_clear_b(
    nodes: tuple[Node, Node], fake_django: FakeDjango
) -> None:
    a, b = nodes
    pub = PublisherClient(a.http, "r2", "alice", video=False)  # type: ignore[arg-type]
    await pub.start()
    sub = SubscriberClient(b.http, "r2", "bob")  # type: ignore[arg-type]
    await sub.start()
    start = len(fake_django.events)
    await relay(a, b, "r2")  # relaying starts after the publication: existing tracks are described at once
    offer = await fake_django.wait_for(offer_for("bob", lambda tracks: len(tracks) == 1), start=start)
    await sub.answer(offer)
    await recv_frames(sub.track("alice", "microphone"), 3)

    start = len(fake_django.events)
    async with a.http.delete("/v1/rooms/r2/relays/B", headers=AUTH) as resp:
        assert resp.status == 204
    await fake_django.wait_for(offer_for("bob", lambda tracks: tracks == []), start=start)
    async with b.http.get("/v1/rooms/r2/relays", headers=AUTH) as resp:
        assert (await resp.json())["origins"] == []
    async with a.http.delete("/v1/rooms/r2/relays/B", headers=AUTH) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "relay_not_found"
    await asyncio.gather(pub.close(), sub.close())


async def test_relay_requests_are_validated(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("post", "/v1/rooms/r3/relays", {"node": "B"}, "bad_request"),
        ("post", "/v1/rooms/r3/relays", {"node": "B", "url": "ftp://x"}, "bad_request"),
        ("post", "/v1/rooms/r3/relays", {"node": "A", "url": a.url}, "bad_request"),
        ("post", "/v1/rooms/r3/relays", {"protocol": 2, "node": "B", "url": b.url}, "protocol_mismatch"),
        ("put", "/v1/rooms/r3/remote/A", {"feedback": "nope", "tracks": []}, "bad_request"),
        (
            "put",
            "/v1/rooms/r3/remote/A",
            {"feedback": "127.0.0.1:9", "tracks": [{"participant": "x", "pc": "camera", "kind": "video"}]},
            "bad_request",
        ),
        ("delete", "/v1/rooms/r3/remote/Z", {}, "relay_not_found"),  # r3 exists (the self-relay created it)
        ("delete", "/v1/rooms/nowhere/remote/Z", {}, "room_not_found"),
    ]
    for method, path, body, code in cases:
        async with a.http.request(method, path, json=body, headers=AUTH) as resp:
            payload = await resp.json()
            assert payload["error"]["code"] == code, (path, body, payload)
    async with a.http.post("/v1/rooms/r3/relays", json={"node": "B", "url": b.url}) as resp:
        assert resp.status == 401  # the shared secret is required, as on every control route
