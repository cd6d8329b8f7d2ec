"""Pacing of one subscriber's video on a slow link.

The forwarder sends a publisher's packets the moment they arrive, so a
keyframe (a few kB, 5 to 15 packets) leaves in one burst. On a link of
~100 kbit/s that burst alone is half a second of the link: the bottleneck's
queue overflows, the keyframe loses packets, the browser NACKs and asks for
another keyframe, and the audio sharing that queue is lost with it.
Browsers pace what they send for the same reason (libwebrtc's pacer).

:class:`Pacer` is a token bucket in front of a subscriber's video sends
(media, retransmissions and probes): while the link is slow the subscriber
switches those streams' ``Downstream.send`` to :meth:`Pacer.wrap` functions;
audio keeps its direct send, so it jumps the video queue (audio first). A
packet that finds the bucket full waits in one FIFO queue (order across the
subscriber's video streams is kept); the queue holds at most
:data:`MAX_QUEUE_DELAY` seconds at the current rate, beyond which packets are
dropped (the browser NACKs them) rather than delaying everything behind them.

A packet that waited gets a fresh abs-send-time (``wrap``'s extension ID)
when it leaves, as libwebrtc's pacer stamps at departure: the browser's
receive-side estimator reads a growing gap between abs-send-time and arrival
as a queue building up on the path. With the forwarding-time stamp, the
pacer's own queue (a keyframe waits up to a second at a low rate) looked like
congestion, REMB fell by 15 % per detected overuse, the pacing rate (1.5x
REMB) fell with it and the queue grew again: under CPU load a subscriber
whose first estimate was modest went from 380 to 20 kbit/s within seconds
(docs/architecture.md, the intermittent browser-test stall).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from .rtputil import abs_send_time, set_abs_send_time

MAX_QUEUE_DELAY = 2.0  # seconds of queued video at the pacing rate before packets are dropped
MIN_QUEUE_BYTES = 24_000  # ...but always room for one keyframe of the lowest layer
BURST = 0.02  # seconds of the rate that may leave back to back (one or two packets at these rates)

Send = Callable[[bytes], bool]


class Pacer:
    """Token bucket + FIFO for one subscriber's video packets; inactive (pass-through) until :meth:`set_rate`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall  # for abs-send-time (the forwarder stamps with time.time() too)
        self.rate = 0.0  # bytes per second; 0 = not pacing
        self._tokens = 0.0
        self._stamp = clock()
        self._queue: deque[tuple[Send, bytes, int]] = deque()  # (send, packet, its abs-send-time ID or 0)
        self._queued = 0
        self._timer: asyncio.TimerHandle | None = None
        self.packets_paced = 0  # packets that waited in the queue
        self.packets_dropped = 0  # packets refused because the queue was full

    @property
    def active(self) -> bool:
        return self.rate > 0

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def set_rate(self, bits_per_second: float | None) -> None:
        """Pace at ``bits_per_second``; None stops pacing and sends whatever waits at once."""
        self._refill()
        if not bits_per_second:
            self.rate = 0.0
            self._flush()
            return
        self.rate = bits_per_second / 8
        if self._queue:
            self._schedule()

    def wrap(self, send: Send, abs_send_time_id: int = 0) -> Send:
        """``send`` behind this pacer (for one video stream's Downstream.send).

        ``abs_send_time_id``: the stream's negotiated abs-send-time extension ID (0: none), restamped on
        packets that waited.
        """

        def paced(data: bytes) -> bool:
            return self._enqueue(send, data, abs_send_time_id)

        return paced

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._queued = 0
        self.rate = 0.0

    def _refill(self) -> None:
        now = self._clock()
        if self.rate:
            self._tokens = min(self.rate * BURST, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def _enqueue(self, send: Send, data: bytes, ext_id: int) -> bool:
        if not self.rate:
            return send(data)
        if not self._queue:
            self._refill()
            if self._tokens >= 0:  # the bucket may go negative by one packet: no packet waits for a full bucket
                self._tokens -= len(data)
                return send(data)
        if self._queued + len(data) > max(MIN_QUEUE_BYTES, self.rate * MAX_QUEUE_DELAY):
            self.packets_dropped += 1
            return False
        self._queue.append((send, data, ext_id))
        self._queued += len(data)
        self.packets_paced += 1
        self._schedule()
        return True

    def _schedule(self) -> None:
        if self._timer is None:
            delay = max(0.0, -self._tokens / self.rate) if self.rate else 0.0
            self._timer = asyncio.get_running_loop().call_later(delay, self._drain)

    def _drain(self) -> None:
        self._timer = None
        if not self.rate:
            self._flush()
            return
        self._refill()
        queue = self._queue
        stamp = abs_send_time(self._wall())
        while queue and self._tokens >= 0:
            send, data, ext_id = queue.popleft()
            self._queued -= len(data)
            self._tokens -= len(data)
            send(set_abs_send_time(data, ext_id, stamp))
        if queue:
            self._schedule()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, deque()
        self._queued = 0
        stamp = abs_send_time(self._wall())
        for send, data, ext_id in queue:
            send(set_abs_send_time(data, ext_id, stamp))
