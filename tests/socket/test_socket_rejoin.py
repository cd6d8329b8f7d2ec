"""A reload keeps the seat: the rejoin token of the first grant brings an admitted guest of a waiting-room,
password-protected room straight back into the room over a new socket (no lobby, no password)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser

from rooms import services

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_a_reloaded_guest_goes_straight_back_into_a_waiting_room_password_room(world: Any) -> None:
    room = await world.room(waiting_room=True, password="open-sesame")
    host, _ = await world.host(room)
    first = await world.grant(room, name="Visitor", password="open-sesame")
    guest = world.socket(room, first.token)
    await guest.join(expect="lobby_waiting")
    await host.expect("lobby_request")
    await host.send({"type": "lobby_admit", "participantId": first.participant.public_id})
    await guest.expect("lobby_admitted")
    await guest.expect("room_snapshot")
    await host.expect("participant_joined")

    # The reload: the page goes away, then asks again with the rejoin token it kept.
    await guest.close()
    assert (await host.expect("participant_left"))["participantId"] == first.participant.public_id
    again = await sync_to_async(services.participant_rejoin)(
        room_id=room.public_id, user=AnonymousUser(), rejoin_token=first.rejoin_token
    )
    assert again.participant.public_id == first.participant.public_id
    reloaded = world.socket(room, again.token)
    snapshot = await reloaded.join()  # room_snapshot at once: not lobby_waiting
    assert snapshot["you"]["participantId"] == first.participant.public_id
    joined = await host.expect("participant_joined")
    assert joined["participant"]["participantId"] == first.participant.public_id
    await host.nothing(0.3, ignore=("ping", "lobby_resolved"))  # the earlier admission's; no lobby_request now
