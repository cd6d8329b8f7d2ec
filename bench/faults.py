"""Fault injection on a real stack: kill things, measure how long until the call works again.

    .venv/bin/python bench/faults.py                  # every fault once
    .venv/bin/python bench/faults.py --runs 3 --faults media,redis

Each run starts its own stack from the test harness (tests/procs.py): a private ``redis-server`` on a free
port (never the machine's shared one), a fresh database (PostgreSQL with DATABASE_URL, else SQLite),
daphne, and for ``media`` two media servers registered in that Redis. Participants are aiohttp room
sockets (and aiortc peers for media), doing what the browser client does. Faults:

* ``media``: two media servers, a host publishing and a guest receiving video; ``kill -9`` of the room's
  server. Prints when both sockets got ``media_reconnect`` and when the guest decodes video again after
  publishing/subscribing once more (on the survivor).
* ``media-restart``: one media server, killed, restarted 3 s later. Prints when the restarted server
  registered, when the sockets got ``media_reconnect`` (``media_node_available``) after that, and when
  video is decoded again, counted from its registration.
* ``redis``: two sockets; ``kill -9`` of Redis, restarted empty on the same port 3 s later. Prints when
  ``/healthz`` is 200 and when both clients (retrying every 0.25 s) are back in the room with chat
  flowing between them, counted from Redis's restart.
* ``daphne``: ``kill -9`` of daphne, restarted on the same port. Prints when it serves ``/healthz`` and
  when a client (retrying every 0.25 s) is back in the room, counted from the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from redis import asyncio as aioredis  # noqa: E402

from tests.procs import (  # noqa: E402
    Daphne,
    MediaServer,
    Peer,
    PrivateRedis,
    WsClient,
    drop_database,
    post_json,
    web_env,
)

SECRET = "bench-faults-secret"  # noqa: S105 - a private stack's media secret
RETRY_EVERY = 0.25  # how often a simulated client retries (the browser's backoff floor is 0.5 s)


class Stack:
    def __init__(self, tmp: Path, media: int) -> None:
        self.tmp = tmp
        self.redis = PrivateRedis()
        self.redis.start()
        self.prefix = f"faults-{uuid.uuid4().hex[:8]}"
        extra = {"MEDIA_SECRET": SECRET, "MEDIA_CONTROL_TIMEOUT_SECONDS": "5"}
        if media:
            extra |= {"MEDIA_REDIS_URL": self.redis.url, "MEDIA_REDIS_PREFIX": self.prefix}
        self.env = web_env(redis_url=self.redis.url, tmp_path=tmp, **extra)
        self.web = Daphne(self.env)
        self.media: dict[str, MediaServer] = {}
        for i in range(media):
            self.start_media(f"m{i + 1}")
        self.http = aiohttp.ClientSession()

    def start_media(self, name: str) -> MediaServer:
        server = MediaServer(
            name,
            redis_url=self.redis.url,
            prefix=self.prefix,
            secret=SECRET,
            log=self.tmp / f"{name}-{len(self.media)}.log",
            events_url=f"{self.web.base}/internal/media/v1/events",
        )
        self.media[name] = server
        return server

    async def registered(self, names: set[str], timeout: float = 120) -> None:
        client = aioredis.Redis.from_url(self.redis.url)
        try:
            deadline = time.monotonic() + timeout
            while True:
                live = {n.decode() for n in await client.zrange(f"{self.prefix}:media:load", 0, -1)}
                records = await client.mget([f"{self.prefix}:media:node:{n}" for n in names]) if names else []
                if names <= live and all(records):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"media servers {names - live} did not register")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def room_node(self, room_id: str) -> str:
        client = aioredis.Redis.from_url(self.redis.url)
        try:
            node = await client.get(f"{self.prefix}:media:room:{room_id}")
            return node.decode() if node else ""
        finally:
            await client.aclose()

    async def room_with_two(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        name = f"h{uuid.uuid4().hex[:8]}"
        me = await post_json(
            self.http, self.web.base + "/api/v1/auth/register", {"username": name, "password": "a-long-pass-987"}
        )
        room = await post_json(self.http, self.web.base + "/api/v1/rooms", {"name": "Faults"}, me["access"])
        room_id = room["roomId"]
        host = await post_json(self.http, self.web.base + f"/api/v1/rooms/{room_id}/join", {}, me["access"])
        guest = await post_json(self.http, self.web.base + f"/api/v1/rooms/{room_id}/join", {"display_name": "Guest"})
        return room_id, host, guest

    async def close(self) -> None:
        await self.http.close()
        for server in self.media.values():
            server.stop()
        self.web.stop()
        self.redis.stop()
        drop_database(self.env)


@asynccontextmanager
async def stack(media: int = 0) -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        s = Stack(Path(tmp), media)
        try:
            await s.web.ready(s.http, timeout=90)
            if media:
                await s.registered(set(s.media))
            yield s
        finally:
            await s.close()


async def retry(action: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """Call ``action`` every RETRY_EVERY seconds until it succeeds (a client retrying)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await action()
        except (AssertionError, aiohttp.ClientError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RETRY_EVERY)


