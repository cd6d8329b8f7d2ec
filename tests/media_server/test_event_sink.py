"""The event sink batches the events queued within its linger window into one POST (issue 19 item 3).

Counted, not timed: each test uses a linger far longer than the test (60 s), so whether events share a
POST depends only on what ends the wait (an urgent event, a full batch, ``close()``), never on the clock.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from ms_helpers import until

from media_server.events import EventSink

LONG = 60.0  # a linger no test waits out


def join_events(participant: str) -> list[dict[str, Any]]:
    """What the media server emits for one join, in its order (docs/protocol.md §2 *Events*)."""
    return [
        {"type": "publication", "room": "r", "participant": participant, "pc": "camera", "state": "started"},
        {"type": "peer_state", "room": "r", "participant": participant, "pc": "camera", "state": "connected"},
        {"type": "forwarded_tracks", "room": "r", "participant": participant, "video": [], "audio": []},
        {"type": "peer_state", "room": "r", "participant": participant, "pc": "subscribe", "state": "connected"},
    ]


async def let_the_sink_run() -> None:
    for _ in range(5):  # a few turns of the loop: the sink's task is waiting (lingering) afterwards
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_events_queued_within_the_window_go_in_one_post_in_order(fake_django) -> None:
    """A join's four events, queued one loop turn apart, wait for each other; an urgent event (a subscribe
    offer someone must answer) ends the wait and goes with them, after them."""
    sink = EventSink(url=fake_django.url, secret="s", node_id="n", linger=LONG)
    sink.start()
    for event in join_events("bob"):
        sink.emit(event)
        await let_the_sink_run()
    assert sink.posts == 0 and sink.pending == 4  # lingering: nothing posted yet
    offer = {"type": "subscribe_offer", "room": "r", "participant": "alice", "sdp": "v=0", "revision": 2}
    sink.emit(offer)
    await fake_django.wait_for(lambda e: e["type"] == "subscribe_offer")
    assert sink.posts == 1 and len(fake_django.batches) == 1
    assert fake_django.events == [*join_events("bob"), offer]
    await sink.close()


@pytest.mark.asyncio
async def test_a_full_batch_goes_at_once(fake_django) -> None:
    """The wait ends when ``max_batch`` events are queued; the rest go in the next POST, without lingering
    again (they have waited already)."""
    sink = EventSink(url=fake_django.url, secret="s", node_id="n", linger=LONG, max_batch=3)
    sink.start()
    for event in join_events("bob"):
        sink.emit(event)
    await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e["pc"] == "subscribe")
    assert [len(batch["events"]) for batch in fake_django.batches] == [3, 1]
    assert fake_django.events == join_events("bob")
    await sink.close()


@pytest.mark.asyncio
async def test_close_posts_what_is_still_lingering(fake_django) -> None:
    sink = EventSink(url=fake_django.url, secret="s", node_id="n", linger=LONG)
    sink.start()
    sink.emit(join_events("bob")[0])
    await let_the_sink_run()
    await sink.close()
    assert sink.posts == 1 and fake_django.events == join_events("bob")[:1]


@pytest.mark.asyncio
async def test_the_linger_is_bounded(fake_django) -> None:
    """With nothing urgent, lingering events still go once the window is over."""
    sink = EventSink(url=fake_django.url, secret="s", node_id="n", linger=0.01)
    sink.start()
    for event in join_events("bob"):
        sink.emit(event)
    await fake_django.wait_for(lambda e: e["type"] == "peer_state" and e["pc"] == "subscribe")
    assert fake_django.events == join_events("bob") and sink.pending == 0
    await sink.close()


@pytest.mark.asyncio
async def test_a_failed_batch_is_retried_whole_and_what_came_meanwhile_follows_in_order(fake_django) -> None:
    """Retry keeps the batch as it was (same events, same order, signed afresh); events queued during the
    retries go in the next POST, after it, without lingering again."""
    fake_django.status = 503
    sink = EventSink(url=fake_django.url, secret="s", node_id="n", linger=LONG, backoff=0.05, max_attempts=50)
    sink.start()
    first, second = join_events("bob"), join_events("carol")
    for event in first[:3]:
        sink.emit(event)
    sink.emit({"type": "subscribe_offer", "room": "r", "participant": "alice", "sdp": "v=0", "revision": 2})
    assert await until(lambda: sink.posts >= 2, timeout=30, interval=0.02)  # refused, then retried
    for event in second:
        sink.emit(event)
    fake_django.status = 204
    await fake_django.wait_for(lambda e: e["participant"] == "carol" and e.get("pc") == "subscribe", timeout=30)
    assert [e["type"] for e in fake_django.batches[0]["events"]] == [
        "publication",
        "peer_state",
        "forwarded_tracks",
        "subscribe_offer",
    ]
    assert [e for batch in fake_django.batches[1:] for e in batch["events"]] == second
    assert sink.dropped == 0 and sink.failed_batches == 0
    assert len(set(fake_django.auth)) == len(fake_django.auth)  # every attempt signed afresh
    # ... and carrying its batch's id, the same on each attempt (Django routes an id once), new per batch
    first_attempts = [json.loads(body) for body in fake_django.bodies if b'"subscribe_offer"' in body]
    assert len(first_attempts) >= 3 and {a["batch"] for a in first_attempts} == {fake_django.batches[0]["batch"]}
    assert len({b["batch"] for b in fake_django.batches}) == len(fake_django.batches)
    await sink.close()


@pytest.mark.asyncio
async def test_close_posts_the_batch_its_retries_were_delivering_then_what_is_queued(fake_django) -> None:
    """A batch taken off the queue and refused is not lost when the sink closes between retries: the last
    attempt posts it whole, before what was queued after it."""
    fake_django.status = 503
    sink = EventSink(url=fake_django.url, secret="s", node_id="n", linger=LONG, backoff=LONG, max_attempts=5)
    sink.start()
    first, second = join_events("bob"), join_events("carol")
    for event in first:
        sink.emit(event)
    sink.emit({"type": "subscribe_offer", "room": "r", "participant": "alice", "sdp": "v=0", "revision": 2})
    assert await until(lambda: sink.posts >= 1, timeout=30, interval=0.02)  # refused; waiting LONG to retry
    for event in second:
        sink.emit(event)
    fake_django.status = 204
    await sink.close()
    assert [e.get("participant") for batch in fake_django.batches for e in batch["events"]] == [
        *["bob"] * 4,
        "alice",
        *["carol"] * 4,
    ]
    assert sink.dropped == 0
    refused, reposted = json.loads(fake_django.bodies[0]), fake_django.batches[0]
    assert refused["batch"] == reposted["batch"] != fake_django.batches[1]["batch"]  # the same batch, once routed
