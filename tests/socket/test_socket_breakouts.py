"""Breakout rooms over the room socket: one socket moves into a breakout and back, keeping the meeting's seat."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from rooms.models import Participant

pytestmark = pytest.mark.django_db(transaction=True)


async def _split(world: Any, count: int = 4) -> tuple[Any, Any, list[Any], dict[str, Any]]:
    room = await world.room()
    host, _ = await world.host(room)
    members = [(await world.member(room))[0] for _ in range(count)]
    assignments = {m.participant_id: i % 2 for i, m in enumerate(members)}
    await host.send({"type": "breakouts_open", "count": 2, "assignments": assignments, "ref": "open"})
    state = (await host.expect("breakouts_state"))["breakouts"]
    assert state["status"] == "open" and len(state["breakouts"]) == 2
    for m in members:
        await m.expect("breakouts_state")
    return room, host, members, state


async def test_a_pair_moves_into_its_breakout_sees_only_each_other_chats_apart_and_comes_back(world: Any) -> None:
    room, host, members, state = await _split(world)
    first = state["breakouts"][0]["breakoutId"]
    a, b, c, _d = members  # a and c are in the first breakout, b and d in the second
    await a.send({"type": "breakout_join", "breakoutId": first, "ref": "go"})
    moved = await a.expect("breakout_moved")
    assert (moved["ref"], moved["breakout"]["breakoutId"]) == ("go", first)
    snapshot = await a.expect("room_snapshot")
    assert snapshot["room"]["roomId"] == first
    assert [p["participantId"] for p in snapshot["participants"]] == [snapshot["you"]["participantId"]]
    a_inner = snapshot["you"]["participantId"]
    await c.send({"type": "breakout_join", "breakoutId": first})
    c_snapshot = await c.expect("room_snapshot")
    assert {p["participantId"] for p in c_snapshot["participants"]} == {a_inner, c_snapshot["you"]["participantId"]}
    c_inner = c_snapshot["you"]["participantId"]
    while (await a.expect("participant_joined"))["participant"]["participantId"] != c_inner:
        pass  # joins of the meeting seen before the move
    # A participant may not walk into the other breakout.
    await b.send({"type": "breakout_join", "breakoutId": first, "ref": "wrong"})
    refused = await b.expect("error")
    assert (refused["code"], refused["ref"]) == ("not_assigned", "wrong")
    # Chat inside the breakout stays there, stored in the breakout room.
    b.pending.clear()  # the meeting's joins and splits, seen before
    await a.send({"type": "chat_send", "text": "breakout hello", "client_id": "k1"})
    assert (await c.expect("chat_message"))["message"]["text"] == "breakout hello"
    await b.nothing(ignore=("breakouts_state", "participant_updated"))
    # Nobody in the meeting saw a and c leave: their seats are kept.
    left = [f for f in host.pending if f["type"] == "participant_left"]
    assert not left
    main_states = await sync_to_async(
        lambda: set(
            Participant.objects.filter(room=room, public_id__in=[a.participant_id, c.participant_id]).values_list(
                "state", flat=True
            )
        )
    )()
    assert main_states == {Participant.State.ADMITTED}
    # The host broadcasts, then brings everyone back at once.
    await host.send({"type": "breakouts_broadcast", "text": "Two minutes left"})
    for client in (a, c, b, host):
        assert (await client.expect("breakout_broadcast"))["text"] == "Two minutes left"
    await host.send({"type": "breakouts_close", "delay_seconds": 0})
    for client in (a, c):
        await client.expect("breakouts_ended")
        await client.expect("breakout_moved", breakout=None)
        back = await client.expect("room_snapshot", timeout=5)
        while back["room"]["roomId"] != room.public_id:  # the breakout's snapshot, skipped earlier
            back = await client.expect("room_snapshot")
        assert len(back["participants"]) == 5
    await c.send({"type": "chat_send", "text": "back in the main room", "client_id": "k2"})
    assert (await host.expect("chat_message"))["message"]["text"] == "back in the main room"


async def test_closing_a_socket_inside_a_breakout_leaves_both_rooms(world: Any) -> None:
    room, host, members, state = await _split(world, count=2)
    a = members[0]
    await a.send({"type": "breakout_join", "breakoutId": state["breakouts"][0]["breakoutId"]})
    inner = (await a.expect("room_snapshot"))["you"]["participantId"]
    await a.close()
    left = await host.expect("participant_left")
    assert left["participantId"] == a.participant_id
    states = await sync_to_async(
        lambda: dict(
            Participant.objects.filter(public_id__in=[a.participant_id, inner]).values_list("public_id", "state")
        )
    )()
    assert states == {a.participant_id: Participant.State.LEFT, inner: Participant.State.LEFT}


async def test_breakout_frames_are_validated_and_checked(world: Any) -> None:
    room, host, members, state = await _split(world, count=2)
    a = members[0]
    await a.send({"type": "breakouts_close", "ref": 1})
    assert (await a.expect("error"))["code"] == "not_moderator"
    await a.send({"type": "breakout_leave", "ref": 2})
    assert (await a.expect("error"))["code"] == "not_in_breakout"
    await host.send({"type": "breakouts_open", "count": "two", "ref": 3})
    assert (await host.expect("error"))["code"] == "invalid_frame"
    await a.send({"type": "breakouts_get", "ref": 4})
    got = await a.expect("breakouts_state")
    assert got["ref"] == 4 and got["breakouts"] == state


async def test_the_heartbeat_inside_a_breakout_keeps_the_meeting_seat(world: Any, settings: Any) -> None:
    """The socket in a breakout touches the meeting record too: the meeting's sweeps never time it out.

    With a 1 s presence timeout, a record nobody touched would be swept by the host's heartbeat within about
    a second; three timeouts pass here without a ``participant_left``.
    """
    import asyncio

    settings.PRESENCE_TOUCH_INTERVAL_SECONDS = 0.1
    settings.PRESENCE_TIMEOUT_SECONDS = 1.0
    room, host, members, state = await _split(world, count=2)
    a = members[0]
    await a.send({"type": "breakout_join", "breakoutId": state["breakouts"][0]["breakoutId"]})
    await a.expect("room_snapshot")
    await asyncio.sleep(3 * settings.PRESENCE_TIMEOUT_SECONDS)
    assert not [f for f in host.pending if f["type"] == "participant_left"]
    await host.nothing(timeout=0.3, ignore=("breakouts_state", "participant_joined"))
    states = await sync_to_async(
        lambda: set(
            Participant.objects.filter(public_id__in=[a.participant_id, host.participant_id]).values_list(
                "state", flat=True
            )
        )
    )()
    assert states == {Participant.State.ADMITTED}