async def frames(track: Any, count: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        for _ in range(count):
            await track.recv()


async def in_call(s: Stack, room_id: str, grant: dict[str, Any]) -> WsClient:
    client = await WsClient.open(s.http, s.web, room_id)
    try:
        await client.join(grant["token"], timeout=5)
    except BaseException:
        await client.close()
        raise
    return client


async def media_call(s: Stack) -> tuple[str, WsClient, WsClient, Peer, Peer, str]:
    room_id, host_grant, guest_grant = await s.room_with_two()
    host_sock = await in_call(s, room_id, host_grant)
    guest_sock = await in_call(s, room_id, guest_grant)
    host, guest = Peer(host_sock), Peer(guest_sock)
    await host.publish()
    await frames(await guest.subscribe_video(host_grant["participantId"]), 5)
    return room_id, host_sock, guest_sock, host, guest, host_grant["participantId"]


async def media_back(host: Peer, guest: Peer, publisher: str) -> None:
    """What the client does on media_reconnect: drop its connections, publish and subscribe again."""
    await host.drop_media()
    await guest.drop_media()
    await host.publish()
    await frames(await guest.subscribe_video(publisher), 3)


async def fault_media() -> dict[str, float]:
    async with stack(media=2) as s:
        room_id, host_sock, guest_sock, host, guest, publisher = await media_call(s)
        try:
            node = await s.room_node(room_id)
            killed = time.monotonic()
            s.media[node].stop(signal.SIGKILL)
            await asyncio.gather(host_sock.expect("media_reconnect", 30), guest_sock.expect("media_reconnect", 30))
            told = time.monotonic() - killed
            await retry(lambda: media_back(host, guest, publisher))
            return {"media_reconnect_after_kill_s": told, "video_after_kill_s": time.monotonic() - killed}
        finally:
            await host.drop_media()
            await guest.drop_media()


async def fault_media_restart() -> dict[str, float]:
    async with stack(media=1) as s:
        _, host_sock, guest_sock, host, guest, publisher = await media_call(s)
        try:
            s.media["m1"].stop(signal.SIGKILL)
            await asyncio.gather(host_sock.expect("media_reconnect", 30), guest_sock.expect("media_reconnect", 30))
            await host.drop_media()
            await guest.drop_media()
            await asyncio.sleep(3)
            s.start_media("m1")
            await s.registered({"m1"})
            registered = time.monotonic()
            await asyncio.gather(host_sock.expect("media_reconnect", 30), guest_sock.expect("media_reconnect", 30))
            told = time.monotonic() - registered
            await retry(lambda: media_back(host, guest, publisher))
            return {"media_reconnect_after_register_s": told, "video_after_register_s": time.monotonic() - registered}
        finally:
            await host.drop_media()
            await guest.drop_media()


async def fault_redis() -> dict[str, float]:
    async with stack() as s:
        room_id, host_grant, guest_grant = await s.room_with_two()
        host = await in_call(s, room_id, host_grant)
        guest = await in_call(s, room_id, guest_grant)
        await guest.chat("before")
        s.redis.kill()
        killed = time.monotonic()
        await asyncio.sleep(3)
        s.redis.start()
        back = time.monotonic()

        async def healthy() -> float:
            async with s.http.get(s.web.base + "/healthz") as response:
                assert response.status == 200
            return time.monotonic() - back

        async def rejoined(grant: dict[str, Any]) -> WsClient:
            return await retry(lambda: in_call(s, room_id, grant))

        health, (host, guest) = await asyncio.gather(
            retry(healthy), asyncio.gather(rejoined(host_grant), rejoined(guest_grant))
        )
        text = f"after-{uuid.uuid4().hex[:6]}"
        await host.chat(text)
        while (await guest.expect("chat_message"))["message"]["text"] != text:
            pass
        sockets = time.monotonic() - back
        await host.close()
        await guest.close()
        return {
            "healthz_200_after_redis_back_s": health,
            "sockets_and_chat_after_redis_back_s": sockets,
            "outage_s": back - killed,
        }


async def fault_daphne() -> dict[str, float]:
    async with stack() as s:
        room_id, host_grant, _ = await s.room_with_two()
        host = await in_call(s, room_id, host_grant)
        await host.chat("before")
        s.web.stop(signal.SIGKILL)
        s.web.restart()
        restarted = time.monotonic()

        async def healthy() -> None:
            async with s.http.get(s.web.base + "/healthz") as response:
                assert response.status == 200

        await retry(healthy)
        serving = time.monotonic() - restarted
        host = await retry(lambda: in_call(s, room_id, host_grant))
        await host.chat("after")
        back = time.monotonic() - restarted
        await host.close()
        return {"healthz_200_after_restart_s": serving, "socket_and_chat_after_restart_s": back}


FAULTS: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
    "media": fault_media,
    "media-restart": fault_media_restart,
    "redis": fault_redis,
    "daphne": fault_daphne,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    from media_server import aiortc_hooks

    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])  # the in-process peers gather loopback only
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    results: dict[str, list[dict[str, float]]] = {}
    for run in range(args.runs):
        for name in args.faults.split(","):
            figures = await FAULTS[name]()
            results.setdefault(name, []).append(figures)
            print(
                json.dumps({"fault": name, "run": run + 1, **{k: round(v, 2) for k, v in figures.items()}}), flush=True
            )
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
    for name, runs in results.items():
        for key in runs[0]:
            values = [r[key] for r in runs]
            print(
                f"{name:14} {key:42} median {statistics.median(values):6.2f} s  max {max(values):6.2f} s  (n={len(values)})"
            )


if __name__ == "__main__":
    asyncio.run(main())
