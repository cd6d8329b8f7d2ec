"""Event POSTs per join from the media server's event sink, with and without its batching window, in one process.

    .venv/bin/python bench/media_event_posts.py [--joins 10] [--rounds 3] [--linger-ms 0 50]

Runs the media server in process (``MediaService`` and its control API on
127.0.0.1, the hooks ``python -m media_server`` installs) with a stand-in for
Django's event endpoint that counts POSTs and events. Each join is a fresh room
with one participant already publishing and subscribed; a second one then
publishes (camera + microphone) and subscribes, the way call.js does, until
both its connections are connected and the events have settled (1 s). For
each ``--linger-ms`` (alternating, ``--rounds`` times) prints the POSTs and
events per join and how long the events waited in the sink (queued → POST
start; ``subscribe_offer`` apart, which never waits for the window). Every
POST costs daphne CPU whatever it carries: ``bench/web_join_steps.py`` measures
four events in four POSTs against the same four in one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from aiortc import (  # noqa: E402
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack  # noqa: E402

from media_server import aiortc_hooks  # noqa: E402
from media_server.config import Config  # noqa: E402
from media_server.control import create_app  # noqa: E402
from media_server.events import EventSink  # noqa: E402
from media_server.service import MediaService  # noqa: E402

SECRET = "posts-bench-secret"  # noqa: S105 (in-process, loopback only)
AUTH = {"Authorization": f"Bearer {SECRET}"}
SETTLE = 1.0


class Endpoint:
    """Django's event endpoint, reduced to counting (and 204)."""

    def __init__(self) -> None:
        self.posts = 0
        self.events: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/internal/media/v1/events", self.handle)
        # (room, participant) → subscribe connection: a pushed offer is answered at once, as a client would
        self.subscribers: dict[tuple[str, str], tuple[TestClient, RTCPeerConnection]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        batch = (await request.json())["events"]
        self.events.extend(batch)
        for event in batch:
            target = self.subscribers.get((event["room"], event.get("participant", "")))
            if event["type"] == "subscribe_offer" and target is not None:
                task = asyncio.create_task(answer(target[0], target[1], event["room"], event["participant"], event))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return web.Response(status=204)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def publish(http: TestClient, room: str, who: str) -> RTCPeerConnection:
    pc = new_pc()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    body = {"protocol": 1, "pc": "camera", "sdp": pc.localDescription.sdp}
    resp = await http.post(f"/v1/rooms/{room}/participants/{who}/publish", json=body, headers=AUTH)
    answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return pc


async def answer(http: TestClient, pc: RTCPeerConnection, room: str, who: str, offer: dict[str, Any]) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    body = {"protocol": 1, "sdp": pc.localDescription.sdp, "revision": offer["revision"]}
    resp = await http.post(f"/v1/rooms/{room}/participants/{who}/subscribe/answer", json=body, headers=AUTH)
    assert resp.status == 204, await resp.text()


async def subscribe(http: TestClient, room: str, who: str, endpoint: Endpoint) -> RTCPeerConnection:
    pc = new_pc()
    endpoint.subscribers[(room, who)] = (http, pc)
    resp = await http.post(f"/v1/rooms/{room}/participants/{who}/subscribe", json={"protocol": 1}, headers=AUTH)
    offer = await resp.json()
    if offer["sdp"] is not None:
        await answer(http, pc, room, who, offer)
    return pc


class Run:
    def __init__(self, endpoint: Endpoint, url: str, linger: float) -> None:
        self.endpoint, self.url, self.linger = endpoint, url, linger
        self.waits: list[float] = []

    async def joins(self, count: int, first_room: int) -> tuple[int, int]:
        """``count`` joins; returns (POSTs, events) over them."""
        config = Config(secret=SECRET, node_id="bench", events_url=self.url, ice_addresses=("127.0.0.1",))
        sink = EventSink(url=config.events_url, secret=config.secret, node_id=config.node_id, linger=self.linger)
        queued: dict[int, float] = {}
        real_emit, real_post = sink.emit, sink._post_once

        def emit(event: dict[str, Any]) -> None:
            if event.get("type") != "subscribe_offer":
                queued[id(event)] = time.monotonic()
                event["_bench_id"] = id(event)
            real_emit(event)

        async def post_once(batch: list[str]) -> bool:
            now = time.monotonic()
            for encoded in batch:
                marker = encoded.rsplit('"_bench_id": ', 1)
                if len(marker) == 2:
                    started = queued.pop(int(marker[1].rstrip("}")), None)
                    if started is not None:
                        self.waits.append((now - started) * 1000)
            return await real_post(batch)

        sink.emit = emit  # type: ignore[method-assign]
        sink._post_once = post_once  # type: ignore[method-assign]
        sink.start()
        service = MediaService(config, sink)
        http = TestClient(TestServer(create_app(service, SECRET, accept_bearer=True), host="127.0.0.1"))
        await http.start_server()
        pcs: list[RTCPeerConnection] = []
        posts = events = 0
        try:
            for n in range(count):
                room = f"r{first_room + n}"
                pcs += [await publish(http, room, "alice"), await subscribe(http, room, "alice", self.endpoint)]
                await asyncio.sleep(SETTLE)
                p0, e0 = self.endpoint.posts, len(self.endpoint.events)
                pcs += await asyncio.gather(publish(http, room, "bob"), subscribe(http, room, "bob", self.endpoint))
                await asyncio.sleep(SETTLE)
                posts += self.endpoint.posts - p0
                events += len(self.endpoint.events) - e0
                self.endpoint.subscribers = {k: v for k, v in self.endpoint.subscribers.items() if k[0] != room}
                for pc in pcs:  # this join's: the next one starts from a quiet process
                    await pc.close()
                pcs.clear()
                await http.delete(f"/v1/rooms/{room}", headers=AUTH)
        finally:
            for pc in pcs:
                await pc.close()
            await http.close()
            await service.close()
            await sink.close()
        return posts, events


async def main(joins: int, rounds: int, lingers: list[float]) -> None:
    logging.basicConfig(level=logging.ERROR)
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_shared_certificate()
    aiortc_hooks.set_sdp_reuse()
    endpoint = Endpoint()
    server = TestServer(endpoint.app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/internal/media/v1/events"))
    runs = {linger: Run(endpoint, url, linger / 1000) for linger in lingers}
    per_join: dict[float, list[tuple[float, float]]] = {linger: [] for linger in lingers}
    room = 0
    for _ in range(rounds):
        for linger, run in runs.items():
            posted, emitted = await run.joins(joins, room)
            room += joins
            per_join[linger].append((posted / joins, emitted / joins))
    await server.close()
    print(f"media-server event POSTs per join ({rounds} alternating rounds of {joins} joins into rooms of 2):")
    for linger in lingers:
        waits = sorted(runs[linger].waits)
        rounds_text = ", ".join(f"{p:.1f}" for p, _ in per_join[linger])
        events = statistics.median(e for _, e in per_join[linger])
        p50 = waits[len(waits) // 2] if waits else float("nan")
        top = waits[-1] if waits else float("nan")
        print(
            f"  linger {linger:4.0f} ms: POSTs per join {rounds_text} (rounds); events per join {events:.1f}; "
            f"wait in the sink p50 {p50:.1f} ms, max {top:.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--linger-ms", type=float, nargs="+", default=[0.0, 50.0])
    args = parser.parse_args()
    asyncio.run(main(args.joins, args.rounds, args.linger_ms))
