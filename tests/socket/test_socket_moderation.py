"""Host/moderator controls, the waiting room, hands, reactions and media state over the socket."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from rooms.socket_protocol import Close

pytestmark = pytest.mark.django_db(transaction=True)


async def test_mute_participant_sends_mute_request_to_the_target_only(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    target, _ = await world.member(room)
    bystander, _ = await world.member(room)
    await host.send({"type": "mute_participant", "participantId": target.participant_id, "kind": "audio"})
    request = await target.expect("mute_request")
    assert request == {"type": "mute_request", "kind": "audio", "by": host.participant_id}
    await bystander.nothing(ignore=("participant_joined",))


async def test_remove_participant_closes_their_socket_4009_revokes_the_grant_and_tells_media(
    world: Any, fake_media: Any
) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    target, _ = await world.member(room)
    await host.send({"type": "remove_participant", "participantId": target.participant_id})
    removed = await target.expect("removed")
    assert removed["by"] == host.participant_id
    await target.expect_closed(Close.REMOVED)
    left = await host.expect("participant_left")
    assert (left["participantId"], left["reason"]) == (target.participant_id, "removed")
    await fake_media.wait_for(lambda f: any(p.endswith(target.participant_id) for p in f.paths("DELETE")))
    again = world.socket(room, target.token)
    await again.connect()
    await again.send({"type": "join", "token": target.token})
    await again.expect_closed(Close.REMOVED)


async def test_end_room_tells_everyone_closes_all_sockets_4010_and_closes_media_room(
    world: Any, fake_media: Any
) -> None:
    room = await world.room(waiting_room=True)
    host, _ = await world.host(room)
    guest_grant = await world.grant(room)  # waits in the lobby
    waiting = world.socket(room, guest_grant.token)
    await waiting.join(expect="lobby_waiting")
    await host.send({"type": "end_room"})
    for client in (host, waiting):
        assert (await client.expect("room_ended"))["reason"] == "ended_by_host"
        await client.expect_closed(Close.ROOM_ENDED)
    await fake_media.wait_for(lambda f: f"/v1/rooms/{room.public_id}" in f.paths("DELETE"))


async def test_lock_and_unlock_room_broadcast_room_updated(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await host.send({"type": "lock_room"})
    assert (await guest.expect("room_updated"))["settings"]["locked"] is True
    await host.send({"type": "unlock_room"})
    assert (await guest.expect("room_updated"))["settings"]["locked"] is False


async def test_promote_moves_the_socket_into_the_moderators_group_and_demote_out(world: Any) -> None:
    room = await world.room(waiting_room=True)
    host, _ = await world.host(room)
    user = await world.user()
    mod_grant = await world.grant(room, user)
    # The user waits in the lobby first; the host admits them.
    mod = world.socket(room, mod_grant.token)
    await mod.join(expect="lobby_waiting")
    await host.expect("lobby_request")
    await host.send({"type": "lobby_admit", "participantId": mod_grant.participant.public_id})
    await mod.expect("lobby_admitted")
    await mod.expect("room_snapshot")
    await host.send({"type": "promote", "participantId": mod_grant.participant.public_id, "role": "moderator"})
    updated = await mod.expect("participant_updated")
    assert updated["participant"]["role"] == "moderator"
    assert (await mod.expect("lobby_list"))["lobby"] == []  # nobody is waiting yet
    newcomer = await world.grant(room)
    assert (await mod.expect("lobby_request"))["participant"]["participantId"] == newcomer.participant.public_id
    await mod.send({"type": "lock_room"})  # a moderator may moderate now
    assert (await mod.expect("room_updated"))["settings"]["locked"] is True
    await mod.send({"type": "unlock_room"})
    assert (await mod.expect("room_updated"))["settings"]["locked"] is False
    await host.send({"type": "promote", "participantId": mod_grant.participant.public_id, "role": "participant"})
    await mod.expect("participant_updated")
    await world.grant(room)
    await mod.nothing()
    await mod.send({"type": "unlock_room", "ref": 9})
    assert await mod.expect("error", code="not_moderator")


async def test_lower_all_hands_lowers_every_raised_hand(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await guest.send({"type": "raise_hand"})
    raised = await host.expect("participant_updated")
    assert raised["participant"]["hand_raised"] is True
    assert (await guest.expect("participant_updated"))["participant"]["hand_raised"] is True
    await host.send({"type": "lower_all_hands"})
    lowered = await guest.expect("participant_updated")
    assert (lowered["participant"]["participantId"], lowered["participant"]["hand_raised"]) == (
        guest.participant_id,
        False,
    )


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "mute_participant", "kind": "video"},
        {"type": "remove_participant"},
        {"type": "promote", "role": "moderator"},
        {"type": "lock_room"},
        {"type": "unlock_room"},
        {"type": "end_room"},
        {"type": "lower_all_hands"},
        {"type": "lobby_admit"},
        {"type": "lobby_deny"},
    ],
)
@pytest.mark.parametrize("as_guest", [True, False])
async def test_participants_and_guests_get_not_moderator(world: Any, frame: dict[str, Any], as_guest: bool) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    actor, _ = await world.member(room, None if as_guest else await world.user())
    await host.expect("participant_joined")
    if frame["type"] not in ("lock_room", "unlock_room", "end_room", "lower_all_hands"):
        frame = {**frame, "participantId": host.participant_id}
    await actor.send({**frame, "ref": "m"})
    error = await actor.expect("error")
    assert (error["code"], error["ref"]) == ("not_moderator", "m")
    await host.nothing()


async def test_waiting_participant_gets_lobby_waiting_and_moderator_lobby_request_and_snapshot_lobby(
    world: Any,
) -> None:
    room = await world.room(waiting_room=True)
    grant = await world.grant(room, name="Wanda")
    waiting = world.socket(room, grant.token)
    frame = await waiting.join(expect="lobby_waiting")
    assert frame["participantId"] == grant.participant.public_id
    host, snap = await world.host(room)
    assert [p["participantId"] for p in snap["lobby"]] == [grant.participant.public_id]
    assert grant.participant.public_id not in [p["participantId"] for p in snap["participants"]]
    second = await world.grant(room, name="Walt")
    assert (await host.expect("lobby_request"))["participant"]["participantId"] == second.participant.public_id


async def test_admitted_from_lobby_gets_lobby_admitted_then_snapshot_and_joins_the_room(world: Any) -> None:
    room = await world.room(waiting_room=True)
    host, _ = await world.host(room)
    grant = await world.grant(room)
    waiting = world.socket(room, grant.token)
    await waiting.join(expect="lobby_waiting")
    await waiting.send({"type": "chat_send", "text": "let me in"})
    assert (await waiting.expect("error"))["code"] == "not_admitted"
    await host.send({"type": "chat_send", "client_id": "before", "text": "private room talk"})
    await host.expect("chat_ack")
    await host.send({"type": "lobby_admit", "participantId": grant.participant.public_id})
    await waiting.expect("lobby_admitted")
    snap = await waiting.expect("room_snapshot")
    assert snap["you"]["state"] == "admitted" and snap["chat"]["head_seq"] == 1
    assert (await host.expect("lobby_resolved"))["outcome"] == "admitted"
    await host.expect("participant_joined")
    await host.send({"type": "chat_send", "client_id": "after", "text": "welcome"})
    assert (await waiting.expect("chat_message"))["message"]["text"] == "welcome"


async def test_denied_from_lobby_gets_lobby_denied_closes_4011_and_cannot_join_again(world: Any) -> None:
    room = await world.room(waiting_room=True)
    host, _ = await world.host(room)
    grant = await world.grant(room)
    waiting = world.socket(room, grant.token)
    await waiting.join(expect="lobby_waiting")
    await host.send({"type": "lobby_deny", "participantId": grant.participant.public_id})
    await waiting.expect("lobby_denied")
    await waiting.expect_closed(Close.DENIED)
    again = world.socket(room, grant.token)
    await again.connect()
    await again.send({"type": "join", "token": grant.token, "protocol": 1})
    assert (await again.expect("error"))["code"] == "denied"
    await again.expect_closed(Close.DENIED)


async def test_waiting_socket_does_not_receive_room_events(world: Any) -> None:
    room = await world.room(waiting_room=True)
    host, _ = await world.host(room)
    grant = await world.grant(room)
    waiting = world.socket(room, grant.token)
    await waiting.join(expect="lobby_waiting")
    await host.send({"type": "chat_send", "text": "secret"})
    await host.send({"type": "raise_hand"})
    await host.expect("participant_updated")
    await waiting.nothing()


async def test_raise_and_lower_hand_broadcast_participant_updated(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await guest.send({"type": "raise_hand"})
    assert (await host.expect("participant_updated"))["participant"]["hand_raised"] is True
    await guest.send({"type": "lower_hand"})
    assert (await host.expect("participant_updated"))["participant"]["hand_raised"] is False


async def test_reaction_is_broadcast_to_everyone_and_not_stored(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await guest.send({"type": "reaction", "emoji": "🎉"})
    assert await host.expect("reaction") == {"type": "reaction", "participantId": guest.participant_id, "emoji": "🎉"}
    await guest.expect("reaction")
    for bad in ("hello", "", "🎉🎉🎉🎉🎉🎉🎉🎉🎉", 5):
        await guest.send({"type": "reaction", "emoji": bad})
        assert (await guest.expect("error"))["code"] in ("invalid_reaction", "invalid_frame")


async def test_media_state_is_mirrored_to_everyone_and_in_later_snapshots(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await guest.send({"type": "media_state", "audio_muted": True, "screen_sharing": True})
    p = (await host.expect("participant_updated"))["participant"]
    assert (p["audio_muted"], p["video_muted"], p["screen_sharing"]) == (True, False, True)
    _, snap = await world.member(room)
    mirrored = next(x for x in snap["participants"] if x["participantId"] == guest.participant_id)
    assert mirrored["audio_muted"] is True
    await guest.send({"type": "media_state", "audio_muted": "yes"})
    assert (await guest.expect("error"))["code"] == "invalid_frame"


async def test_moderator_cannot_act_on_another_rooms_participant(world: Any) -> None:
    room, other = await world.room(), await world.room()
    host, _ = await world.host(room)
    foreign = await world.grant(other)
    for frame in (
        {"type": "remove_participant", "participantId": foreign.participant.public_id},
        {"type": "mute_participant", "participantId": foreign.participant.public_id, "kind": "audio"},
        {"type": "promote", "participantId": foreign.participant.public_id, "role": "participant"},
    ):
        await host.send(frame)
        assert (await host.expect("error"))["code"] == "participant_not_found"


async def test_snapshot_carries_latest_recording_state(world: Any) -> None:
    from recordings.models import Recording

    room = await world.room()
    await sync_to_async(Recording.objects.create)(room=room, status=Recording.Status.RECORDING)
    _, snap = await world.host(room)
    assert snap["recording_state"]["status"] == "recording"
    assert snap["recording_state"]["recordingId"].startswith("rec")


async def test_a_promoted_moderator_gets_the_current_lobby_list_and_a_participant_never_does(world: Any) -> None:
    room = await world.room(waiting_room=True)
    host, _ = await world.host(room)
    user = await world.user()
    mod_grant = await world.grant(room, user)
    plain_grant = await world.grant(room, name="Plain")
    for grant in (mod_grant, plain_grant):
        await host.send({"type": "lobby_admit", "participantId": grant.participant.public_id})
        # admitted before they join (sockets' database hops run on several threads: no order across sockets)
        await host.expect("lobby_resolved", participantId=grant.participant.public_id)
    mod, plain = world.socket(room, mod_grant.token), world.socket(room, plain_grant.token)
    await mod.join()
    await plain.join()
    await mod.expect("participant_joined")
    first, second = await world.grant(room, name="W1"), await world.grant(room, name="W2")
    waiting = [first.participant.public_id, second.participant.public_id]

    await host.send({"type": "promote", "participantId": mod_grant.participant.public_id, "role": "moderator"})
    assert (await mod.recv())["type"] == "participant_updated"  # the role change first, then the list
    lobby = await mod.recv()
    assert lobby["type"] == "lobby_list"
    assert sorted(p["participantId"] for p in lobby["lobby"]) == sorted(waiting)
    assert {p["display_name"] for p in lobby["lobby"]} == {"W1", "W2"}
    await plain.expect("participant_updated")
    await plain.nothing(ignore=("participant_joined",))  # participants never see the lobby

    # The list is followed by the moderators' lobby events.
    await host.send({"type": "lobby_admit", "participantId": first.participant.public_id})
    assert (await mod.expect("lobby_resolved"))["participantId"] == first.participant.public_id

    # Demoted: no list and no lobby events; promoted again: the list as it is now.
    await host.send({"type": "promote", "participantId": mod_grant.participant.public_id, "role": "participant"})
    await mod.expect("participant_updated")
    third = await world.grant(room, name="W3")
    await mod.nothing(ignore=("participant_joined",))
    await host.send({"type": "promote", "participantId": mod_grant.participant.public_id, "role": "moderator"})
    assert (await mod.recv())["type"] == "participant_updated"
    lobby = await mod.recv()
    assert lobby["type"] == "lobby_list"
    assert sorted(p["participantId"] for p in lobby["lobby"]) == sorted(
        [second.participant.public_id, third.participant.public_id]
    )
    # A participant_updated that does not change the role (a raised hand) sends no new list.
    await mod.send({"type": "raise_hand"})
    assert (await mod.expect("participant_updated"))["participant"]["hand_raised"] is True
    await mod.nothing(ignore=("participant_joined",))
