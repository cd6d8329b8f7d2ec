"""The framework's floor under a join: daphne's CPU for the steps a join takes when our code does (almost) nothing.

    .venv/bin/python bench/web_floor.py [--ops 40] [--rounds 3] [--standalone] [--no-throttles]
    REDIS_URL=redis://127.0.0.1:6379/10 .venv/bin/python bench/web_floor.py

Issue 19 asks for <= 15 ms of daphne CPU per join (REST join + socket join + the media server's event POSTs a
join causes). This measures what those steps cost the fixed stack (daphne, Django and its middleware, DRF,
Channels, the channel layer) on their own, next to what our join costs, in one daphne and one run.

Starts one daphne (bench/web_join_steps.py's set-up: a fresh SQLite file, or with DATABASE_URL a fresh
PostgreSQL database; the in-memory channel layer and local-memory cache unless REDIS_URL, then channels-redis
and Django's Redis cache, as in production; rate limits counted as in production unless ``--no-throttles``)
serving the project's ASGI application with trivial endpoints added by bench/_floor_app.py (its own settings
module, bench/_floor_settings.py; the app's URLs never contain them). Each step runs ``--ops`` times one after
the other; its CPU is daphne's ``utime+stime`` (``/proc``) over the step, minus the idle rate, per operation;
each step waits 0.3 s after its last reply so that what it sent is delivered inside its window:

* ``http_get``: ``GET`` of a plain Django view (``{}``; no database, no auth) through the full middleware;
* ``drf``: ``POST`` of a guest join's body to a DRF ``APIView`` (the project's authenticators, ``AllowAny``,
  reads ``request.data``, returns ``{}``): the REST join's framework path;
* ``drf_jwt``: the same ``POST`` with a JWT to an ``IsAuthenticated`` view (simplejwt reads the user);
* ``ws_echo``: open a socket to a trivial ``AsyncJsonWebsocketConsumer`` (through the project's
  ``AllowedHostsOriginValidator``, ``SessionAuthIfCookie`` and ``URLRouter``), one JSON frame in, one out;
* ``ws_close``: close those sockets (the consumer's disconnect);
* ``ws_join``: open a socket and send ``join``; the consumer makes 2 ``group_add`` (a room group that already
  holds one seated socket, and its own group), 2 ``group_send`` (one to each), answers with a frame, and sends
  on each message it receives as a frame (3 messages: 2 to it, 1 to the seated socket): a room socket's join
  at the channel layer without our logic (no database hop, no snapshot);
* ``ws_join_stock``: the same with Channels' own ``dispatch`` (a ``close_old_connections`` hop to the
  database thread per message; rooms/consumers.py and the floor consumers above skip it);
* ``ws_join_1send``: ``ws_join`` with only the room's ``group_send`` (2 messages: 1 to it, 1 to the seated
  socket), what a join without the ``room.session`` send to its own group would pay;
* ``frame``: one frame in and one out on a joined socket (ping/pong);
* ``events``: a signed ``POST`` of a join's four media events (the body web_join_steps.py sends, in one POST)
  to a view that checks the signature (no replay check), parses the JSON and makes 4 ``group_send`` to the
  joined socket's own group; the socket sends the 4 messages on as frames (checked after the step);
* ``events_1msg``: the same POST with one ``group_send`` carrying the 4 events (one message received, 4 frames
  sent): what one channel-layer message per event batch would pay;
* ``events_no_socket``: the same POST with its 4 ``group_send`` to a group nobody is in (the sender's part);
* ``events_no_send``: the same POST, no ``group_send`` (the HTTP request, signature and JSON alone).

Each round also runs bench/web_join_steps.py's round (``one_round``: the real guest join, step by step) on the
same daphne, the order of the two swapped every round, and the report prints the floor of a join
(``drf`` + ``ws_join`` + ``events``) beside the real join (``rest`` + ``socket_folded`` +
``media_events_1post``), per step and per join, with the paired per-round figures. ``--standalone`` then also
runs bench/web_join_steps.py itself (its own daphne on the project's own settings) with the same options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import web_join_steps as steps  # noqa: E402
from chat_fanout import Node, drop_database, post, prepare_database  # noqa: E402

from media_server import signing  # noqa: E402

APP = "bench._floor_app:application"
EVENTS_PATH = "/floor/events"
FLOOR = ("drf", "ws_join", "events")  # one join's steps at the framework's floor: REST request, socket join, events
REAL = steps.JOIN  # ("rest", "socket_folded", "media_events_1post")
PAIRS = tuple(zip(REAL, FLOOR, strict=True))
SETTLE_SECONDS = steps.SETTLE_SECONDS
JOIN_BODY = {"display_name": "Ada", "stream_capabilities": {"video": True, "audio": True}}


async def receive_frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    frames = []
    while len(frames) < count:
        message = await asyncio.wait_for(ws.receive(), 30)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket closed after {len(frames)} of {count} frames: {message}")
        frames.append(json.loads(message.data))
    return frames


def media_events(room: str, participant: str) -> list[dict[str, Any]]:
    """The four events of one join, as bench/web_join_steps.py posts them."""
    ids = {"room": room, "participant": participant}
    track = {"mid": "0", "participant": participant, "pc": "camera", "source": "camera", "kind": "video"}
    return [
        {"type": "peer_state", **ids, "pc": "camera", "state": "connected"},
        {"type": "publication", **ids, "pc": "camera", "state": "published", "sources": ["camera", "microphone"]},
        {"type": "peer_state", **ids, "pc": "subscribe", "state": "connected"},
        {"type": "forwarded_tracks", **ids, "last_n": None, "video": [track], "audio": [], "audio_pooled": False},
    ]


class Joiner:
    """One socket of the floor's join consumer; its room group holds one seated socket besides it."""

    def __init__(self, tag: str, i: int, route: str) -> None:
        self.room = f"{tag}r{i}"
        self.own = f"{tag}o{i}"
        self.route = route
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.seated: aiohttp.ClientWebSocketResponse | None = None

    async def seat(self, http: aiohttp.ClientSession, base: str) -> None:
        url = f"{base.replace('http', 'ws', 1)}/ws/{self.route}/{self.room}/{self.own}s/"
        self.seated = await http.ws_connect(url, origin=base, max_msg_size=0)
        await self.seated.send_str(json.dumps({"type": "join", "seat_only": True}))
        await receive_frames(self.seated, 1)

    async def join(self, http: aiohttp.ClientSession, base: str, sends: int = 2) -> None:
        url = f"{base.replace('http', 'ws', 1)}/ws/{self.route}/{self.room}/{self.own}/"
        self.ws = await http.ws_connect(url, origin=base, max_msg_size=0)
        await self.ws.send_str(json.dumps({"type": "join", "token": "t" * 200, "protocol": 1, "sends": sends}))
        kinds = sorted(f["type"] for f in await receive_frames(self.ws, 1 + sends))
        if kinds != [*["event"] * sends, "joined"]:
            raise RuntimeError(f"join: {kinds}")

    async def frame(self) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"type": "ping", "ref": "p"}))
        await receive_frames(self.ws, 1)

    async def events(
        self, http: aiohttp.ClientSession, base: str, group: str | None = "own", *, one_message: bool = False
    ) -> None:
        """The signed events POST, its sends to this socket's own group (``"own"``), to a group nobody is in
        (``"empty"``) or none (``None``); ``one_message``: one send carrying the four events."""
        batch: dict[str, Any] = {"protocol": 1, "node": "bench", "events": media_events(self.room, "p")}
        if one_message:
            batch["one_message"] = True
        if group is not None:
            batch["group"] = f"floor.{group}.{self.own}"
        body = json.dumps(batch).encode()
        headers = {"Authorization": signing.sign(steps.SECRET, "POST", EVENTS_PATH, body)}
        headers["Content-Type"] = "application/json"
        async with http.post(base + EVENTS_PATH, data=body, headers=headers) as response:
            if response.status != 204:
                raise RuntimeError(f"events POST: {response.status} {await response.text()}")

    async def close(self) -> None:
        for ws in (self.ws, self.seated):
            if ws is not None:
                await ws.close()


