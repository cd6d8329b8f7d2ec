"""Peer failure/silence cleanup and room close."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection
from ms_helpers import (
    AUTH,
    PatternVideoTrack,
    PublisherClient,
    SubscriberClient,
    ToneAudioTrack,
    new_pc,
    recv_frames,
)

from media_server.participant import peer_dtls


async def alice_to_bob(media) -> tuple[PublisherClient, SubscriberClient]:
    """Alice publishes in room r1, Bob subscribes and has received two of her camera frames."""
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 2)
    return pub, sub


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"peer_silence_timeout": 2.5}], indirect=True)
async def test_silent_publisher_is_closed_and_reported(media, fake_django) -> None:
    """A publisher that stops sending anything is closed after the silence timeout."""
    pub, sub = await alice_to_bob(media)
    for protocol in peer_dtls(pub.pc).transport._connection._protocols:
        protocol.transport.close()  # vanishes without a word (no DTLS close_notify: that ends the connection at once)
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
    await pub.close()
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
    pub, sub = await alice_to_bob(media)
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


@pytest.mark.asyncio
async def test_connection_closed_by_ice_consent_expiry_is_failed_and_detached(media, fake_django) -> None:
    """A subscribe connection that aiortc closes by itself (ICE consent expired: aioice closes the ICE
    connection, DTLS ends, the peer connection closes) is reported failed (``connection_closed``) and
    closed, and its m-lines stop being fed (no forwarding into a dead transport, counted as dropped packets)."""
    pub, sub = await alice_to_bob(media)
    room = media.service.rooms["r1"]
    subscriber = room.participants["bob"].subscriber
    downstreams = [slot.downstream for slot in subscriber.slots]
    await peer_dtls(subscriber.pc).transport._connection.close()  # what aioice does when consent expires
    failed = await fake_django.wait_for(
        lambda e: e["type"] == "peer_state" and e["state"] == "failed" and e["participant"] == "bob", timeout=5
    )
    assert failed["pc"] == "subscribe" and failed["reason"] == "connection_closed"
    await fake_django.wait_for(
        lambda e: e["type"] == "peer_state" and e["state"] == "closed" and e["participant"] == "bob", timeout=5
    )
    assert subscriber.pc.connectionState == "closed"
    assert room.participants["bob"].subscriber is None
    forwarders = [f for track in room.local_tracks() for f in track.all_layers]
    assert not any(d in f.downstreams for f in forwarders for d in downstreams)

    # The client subscribes again (call.js does on `failed`); replacing that connection is no failure.
    sub2 = SubscriberClient(media.http, "r1", "bob")
    await sub2.start()
    await recv_frames(sub2.track("alice", "camera"), 2)
    mark = len(fake_django.events)
    sub3 = SubscriberClient(media.http, "r1", "bob")
    await sub3.start()  # replaces (and closes) sub2's server side: "closed replaced", not "failed"
    await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e.get("reason") == "replaced", start=mark)
    await asyncio.sleep(0.3)
    assert not [e for e in fake_django.events[mark:] if e["type"] == "peer_state" and e["state"] == "failed"]
    for client in (pub, sub, sub2, sub3):
        await client.close()


@pytest.mark.asyncio
async def test_publisher_closing_dtls_fails_its_publication_at_once(media, fake_django) -> None:
    """A publisher whose client closes its connection (DTLS close_notify) is unpublished at once
    (``failed connection_closed``), not after the 30 s silence timeout."""
    pub, sub = await alice_to_bob(media)
    await pub.close()
    failed = await fake_django.wait_for(
        lambda e: e["type"] == "peer_state" and e["state"] == "failed" and e["participant"] == "alice", timeout=5
    )
    assert failed["pc"] == "camera" and failed["reason"] == "connection_closed"
    await fake_django.wait_for(lambda e: e["type"] == "publication" and e["state"] == "stopped", timeout=5)
    assert media.service.rooms["r1"].participants["alice"].publishers == {}
    await sub.close()


async def camera_offer() -> tuple[RTCPeerConnection, str]:
    """A client connection offering a camera and a microphone (sendonly), and its offer SDP."""
    pc = new_pc()
    for track in (ToneAudioTrack(), PatternVideoTrack()):
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


@pytest.mark.asyncio
async def test_a_publisher_is_answered_before_the_others_are_reoffered_and_a_burst_reoffers_once(media) -> None:
    """Joining must not wait for everyone else's renegotiation: the publish answer comes first, then one
    renegotiation (after the lock is free) covers every publication that arrived meanwhile."""
    pub, sub = await alice_to_bob(media)
    room = media.service.rooms["r1"]
    emitted: list[dict] = []
    emit = room._emit
    room._emit = lambda event: (emitted.append(event), emit(event))[1]
    carol_pc, carol_sdp = await camera_offer()
    dave_pc, dave_sdp = await camera_offer()
    offers = [e for e in emitted if e["type"] == "subscribe_offer"]

    assert await media.service.publish(room="r1", participant="carol", pc="camera", sdp=carol_sdp)
    assert [e for e in emitted if e["type"] == "subscribe_offer"] == offers  # answered; nobody re-offered yet
    assert await media.service.publish(room="r1", participant="dave", pc="camera", sdp=dave_sdp)
    for _ in range(100):
        offers = [e for e in emitted if e["type"] == "subscribe_offer" and e["participant"] == "bob"]
        if offers:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    offers = [e for e in emitted if e["type"] == "subscribe_offer" and e["participant"] == "bob"]
    assert len(offers) == 1, offers  # one re-offer for both newcomers
    assert {t["participant"] for t in offers[0]["tracks"]} == {"alice", "carol", "dave"}
    for pc in (carol_pc, dave_pc, pub.pc, sub.pc):
        await pc.close()
