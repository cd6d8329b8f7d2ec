"""Signaling relay between the room socket and the media server (a fake one on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rooms.socket_protocol import MAX_SDP_CHARS
from tests.conftest import MEDIA_EVENTS_PATH, media_events_request

pytestmark = pytest.mark.django_db(transaction=True)


async def test_offer_is_published_and_answer_relayed_with_ref(world: Any, fake_media: Any, sdp: str) -> None:
    fake_media.responses[("POST", "/publish")] = (200, {"protocol": 1, "sdp": "v=0 answer"})
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "offer", "pc": "camera", "sdp": sdp, "ref": 3})
    answer = await host.expect("answer")
    assert answer == {"type": "answer", "pc": "camera", "sdp": "v=0 answer", "ref": 3}
    method, path, body = fake_media.requests[0]
    assert (method, path) == ("POST", f"/v1/rooms/{room.public_id}/participants/{host.participant_id}/publish")
    assert body == {"protocol": 1, "pc": "camera", "sdp": sdp}


async def test_subscribe_gets_offer_and_answer_and_ice_are_relayed(world: Any, fake_media: Any, sdp: str) -> None:
    tracks = [{"mid": "0", "participant": "pX", "pc": "camera", "source": "camera", "kind": "audio"}]
    fake_media.responses[("POST", "/subscribe")] = (
        200,
        {"protocol": 1, "sdp": "v=0 offer", "revision": 4, "tracks": tracks},
    )
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "subscribe"})
    assert await host.expect("offer") == {
        "type": "offer",
        "pc": "subscribe",
        "sdp": "v=0 offer",
        "revision": 4,
        "tracks": tracks,
    }
    await host.send({"type": "answer", "pc": "subscribe", "sdp": sdp, "revision": 4})
    candidate = {"candidate": "candidate:1 1 UDP 2122260223 10.0.0.2 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    await host.send({"type": "ice_candidate", "pc": "subscribe", "candidate": candidate})
    await host.send({"type": "ice_candidate", "pc": "camera", "candidate": None})
    await host.send({"type": "unpublish", "pc": "screen"})
    await fake_media.wait_for(lambda f: len(f.requests) == 5)
    base = f"/v1/rooms/{room.public_id}/participants/{host.participant_id}"
    # In order per connection; the camera's and the screen's frames may overtake the subscribe connection's.
    subscribing = [r for r in fake_media.requests if "/subscribe" in r[1] or (r[2] or {}).get("pc") == "subscribe"]
    assert subscribing == [
        ("POST", base + "/subscribe", {"protocol": 1, "last_n": None}),
        ("POST", base + "/subscribe/answer", {"protocol": 1, "sdp": sdp, "revision": 4}),
        ("POST", base + "/ice", {"protocol": 1, "pc": "subscribe", "candidate": candidate}),
    ]
    assert ("POST", base + "/ice", {"protocol": 1, "pc": "camera", "candidate": None}) in fake_media.requests
    assert ("DELETE", base + "/publish/screen", None) in fake_media.requests


async def test_subscribe_is_not_held_up_by_a_slow_publish(world: Any, fake_media: Any, sdp: str) -> None:
    """Each connection's frames are relayed in their own lane: a joiner's subscribe offer does not wait for its
    camera's publish round trip (nor the other way round), and a connection's frames stay in order."""
    release = fake_media.gates[("POST", "/publish")] = asyncio.Event()
    fake_media.responses[("POST", "/publish")] = (200, {"protocol": 1, "sdp": "v=0 answer"})
    fake_media.responses[("POST", "/subscribe")] = (200, {"protocol": 1, "sdp": None, "revision": 1, "tracks": []})
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "offer", "pc": "camera", "sdp": sdp, "ref": "pub"})
    await host.send({"type": "ice_candidate", "pc": "camera", "candidate": None})
    await host.send({"type": "subscribe", "ref": "sub"})
    offer = await host.expect("offer")
    assert offer["ref"] == "sub"
    base = f"/v1/rooms/{room.public_id}/participants/{host.participant_id}"
    assert fake_media.paths() == [base + "/publish", base + "/subscribe"]  # the candidate waits for its offer
    release.set()
    assert (await host.expect("answer"))["ref"] == "pub"
    await fake_media.wait_for(lambda f: len(f.requests) == 3)
    assert fake_media.paths()[2] == base + "/ice"


async def test_a_leave_reaches_the_media_server_after_the_signaling_in_flight(
    world: Any, fake_media: Any, sdp: str
) -> None:
    """A socket closed while its publish is with the media server: the leave follows it (never overtakes it and
    leaves a publication behind); frames still waiting are dropped."""
    release = fake_media.gates[("POST", "/publish")] = asyncio.Event()
    fake_media.responses[("POST", "/publish")] = (200, {"protocol": 1, "sdp": "v=0 answer"})
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "offer", "pc": "camera", "sdp": sdp})
    await host.send({"type": "ice_candidate", "pc": "camera", "candidate": None})
    await fake_media.wait_for(lambda f: len(f.requests) == 1)
    closing = asyncio.create_task(host.comm.disconnect())
    await asyncio.sleep(0.2)
    assert len(fake_media.requests) == 1  # no leave while the publish runs
    release.set()
    await closing
    base = f"/v1/rooms/{room.public_id}/participants/{host.participant_id}"
    await fake_media.wait_for(lambda f: ("DELETE", base) in [(m, p) for m, p, _ in f.requests])
    assert [(m, p) for m, p, _ in fake_media.requests] == [("POST", base + "/publish"), ("DELETE", base)]


async def test_media_server_error_is_mapped_to_error_frame(world: Any, fake_media: Any, sdp: str) -> None:
    fake_media.responses[("POST", "/publish")] = (
        409,
        {"error": {"code": "room_full_media", "message": "no capacity", "details": {}}},
    )
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "offer", "pc": "screen", "sdp": sdp, "ref": "o"})
    assert await host.expect("error") == {
        "type": "error",
        "code": "room_full_media",
        "message": "no capacity",
        "ref": "o",
    }


async def test_media_server_down_gives_a_retryable_media_unavailable_and_socket_stays_open(
    world: Any, sdp: str
) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "offer", "pc": "camera", "sdp": sdp, "ref": 1})
    error = await host.expect("error")
    assert error == {
        "type": "error",
        "code": "media_unavailable",
        "message": "The media server is restarting; retrying…",
        "retry_after": 1,
        "ref": 1,
    }
    await host.send({"type": "subscribe", "ref": 2})
    assert (await host.expect("error"))["retry_after"] == 1
    await host.send({"type": "chat_send", "text": "still here"})
    await host.expect("chat_ack")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "offer", "pc": "camera", "sdp": "hello"}, "invalid_sdp"),
        ({"type": "offer", "pc": "camera", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}, "invalid_sdp"),
        ({"type": "offer", "pc": "camera", "sdp": "v=0\r\n" + "a=x\r\n" * (MAX_SDP_CHARS // 5)}, "sdp_too_large"),
        ({"type": "offer", "pc": "subscribe", "sdp": "v=0"}, "invalid_frame"),
        ({"type": "offer", "pc": "camera", "sdp": 5}, "invalid_frame"),
        ({"type": "answer", "pc": "subscribe", "sdp": "v=0"}, "invalid_frame"),
        ({"type": "ice_candidate", "pc": "camera", "candidate": "x"}, "invalid_frame"),
        ({"type": "ice_candidate", "pc": "camera", "candidate": {"candidate": 1}}, "invalid_frame"),
        ({"type": "unpublish", "pc": "subscribe"}, "invalid_frame"),
    ],
)
async def test_invalid_signaling_frames_are_rejected_before_the_media_server(
    world: Any, fake_media: Any, frame: dict[str, Any], code: str
) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({**frame, "ref": "bad"})
    error = await host.expect("error")
    assert (error["code"], error["ref"]) == (code, "bad")
    assert fake_media.requests == []


async def test_waiting_participant_may_not_signal(world: Any, fake_media: Any, sdp: str) -> None:
    room = await world.room(waiting_room=True)
    grant = await world.grant(room)
    waiting = world.socket(room, grant.token)
    await waiting.join(expect="lobby_waiting")
    await waiting.send({"type": "offer", "pc": "camera", "sdp": sdp})
    assert (await waiting.expect("error"))["code"] == "not_admitted"
    assert fake_media.requests == []


async def test_subscribe_with_nothing_to_receive_relays_a_null_offer(world: Any, fake_media: Any) -> None:
    """An empty room: the media server answers ``subscribe`` with ``sdp: null`` (no offer to answer yet)."""
    fake_media.responses[("POST", "/subscribe")] = (200, {"protocol": 1, "sdp": None, "revision": 3, "tracks": []})
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "subscribe", "ref": 7})
    assert await host.expect("offer") == {
        "type": "offer",
        "pc": "subscribe",
        "sdp": None,
        "revision": 3,
        "tracks": [],
        "ref": 7,
    }
    fake_media.responses[("POST", "/subscribe")] = (200, {"protocol": 1, "revision": 4, "tracks": []})
    await host.send({"type": "subscribe"})
    assert (await host.expect("error"))["code"] == "media_error"  # no "sdp" at all is still malformed


async def test_media_server_told_when_a_participant_leaves_after_signaling(world: Any, fake_media: Any) -> None:
    fake_media.responses[("POST", "/subscribe")] = (200, {"protocol": 1, "sdp": "v=0", "revision": 1, "tracks": []})
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await guest.send({"type": "subscribe"})
    await guest.expect("offer")
    await guest.close()
    leave = f"/v1/rooms/{room.public_id}/participants/{guest.participant_id}"
    await fake_media.wait_for(lambda f: leave in f.paths("DELETE"))


async def test_media_events_posted_by_the_media_server_reach_the_participant_socket(world: Any, settings: Any) -> None:
    from django.test import AsyncClient

    room = await world.room()
    host, _ = await world.host(room)
    body = {
        "protocol": 1,
        "events": [
            {
                "type": "subscribe_offer",
                "room": room.public_id,
                "participant": host.participant_id,
                "sdp": "v=0 x",
                "revision": 2,
            },
            {"type": "active_speaker", "room": room.public_id, "participant": host.participant_id},
        ],
    }
    text, headers = media_events_request(body)
    response = await AsyncClient().post(MEDIA_EVENTS_PATH, text, content_type="application/json", headers=headers)
    assert response.status_code == 204
    offer = await host.expect("offer")
    assert (offer["pc"], offer["sdp"], offer["revision"]) == ("subscribe", "v=0 x", 2)
    assert (await host.expect("active_speaker"))["participantId"] == host.participant_id


def test_media_events_map_to_frames_for_the_right_group() -> None:
    """Pure mapping: offers and track_unavailable go to one participant, speaker/publication to the room."""
    from rooms import groups
    from rooms.signaling import media_event_frames

    track = {"mid": "1", "participant": "p2", "pc": "camera", "source": "camera", "kind": "video", "extra": 1}
    [(group, frame)] = media_event_frames(
        {
            "type": "track_unavailable",
            "room": "r1",
            "participant": "p1",
            "mid": "1",
            "reason": "no_common_codec",
            "codec": "video/h264",
            "track": track,
        }
    )
    assert group == groups.participant_group("r1", "p1")
    assert frame == {
        "type": "track_unavailable",
        "mid": "1",
        "reason": "no_common_codec",
        "codec": "video/h264",
        "track": {k: track[k] for k in ("mid", "participant", "pc", "source", "kind")},
    }
    [(group, frame)] = media_event_frames({"type": "active_speaker", "room": "r1", "participant": "p1"})
    assert group == groups.room_group("r1") and frame == {"type": "active_speaker", "participantId": "p1"}
    assert media_event_frames({"type": "active_speaker", "room": "../x", "participant": "p1"}) == []
    assert media_event_frames({"type": "unknown", "room": "r1", "participant": "p1"}) == []


def test_forwarded_tracks_carries_the_bandwidth_object_reduced_to_its_documented_shape() -> None:
    """The media server's ``bandwidth`` (state, estimate, videos paused or reduced) reaches the client as
    documented; unknown reasons and states are dropped, and an older server's event has no ``bandwidth``."""
    from rooms.signaling import media_event_frames

    track = {"mid": "2", "participant": "p2", "pc": "camera", "source": "camera", "kind": "video"}
    event = {"type": "forwarded_tracks", "room": "r1", "participant": "p1", "last_n": None, "video": [], "audio": []}
    [(_, old)] = media_event_frames(event)
    assert "bandwidth" not in old
    bandwidth = {
        "state": "low",
        "estimate_bps": 90_000,
        "tracks": [{**track, "reason": "paused_bandwidth", "extra": 1}, {**track, "mid": "3", "reason": "unknown"}, 7],
    }
    [(_, frame)] = media_event_frames({**event, "bandwidth": bandwidth})
    assert frame["bandwidth"] == {
        "state": "low",
        "estimate_bps": 90_000,
        "tracks": [{**track, "reason": "paused_bandwidth"}],
    }
    [(_, odd)] = media_event_frames({**event, "bandwidth": {"state": "great", "estimate_bps": 1, "tracks": []}})
    assert "bandwidth" not in odd
    [(_, no_estimate)] = media_event_frames({**event, "bandwidth": {"state": "good", "estimate_bps": True}})
    assert no_estimate["bandwidth"] == {"state": "good", "estimate_bps": None, "tracks": []}


