"""Last-N in the SFU: only the selected video and the loudest microphones are forwarded, without renegotiation."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import pytest_asyncio
from ms_helpers import AUTH, PublisherClient, SubscriberClient, recv_frames, until
from room_harness import RoomHarness

from media_server import aiortc_hooks
from media_server.protocol import Preferences


async def packets(sub: SubscriberClient, participant: str, source: str) -> int:
    """RTP packets the client received on that track's m-line."""
    stats = await sub.receiver(participant, source).getStats()
    return sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")


def without_bandwidth_estimate(sdp: str) -> str:
    """The subscriber's answer without abs-send-time: its aiortc receiver then sends no REMB and the SFU keeps
    every selected video on (adaptive quality is tested in test_simulcast/test_transport_cc). In a starved
    test process aiortc's estimate fell to 6-22 kbps and paused the videos these tests wait for."""
    return "\r\n".join(line for line in sdp.split("\r\n") if "abs-send-time" not in line)


async def silent_cameras_and_a_subscriber(
    media: Any, room: str, count: int, *, last_n: int
) -> tuple[list[PublisherClient], SubscriberClient, dict[str, Any]]:
    """``count`` publishers p1.. (camera + silent microphone) in ``room``, then subscriber "s" with ``last_n``:
    the publishers, the subscriber (not answered yet) and the server's subscribe reply."""
    pubs = [PublisherClient(media.http, room, f"p{i}", amplitude=0) for i in range(1, count + 1)]
    for pub in pubs:
        await pub.start()
    sub = SubscriberClient(media.http, room, "s", answer_filter=without_bandwidth_estimate)
    resp = await media.http.post(
        f"/v1/rooms/{room}/participants/s/subscribe", json={"protocol": 1, "last_n": last_n}, headers=AUTH
    )
    body = await resp.json()
    assert resp.status == 200, body
    return pubs, sub, dict(body)


def forwarded(event: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["participant"], t["source"]) for t in event["video"]}


async def forwarded_when(fake_django: Any, holds: Callable[[dict[str, Any]], bool], start: int = 0) -> dict[str, Any]:
    """The first forwarded_tracks event for subscriber "s" (from index ``start``) for which ``holds`` is true.

    Not simply the first one after a change: on a busy machine a starved publisher's camera can send nothing
    for CAMERA_IDLE (2 s), give its last-N place away and take it back when it sends again, an event each.
    """

    def matches(e: dict[str, Any]) -> bool:
        return e["type"] == "forwarded_tracks" and e["participant"] == "s" and holds(e)

    return await fake_django.wait_for(matches, start=start)


