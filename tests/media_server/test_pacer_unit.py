"""The subscriber's video pacer (media_server/pacer.py) and when a subscriber paces (layers.pacing_rate)."""

from __future__ import annotations

import asyncio

import pytest

from media_server.config import Config
from media_server.forwarder import one_byte_extensions
from media_server.layers import PACE_BELOW, PACE_FACTOR, PACE_MIN, PACE_UNTIL, pacing_rate
from media_server.pacer import MAX_QUEUE_DELAY, MIN_QUEUE_BYTES, Pacer, restamp_abs_send_time
from media_server.participant import Subscriber


def test_inactive_pacer_passes_through() -> None:
    sent: list[bytes] = []
    pacer = Pacer()
    send = pacer.wrap(lambda data: sent.append(data) or True)
    assert not pacer.active
    for _ in range(50):
        assert send(b"x" * 1000)
    assert len(sent) == 50 and pacer.packets_paced == 0


@pytest.mark.asyncio
async def test_a_keyframe_burst_is_spread_at_the_rate_in_order() -> None:
    """10 x 1000 B at 400 kbit/s (50 kB/s): the burst leaves over ~0.2 s, in order, nothing dropped."""
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, bytes]] = []
    pacer = Pacer()
    pacer.set_rate(400_000)
    a = pacer.wrap(lambda data: arrivals.append((loop.time(), data)) or True)
    b = pacer.wrap(lambda data: arrivals.append((loop.time(), data)) or True)
    start = loop.time()
    for i in range(10):
        assert (a if i % 2 else b)(bytes([i]) * 1000)
    assert len(arrivals) == 1 and pacer.queued_bytes == 9000  # the first goes at once, the rest wait
    await asyncio.sleep(0.3)
    assert [data[0] for _, data in arrivals] == list(range(10))  # FIFO across the subscriber's streams
    spread = arrivals[-1][0] - start
    assert 0.15 <= spread <= 0.28, spread
    assert pacer.packets_paced == 9 and pacer.packets_dropped == 0 and pacer.queued_bytes == 0


@pytest.mark.asyncio
async def test_a_full_queue_drops_and_stopping_flushes() -> None:
    sent: list[bytes] = []
    pacer = Pacer()
    pacer.set_rate(PACE_MIN)
    send = pacer.wrap(lambda data: sent.append(data) or True)
    limit = max(MIN_QUEUE_BYTES, PACE_MIN / 8 * MAX_QUEUE_DELAY)
    results = [send(b"x" * 1000) for _ in range(int(limit // 1000) + 5)]
    assert results.count(False) >= 3 and pacer.packets_dropped == results.count(False)
    assert pacer.queued_bytes <= limit
    pacer.set_rate(None)  # fast link again: everything waiting leaves now, and later packets pass through
    assert len(sent) == results.count(True) and pacer.queued_bytes == 0
    assert send(b"y") and sent[-1] == b"y"
    pacer.close()


def test_only_slow_links_are_paced_with_hysteresis() -> None:
    assert pacing_rate(PACE_BELOW, pacing=False) is None
    assert pacing_rate(PACE_BELOW - 1, pacing=False) == pytest.approx((PACE_BELOW - 1) * PACE_FACTOR)
    assert pacing_rate(PACE_UNTIL - 1, pacing=True) is not None  # stays on until clearly faster
    assert pacing_rate(PACE_UNTIL, pacing=True) is None
    assert pacing_rate(10_000, pacing=False) == PACE_MIN


@pytest.mark.asyncio
async def test_a_slow_subscriber_paces_its_video_and_not_its_audio(media_config: Config) -> None:
    sub = Subscriber(participant="s", config=media_config)
    try:
        video, audio = sub._new_slot("video"), sub._new_slot("audio")
        direct = {slot.kind: (lambda data: True) for slot in (video, audio)}
        for slot in (video, audio):
            slot.direct_send = direct[slot.kind]
            sub._route(slot)
        assert video.downstream.send is direct["video"] and audio.downstream.send is direct["audio"]
        sub._set_pacing(100_000)
        assert sub.pacer.active and sub.pacer.rate == pytest.approx(100_000 * PACE_FACTOR / 8)
        assert video.downstream.send is not direct["video"]  # behind the pacer...
        assert audio.downstream.send is direct["audio"]  # ...audio never waits behind video
        sub._set_pacing(3_000_000)
        assert not sub.pacer.active and video.downstream.send is direct["video"]
    finally:
        await sub.close()


def rtp_with_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    ext = one_byte_extensions(elements)
    return bytes([0x90, 96]) + b"\x00\x01" + b"\x00" * 8 + ext + b"payload"


def test_abs_send_time_is_rewritten_in_place_and_nothing_else() -> None:
    data = rtp_with_extensions([(1, b"\x05"), (3, b"\x00\x00\x00")])
    out = restamp_abs_send_time(data, 3, 1.5)  # 1.5 s after 1970: (2208988800 + 1.5) * 2^18 mod 2^24
    assert len(out) == len(data) and out.endswith(b"payload")
    # header (12) + 0xBEDE and length (4) + the audio-level element (2) + element header (1)
    assert int.from_bytes(out[19:22], "big") == int((2208988800 + 1.5) * 262144) & 0xFFFFFF
    assert out[:19] == data[:19] and out[22:] == data[22:]
    assert restamp_abs_send_time(data, 7, 1.5) == data  # no such element
    plain = bytes([0x80, 96]) + b"\x00" * 10 + b"payload"
    assert restamp_abs_send_time(plain, 3, 1.5) == plain  # no extension block


@pytest.mark.asyncio
async def test_a_packet_that_waited_leaves_with_a_fresh_abs_send_time() -> None:
    """The browser's REMB reads send times from abs-send-time: a stamp from before the wait looks like congestion."""
    sent: list[bytes] = []
    wall = [100.0]
    pacer = Pacer(wall=lambda: wall[0])
    pacer.set_rate(80_000)
    send = pacer.wrap(lambda data: sent.append(data) or True, abs_send_time_id=3)
    stamped = rtp_with_extensions([(3, b"\x00\x00\x00")]) + b"x" * 500
    assert send(stamped) and send(stamped)  # the first leaves at once, the second waits
    assert sent == [stamped]
    wall[0] = 100.25
    await asyncio.sleep(0.2)
    assert len(sent) == 2
    ast = sent[1][17:20]
    assert int.from_bytes(ast, "big") == int((2208988800 + 100.25) * 262144) & 0xFFFFFF
    pacer.close()
