"""What a join costs the other subscribers of a 12-20-person room: subscribe re-offers and SFU CPU, before/after.

    .venv/bin/python bench/lastn_joins.py [--rounds 3] [K ...]   # K: participants already in the room (default 12 16 20)

Issue 19: up to MEDIA_MAX_VIDEO_MLINES (16) other videos, every camera had an m-line in every subscribe
connection, so each join re-offered every subscriber. Now (``Room._needs_offer``) a camera gets an m-line
at a subscriber only when that subscriber is shown it (last-N) and it has sent a packet (or is pinned), or
with an offer made anyway. This runs both rules in one process, alternating (``before`` = the rule as it
was: any change of the track set re-offers, a selection change never does), on a ``media_server.room.Room``
whose K participants each publish a camera + microphone without a connection (packets are handed to the
forwarders) and subscribe through an in-process aiortc client that answers every offer. Then one more
participant joins (publish, its own subscribe, its camera's first packet if it is on) and, next, speaks
(its camera is then shown to everyone: what the new rule defers).

Scenarios: ``all-on`` (every camera sends, the newcomer's too), ``6-on/off`` (6 cameras send, as
bench/load.py's ``--video-publishers 6``; the newcomer's camera is off), ``6-on/on`` (6 send; the
newcomer's camera is on, so everyone is shown it at once: re-offered under both rules).

Per step: subscribe offers sent to the K others, and CPU ms of the process minus the clients' own answer
work (createAnswer/setRemoteDescription/setLocalDescription): the SFU's offers, answers, last-N passes, plus
the newcomer's ICE/DTLS on both sides (the same under both rules). And when it speaks, how long after
the speaker change the others' connections forward its camera (first, median, last of the K; 0 = at once,
an m-line was there): with the new rule the SFU's offer pass, each client's answer in this process one
after the other, and the answer applied; a real client's answer comes over the room socket (Django relays
the offer and the answer) and browsers answer in parallel. Median over ``--rounds``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "media_server"))

from room_harness import RoomHarness

from media_server import aiortc_hooks
from media_server.participant import PublishedTrack, Subscriber
from media_server.room import Participant, Room

NEW_RULE = Room._needs_offer


def old_rule(
    self: Room,
    p: Participant,
    subscriber: Subscriber,
    desired: list[PublishedTrack],
    shown: Any,
    *,
    dropping: bool = True,
) -> bool:
    """The rule before issue 19's change: every track set change re-offers; a selection change alone never."""
    return dropping and subscriber.wanted(desired)


class Harness(RoomHarness):
    """The shared room harness, also noting when each subscriber starts forwarding a watched camera."""

    def __init__(self) -> None:
        super().__init__("bench")
        self.watch: PublishedTrack | None = None  # a camera whose forwarding starts are timed (shown_at)
        self.shown_at: dict[str, float] = {}

    async def answer(self, participant: str, sdp: str, revision: int) -> None:
        await super().answer(participant, sdp, revision)
        if self.watch is not None and participant not in self.shown_at:
            subscriber = self.room.participants[participant].subscriber
            if subscriber is not None and any(s.attached is self.watch for s in subscriber.slots):
                self.shown_at[participant] = time.monotonic()


async def measure(k: int, on: int, newcomer_on: bool, new: bool) -> dict[str, float]:
    Room._needs_offer = NEW_RULE if new else old_rule  # type: ignore[method-assign]
    h = Harness()
    for i in range(k):
        await h.publish(f"p{i}")
        await h.subscribe(f"p{i}")
        if i < on:
            h.publications[f"p{i}"].camera_on = True
    h.look_at_cameras()
    await h.settle()
    await asyncio.sleep(0.2)  # the clients' ICE/DTLS of the build settle
    result: dict[str, float] = {}

    async def step(label: str, action: Any) -> None:
        mark, cpu0, client0 = len(h.events), time.process_time(), h.client_cpu
        await action()
        await h.settle()
        offers = [e for e in h.events[mark:] if e["type"] == "subscribe_offer" and e["participant"] != f"p{k}"]
        result[f"{label}_offers"] = len(offers)
        result[f"{label}_ms"] = (time.process_time() - cpu0 - (h.client_cpu - client0)) * 1000

    async def join() -> None:
        newcomer = await h.publish(f"p{k}")
        await h.subscribe(f"p{k}")
        if newcomer_on:
            newcomer.camera_on = True
            newcomer.send_video()
            await h.settle()
        h.look_at_cameras()

    async def speak() -> None:
        h.watch = h.publications[f"p{k}"].tracks[1]
        result["t0"] = time.monotonic()
        h.room._speaker_changed(f"p{k}")
        for q in h.room.participants.values():  # attached at once (an m-line was there): no wait at all
            if q.subscriber is not None and any(s.attached is h.watch for s in q.subscriber.slots):
                h.shown_at[q.id] = result["t0"]

    await step("join", join)
    await step("speak", speak)
    t0 = result.pop("t0")
    waits = sorted((t - t0) * 1000 for p, t in h.shown_at.items() if p != f"p{k}")
    result["shown_first_ms"] = waits[0] if waits else float("nan")
    result["shown_median_ms"] = statistics.median(waits) if waits else float("nan")
    result["shown_last_ms"] = waits[-1] if waits else float("nan")
    await h.close()
    return result


async def main(ks: list[int], rounds: int) -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_shared_certificate()  # as python -m media_server does
    aiortc_hooks.set_sdp_reuse()
    await measure(3, 3, True, True)  # warm up
    print(f"median of {rounds} alternating rounds; offers = subscribe offers to the K others; ms = SFU CPU")
    print(
        "K   scenario   rule    join: offers  ms      then it speaks: offers  ms"
        "   its camera forwarded after ms: first  median  last"
    )
    for k in ks:
        for label, on, newcomer_on in (("all-on", k, True), ("6-on/off", 6, False), ("6-on/on", 6, True)):
            runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            for _ in range(rounds):
                for new in (False, True):
                    runs[new].append(await measure(k, on, newcomer_on, new))
            for new in (False, True):
                med = {key: statistics.median(r[key] for r in runs[new]) for key in runs[new][0]}
                print(
                    f"{k:<3} {label:<10} {'after' if new else 'before':<7} {med['join_offers']:12.0f} {med['join_ms']:7.1f}"
                    f" {med['speak_offers']:23.0f} {med['speak_ms']:7.1f}"
                    f" {med['shown_first_ms']:37.1f} {med['shown_median_ms']:7.1f} {med['shown_last_ms']:5.1f}"
                )
    Room._needs_offer = NEW_RULE  # type: ignore[method-assign]


if __name__ == "__main__":
    args = sys.argv[1:]
    rounds = 3
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    asyncio.run(main([int(a) for a in args] or [12, 16, 20], rounds))
