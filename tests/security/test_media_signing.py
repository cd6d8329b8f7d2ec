"""Media control requests are signed (issue 18 item 6; docs/protocol.md §2, version 2).

Before: a static bearer secret, so a captured request could be replayed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from media_server import signing
from media_server.control import create_app
from media_server.events import EventSink
from media_server.service import MediaService

SECRET = "k" * 40


def test_signature_binds_method_path_body_and_time():
    body = b'{"protocol": 1}'
    header = signing.sign(SECRET, "POST", "/v1/rooms/r/participants/p/subscribe", body)
    check = signing.verify
    assert (
        check(SECRET, "POST", "/v1/rooms/r/participants/p/subscribe", body, header, guard=signing.ReplayGuard()) is None
    )
    for method, path, data, secret in [
        ("PUT", "/v1/rooms/r/participants/p/subscribe", body, SECRET),
        ("POST", "/v1/rooms/r/participants/q/subscribe", body, SECRET),
        ("POST", "/v1/rooms/r/participants/p/subscribe", b'{"protocol": 2}', SECRET),
        ("POST", "/v1/rooms/r/participants/p/subscribe", body, "x" * 40),
    ]:
        assert check(secret, method, path, data, header, guard=signing.ReplayGuard()) == "unauthorized"
    assert check(SECRET, "POST", "/", b"", "Bearer " + SECRET, guard=signing.ReplayGuard()) == "unauthorized"


def test_skew_over_thirty_seconds_and_replays_are_refused():
    now = time.time()
    guard = signing.ReplayGuard()
    old = signing.sign(SECRET, "DELETE", "/v1/rooms/r", now=now - 31)
    assert signing.verify(SECRET, "DELETE", "/v1/rooms/r", b"", old, guard=guard, now=now) == "stale_request"
    ahead = signing.sign(SECRET, "DELETE", "/v1/rooms/r", now=now + 31)
    assert signing.verify(SECRET, "DELETE", "/v1/rooms/r", b"", ahead, guard=guard, now=now) == "stale_request"
    fresh = signing.sign(SECRET, "DELETE", "/v1/rooms/r", now=now - 20)  # well inside the window
    assert signing.verify(SECRET, "DELETE", "/v1/rooms/r", b"", fresh, guard=guard, now=now) is None
    assert signing.verify(SECRET, "DELETE", "/v1/rooms/r", b"", fresh, guard=guard, now=now + 1) == "replayed_request"


def test_replay_guard_is_bounded():
    guard = signing.ReplayGuard(max_size=3)
    for n in range(10):
        assert guard.first_time(f"s{n}", 0.0)
    assert len(guard._seen) <= 3


@pytest.fixture
async def control() -> AsyncIterator[TestClient]:
    events = EventSink(url="http://127.0.0.1:9/closed", secret=SECRET, node_id="n")
    from media_server.config import Config

    service = MediaService(Config(secret=SECRET, ice_addresses=("127.0.0.1",)), events)
    client = TestClient(TestServer(create_app(service, SECRET), host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()
    await service.close()


async def test_control_api_takes_signed_requests_and_refuses_bearer_and_replays(control):
    path = "/v1/drain"
    body = json.dumps({"protocol": 1, "draining": True}).encode()
    signed = {"Authorization": signing.sign(SECRET, "POST", path, body), "Content-Type": "application/json"}
    r = await control.post(path, data=body, headers=signed)
    assert r.status == 200 and (await r.json())["draining"] is True
    undrain = json.dumps({"protocol": 1, "draining": False}).encode()
    headers = {"Authorization": signing.sign(SECRET, "POST", path, undrain), "Content-Type": "application/json"}
    r = await control.post(path, data=undrain, headers=headers)
    assert r.status == 200 and (await r.json())["draining"] is False  # the handler saw the signed body
    r = await control.post(path, data=body, headers=signed)  # the same request again
    assert r.status == 401 and (await r.json())["error"]["code"] == "replayed_request"
    r = await control.post(path, data=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    tampered = body.replace(b"true", b"false")
    r = await control.post(
        path, data=tampered, headers={**signed, "Authorization": signing.sign(SECRET, "POST", "/v1/x", body)}
    )
    assert r.status == 401
    stale = signing.sign(SECRET, "POST", path, body, now=time.time() - 60)
    r = await control.post(path, data=body, headers={"Authorization": stale, "Content-Type": "application/json"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "stale_request"
    # Read-only routes still take the bearer secret (monitoring, health checks).
    assert (await control.get("/v1/health", headers={"Authorization": f"Bearer {SECRET}"})).status == 200


async def test_operator_cli_sends_a_signed_request(control, monkeypatch, capsys):
    import asyncio

    monkeypatch.setenv("MEDIA_SECRET", SECRET)
    url = str(control.make_url("/v1/drain"))
    code = await asyncio.to_thread(signing.main, ["post", url, '{"protocol": 1, "draining": true}'])
    assert code == 0 and '"draining": true' in capsys.readouterr().out


# --- Event batches (media -> Django) are signed the same way ------------------------------------------------


@pytest.mark.django_db
def test_django_takes_signed_event_batches_and_refuses_bearer_stale_altered_and_replayed(settings):
    from django.test import Client

    from tests.conftest import MEDIA_EVENTS_PATH, media_events_request

    client = Client()

    def post(body: str, authorization: str) -> tuple[int, str | None]:
        r = client.post(MEDIA_EVENTS_PATH, body, content_type="application/json", HTTP_AUTHORIZATION=authorization)
        return r.status_code, r.json()["error"]["code"] if r.status_code != 204 else None

    body, headers = media_events_request({"protocol": 1, "events": []})
    assert post(body, headers["Authorization"]) == (204, None)
    assert post(body, headers["Authorization"]) == (401, "replayed_request")  # captured and sent again
    assert post(body, f"Bearer {settings.MEDIA_SECRET}") == (401, "unauthorized")  # version 1: no more
    assert post(body, "") == (401, "unauthorized")
    _, other = media_events_request({"protocol": 1, "events": []})
    altered = body.replace("[]", '[{"type": "recording_failed", "room": "r", "recording": "x"}]')
    assert post(altered, other["Authorization"]) == (401, "unauthorized")
    for skew in (-31, 31):
        stale = signing.sign(settings.MEDIA_SECRET, "POST", MEDIA_EVENTS_PATH, body.encode(), now=time.time() + skew)
        assert post(body, stale) == (401, "stale_request")
    wrong_path = signing.sign(settings.MEDIA_SECRET, "POST", "/v1/drain", body.encode())
    assert post(body, wrong_path) == (401, "unauthorized")
    signed_elsewhere = signing.sign("x" * 40, "POST", MEDIA_EVENTS_PATH, body.encode())
    assert post(body, signed_elsewhere) == (401, "unauthorized")


async def test_media_server_signs_each_attempt_of_an_event_batch_afresh():
    """A batch retried after a failure carries a new signature (a retry is not a replay), each one valid."""
    from aiohttp import web

    seen: list[tuple[str, bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization", ""), await request.read()))
        return web.Response(status=503 if len(seen) == 1 else 204)  # the first attempt fails

    app = web.Application()
    app.router.add_post("/internal/media/v1/events", receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sink = EventSink(url=str(server.make_url("/internal/media/v1/events")), secret=SECRET, node_id="n", backoff=0.05)
    sink.start()
    try:
        sink.emit({"type": "recording_stopped", "room": "r", "recording": "x"})
        for _ in range(200):
            if sink.delivered:
                break
            await asyncio.sleep(0.05)
    finally:
        await sink.close()
        await server.close()
    assert sink.delivered == 1 and len(seen) == 2
    guard = signing.ReplayGuard()
    for header, body in seen:
        assert signing.verify(SECRET, "POST", "/internal/media/v1/events", body, header, guard=guard) is None
