"""End-to-end encryption key exchange frames: relayed opaque, only in e2ee rooms, only to who they name."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC_KEY = base64.b64encode(b"\x04" + bytes(range(64))).decode()  # 65 bytes, like a raw P-256 point
WRAPPED = base64.b64encode(bytes(48)).decode()
IV = base64.b64encode(bytes(12)).decode()


async def test_public_key_broadcast_reaches_everyone_else_stamped_with_the_sender(world: Any) -> None:
    room = await world.room(e2ee=True)
    alice, snapshot = await world.host(room)
    assert snapshot["room"]["e2ee"] is True
    bob, _ = await world.member(room)
    carol, _ = await world.member(room)
    await alice.send({"type": "e2ee_public_key", "public_key": PUBLIC_KEY, "from": "spoofed"})
    for client in (bob, carol):
        frame = await client.expect("e2ee_public_key")
        assert frame == {"type": "e2ee_public_key", "from": alice.participant_id, "public_key": PUBLIC_KEY}
    await alice.nothing(ignore=("participant_joined",))


async def test_public_key_with_to_and_wrapped_key_reach_only_the_named_participant(world: Any) -> None:
    room = await world.room(e2ee=True)
    alice, _ = await world.host(room)
    bob, _ = await world.member(room)
    carol, _ = await world.member(room)
    await alice.send({"type": "e2ee_public_key", "public_key": PUBLIC_KEY, "to": bob.participant_id})
    await alice.send(
        {"type": "e2ee_key", "to": bob.participant_id, "key_id": 4_000_000_000, "wrapped_key": WRAPPED, "iv": IV}
    )
    assert (await bob.expect("e2ee_public_key"))["to"] == bob.participant_id
    key = await bob.expect("e2ee_key")
    assert key == {
        "type": "e2ee_key",
        "from": alice.participant_id,
        "to": bob.participant_id,
        "key_id": 4_000_000_000,
        "wrapped_key": WRAPPED,
        "iv": IV,
    }
    await carol.nothing(ignore=("participant_joined",))
    await alice.nothing(ignore=("participant_joined",))


async def test_key_frames_are_refused_in_rooms_without_e2ee(world: Any) -> None:
    room = await world.room()
    alice, _ = await world.host(room)
    bob, _ = await world.member(room)
    await alice.send({"type": "e2ee_public_key", "public_key": PUBLIC_KEY, "ref": 1})
    error = await alice.expect("error")
    assert (error["code"], error["ref"]) == ("e2ee_not_enabled", 1)
    await alice.send({"type": "e2ee_key", "to": bob.participant_id, "key_id": 1, "wrapped_key": WRAPPED, "iv": IV})
    assert (await alice.expect("error"))["code"] == "e2ee_not_enabled"
    await bob.nothing(ignore=("participant_joined",))


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "e2ee_public_key", "public_key": "A" * 257},
        {"type": "e2ee_public_key", "public_key": "not base64!"},
        {"type": "e2ee_public_key", "public_key": 12},
        {"type": "e2ee_public_key"},
        {"type": "e2ee_key", "to": "PEER", "key_id": 1, "wrapped_key": "A" * 260, "iv": IV},
        {"type": "e2ee_key", "to": "PEER", "key_id": 1, "wrapped_key": WRAPPED, "iv": "A" * 36},
        {"type": "e2ee_key", "to": "PEER", "key_id": 2**32, "wrapped_key": WRAPPED, "iv": IV},
        {"type": "e2ee_key", "to": "PEER", "key_id": -1, "wrapped_key": WRAPPED, "iv": IV},
        {"type": "e2ee_key", "to": "PEER", "key_id": "1", "wrapped_key": WRAPPED, "iv": IV},
        {"type": "e2ee_key", "key_id": 1, "wrapped_key": WRAPPED, "iv": IV},
        {"type": "e2ee_key", "to": "../x", "key_id": 1, "wrapped_key": WRAPPED, "iv": IV},
        {"type": "e2ee_key", "to": "SELF", "key_id": 1, "wrapped_key": WRAPPED, "iv": IV},
    ],
)
async def test_malformed_or_oversized_key_frames_get_invalid_frame_and_reach_nobody(
    world: Any, frame: dict[str, Any]
) -> None:
    room = await world.room(e2ee=True)
    alice, _ = await world.host(room)
    bob, _ = await world.member(room)
    replace = {"PEER": bob.participant_id, "SELF": alice.participant_id}
    if frame.get("to") in replace:
        frame = {**frame, "to": replace[frame["to"]]}
    await alice.send(frame)
    assert (await alice.expect("error"))["code"] == "invalid_frame"
    await bob.nothing(ignore=("participant_joined",))


async def test_waiting_room_sockets_cannot_send_key_frames(world: Any) -> None:
    room = await world.room(e2ee=True, waiting_room=True)
    host, _ = await world.host(room)
    grant = await world.grant(room)
    waiting = world.socket(room, grant.token)
    await waiting.join(expect="lobby_waiting")
    await waiting.send({"type": "e2ee_public_key", "public_key": PUBLIC_KEY})
    assert (await waiting.expect("error"))["code"] == "not_admitted"
    await host.nothing(ignore=("lobby_request",))
