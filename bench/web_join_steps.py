"""daphne's CPU per step of a guest join, over a real daphne (HTTP, WebSocket, ASGI, Channels, Django).

    .venv/bin/python bench/web_join_steps.py [--joins 40] [--rounds 3] [--profile OUT.prof]
    REDIS_URL=redis://127.0.0.1:6379/11 .venv/bin/python bench/web_join_steps.py [--redis-commands] [--throttles]
    .venv/bin/python bench/web_join_steps.py --other /work/wt/base   # lockstep A/B against another tree

Starts one daphne (a fresh SQLite file, or with DATABASE_URL a fresh PostgreSQL
database; the in-memory channel layer and local-memory cache unless REDIS_URL,
then channels-redis and Django's Redis cache, as in production) and no media server.
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

With ``REDIS_URL`` the Redis server's CPU over each step is printed too, per join
(``/proc`` of the ``process_id`` that ``INFO`` names, so only for a Redis on
this machine; idle rate subtracted, but other clients of a shared server count).
``--redis-commands`` also counts the commands daphne sends to REDIS_URL's
database per step (a ``MONITOR`` connection, filtered by database number; it
adds to Redis's CPU, so that figure is then inflated), per join and by name;
not those a script runs, and a pipeline's commands count one each (MONITOR
cannot show round trips). ``--throttles`` counts the rate limits as production
does (in the cache; rates set too high to be reached): the REST join's cache work.

``--other TREE`` starts a second daphne from another source tree (e.g. main in a
detached worktree; its own database, channel and cache prefixes) and runs each
round on both, one after the other, the order swapped every round; it prints
each tree's figures and the median of the per-round differences (other minus
this) per step, which a change of machine load between runs cannot fake.
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
JOIN = ("rest", "socket_folded", "media_events_1post")  # one join as call.js and the media server make it now
SETTLE_SECONDS = 0.3


class RedisWatch:
    """The Redis server's CPU (``/proc``) and, with ``count``, the commands sent to one database (``MONITOR``)."""

    def __init__(self, url: str, *, count: bool) -> None:
        import redis
        import redis.asyncio

        self.url = url
        self.db = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
        self.pid = int(redis.Redis.from_url(url).info("server")["process_id"])
        self.count = count
        self.commands: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None
        self.client = redis.asyncio.Redis.from_url(url) if count else None

    def cpu(self) -> float:
        return cpu_seconds(self.pid) if Path(f"/proc/{self.pid}").exists() else float("nan")

    async def start(self) -> None:
        if self.client is None:
            return
        started = asyncio.Event()

        async def watch() -> None:
            assert self.client is not None
            async with self.client.monitor() as monitor:
                started.set()
                async for command in monitor.listen():
                    if command.get("db") == self.db and command.get("client_type") != "lua":  # not a script's own
                        name = command["command"].split(" ", 1)[0].strip('"').upper()
                        self.commands[name] = self.commands.get(name, 0) + 1

        self.task = asyncio.create_task(watch())
        await asyncio.wait_for(started.wait(), 10)

    def take(self) -> dict[str, int]:
        """The commands counted since the last call."""
        taken, self.commands = self.commands, {}
        return taken

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.client is not None:
            await self.client.aclose()


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


async def one_round(
    http: aiohttp.ClientSession, node: Node, host_access: str, joins: int, redis: RedisWatch | None = None
) -> dict[str, float]:
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
    r0 = redis.cpu() if redis else 0.0
    await asyncio.sleep(2.0)
    idle_rate = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    redis_idle = ((redis.cpu() - r0) / 2.0) if redis else 0.0
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
    if redis:
        redis.take()
    for name, group, step in steps:
        t0, c0, r0 = time.monotonic(), cpu_seconds(pid), redis.cpu() if redis else 0.0
        for guest in group:  # one after the other: the step's own cost, not a queue's
            await step(guest)
        await asyncio.sleep(SETTLE_SECONDS)
        elapsed = time.monotonic() - t0
        used = cpu_seconds(pid) - c0 - idle_rate * elapsed
        result[name] = used / len(group) * 1000
        if redis:
            result[f"redis:{name}"] = (redis.cpu() - r0 - redis_idle * elapsed) / len(group) * 1000
            for command, n in redis.take().items():
                result[f"cmd:{name}:{command}"] = n / len(group)
    for guest in [*guests, *seated]:
        if guest.ws is not None:
            await guest.ws.close()
    await asyncio.sleep(1.0)
    return result


THROTTLED = ("guest_join_address", "guest_join_room", "lobby_room", "auth_address")


def daphne_env(tmp: str, *, throttles: bool) -> dict[str, str]:
    """The environment of a benchmark daphne without a media server (also bench/web_floor.py's).

    ``throttles``: the rate limits are counted as in production (in the cache: Redis with ``REDIS_URL``), at
    rates never reached. Without ``REDIS_URL`` the in-memory layer and the local-memory cache.
    """
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
    if throttles:
        env["THROTTLES_ENABLED"] = "1"
        env["THROTTLE_RATES"] = json.dumps(dict.fromkeys(THROTTLED, "1000000/m"))
    if not os.environ.get("REDIS_URL"):
        env.pop("REDIS_URL", None)
    return env


