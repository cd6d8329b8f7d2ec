"""Client worker process for bench/sfu_forward.py (loopback only).

One process runs either the publishers or a group of subscribers, so the
SFU, the publishers and each subscriber group have their own event loop and
a stall in one does not show up as latency of another. The orchestrator
drives a worker over a tiny HTTP API on 127.0.0.1:

* ``POST /join {"name"}``: start a publisher / subscriber with that participant id
* ``POST /leave {"name"}``: leave the room (DELETE participant) and close
* ``POST /offer <subscribe_offer event>``: answer a renegotiation offer
* ``GET /stats?reset=1``: latency histogram + packet/loss counters since the last reset

Publishers embed CLOCK_MONOTONIC (``time.monotonic_ns``, shared by all
processes on one machine) in every payload right before SRTP-protect +
``sendto``; subscribers take the difference on receipt (after their own
SRTP unprotect and parse). The figure is therefore publisher send →
subscriber receive, an upper bound of the SFU hop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import time
from typing import Any

import _media_common as common
import aiohttp
from aiohttp import web
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from media_server import aiortc_hooks
from media_server.sdp import TRANSPORT_CC_URI, negotiated_by_mid, parse_sdp
from media_server.twcc import build_feedback

VIDEO_PPS, VIDEO_SIZE = 130, 1100
AUDIO_PPS, AUDIO_SIZE = 50, 120
STAMP = struct.Struct("!2sQ")
MAGIC = b"\x10\x00"  # also a VP8 payload descriptor with S=1 (every packet looks like a keyframe start)
VP8_PICTURES = struct.Struct("!BBHB")
"""--vp8-pictures: a VP8 descriptor with X, S, a 15-bit picture ID and TL0PICIDX in front of the stamp (which
then also starts the VP8 payload header: every packet still looks like a keyframe start)."""


def send_time_ns(payload: bytes) -> int | None:
    """The publisher's send time stamped in a bench payload (either layout), or None."""
    if payload[:2] == MAGIC and len(payload) >= STAMP.size:
        return int(STAMP.unpack_from(payload)[1])
    if payload[:2] == b"\x90\xc0" and payload[5:7] == MAGIC and len(payload) >= VP8_PICTURES.size + STAMP.size:
        return int(STAMP.unpack_from(payload, VP8_PICTURES.size)[1])
    return None


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class Histogram:
    """Latency histogram: 10 µs bins below 100 ms, 1 ms bins up to 60 s."""

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}

    def add(self, ms: float) -> None:
        key = int(ms * 100) if ms < 100 else 10_000 + int(ms - 100)
        self.bins[key] = self.bins.get(key, 0) + 1

    @staticmethod
    def value(key: int) -> float:
        return key / 100 if key < 10_000 else 100 + (key - 10_000)


