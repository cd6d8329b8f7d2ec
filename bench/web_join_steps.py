"""daphne's CPU per step of a guest join, over a real daphne (HTTP, WebSocket, ASGI, Channels, Django).

    .venv/bin/python bench/web_join_steps.py [--joins 40] [--rounds 3] [--profile OUT.prof]

Starts one daphne (a fresh SQLite file, or with DATABASE_URL a fresh PostgreSQL
database; the in-memory channel layer unless REDIS_URL) and no media server.
Each room has one guest already on its socket; then ``--joins`` guests join, one
step at a time for all of them, so each step's CPU is daphne's
``utime+stime`` (``/proc``) over that step divided by the joins:

* ``rest``: ``POST /api/v1/rooms/{id}/join`` (middleware, DRF, the service);
* ``socket``: open the room socket and send ``join`` until ``room_snapshot``
  (handshake, Channels' session/auth middleware, the two database hops, groups,
  the ``participant_joined`` event to the room);
* ``media_state``: the frame call.js sent right after the snapshot (a hop and
  a ``participant_updated`` event to the room);
* ``socket_folded``: ``socket`` with that first media state in the ``join``
  frame (what call.js does now: no ``media_state`` frame follows). ``socket``
  and ``media_state`` run for every other guest, ``socket_folded`` for the
  others; the total counts ``socket`` + ``media_state`` (as before);
* ``media_events``: the events the media server posts for one join
  (``publication``, two ``peer_state``, ``forwarded_tracks``), signed, one POST
  each (the media server's event sink without its batching window);
* ``media_events_1post``: the same four events in one POST (what the sink's
  window makes of them when they come within it; media_server/events.py);
  not counted in the total;
* ``ping``: one ``ping``/``pong`` frame, the floor of any socket frame.

The signaling relays (``offer``/``subscribe``/``answer``: one HTTP call to the
media server each) are not here: bench/load.py measures them with the media
server. Each step waits 0.3 s after its last reply so that the events it sent
are delivered inside its window; daphne's idle CPU over a quiet 2 s is
subtracted. ``--rounds`` repeats the whole thing with new rooms; the median
per step is printed. ``--profile`` runs daphne under bench/_cpu_profile.py (CPU
figures are then inflated).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
from chat_fanout import Node, drop_database, post, prepare_database  # noqa: E402

from media_server import signing  # noqa: E402

SECRET = "steps-bench-secret-loopback-only-0123456789"  # noqa: S105 (loopback-only benchmark; >= 32 chars)
EVENTS_PATH = "/internal/media/v1/events"
SETTLE_SECONDS = 0.3


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def receive_until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(ws.receive(), 30)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket closed while waiting for {kind}: {message}")
        frame: dict[str, Any] = json.loads(message.data)
        if frame.get("type") == kind:
            return frame
        if frame.get("type") == "error":
            raise RuntimeError(f"error frame while waiting for {kind}: {frame}")


class Guest:
    def __init__(self, room: str) -> None:
        self.room = room
        self.grant: dict[str, Any] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def rest(self, http: aiohttp.ClientSession, base: str) -> None:
        body = {"display_name": "Ada", "stream_capabilities": {"video": True, "audio": True}}
        self.grant = await post(http, f"{base}/api/v1/rooms/{self.room}/join", body)

    async def socket(self, http: aiohttp.ClientSession, base: str, *, fold: bool = False) -> None:
        self.ws = await http.ws_connect(self.grant["ws_url"], origin=base, max_msg_size=0)
        frame: dict[str, Any] = {"type": "join", "token": self.grant["token"], "protocol": 1}
        if fold:  # the first media_state in the join frame, as call.js sends it now
            frame["media_state"] = {"audio_muted": True, "video_muted": True, "screen_sharing": False}
        await self.ws.send_str(json.dumps(frame))
        await receive_until(self.ws, "room_snapshot")

    async def media_state(self) -> None:
        assert self.ws is not None
        frame = {"type": "media_state", "audio_muted": True, "video_muted": True, "screen_sharing": False}
        await self.ws.send_str(json.dumps(frame))
        while True:  # its own participant_updated, through the room group
            updated = await receive_until(self.ws, "participant_updated")
            if updated["participant"]["participantId"] == self.grant["participantId"]:
                return

    async def ping(self) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"type": "ping", "ref": "p"}))
        await receive_until(self.ws, "pong")

    async def media_events(self, http: aiohttp.ClientSession, base: str, *, batched: bool = False) -> None:
        ids = {"room": self.room, "participant": self.grant["participantId"]}
        track = {"mid": "0", "participant": ids["participant"], "pc": "camera", "source": "camera", "kind": "video"}
        events = [
            {"type": "peer_state", **ids, "pc": "camera", "state": "connected"},
            {"type": "publication", **ids, "pc": "camera", "state": "published", "sources": ["camera", "microphone"]},
            {"type": "peer_state", **ids, "pc": "subscribe", "state": "connected"},
            {"type": "forwarded_tracks", **ids, "last_n": None, "video": [track], "audio": [], "audio_pooled": False},
        ]
        for batch in [events] if batched else [[event] for event in events]:
            body = json.dumps({"protocol": 1, "node": "bench", "events": batch}).encode()
            headers = {
                "Authorization": signing.sign(SECRET, "POST", EVENTS_PATH, body),
                "Content-Type": "application/json",
            }
            async with http.post(base + EVENTS_PATH, data=body, headers=headers) as response:
                if response.status != 204:
                    raise RuntimeError(f"events POST: {response.status} {await response.text()}")


async def one_round(http: aiohttp.ClientSession, node: Node, host_access: str, joins: int) -> dict[str, float]:
    rooms = []
    seated = []
    for _ in range(joins):  # one room per measured join; one guest already in it, on its socket
        room = await post(http, node.base + "/api/v1/rooms", {"name": "bench", "max_participants": 100}, host_access)
        rooms.append(room["roomId"])
        first = Guest(room["roomId"])
        await first.rest(http, node.base)
        await first.socket(http, node.base)
        seated.append(first)
    guests = [Guest(room) for room in rooms]
    await asyncio.sleep(1.0)
    pid = node.proc.pid
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(2.0)
    idle_rate = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    # Half the guests join as call.js did (join, then a media_state frame), half with the media_state in the
    # join frame (socket_folded; they send no media_state frame).
    plain, folded = guests[::2], guests[1::2]
    steps: list[tuple[str, list[Guest], Any]] = [
        ("rest", guests, lambda g: g.rest(http, node.base)),
        ("socket", plain, lambda g: g.socket(http, node.base)),
        ("media_state", plain, lambda g: g.media_state()),
        ("socket_folded", folded, lambda g: g.socket(http, node.base, fold=True)),
        ("media_events", guests, lambda g: g.media_events(http, node.base)),
        ("media_events_1post", guests, lambda g: g.media_events(http, node.base, batched=True)),
        ("ping", guests, lambda g: g.ping()),
    ]
    result: dict[str, float] = {}
    for name, group, step in steps:
        t0, c0 = time.monotonic(), cpu_seconds(pid)
        for guest in group:  # one after the other: the step's own cost, not a queue's
            await step(guest)
        await asyncio.sleep(SETTLE_SECONDS)
        used = cpu_seconds(pid) - c0 - idle_rate * (time.monotonic() - t0)
        result[name] = used / len(group) * 1000
    for guest in [*guests, *seated]:
        if guest.ws is not None:
            await guest.ws.close()
    await asyncio.sleep(1.0)
    return result


async def run(joins: int, rounds: int, profile: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="conf-steps-") as tmp:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "conference.settings",
            "CONFERENCE_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "THROTTLES_ENABLED": "0",
            "MEDIA_SECRET": SECRET,
            "MEDIA_CONTROL_URL": "http://127.0.0.1:9",  # no media server: the steps here never call it
            "RECORDINGS_SPOOL_DIR": str(Path(tmp) / "spool"),
        }
        if not os.environ.get("REDIS_URL"):
            env.pop("REDIS_URL", None)
        dbname = await asyncio.to_thread(prepare_database, env, tmp)
        node = Node(env, profile)
        try:
            async with aiohttp.ClientSession() as http:
                await node.ready(http)
                me = await post(
                    http, node.base + "/api/v1/auth/register", {"username": "host", "password": "bench-pass-4821"}
                )
                access = me["access"]
                if profile:  # a first round warms daphne up (imports, URL resolver, caches); then the stats start over
                    await one_round(http, node, access, joins)
                    node.proc.send_signal(signal.SIGUSR1)
                results = [await one_round(http, node, access, joins) for _ in range(rounds)]
        finally:
            if profile:  # writing the stats of every thread can take longer than Node.stop waits
                node.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(120)
            node.stop()
            drop_database(dbname)
    load = os.getloadavg()[0]
    print(f"daphne CPU per guest join step, ms (median of {rounds} rounds of {joins} joins; load {load:.1f}):")
    total = 0.0
    for name in results[0]:
        values = [r[name] for r in results]
        median = statistics.median(values)
        if name not in ("ping", "media_events_1post", "socket_folded"):
            total += median
        print(f"  {name:18s} {median:6.2f}   (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"  {'total':18s} {total:6.2f}   (without ping, socket_folded, media_events_1post)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="cProfile daphne (CPU time, all threads) into this file")
    args = parser.parse_args()
    asyncio.run(run(args.joins, args.rounds, args.profile))


if __name__ == "__main__":
    main()
