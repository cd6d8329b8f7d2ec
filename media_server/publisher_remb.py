"""The REMB a publisher gets: aiortc's receive-side estimate, but not below what arrives intact (pure policy).

Each publish connection's receiver sends REMB from aiortc's delay-based
``RemoteBitrateEstimator`` (``aiortc_hooks.RtpReceive._estimate``). It stamps
arrivals when the media server's event loop reads the datagrams, so on a busy
machine a loop stall looks like a queue on the path: in browser runs
(tests/e2e/test_network.py, load ~20, MEDIA_BWE_TRACE=1) the host's REMB fell
from 330 to 19-35 kbit/s within a minute while nothing was lost, Chromium's
estimate followed (``availableOutgoingBitrate`` 33 kbit/s, every layer
``qualityLimitationReason: bandwidth``), it stopped its 360p and 720p layers
and sent 180p at 15 fps, and every subscriber's estimate stayed at what that
one layer needs (the "flat" transport-cc estimate of issue 17).

A real bottleneck on the uplink fills its queue and drops packets; a busy
receiver does not. So, as for subscribers (``bwe.DeliveredFloor``,
``layers.BandwidthEstimate.held``): while the publisher's streams lost at most
:data:`MAX_LOSS` over the last :data:`WINDOW` seconds, the REMB is at least
:data:`GROWTH` x the best incoming rate of that window + :data:`SLACK` (the
most libwebrtc's own AIMD would allow), so the browser's loss-based estimate
can keep growing towards its layers; once loss shows up, aiortc's value
applies as it is (a throttled uplink still stops the top layer:
tests/e2e/test_publisher_uplink.py).
"""

from __future__ import annotations

from collections import deque

WINDOW = 2.0  # s of incoming rate and loss looked at
MAX_LOSS = 0.02  # loss fraction above which the floor is lifted
MIN_PACKETS = 20  # expected packets in the window before its loss counts as measured
GROWTH = 1.5  # the floor, times the best incoming rate of the window...
SLACK = 10_000  # ...plus this (bit/s): libwebrtc's AimdRateControl caps its estimate the same way


class RembFloor:
    """Feed it at each REMB the receiver is about to send; :meth:`apply` returns the value to send."""

    def __init__(self) -> None:
        self._incoming: deque[tuple[float, float]] = deque()  # (now, incoming bit/s)
        self._counts: deque[tuple[float, int, int]] = deque()  # (now, packets expected, received) totals
        self.floored = 0  # REMBs raised by the floor (a counter for logs and tests)

    def apply(self, *, now: float, remb_bps: int, incoming_bps: float | None, expected: int, received: int) -> int:
        """``incoming_bps``: aiortc's incoming rate (1 s window); ``expected``/``received``: the receiver's
        packet totals over its streams (from their RTP sequence numbers)."""
        if incoming_bps is not None:
            self._incoming.append((now, incoming_bps))
        self._counts.append((now, expected, received))
        horizon = now - WINDOW
        while self._incoming and self._incoming[0][0] < horizon:
            self._incoming.popleft()
        while len(self._counts) > 1 and self._counts[1][0] <= horizon:
            self._counts.popleft()  # keep one sample at or before the window's start
        _, expected0, received0 = self._counts[0]
        window_expected = expected - expected0
        window_lost = window_expected - (received - received0)
        if not self._incoming or window_expected < MIN_PACKETS or window_lost > MAX_LOSS * window_expected:
            return remb_bps
        floor = int(GROWTH * max(rate for _, rate in self._incoming) + SLACK)
        if floor > remb_bps:
            self.floored += 1
            return floor
        return remb_bps