@pytest.mark.asyncio
async def test_last_n_forwards_recent_speakers_pinned_and_screen_only_and_switches_without_renegotiation(
    media, fake_django
) -> None:
    """N=2, five camera publishers (silent) + a screen share: the subscriber gets the first two (join order),
    the screen, no silent microphone; a pin and a speaker change switch video on a keyframe, no new offer."""
    pubs = [PublisherClient(media.http, "big", f"p{i}", amplitude=0) for i in range(1, 6)]
    for pub in pubs:
        await pub.start()
    screen = PublisherClient(media.http, "big", "p3", "screen", audio=False)
    await screen.start()
    sub = SubscriberClient(media.http, "big", "s", answer_filter=without_bandwidth_estimate)
    resp = await media.http.post(
        "/v1/rooms/big/participants/s/subscribe", json={"protocol": 1, "last_n": 2}, headers=AUTH
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert len(body["tracks"]) == 11  # every track stays negotiated: 5 cameras, 5 microphones, 1 screen
    await sub.answer(body)
    first = await forwarded_when(
        fake_django, lambda e: forwarded(e) == {("p1", "camera"), ("p2", "camera"), ("p3", "screen")}
    )
    assert first["last_n"] == 2
    assert len(first["audio"]) == 5  # negotiated; only the loudest few carry packets
    assert first["audio_pooled"] is False  # one m-line per microphone up to MEDIA_MAX_AUDIO_MLINES (6)
    await recv_frames(sub.track("p1", "camera"), 3)
    await recv_frames(sub.track("p3", "screen"), 3)
    await asyncio.sleep(0.5)
    for p in ("p3", "p4", "p5"):
        assert await packets(sub, p, "camera") == 0, p
    for i in range(1, 6):
        assert await packets(sub, f"p{i}", "microphone") == 0  # silence is never forwarded

    # pin p5: pinned first, then the most recent speaker (nobody spoke yet: join order) up to N=2
    n = len(fake_django.events)
    resp = await media.http.put(
        "/v1/rooms/big/participants/s/preferences",
        json={
            "protocol": 1,
            "pinned": ["p5"],
            "tiles": [{"participant": "p5", "source": "camera", "width": 640, "height": 360}],
        },
        headers=AUTH,
    )
    assert resp.status == 204
    await forwarded_when(
        fake_django, lambda e: forwarded(e) == {("p5", "camera"), ("p1", "camera"), ("p3", "screen")}, n
    )
    await recv_frames(sub.track("p5", "camera"), 3)  # decodable: it restarted on a keyframe

    # p4 starts talking: heard at once, becomes the most recent speaker and replaces p1's video
    n = len(fake_django.events)
    assert pubs[3].audio is not None
    pubs[3].audio.amplitude = 8000
    spoke = await fake_django.wait_for(lambda e: e["type"] == "active_speaker", start=n)
    assert spoke["participant"] == "p4"
    await forwarded_when(
        fake_django, lambda e: forwarded(e) == {("p5", "camera"), ("p4", "camera"), ("p3", "screen")}, n
    )
    await recv_frames(sub.track("p4", "camera"), 3)
    # p1's video is paused: counted where the server sends it (the client's count still grows while packets
    # sent before the switch wait in a busy machine's socket buffers and event loop, for however long that is).
    slots = media.service.rooms["big"].participants["s"].subscriber.slots
    p1_slot = next(s for s in slots if s.track and (s.track.participant, s.track.source) == ("p1", "camera"))
    p1_video = p1_slot.downstream.packets_sent
    await asyncio.sleep(0.5)
    assert p1_slot.downstream.packets_sent == p1_video  # paused
    assert await packets(sub, "p4", "microphone") > 0
    assert await packets(sub, "p1", "microphone") == 0
    assert not [e for e in fake_django.events if e["type"] == "subscribe_offer" and e["participant"] == "s"]
    assert len(slots) == 11  # no m-line added or removed
    await asyncio.gather(*(p.close() for p in pubs), screen.close(), sub.close())


@pytest.mark.asyncio
async def test_room_settings_change_last_n_live(media, fake_django) -> None:
    """PUT settings last_n applies at once; null goes back to the default by room size (all, in a small room)."""
    pubs = [PublisherClient(media.http, "r", f"p{i}", audio=False) for i in range(1, 4)]
    for pub in pubs:
        await pub.start()
    sub = SubscriberClient(media.http, "r", "s", answer_filter=without_bandwidth_estimate)
    await sub.start()
    first = await forwarded_when(fake_django, lambda e: len(e["video"]) == 3)
    assert first["last_n"] is None
    n = len(fake_django.events)
    resp = await media.http.put("/v1/rooms/r/settings", json={"protocol": 1, "last_n": 1}, headers=AUTH)
    assert resp.status == 204
    await forwarded_when(fake_django, lambda e: e["last_n"] == 1 and forwarded(e) == {("p1", "camera")}, n)
    n = len(fake_django.events)
    resp = await media.http.put("/v1/rooms/r/settings", json={"protocol": 1, "last_n": None}, headers=AUTH)
    assert resp.status == 204
    await forwarded_when(fake_django, lambda e: len(e["video"]) == 3, n)
    await recv_frames(sub.track("p3", "camera"), 2)
    await asyncio.gather(*(p.close() for p in pubs), sub.close())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/rooms/r/participants/s/preferences", {"pinned": "p1"}, "bad_request"),
        ("/v1/rooms/r/participants/s/preferences", {"pinned": ["p1", "p1"]}, "bad_request"),
        ("/v1/rooms/r/participants/s/preferences", {"pinned": ["a", "b", "c", "d", "e"]}, "bad_request"),
        ("/v1/rooms/r/participants/s/preferences", {"pinned": ["../x"]}, "bad_request"),
        (
            "/v1/rooms/r/participants/s/preferences",
            {"tiles": [{"participant": "p1", "source": "camera"}]},
            "bad_request",
        ),
        (
            "/v1/rooms/r/participants/s/preferences",
            {"tiles": [{"participant": "p1", "source": "mic", "width": 1, "height": 1}]},
            "bad_request",
        ),
        (
            "/v1/rooms/r/participants/s/preferences",
            {"tiles": [{"participant": "p1", "source": "camera", "width": 99999, "height": 1}]},
            "bad_request",
        ),
        ("/v1/rooms/r/participants/s/preferences", {"protocol": 2}, "protocol_mismatch"),
        ("/v1/rooms/r/settings", {}, "bad_request"),
        ("/v1/rooms/r/settings", {"last_n": -1}, "bad_request"),
        ("/v1/rooms/r/settings", {"last_n": True}, "bad_request"),
        ("/v1/rooms/nowhere/settings", {"last_n": 3}, "room_not_found"),
    ],
)
async def test_bad_preferences_and_settings_are_refused(media, path, body, code) -> None:
    if "nowhere" not in path:
        resp = await media.http.put("/v1/rooms/r/participants/s/preferences", json={"protocol": 1}, headers=AUTH)
        assert resp.status == 204  # creates the room (like subscribe)
    resp = await media.http.put(path, json={"protocol": 1, **body}, headers=AUTH)
    assert resp.status in (400, 404, 409)
    assert (await resp.json())["error"]["code"] == code


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"max_video_mlines": 2}], indirect=True)
async def test_large_room_negotiates_only_the_selected_videos_and_remaps_them_on_speaker_change(
    media, fake_django
) -> None:
    """Pooled m-lines (more videos than max_video_mlines): N=2 of 5 cameras get m-lines; when another participant
    speaks, an existing m-line (same mid) is re-mapped to them and decodes, without renegotiation."""
    pubs, sub, body = await silent_cameras_and_a_subscriber(media, "huge", 5, last_n=2)
    video = [t for t in body["tracks"] if t["kind"] == "video"]
    assert {t["participant"] for t in video} == {"p1", "p2"}  # only the selected cameras have m-lines
    assert len([t for t in body["tracks"] if t["kind"] == "audio"]) == 5
    await sub.answer(body)
    first = await forwarded_when(fake_django, lambda e: forwarded(e) == {("p1", "camera"), ("p2", "camera")})
    mids = {t["mid"] for t in first["video"]}

    n = len(fake_django.events)
    assert pubs[4].audio is not None
    pubs[4].audio.amplitude = 8000  # p5 speaks
    switched = await forwarded_when(fake_django, lambda e: ("p5", "camera") in forwarded(e) and len(e["video"]) == 2, n)
    assert {t["mid"] for t in switched["video"]} == mids  # the same m-lines, re-mapped
    p5_mid = next(t["mid"] for t in switched["video"] if t["participant"] == "p5")
    receiver_track = next(t for t in sub.pc.getTransceivers() if t.mid == p5_mid).receiver.track
    await recv_frames(receiver_track, 3)  # p5's video decodes on the re-mapped m-line (a keyframe came)
    assert not [e for e in fake_django.events if e["type"] == "subscribe_offer" and e["participant"] == "s"]
    await asyncio.gather(*(p.close() for p in pubs), sub.close())


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"max_audio_mlines": 2}], indirect=True)
async def test_pooled_audio_lines_carry_the_loudest_talkers_and_remap_continuously(media, fake_django) -> None:
    """Four microphones, two pooled audio m-lines: a talker is heard on a line re-mapped to it from its first
    packets; when a talker stops and another starts, the freed line moves to the newcomer without renegotiation
    and its outgoing sequence numbers stay contiguous (timestamps increasing) across the switch."""
    pubs = [PublisherClient(media.http, "pool", f"p{i}", video=False, amplitude=0) for i in range(1, 5)]
    for pub in pubs:
        await pub.start()
    sub = SubscriberClient(media.http, "pool", "s", answer_filter=without_bandwidth_estimate)
    body = await sub.start()
    audio = [t for t in body["tracks"] if t["kind"] == "audio"]
    assert {t["participant"] for t in audio} == {"p1", "p2"}  # nobody speaks yet: speaker (join) order
    mids = {t["mid"] for t in audio}
    received: dict[str, list[tuple[int, int]]] = {mid: [] for mid in mids}
    for transceiver in sub.pc.getTransceivers():
        receiver, mid = transceiver.receiver, transceiver.mid
        original = receiver._handle_rtp_packet

        async def spy(packet: Any, arrival_time_ms: int, original: Any = original, mid: Any = mid) -> None:
            received[mid].append((packet.sequence_number, packet.timestamp))
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = spy  # type: ignore[method-assign]

    def speak(index: int, loud: bool) -> None:
        track = pubs[index].audio
        assert track is not None
        track.amplitude = 8000 if loud else 0

    subscriber = media.service.rooms["pool"].participants["s"].subscriber

    def mapping() -> dict[str, str]:
        return {s.transceiver.mid: s.track.participant for s in subscriber.slots if s.kind == "audio" and s.track}

    async def wait_mapping(talkers: set[str]) -> dict[str, str]:
        assert await until(lambda: talkers <= set(mapping().values())), f"pooled lines never carried {talkers}"
        return mapping()

    first = await fake_django.wait_for(lambda e: e["type"] == "forwarded_tracks" and e["participant"] == "s")
    assert first["audio_pooled"] is True
    n = len(fake_django.events)
    speak(2, True)  # p3 and p4 talk: each takes one of the two lines
    speak(3, True)
    both = await wait_mapping({"p3", "p4"})
    assert set(both) == mids  # the same two m-lines, re-mapped
    p3_mid = next(mid for mid, who in both.items() if who == "p3")
    # both talkers are heard (bounded wait for packets, not a fixed 0.5 s: 25 packets when idle, a few when busy)
    assert await until(lambda: all(len(received[mid]) > 5 for mid in mids)), {m: len(r) for m, r in received.items()}

    speak(2, False)  # p3 stops, p1 starts: p1 gets p3's line (p4 keeps talking on its own)
    speak(0, True)
    switched = await wait_mapping({"p1", "p4"})
    assert switched[p3_mid] == "p1"
    before = len(received[p3_mid])
    assert await until(lambda: len(received[p3_mid]) > before + 5)  # p1 is heard on the re-mapped line
    # re-mapping a pooled microphone line is not reported (no event per talker per subscriber)
    assert not [e for e in fake_django.events[n:] if e["type"] == "forwarded_tracks" and e["participant"] == "s"]

    stream = received[p3_mid]
    gaps = [(b[0] - a[0]) & 0xFFFF for a, b in itertools.pairwise(stream)]
    assert set(gaps) == {1}, gaps  # one continuous stream: p3, (gated silence), then p1
    assert all(0 < (b[1] - a[1]) & 0xFFFFFFFF < 0x80000000 for a, b in itertools.pairwise(stream))
    assert not [e for e in fake_django.events if e["type"] == "subscribe_offer" and e["participant"] == "s"]
    slots = media.service.rooms["pool"].participants["s"].subscriber.slots
    assert len([s for s in slots if s.kind == "audio"]) == 2  # no m-line added
    await asyncio.gather(*(p.close() for p in pubs), sub.close())


