"""The REMB sent to publishers is not below what arrives intact (media_server/publisher_remb.py)."""

from __future__ import annotations

from media_server.publisher_remb import GROWTH, SLACK, RembFloor


def feed(floor: RembFloor, *, seconds: float, remb: int, incoming: float, loss: float, start: float = 0.0) -> int:
    """REMBs every 0.5 s for ``seconds`` (100 packets expected per REMB, ``loss`` of them missing); the last value."""
    value, t = remb, start
    expected = received = 0
    while t < start + seconds:
        t += 0.5
        expected += 100
        received += round(100 * (1 - loss))
        value = floor.apply(now=t, remb_bps=remb, incoming_bps=incoming, expected=expected, received=received)
    return value


def test_a_remb_that_a_busy_receiver_talked_down_is_raised_to_what_arrives_intact() -> None:
    """Browser run: aiortc's REMB fell to 19-35 kbit/s while the host's 300 kbit/s arrived without loss."""
    floor = RembFloor()
    assert feed(floor, seconds=5, remb=30_000, incoming=300_000, loss=0.0) == int(GROWTH * 300_000 + SLACK)
    assert floor.floored > 0


def test_a_remb_above_the_floor_is_sent_as_it_is() -> None:
    assert feed(RembFloor(), seconds=5, remb=2_000_000, incoming=300_000, loss=0.0) == 2_000_000


def test_loss_lifts_the_floor_so_a_throttled_uplink_still_brings_the_remb_down() -> None:
    floor = RembFloor()
    feed(floor, seconds=5, remb=30_000, incoming=500_000, loss=0.0)
    assert feed(floor, seconds=3, remb=200_000, incoming=500_000, loss=0.05, start=5.0) == 200_000


def test_no_floor_before_enough_packets_or_an_incoming_rate() -> None:
    floor = RembFloor()
    assert floor.apply(now=0.5, remb_bps=50_000, incoming_bps=None, expected=10, received=10) == 50_000
    assert floor.apply(now=1.0, remb_bps=50_000, incoming_bps=400_000, expected=15, received=15) == 50_000