async def test_another_attempt_of_a_routed_batch_is_answered_but_not_routed_again(world: Any) -> None:
    """A batch id is routed once (docs/protocol.md §2 *Events*): the media server re-posts a batch whose answer
    it lost (or at shutdown) with the same id and a fresh signature; Django answers 204 and routes nothing."""
    from django.test import AsyncClient

    room = await world.room()
    host, _ = await world.host(room)

    sent: list[tuple[str, dict[str, str]]] = []

    async def post(batch_id: Any, revision: int, again: bool = False) -> tuple[int, Any]:
        if again:
            text, headers = sent[0]  # the routed attempt, as captured: a replay
        else:
            offer = {"type": "subscribe_offer", "room": room.public_id, "participant": host.participant_id}
            body = {"protocol": 1, "batch": batch_id, "events": [{**offer, "sdp": "v=0 x", "revision": revision}]}
            text, headers = media_events_request(body)  # signed afresh each time: another attempt
            sent.append((text, headers))
        response = await AsyncClient().post(MEDIA_EVENTS_PATH, text, content_type="application/json", headers=headers)
        return response.status_code, response.json()["error"]["code"] if response.status_code != 204 else None

    assert await post("b" * 32, 2) == (204, None)
    assert await post("b" * 32, 2) == (204, None)  # another attempt of the same batch
    assert await post("b" * 32, 2, again=True) == (401, "replayed_request")  # the first, captured and resent
    assert await post("c" * 32, 3) == (204, None)
    assert [(await host.expect("offer"))["revision"] for _ in range(2)] == [2, 3]  # the repeats were not routed
    for bad in ("", "x" * 65, "a b", 7):
        assert await post(bad, 4) == (400, "bad_request")


