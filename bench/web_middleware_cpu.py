"""CPU per HTTP request through Django's ASGI handler, with and without ``SyncChainMiddleware``, in one process.

    .venv/bin/python bench/web_middleware_cpu.py [--requests 200] [--rounds 6]

Builds two ASGI applications as ``conference/asgi.py`` does (Django's
``ASGIHandler`` inside ``SyncThreads.http``): one with ``settings.MIDDLEWARE``
and one with the same list less ``conference.sync_chain.SyncChainMiddleware``
(every async-capable middleware then runs its hooks through ``sync_to_async``,
as before issue 19). Each round sends ``--requests`` requests of each kind to
each application, alternating, and takes the process's CPU (all threads,
``time.process_time``) per request: a signed media-server event batch (one
``peer_state`` event; an async view) and a guest REST join (a DRF view; a new
room every 5 joins). Prints the median over rounds of each and their ratio.
No daphne and no sockets: what differs is only the middleware chain's mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _inprocess import CpuClock, alternating_rounds, print_medians, run_with_scratch_database  # noqa: E402

SECRET = "mw-bench-secret-loopback-only-0123456789abc"  # noqa: S105 (in-process benchmark; >= 32 chars)
EVENTS_PATH = "/internal/media/v1/events"
SYNC_CHAIN = "conference.sync_chain.SyncChainMiddleware"


async def request(app: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (k.lower().encode(), v.encode())
            for k, v in {"host": "127.0.0.1", "content-length": str(len(body)), **headers}.items()
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def run(requests: int, rounds: int) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings
    from rest_framework.test import APIClient

    from conference.sync_threads import SyncThreads
    from media_server import signing

    assert settings.MIDDLEWARE[-1] == SYNC_CHAIN, "SyncChainMiddleware is not the last middleware"
    threads = SyncThreads(2)
    apps = {"sync chain": threads.http(ASGIHandler())}
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != SYNC_CHAIN]):
        apps["async mixins"] = threads.http(ASGIHandler())

    host = APIClient()
    from django.contrib.auth import get_user_model

    user = await asyncio.to_thread(get_user_model().objects.create_user, "bench-host")

    def new_room() -> str:
        host.force_authenticate(user)
        body = {"name": "bench", "max_participants": 100}
        return str(host.post("/api/v1/rooms", body, format="json").json()["roomId"])

    async def events(app: Any) -> None:
        event = {"type": "peer_state", "room": "r0", "participant": "p0", "pc": "camera", "state": "connected"}
        body = json.dumps({"protocol": 1, "events": [event]}).encode()
        headers = {"authorization": signing.sign(SECRET, "POST", EVENTS_PATH, body), "content-type": "application/json"}
        status, text = await request(app, "POST", EVENTS_PATH, body, headers)
        assert status == 204, (status, text)

    rooms: dict[str, list[Any]] = {name: ["", 0] for name in apps}

    async def join(app: Any, name: str) -> None:
        slot = rooms[name]
        if slot[1] % 5 == 0:
            slot[0] = await asyncio.to_thread(new_room)
        slot[1] += 1
        body = json.dumps({"display_name": "Ada"}).encode()
        status, text = await request(
            app, "POST", f"/api/v1/rooms/{slot[0]}/join", body, {"content-type": "application/json"}
        )
        assert status == 200, (status, text)

    async def events_step(app: Any, name: str) -> None:
        await events(app)

    kinds = {"events POST": events_step, "REST join": join}
    for name, app in apps.items():  # warm-up: imports, URL resolver, first queries
        for _ in range(5):
            await events(app)
            await join(app, name)

    async def measure(name: str) -> dict[str, float]:
        out = {}
        for kind, fn in kinds.items():
            clock = CpuClock()
            for _ in range(requests):
                await fn(apps[name], name)
            out[kind] = clock.per(requests)
        return out

    figures = await alternating_rounds(rounds, list(apps), measure)
    threads.close()
    title = f"CPU per request (process, all threads), ms: median of {rounds} alternating rounds of {requests}"
    print_medians(title, figures, new="sync chain", old="async mixins")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    run_with_scratch_database("conf-mw-", lambda: run(args.requests, args.rounds), MEDIA_SECRET=SECRET)


if __name__ == "__main__":
    main()
