"""The subscriber's video pacer (media_server/pacer.py) and when a subscriber paces (layers.pacing_rate)."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from media_server.config import Config
from media_server.forwarder import ExtensionIds
from media_server.layers import PACE_BELOW, PACE_FACTOR, PACE_MIN, PACE_UNTIL, pacing_rate
from media_server.pacer import MAX_QUEUE_DELAY, MIN_QUEUE_BYTES, Pacer
from media_server.participant import Subscriber
from media_server.rtputil import RTP_HEADER, abs_send_time, one_byte_extensions, set_abs_send_time


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


def _stamped(seq: int, ext_id: int, wall: float) -> bytes:
    """A forwarded video packet as Downstream.forward builds it: abs-send-time stamped at ``wall``."""
    ext = one_byte_extensions([(ext_id, abs_send_time(wall).to_bytes(3, "big"))])
    return RTP_HEADER.pack(0x90, 96, seq, 0, 1234) + ext + bytes(1000)


def _stamp_age(packet: bytes, wall: float) -> float:
    """Seconds between a packet's abs-send-time and ``wall`` (24-bit 6.18 fixed point, modulo 64 s)."""
    stamp = int.from_bytes(packet[17:20], "big")
    return ((abs_send_time(wall) - stamp) & 0xFFFFFF) / 262144


@pytest.mark.asyncio
async def test_a_packet_that_waited_leaves_with_a_fresh_abs_send_time() -> None:
    """The browser reads a growing gap between abs-send-time and arrival as congestion (REMB drops 15 % per
    overuse): the pacer's own queue must not show as one. Before, the 10th packet of a keyframe paced at
    400 kbit/s carried a stamp ~0.2 s old, and REMB, then the pacing rate, collapsed under CPU load."""
    departures: list[tuple[float, bytes]] = []
    pacer = Pacer()
    pacer.set_rate(400_000)
    send = pacer.wrap(lambda data: departures.append((time.time(), data)) or True, abs_send_time_id=3)
    for seq in range(10):
        assert send(_stamped(seq, 3, time.time()))
    await asyncio.sleep(0.4)
    assert [struct.unpack_from("!H", p, 2)[0] for _, p in departures] == list(range(10))
    assert departures[-1][0] - departures[0][0] >= 0.15  # paced: the last one waited
    ages = [_stamp_age(packet, left) for left, packet in departures]
    assert max(ages) < 0.05, ages
    for _, packet in departures:  # only the 3 stamp bytes change
        assert len(packet) == len(_stamped(0, 3, 0.0)) and packet[20:] == bytes(1000)
    pacer.close()


def test_abs_send_time_is_rewritten_only_where_the_element_is() -> None:
    two = one_byte_extensions([(1, b"\x7f"), (3, b"\x01\x02\x03")])
    packet = RTP_HEADER.pack(0x90, 96, 1, 0, 1234) + two + b"payload"
    restamped = set_abs_send_time(packet, 3, 0xABCDEF)
    assert restamped == packet.replace(b"\x01\x02\x03", b"\xab\xcd\xef")
    assert set_abs_send_time(packet, 5, 0xABCDEF) == packet  # not negotiated on this packet
    assert set_abs_send_time(packet, 0, 0xABCDEF) == packet
    plain = RTP_HEADER.pack(0x80, 96, 1, 0, 1234) + b"payload"
    assert set_abs_send_time(plain, 3, 0xABCDEF) == plain


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
        video.downstream.configure(pt_by_codec={}, rtx_pt_by_pt={}, ext_ids=ExtensionIds(abs_send_time=3))
        sent: list[tuple[float, bytes]] = []
        direct = {slot.kind: (lambda data: sent.append((time.time(), data)) or True) for slot in (video, audio)}
        for slot in (video, audio):
            slot.direct_send = direct[slot.kind]
            sub._route(slot)
        assert video.downstream.send is direct["video"] and audio.downstream.send is direct["audio"]
        sub._set_pacing(100_000)
        assert sub.pacer.active and sub.pacer.rate == pytest.approx(100_000 * PACE_FACTOR / 8)
        assert video.downstream.send is not direct["video"]  # behind the pacer...
        assert audio.downstream.send is direct["audio"]  # ...audio never waits behind video
        for seq in range(3):  # a burst: the last ones wait ~0.1 s each, and leave stamped with the stream's ID
            video.downstream.send(_stamped(seq, 3, time.time()))
        await asyncio.sleep(0.35)
        assert len(sent) == 3 and max(_stamp_age(packet, left) for left, packet in sent) < 0.05
        sub._set_pacing(3_000_000)
        assert not sub.pacer.active and video.downstream.send is direct["video"]
    finally:
        await sub.close()
