"""A guest's room socket `subscribe` → the subscribe offer, over the real stack (issue 19 item 4).

    .venv/bin/python bench/join_offer_steps.py [--joins 40] [--other TREE] [--netns] [--connect]

Starts one daphne and one ``python -m media_server`` on 127.0.0.1 (PostgreSQL/Redis when DATABASE_URL/REDIS_URL
are set, as bench/load.py), a host that publishes a camera (aiortc, an idle video and audio track: m-lines,
no packets) and then, ``--joins`` times, a guest that does what the browser page does up to its subscribe
offer: REST join, room socket, ``join`` (with its media state), and on ``room_snapshot`` at once
``subscribe``; the guest then answers the offer with aiortc, sends its camera ``offer`` and leaves
after both answers. Each step's wall-clock time is printed (ms after the REST join), with the median
``subscribe`` sent → offer received. ``--other TREE`` runs a second stack from another source tree and
alternates the joins between the two (the order swapped every join), so that a change of load cannot
fake a difference. ``--netns`` (root) puts the guest in a network namespace behind a veth pair, with daphne
on the veth's host address, as tests/e2e runs Chromium (MTU 1500 instead of loopback's 64 KiB: a frame
of a few KB is several TCP segments). ``--connect`` also waits for the guest's subscribe connection to
connect (aiortc's ICE and DTLS on both ends, not Chromium's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _media_common as common
import aiohttp
from _media_clients import new_pc
from aiortc import RTCSessionDescription
from chat_fanout import Node, drop_database, post, prepare_database

from media_server import aiortc_hooks

# The browser tests' namespace (a free subnet taken under their lock, no IPv6), not a copy of it.
sys.path.insert(0, str(common.ROOT / "tests" / "e2e"))
from conftest import Netns


class Daphne(Node):
    """daphne bound to ``host`` (a veth's host address)."""

    def __init__(self, env: dict[str, str], root: Path, host: str) -> None:
        self.port = common.free_port()
        self.base = f"http://{host}:{self.port}"
        self.gc_log = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", host, "-p", str(self.port), "conference.asgi:application"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


SECRET = "join-offer-bench-secret-loopback-only-0123456789"  # noqa: S105 (loopback only)


class Stack:
    """daphne + media server serving ``root``'s tree, a host publishing in one room."""

    def __init__(self, root: Path, name: str, netns: Netns | None = None, connect: bool = False) -> None:
        self.root, self.name, self.netns, self.connect = root, name, netns, connect
        self.tmp = tempfile.TemporaryDirectory(prefix=f"conf-joinoffer-{name}-")
        self.media: subprocess.Popen[bytes] | None = None
        self.node: Node | None = None
        self.dbname: str | None = None
        self.host_pc: Any = None
        self.host_ws: Any = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        tag = uuid.uuid4().hex[:8]
        media_port = common.free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "conference.settings",
            "CONFERENCE_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "CHANNEL_PREFIX": f"jo{tag}",
            "CACHE_PREFIX": f"jo{tag}",
            "AUTH_THROTTLE_RATE": "10000/minute",
            "THROTTLES_ENABLED": "0",
            "MEDIA_CONTROL_URL": f"http://127.0.0.1:{media_port}",
            "MEDIA_SECRET": SECRET,
            "RECORDINGS_SPOOL_DIR": str(Path(self.tmp.name) / "spool"),
        }
        if not os.environ.get("REDIS_URL"):
            env.pop("REDIS_URL", None)
        self.dbname = await asyncio.to_thread(prepare_database, env, self.tmp.name, self.root)
        if self.netns is not None:
            env["DJANGO_ALLOWED_HOSTS"] = f"{self.netns.host_ip},127.0.0.1,localhost"
            self.node = Daphne(env, self.root, self.netns.host_ip)
        else:
            self.node = Node(env, root=self.root)
        log = open(Path(self.tmp.name) / "media.log", "wb")
        self.media = subprocess.Popen(
            [sys.executable, "-m", "media_server"],
            cwd=self.root,
            env={
                **env,
                "MEDIA_CONTROL_PORT": str(media_port),
                "MEDIA_EVENTS_URL": f"{self.node.base}/internal/media/v1/events",
                "MEDIA_ICE_ADDRESSES": "127.0.0.1",
            },
            stderr=log,
        )
        await self.node.ready(http)
        for _ in range(100):
            try:
                async with http.get(f"http://127.0.0.1:{media_port}/v1/health") as r:
                    if r.status in (200, 401):
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        host = await post(
            http, self.node.base + "/api/v1/auth/register", {"username": f"jo{tag}", "password": "Join-Offer-4821-x"}
        )
        self.room = (await post(http, self.node.base + "/api/v1/rooms", {"name": "join offer"}, host["access"]))[
            "roomId"
        ]
        grant = await post(
            http,
            f"{self.node.base}/api/v1/rooms/{self.room}/join",
            {"stream_capabilities": {"video": True, "audio": True}},
            host["access"],
        )
        self.host_ws = await http.ws_connect(grant["ws_url"], origin=self.node.base, max_msg_size=0)
        await self.host_ws.send_str(json.dumps({"type": "join", "token": grant["token"], "protocol": 1}))
        while json.loads((await self.host_ws.receive()).data)["type"] != "room_snapshot":
            pass
        self.host_pc = pc = new_pc()
        for kind in ("video", "audio"):
            pc.addTransceiver(aiortc_hooks.IdleTrack(kind), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        await self.host_ws.send_str(
            json.dumps({"type": "offer", "pc": "camera", "sdp": pc.localDescription.sdp, "ref": "pub"})
        )
        while True:
            frame = json.loads((await self.host_ws.receive()).data)
            if frame.get("ref") == "pub":
                break
        await pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="answer"))
        for _ in range(100):
            if pc.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        self.host_reader = asyncio.create_task(self._drain_host())

    async def _drain_host(self) -> None:
        async for message in self.host_ws:  # re-offers etc.: not answered (not measured)
            frame = json.loads(message.data)
            if frame.get("type") == "ping":
                await self.host_ws.send_str('{"type":"pong"}')

    async def guest_join(self, http: aiohttp.ClientSession, n: int) -> dict[str, float]:
        """One guest join as the page does it (in the namespace with ``--netns``); steps in ms after the REST join."""
        if self.netns is None:
            return await self._guest_join(http, n)
        with self.netns.entered():  # every socket of this guest (HTTP, WebSocket) is the namespace's
            async with aiohttp.ClientSession() as own:
                return await self._guest_join(own, n)

    async def _guest_join(self, http: aiohttp.ClientSession, n: int) -> dict[str, float]:
        assert self.node is not None
        t0 = time.time()
        marks: dict[str, float] = {}

        def mark(what: str) -> None:
            marks.setdefault(what, round((time.time() - t0) * 1000, 1))

        async with http.post(
            f"{self.node.base}/api/v1/rooms/{self.room}/join",
            json={"display_name": f"Guest {n}", "stream_capabilities": {"video": True, "audio": True}},
        ) as resp:
            grant = await resp.json()
        mark("rest")
        ws = await http.ws_connect(grant["ws_url"], origin=self.node.base, max_msg_size=0)
        mark("socket_open")
        media_state = {"audio_muted": False, "video_muted": False}
        await ws.send_str(
            json.dumps({"type": "join", "token": grant["token"], "protocol": 1, "media_state": media_state})
        )
        frames: list[tuple[float, str]] = []
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame["type"] == "room_snapshot":
                break
        mark("snapshot")
        await ws.send_str(json.dumps({"type": "subscribe", "ref": "sub"}))
        marks["t_sub_sent"] = time.time()  # absolute, to align with the servers' prints
        mark("subscribe_sent")
        sub = new_pc()
        sub_connected = asyncio.Event()

        @sub.on("connectionstatechange")
        def on_state() -> None:
            if sub.connectionState == "connected":
                mark("sub_connected")
                sub_connected.set()

        cam = new_pc()
        pending = {"sub", "cam"}
        offer: dict[str, Any] | None = None
        while pending:
            message = await asyncio.wait_for(ws.receive(), 10)
            frame = json.loads(message.data)
            frames.append((round((time.time() - t0) * 1000, 1), frame["type"]))
            if frame.get("ref") == "sub":
                mark("offer")
                marks["t_offer"] = time.time()
                offer = frame
                await sub.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="offer"))
                await sub.setLocalDescription(await sub.createAnswer())
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "answer",
                            "pc": "subscribe",
                            "sdp": sub.localDescription.sdp,
                            "revision": frame["revision"],
                        }
                    )
                )
                mark("answer_sent")
                pending.discard("sub")
                for kind in ("video", "audio"):
                    cam.addTransceiver(aiortc_hooks.IdleTrack(kind), direction="sendonly")
                await cam.setLocalDescription(await cam.createOffer())
                await ws.send_str(
                    json.dumps({"type": "offer", "pc": "camera", "sdp": cam.localDescription.sdp, "ref": "cam"})
                )
                mark("cam_offer_sent")
            elif frame.get("ref") == "cam":
                mark("cam_answer")
                pending.discard("cam")
            elif frame.get("type") == "error":
                raise RuntimeError(str(frame))
        assert offer is not None and offer.get("sdp")
        if self.connect:
            await asyncio.wait_for(sub_connected.wait(), 10)
        marks["frames"] = frames  # type: ignore[assignment]
        await ws.close()
        await sub.close()
        await cam.close()
        return marks

    async def stop(self) -> None:
        if self.host_ws is not None:
            await self.host_ws.close()
        if self.host_pc is not None:
            await self.host_pc.close()
        if self.media is not None:
            self.media.terminate()
            self.media.wait(10)
        if self.node is not None:
            self.node.stop()
        await asyncio.to_thread(drop_database, self.dbname)
        self.tmp.cleanup()