def test_forwarded_tracks_relays_the_spare_mids_and_the_revision_when_the_media_server_sends_them() -> None:
    """``spare`` (mids that carry nobody now: a leave freed them) and ``revision`` (the subscribe connection's
    offer revision) reach the client; an older server's event has neither, malformed values are dropped."""
    from rooms.signaling import media_event_frames

    event: dict[str, Any] = {
        "type": "forwarded_tracks",
        "room": "r1",
        "participant": "p1",
        "last_n": None,
        "video": [],
        "audio": [],
    }
    [(_, old)] = media_event_frames(event)
    assert "spare" not in old and "revision" not in old
    [(_, frame)] = media_event_frames({**event, "spare": ["1", 3, "4"], "revision": 7})
    assert (frame["spare"], frame["revision"]) == (["1", "4"], 7)
    [(_, odd)] = media_event_frames({**event, "spare": "1", "revision": True})
    assert "spare" not in odd and "revision" not in odd


def test_the_subscribe_connection_name_reaches_the_client_with_offers_and_forwarded_tracks() -> None:
    """``connection`` (the media server's name of the subscribe connection: revisions restart after a rejoin, so
    the client tells a late frame of its old connection by it) is relayed when it is a short alphanumeric
    string; an older server's frames have none."""
    from rooms.signaling import media_event_frames

    offer = {"type": "subscribe_offer", "room": "r1", "participant": "p1", "sdp": "v=0", "revision": 2, "tracks": []}
    forwarded = {"type": "forwarded_tracks", "room": "r1", "participant": "p1", "video": [], "audio": []}
    for event in (offer, forwarded):
        [(_, old)] = media_event_frames(event)
        assert "connection" not in old
        [(_, frame)] = media_event_frames({**event, "connection": "9f2c01ab77e3"})
        assert frame["connection"] == "9f2c01ab77e3"
        for odd in (7, "", "a b", "x" * 65, None):
            [(_, frame)] = media_event_frames({**event, "connection": odd})
            assert "connection" not in frame


async def test_the_subscribe_reply_names_the_connection(world: Any, fake_media: Any) -> None:
    fake_media.responses[("POST", "/subscribe")] = (
        200,
        {"protocol": 1, "sdp": "v=0 offer", "revision": 1, "tracks": [], "connection": "c0ffee"},
    )
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "subscribe"})
    assert (await host.expect("offer"))["connection"] == "c0ffee"
