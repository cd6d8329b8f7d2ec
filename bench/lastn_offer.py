"""What one subscribe connection costs the SFU as a room grows: CPU of the offer and of a re-offer, SDP size.

    .venv/bin/python bench/lastn_offer.py [--chromium] [K ...]   # K: other participants (default 5 20 50 99)

For each K, a Subscriber (media_server/participant.py) is offered the m-lines
of K other participants (each publishing a microphone and a camera):

* ``all``: one m-line per published track (as when last-N only pauses videos);
* ``pooled-v``: K audio m-lines, at most 6 video ones (last-N's default for a
  large room, re-mapped on speaker changes: above MEDIA_MAX_VIDEO_MLINES);
* ``pooled-av``: at most 6 audio m-lines too (MEDIA_MAX_AUDIO_MLINES, the
  default pool re-mapped to whoever is heard): the SDP no longer grows with K,
  and a join changes no existing subscriber's m-lines (no re-offer at all).

It is answered by an in-process aiortc client, then (``all``/``pooled-v``)
re-offered once with one more participant (what every subscriber pays when
someone joins). ``--chromium`` also has Chromium (/usr/bin/chromium, via
Playwright; SDP only: createAnswer, no ICE gathering) answer each join offer
and prints that answer's size (run it under ``flock /tmp/heavy.lock``).
``--reoffer`` prints the SFU side's thread CPU of the join offer + answer and of
the re-offer + answer (median of 15), with every join hook python -m media_server
installs (compare trees by running it in each). ``--join-hooks`` instead compares,
alternately in one process, the SFU side
of a join's subscribe offer + answer (``all``) with and without the hooks
python -m media_server installs for issue 19 (one DTLS certificate per
process, each SDP parsed once: ``aiortc_hooks.set_shared_certificate`` and
``set_sdp_reuse``); median of 7 rounds each.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media_server import aiortc_hooks
from media_server.config import Config
from media_server.forwarder import Forwarder
from media_server.participant import PublishedTrack, Subscriber


def tracks(n: int, start: int = 0, video: int | None = None, audio: int | None = None) -> list[PublishedTrack]:
    """The tracks of participants ``start``…: a microphone for the first ``audio``, a camera for the first ``video``."""
    out = []
    for i in range(start, start + n):
        pairs = []
        if audio is None or i < audio:
            pairs.append(("audio", "microphone"))
        if video is None or i < video:
            pairs.append(("video", "camera"))
        for kind, source in pairs:
            forwarder = Forwarder(kind=kind, request_keyframe=lambda: None)
            out.append(PublishedTrack(f"p{i}", "camera", kind, source, forwarder, None))  # type: ignore[arg-type]
    return out


async def measure(k: int, video: int | None = None, audio: int | None = None, chromium: Any = None) -> dict[str, float]:
    config = Config(secret="bench-secret", ice_addresses=("127.0.0.1",))  # noqa: S106 - not a real secret
    sub = Subscriber(participant="me", config=config)
    client = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    desired = tracks(k, video=video, audio=audio)
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
        if chromium is not None and label == "join":
            result["chromium_answer_kb"] = await chromium(sdp) / 1024
        t0 = time.process_time()
        await sub.apply_answer(client.localDescription.sdp, revision)
        result[f"{label}_answer_ms"] = (time.process_time() - t0) * 1000

    await round_trip("join")
    if audio is None:  # with pooled audio and video a join changes none of the m-lines: no re-offer
        desired = desired + tracks(1, start=k, video=video)
        await round_trip("reoffer")
    await sub.close()
    await client.close()
    return result


CHROMIUM_ANSWER = """async (sdp) => {
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
  await pc.setRemoteDescription({type: "offer", sdp});
  const answer = await pc.createAnswer();
  pc.close();
  return answer.sdp.length;
}"""


async def main(ks: list[int], with_chromium: bool) -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    await measure(2)  # warm up (imports, first-time initialisation)
    chromium = None
    playwright = None
    if with_chromium:
        from playwright.async_api import async_playwright

        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = await browser.new_page()
        await page.set_content("<html></html>")

        async def chromium(sdp: str) -> int:
            return int(await page.evaluate(CHROMIUM_ANSWER, sdp))

    print(
        "m-lines   K   join: offer  answer  client  offer KB  answer KB  chromium KB"
        " | re-offer (+1): offer  answer  client"
    )
    for mode, video, audio in (("all", None, None), ("pooled-v", 6, None), ("pooled-av", 6, 6)):
        for k in ks:
            r = await measure(k, video, audio, chromium)
            reoffer = (
                f"{r['reoffer_offer_ms']:19.1f} {r['reoffer_answer_ms']:7.1f} {r['reoffer_client_ms']:7.1f}"
                if "reoffer_offer_ms" in r
                else f"{'none (pool unchanged)':>35}"
            )
            print(
                f"{mode:<9} {k:<3} {r['join_offer_ms']:11.1f} {r['join_answer_ms']:7.1f} {r['join_client_ms']:7.1f}"
                f" {r['join_sdp_kb']:9.1f} {r['join_answer_kb']:10.1f} {r.get('chromium_answer_kb', 0):12.1f}"
                f" | {reoffer}"
            )
    if playwright is not None:
        await playwright.stop()


def set_join_hooks(enabled: bool) -> None:
    aiortc_hooks.set_shared_certificate(enabled)
    aiortc_hooks.set_sdp_reuse(enabled)


async def compare_join_hooks(ks: list[int], rounds: int = 7) -> None:
    """Subscribe offer + answer CPU (SFU side) without / with the issue-19 hooks, alternating."""
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    await measure(2)
    print("K   SFU offer+answer ms: aiortc as is   with the join hooks   (median of", rounds, "each)")
    for k in ks:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for enabled in (False, True):
                set_join_hooks(enabled)
                r = await measure(k)
                times[enabled].append(r["join_offer_ms"] + r["join_answer_ms"])
        set_join_hooks(False)
        off, on = (sorted(times[e])[rounds // 2] for e in (False, True))
        print(f"{k:<3} {off:34.2f} {on:21.2f}")


async def reoffer_cycle(ks: list[int], rounds: int = 15) -> None:
    """SFU CPU (process time) of one subscriber's join offer + answer and of its re-offer + answer when one more
    participant joins, with every hook ``python -m media_server`` installs for joins; median of ``rounds``."""
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_lazy_bitrate_estimators()
    aiortc_hooks.set_fast_codec_copies()
    set_join_hooks(True)
    await measure(2)
    print(f"K   SFU ms (process CPU, median of {rounds}): join offer  answer | re-offer (+1) offer  answer  total")
    for k in ks:
        runs = [await measure(k) for _ in range(rounds)]

        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return sorted(r[key] for r in runs)[rounds // 2]

        reoffer = median("reoffer_offer_ms") + median("reoffer_answer_ms")
        print(
            f"{k:<3} {median('join_offer_ms'):43.2f} {median('join_answer_ms'):7.2f} |"
            f" {median('reoffer_offer_ms'):19.2f} {median('reoffer_answer_ms'):7.2f} {reoffer:6.2f}"
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--chromium", "--join-hooks", "--reoffer")]
    ks = [int(a) for a in args] or [5, 20, 50, 99]
    if "--join-hooks" in sys.argv[1:]:
        asyncio.run(compare_join_hooks(ks))
    elif "--reoffer" in sys.argv[1:]:
        asyncio.run(reoffer_cycle(ks))
    else:
        asyncio.run(main(ks, "--chromium" in sys.argv[1:]))