@pytest.mark.asyncio
async def test_a_camera_that_sends_nothing_takes_no_last_n_place(media, fake_django) -> None:
    """Browsers keep the video m-line of a camera that is off and send nothing on it: last-N skips it
    (after CAMERA_IDLE) so the N places go to cameras people can see, and takes it back when it sends again."""
    pubs, sub, body = await silent_cameras_and_a_subscriber(media, "off", 3, last_n=2)
    await sub.answer(body)
    # join order: nobody spoke
    await forwarded_when(fake_django, lambda e: forwarded(e) == {("p1", "camera"), ("p2", "camera")})
    n = len(fake_django.events)
    assert pubs[0].video is not None
    pubs[0].video.sending.clear()  # p1 turns the camera off
    await forwarded_when(fake_django, lambda e: forwarded(e) == {("p2", "camera"), ("p3", "camera")}, n)
    await recv_frames(sub.track("p3", "camera"), 3)
    n = len(fake_django.events)
    pubs[0].video.sending.set()  # and on again: first in join order again
    await forwarded_when(fake_django, lambda e: forwarded(e) == {("p1", "camera"), ("p2", "camera")}, n)
    await asyncio.gather(*(pub.close() for pub in pubs), sub.close())


# -- which joins re-offer whom (issue 19): a Room with connection-less publications, answered in process --