async def floor_round(
    http: aiohttp.ClientSession, node: Node, access: str, ops: int, redis: steps.RedisWatch | None = None
) -> dict[str, float]:
    base = node.base
    tag = uuid.uuid4().hex[:8]
    lean = [Joiner(tag, i, "floor/join") for i in range(ops)]
    stock = [Joiner(tag, ops + i, "floor/join-stock") for i in range(ops)]
    single = [Joiner(tag, 2 * ops + i, "floor/join") for i in range(ops)]
    echoes: list[aiohttp.ClientWebSocketResponse] = []

    async def get() -> None:
        async with http.get(base + "/floor/get") as response:
            if response.status != 200:
                raise RuntimeError(f"GET: {response.status}")
            await response.read()

    async def drf(token: str | None = None) -> None:
        await post(http, base + ("/floor/drf-jwt" if token else "/floor/drf"), JOIN_BODY, token)

    async def echo() -> None:
        ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/ws/floor/echo/", origin=base, max_msg_size=0)
        await ws.send_str(json.dumps({"type": "ping", "ref": "p"}))
        await receive_frames(ws, 1)
        echoes.append(ws)

    async def close_echo(i: int) -> None:
        await echoes[i].close()

    await asyncio.sleep(1.0)
    pid = node.proc.pid
    t0, c0 = time.monotonic(), steps.cpu_seconds(pid)
    r0 = redis.cpu() if redis else 0.0
    await asyncio.sleep(2.0)
    idle_rate = (steps.cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    redis_idle = ((redis.cpu() - r0) / 2.0) if redis else 0.0

    def seat(joiners: list[Joiner]) -> Callable[[], Awaitable[None]]:
        async def seated() -> None:
            for joiner in joiners:
                await joiner.seat(http, base)

        return seated

    def close(joiners: list[Joiner]) -> Callable[[], Awaitable[None]]:
        async def closed() -> None:
            for joiner in joiners:
                await joiner.close()

        return closed

    # Each join step's sockets are seated just before it and closed after it (outside the measured windows),
    # so a join step runs with 2 sockets per room open, as web_join_steps.py's does: the in-memory layer scans
    # every channel and group on each send and receive.
    Hook = Callable[[], Awaitable[None]] | None
    plan: list[tuple[str, Callable[[int], Awaitable[None]], Hook, Hook]] = [
        ("http_get", lambda i: get(), None, None),
        ("drf", lambda i: drf(), None, None),
        ("drf_jwt", lambda i: drf(access), None, None),
        ("ws_echo", lambda i: echo(), None, None),
        ("ws_close", close_echo, None, None),
        ("ws_join_stock", lambda i: stock[i].join(http, base), seat(stock), close(stock)),
        ("ws_join_1send", lambda i: single[i].join(http, base, sends=1), seat(single), close(single)),
        ("ws_join", lambda i: lean[i].join(http, base), seat(lean), None),
        ("frame", lambda i: lean[i].frame(), None, None),
        ("events", lambda i: lean[i].events(http, base), None, None),
        ("events_1msg", lambda i: lean[i].events(http, base, one_message=True), None, None),
        ("events_no_socket", lambda i: lean[i].events(http, base, "empty"), None, None),
        ("events_no_send", lambda i: lean[i].events(http, base, None), None, None),
    ]
    result: dict[str, float] = {}
    for name, step, before, after in plan:
        if before is not None:
            await before()
            await asyncio.sleep(1.0)
        t0, c0, r0 = time.monotonic(), steps.cpu_seconds(pid), redis.cpu() if redis else 0.0
        for i in range(ops):  # one after the other: the step's own cost, not a queue's
            await step(i)
        await asyncio.sleep(SETTLE_SECONDS)
        elapsed = time.monotonic() - t0
        result[name] = (steps.cpu_seconds(pid) - c0 - idle_rate * elapsed) / ops * 1000
        if redis:
            result[f"redis:{name}"] = (redis.cpu() - r0 - redis_idle * elapsed) / ops * 1000
        if after is not None:
            await after()
            await asyncio.sleep(1.0)
    for joiner in lean:  # the events steps' 2 x 4 frames reached each socket (read after the steps: client CPU)
        assert joiner.ws is not None
        kinds = [f["type"] for f in await receive_frames(joiner.ws, 8)]
        if kinds != ["peer_state", "publication", "peer_state", "forwarded_tracks"] * 2:
            raise RuntimeError(f"events: {kinds}")
    await close(lean)()
    await asyncio.sleep(1.0)
    return result


async def run(ops: int, rounds: int, throttles: bool) -> tuple[list[dict[str, float]], list[dict[str, float]], str]:
    loads = [" ".join(Path("/proc/loadavg").read_text().split()[:3])]
    with tempfile.TemporaryDirectory(prefix="conf-floor-") as tmp:
        env = {
            **steps.daphne_env(tmp, throttles=throttles),
            "JWT_ACCESS_MINUTES": "600",  # the host's token outlives a long run
            "CHANNEL_PREFIX": "floor",
            "CACHE_PREFIX": "floor",
        }
        redis = steps.RedisWatch(env["REDIS_URL"], count=False) if env.get("REDIS_URL") else None
        dbname = await asyncio.to_thread(prepare_database, env, tmp, ROOT)
        node = Node({**env, "DJANGO_SETTINGS_MODULE": "bench._floor_settings"}, app=APP)
        floors: list[dict[str, float]] = []
        joins: list[dict[str, float]] = []
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                await node.ready(http)
                body = {"username": "host", "password": "bench-pass-4821"}
                access = (await post(http, node.base + "/api/v1/auth/register", body))["access"]
                # warm-up (imports, URL resolver, caches, connections), not counted
                await floor_round(http, node, access, min(ops, 10))
                await steps.one_round(http, node, access, min(ops, 10))
                for r in range(rounds):  # the order swapped every round
                    if r % 2 == 0:
                        floors.append(await floor_round(http, node, access, ops, redis))
                        joins.append(await steps.one_round(http, node, access, ops, redis))
                    else:
                        joins.append(await steps.one_round(http, node, access, ops, redis))
                        floors.append(await floor_round(http, node, access, ops, redis))
        finally:
            node.stop()
            drop_database(dbname)
    loads.append(" ".join(Path("/proc/loadavg").read_text().split()[:3]))
    layer = "channels-redis + Redis cache" if redis else "in-memory layer + local-memory cache"
    layer += ", rate limits on" if throttles else ", rate limits off"
    return floors, joins, f"{layer}; load {loads[0]} -> {loads[1]}"


def _rounds(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def report(floors: list[dict[str, float]], joins: list[dict[str, float]], ops: int, what: str) -> None:
    rounds = len(floors)
    print(f"daphne CPU per operation at the framework's floor, ms (median of {rounds} rounds of {ops}; {what}):")
    for name in (n for n in floors[0] if ":" not in n):
        values = [r[name] for r in floors]
        print(f"  {name:18s} {statistics.median(values):6.2f}   (rounds: {_rounds(values)})")
    if any(k.startswith("redis:") for k in floors[0]):
        print("Redis server CPU per operation, ms (median; a shared server's other clients count):")
        for name in (n for n in floors[0] if ":" not in n):
            values = [r[f"redis:{name}"] for r in floors]
            print(f"  {name:18s} {statistics.median(values):6.2f}   (rounds: {_rounds(values)})")
    print()
    steps.report(joins, rounds, ops, f"the real join on the same daphne, rounds interleaved; {what}", None, False)
    print()
    print(f"A join's steps: the real join against the framework's floor (same daphne, median of {rounds} rounds):")
    print(f"  {'step':34s} {'real':>7s} {'floor':>7s} {'ours':>7s}  floor/real")
    for real, floor in PAIRS:
        r = statistics.median(j[real] for j in joins)
        f = statistics.median(x[floor] for x in floors)
        print(f"  {real + ' / ' + floor:34s} {r:7.2f} {f:7.2f} {r - f:7.2f}  {f / r:6.0%}")
    real_sum = [sum(j[n] for n in REAL) for j in joins]
    floor_sum = [sum(x[n] for n in FLOOR) for x in floors]
    jwt_sum = [x["drf_jwt"] + x["ws_join"] + x["events"] for x in floors]
    r, f = statistics.median(real_sum), statistics.median(floor_sum)
    print(f"  {'per join':34s} {r:7.2f} {f:7.2f} {r - f:7.2f}  {f / r:6.0%}")
    print(f"    real per round:  {_rounds(real_sum)}")
    print(f"    floor per round: {_rounds(floor_sum)}")
    print(f"    floor with the JWT request instead (a signed-in join): {statistics.median(jwt_sum):.2f} ms")
    lean_sum = [x["drf"] + x["ws_join_1send"] + x["events_1msg"] for x in floors]
    print(
        f"    floor with fewer layer messages (drf + ws_join_1send + events_1msg): {statistics.median(lean_sum):.2f} ms"
        f"  (rounds: {_rounds(lean_sum)})"
    )
    print(f"  target 15 ms: {'below' if f > 15 else 'above'} the floor ({f:.2f} ms; {f / 15:.0%} of the target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=40, help="operations per step and round (joins per round)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-throttles", action="store_true", help="rate limits off (web_join_steps.py's default)")
    parser.add_argument(
        "--standalone", action="store_true", help="then run bench/web_join_steps.py itself (its own daphne)"
    )
    args = parser.parse_args()
    floors, joins, what = asyncio.run(run(args.ops, args.rounds, not args.no_throttles))
    report(floors, joins, args.ops, what)
    if args.standalone:
        command = [sys.executable, str(ROOT / "bench" / "web_join_steps.py"), "--joins", str(args.ops)]
        command += ["--rounds", str(args.rounds), *([] if args.no_throttles else ["--throttles"])]
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        subprocess.run(command, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
