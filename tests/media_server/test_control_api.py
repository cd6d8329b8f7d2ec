"""Control API: auth, validation, protocol version, unknown resources, events."""

from __future__ import annotations

import asyncio

import pytest
from ms_helpers import AUTH, PublisherClient, SubscriberClient, until

from media_server import signing

BASE = "/v1/rooms/r1/participants/alice"


@pytest.mark.asyncio
async def test_missing_or_wrong_secret_is_401(media) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "test-secret"}):
        resp = await media.http.get("/v1/health", headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


@pytest.mark.asyncio
async def test_health(media) -> None:
    resp = await media.http.get("/v1/health", headers=AUTH)
    body = await resp.json()
    assert resp.status == 200
    assert body | {} == {
        **body,
        "protocol": 1,
        "status": "ok",
        "node": "test-node",
        "rooms": 0,
        "peers": 0,
        "forwarded_packets": 0,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"protocol": 1, "pc": "camera", "sdp": "hello"}, 400, "invalid_sdp"),
        (
            {"protocol": 1, "pc": "camera", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"},
            400,
            "invalid_sdp",
        ),
        ({"protocol": 1, "pc": "camera", "sdp": 42}, 400, "bad_request"),
        ({"protocol": 1, "pc": "webcam", "sdp": "v=0"}, 400, "bad_request"),
        ({"protocol": 2, "pc": "camera", "sdp": "v=0"}, 409, "protocol_mismatch"),
        ([1, 2], 400, "bad_request"),
    ],
)
async def test_publish_rejects_bad_input(media, body, status, code) -> None:
    resp = await media.http.post(BASE + "/publish", json=body, headers=AUTH)
    payload = await resp.json()
    assert resp.status == status, payload
    assert payload["error"]["code"] == code
    assert set(payload["error"]) == {"code", "message", "details"}