@pytest_asyncio.fixture
async def harness() -> Any:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    made: list[RoomHarness] = []

    def make(**config: Any) -> RoomHarness:
        made.append(RoomHarness(**config))
        return made[-1]

    yield make
    for h in made:
        await h.close()


async def room_of(make: Any, size: int, sending: int) -> RoomHarness:
    """``size`` participants p0.. each publishing a camera + microphone and subscribed (answered); the
    cameras of the first ``sending`` sent a packet, the others are off (as the camera check saw them)."""
    h = make()
    for i in range(size):
        await h.publish(f"p{i}")
        await h.subscribe(f"p{i}")
    for i in range(sending):
        h.publications[f"p{i}"].camera_on = True
    h.look_at_cameras()
    await h.settle()
    return h


@pytest.mark.asyncio
async def test_a_join_nobody_is_shown_re_offers_nobody_until_its_camera_is_shown(harness) -> None:
    """Twelve people, every camera on (last-N 9, below the pooled bound: one m-line per video): a thirteenth
    whose camera none of them is shown (joined last, nobody spoke) makes no subscribe offer, camera on or not;
    when it speaks, each subscriber is re-offered once, with its camera."""
    h = await room_of(harness, 12, sending=12)
    mark = len(h.events)
    newcomer = await h.publish("p12")
    await h.subscribe("p12")
    newcomer.camera_on = True
    newcomer.send_video()
    await h.settle()
    h.look_at_cameras()
    await h.settle()
    assert [e["participant"] for e in h.offers(mark)] == []
    assert all("p12" not in h.video_mlines(f"p{i}") for i in range(12))
    assert len(h.video_mlines("p12")) == 12  # the newcomer's own offer: every other camera (as before)

    mark = len(h.events)
    h.room._speaker_changed("p12")  # it talks: now everyone is shown its camera
    await h.settle()
    offers = h.offers(mark)
    assert sorted(e["participant"] for e in offers) == sorted(f"p{i}" for i in range(12))
    assert all(any(t["participant"] == "p12" and t["kind"] == "video" for t in e["tracks"]) for e in offers)
    # later speaker changes between people who have m-lines renegotiate nothing (attach/detach only)
    mark = len(h.events)
    h.room._speaker_changed("p11")
    h.room._speaker_changed("p3")
    await h.settle()
    assert h.offers(mark) == []


