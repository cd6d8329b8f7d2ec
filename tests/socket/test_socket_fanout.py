"""Chat fan-out from the consumer: events a socket's DB hop commits are sent after the hop, never before commit.

The broadcast of a chat message leaves the sender's consumer once the store
has committed (``rooms.events.collecting``/``publish``), encoded once for
every socket. These tests pin what that must keep: nothing rolled back is ever
broadcast, the sender gets its ack and never its own message, everyone else
gets each message exactly once.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_store_rolled_back_after_the_broadcast_was_registered_reaches_nobody(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import services as chat_services
    from chat.models import Message

    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await host.expect("participant_joined")
    real_to_room = chat_services.events.to_room

    def to_room_then_fail(room_id: str, event: dict[str, Any]) -> None:
        real_to_room(room_id, event)  # registered on commit...
        raise RuntimeError("the store fails after that")  # ...and the transaction rolls back

    monkeypatch.setattr(chat_services.events, "to_room", to_room_then_fail)
    await guest.send({"type": "chat_send", "client_id": "doomed", "text": "never seen", "ref": 1})
    assert (await guest.expect("error"))["code"] == "internal_error"
    await host.nothing()
    assert not await sync_to_async(Message.objects.filter(client_id="doomed").exists)()

    monkeypatch.setattr(chat_services.events, "to_room", real_to_room)
    await guest.send({"type": "chat_send", "client_id": "ok", "text": "seen", "ref": 2})
    ack = await guest.expect("chat_ack")
    assert ack["seq"] == 1  # the rolled-back store did not use up a sequence number
    message = (await host.expect("chat_message"))["message"]
    assert (message["text"], message["seq"]) == ("seen", 1)
    await host.nothing()
    await guest.nothing()


async def test_concurrent_senders_get_acks_and_everyone_else_each_message_exactly_once(world: Any) -> None:
    room = await world.room()
    members = [await world.host(room)]
    for n in range(4):
        members.append(await world.member(room, name=f"M{n}"))
    clients = [client for client, _ in members]
    per_sender = 5
    sends = [
        client.send({"type": "chat_send", "client_id": f"{i}-{n}", "text": f"{i}/{n}", "ref": f"{i}-{n}"})
        for n in range(per_sender)
        for i, client in enumerate(clients)
    ]
    await asyncio.gather(*sends)
    total = per_sender * len(clients)
    for i, client in enumerate(clients):
        acks: list[dict[str, Any]] = []
        seen: list[dict[str, Any]] = []
        while len(acks) < per_sender or len(seen) < total - per_sender:
            frame = await client.recv()
            if frame["type"] == "chat_ack":
                acks.append(frame)
            elif frame["type"] == "chat_message":
                seen.append(frame["message"])
            else:
                assert frame["type"] == "participant_joined", frame
        assert sorted(a["client_id"] for a in acks) == sorted(f"{i}-{n}" for n in range(per_sender))
        assert all(a["ref"] == a["client_id"] for a in acks)
        assert all(m["sender"] != client.participant_id for m in seen)  # never its own message back
        assert len({m["seq"] for m in seen}) == len(seen)  # each message once
        assert sorted({m["seq"] for m in seen} | {a["seq"] for a in acks}) == list(range(1, total + 1))
        await client.nothing(ignore=("participant_joined",))


async def test_private_message_is_encoded_once_and_still_reaches_only_the_recipient(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    alice, _ = await world.member(room, name="Alice")
    bob, _ = await world.member(room, name="Bob")
    await alice.send({"type": "chat_send", "client_id": "p", "text": "for bob", "to": bob.participant_id})
    ack = await alice.expect("chat_ack")
    message = (await bob.expect("chat_message"))["message"]
    assert (message["to"], message["seq"], message["sender"]) == (bob.participant_id, ack["seq"], alice.participant_id)
    await host.nothing(ignore=("participant_joined",))
    await alice.nothing(ignore=("participant_joined",))


async def test_events_committed_before_a_hop_fails_are_still_sent(world: Any) -> None:
    from rooms import events, groups

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(groups.room_group("r1"), channel)

    def commits_then_fails() -> None:
        events.to_room("r1", {"type": "room_updated", "settings": {}})  # no transaction: committed at once
        raise RuntimeError("later step fails")

    with pytest.raises(RuntimeError):
        await sync_to_async(events.collecting(commits_then_fails))()
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message["event"] == {"type": "room_updated", "settings": {}}


async def test_a_collecting_hop_returns_committed_events_unsent_and_drops_rolled_back_ones(world: Any) -> None:
    from django.db import transaction

    from rooms import events

    def hop() -> str:
        with transaction.atomic():
            events.to_room("r2", {"type": "room_updated", "settings": {"locked": True}})
        try:
            with transaction.atomic():
                events.to_room("r2", {"type": "room_updated", "settings": {"locked": False}})
                raise ValueError
        except ValueError:
            pass
        events.to_room("r2", {"type": "chat_message", "message": {"sender": "p1", "seq": 3, "text": "é"}})
        return "done"

    result, outgoing = await sync_to_async(events.collecting(hop))()
    assert result == "done"
    assert outgoing == [
        (
            "room.r2",
            {"type": "room.event", "group": "room.r2", "event": {"type": "room_updated", "settings": {"locked": True}}},
        ),
        (
            "room.r2",
            {
                "type": "room.event",
                "group": "room.r2",
                "text": '{"type":"chat_message","message":{"sender":"p1","seq":3,"text":"é"}}',
                "sender": "p1",
                "seq": 3,
            },
        ),
    ]


async def test_deliveries_do_not_wait_for_the_database_thread(world: Any) -> None:
    """A busy database thread (another socket's hop) must not hold up forwarding room events."""
    from rooms import events, groups

    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await host.expect("participant_joined")
    busy, release = threading.Event(), threading.Event()

    def hold_the_database_thread() -> None:
        busy.set()
        release.wait(30)

    blocker = asyncio.ensure_future(database_sync_to_async(hold_the_database_thread)())
    try:
        await asyncio.get_running_loop().run_in_executor(None, busy.wait, 10)
        event = {"type": "reaction", "participantId": host.participant_id, "emoji": "👍"}
        group = groups.room_group(room.public_id)
        await get_channel_layer().group_send(group, events.layer_message(group, event))
        assert await guest.expect("reaction") == event
    finally:
        release.set()
        await blocker
