"""End-to-end forwarding through the SFU with in-process aiortc peers on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from ms_helpers import PublisherClient, SubscriberClient, published_tracks, recv_frames


@pytest.mark.asyncio
async def test_subscriber_receives_decodable_video_and_audio(media, fake_django) -> None:
    """A subscriber gets the publisher's VP8 video (decodes) and Opus audio via the SFU."""
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    body = await sub.start()
    assert {(t["participant"], t["source"], t["kind"]) for t in body["tracks"]} == {
        ("alice", "camera", "video"),
        ("alice", "microphone", "audio"),
    }
    video = await recv_frames(sub.track("alice", "camera"), 10)
    assert video[0].width == 160 and video[0].height == 120
    audio = await recv_frames(sub.track("alice", "microphone"), 10)
    assert audio[0].sample_rate == 48000
    health = await (await media.http.get("/v1/health", headers={"Authorization": "Bearer test-secret"})).json()
    assert health["forwarded_packets"] > 0 and health["rooms"] == 1 and health["peers"] == 2
    await asyncio.gather(pub.close(), sub.close())


def _video_receivers(media):
    return [t.receiver for t in published_tracks(media)]


@pytest.mark.asyncio
async def test_sfu_never_decodes(media, monkeypatch) -> None:
    """The SFU's receivers run no decoder: no decoder thread, no decoder created."""
    import aiortc.rtcrtpreceiver

    created = []
    original = aiortc.rtcrtpreceiver.get_decoder
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", lambda codec: created.append(codec) or original(codec))
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    receivers = _video_receivers(media)
    for _ in range(100):
        if all(r.packets > 10 for r in receivers):
            break
        await asyncio.sleep(0.05)
    assert receivers and all(r.packets > 10 for r in receivers)
    assert not any(r.decoder_running() for r in receivers)
    assert created == []  # only the publisher client exists: nobody decoded
    await pub.close()


@pytest.mark.asyncio
async def test_keyframe_within_one_second_of_subscribing(media) -> None:
    """A late subscriber gets a keyframe within 1 s (SFU requests one from the publisher)."""
    pub = PublisherClient(media.http, "r1", "alice", audio=False)
    await pub.start()
    await asyncio.sleep(1.0)  # publisher is past its first keyframe (aiortc's GOP is 3000 frames)
    before = pub.keyframe_requests
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = await recv_frames(sub.track("alice", "camera"), 1, timeout=5)
    assert loop.time() - start < 1.0
    assert frames[0].pts == 0  # the very first frame of the stream decoded: it was a keyframe
    assert pub.keyframe_requests > before
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_browser_like_offer_uses_the_bundled_port_and_keyframes_keep_coming(media) -> None:
    """Chrome offers one port per m-line and keeps only the first after BUNDLE (regression).

    aiortc alone used the *last* m-line's (audio) candidates: the SFU's ICE
    checked a port the browser drops and RTCP (PLI) could be sent to it, so a
    late subscriber never got a keyframe. The publisher's ICE must use the
    video (tagged) m-line's candidates, and every late subscriber gets video.
    """
    pub = PublisherClient(media.http, "r1", "alice", browser_ports=True)
    await pub.start()
    offer = pub.pc.localDescription.sdp if pub.pc.localDescription else ""
    video_ports = {
        int(line.split()[5]) for line in offer.split("m=")[1].splitlines() if line.startswith("a=candidate:")
    }
    assert offer.split("m=")[1].startswith("video") and video_ports
    room = media.service.rooms["r1"]
    publisher = room.participants["alice"].publishers["camera"]
    transport = publisher.pc.getTransceivers()[0].receiver.transport.transport
    assert {c.port for c in transport.getRemoteCandidates() if c.type == "host"} == video_ports
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 1, timeout=5)
    assert transport._connection._nominated[1].remote_addr[1] in video_ports
    await asyncio.sleep(0.6)  # past the first keyframe and the PLI throttle
    for name in ("carol", "dave"):  # later subscribers depend on PLIs reaching the browser
        late = SubscriberClient(media.http, "r1", name)
        await late.start()
        await recv_frames(late.track("alice", "camera"), 1, timeout=3)
        await late.close()
        await asyncio.sleep(0.6)
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_subscriber_pli_reaches_publisher(media) -> None:
    """A PLI sent by a subscriber is relayed (throttled) to the publisher."""
    pub = PublisherClient(media.http, "r1", "alice", audio=False)
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 3)
    await asyncio.sleep(0.6)  # leave the 500 ms throttle window
    before = pub.keyframe_requests
    receiver = sub.receiver("alice", "camera")
    ssrc = receiver.getSynchronizationSources()[0].source
    await receiver._send_rtcp_pli(ssrc)
    for _ in range(40):
        if pub.keyframe_requests > before:
            break
        await asyncio.sleep(0.05)
    assert pub.keyframe_requests > before
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_renegotiation_on_join_and_leave(media, fake_django) -> None:
    """A later publisher is offered to an existing subscriber; a leaver's tracks go inactive."""
    bob_pub = PublisherClient(media.http, "r1", "bob", video=False)
    await bob_pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    first = await sub.start()
    assert first["tracks"] == []  # never their own publications
    alice = PublisherClient(media.http, "r1", "alice")
    await alice.start()
    offer = await fake_django.wait_for(lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob")
    assert offer["revision"] == first["revision"] + 1
    assert {t["source"] for t in offer["tracks"]} == {"camera", "microphone"}
    await sub.answer(offer)
    await recv_frames(sub.track("alice", "camera"), 3)
    # a later joiner gets existing tracks (alice's and bob's) in its first offer
    carol = SubscriberClient(media.http, "r1", "carol")
    carol_body = await carol.start()
    assert {(t["participant"], t["source"]) for t in carol_body["tracks"]} == {
        ("alice", "camera"),
        ("alice", "microphone"),
        ("bob", "microphone"),
    }
    await recv_frames(carol.track("alice", "camera"), 3)
    # alice leaves: her tracks disappear from bob's subscription
    n = len(fake_django.events)
    resp = await media.http.delete("/v1/rooms/r1/participants/alice", headers={"Authorization": "Bearer test-secret"})
    assert resp.status == 204
    leave_offer = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob", start=n
    )
    assert leave_offer["tracks"] == []
    assert "a=inactive" in leave_offer["sdp"]
    await sub.answer(leave_offer)
    stopped = await fake_django.wait_for(
        lambda e: e["type"] == "publication" and e["state"] == "stopped" and e["participant"] == "alice"
    )
    assert stopped["sources"] == ["microphone", "camera"]
    # a new publisher reuses the freed transceivers (same mids)
    dave = PublisherClient(media.http, "r1", "dave")
    await dave.start()
    n2 = len(fake_django.events)
    reuse = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob" and e["tracks"], start=n - 1
    )
    assert {t["mid"] for t in reuse["tracks"]} == {t["mid"] for t in offer["tracks"]}
    await sub.answer(reuse)
    await recv_frames(sub.track("dave", "camera"), 3)
    assert n2 >= n
    await asyncio.gather(bob_pub.close(), sub.close(), carol.close(), alice.close(), dave.close())


