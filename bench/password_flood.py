"""Room-password guessing flood vs. legitimate joins of other rooms (issue 18, docs/benchmarks.md).

    .venv/bin/python bench/password_flood.py [--attackers 8] [--seconds 20] [--no-throttles] [--json FILE]

Starts one real daphne on 127.0.0.1 (a SQLite file in a temporary directory, or a fresh PostgreSQL database
next to DATABASE_URL; the cache on REDIS_URL when set) with TRUSTED_PROXIES=127.0.0.1, so each request can
name its client address in X-Forwarded-For. ``--attackers`` loops guess the password of one room, each
request from a fresh address (a botnet: per-address limits never trip, only the per-room ones do).
Meanwhile one signed-in user joins three other rooms in turn, one join at a time. Reported: that user's
join latency (median, p90, max) before the attack (baseline) and during it, the ratio of the medians,
and how the attackers were answered (403 = a password was hashed, 429 = throttled, not hashed).
``--no-throttles`` runs the same with THROTTLES_ENABLED=0 (the situation before issue 18).
``--until-throttled`` (tests/security/test_password_flood.py) keeps the guessers going after the measured
phase until one of them is refused with 429 (at most 120 s more): on a busy machine each wrong guess costs a
slow hash and 8 s of attack may end before the per-room limit (10 a minute plus the 8 in flight) is reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.procs import Daphne, free_port  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p90_ms": round(pct(values, 0.9) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


async def legit_joins(http: aiohttp.ClientSession, base: str, token: str, rooms: list[str], seconds: float) -> dict:
    times: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        room = rooms[n % len(rooms)]
        n += 1
        started = time.monotonic()
        async with http.post(
            f"{base}/api/v1/rooms/{room}/join", json={}, headers={"Authorization": f"Bearer {token}"}
        ) as r:
            await r.read()
            statuses[r.status] += 1
        times.append(time.monotonic() - started)
        await asyncio.sleep(0.1)
    return {"statuses": dict(statuses), "latency": summary(times)}


async def attacker(http: aiohttp.ClientSession, base: str, room: str, stop: asyncio.Event, tally: Counter[int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        address = f"198.18.{(n >> 8) & 255}.{n & 255}"  # RFC 2544 benchmarking range, never sent anywhere
        headers = {"X-Forwarded-For": f"{uuid.uuid4().int % 250}.{address.split('.', 1)[1]}"}
        try:
            async with http.post(
                f"{base}/api/v1/rooms/{room}/join", json={"display_name": "x", "password": f"g{n}"}, headers=headers
            ) as r:
                await r.read()
                tally[r.status] += 1
        except aiohttp.ClientError:
            tally[0] += 1


async def ready(web: Daphne) -> None:
    async with aiohttp.ClientSession() as http:
        await web.ready(http, timeout=90)


async def scenario(base: str, attackers: int, seconds: float, until_throttled: bool = False) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        name = f"bench{uuid.uuid4().hex[:8]}"
        async with http.post(
            f"{base}/api/v1/auth/register", json={"username": name, "password": "a-long-bench-password-1"}
        ) as r:
            token = (await r.json())["access"]
        headers = {"Authorization": f"Bearer {token}"}
        rooms = []
        for n in range(4):
            body: dict[str, Any] = {"name": f"Room {n}"}
            if n == 0:
                body["password"] = "the-real-password"  # noqa: S105  (a test room of the benchmark)
            async with http.post(f"{base}/api/v1/rooms", json=body, headers=headers) as r:
                rooms.append((await r.json())["roomId"])
        baseline = await legit_joins(http, base, token, rooms[1:], min(5.0, seconds / 2))
        stop = asyncio.Event()
        tally: Counter[int] = Counter()
        tasks = [asyncio.create_task(attacker(http, base, rooms[0], stop, tally)) for _ in range(attackers)]
        await asyncio.sleep(1.0)  # the flood is under way
        during = await legit_joins(http, base, token, rooms[1:], seconds)
        deadline = time.monotonic() + 120
        while until_throttled and not tally[429] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
    ratio = (during["latency"]["median_ms"] / baseline["latency"]["median_ms"]) if baseline["latency"]["n"] else None
    return {
        "baseline": baseline,
        "during_attack": during,
        "median_ratio": round(ratio, 2) if ratio else None,
        "attacker_statuses": dict(tally),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attackers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--no-throttles", action="store_true")
    p.add_argument("--until-throttled", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pwflood-"))
    tag = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "CONFERENCE_ENV": "test",
        "TRUSTED_PROXIES": "127.0.0.1",
        "THROTTLES_ENABLED": "0" if args.no_throttles else "1",
        "CACHE_PREFIX": f"pw{tag}",
        "CHANNEL_PREFIX": f"pw{tag}",
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{free_port()}",
        "LOG_LEVEL": "ERROR",
    }
    database_url = os.environ.get("DATABASE_URL")
    dbname = f"conference_pw_{tag}"
    if database_url:
        import psycopg

        admin = database_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        env["DATABASE_URL"] = database_url.rsplit("/", 1)[0] + "/" + dbname
    else:
        env["SQLITE_PATH"] = str(tmp / "db.sqlite3")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    web = Daphne(env)
    try:
        # Wait until daphne answers /healthz (or fail with its stderr if it exited): it imports Django and the
        # app first, which took over 30 s on a busy 2-core machine, and a fixed number of connect attempts
        # then fell through to a refused connection.
        asyncio.run(ready(web))
        result = asyncio.run(scenario(web.base, args.attackers, args.seconds, args.until_throttled))
    finally:
        web.stop()
        if database_url:
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    result["config"] = {
        "attackers": args.attackers,
        "seconds": args.seconds,
        "throttles": not args.no_throttles,
        "database": "postgresql" if database_url else "sqlite",
        "cache": "redis" if os.environ.get("REDIS_URL") else "locmem",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
