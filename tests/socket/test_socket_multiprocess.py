"""Presence across two real daphne processes sharing Redis and one database.

Black-box: REST over HTTP, WebSockets with aiohttp's client. The database is
a fresh PostgreSQL database when DATABASE_URL is set, else a SQLite file.
Needs a real Redis (marked ``redis``: deselected outside CI when none is reachable).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import redis_delete_prefix, redis_test_prefix, redis_test_url

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    redis_url = redis_test_url()
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
        "PRESENCE_TIMEOUT_SECONDS": "2",
        "PRESENCE_TOUCH_INTERVAL_SECONDS": "0.3",
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{_free_port()}",
        "MEDIA_CONTROL_TIMEOUT_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    database_url = os.environ.get("DATABASE_URL")
    dbname = f"conference_mp_{tag}"
    if database_url:
        import psycopg

        admin = database_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        env["DATABASE_URL"] = database_url.rsplit("/", 1)[0] + "/" + dbname
    else:
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(tmp_path / "mp.sqlite3")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    yield env
    redis_delete_prefix(prefix)
    if database_url:
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


class Daphne:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        daphne = str(Path(sys.executable).parent / "daphne")
        self.proc = subprocess.Popen(
            [daphne, "-b", "127.0.0.1", "-p", str(self.port), "conference.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(200):
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                async with http.get(self.base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("daphne did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WsClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            while True:
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket ended ({message.type}, {message.data}) waiting for {kind}")
                frame: dict[str, Any] = json.loads(message.data)
                if frame["type"] == "ping":
                    await self.send({"type": "pong"})
                elif frame["type"] == kind:
                    return frame

        return await asyncio.wait_for(read(), timeout)


@pytest.fixture
async def cluster(cluster_env: dict[str, str]) -> AsyncIterator[tuple[Daphne, Daphne, aiohttp.ClientSession]]:
    a, b = Daphne(cluster_env), Daphne(cluster_env)
    http = aiohttp.ClientSession()
    try:
        await asyncio.gather(a.ready(http), b.ready(http))
        yield a, b, http
    finally:
        await http.close()
        a.stop()
        b.stop()


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def _open(http: aiohttp.ClientSession, node: Daphne, room_id: str, token: str) -> tuple[WsClient, dict[str, Any]]:
    ws = await http.ws_connect(f"ws://127.0.0.1:{node.port}/ws/rooms/{room_id}/", origin=node.base)
    client = WsClient(ws)
    await client.send({"type": "join", "token": token, "protocol": 1})
    return client, await client.expect("room_snapshot")


async def test_presence_and_chat_cross_processes_and_a_killed_process_is_swept(cluster: Any) -> None:
    a, b, http = cluster
    me = await _post(http, a.base + "/api/v1/auth/register", {"username": "mphost", "password": "a-long-pass-987"})
    room = await _post(http, a.base + "/api/v1/rooms", {"name": "Two processes"}, me["access"])
    room_id = room["roomId"]
    host_grant = await _post(http, a.base + f"/api/v1/rooms/{room_id}/join", {}, me["access"])
    host, _ = await _open(http, a, room_id, host_grant["token"])

    guest_grant = await _post(http, b.base + f"/api/v1/rooms/{room_id}/join", {"display_name": "On B"})
    guest, snap = await _open(http, b, room_id, guest_grant["token"])
    assert {p["participantId"] for p in snap["participants"]} == {
        host_grant["participantId"],
        guest_grant["participantId"],
    }
    joined = await host.expect("participant_joined")
    assert joined["participant"]["participantId"] == guest_grant["participantId"]

    await guest.send({"type": "chat_send", "client_id": "x", "text": "hello from B"})
    assert (await guest.expect("chat_ack"))["seq"] == 1
    assert (await host.expect("chat_message"))["message"]["text"] == "hello from B"

    await guest.ws.close()
    left = await host.expect("participant_left")
    assert (left["participantId"], left["reason"]) == (guest_grant["participantId"], "left")

    # A participant on B, then B dies without closing anything: A's live socket sweeps them out.
    doomed_grant = await _post(http, b.base + f"/api/v1/rooms/{room_id}/join", {"display_name": "Doomed"})
    doomed, _ = await _open(http, b, room_id, doomed_grant["token"])
    await host.expect("participant_joined")
    b.stop(signal.SIGKILL)
    left = await host.expect("participant_left", timeout=15)
    assert (left["participantId"], left["reason"]) == (doomed_grant["participantId"], "timeout")
    await host.ws.close()
    await doomed.ws.close()