async def run(args: argparse.Namespace) -> None:
    http = aiohttp.ClientSession()
    netns = Netns.create(200 + os.getpid() % 50) if args.netns else None
    stacks = [Stack(common.ROOT, "this", netns, args.connect)]
    if args.other:
        stacks.append(Stack(Path(args.other).resolve(), "other", netns, args.connect))
    try:
        for s in stacks:
            await s.start(http)
        await asyncio.sleep(1.0)
        results: dict[str, list[dict[str, float]]] = {s.name: [] for s in stacks}
        for n in range(args.joins + args.warm):
            order = stacks if n % 2 == 0 else stacks[::-1]
            for s in order:
                marks = await s.guest_join(http, n)
                if n >= args.warm:
                    results[s.name].append(marks)
                if args.verbose:
                    print(s.name, {k: v for k, v in marks.items() if not k.startswith("t_")}, flush=True)
                await asyncio.sleep(args.pause)
        print(f"load {os.getloadavg()[0]:.1f}")
        for name, joins in results.items():
            steps = [
                ("rest", "rest"),
                ("snapshot", "snapshot"),
                ("subscribe_sent→offer", None),
                ("offer", "offer"),
                ("answer_sent", "answer_sent"),
                ("cam_answer", "cam_answer"),
            ]
            if args.connect:
                steps.append(("sub_connected", "sub_connected"))
            line = []
            for label, key in steps:
                if key is None:
                    values = [j["offer"] - j["subscribe_sent"] for j in joins]
                else:
                    values = [j[key] for j in joins]
                line.append(f"{label} {statistics.median(values):.1f}")
            gaps = sorted(j["offer"] - j["subscribe_sent"] for j in joins)
            print(f"{name} ({len(joins)} joins, medians, ms after the REST join was sent): " + ", ".join(line))
            print(
                f"  subscribe sent → offer: min {gaps[0]:.1f}, p90 {gaps[int(0.9 * len(gaps))]:.1f}, max {gaps[-1]:.1f}"
            )
            if args.dump:
                Path(f"{args.dump}.{name}.json").write_text(json.dumps(joins))
    finally:
        for s in stacks:
            try:
                await s.stop()
            except Exception as exc:
                print("stop failed:", exc)
        await http.close()
        if netns is not None:
            netns.destroy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--joins", type=int, default=40)
    p.add_argument("--warm", type=int, default=2, help="joins first, not counted")
    p.add_argument("--pause", type=float, default=0.3, help="s between joins")
    p.add_argument("--other", help="another source tree: alternate joins between the two")
    p.add_argument("--dump", help="write each join's marks to DUMP.<this|other>.json")
    p.add_argument("--connect", action="store_true", help="also wait for the subscribe connection to connect")
    p.add_argument("--netns", action="store_true", help="the guest in a network namespace behind a veth (root)")
    p.add_argument("--verbose", "-v", action="store_true")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
