"""Benchmark: media_server packet forwarding vs aiortc MediaRelay, in one run.

    .venv/bin/python bench/sfu_forward.py [--seconds 20] [--publishers 2] [--subscribers 8]
    .venv/bin/python bench/sfu_forward.py --soak 600     # joins/leaves, RSS sampled

The SFU runs as a real ``python -m media_server`` subprocess on 127.0.0.1; its
CPU time (utime+stime from /proc) is divided by the packets it forwarded
(``/v1/health``). Publishers send synthetic 720p-sized RTP (1100-byte VP8-like
video packets at 130/s + 120-byte audio at 50/s, ~1.2 Mbit/s A+V) straight
through SRTP, so clients do no codec work; subscribers count packets with
non-decoding receivers and compute latency from a send timestamp in the
payload (CLOCK_MONOTONIC is shared by processes on one machine). The
MediaRelay baseline runs in bench/_media_relay.py (real 720p VP8 loop, decode
+ re-encode per subscriber).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from typing import Any

import _media_common as common
import aiohttp
from aiohttp import web
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media_server import aiortc_hooks

SECRET = "bench-secret"  # noqa: S105 (loopback-only benchmark)
AUTH = {"Authorization": f"Bearer {SECRET}"}
VIDEO_PPS, VIDEO_SIZE = 130, 1100
AUDIO_PPS, AUDIO_SIZE = 50, 120
STAMP = struct.Struct("!2sQ")


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class Publisher:
    def __init__(self, http: aiohttp.ClientSession, base: str, room: str, name: str) -> None:
        self.http, self.base, self.room, self.name = http, base, room, name
        self.pc = new_pc()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for kind in ("audio", "video"):
            self.pc.addTransceiver(aiortc_hooks.IdleTrack(kind), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with self.http.post(
            f"{self.base}/v1/rooms/{self.room}/participants/{self.name}/publish",
            json={"protocol": 1, "pc": "camera", "sdp": self.pc.localDescription.sdp},
            headers=AUTH,
        ) as resp:
            body = await resp.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        while self.pc.connectionState != "connected":
            await asyncio.sleep(0.05)
        self.task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        streams = []
        for t in self.pc.getTransceivers():
            pt = t.sender._RTCRtpSender__rtp_header_extensions_map and None
            codecs = [c for c in t._codecs if not c.mimeType.endswith("/rtx")]
            pps, size = (VIDEO_PPS, VIDEO_SIZE) if t.kind == "video" else (AUDIO_PPS, AUDIO_SIZE)
            clock = 90000 if t.kind == "video" else 48000
            streams.append(
                [
                    t.sender._ssrc,
                    codecs[0].payloadType,
                    pps,
                    size,
                    clock,
                    aiortc_hooks.make_raw_sender(t.sender.transport),
                    0,
                ]
            )
        start = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            elapsed = time.monotonic() - start
            for s in streams:
                ssrc, pt, pps, size, clock, send, n = s
                while n < elapsed * pps:
                    payload = STAMP.pack(b"\x10\x00", time.monotonic_ns()).ljust(size, b"\x00")
                    send(
                        struct.pack("!BBHII", 0x80, 0x80 | pt, n & 0xFFFF, int(n * clock / pps) & 0xFFFFFFFF, ssrc)
                        + payload
                    )
                    n += 1
                s[6] = n

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
        await self.pc.close()


class Subscriber:
    def __init__(
        self, http: aiohttp.ClientSession, base: str, room: str, name: str, latencies: list[float], counter: list[int]
    ) -> None:
        self.http, self.base, self.room, self.name = http, base, room, name
        self.pc = new_pc()
        self.latencies, self.counter = latencies, counter
        self.hooked: set[int] = set()

    def _on_rtp(self, packet: Any, codec: Any) -> None:
        self.counter[0] += 1
        if len(packet.payload) >= 10 and packet.payload[:2] == b"\x10\x00":
            sent = STAMP.unpack_from(packet.payload)[1]
            self.latencies.append((time.monotonic_ns() - sent) / 1e6)

    async def answer(self, offer: dict[str, Any]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        for t in self.pc.getTransceivers():
            if id(t.receiver) not in self.hooked:
                self.hooked.add(id(t.receiver))
                aiortc_hooks.ForwardingReceiver(t.receiver, t.kind, self._on_rtp)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        async with self.http.post(
            f"{self.base}/v1/rooms/{self.room}/participants/{self.name}/subscribe/answer",
            json={"protocol": 1, "sdp": self.pc.localDescription.sdp, "revision": offer["revision"]},
            headers=AUTH,
        ) as resp:
            assert resp.status == 204, await resp.text()

    async def start(self) -> None:
        async with self.http.post(
            f"{self.base}/v1/rooms/{self.room}/participants/{self.name}/subscribe", json={"protocol": 1}, headers=AUTH
        ) as resp:
            await self.answer(await resp.json())

    async def leave(self) -> None:
        async with self.http.delete(f"{self.base}/v1/rooms/{self.room}/participants/{self.name}", headers=AUTH):
            pass
        await self.pc.close()


async def run_sfu(args: argparse.Namespace) -> dict[str, Any]:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    subscribers: dict[str, Subscriber] = {}
    answering: set[asyncio.Task[None]] = set()

    async def events(request: web.Request) -> web.Response:
        body = await request.json()
        for e in body["events"]:
            if e["type"] == "subscribe_offer" and e["participant"] in subscribers:
                task = asyncio.create_task(subscribers[e["participant"]].answer(e))
                answering.add(task)
                task.add_done_callback(answering.discard)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    events_port, control_port = common.free_port(), common.free_port()
    await web.TCPSite(runner, "127.0.0.1", events_port).start()
    env = {
        **os.environ,
        "MEDIA_SECRET": SECRET,
        "MEDIA_CONTROL_PORT": str(control_port),
        "MEDIA_EVENTS_URL": f"http://127.0.0.1:{events_port}/events",
        "MEDIA_ICE_ADDRESSES": "127.0.0.1",
    }
    proc = subprocess.Popen([sys.executable, "-m", "media_server"], cwd=common.ROOT, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{control_port}"
    latencies: list[float] = []
    counter = [0]
    result: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(base + "/v1/health", headers=AUTH) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

            async def forwarded() -> int:
                async with http.get(base + "/v1/health", headers=AUTH) as r:
                    return int((await r.json())["forwarded_packets"])

            publishers = [Publisher(http, base, "bench", f"pub{i}") for i in range(args.publishers)]
            for p in publishers:
                await p.start()
            for i in range(args.subscribers):
                s = subscribers[f"sub{i}"] = Subscriber(http, base, "bench", f"sub{i}", latencies, counter)
                await s.start()
            await asyncio.sleep(3)
            latencies.clear()
            c0, f0, t0 = common.cpu_seconds(proc.pid), await forwarded(), time.monotonic()
            rss: list[tuple[float, float]] = []
            duration = args.soak or args.seconds
            next_churn = 5.0
            joined = args.subscribers
            while (elapsed := time.monotonic() - t0) < duration:
                await asyncio.sleep(1)
                if args.soak and elapsed >= next_churn:
                    next_churn += 5.0
                    victim = next(iter(subscribers))
                    await subscribers.pop(victim).leave()
                    name = f"sub{joined}"
                    joined += 1
                    subscribers[name] = Subscriber(http, base, "bench", name, latencies, counter)
                    await subscribers[name].start()
                if not rss or elapsed - rss[-1][0] >= (10 if args.soak else 1):
                    rss.append((round(elapsed, 1), round(common.rss_mb(proc.pid), 1)))
                if len(latencies) > 200_000:
                    del latencies[:100_000]
            c1, f1, t1 = common.cpu_seconds(proc.pid), await forwarded(), time.monotonic()
            result = {
                "cpu_s": c1 - c0,
                "packets": f1 - f0,
                "wall_s": t1 - t0,
                "latency_ms": latencies[:],
                "rss_mb": rss,
                "joined": joined,
            }
            for s in list(subscribers.values()):
                await s.leave()
            for p in publishers:
                await p.close()
    finally:
        proc.terminate()
        proc.wait(10)
        await runner.cleanup()
    return result


def run_relay(args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            str(common.ROOT / "bench" / "_media_relay.py"),
            "--seconds",
            str(args.seconds),
            "--subscribers",
            str(args.relay_subscribers),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=args.seconds + 120,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--relay-subscribers", type=int, default=2)
    parser.add_argument("--soak", type=float, default=0, help="soak for N seconds with a join+leave every 5 s")
    parser.add_argument("--skip-relay", action="store_true")
    args = parser.parse_args()
    stream_pps = VIDEO_PPS + AUDIO_PPS
    sfu = asyncio.run(run_sfu(args))
    us = sfu["cpu_s"] * 1e6 / max(1, sfu["packets"])
    lat = sfu["latency_ms"]
    print(f"machine: nproc={os.cpu_count()}  python={sys.version.split()[0]}")
    print(
        f"SFU: {args.publishers} publishers x {args.subscribers} subscribers, {sfu['wall_s']:.0f} s, {sfu['packets']} packets forwarded "
        f"({sfu['packets'] / sfu['wall_s']:.0f}/s), SFU CPU {sfu['cpu_s']:.2f} s"
    )
    print(f"  CPU per forwarded packet : {us:.1f} us")
    print(f"  forwarded A+V streams/core (1.2 Mbit/s, {stream_pps} pkt/s): {1e6 / (us * stream_pps):.0f}")
    print(
        f"  latency publisher->subscriber p50/p99: {common.median(lat):.2f} / {common.percentile(lat, 0.99):.2f} ms (n={len(lat)})"
    )
    print(f"  SFU RSS MB over time (s, MB): {sfu['rss_mb']}")
    if args.soak:
        print(f"  soak: {sfu['joined']} subscribers joined in total (one join + one leave every 5 s)")
    if not args.skip_relay and not args.soak:
        relay = run_relay(args)
        rus = relay["cpu_s"] * 1e6 / max(1, relay["packets"])
        per_stream_core = relay["cpu_s"] / relay["wall_s"] / relay["subscribers"]
        print(
            f"MediaRelay baseline: {relay['subscribers']} subscribers of a 720p VP8 stream, {relay['wall_s']:.0f} s, {relay['packets']} packets, CPU {relay['cpu_s']:.2f} s"
        )
        print(f"  CPU per forwarded packet : {rus:.0f} us")
        print(
            f"  720p streams/core         : {1 / per_stream_core:.1f}  (CPU per subscriber: {per_stream_core:.2f} core)"
        )
        print(f"  RSS MB (1 s samples)      : {relay['rss_mb']}")
        print(f"RATIO: SFU is {rus / us:.0f}x cheaper per forwarded packet than MediaRelay")


if __name__ == "__main__":
    main()
