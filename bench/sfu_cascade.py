"""Benchmark: one room in one media process vs the same room spread over two (cascading).

    flock /tmp/heavy.lock .venv/bin/python bench/sfu_cascade.py [--seconds 15] [--publishers 2] [--subscribers 10]

Same synthetic clients as bench/sfu_forward.py (bench/_media_clients.py: ~1.2 Mbit/s A+V
per publisher, no codec work). ``one``: every client on one ``python -m media_server``.
``two``: two processes A and B relaying the room to each other (media_server/cascade.py,
``POST /v1/rooms/{room}/relays`` both ways, as Django does for a spanning room); half the
publishers and half the subscribers on each. Prints CPU seconds per media process per
second of wall time, packets forwarded to subscribers, and packets received by them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import _media_common as common
import aiohttp
from aiohttp import web
from sfu_forward import AUTH, SECRET, ClientProcess

ROOM = "bench"


class Sfu:
    def __init__(self, name: str, events_port: int) -> None:
        self.name = name
        self.port = common.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MEDIA_SECRET": SECRET,
            "MEDIA_DEV": "1",  # this benchmark calls the control API with the static secret
            "MEDIA_CONTROL_PORT": str(self.port),
            "MEDIA_NODE_ID": name,
            "MEDIA_EVENTS_URL": f"http://127.0.0.1:{events_port}/events",
            "MEDIA_ICE_ADDRESSES": "127.0.0.1",
            "MEDIA_RELAY_HOST": "127.0.0.1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "media_server"], cwd=common.ROOT, env=env, stderr=subprocess.DEVNULL
        )

    async def health(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(self.base + "/v1/health", headers=AUTH) as r:
            return dict(await r.json())

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(200):
            try:
                await self.health(http)
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def run(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    owner: dict[str, ClientProcess] = {}
    pending: set[asyncio.Task[None]] = set()
    holder: list[aiohttp.ClientSession] = []

    async def events(request: web.Request) -> web.Response:
        for e in (await request.json())["events"]:
            worker = owner.get(e.get("participant", ""))
            if e["type"] == "subscribe_offer" and worker is not None:
                task = asyncio.create_task(worker.call(holder[0], "/offer", e))
                pending.add(task)
                task.add_done_callback(pending.discard)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    events_port = common.free_port()
    await web.TCPSite(runner, "127.0.0.1", events_port).start()
    sfus = [Sfu(n, events_port) for n in (("A",) if mode == "one" else ("A", "B"))]
    workers: list[ClientProcess] = []
    try:
        async with aiohttp.ClientSession() as http:
            holder.append(http)
            for sfu in sfus:
                await sfu.ready(http)
            for a in sfus:
                for b in sfus:
                    if a is not b:
                        async with http.post(
                            a.base + f"/v1/rooms/{ROOM}/relays", json={"node": b.name, "url": b.base}, headers=AUTH
                        ) as r:
                            assert r.status == 201, await r.text()
            pubs = [ClientProcess("publisher", sfu.base) for sfu in sfus]
            subs = [ClientProcess("subscriber", sfu.base) for sfu in sfus]
            workers = pubs + subs
            for i in range(args.publishers):
                await pubs[i % len(pubs)].call(http, "/join", {"name": f"pub{i}"})
            for i in range(args.subscribers):
                worker = subs[i % len(subs)]
                owner[f"sub{i}"] = worker
                await worker.call(http, "/join", {"name": f"sub{i}"})
            await asyncio.sleep(4)
            for w in subs:
                await w.stats(http)
            c0 = [common.cpu_seconds(s.proc.pid) for s in sfus]
            f0 = [int((await s.health(http))["forwarded_packets"]) for s in sfus]
            t0 = time.monotonic()
            await asyncio.sleep(args.seconds)
            c1 = [common.cpu_seconds(s.proc.pid) for s in sfus]
            f1 = [int((await s.health(http))["forwarded_packets"]) for s in sfus]
            wall = time.monotonic() - t0
            received = 0
            for w in subs:
                received += int((await w.stats(http))["received"])
            return {
                "mode": mode,
                "cpu_per_process": [round((b - a) / wall, 3) for a, b in zip(c0, c1, strict=True)],
                "forwarded_pps_per_process": [round((b - a) / wall) for a, b in zip(f0, f1, strict=True)],
                "received_pps": round(received / wall),
                "expected_pps": args.publishers * args.subscribers * 180,
            }
    finally:
        for w in workers:
            w.stop()
        for sfu in sfus:
            sfu.stop()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=10)
    args = parser.parse_args()
    for mode in ("one", "two"):
        print(json.dumps(asyncio.run(run(mode, args))), flush=True)


if __name__ == "__main__":
    main()
