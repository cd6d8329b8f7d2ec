"""Last-N over the room socket: video_preferences validation and relay, forwarded_tracks, the last_n setting."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.conftest import MEDIA_EVENTS_PATH, media_events_request

pytestmark = pytest.mark.django_db(transaction=True)


async def test_video_preferences_are_relayed_to_the_media_server(world: Any, fake_media: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    tiles = [{"participant": guest.participant_id, "source": "camera", "width": 320, "height": 180}]
    await host.send({"type": "video_preferences", "pinned": [guest.participant_id], "tiles": tiles, "ref": 9})
    await fake_media.wait_for(lambda f: len(f.requests) == 1)
    method, path, body = fake_media.requests[0]
    assert (method, path) == ("PUT", f"/v1/rooms/{room.public_id}/participants/{host.participant_id}/preferences")
    assert body == {"protocol": 1, "pinned": [guest.participant_id], "tiles": tiles}
    await host.nothing(ignore=("participant_joined", "participant_updated"))  # no reply on success
    # unpinning everyone is a valid (empty) preference
    await host.send({"type": "video_preferences", "pinned": [], "tiles": []})
    await fake_media.wait_for(lambda f: len(f.requests) == 2)
    assert fake_media.requests[1][2] == {"protocol": 1, "pinned": [], "tiles": []}


@pytest.mark.parametrize(
    "frame",
    [
        {"pinned": "p1"},
        {"pinned": ["a", "b", "c", "d", "e"]},
        {"pinned": ["../etc"]},
        {"pinned": ["pA", "pA"]},
        {"tiles": {}},
        {"tiles": ["x"]},
        {"tiles": [{"participant": "pA", "source": "camera", "width": -1, "height": 10}]},
        {"tiles": [{"participant": "pA", "source": "camera", "width": 100000, "height": 10}]},
        {"tiles": [{"participant": "pA", "source": "camera", "width": True, "height": 10}]},
        {"tiles": [{"participant": "pA", "source": "microphone", "width": 1, "height": 1}]},
        {"tiles": [{"source": "camera", "width": 1, "height": 1}]},
        {"tiles": [{"participant": "pA", "source": "camera", "width": 1, "height": 1}] * 101},
    ],
)
async def test_malformed_video_preferences_get_invalid_frame(
    world: Any, fake_media: Any, frame: dict[str, Any]
) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "video_preferences", **frame, "ref": "v"})
    error = await host.expect("error")
    assert (error["code"], error["ref"]) == ("invalid_frame", "v")
    assert fake_media.requests == []


async def test_unknown_or_own_participant_ids_are_refused(world: Any, fake_media: Any) -> None:
    room = await world.room()
    other = await world.room()
    host, _ = await world.host(room)
    stranger, _ = await world.member(other)
    await host.send({"type": "video_preferences", "pinned": ["nobody1"], "ref": 1})
    error = await host.expect("error")
    assert (error["code"], error["details"]) == ("participant_not_found", {"participants": ["nobody1"]})
    tile = {"participant": stranger.participant_id, "source": "camera", "width": 1, "height": 1}
    await host.send({"type": "video_preferences", "tiles": [tile], "ref": 2})
    error = await host.expect("error")  # a participant of another room is unknown here
    assert (error["code"], error["ref"], error["details"]["participants"]) == (
        "participant_not_found",
        2,
        [stranger.participant_id],
    )
    await host.send({"type": "video_preferences", "pinned": [host.participant_id], "ref": 3})
    assert (await host.expect("error"))["code"] == "invalid_frame"
    assert fake_media.requests == []


async def test_waiting_participant_may_not_send_video_preferences(world: Any, fake_media: Any) -> None:
    room = await world.room(waiting_room=True)
    grant = await world.grant(room)
    waiting = world.socket(room, grant.token)
    await waiting.join(expect="lobby_waiting")
    await waiting.send({"type": "video_preferences", "pinned": []})
    assert (await waiting.expect("error"))["code"] == "not_admitted"
    assert fake_media.requests == []


async def test_forwarded_tracks_event_reaches_only_that_participant(world: Any, settings: Any) -> None:
    from django.test import AsyncClient

    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    video = [{"mid": "1", "participant": guest.participant_id, "pc": "camera", "source": "camera", "kind": "video"}]
    event = {
        "type": "forwarded_tracks",
        "room": room.public_id,
        "participant": host.participant_id,
        "last_n": 1,
        "video": video,
        "audio": [],
        "audio_pooled": True,
    }
    body, headers = media_events_request({"protocol": 1, "events": [event]})
    response = await AsyncClient().post(MEDIA_EVENTS_PATH, body, content_type="application/json", headers=headers)
    assert response.status_code == 204
    frame = await host.expect("forwarded_tracks")
    assert frame == {"type": "forwarded_tracks", "last_n": 1, "video": video, "audio": [], "audio_pooled": True}
    await guest.nothing(ignore=("participant_joined", "participant_updated"))


async def test_subscribe_carries_the_room_last_n_and_a_change_reaches_the_media_server(
    world: Any, fake_media: Any
) -> None:
    from rooms import services

    fake_media.responses[("POST", "/subscribe")] = (200, {"protocol": 1, "sdp": None, "revision": 1, "tracks": []})
    room = await world.room(last_n=3)
    host, snapshot = await world.host(room)
    assert snapshot["room"]["last_n"] == 3
    await host.send({"type": "subscribe"})
    await host.expect("offer")
    assert fake_media.requests[0][2] == {"protocol": 1, "last_n": 3}
    await sync_to_async(services.room_update)(room_id=room.public_id, user=room.host_user, last_n=None)
    updated = await host.expect("room_updated")
    assert updated["settings"]["last_n"] is None
    await fake_media.wait_for(lambda f: len(f.requests) == 2)
    assert fake_media.requests[1] == ("PUT", f"/v1/rooms/{room.public_id}/settings", {"protocol": 1, "last_n": None})
    # another settings change (lock) does not touch the media server
    await sync_to_async(services.room_update)(room_id=room.public_id, user=room.host_user, locked=True)
    await host.expect("room_updated")
    await host.nothing()
    assert len(fake_media.requests) == 2
