"""Heartbeat and presence: pings, silence, last_seen_at bumps, sweeping participants nobody sees."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from rooms.socket_protocol import Close

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fast_heartbeat(settings: Any) -> None:
    settings.SOCKET_PING_INTERVAL_SECONDS = 0.3
    settings.SOCKET_IDLE_TIMEOUT_SECONDS = 1.5
    settings.PRESENCE_TOUCH_INTERVAL_SECONDS = 0.1


async def test_idle_socket_gets_ping_and_answering_pong_keeps_it_open(world: Any, fast_heartbeat: None) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    for _ in range(7):  # 7 x 0.3 s > the 1.5 s idle timeout: alive only because of the pongs
        assert await host.expect("ping", timeout=2) == {"type": "ping"}
        await host.send({"type": "pong"})
    await host.send({"type": "ping"})
    await host.expect("pong")


async def test_silent_socket_is_closed_4000_and_leaves(world: Any, fast_heartbeat: None) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    host.auto_pong = True
    silent, _ = await world.member(room)

    async def stay_silent() -> None:
        await silent.expect("ping", timeout=2)
        await silent.expect_closed(Close.HEARTBEAT_TIMEOUT, timeout=6)
        await silent.close()  # what the server does when its close handshake completes

    _, left = await asyncio.gather(stay_silent(), host.expect("participant_left", timeout=8))
    assert left["participantId"] == silent.participant_id


async def test_live_socket_bumps_last_seen_at(world: Any, fast_heartbeat: None, settings: Any) -> None:
    from rooms.models import Participant

    settings.SOCKET_IDLE_TIMEOUT_SECONDS = 30
    room = await world.room()
    host, _ = await world.host(room)

    def last_seen() -> Any:
        return Participant.objects.get(public_id=host.participant_id).last_seen_at

    before = await sync_to_async(last_seen)()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if await sync_to_async(last_seen)() > before:
            break
    assert await sync_to_async(last_seen)() > before


async def test_participant_nobody_sees_is_swept_by_live_sockets_and_others_get_participant_left(
    world: Any, fast_heartbeat: None, settings: Any, fake_media: Any
) -> None:
    """A participant whose web process died (no socket, no disconnect) loses its seat after PRESENCE_TIMEOUT_SECONDS."""
    from django.utils import timezone

    from rooms.models import Participant

    room = await world.room()
    ghost = await world.grant(room)  # admitted over REST; its socket lived on a process that crashed
    host, snap = await world.host(room)
    host.auto_pong = True
    assert ghost.participant.public_id in [p["participantId"] for p in snap["participants"]]
    await sync_to_async(
        lambda: Participant.objects.filter(pk=ghost.participant.pk).update(
            last_seen_at=timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS + 1)
        )
    )()
    left = await host.expect("participant_left", timeout=3)
    assert left == {"type": "participant_left", "participantId": ghost.participant.public_id, "reason": "timeout"}
    state = await sync_to_async(lambda: Participant.objects.get(pk=ghost.participant.pk).state)()
    assert state == "left"
    leave = f"/v1/rooms/{room.public_id}/participants/{ghost.participant.public_id}"
    await fake_media.wait_for(lambda f: leave in f.paths("DELETE"))
    await host.send({"type": "ping"})
    await host.expect("pong")
