"""Room socket fixtures: a socket client on the real ASGI application, rooms, grants, a fake media server."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections

ORIGIN = (b"origin", b"http://localhost")
TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SocketClient:
    """A WebSocket client on ``conference.asgi.application`` that reads frames by type."""

    def __init__(self, room_id: str, token: str | None = None, *, cookie: str | None = None) -> None:
        from conference.asgi import application

        headers = [ORIGIN]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        self.room_id = room_id
        self.token = token
        self.comm = WebsocketCommunicator(application, f"/ws/rooms/{room_id}/", headers=headers)
        self.pending: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.connected = False
        self.auto_pong = False  # answer server pings inside reads (and hide them)

    async def connect(self) -> None:
        connected, _ = await self.comm.connect(timeout=TIMEOUT)
        assert connected
        self.connected = True

    async def join(self, *, last_seq: int | None = None, expect: str = "room_snapshot") -> dict[str, Any]:
        """Connect, send the join frame, and return the first frame of type ``expect``."""
        await self.connect()
        frame: dict[str, Any] = {"type": "join", "token": self.token, "protocol": 1}
        if last_seq is not None:
            frame["last_seq"] = last_seq
        await self.send(frame)
        return await self.expect(expect)

    async def send(self, frame: Any) -> None:
        await self.comm.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def _next(self, timeout: float) -> dict[str, Any]:
        if self.pending:
            return self.pending.pop(0)
        while True:
            output = await self.comm.receive_output(timeout)
            if output["type"] == "websocket.close":
                self.close_code = output.get("code")
                return {"type": "__closed__", "code": self.close_code}
            frame: dict[str, Any] = json.loads(output["text"])
            if self.auto_pong and frame["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            return frame

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await self._next(timeout)

    async def expect(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """The next frame of type ``kind`` (matching ``match``); frames skipped on the way are kept."""
        skipped: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                frame = await self._next(max(0.01, deadline - loop.time()))
                if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                    return frame
                if frame["type"] == "__closed__":
                    raise AssertionError(f"socket closed ({frame['code']}) while waiting for {kind}; saw {skipped}")
                skipped.append(frame)
        except TimeoutError:
            raise AssertionError(f"no {kind} frame within {timeout}s; saw {skipped}") from None
        finally:
            self.pending[:0] = skipped

    async def expect_closed(self, code: int, timeout: float = TIMEOUT) -> None:
        await self.expect("__closed__", timeout=timeout)
        assert self.close_code == code, f"closed with {self.close_code}, expected {code}"

    async def nothing(self, timeout: float = 0.3, ignore: tuple[str, ...] = ()) -> None:
        """Assert no frame (other than ``ignore`` types) arrives within ``timeout``."""
        assert not [f for f in self.pending if f["type"] not in ignore], self.pending
        # receive_nothing, unlike a timed-out receive_output, leaves the application running.
        while not await self.comm.receive_nothing(timeout):
            output = await self.comm.receive_output(TIMEOUT)
            if output["type"] == "websocket.send" and json.loads(output["text"])["type"] in ignore:
                continue
            raise AssertionError(f"unexpected output {output}")

    async def close(self) -> None:
        if self.connected:
            self.connected = False
            await self.comm.disconnect()


@dataclass
class RoomWorld:
    """Creates rooms, users and grants (through the real services) and opens sockets on them."""

    clients: list[SocketClient] = field(default_factory=list)
    counter: int = 0

    async def user(self, name: str | None = None) -> Any:
        from django.contrib.auth import get_user_model

        self.counter += 1
        username = name or f"sock{self.counter}-{uuid.uuid4().hex[:8]}"
        return await sync_to_async(get_user_model().objects.create_user)(username=username, password="pw-12345-long")

    async def room(self, host: Any = None, **options: Any) -> Any:
        from rooms import services

        host = host or await self.user()
        room = await sync_to_async(services.room_create)(host=host, name="Socket room", **options)
        room.host_user = host
        return room

    async def grant(self, room: Any, user: Any = None, *, name: str = "", password: str = "") -> Any:
        """A REST-equivalent join (services.participant_join): ``.participant`` and ``.token``."""
        from django.contrib.auth.models import AnonymousUser

        from rooms import services

        return await sync_to_async(services.participant_join)(
            room_id=room.public_id,
            user=user or AnonymousUser(),
            display_name=name or ("" if user else f"Guest{self.counter}"),
            password=password,
        )

    def socket(self, room: Any, token: str | None, *, cookie: str | None = None) -> SocketClient:
        client = SocketClient(room.public_id, token, cookie=cookie)
        self.clients.append(client)
        return client

    async def member(self, room: Any, user: Any = None, *, name: str = "") -> tuple[SocketClient, dict[str, Any]]:
        """Join over REST-equivalent service and socket; returns the client and its room_snapshot."""
        self.counter += 1
        result = await self.grant(room, user, name=name)
        client = self.socket(room, result.token)
        snapshot = await client.join()
        client.participant_id = result.participant.public_id  # type: ignore[attr-defined]
        return client, snapshot

    async def host(self, room: Any) -> tuple[SocketClient, dict[str, Any]]:
        return await self.member(room, room.host_user)

    async def close(self) -> None:
        for client in self.clients:
            try:
                await client.close()
            except Exception:  # noqa: S110 - teardown of an already-broken socket
                pass


@pytest.fixture(scope="session", autouse=True)
def _close_sync_thread_connections(django_db_setup: Any) -> Any:
    """The process's sync threads keep their database connections (conference/sync_threads.py): close them before
    the test database is dropped (this fixture is torn down before ``django_db_setup``)."""
    yield
    from rooms.routing import sync_threads

    sync_threads.close_connections()


@pytest.fixture(autouse=True)
def _socket_settings(settings: Any) -> None:
    # No media server unless a test starts the fake one: a closed local port fails fast.
    settings.MEDIA_CONTROL_URL = f"http://127.0.0.1:{free_port()}"
    settings.MEDIA_CONTROL_TIMEOUT_SECONDS = 2.0


@pytest.fixture
async def world() -> AsyncIterator[RoomWorld]:
    from rooms.routing import media_client, media_monitor

    # A fresh channel layer per test: its locks and connection pools belong to this test's event loop.
    channel_layers.backends.clear()
    w = RoomWorld()
    yield w
    await w.close()
    await media_monitor.close()
    await media_client.close()
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        await layer.flush()
    elif hasattr(layer, "close_pools"):
        await layer.close_pools()
    channel_layers.backends.clear()
    # The consumers' DB thread keeps persistent connections (CONN_MAX_AGE); let the test DB go.
    await sync_to_async(connections.close_all)()


@dataclass
class FakeMedia:
    """Records control requests; ``responses`` maps (method, suffix) to (status, body); a request matching a key
    of ``gates`` is recorded at once but answered only once that event is set."""

    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    responses: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    gates: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    def paths(self, method: str | None = None) -> list[str]:
        return [path for m, path, _ in self.requests if method is None or m == method]

    async def wait_for(self, predicate: Callable[[FakeMedia], bool], timeout: float = TIMEOUT) -> None:
        async def loop() -> None:
            while not predicate(self):
                self.seen.clear()
                await self.seen.wait()

        await asyncio.wait_for(loop(), timeout)


@pytest.fixture
async def fake_media(settings: Any) -> AsyncIterator[FakeMedia]:
    from django.conf import settings as live

    from media_server import signing

    fake = FakeMedia()
    replays = signing.ReplayGuard()

    async def handler(request: web.Request) -> web.Response:
        body_bytes = await request.read()
        header = request.headers.get("Authorization", "")
        if signing.verify(live.MEDIA_SECRET, request.method, request.raw_path, body_bytes, header, guard=replays):
            return web.json_response({"error": {"code": "unauthorized", "message": "", "details": {}}}, status=401)
        # Django tells the media server when it gives up, so a busy room skips work nobody waits for.
        assert request.headers.get("X-Conference-Timeout") == str(live.MEDIA_CONTROL_TIMEOUT_SECONDS)
        body = json.loads(body_bytes) if body_bytes else None
        fake.requests.append((request.method, request.path, body))
        fake.seen.set()
        for (method, suffix), gate in fake.gates.items():
            if method == request.method and request.path.endswith(suffix):
                await gate.wait()
        for (method, suffix), (status, payload) in fake.responses.items():
            if method == request.method and request.path.endswith(suffix):
                return web.json_response(payload, status=status)
        if request.method == "DELETE":
            return web.Response(status=204)
        return web.json_response({"protocol": 1})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    settings.MEDIA_CONTROL_URL = f"http://127.0.0.1:{server.port}"
    yield fake
    await server.close()


SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
)


@pytest.fixture
def sdp() -> str:
    return SDP