@pytest.mark.asyncio
async def test_body_that_is_not_json_is_bad_request(media) -> None:
    resp = await media.http.post(BASE + "/publish", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"


@pytest.mark.asyncio
async def test_publish_without_common_codec_is_422(media) -> None:
    client = PublisherClient(media.http, "r1", "alice", video=False)
    client.pc.addTransceiver(client.audio, direction="sendonly")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    sdp = client.pc.localDescription.sdp
    # keep only a codec aiortc does not implement (iLBC on PT 102)
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("m=audio"):
            line = " ".join([*line.split(" ")[:3], "102"])
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        lines.append(line)
        if line.startswith("m=audio"):
            lines.append("a=rtpmap:102 iLBC/8000")
    resp = await media.http.post(
        BASE + "/publish", json={"protocol": 1, "pc": "camera", "sdp": "\r\n".join(lines)}, headers=AUTH
    )
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["code"] == "no_common_codec"
    await client.close()


@pytest.mark.asyncio
async def test_unknown_room_and_participant_are_404(media) -> None:
    cases = [
        ("delete", "/v1/rooms/nope", None, "room_not_found"),
        ("delete", "/v1/rooms/nope/participants/x", None, "room_not_found"),
        (
            "post",
            "/v1/rooms/nope/participants/x/subscribe/answer",
            {"protocol": 1, "sdp": "v=0", "revision": 1},
            "room_not_found",
        ),
        (
            "post",
            "/v1/rooms/nope/participants/x/ice",
            {"protocol": 1, "pc": "camera", "candidate": None},
            "room_not_found",
        ),
    ]
    for method, path, body, code in cases:
        resp = await getattr(media.http, method)(path, json=body, headers=AUTH)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == code
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    resp = await media.http.delete("/v1/rooms/r1/participants/ghost", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "participant_not_found"
    resp = await media.http.delete("/v1/rooms/r1/participants/bob/publish/camera", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "peer_not_found"
    resp = await media.http.post(
        "/v1/rooms/r1/participants/bob/ice", json={"protocol": 1, "pc": "screen", "candidate": None}, headers=AUTH
    )
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "peer_not_found"
    await sub.close()


@pytest.mark.asyncio
async def test_stale_revision_is_409(media) -> None:
    resp = await media.http.post("/v1/rooms/r1/participants/bob/subscribe", json={"protocol": 1}, headers=AUTH)
    offer = await resp.json()
    resp = await media.http.post(
        "/v1/rooms/r1/participants/bob/subscribe/answer",
        json={"protocol": 1, "sdp": "v=0\r\n", "revision": offer["revision"] + 5},
        headers=AUTH,
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "stale_revision"


@pytest.mark.asyncio
async def test_ice_endpoint_accepts_candidates(media) -> None:
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    cand = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    resp = await media.http.post(BASE + "/ice", json={"protocol": 1, "pc": "camera", "candidate": cand}, headers=AUTH)
    assert resp.status == 204, await resp.text()
    resp = await media.http.post(BASE + "/ice", json={"protocol": 1, "pc": "camera", "candidate": None}, headers=AUTH)
    assert resp.status == 204
    resp = await media.http.post(
        BASE + "/ice", json={"protocol": 1, "pc": "camera", "candidate": {"candidate": 5}}, headers=AUTH
    )
    assert resp.status == 400
    await pub.close()


@pytest.mark.asyncio
async def test_events_posted_to_django_with_secret(media, fake_django) -> None:
    """publication, peer_state and subscribe_offer events reach the fake Django endpoint."""
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    started = await fake_django.wait_for(lambda e: e["type"] == "publication")
    assert started == {
        "type": "publication",
        "room": "r1",
        "participant": "alice",
        "pc": "camera",
        "state": "started",
        "sources": ["microphone", "camera"],
    }
    connected = await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e["state"] == "connected")
    assert connected["pc"] == "camera" and connected["participant"] == "alice"
    assert fake_django.batches[0]["protocol"] == 1 and fake_django.batches[0]["node"] == "test-node"
    for header, body in zip(fake_django.auth, fake_django.bodies, strict=True):  # signed: docs/protocol.md §2
        assert signing.verify_signature("test-secret", "POST", "/internal/media/v1/events", body, header or "") is None
    resp = await media.http.delete(BASE + "/publish/camera", headers=AUTH)
    assert resp.status == 204
    await fake_django.wait_for(lambda e: e["type"] == "publication" and e["state"] == "stopped")
    await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e["state"] == "closed")
    await pub.close()


@pytest.mark.asyncio
async def test_event_sink_retries_then_delivers(fake_django) -> None:
    """Non-2xx answers are retried with backoff; the queue drops oldest when full."""
    from media_server.events import EventSink

    fake_django.status = 503
    sink = EventSink(url=fake_django.url, secret="s", node_id="n", backoff=0.05, max_queue=3)
    sink.start()
    sink.emit({"type": "x", "room": "r", "n": 0})
    # Wait (bounded) for a second attempt rather than sleeping ~2 backoffs: on a busy machine the first
    # retry can come much later than 0.05 s, but it must come, and nothing may be delivered meanwhile.
    assert await until(lambda: len(fake_django.auth) >= 2, timeout=10, interval=0.02)
    assert not fake_django.batches
    fake_django.status = 204
    # The next attempt comes after the current backoff (doubling, at most max_backoff = 5 s if the loop above
    # took long), then the POST itself: a bound well past that.
    await fake_django.wait_for(lambda e: e["n"] == 0, timeout=30)
    await sink.close()
    full = EventSink(url=fake_django.url, secret="s", node_id="n", max_queue=3)
    for i in range(5):
        full.emit({"type": "x", "room": "r", "n": i})
    assert full.dropped == 2 and full.pending == 3
    await full.close()


@pytest.mark.asyncio
async def test_work_the_caller_gave_up_on_is_not_done(media) -> None:
    """A publish still waiting for its busy room when the caller's X-Conference-Timeout passes is refused
    (request_expired) instead of adding a connection nobody will use; in time, it is done as usual."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    body = {"protocol": 1, "pc": "camera", "sdp": pc.localDescription.sdp}
    room = media.service._room("r1", create=True)
    async with room.lock:  # the room is busy (another join, a re-offer pass)
        late = asyncio.ensure_future(
            media.http.post(BASE + "/publish", json=body, headers={**AUTH, "X-Conference-Timeout": "0.05"})
        )
        await asyncio.sleep(0.2)
    resp = await late
    payload = await resp.json()
    assert resp.status == 503 and payload["error"]["code"] == "request_expired", payload
    assert "alice" not in room.participants or not room.participants["alice"].publishers
    resp = await media.http.post(BASE + "/publish", json=body, headers={**AUTH, "X-Conference-Timeout": "10"})
    assert resp.status == 200, await resp.text()
    for bad in ("soon", "0", "-1", "1e9"):
        resp = await media.http.post(BASE + "/publish", json=body, headers={**AUTH, "X-Conference-Timeout": bad})
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request", bad
    await pc.close()
