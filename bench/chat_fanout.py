"""Chat fan-out latency over the room socket: one sender, everyone else in a 100-socket room receives.

    .venv/bin/python bench/chat_fanout.py [--sockets 100] [--messages 200] [--rate 20] [--slow]
        [--only memory,redis1,redis2] [--profile PREFIX]

Starts real daphne processes on 127.0.0.1 and opens real WebSockets (aiohttp)
from this one asyncio process. Scenarios: 1 process with the in-memory
channel layer, 1 process on Redis, 2 processes on Redis (sockets split evenly).
Redis: REDIS_URL, else redis://127.0.0.1:6379/2. Database: a fresh PostgreSQL
database next to DATABASE_URL when it is set (dropped afterwards), else a
SQLite file in a temporary directory.

Latency = time from just before the sender's ``chat_send`` to a receiver's
``chat_message`` (same clock: one process). Phase "sequential": one message
at a time, the next after every receiver has it. Phase "rate": messages at a
fixed rate regardless of delivery. The sender rotates over the sockets (the
per-socket chat rate limit is 5/s). ``--slow`` lists each message with a
delivery over 50 ms (all receivers late: the server stalled; some: the
fan-out did); ``--profile`` runs each daphne under cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# Runs daphne and, when it exits, writes the durations of its full (generation 2) GC collections.
GC_WRAPPER = """
import atexit, gc, json, sys, time
log, pauses, started = sys.argv.pop(1), [], [0.0]
def timed(phase, info):
    if info["generation"] == 2:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)