@pytest.mark.asyncio
async def test_a_camera_published_just_now_gets_m_lines_from_its_first_packet_not_before(harness) -> None:
    """Twelve people, six cameras on: a newcomer's camera would be among everyone's nine (it counts as
    sending while just published), but it gets m-lines only once it sends: camera off, no re-offer at all;
    camera on, every subscriber is re-offered once, with it, at its first packet."""
    h = await room_of(harness, 12, sending=6)
    mark = len(h.events)
    off = await h.publish("p12")  # its camera stays off
    await h.subscribe("p12")
    h.look_at_cameras()
    await h.settle()
    assert h.offers(mark) == []
    assert off.camera.forwarder.packets_in == 0

    mark = len(h.events)
    on = await h.publish("p13")
    await h.subscribe("p13")
    assert [e["participant"] for e in h.offers(mark)] == []  # nothing before its first packet
    on.camera_on = True
    on.send_video()
    await h.settle()
    h.look_at_cameras()
    await h.settle()
    offers = h.offers(mark)
    assert sorted(e["participant"] for e in offers) == sorted(f"p{i}" for i in range(13))
    assert all(any(t["participant"] == "p13" and t["kind"] == "video" for t in e["tracks"]) for e in offers)
    assert all(e["tracks"] for e in offers)
    # the off camera came along in those offers (an offer carries every video), not in offers of its own
    assert all("p12" in h.video_mlines(f"p{i}") for i in range(12))


