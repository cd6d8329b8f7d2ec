"""Chat over the room socket: stored before broadcast, acks, private messages, catching up, limits."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chat.models import MAX_MESSAGE_LENGTH

pytestmark = pytest.mark.django_db(transaction=True)


async def test_chat_send_is_stored_then_acked_to_sender_and_broadcast_to_others(world: Any) -> None:
    from chat.models import Message

    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room, name="Bo")
    await host.expect("participant_joined")
    await guest.send({"type": "chat_send", "client_id": "c1", "text": "hello", "ref": "r1"})
    ack = await guest.expect("chat_ack")
    assert ack["client_id"] == "c1" and ack["seq"] == 1 and ack["ref"] == "r1"
    message = (await host.expect("chat_message"))["message"]
    assert message["id"] == ack["id"] and message["text"] == "hello" and message["sender_name"] == "Bo"
    assert await sync_to_async(Message.objects.filter(public_id=ack["id"]).exists)()
    await guest.nothing()  # the sender gets its ack, not its own message back


async def test_retried_client_id_is_acked_again_without_a_duplicate(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await host.expect("participant_joined")
    await guest.send({"type": "chat_send", "client_id": "same", "text": "once"})
    first = await guest.expect("chat_ack")
    await guest.send({"type": "chat_send", "client_id": "same", "text": "once"})
    second = await guest.expect("chat_ack")
    assert first == second
    await host.expect("chat_message")
    await host.nothing()


async def test_private_message_reaches_only_recipient_and_sender(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    alice, _ = await world.member(room)
    bob, _ = await world.member(room)
    await host.expect("participant_joined")
    await alice.send({"type": "chat_send", "client_id": "p1", "text": "psst", "to": bob.participant_id})
    ack = await alice.expect("chat_ack")
    message = (await bob.expect("chat_message"))["message"]
    assert message["to"] == bob.participant_id and message["seq"] == ack["seq"]
    await host.nothing(ignore=("participant_joined",))


async def test_html_is_stored_and_returned_verbatim(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    text = '<script>alert("x")</script> & <b>bold</b>'
    await guest.send({"type": "chat_send", "client_id": "x", "text": text})
    assert (await host.expect("chat_message"))["message"]["text"] == text


async def test_too_long_and_empty_messages_get_errors(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "chat_send", "text": "x" * (MAX_MESSAGE_LENGTH + 1), "ref": 7})
    assert await host.expect("error") == {
        "type": "error",
        "code": "message_too_long",
        "message": f"A message has at most {MAX_MESSAGE_LENGTH} characters.",
        "ref": 7,
    }
    await host.send({"type": "chat_send", "text": "   "})
    assert (await host.expect("error"))["code"] == "empty_message"
    await host.send({"type": "chat_send", "text": "x" * MAX_MESSAGE_LENGTH})
    await host.expect("chat_ack")


async def test_private_message_to_someone_not_in_the_room_gets_recipient_not_found(world: Any) -> None:
    room, other = await world.room(), await world.room()
    host, _ = await world.host(room)
    stranger = await world.grant(other, other.host_user)
    await host.send({"type": "chat_send", "text": "hi", "to": stranger.participant.public_id})
    assert (await host.expect("error"))["code"] == "recipient_not_found"


async def test_rate_limit_sends_rate_limited_keeps_socket_open_and_others_unaffected(world: Any, settings: Any) -> None:
    settings.SOCKET_CHAT_RATE_PER_SECOND = 0.001
    settings.SOCKET_CHAT_BURST = 3
    room = await world.room()
    host, _ = await world.host(room)
    spammer, _ = await world.member(room)
    await host.expect("participant_joined")
    for n in range(5):
        await spammer.send({"type": "chat_send", "client_id": f"s{n}", "text": f"spam {n}", "ref": n})
    acks = [await spammer.expect("chat_ack") for _ in range(3)]
    errors = [await spammer.expect("error") for _ in range(2)]
    assert [a["ref"] for a in acks] == [0, 1, 2]
    assert [(e["code"], e["ref"]) for e in errors] == [("rate_limited", 3), ("rate_limited", 4)]
    await host.send({"type": "chat_send", "client_id": "h", "text": "host still talks"})
    await host.expect("chat_ack")
    assert (await spammer.expect("chat_message"))["message"]["text"] == "host still talks"
    await spammer.send({"type": "ping"})
    await spammer.expect("pong")


async def post(world: Any, room: Any, sender: Any, text: str, to: str | None = None) -> int:
    from chat.services import chat_post

    message, _ = await sync_to_async(chat_post)(sender=sender, text=text, recipient_id=to)
    return int(message.seq)


async def test_join_with_last_seq_gets_each_missed_visible_message_once_in_order(world: Any) -> None:
    room = await world.room()
    host_grant = await world.grant(room, room.host_user)
    alice = await world.grant(room, name="Alice")
    bob = await world.grant(room, name="Bob")
    for n in range(1, 6):
        await post(world, room, host_grant.participant, f"m{n}")
    await post(world, room, host_grant.participant, "secret for bob", to=bob.participant.public_id)
    await post(world, room, host_grant.participant, "for alice", to=alice.participant.public_id)
    await post(world, room, host_grant.participant, "m8")

    client = world.socket(room, alice.token)
    snap = await client.join(last_seq=2)
    assert snap["chat"]["head_seq"] == 8
    texts = [(await client.expect("chat_message"))["message"]["text"] for _ in range(5)]
    assert texts == ["m3", "m4", "m5", "for alice", "m8"]
    assert await client.expect("chat_synced") == {"type": "chat_synced", "up_to": 8, "more": False}
    await client.nothing()


def post_many(participant_id: str, count: int) -> None:
    from chat.services import chat_post
    from rooms.models import Participant

    sender = Participant.objects.select_related("room").get(public_id=participant_id)
    for n in range(count):
        chat_post(sender=sender, text=f"n{n}")


async def test_chat_sync_pages_through_long_history_exactly_once(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    await sync_to_async(post_many)(host.participant_id, 450)
    guest, snap = await world.member(room)
    assert snap["chat"]["head_seq"] == 450
    await guest.send({"type": "chat_sync", "after_seq": 10, "ref": "sync"})
    seqs: list[int] = []
    while True:
        frame = await guest.recv()
        if frame["type"] == "chat_synced":
            break
        assert frame["type"] == "chat_message"
        seqs.append(frame["message"]["seq"])
    assert seqs == list(range(11, 451))
    assert frame == {"type": "chat_synced", "up_to": 450, "more": False, "ref": "sync"}


async def test_live_message_already_covered_by_the_snapshot_is_not_delivered_twice(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    guest, _ = await world.member(room)
    await host.send({"type": "chat_send", "client_id": "a", "text": "first"})
    await host.expect("chat_ack")
    assert (await guest.expect("chat_message"))["message"]["seq"] == 1
    late, snap = await world.member(room)
    assert snap["chat"]["head_seq"] == 1
    await host.send({"type": "chat_send", "client_id": "b", "text": "second"})
    assert (await late.expect("chat_message"))["message"]["text"] == "second"
    await late.nothing()
