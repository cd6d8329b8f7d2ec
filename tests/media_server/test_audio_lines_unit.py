"""How many microphones a subscriber whose link cannot carry them all is sent (media_server/audio_lines.py)."""

from __future__ import annotations

from typing import Any

import pytest
from room_harness import RoomHarness

from media_server import aiortc_hooks
from media_server.audio_lines import (
    DOWN_AFTER,
    UP_AFTER,
    VIDEO_FLOOR,
    AudioLines,
    microphones_fit,
    microphones_fit_remb,
)
from media_server.layers import AUDIO_RESERVE


def test_a_link_carries_as_many_microphones_as_its_estimate_holds_beside_the_thinnest_video_and_always_one() -> None:
    # The 100 kbit/s page of tests/e2e/test_bandwidth_ui.py: a transport-wide estimate of 44-100 kbit/s.
    assert microphones_fit(44_000) == 1
    assert microphones_fit(100_000) == 1
    assert microphones_fit(0.0) == 1
    assert microphones_fit(30_000 + 2 * AUDIO_RESERVE) == 2
    assert microphones_fit(300_000) == 5  # the 300 kbit/s targets: three microphones or fewer are never limited


def test_a_remb_says_one_microphone_fewer_on_an_overrun_link_it_leaves_no_video_room_and_one_more_with_room() -> None:
    """A REMB measures the video alone, after the audio: 11-28 kbit/s on the overrun 100 kbit/s page."""
    assert microphones_fit_remb(20_000, sent=3, overrun=True) == 2
    assert microphones_fit_remb(20_000, sent=1, overrun=True) == 1  # the speaker is always heard
    assert microphones_fit_remb(20_000, sent=3, overrun=False) == 3  # a starved browser's low REMB: no loss, no cut
    assert microphones_fit_remb(VIDEO_FLOOR + 1, sent=3, overrun=True) == 3  # room for the speaker's video
    assert microphones_fit_remb(VIDEO_FLOOR + AUDIO_RESERVE, sent=1, overrun=False) == 2
    assert microphones_fit_remb(VIDEO_FLOOR + AUDIO_RESERVE, sent=1, overrun=True) == 1


def test_the_count_goes_down_after_the_link_carried_fewer_for_a_while_and_up_only_after_longer() -> None:
    lines = AudioLines()
    assert not lines.update(0.0, 5, sent=3, most=6)  # room for all three
    assert lines.limit is None
    assert not lines.update(1.0, 1, sent=3, most=6)  # a dip: not yet
    assert not lines.update(1.0 + DOWN_AFTER / 2, 1, sent=3, most=6)
    assert not lines.update(1.0 + DOWN_AFTER / 2 + 0.1, 5, sent=3, most=6)  # it passed: nothing changes
    assert lines.limit is None
    assert not lines.update(10.0, 2, sent=3, most=6)
    assert not lines.update(10.5, 1, sent=3, most=6)
    assert lines.update(10.0 + DOWN_AFTER, 2, sent=3, most=6)  # held: the least it carried meanwhile
    assert lines.limit == 1
    assert not lines.update(11.0 + DOWN_AFTER, 1, sent=1, most=6)  # one line sent now: stays
    # Room again: up only after UP_AFTER, to the least it carried meanwhile; unlimited from ``most`` on.
    t = 20.0
    assert not lines.update(t, 3, sent=1, most=6)
    assert not lines.update(t + UP_AFTER / 2, 2, sent=1, most=6)
    assert not lines.update(t + UP_AFTER - 0.1, 5, sent=1, most=6)
    assert lines.update(t + UP_AFTER, 5, sent=1, most=6)
    assert lines.limit == 2
    t += 2 * UP_AFTER
    assert not lines.update(t, 6, sent=2, most=6)
    assert lines.update(t + UP_AFTER, 9, sent=2, most=6)
    assert lines.limit is None


def test_an_estimate_that_says_nothing_of_the_audio_lifts_the_limit_after_the_up_hold() -> None:
    """REMB (the browser stopped sending transport-cc feedback): no count, every microphone again, not at once."""
    lines = AudioLines()
    lines.update(0.0, 1, sent=3, most=6)
    lines.update(DOWN_AFTER, 1, sent=3, most=6)
    assert lines.limit == 1
    assert not lines.update(10.0, None, sent=1, most=6)
    assert lines.update(10.0 + UP_AFTER, None, sent=1, most=6)
    assert lines.limit is None


@pytest.fixture
async def harness() -> Any:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    made: list[RoomHarness] = []
    yield lambda **config: made.append(RoomHarness(**config)) or made[-1]
    for h in made:
        await h.close()


def audio_holders(h: RoomHarness, participant: str) -> list[str | None]:
    subscriber = h.room.participants[participant].subscriber
    assert subscriber is not None
    return [s.attached.participant if s.attached else None for s in subscriber.slots if s.kind == "audio"]


@pytest.mark.asyncio
async def test_a_subscriber_whose_link_carries_one_microphone_is_sent_the_speakers_on_one_pooled_line(
    harness: Any,
) -> None:
    """Three others talking to a 100 kbit/s subscriber: its audio lines are pooled to one (no offer: the other
    lines go quiet), which carries the most recent speaker; with room again every microphone has its line back."""
    h: RoomHarness = harness()
    for who in ("a", "b", "c"):
        await h.publish(who)
    await h.subscribe("s")
    await h.settle()
    assert sorted(filter(None, audio_holders(h, "s"))) == ["a", "b", "c"]
    subscriber = h.room.participants["s"].subscriber
    assert subscriber is not None and not subscriber.audio_pooled
    offers = len(h.offers(0))
    h.room.audio.audible = {"b"}  # b talks
    subscriber.audio_lines.limit = 1
    h.room._audio_lines_changed(h.room.participants["s"], subscriber)
    await h.settle()
    assert subscriber.audio_pooled
    assert sorted(filter(None, audio_holders(h, "s"))) == ["b"]
    assert len(h.offers(0)) == offers  # fewer lines need no offer
    pooled = [e for e in h.events if e["type"] == "forwarded_tracks" and e["participant"] == "s"][-1]
    assert pooled["audio_pooled"] is True
    h.room.audio.audible = {"c"}  # the speaker changes: the line that is sent follows, still without an offer
    h.room.select_all()
    await h.settle()
    assert sorted(filter(None, audio_holders(h, "s"))) == ["c"]
    assert len(h.offers(0)) == offers
    subscriber.audio_lines.limit = None
    h.room._audio_lines_changed(h.room.participants["s"], subscriber)
    await h.settle()
    assert not subscriber.audio_pooled
    assert sorted(filter(None, audio_holders(h, "s"))) == ["a", "b", "c"]
