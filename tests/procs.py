"""Real processes for black-box tests and fault benchmarks (bench/faults.py): a private redis-server,
daphne, a fresh database, and a WebSocket client that reads frames by type.

Nothing here is a fixture: tests and benchmarks start what they need and stop it in ``finally``.
Every process is one this code started; faults are injected by signalling those processes only
(never the machine's shared Redis or PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import redis_test_prefix

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process this code started (SIGKILL after 10 s) and reap it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence: it can be killed and restarted (same port)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """kill -9: every connection drops at once, every key is gone."""
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def web_env(*, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a test web tier: Redis at ``redis_url`` with a fresh prefix, a fresh database.

    The database is a new PostgreSQL database when DATABASE_URL is set (drop it with ``drop_database``),
    else a SQLite file under ``tmp_path``. Migrated before returning.
    """
    tag = uuid.uuid4().hex[:10]
    prefix = redis_test_prefix("mp")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "CONFERENCE_ENV": "test",
        "REDIS_URL": redis_url,
        "CHANNEL_PREFIX": prefix,
        "CACHE_PREFIX": prefix,
        "CELERY_KEY_PREFIX": prefix,
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{free_port()}",
        "MEDIA_CONTROL_TIMEOUT_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    database_url = os.environ.get("DATABASE_URL")
    if database_url:
        import psycopg

        dbname = f"conference_mp_{tag}"
        admin = database_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        env["DATABASE_URL"] = database_url.rsplit("/", 1)[0] + "/" + dbname
        env["TEST_DATABASE_NAME"] = dbname
    else:
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(tmp_path / f"mp-{tag}.sqlite3")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    return env


def drop_database(env: dict[str, str]) -> None:
    """Drop the PostgreSQL database ``web_env`` created (nothing for SQLite)."""
    dbname = env.get("TEST_DATABASE_NAME")
    database_url = os.environ.get("DATABASE_URL")
    if not dbname or not database_url:
        return
    import psycopg

    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


class Daphne:
    """One ``daphne conference.asgi:application`` on a free loopback port."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        daphne = str(Path(sys.executable).parent / "daphne")
        # Its log goes to a file, never to a pipe nobody reads: a pipe's 64 KiB filled up with one warning per
        # refused join in bench/password_flood.py, and daphne then blocked on writing (every request hung).
        self.log = tempfile.TemporaryFile()
        return subprocess.Popen(
            [daphne, "-b", "127.0.0.1", "-p", str(self.port), "conference.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def log_text(self) -> str:
        """What daphne wrote to stderr so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def restart(self) -> None:
        """Start again on the same port (after ``stop``)."""
        self.proc = self._spawn()

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_text()}")
            try:
                async with http.get(self.base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("daphne did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop(self.proc, sig)


class WsClient:
    """A room socket over aiohttp: reads frames by type, answers pings."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ref = 0

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, node: Daphne, room_id: str) -> WsClient:
        ws = await http.ws_connect(f"ws://127.0.0.1:{node.port}/ws/rooms/{room_id}/", origin=node.base)
        return cls(ws)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def join(self, token: str, timeout: float = 10.0) -> dict[str, Any]:
        """Send ``join`` and return the room snapshot (an error frame or a close raises AssertionError)."""
        await self.send({"type": "join", "token": token, "protocol": 1})
        return await self.expect("room_snapshot", timeout=timeout)

    async def expect(self, kind: str, timeout: float = 10.0, ref: int | None = None) -> dict[str, Any]:
        """The next frame of type ``kind`` (with ``ref`` if given); an error frame for ``ref`` or a close fails."""

        async def read() -> dict[str, Any]:
            while True:
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket ended ({message.type}, {message.data}) waiting for {kind}")
                frame: dict[str, Any] = json.loads(message.data)
                if frame["type"] == "ping":
                    await self.send({"type": "pong"})
                elif frame["type"] == kind and (ref is None or frame.get("ref") == ref):
                    return frame
                elif frame["type"] == "error" and kind != "error" and (ref is None or frame.get("ref") == ref):
                    raise AssertionError(f"error frame waiting for {kind}: {frame}")

        return await asyncio.wait_for(read(), timeout)

    async def chat(self, text: str, timeout: float = 10.0) -> dict[str, Any]:
        """Send a chat message and return its ``chat_ack``."""
        self.ref += 1
        await self.send({"type": "chat_send", "client_id": f"c{self.ref}-{uuid.uuid4().hex[:6]}", "text": text})
        return await self.expect("chat_ack", timeout=timeout)

    async def close(self) -> None:
        await self.ws.close()


async def post_json(http: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None) -> Any:
    """POST ``body``; 200/201 expected (AssertionError with the body otherwise)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


class MediaServer:
    """One ``python -m media_server`` registered in the node registry at ``redis_url`` under ``prefix``.

    ICE on 127.0.0.1 only (for in-process aiortc peers, see ``aiortc_hooks.set_ice_host_addresses``);
    events go to ``events_url`` (default: a closed port, so they are dropped).
    """

    def __init__(self, name: str, *, redis_url: str, prefix: str, secret: str, log: Path, events_url: str = "") -> None:
        self.name = name
        self.port = free_port()
        env = {
            **os.environ,
            "MEDIA_SECRET": secret,
            "MEDIA_DEV": "1",  # the test settings' development secret (refused outside --dev)
            "MEDIA_CONTROL_PORT": str(self.port),
            "MEDIA_NODE_ID": name,
            "MEDIA_ICE_ADDRESSES": "127.0.0.1",
            "MEDIA_EVENTS_URL": events_url or f"http://127.0.0.1:{free_port()}/internal/media/v1/events",
            "MEDIA_REDIS_URL": redis_url,
            "MEDIA_REDIS_PREFIX": prefix,
            "PYTHONUNBUFFERED": "1",
        }
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "media_server"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop(self.proc, sig)


def new_pc() -> Any:
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class Peer:
    """One participant's media (aiortc), signaled over its room socket like the browser client does.

    ``sock`` is anything with ``send(frame)`` and ``expect(kind, timeout=, ref=)``: the in-process
    ``SocketClient`` of tests/socket, or ``WsClient`` above.
    """

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.pcs: list[Any] = []
        self.ref = 0

    def _ref(self) -> int:
        self.ref += 1
        return self.ref

    async def publish(self) -> None:
        from aiortc import RTCSessionDescription

        from tests.media_server.ms_helpers import PatternVideoTrack, ToneAudioTrack

        pc = new_pc()
        self.pcs.append(pc)
        pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
        pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        ref = self._ref()
        await self.sock.send({"type": "offer", "pc": "camera", "sdp": pc.localDescription.sdp, "ref": ref})
        answer = await self.sock.expect("answer", timeout=15, ref=ref)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def subscribe_video(self, publisher: str) -> Any:
        """Subscribe (again, until the publisher's tracks are there); returns the publisher's video track."""
        from aiortc import RTCSessionDescription

        for _ in range(50):
            ref = self._ref()
            await self.sock.send({"type": "subscribe", "ref": ref})
            offer = await self.sock.expect("offer", timeout=15, ref=ref)
            if offer["sdp"] is not None:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the publisher's tracks never appeared")
        pc = new_pc()
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.sock.send(
            {"type": "answer", "pc": "subscribe", "sdp": pc.localDescription.sdp, "revision": offer["revision"]}
        )
        mid = next(t["mid"] for t in offer["tracks"] if t["participant"] == publisher and t["kind"] == "video")
        return next(t for t in pc.getTransceivers() if t.mid == mid).receiver.track

    async def drop_media(self) -> None:
        for pc in self.pcs:
            await pc.close()
        self.pcs.clear()