async def run(
    joins: int,
    rounds: int,
    profile: str | None,
    redis_commands: bool = False,
    other: str | None = None,
    throttles: bool = False,
) -> None:
    trees = {"this": ROOT, **({"other": Path(other).resolve()} if other else {})}
    with tempfile.TemporaryDirectory(prefix="conf-steps-") as tmp:
        env = daphne_env(tmp, throttles=throttles)
        redis = RedisWatch(env["REDIS_URL"], count=redis_commands) if env.get("REDIS_URL") else None
        nodes: dict[str, Node] = {}
        dbnames: list[str | None] = []
        try:
            for name, root in trees.items():
                own = {**env, "CHANNEL_PREFIX": f"steps-{name}", "CACHE_PREFIX": f"steps-{name}"}
                (Path(tmp) / name).mkdir()
                dbnames.append(await asyncio.to_thread(prepare_database, own, str(Path(tmp) / name), root))
                nodes[name] = Node(own, profile, root)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in nodes}
            async with aiohttp.ClientSession() as http:
                access = {}
                for name, node in nodes.items():
                    await node.ready(http)
                    body = {"username": "host", "password": "bench-pass-4821"}
                    access[name] = (await post(http, node.base + "/api/v1/auth/register", body))["access"]
                    # a first round warms daphne up (imports, URL resolver, caches); then the stats start over
                    if profile or other:
                        await one_round(http, node, access[name], min(joins, 10))
                    if profile:
                        node.proc.send_signal(signal.SIGUSR1)
                if redis:
                    await redis.start()
                for r in range(rounds):  # with two trees, in lockstep: the order swapped every round
                    order = list(nodes) if r % 2 == 0 else list(reversed(nodes))
                    for name in order:
                        results[name].append(await one_round(http, nodes[name], access[name], joins, redis))
        finally:
            if redis:
                await redis.stop()
            for node in nodes.values():
                if profile:  # writing the stats of every thread can take longer than Node.stop waits
                    node.proc.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        node.proc.wait(120)
                node.stop()
            for dbname in dbnames:
                drop_database(dbname)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    layer = "channels-redis + Redis cache" if redis else "in-memory layer + local-memory cache"
    layer += ", rate limits on" if throttles else ""
    for name, root in trees.items():
        print(f"[{name}: {root}]")
        report(results[name], rounds, joins, f"{layer}; load {load}", redis, redis_commands)
    if other:
        pairs = list(zip(results["other"], results["this"], strict=True))
        print(f"other - this, daphne CPU per join step, ms (median of {rounds} paired rounds; quartiles):")
        for name in [*(n for n in results["this"][0] if ":" not in n), "per join"]:
            diffs = sorted(_step(o, name) - _step(t, name) for o, t in pairs)
            q = len(diffs) // 4
            print(f"  {name:18s} {statistics.median(diffs):6.2f}   ({diffs[q]:.2f} / {diffs[-q - 1]:.2f})")


def _step(result: dict[str, float], name: str) -> float:
    return sum(result[n] for n in JOIN) if name == "per join" else result[name]


def report(
    results: list[dict[str, float]], rounds: int, joins: int, what: str, redis: RedisWatch | None, commands: bool
) -> None:
    print(f"daphne CPU per guest join step, ms (median of {rounds} rounds of {joins} joins; {what}):")
    total = 0.0
    steps = [name for name in results[0] if ":" not in name]
    for name in steps:
        values = [r[name] for r in results]
        median = statistics.median(values)
        if name not in ("ping", "media_events_1post", "socket_folded"):
            total += median
        print(f"  {name:18s} {median:6.2f}   (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"  {'total':18s} {total:6.2f}   (without ping, socket_folded, media_events_1post)")
    per_join = statistics.median(_step(r, "per join") for r in results)
    print(f"  {'per join':18s} {per_join:6.2f}   ({' + '.join(JOIN)}, median of the rounds' sums)")
    if redis:
        print("Redis server CPU per join step, ms (median; a shared server's other clients count):")
        for name in steps:
            values = [r[f"redis:{name}"] for r in results]
            print(f"  {name:18s} {statistics.median(values):6.2f}   (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    if redis and commands:
        print(f"Redis commands per join step to database {redis.db} (median of rounds; by command):")
        for name in steps:
            names = sorted({k.split(":", 2)[2] for r in results for k in r if k.startswith(f"cmd:{name}:")})
            per = {c: statistics.median(r.get(f"cmd:{name}:{c}", 0.0) for r in results) for c in names}
            detail = ", ".join(f"{c} {n:g}" for c, n in per.items() if n)
            print(f"  {name:18s} {sum(per.values()):6.2f}   ({detail})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="cProfile daphne (CPU time, all threads) into this file")
    parser.add_argument(
        "--redis-commands", action="store_true", help="count daphne's Redis commands per step (MONITOR)"
    )
    parser.add_argument("--other", help="another source tree (e.g. main): its daphne too, rounds in lockstep")
    parser.add_argument("--throttles", action="store_true", help="count rate limits as production does (never hit)")
    args = parser.parse_args()
    if args.redis_commands and not os.environ.get("REDIS_URL"):
        parser.error("--redis-commands needs REDIS_URL")
    asyncio.run(run(args.joins, args.rounds, args.profile, args.redis_commands, args.other, args.throttles))


if __name__ == "__main__":
    main()
