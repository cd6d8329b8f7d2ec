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

A packet that waited gets a fresh abs-send-time when it leaves (as libwebrtc
writes it after its pacer): the browser's delay-based estimator (REMB) reads
send times from it, and a stamp from before the wait makes the pacer's own
queue look like a congested link: the estimate sinks, the pacing rate (a
multiple of it) with it, and neither recovers (issue 17).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

_NTP_EPOCH = 2208988800  # seconds from 1900 to 1970 (abs-send-time is 6.18 fixed point NTP seconds)
MAX_QUEUE_DELAY = 2.0  # seconds of queued video at the pacing rate before packets are dropped
MIN_QUEUE_BYTES = 24_000  # ...but always room for one keyframe of the lowest layer
BURST = 0.02  # seconds of the rate that may leave back to back (one or two packets at these rates)

Send = Callable[[bytes], bool]


def restamp_abs_send_time(data: bytes, ext_id: int, now: float) -> bytes:
    """``data`` (plaintext RTP) with its abs-send-time extension ``ext_id`` set to wall-clock ``now``.

    Unchanged if the packet has no one-byte header extension block or no element ``ext_id``.
    """
    if not ext_id or len(data) < 12 or not data[0] & 0x10:
        return data
    start = 12 + 4 * (data[0] & 0x0F)
    if len(data) < start + 4 or data[start : start + 2] != b"\xbe\xde":
        return data
    end = min(len(data), start + 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big"))
    i = start + 4
    while i < end:
        head = data[i]
        if head == 0:  # padding between elements
            i += 1
            continue
        length = (head & 0x0F) + 1
        if head >> 4 == 15:
            break
        if head >> 4 == ext_id and length == 3 and i + 4 <= end:
            ast = int((now + _NTP_EPOCH) * 262144) & 0xFFFFFF
            return data[: i + 1] + ast.to_bytes(3, "big") + data[i + 4 :]
        i += 1 + length
    return data


class Pacer:
    """Token bucket + FIFO for one subscriber's video packets; inactive (pass-through) until :meth:`set_rate`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self.rate = 0.0  # bytes per second; 0 = not pacing
        self._tokens = 0.0
        self._stamp = clock()
        self._queue: deque[tuple[Send, bytes, int]] = deque()  # (send, packet, abs-send-time id or 0)
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

    def wrap(self, send: Send, *, abs_send_time_id: int = 0) -> Send:
        """``send`` behind this pacer (for one video stream's Downstream.send).

        ``abs_send_time_id``: the stream's abs-send-time extension id (0: none), restamped on packets that waited.
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

    def _enqueue(self, send: Send, data: bytes, ast_id: int) -> bool:
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
        self._queue.append((send, data, ast_id))
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
        wall = self._wall()
        while queue and self._tokens >= 0:
            send, data, ast_id = queue.popleft()
            self._queued -= len(data)
            self._tokens -= len(data)
            send(restamp_abs_send_time(data, ast_id, wall) if ast_id else data)
        if queue:
            self._schedule()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, deque()
        self._queued = 0
        wall = self._wall()
        for send, data, ast_id in queue:
            send(restamp_abs_send_time(data, ast_id, wall) if ast_id else data)