@pytest.mark.asyncio
async def test_screen_share_and_camera_at_once(media) -> None:
    """One participant publishes camera and screen connections; both reach subscribers."""
    cam = PublisherClient(media.http, "r1", "alice", "camera")
    screen = PublisherClient(media.http, "r1", "alice", "screen", audio=False)
    await cam.start()
    await screen.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    body = await sub.start()
    assert {t["source"] for t in body["tracks"]} == {"camera", "microphone", "screen"}
    await recv_frames(sub.track("alice", "camera"), 3)
    await recv_frames(sub.track("alice", "screen"), 3)
    await asyncio.gather(cam.close(), screen.close(), sub.close())


@pytest.mark.asyncio
async def test_first_subscriber_gets_no_empty_offer_and_the_first_track_is_pushed(media, fake_django) -> None:
    """Nothing to receive yet: ``subscribe`` answers ``sdp: null`` with no offer outstanding (a browser cannot
    answer an offer without m-lines); the first publication of someone else is offered at once."""
    sub = SubscriberClient(media.http, "r1", "bob")
    first = await sub.start()
    assert first["sdp"] is None and first["tracks"] == []
    stale = await media.http.post(
        "/v1/rooms/r1/participants/bob/subscribe/answer",
        json={"protocol": 1, "sdp": "v=0\r\n", "revision": first["revision"]},
        headers={"Authorization": "Bearer test-secret"},
    )
    assert stale.status == 409  # nothing is outstanding
    alice = PublisherClient(media.http, "r1", "alice")
    await alice.start()
    offer = await fake_django.wait_for(lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob")
    assert offer["revision"] == first["revision"] + 1 and "m=" in offer["sdp"]
    await sub.answer(offer)
    await recv_frames(sub.track("alice", "camera"), 3)
    await recv_frames(sub.track("alice", "microphone"), 3)
    # a fresh subscribe in a room with tracks is a real offer again, with a newer revision
    sub2 = SubscriberClient(media.http, "r1", "bob")
    again = await sub2.start()
    assert again["sdp"] is not None and again["revision"] > offer["revision"]
    await asyncio.gather(alice.close(), sub.close(), sub2.close())
