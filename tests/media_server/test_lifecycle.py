"""Peer failure/silence cleanup and room close."""

from __future__ import annotations

import asyncio

import pytest
from ms_helpers import AUTH, PublisherClient, SubscriberClient, recv_frames


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"peer_silence_timeout": 2.5}], indirect=True)
async def test_silent_publisher_is_closed_and_reported(media, fake_django) -> None:
    """A publisher that stops sending anything is closed after the silence timeout."""
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 2)
    await pub.close()  # vanishes (its DTLS close_notify counts as the last packet)
    failed = await fake_django.wait_for(
        lambda e: e["type"] == "peer_state" and e["state"] == "failed" and e["participant"] == "alice", timeout=8
    )
    assert failed["pc"] == "camera" and failed["reason"] == "silent"
    await fake_django.wait_for(lambda e: e["type"] == "publication" and e["state"] == "stopped", timeout=5)
    offer = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob", timeout=5
    )
    assert offer["tracks"] == []
    assert "camera" not in media.service.rooms["r1"].participants["alice"].publishers
    await sub.close()


@pytest.mark.asyncio
async def test_failed_ice_closes_peer(media, fake_django) -> None:
    """A connection whose ICE/DTLS fails is closed and Django is told."""
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    publisher = media.service.rooms["r1"].participants["alice"].publishers["camera"]
    await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e["state"] == "connected")
    publisher.pc.emit("connectionstatechange")  # no-op while connected
    publisher.pc._RTCPeerConnection__connectionState = "failed"  # simulate ICE failure
    publisher.pc.emit("connectionstatechange")
    event = await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e["state"] == "failed")
    assert event["reason"] == "ice_or_dtls_failed"
    await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e["state"] == "closed")
    assert media.service.rooms["r1"].participants["alice"].publishers == {}
    await pub.close()


@pytest.mark.asyncio
async def test_room_close_leaves_no_tasks(media, fake_django) -> None:
    """DELETE /v1/rooms/{room} closes every connection and task of the room."""
    await asyncio.sleep(0.1)
    before = set(asyncio.all_tasks())
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 2)
    room = media.service.rooms["r1"]
    pcs = [p.pc for part in room.participants.values() for p in part.publishers.values()] + [
        room.participants["bob"].subscriber.pc
    ]
    await pub.close()
    await sub.close()
    resp = await media.http.delete("/v1/rooms/r1", headers=AUTH)
    assert resp.status == 204
    assert media.service.rooms == {}
    assert all(pc.connectionState == "closed" for pc in pcs)
    await asyncio.sleep(0.2)
    leftover = [
        t
        for t in asyncio.all_tasks() - before
        if not t.done()
        and t is not asyncio.current_task()
        # the test HTTP client's keep-alive handlers belong to the test server, not the room
        and not t.get_coro().__qualname__.startswith("RequestHandler.")
    ]
    assert leftover == [], [t.get_coro() for t in leftover]
