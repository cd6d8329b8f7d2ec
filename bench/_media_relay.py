"""Baseline: aiortc MediaRelay (decode + re-encode per subscriber) for 720p VP8.

Runs in its own process (started by bench/sfu_forward.py) and prints one JSON
line. The publisher sends a pre-encoded 720p VP8 loop (no encoding on the
client); subscribers do not decode (hooked receivers count packets). Almost
all CPU of this process is therefore the relay's decode + encode.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import time

import _media_common as common
import av
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from media_server import aiortc_hooks

FPS = 30


def encode_loop(seconds: float, width: int = 1280, height: int = 720, bit_rate: int = 1_200_000) -> list[bytes]:
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.bit_rate = bit_rate
    ctx.framerate = fractions.Fraction(FPS, 1)
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    ctx.gop_size = 10_000
    packets = []
    for i in range(int(seconds * FPS)):
        frame = av.VideoFrame(width, height, "yuv420p")
        row = bytes((x + i * 4) % 256 for x in range(width))
        frame.planes[0].update(row * height)
        frame.planes[1].update(bytes([(i * 2) % 256]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets


class PacketTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self.packets = packets
        self.i = 0
        self.start = time.monotonic()

    async def recv(self) -> av.Packet:
        wait = self.start + self.i / FPS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        data = self.packets[self.i % len(self.packets)]
        packet = av.Packet(data)
        packet.pts = self.i
        packet.time_base = fractions.Fraction(1, FPS)
        self.i += 1
        return packet


def pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def main(seconds: float, subscribers: int) -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    loop_packets = encode_loop(2.0)
    publisher, server_in = pc(), pc()
    publisher.addTransceiver(PacketTrack(loop_packets), direction="sendonly")
    incoming: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    server_in.on("track", lambda t: incoming.done() or incoming.set_result(t))
    await connect(publisher, server_in)
    track = await incoming
    relay = MediaRelay()
    received = [0]
    pairs = []
    for _ in range(subscribers):
        server_out, client = pc(), pc()
        server_out.addTransceiver(relay.subscribe(track), direction="sendonly")
        await server_out.setLocalDescription(await server_out.createOffer())
        await client.setRemoteDescription(server_out.localDescription)
        for t in client.getTransceivers():
            aiortc_hooks.ForwardingReceiver(t.receiver, t.kind, lambda p, c: received.__setitem__(0, received[0] + 1))
        await client.setLocalDescription(await client.createAnswer())
        await server_out.setRemoteDescription(client.localDescription)
        pairs.append((server_out, client))
    await asyncio.sleep(3)
    pid = os.getpid()
    c0, r0, t0 = common.cpu_seconds(pid), received[0], time.monotonic()
    rss = []
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(1)
        rss.append(round(common.rss_mb(pid), 1))
    c1, r1, t1 = common.cpu_seconds(pid), received[0], time.monotonic()
    print(
        json.dumps({"cpu_s": c1 - c0, "packets": r1 - r0, "wall_s": t1 - t0, "subscribers": subscribers, "rss_mb": rss})
    )
    for a, b in pairs:
        await asyncio.gather(a.close(), b.close())
    await asyncio.gather(publisher.close(), server_in.close())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--subscribers", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.subscribers))