gc.callbacks.append(timed)
atexit.register(lambda: open(log, "w").write(json.dumps(pauses)))
from daphne.cli import CommandLineInterface
CommandLineInterface.entrypoint()
"""


class Node:
    def __init__(
        self,
        env: dict[str, str],
        profile: str | None = None,
        root: Path = ROOT,
        app: str = "conference.asgi:application",
    ) -> None:
        """daphne on a free port, serving ``root``'s tree (this one unless a benchmark compares another); ``app``:
        the ASGI application (bench/web_floor.py serves the project's with its own trivial endpoints added)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.gc_log = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
        daphne = [sys.executable, "-c", GC_WRAPPER, self.gc_log]
        if profile:  # cProfile (CPU time) the whole daphne process; the stats are written when it stops (SIGTERM)
            wrapper = str(ROOT / "bench" / "_cpu_profile.py")
            daphne = [sys.executable, wrapper, profile, str(Path(sys.executable).parent / "daphne")]
        self.proc = subprocess.Popen(
            [*daphne, "-b", "127.0.0.1", "-p", str(self.port), app],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(300):
            try:
                async with http.get(self.base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("daphne did not start")

    def rss_mb(self) -> float:
        """daphne's resident set size now, in MiB (Linux)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> list[float]:
        """Stop daphne; returns its full GC collections' durations in ms (empty when profiled)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        try:
            text = Path(self.gc_log).read_text()
            return [float(x) for x in json.loads(text)] if text else []
        finally:
            Path(self.gc_log).unlink(missing_ok=True)


class Receiver:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, arrivals: dict[str, list[float]], acks: dict[str, float]):
        self.ws = ws
        self.arrivals = arrivals
        self.acks = acks
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            frame = json.loads(message.data)
            kind = frame["type"]
            if kind == "chat_message":
                self.arrivals[frame["message"]["client_id"]].append(now)
                self.changed.set()
            elif kind == "chat_ack":
                self.acks[frame["client_id"]] = now
            elif kind == "ping":
                await self.ws.send_str('{"type":"pong"}')


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as response:
        if response.status not in (200, 201):
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
        return await response.json()


async def scenario(
    env: dict[str, str],
    processes: int,
    sockets: int,
    messages: int,
    rate: float,
    gc_pauses: list[float],
    rss: list[tuple[float, float]],
    profile: str | None = None,
) -> dict[str, Any]:
    nodes = [Node(env, f"{profile}.{i}.prof" if profile else None) for i in range(processes)]
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    receivers: list[Receiver] = []
    try:
        await asyncio.gather(*(n.ready(http) for n in nodes))
        name = f"bench{uuid.uuid4().hex[:8]}"
        me = await post(
            http, nodes[0].base + "/api/v1/auth/register", {"username": name, "password": "bench-pass-4821"}
        )
        room = await post(
            http, nodes[0].base + "/api/v1/rooms", {"name": "bench", "max_participants": 100}, me["access"]
        )
        room_id = room["roomId"]
        arrivals: dict[str, list[float]] = defaultdict(list)
        acks: dict[str, float] = {}
        for i in range(sockets):
            node = nodes[i % processes]
            url = node.base + f"/api/v1/rooms/{room_id}/join"
            grant = await (post(http, url, {}, me["access"]) if i == 0 else post(http, url, {"display_name": f"g{i}"}))
            ws = await http.ws_connect(
                f"ws://127.0.0.1:{node.port}/ws/rooms/{room_id}/", origin=node.base, max_msg_size=0
            )
            await ws.send_str(json.dumps({"type": "join", "token": grant["token"], "protocol": 1}))
            while json.loads((await ws.receive()).data)["type"] != "room_snapshot":
                pass
            receivers.append(Receiver(ws, arrivals, acks))
        await asyncio.sleep(1.0)  # let participant_joined storms settle
        rss_joined = [n.rss_mb() for n in nodes]

        async def send(n: int, phase: str) -> tuple[str, float]:
            client_id = f"{phase}{n}"
            sender = receivers[n % sockets]
            t0 = time.perf_counter()
            await sender.ws.send_str(json.dumps({"type": "chat_send", "client_id": client_id, "text": f"m{n}"}))
            return client_id, t0

        async def settle(client_ids: list[str], timeout: float = 10.0) -> None:
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline and any(len(arrivals[c]) < sockets - 1 for c in client_ids):
                await asyncio.sleep(0.005)

        def slow(sent: dict[str, float]) -> list[str]:
            """Messages with a delivery over 50 ms: all late (server stalled) or a few (fan-out stalled)?"""
            first = min(sent.values())
            out = []
            for c, t0 in sent.items():
                lat = sorted((t - t0) * 1000 for t in arrivals[c])
                if lat and lat[-1] > 50:
                    ack = (acks[c] - t0) * 1000 if c in acks else float("nan")
                    out.append(
                        f"{c} at +{t0 - first:.2f}s: ack {ack:.0f}, min {lat[0]:.0f}, median {lat[len(lat) // 2]:.0f}, "
                        f"max {lat[-1]:.0f} ms, {sum(x > 50 for x in lat)} late"
                    )
            return out

        def latencies(sent: dict[str, float]) -> tuple[list[float], list[float], int]:
            lat = [(t - t0) * 1000 for c, t0 in sent.items() for t in arrivals[c]]
            ack = [(acks[c] - t0) * 1000 for c, t0 in sent.items() if c in acks]
            missing = sum(sockets - 1 - len(arrivals[c]) for c in sent)
            return lat, ack, missing

        for n in range(10):  # warm-up
            client_id, _ = await send(n, "w")
            await settle([client_id])
        sequential: dict[str, float] = {}
        for n in range(messages):
            client_id, t0 = await send(n, "s")
            sequential[client_id] = t0
            await settle([client_id])
        loaded: dict[str, float] = {}
        start = time.perf_counter()
        for n in range(messages):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            client_id, t0 = await send(n, "r")
            loaded[client_id] = t0
        await settle(list(loaded))
        rss.extend(zip(rss_joined, [n.rss_mb() for n in nodes], strict=True))
        out: dict[str, Any] = {}
        for phase, sent in (("sequential", sequential), (f"{rate:g} msg/s", loaded)):
            lat, ack, missing = latencies(sent)
            out[phase] = {
                "deliveries": len(lat),
                "missing": missing,
                "p50": pct(lat, 0.50),
                "p90": pct(lat, 0.90),
                "p99": pct(lat, 0.99),
                "max": max(lat),
                "ack_p50": statistics.median(ack) if ack else float("nan"),
                "slow": slow(sent),
            }
        return out
    finally:
        for r in receivers:
            await r.ws.close()
            r.task.cancel()
        await http.close()
        for node in nodes:
            gc_pauses.extend(node.stop())


def prepare_database(env: dict[str, str], tmp: str, root: Path = ROOT) -> str | None:
    """A fresh database for a run (SQLite in ``tmp``, or a new PostgreSQL database next to DATABASE_URL), migrated
    with ``root``'s migrations (a source tree: this one unless a benchmark measures another); ``env`` names it."""
    database_url = os.environ.get("DATABASE_URL")
    if database_url:
        import psycopg

        # named after DATABASE_URL's database, so parallel runs with their own names never collide
        dbname = f"{database_url.rsplit('/', 1)[1] or 'conference'}_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        env["DATABASE_URL"] = database_url.rsplit("/", 1)[0] + "/" + dbname
    else:
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(Path(tmp) / "bench.sqlite3")
        dbname = None
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=root, env=env, check=True)
    return dbname


def drop_database(dbname: str | None) -> None:
    database_url = os.environ.get("DATABASE_URL")
    if dbname and database_url:
        import psycopg

        with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second in the loaded phase")
    parser.add_argument(
        "--only", default="memory,redis1,redis2", help="scenarios to run (comma-separated): memory, redis1, redis2"
    )
    parser.add_argument("--slow", action="store_true", help="list the messages with a delivery over 50 ms")
    parser.add_argument("--profile", metavar="PREFIX", help="cProfile each daphne into PREFIX.<scenario>.<n>.prof")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2")
    tag = uuid.uuid4().hex[:8]
    base_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "CONFERENCE_ENV": "test",
        "LOG_LEVEL": "WARNING",
        "CHANNEL_PREFIX": f"bench{tag}",
        "CACHE_PREFIX": f"bench{tag}",
        "AUTH_THROTTLE_RATE": "1000/minute",
        "SOCKET_CHAT_BURST": "1000",
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{free_port()}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        dbname = prepare_database(base_env, tmp)
        db = "PostgreSQL" if dbname else "SQLite file"
        try:
            memory_env = {k: v for k, v in base_env.items() if k != "REDIS_URL"}
            redis_env = {**base_env, "REDIS_URL": redis_url}
            runs = [
                ("memory", "1 daphne, in-memory layer", memory_env, 1),
                ("redis1", "1 daphne, Redis layer", redis_env, 1),
                ("redis2", "2 daphne, Redis layer", redis_env, 2),
            ]
            wanted = args.only.split(",")
            print(f"# chat fan-out: {args.sockets} sockets, {args.messages} messages per phase, DB {db}")
            print(
                f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
            )
            print("| scenario | phase | deliveries | missing | p50 ms | p90 ms | p99 ms | max ms | ack p50 ms |")
            print("|---|---|---|---|---|---|---|---|---|")
            slow: list[str] = []
            gc_lines: list[str] = []
            for key, label, env, processes in runs:
                if key not in wanted:
                    continue
                profile = f"{args.profile}.{key}" if args.profile else None
                pauses: list[float] = []
                rss: list[tuple[float, float]] = []
                result = await scenario(env, processes, args.sockets, args.messages, args.rate, pauses, rss, profile)
                gc_lines.append(
                    f"{label}: {len(pauses)} full GC collections, max {max(pauses, default=0):.1f} ms, "
                    f"over 20 ms: {sum(p > 20 for p in pauses)}; RSS MiB after joins -> end: "
                    + ", ".join(f"{a:.1f} -> {b:.1f}" for a, b in rss)
                )
                for phase, r in result.items():
                    slow.extend(f"{label}, {phase}: {line}" for line in r["slow"])
                    print(
                        f"| {label} | {phase} | {r['deliveries']} | {r['missing']} | {r['p50']:.1f} | {r['p90']:.1f} "
                        f"| {r['p99']:.1f} | {r['max']:.1f} | {r['ack_p50']:.1f} |",
                        flush=True,
                    )
            thresholds = os.environ.get("GC_THRESHOLDS", "default")
            print(
                f"# full (generation 2) GC collections in daphne (GC_THRESHOLDS={thresholds}), whole run incl. joins:",
                *gc_lines,
                sep="\n# ",
            )
            if args.slow:
                print(f"# deliveries over 50 ms: {len(slow)} messages", *slow, sep="\n# ")
        finally:
            drop_database(dbname)


if __name__ == "__main__":
    asyncio.run(main())
