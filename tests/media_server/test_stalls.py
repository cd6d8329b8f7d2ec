"""Stalled subscriber streams are described for the logs (the intermittent browser-test stall, docs/architecture.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from ms_helpers import PublisherClient, SubscriberClient, recv_frames

from media_server.participant import Slot, Subscriber


def _video_slot(subscriber: Subscriber) -> Slot:
    return next(s for s in subscriber.slots if s.attached is not None and s.kind == "video")


async def _source_moves(slot: Slot) -> None:
    assert slot.attached is not None
    start = slot.attached.forwarder.packets_in
    while slot.attached.forwarder.packets_in == start:
        await asyncio.sleep(0.02)


async def _alice_camera_to_bob(media: Any) -> tuple[PublisherClient, SubscriberClient, Subscriber, Slot]:
    """Room r1: alice publishes her camera, bob receives it (3 frames decoded); bob's server-side video slot."""
    pub = PublisherClient(media.http, "r1", "alice", audio=False)
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 3)
    subscriber = media.service.rooms["r1"].participants["bob"].subscriber
    assert subscriber is not None
    return pub, sub, subscriber, _video_slot(subscriber)


@pytest.mark.asyncio
async def test_a_stream_that_forwards_nothing_is_described_once_with_its_gate(media) -> None:
    pub, sub, subscriber, slot = await _alice_camera_to_bob(media)

    assert subscriber.stalls(100.0, after=5.0) == []  # first look: the window starts
    await _source_moves(slot)  # flowing: packets sent move too, so the window restarts
    assert subscriber.stalls(106.0, after=5.0) == []

    slot.downstream.ready = False  # hold the stream back (as a transport never made ready would)
    assert subscriber.stalls(200.0, after=5.0) == []
    await _source_moves(slot)
    assert subscriber.stalls(204.0, after=5.0) == []  # not long enough yet
    [stall] = subscriber.stalls(205.0, after=5.0)
    assert "alice camera" in stall and "ready=False" in stall and "none sent in 5.0 s" in stall
    await _source_moves(slot)
    assert subscriber.stalls(230.0, after=5.0) == []  # described once

    slot.downstream.ready = True  # flows again: the next stall would be described again
    sent = slot.downstream.packets_sent
    while slot.downstream.packets_sent == sent:
        await asyncio.sleep(0.02)
    assert subscriber.stalls(240.0, after=5.0) == []
    assert not slot.stall_reported
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_a_silent_source_is_no_stall_and_the_watchdog_logs_real_ones(media, caplog) -> None:
    pub, sub, subscriber, slot = await _alice_camera_to_bob(media)
    room = media.service.rooms["r1"]
    assert slot.attached is not None
    slot.downstream.ready = False
    # No await in between: the source has sent nothing since the mark, so this is no stall (the window restarts).
    slot.stall_mark = (0.0, slot.attached.forwarder.packets_in, slot.downstream.packets_sent)
    assert subscriber.stalls(60.0, after=5.0) == []
    assert slot.stall_mark[0] == 60.0

    now = time.monotonic()
    slot.stall_mark = (now - 10.0, slot.attached.forwarder.packets_in, slot.downstream.packets_sent)
    with caplog.at_level(logging.WARNING, logger="media_server.room"):
        await _source_moves(slot)
        room.check_silence(time.monotonic())
    [record] = [r for r in caplog.records if "receives nothing" in r.getMessage()]
    assert "bob receives nothing on mid" in record.getMessage() and "alice camera" in record.getMessage()
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_a_video_paused_by_adaptive_quality_is_no_stall(media) -> None:
    """The estimate fits no layer: the subscriber gets nothing on purpose, so nothing is logged as stuck."""
    pub, sub, subscriber, slot = await _alice_camera_to_bob(media)
    subscriber._select_layer(slot, None)  # what adapt() does when no layer fits
    assert slot.attached is not None and slot.target is None
    assert subscriber.stalls(100.0, after=5.0) == []
    await _source_moves(slot)
    assert subscriber.stalls(110.0, after=5.0) == []
    await asyncio.gather(pub.close(), sub.close())