@pytest.mark.asyncio
async def test_pinning_a_camera_without_an_m_line_re_offers_only_the_one_who_pinned(harness) -> None:
    """A camera nobody is shown has no m-line; one subscriber pins it: that subscriber alone is re-offered."""
    h = await room_of(harness, 12, sending=12)
    await h.publish("p12")
    await h.subscribe("p12")
    h.publications["p12"].camera_on = True
    h.publications["p12"].send_video()
    h.look_at_cameras()
    await h.settle()
    mark = len(h.events)
    async with h.room.lock:
        await h.room.set_preferences("p0", Preferences(pinned=("p12",)))
    await h.settle()
    assert [e["participant"] for e in h.offers(mark)] == ["p0"]
    assert "p12" in h.video_mlines("p0")


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"max_audio_mlines": 2}], indirect=True)
async def test_a_joining_camera_nobody_is_shown_gets_its_m_line_when_it_speaks_and_decodes(media, fake_django) -> None:
    """Over real connections, N=1 and pooled microphones (so a join changes no audio m-line): a third camera
    joining makes no offer to the subscriber, though it sends; when its owner speaks the subscriber is offered
    its m-line, answers, and decodes it."""
    pubs, sub, body = await silent_cameras_and_a_subscriber(media, "join", 2, last_n=1)
    await sub.answer(body)
    await forwarded_when(fake_django, lambda e: forwarded(e) == {("p1", "camera")})
    mark = len(fake_django.events)
    p3 = PublisherClient(media.http, "join", "p3", amplitude=0)
    await p3.start()
    room = media.service.rooms["join"]
    camera = next(t for t in room.participants["p3"].publishers["camera"].tracks if t.source == "camera")
    assert await until(lambda: camera.forwarder.packets_in > 0), "p3's camera never sent"
    # a control call queues behind any renegotiation its first packet caused (the room lock is FIFO)
    resp = await media.http.put("/v1/rooms/join/participants/s/preferences", json={"protocol": 1}, headers=AUTH)
    assert resp.status == 204
    assert not [e for e in fake_django.events[mark:] if e["type"] == "subscribe_offer" and e["participant"] == "s"]
    assert "p3" not in {s.track.participant for s in room.participants["s"].subscriber.slots if s.track}

    assert p3.audio is not None
    p3.audio.amplitude = 8000  # p3 speaks: the subscriber is shown its camera, which has no m-line there yet
    offer = await fake_django.wait_for(lambda e: e["type"] == "subscribe_offer" and e["participant"] == "s", start=mark)
    assert ("p3", "camera") in {(t["participant"], t["source"]) for t in offer["tracks"]}
    await sub.answer(offer)
    await forwarded_when(fake_django, lambda e: forwarded(e) == {("p3", "camera")}, mark)
    await recv_frames(sub.track("p3", "camera"), 3)
    await asyncio.gather(*(p.close() for p in pubs), p3.close(), sub.close())


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"max_audio_mlines": 1}], indirect=True)
async def test_a_joining_camera_everyone_is_shown_is_offered_at_its_first_packet(media, fake_django) -> None:
    """Two people (every video shown, no last-N and so no camera check) with pooled microphones: the
    second one's camera is offered to the first as soon as its first packet arrived (through the receive
    path, a one-shot sink), and decodes; the join itself changed no m-line."""
    p1 = PublisherClient(media.http, "pair", "p1", amplitude=0)
    await p1.start()
    sub = SubscriberClient(media.http, "pair", "s", answer_filter=without_bandwidth_estimate)
    await sub.start()
    await forwarded_when(fake_django, lambda e: forwarded(e) == {("p1", "camera")})
    mark = len(fake_django.events)
    p2 = PublisherClient(media.http, "pair", "p2", amplitude=0)
    await p2.start()
    offer = await fake_django.wait_for(lambda e: e["type"] == "subscribe_offer" and e["participant"] == "s", start=mark)
    room = media.service.rooms["pair"]
    camera = next(t for t in room.participants["p2"].publishers["camera"].tracks if t.source == "camera")
    assert camera.forwarder.packets_in > 0  # offered once it sent, not at its publication
    assert ("p2", "camera") in {(t["participant"], t["source"]) for t in offer["tracks"]}
    await sub.answer(offer)
    await recv_frames(sub.track("p2", "camera"), 3)
    await asyncio.gather(p1.close(), p2.close(), sub.close())


@pytest.mark.asyncio
async def test_pooled_lines_a_camera_turned_on_gets_a_line_when_there_is_none_to_re_map(harness) -> None:
    """Above the video bound (pooled lines, N=2), one camera on: each subscriber has one video line. A second
    camera turns on: every other subscriber is shown it and, with no line to re-map, is re-offered one (it used
    to wait for the next join or leave); turning it off again re-offers nobody (the line stays, paused)."""
    h = harness(max_video_mlines=2)
    h.room.last_n = 2
    for i in range(5):
        await h.publish(f"p{i}")
        await h.subscribe(f"p{i}")
    h.publications["p0"].camera_on = True
    h.look_at_cameras()
    async with h.room.lock:
        await h.room.renegotiate_all()  # as a leave would: lines of cameras that are off are given up
    await h.settle()
    assert all(h.video_mlines(f"p{i}") == {"p0"} for i in range(1, 5))

    mark = len(h.events)
    h.publications["p3"].camera_on = True
    h.look_at_cameras()
    await h.settle()
    assert sorted(e["participant"] for e in h.offers(mark)) == ["p0", "p1", "p2", "p4"]
    assert all("p3" in h.video_mlines(f"p{i}") for i in (0, 1, 2, 4))

    mark = len(h.events)
    h.publications["p3"].camera_on = False
    h.look_at_cameras()
    await h.settle()
    assert h.offers(mark) == []
