"""Joining the room socket: grant checks, snapshot, presence events, leaving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from rooms.socket_protocol import Close

pytestmark = pytest.mark.django_db(transaction=True)


async def test_join_frame_with_valid_grant_gets_snapshot_with_room_you_participants_and_ice(
    world: Any, settings: Any
) -> None:
    settings.ICE_SERVERS = [{"urls": "stun:stun.example.org"}]
    room = await world.room()
    host, snap = await world.host(room)
    assert snap["protocol"] == 1
    assert snap["room"]["roomId"] == room.public_id and snap["room"]["locked"] is False
    assert snap["you"]["role"] == "host" and snap["you"]["state"] == "admitted"
    assert [p["participantId"] for p in snap["participants"]] == [snap["you"]["participantId"]]
    assert snap["recording_state"] == {"recordingId": None, "status": "none"}
    assert snap["chat"] == {"head_seq": 0}
    assert snap["lobby"] == []
    assert snap["ice_servers"] == [{"urls": "stun:stun.example.org"}]


async def test_others_get_participant_joined_and_snapshot_lists_everyone_seated(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, snap = await world.member(room, name="Ada")
    joined = await host.expect("participant_joined")
    assert joined["participant"]["display_name"] == "Ada" and joined["participant"]["is_guest"] is True
    assert len(snap["participants"]) == 2
    assert "lobby" not in snap  # only moderators see the lobby
    await guest.nothing()  # no participant_joined about itself


async def test_disconnect_leaves_and_others_get_participant_left(world: Any) -> None:
    from rooms.models import Participant

    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await host.expect("participant_joined")
    await guest.close()
    left = await host.expect("participant_left")
    assert left == {"type": "participant_left", "participantId": guest.participant_id, "reason": "left"}
    state = await sync_to_async(lambda: Participant.objects.get(public_id=guest.participant_id).state)()
    assert state == "left"


async def test_a_frame_for_a_socket_its_client_just_closed_does_not_cost_the_leave(
    world: Any, monkeypatch: Any
) -> None:
    """Once the client has closed, daphne raises ``Disconnected`` for a send until the consumer handles the
    ``websocket.disconnect`` queued behind it (seen in CI: a room event for a Firefox guest that had just left
    ended its consumer, so nobody was told it left). The frame is dropped and the leave still happens."""
    from autobahn.exception import Disconnected

    from rooms.consumers import RoomConsumer
    from rooms.models import Participant

    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await host.expect("participant_joined")
    raised = asyncio.Event()
    real_send = RoomConsumer.send

    async def send(self: Any, *args: Any, **kwargs: Any) -> None:
        if self.session is not None and self.session.participant_id == guest.participant_id:
            raised.set()
            raise Disconnected("Attempt to send on a closed protocol")  # daphne's, after the client's close
        await real_send(self, *args, **kwargs)

    monkeypatch.setattr(RoomConsumer, "send", send)
    await host.send({"type": "chat_send", "client_id": "c1", "text": "hello", "ref": "r1"})
    await asyncio.wait_for(raised.wait(), 10)  # the guest's consumer handled the chat message
    await guest.close()
    left = await host.expect("participant_left")
    assert left["participantId"] == guest.participant_id
    state = await sync_to_async(lambda: Participant.objects.get(public_id=guest.participant_id).state)()
    assert state == "left"


async def test_reload_new_grant_replaces_old_socket_whose_late_disconnect_does_not_evict(world: Any) -> None:
    from rooms.models import Participant

    room = await world.room()
    user = await world.user()
    host, _ = await world.host(room)
    first, _ = await world.member(room, user)
    second_grant = await world.grant(room, user)  # the reload: REST join again (grant version bumps)
    second = world.socket(room, second_grant.token)
    await second.join()
    await first.expect_closed(Close.REPLACED)
    await first.close()
    await host.nothing(ignore=("participant_joined",))  # no participant_left
    state = await sync_to_async(lambda: Participant.objects.get(public_id=second_grant.participant.public_id).state)()
    assert state == "admitted"
    await second.send({"type": "ping", "ref": 1})
    assert await second.expect("pong") == {"type": "pong", "ref": 1}


@pytest.mark.parametrize(
    ("token", "code"),
    [("garbage", Close.BAD_TOKEN), ("", Close.BAD_TOKEN)],
)
async def test_bad_token_closes_4001(world: Any, token: str, code: int) -> None:
    room = await world.room()
    client = world.socket(room, token)
    await client.connect()
    await client.send({"type": "join", "token": token})
    assert (await client.expect("error"))["code"] == "bad_token"
    await client.expect_closed(code)


async def test_expired_token_closes_4001(world: Any, settings: Any) -> None:
    room = await world.room()
    grant = await world.grant(room, room.host_user)
    settings.JOIN_GRANT_TTL_SECONDS = -1
    client = world.socket(room, grant.token)
    await client.connect()
    await client.send({"type": "join", "token": grant.token})
    await client.expect_closed(Close.BAD_TOKEN)


async def test_grant_for_another_room_closes_4003(world: Any) -> None:
    room, other = await world.room(), await world.room()
    grant = await world.grant(other, other.host_user)
    client = world.socket(room, grant.token)
    await client.connect()
    await client.send({"type": "join", "token": grant.token})
    assert (await client.expect("error"))["code"] == "wrong_room"
    await client.expect_closed(Close.FORBIDDEN)


async def test_unknown_room_closes_4004(world: Any) -> None:
    room = await world.room()
    grant = await world.grant(room, room.host_user)
    client = world.socket(type("R", (), {"public_id": "zzzzzzzzzzzz"})(), grant.token)
    await client.connect()
    await client.send({"type": "join", "token": grant.token})
    await client.expect_closed(Close.ROOM_NOT_FOUND)


async def test_session_user_must_match_the_grant_4003(world: Any) -> None:
    from django.test import Client

    room = await world.room()
    grant = await world.grant(room, room.host_user)
    someone_else = await world.user()

    def login() -> str:
        client = Client()
        client.force_login(someone_else)
        return f"sessionid={client.cookies['sessionid'].value}"

    cookie = await sync_to_async(login)()
    client = world.socket(room, grant.token, cookie=cookie)
    await client.connect()
    await client.send({"type": "join", "token": grant.token})
    assert (await client.expect("error"))["code"] == "user_mismatch"
    await client.expect_closed(Close.FORBIDDEN)


async def test_session_user_matching_the_grant_joins(world: Any) -> None:
    from django.test import Client

    room = await world.room()
    grant = await world.grant(room, room.host_user)

    def login() -> str:
        client = Client()
        client.force_login(room.host_user)
        return f"sessionid={client.cookies['sessionid'].value}"

    client = world.socket(room, grant.token, cookie=await sync_to_async(login)())
    snap = await client.join()
    assert snap["you"]["role"] == "host"


async def test_grant_of_ended_room_closes_4010(world: Any) -> None:
    from rooms import services

    room = await world.room()
    grant = await world.grant(room)
    await sync_to_async(services.room_end)(room_id=room.public_id, user=room.host_user)
    client = world.socket(room, grant.token)
    await client.connect()
    await client.send({"type": "join", "token": grant.token})
    await client.expect_closed(Close.ROOM_ENDED)


async def test_no_join_frame_in_time_closes_4008(world: Any, settings: Any) -> None:
    settings.SOCKET_JOIN_TIMEOUT_SECONDS = 0.2
    room = await world.room()
    client = world.socket(room, None)
    await client.connect()
    assert (await client.expect("error"))["code"] == "join_timeout"
    await client.expect_closed(Close.JOIN_TIMEOUT)


async def test_first_frame_other_than_join_closes_4400(world: Any) -> None:
    room = await world.room()
    client = world.socket(room, None)
    await client.connect()
    await client.send({"type": "chat_send", "text": "hi"})
    assert (await client.expect("error"))["code"] == "join_first"
    await client.expect_closed(Close.PROTOCOL_VIOLATION)


async def test_join_frame_media_state_reaches_everyone_with_the_join_and_no_update_follows(world: Any) -> None:
    """The first ``media_state`` folded into ``join`` (issue 19): the snapshot's ``you`` and the others'
    ``participant_joined`` carry it; no ``participant_updated`` (and no separate frame) is needed."""
    room = await world.room()
    host, _ = await world.host(room)
    grant = await world.grant(room, name="Ada")
    guest = world.socket(room, grant.token)
    await guest.connect()
    muted = {"audio_muted": True, "video_muted": True, "screen_sharing": False}
    await guest.send({"type": "join", "token": grant.token, "protocol": 1, "media_state": muted})
    snap = await guest.expect("room_snapshot")
    assert {k: snap["you"][k] for k in muted} == muted
    joined = await host.expect("participant_joined")
    assert {k: joined["participant"][k] for k in muted} == muted
    await host.nothing(ignore=("ping",))


async def test_join_frame_with_a_malformed_media_state_is_refused(world: Any) -> None:
    room = await world.room()
    grant = await world.grant(room, name="Ada")
    client = world.socket(room, grant.token)
    await client.connect()
    await client.send({"type": "join", "token": grant.token, "media_state": {"audio_muted": "yes"}})
    assert (await client.expect("error"))["code"] == "invalid_frame"
    await client.expect_closed(Close.PROTOCOL_VIOLATION)


async def test_wrong_protocol_version_is_refused(world: Any) -> None:
    room = await world.room()
    grant = await world.grant(room, room.host_user)
    client = world.socket(room, grant.token)
    await client.connect()
    await client.send({"type": "join", "token": grant.token, "protocol": 2})
    assert (await client.expect("error"))["code"] == "protocol_mismatch"
    await client.expect_closed(Close.PROTOCOL_VIOLATION)


async def test_reconnect_with_same_unexpired_grant_after_drop_takes_the_seat_again(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await guest.close()
    await host.expect("participant_left")
    again = world.socket(room, guest.token)
    snap = await again.join()
    assert snap["you"]["participantId"] == guest.participant_id
    assert (await host.expect("participant_joined"))["participant"]["participantId"] == guest.participant_id


async def test_reconnect_after_drop_into_a_full_room_closes_4013(world: Any) -> None:
    room = await world.room(max_participants=2)
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await guest.close()
    await host.expect("participant_left")
    await world.member(room)  # takes the freed seat
    again = world.socket(room, guest.token)
    await again.connect()
    await again.send({"type": "join", "token": guest.token})
    assert (await again.expect("error"))["code"] == "room_full"
    await again.expect_closed(Close.ROOM_FULL)


async def test_a_grant_replaced_by_a_newer_one_closes_4001(world: Any) -> None:
    room = await world.room()
    user = await world.user()
    first = await world.grant(room, user)
    await world.grant(room, user)  # a second REST join revokes the first grant
    client = world.socket(room, first.token)
    await client.connect()
    await client.send({"type": "join", "token": first.token, "protocol": 1})
    assert (await client.expect("error"))["code"] == "bad_token"
    await client.expect_closed(Close.BAD_TOKEN)


def _room_event_during_the_join_hop(monkeypatch: Any, room: Any, event: dict[str, Any]) -> None:
    """Send ``event`` to the room's group from inside the join frame's database hop."""
    from rooms import events, groups, presence

    original = presence.socket_join

    def sending(**kwargs: Any) -> Any:
        group = groups.room_group(room.public_id)
        events._send_message(group, events.layer_message(group, event))
        return original(**kwargs)

    monkeypatch.setattr(presence, "socket_join", sending)


async def test_a_room_event_sent_while_joining_reaches_the_socket_after_its_snapshot(
    world: Any, monkeypatch: Any
) -> None:
    """The socket is in the room's group before its database hop (subscribe before the state change)."""
    room = await world.room()
    event = {"type": "reaction", "participantId": "someone", "emoji": "👍"}
    _room_event_during_the_join_hop(monkeypatch, room, event)
    client = world.socket(room, (await world.grant(room)).token)
    await client.join()
    assert await client.expect("reaction") == event


async def test_a_waiting_socket_never_forwards_a_room_event_sent_while_it_joined(world: Any, monkeypatch: Any) -> None:
    """Its grant could have given the room's group, so the socket was in it during the hop; the hop said
    'waiting', the socket left the group, and what the group sent meanwhile is dropped."""
    room = await world.room(waiting_room=True)
    _room_event_during_the_join_hop(monkeypatch, room, {"type": "reaction", "participantId": "someone", "emoji": "👍"})
    client = world.socket(room, (await world.grant(room)).token)
    await client.join(expect="lobby_waiting")
    await client.nothing(timeout=0.5)
    await client.send({"type": "ping", "ref": 1})
    assert await client.recv() == {"type": "pong", "ref": 1}
