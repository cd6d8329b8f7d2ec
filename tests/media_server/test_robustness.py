"""Codec coverage (H.264, RTX from the publisher) and negotiation robustness, end to end on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from ms_helpers import PublisherClient, SubscriberClient, published_tracks, recv_frames

AUTH = {"Authorization": "Bearer test-secret"}


@pytest.mark.asyncio
async def test_h264_is_forwarded_and_decodes(media) -> None:
    """An H.264-only publisher reaches a subscriber as decodable H.264 (nothing transcoded)."""
    pub = PublisherClient(media.http, "r1", "alice", audio=False, video_codec="H264")
    answer = await pub.start()
    assert "H264/90000" in answer["sdp"] and "VP8/90000" not in answer["sdp"]
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    frames = await recv_frames(sub.track("alice", "camera"), 5)
    assert frames[0].width == 160 and frames[0].height == 120
    (track,) = published_tracks(media)
    assert track.forwarder.codec is not None and track.forwarder.codec.mimeType == "video/H264"
    assert track.codec_keys[0].startswith("video/h264;1;")
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_publisher_rtx_retransmission_is_unwrapped_and_forwarded(media, monkeypatch) -> None:
    """A packet lost on the way in is NACKed by the SFU; the publisher's RTX copy is unwrapped and forwarded."""
    from media_server import aiortc_hooks

    dropped: list[int] = []
    original = aiortc_hooks.ForwardingReceiver.handle_rtp

    def lossy(self, packet, arrival_time_ms):  # drop the 30th video media packet once
        if self.kind == "video" and packet.payload_type not in self.rtx_pts and self.packets == 30 and not dropped:
            dropped.append(packet.sequence_number)
            self.packets += 1
            return
        original(self, packet, arrival_time_ms)

    monkeypatch.setattr(aiortc_hooks.ForwardingReceiver, "handle_rtp", lossy)
    pub = PublisherClient(media.http, "r1", "alice", audio=False)
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 10)
    (track,) = [
        t
        for r in media.service.rooms.values()
        for p in r.participants.values()
        for pub_ in p.publishers.values()
        for t in pub_.tracks
    ]
    for _ in range(100):
        if dropped and track.receiver.rtx_packets:
            break
        await asyncio.sleep(0.05)
    assert dropped, "no packet was dropped"
    assert track.receiver.rtx_packets >= 1  # the publisher answered our NACK with RTX
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_subscriber_without_the_codec_gets_track_unavailable(media, fake_django) -> None:
    """An H.264 publication offered to a subscriber that answers VP8 only is reported, not silently dropped."""
    pub = PublisherClient(media.http, "r1", "alice", video_codec="H264")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob", without_codec="H264")
    await sub.start()
    event = await fake_django.wait_for(lambda e: e["type"] == "track_unavailable")
    assert event["participant"] == "bob" and event["reason"] == "no_common_codec"
    assert event["track"]["participant"] == "alice" and event["track"]["source"] == "camera"
    assert event["codec"].startswith("video/h264")
    # audio (Opus) still flows
    await recv_frames(sub.track("alice", "microphone"), 3)
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"subscribe_offer_timeout": 1.0}], indirect=True)
async def test_unanswered_offer_is_reoffered_then_answer_works(media, fake_django) -> None:
    """A subscriber that ignores a renegotiation offer gets a fresh one (new revision); answering it works."""
    sub = SubscriberClient(media.http, "r1", "bob")
    first = await sub.start()
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    offer = await fake_django.wait_for(lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob")
    assert offer["revision"] == first["revision"] + 1
    # ... not answered: after the timeout the server offers again with a new revision
    reoffer = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["revision"] == offer["revision"] + 1, timeout=5
    )
    assert {t["source"] for t in reoffer["tracks"]} == {"camera", "microphone"}
    stale = await media.http.post(
        "/v1/rooms/r1/participants/bob/subscribe/answer",
        json={"protocol": 1, "sdp": "v=0\r\n", "revision": offer["revision"]},
        headers=AUTH,
    )
    assert stale.status == 409
    await sub.answer(reoffer)
    await recv_frames(sub.track("alice", "camera"), 3)
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"subscribe_offer_timeout": 0.2}], indirect=True)
async def test_subscriber_that_never_answers_is_failed(media, fake_django) -> None:
    """After the re-offers go unanswered too, the subscribe connection fails (offer_timeout) and is closed."""
    pub = PublisherClient(media.http, "r1", "alice", video=False)
    await pub.start()
    resp = await media.http.post("/v1/rooms/r1/participants/bob/subscribe", json={"protocol": 1}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["sdp"] is not None
    failed = await fake_django.wait_for(
        lambda e: e["type"] == "peer_state" and e["pc"] == "subscribe" and e["state"] == "failed", timeout=5
    )
    assert failed["participant"] == "bob" and failed["reason"] == "offer_timeout"
    closed = await fake_django.wait_for(
        lambda e: e["type"] == "peer_state" and e["pc"] == "subscribe" and e["state"] == "closed"
    )
    assert closed["reason"] == "offer_timeout"
    reoffers = [e for e in fake_django.events if e["type"] == "subscribe_offer" and e["participant"] == "bob"]
    assert len(reoffers) == 2  # MAX_REOFFERS
    room = media.service.rooms["r1"]
    assert room.participants["bob"].subscriber is None
    # the client can subscribe again
    again = await media.http.post("/v1/rooms/r1/participants/bob/subscribe", json={"protocol": 1}, headers=AUTH)
    assert again.status == 200
    await pub.close()
