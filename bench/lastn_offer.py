"""What one subscribe connection costs the SFU as a room grows: CPU of the offer and of a re-offer, SDP size.

    .venv/bin/python bench/lastn_offer.py [K ...]     # K: other participants (default 5 20 50 99)

For each K, a Subscriber (media_server/participant.py) is offered K audio
tracks and either K video tracks (``all``: one m-line per published track,
as when last-N only pauses videos) or at most 6 (``pooled``: last-N's
default for a large room, the m-lines re-mapped on speaker changes),
answered by an in-process aiortc client, then re-offered once with one more
participant (what every subscriber pays when someone joins).
Prints process CPU ms (time.process_time) of the SFU side of each step
(offer = createOffer + setLocalDescription; answer = setRemoteDescription +
forwarding setup) and the offer size. The answering client's own cost is
measured separately (``client``): a browser's is of the same order or higher.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media_server import aiortc_hooks
from media_server.config import Config
from media_server.forwarder import Forwarder
from media_server.participant import PublishedTrack, Subscriber


def tracks(n: int, start: int = 0, video: int | None = None) -> list[PublishedTrack]:
    out = []
    for i in range(start, start + n):
        pairs = (
            (("audio", "microphone"), ("video", "camera")) if video is None or i < video else (("audio", "microphone"),)
        )
        for kind, source in pairs:
            forwarder = Forwarder(kind=kind, request_keyframe=lambda: None)
            out.append(PublishedTrack(f"p{i}", "camera", kind, source, forwarder, None))  # type: ignore[arg-type]
    return out


async def measure(k: int, video: int | None = None) -> dict[str, float]:
    config = Config(secret="bench-secret", ice_addresses=("127.0.0.1",))  # noqa: S106 - not a real secret
    sub = Subscriber(participant="me", config=config)
    client = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    desired = tracks(k, video=video)
    result: dict[str, float] = {}

    async def round_trip(label: str) -> None:
        t0 = time.process_time()
        sdp, revision, _ = await sub.offer(desired)
        result[f"{label}_offer_ms"] = (time.process_time() - t0) * 1000
        result[f"{label}_sdp_kb"] = len(sdp) / 1024
        t0 = time.process_time()
        await client.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await client.setLocalDescription(await client.createAnswer())
        result[f"{label}_client_ms"] = (time.process_time() - t0) * 1000
        result[f"{label}_answer_kb"] = len(client.localDescription.sdp) / 1024
        t0 = time.process_time()
        await sub.apply_answer(client.localDescription.sdp, revision)
        result[f"{label}_answer_ms"] = (time.process_time() - t0) * 1000

    await round_trip("join")
    desired = desired + tracks(1, start=k, video=video)
    await round_trip("reoffer")
    await sub.close()
    await client.close()
    return result


async def main(ks: list[int]) -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    await measure(2)  # warm up (imports, first-time initialisation)
    print("m-lines  K   join: offer  answer  client  offer KB  answer KB | re-offer (+1): offer  answer  client")
    for mode, video in (("all", None), ("pooled", 6)):
        for k in ks:
            r = await measure(k, video)
            print(
                f"{mode:<8} {k:<3} {r['join_offer_ms']:11.1f} {r['join_answer_ms']:7.1f} {r['join_client_ms']:7.1f}"
                f" {r['join_sdp_kb']:9.1f} {r['join_answer_kb']:10.1f} | {r['reoffer_offer_ms']:19.1f} {r['reoffer_answer_ms']:7.1f}"
                f" {r['reoffer_client_ms']:7.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [5, 20, 50, 99]))
