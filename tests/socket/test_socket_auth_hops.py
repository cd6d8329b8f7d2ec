"""A room socket without a session cookie skips Channels' session and user lookup (conference/socket_auth.py,
issue 19 item 3).

Counted, not timed: how many times opening a socket hands work from the event loop to a thread
(``asgiref.sync.SyncToAsync``, which Channels' ``database_sync_to_async`` is). A guest is authenticated by
its join grant alone; only a socket that sends the session cookie needs the lookup (its user must match
the grant's: tests/socket/test_socket_join.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.hand_overs import count_hand_overs

pytestmark = pytest.mark.django_db(transaction=True)


async def _open_counting(client: Any) -> int:
    with count_hand_overs() as hand_overs:
        await client.connect()
    return hand_overs.count


def _session_cookie(user: Any) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.mark.parametrize("cookie", [None, "csrftoken=abc; theme=dark"], ids=["no-cookie", "other-cookies"])
async def test_a_guest_socket_opens_without_a_hand_over_to_a_thread(world: Any, cookie: Any) -> None:
    room = await world.room()
    grant = await world.grant(room)
    client = world.socket(room, grant.token, cookie=cookie)
    assert await _open_counting(client) == 0
    await client.send({"type": "join", "token": grant.token, "protocol": 1})
    snap = await client.expect("room_snapshot")
    assert snap["you"]["role"] == "guest"


async def test_a_socket_with_a_session_cookie_still_looks_its_user_up(world: Any) -> None:
    room = await world.room()
    grant = await world.grant(room, room.host_user)
    client = world.socket(room, grant.token, cookie=await sync_to_async(_session_cookie)(room.host_user))
    assert await _open_counting(client) >= 1  # Channels' get_user, on its database thread
    await client.send({"type": "join", "token": grant.token, "protocol": 1})
    assert (await client.expect("room_snapshot"))["you"]["role"] == "host"


async def test_a_stale_session_cookie_is_anonymous_and_the_guest_grant_still_joins(world: Any) -> None:
    room = await world.room()
    grant = await world.grant(room)
    client = world.socket(room, grant.token, cookie="sessionid=expired-or-made-up")
    snap = await client.join()
    assert snap["you"]["role"] == "guest"