class PublisherClient:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        room: str,
        name: str,
        auth: dict[str, str],
        vp8_pictures: bool = False,
    ) -> None:
        self.http, self.base, self.room, self.name, self.auth = http, base, room, name, auth
        self.vp8_pictures = vp8_pictures
        self.pc = new_pc()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for kind in ("audio", "video"):
            self.pc.addTransceiver(aiortc_hooks.IdleTrack(kind), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with self.http.post(
            f"{self.base}/v1/rooms/{self.room}/participants/{self.name}/publish",
            json={"protocol": 1, "pc": "camera", "sdp": self.pc.localDescription.sdp},
            headers=self.auth,
        ) as resp:
            body = await resp.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        negotiated = negotiated_by_mid(parse_sdp(body["sdp"]))
        while self.pc.connectionState != "connected":
            await asyncio.sleep(0.02)
        streams: list[list[Any]] = []
        for t in self.pc.getTransceivers():
            key = "video/vp8" if t.kind == "video" else "audio/opus"
            pps, size, clock = (VIDEO_PPS, VIDEO_SIZE, 90000) if t.kind == "video" else (AUDIO_PPS, AUDIO_SIZE, 48000)
            ssrc, _ = aiortc_hooks.sender_ssrcs(t.sender)
            pt = negotiated[t.mid or ""].pt_by_codec[key]
            streams.append([ssrc, pt, pps, size, clock, aiortc_hooks.make_raw_sender(t.sender.transport), 0])
        self.task = asyncio.create_task(self._send(streams))

    async def _send(self, streams: list[list[Any]]) -> None:
        header = struct.Struct("!BBHII")
        start = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            elapsed = time.monotonic() - start
            for s in streams:
                ssrc, pt, pps, size, clock, send, n = s
                pictures = self.vp8_pictures and clock == 90000
                pad = b"\x00" * (size - STAMP.size - (VP8_PICTURES.size if pictures else 0))
                while n < elapsed * pps:
                    rtp = header.pack(0x80, 0x80 | pt, n & 0xFFFF, int(n * clock / pps) & 0xFFFFFFFF, ssrc)
                    if pictures:
                        rtp += VP8_PICTURES.pack(0x90, 0xC0, 0x8000 | (n & 0x7FFF), n & 0xFF)
                    send(rtp + STAMP.pack(MAGIC, time.monotonic_ns()) + pad)
                    n += 1
                s[6] = n

    async def leave(self) -> None:
        if self.task:
            self.task.cancel()
        await self.pc.close()


def accept_transport_cc(sdp: str, ext_id: int = 5) -> str:
    """The answer as a browser that accepts transport-cc writes it (aiortc's own drops both lines)."""
    out = []
    for line in sdp.split("\r\n"):
        out.append(line)
        if line.startswith("a=mid:"):
            out.append(f"a=extmap:{ext_id} {TRANSPORT_CC_URI}")
        elif line.startswith("a=rtpmap:") and "rtx/" not in line:
            out.append(f"a=rtcp-fb:{line[9:].split()[0]} transport-cc")
    return "\r\n".join(out)


FEEDBACK_INTERVAL = 0.1  # seconds between two transport-cc feedback packets (Chrome: 50-250 ms)


class SubscriberClient:
    def __init__(self, worker: Worker, name: str) -> None:
        self.worker, self.name = worker, name
        self.pc = new_pc()
        self.hooked: set[int] = set()
        self.lock = asyncio.Lock()
        self.arrivals: list[tuple[int, float]] = []  # (transport-wide seq, arrival) since the last feedback
        self.feedback_task: asyncio.Task[None] | None = None

    async def _send_feedback(self) -> None:
        """Report what arrived every FEEDBACK_INTERVAL, as a browser's transport-cc feedback would."""
        dtls = self.pc.getTransceivers()[0].receiver.transport
        count = 0
        while True:
            await asyncio.sleep(FEEDBACK_INTERVAL)
            arrivals, self.arrivals = self.arrivals, []
            if not arrivals:
                continue
            first_seq, first_time = arrivals[0]
            by_offset = {(seq - first_seq) & 0xFFFF: t for seq, t in arrivals if (seq - first_seq) & 0xFFFF < 0x8000}
            reference = int(first_time / 0.064)
            previous = reference * 0.064
            deltas: list[int | None] = []
            for offset in range(max(by_offset) + 1):
                t = by_offset.get(offset)
                if t is None:
                    deltas.append(None)
                    continue
                deltas.append(max(-0x8000, min(0x7FFF, round((t - previous) / 0.00025))))
                previous = t
            packet = build_feedback(
                sender_ssrc=1,
                media_ssrc=0,
                base_seq=first_seq,
                feedback_count=count,
                reference=reference,
                deltas=deltas,
            )
            count += 1
            with contextlib.suppress(ConnectionError):
                await dtls._send_rtp(packet)

    def _on_rtp(self, packet: Any, codec: Any) -> None:
        w = self.worker
        w.received += 1
        tsn = packet.extensions.transport_sequence_number
        if tsn is not None:
            self.arrivals.append((tsn, time.monotonic()))
        sent = send_time_ns(packet.payload)
        if sent is not None:
            w.hist.add((time.monotonic_ns() - sent) / 1e6)

    async def answer(self, offer: dict[str, Any]) -> None:
        w = self.worker
        async with self.lock:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            for t in self.pc.getTransceivers():
                if id(t.receiver) not in self.hooked:
                    self.hooked.add(id(t.receiver))
                    hook = aiortc_hooks.ForwardingReceiver(t.receiver, t.kind, self._on_rtp)
                    # No REMB: aiortc's receive-side estimate stays near the rate it already gets (~1.1 Mbit/s,
                    # one stream) and the SFU's adaptive quality would pause every video beyond the first for
                    # good. This bench measures forwarding; bench/adaptive.py measures adaptation.
                    hook._estimator = None
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            sdp = self.pc.localDescription.sdp
            if w.transport_cc:
                sdp = accept_transport_cc(sdp)
                # aiortc parses the extension only with its ID configured (it negotiated it away)
                dtls = self.pc.getTransceivers()[0].receiver.transport
                dtls._rtp_header_extensions_map.configure(
                    RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=5, uri=TRANSPORT_CC_URI)])
                )
                if self.feedback_task is None:
                    self.feedback_task = asyncio.create_task(self._send_feedback())
            async with w.http.post(
                f"{w.base}/v1/rooms/{w.room}/participants/{self.name}/subscribe/answer",
                json={"protocol": 1, "sdp": sdp, "revision": offer["revision"]},
                headers=w.auth,
            ) as resp:
                if resp.status != 204:
                    w.errors += 1

    async def start(self) -> None:
        w = self.worker
        async with w.http.post(
            f"{w.base}/v1/rooms/{w.room}/participants/{self.name}/subscribe", json={"protocol": 1}, headers=w.auth
        ) as resp:
            offer = await resp.json()
        await self.answer(offer)

    async def leave(self) -> None:
        w = self.worker
        async with w.http.delete(f"{w.base}/v1/rooms/{w.room}/participants/{self.name}", headers=w.auth):
            pass
        if self.feedback_task is not None:
            self.feedback_task.cancel()
        await self.pc.close()


class Worker:
    def __init__(
        self, role: str, base: str, room: str, secret: str, vp8_pictures: bool = False, transport_cc: bool = False
    ) -> None:
        self.role, self.base, self.room = role, base, room
        self.transport_cc = transport_cc
        self.vp8_pictures = vp8_pictures
        self.auth = {"Authorization": f"Bearer {secret}"}
        self.http: aiohttp.ClientSession
        self.clients: dict[str, Any] = {}
        self.hist = Histogram()
        self.received = 0
        self.errors = 0
        self.max_loop_lag_ms = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    async def join(self, request: web.Request) -> web.Response:
        name = (await request.json())["name"]
        client: Any = (
            PublisherClient(self.http, self.base, self.room, name, self.auth, self.vp8_pictures)
            if self.role == "publisher"
            else SubscriberClient(self, name)
        )
        self.clients[name] = client
        await client.start()
        return web.json_response({"ok": True})

    async def leave(self, request: web.Request) -> web.Response:
        name = (await request.json())["name"]
        client = self.clients.pop(name, None)
        if client is not None:
            await client.leave()
        return web.json_response({"ok": True})

    async def offer(self, request: web.Request) -> web.Response:
        event = await request.json()
        client = self.clients.get(event["participant"])
        if isinstance(client, SubscriberClient):
            task = asyncio.create_task(client.answer(event))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return web.Response(status=204)

    async def stats(self, request: web.Request) -> web.Response:
        body = {
            "hist": list(self.hist.bins.items()),
            "received": self.received,
            "errors": self.errors,
            "max_loop_lag_ms": round(self.max_loop_lag_ms, 2),
            "cpu_s": common.cpu_seconds(os.getpid()),
        }
        if request.query.get("reset"):
            self.hist = Histogram()
            self.received = 0
            self.max_loop_lag_ms = 0.0
        return web.json_response(body)

    async def watch_loop(self) -> None:
        """Track this client's own event-loop lag (a stall here inflates its latency figures)."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            self.max_loop_lag_ms = max(self.max_loop_lag_ms, (time.monotonic() - t - 0.01) * 1000)


async def main(args: argparse.Namespace) -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    worker = Worker(args.role, args.base, args.room, args.secret, args.vp8_pictures, args.transport_cc)
    async with aiohttp.ClientSession() as http:
        worker.http = http
        app = web.Application()
        app.router.add_post("/join", worker.join)
        app.router.add_post("/leave", worker.leave)
        app.router.add_post("/offer", worker.offer)
        app.router.add_get("/stats", worker.stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        lag = asyncio.create_task(worker.watch_loop())
        print("ready", flush=True)
        try:
            await asyncio.get_running_loop().run_in_executor(None, input)  # until stdin closes
        except EOFError:
            pass
        lag.cancel()
        for client in list(worker.clients.values()):
            with contextlib.suppress(Exception):  # the SFU may already be gone at shutdown
                await client.leave()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("publisher", "subscriber"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", default="bench")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--vp8-pictures", action="store_true", help="video payloads carry VP8 picture IDs")
    parser.add_argument("--transport-cc", action="store_true", help="subscribers accept transport-cc, send feedback")
    asyncio.run(main(parser.parse_args()))
