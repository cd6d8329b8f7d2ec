"""Send-side bandwidth estimation for one subscribe connection (Google congestion control, GCC).

Pure logic (no aiortc, no I/O): times are seconds from a monotonic clock
(the receiver's arrival times are in *its* clock: only their differences
are used), sizes are bytes, rates bit/s. The design follows
draft-ietf-rmcat-gcc-02 and the structure of libwebrtc's goog_cc, one small
class per concern:

* :class:`InterArrival` groups packets sent within :data:`BURST_INTERVAL`
  and yields the send/arrival time differences of consecutive groups;
* :class:`TrendlineEstimator` fits a line through the accumulated queuing
  delay and signals overuse/underuse against an adaptive threshold;
* :class:`AimdRateControl` turns those signals into the delay-based rate
  (multiplicative increase far from the link's capacity, additive near it,
  ``BETA`` x the acknowledged rate on overuse);
* :class:`LossBasedController` cuts the rate on heavy loss (> 10 %) and lets
  it grow again on low loss (< 2 %);
* :class:`AcknowledgedBitrate` measures what the receiver actually got;
* :class:`ProbeResultEstimator` turns the feedback for one probe cluster into
  the rate the link carried; :class:`ProbeController` decides when to probe
  (the estimate is below what the caller wants) and stops when the link says no.

:class:`SendSideEstimator` wires them together behind the interface the
transport (transport-cc feedback, REMB, RTT) and the allocator use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SEQ_MOD = 1 << 16

BURST_INTERVAL = 0.005  # s: packets sent this close together form one group (one frame / one pacer burst)
TRENDLINE_WINDOW = 20  # groups in the linear regression
TRENDLINE_SMOOTHING = 0.9  # exponential smoothing of the accumulated delay
TRENDLINE_GAIN = 4.0  # the slope is scaled by this times the number of deltas (at most 60)
THRESHOLD_INITIAL = 12.5  # ms: adaptive overuse threshold, start value
THRESHOLD_MIN, THRESHOLD_MAX = 6.0, 600.0
THRESHOLD_K_UP, THRESHOLD_K_DOWN = 0.0087, 0.039  # threshold adaptation speed (per ms)
OVERUSE_TIME = 0.010  # s: the trend must stay above the threshold this long to signal overuse

BETA = 0.85  # multiplicative decrease on overuse (of the acknowledged rate)
INCREASE_PER_SECOND = 0.08  # multiplicative increase far from the link capacity
ACKED_HEADROOM = 1.5  # the estimate never grows above this times what was acknowledged (+ ACKED_SLACK)...
ACKED_SLACK = 10_000  # ...so an application-limited sender does not inflate it: probes must show the room
PACKET_BITS = 1200 * 8  # typical packet, for the additive increase (one packet per response time)

LOSS_LOW, LOSS_HIGH = 0.02, 0.10  # below: increase; above: decrease (1 - loss/2); between: hold
LOSS_WINDOW_PACKETS = 50  # a loss measurement needs at least this many packets...
LOSS_WINDOW_TIME = 1.0  # ...and this many seconds (or LOSS_WINDOW_MAX packets): random loss is noisy
LOSS_WINDOW_MAX = 200

ACKED_WINDOW = 0.5  # s of arrival time over which the acknowledged rate is measured
DELIVERED_WINDOW = 2.0  # s: the target stays at DELIVERED_SHARE of the best acknowledged rate this recent...
DELIVERED_SHARE = 0.85
DELIVERED_MAX_LOSS = 0.02  # ...while the feedback of the last DELIVERED_LOSS_TIME s reports at most this loss
DELIVERED_LOSS_TIME = 1.0
DELIVERED_MIN_PACKETS = 20  # (and reports at least this many packets)

PROBE_MIN_PACKETS = 5  # a cluster's result needs at least this many received packets
PROBE_DURATION = 0.03  # s of the probed rate per cluster...
PROBE_MIN_BYTES = 10_000  # ...but at least this much (33 padding packets): twice a ``tc tbf`` 5 kB burst...
PROBE_QUEUE_TIME = 0.4  # ...unless more than this many seconds at the target: at 2x, half a cluster queues,
# and a 200 ms queue holds 0.2 s of the link (a 100 kbit/s link lost its video to 10 kB probes)
PROBE_SMALLEST = 1_500  # bytes: the least a cluster has (5 padding packets, PROBE_MIN_PACKETS)
PROBE_SUCCESS = 0.7  # a probe whose result reaches this share of its rate may be followed by a higher one...
# ...if it also shows this much more than the target it started from: a probe capped at what the layers want
# (1.65 x a 250 kbit/s target on a 300 kbit/s link) passed the 70 % with the link's own rate, and the next
# probe followed at once, again and again: every 1-2 s a queue bump, lost packets, 1.4 s of freezes in 30 s.
PROBE_GAIN = 1.4
PROBE_TIMEOUT = 1.0  # s without a result: the probe failed
# s between failed probes (doubling). The longest wait bounds how soon a removed limit is noticed: a subscriber
# held at 300 kbit/s probes every 3-4 s (~25 kbit/s of padding), so it can be back at 720p within issue 17's
# 10 s (with 8 s, the wait alone took most of it: 180p for 10 s after the limit was gone, browser run).
PROBE_BACKOFF_MIN, PROBE_BACKOFF_MAX = 1.5, 3.0
PROBE_INITIAL = (3.0, 6.0)  # the first probe clusters, times the start rate...
PROBE_INITIAL_WAIT = 3.0  # ...sent once the link looks calm, or this many seconds after the first feedback

SENT_RATE_WINDOW = 1.0  # s of send time over which the sender's own rate is measured...
APP_LIMITED_SHARE = 0.25  # ...below this share of the delay-based rate the sender is application-limited:
# an overuse then cannot come from sending too fast (a starved machine: the SFU's loop sent a trickle for
# seconds, the starved browser stamped it late), and 0.85 x the trickle's acknowledged rate is no measure of
# the link (browser run at load ~35: 1.2 Mbit/s -> 32 kbit/s in one decrease, every camera paused). The rate
# then comes down by BETA at most once per APP_LIMITED_DECREASE_INTERVAL, and stays at least what arrived.
APP_LIMITED_DECREASE_INTERVAL = 1.0

OVERRUN_WINDOW = 2.0  # s of feedback over which the share of bytes lost tells an overrun link (overrun)
QUEUE_MEMORY = 2.0  # s after a delay-based decrease during which the queue counts as building (queue_building)
FEEDBACK_FRESH = 2.0  # s: without transport-cc feedback for this long the estimate falls back to REMB
REMB_FRESH = 3.0  # s: an older REMB no longer caps the estimate


def unwrap(seq: int, reference: int) -> int:
    """The 64-bit sequence number nearest to ``reference`` whose low 16 bits are ``seq``."""
    delta = (seq - reference) % SEQ_MOD
    if delta >= SEQ_MOD // 2:
        delta -= SEQ_MOD
    return reference + delta


@dataclass(frozen=True)
class Deltas:
    """Differences between two consecutive packet groups (seconds, bytes)."""

    send: float
    arrival: float
    size: int
    arrival_time: float  # the later group's last arrival (receiver clock)


class InterArrival:
    """Groups packets by send time and yields :class:`Deltas` between consecutive complete groups.

    Packets must be added in send order. A packet sent more than
    :data:`BURST_INTERVAL` after its group's first one starts a new group,
    unless it arrived in the same burst (within :data:`BURST_INTERVAL` of the
    group's last arrival, with less delay than it was sent later): a queue
    releasing a burst says nothing about the sender's spacing.
    """

    def __init__(self) -> None:
        self._current: list[float] | None = None  # [first_send, last_send, last_arrival, size]
        self._previous: list[float] | None = None

    def add(self, send_time: float, arrival: float, size: int) -> Deltas | None:
        # Called for every acknowledged packet: locals and comparisons, not max() (transport-cc's µs budget).
        cur = self._current
        if cur is None:
            self._current = [send_time, send_time, arrival, float(size)]
            return None
        first, last_send, last_arrival = cur[0], cur[1], cur[2]
        if send_time < first:
            return None  # reordered beyond the group: ignore
        if send_time - first <= BURST_INTERVAL or (
            arrival - last_arrival < BURST_INTERVAL and (arrival - last_arrival) - (send_time - last_send) < 0
        ):
            if send_time > last_send:
                cur[1] = send_time
            if arrival > last_arrival:
                cur[2] = arrival
            cur[3] += size
            return None
        prev, self._previous = self._previous, cur
        self._current = [send_time, send_time, arrival, float(size)]
        if prev is None:
            return None
        return Deltas(send=cur[1] - prev[1], arrival=cur[2] - prev[2], size=int(cur[3] - prev[3]), arrival_time=cur[2])


class TrendlineEstimator:
    """Delay-gradient trend and overuse detector with an adaptive threshold.

    ``state`` is ``"normal"``, ``"overusing"`` (queues grow: the sender is
    above the link) or ``"underusing"`` (queues drain).
    """

    def __init__(self) -> None:
        self.state = "normal"
        self.threshold = THRESHOLD_INITIAL
        self._first_arrival: float | None = None
        self._accumulated = 0.0  # ms
        self._smoothed = 0.0  # ms
        self._points: deque[tuple[float, float]] = deque(maxlen=TRENDLINE_WINDOW)
        self._deltas = 0
        self._trend = 0.0
        self._previous_trend = 0.0
        self._overuse_time: float | None = None  # s above the threshold
        self._overuse_count = 0
        self._last_update: float | None = None

    def update(self, deltas: Deltas) -> str:
        if self._first_arrival is None:
            self._first_arrival = deltas.arrival_time
        self._deltas = min(self._deltas + 1, 1000)
        self._accumulated += (deltas.arrival - deltas.send) * 1000
        self._smoothed = TRENDLINE_SMOOTHING * self._smoothed + (1 - TRENDLINE_SMOOTHING) * self._accumulated
        self._points.append(((deltas.arrival_time - self._first_arrival) * 1000, self._smoothed))
        if len(self._points) == TRENDLINE_WINDOW:
            self._trend = _slope(self._points)
        self._detect(deltas.send, deltas.arrival_time)
        return self.state

    def _detect(self, send_delta: float, now: float) -> None:
        if self._deltas < 2:
            self.state = "normal"
            return
        modified = min(self._deltas, 60) * self._trend * TRENDLINE_GAIN
        if modified > self.threshold:
            self._overuse_time = send_delta / 2 if self._overuse_time is None else self._overuse_time + send_delta
            self._overuse_count += 1
            if self._overuse_time > OVERUSE_TIME and self._overuse_count > 1 and self._trend >= self._previous_trend:
                self._overuse_time, self._overuse_count = 0.0, 0
                self.state = "overusing"
        else:
            self._overuse_time, self._overuse_count = None, 0
            self.state = "underusing" if modified < -self.threshold else "normal"
        self._previous_trend = self._trend
        self._adapt_threshold(modified, now)

    def _adapt_threshold(self, modified: float, now: float) -> None:
        if self._last_update is None:
            self._last_update = now
        if abs(modified) > self.threshold + 15:
            return  # a spike (a burst, a route change) must not drag the threshold up
        k = THRESHOLD_K_DOWN if abs(modified) < self.threshold else THRESHOLD_K_UP
        dt_ms = min(max(now - self._last_update, 0.0) * 1000, 100.0)
        self.threshold += k * (abs(modified) - self.threshold) * dt_ms
        self.threshold = min(max(self.threshold, THRESHOLD_MIN), THRESHOLD_MAX)
        self._last_update = now


def _slope(points: deque[tuple[float, float]]) -> float:
    n = len(points)
    mean_x = sum([p[0] for p in points]) / n
    mean_y = sum([p[1] for p in points]) / n
    numerator = denominator = 0.0
    for x, y in points:  # one pass (four generator sums per packet group cost ~0.3 µs a packet)
        dx = x - mean_x
        numerator += dx * (y - mean_y)
        denominator += dx * dx
    return numerator / denominator if denominator else 0.0


class AimdRateControl:
    """The delay-based rate: additive/multiplicative increase, multiplicative decrease.

    Remembers the link capacity (an average of the acknowledged rate at each
    decrease, with its variance): near it the rate grows by about one packet
    per response time, far from it by :data:`INCREASE_PER_SECOND`.
    """

    def __init__(self, *, start_bps: float, min_bps: float, max_bps: float) -> None:
        self.rate = float(start_bps)
        self.min_bps, self.max_bps = float(min_bps), float(max_bps)
        self._state = "hold"
        self._capacity: float | None = None  # kbit/s average at decreases
        self._capacity_var = 0.4  # normalized variance
        self._last_change: float | None = None
        self.last_decrease = -math.inf

    def _near_capacity(self) -> bool:
        if self._capacity is None:
            return False
        std = math.sqrt(self._capacity_var * self._capacity)
        return self.rate / 1000 < self._capacity + 3 * std

    def _learn_capacity(self, acked_kbps: float) -> None:
        if self._capacity is None:
            self._capacity = acked_kbps
            return
        std = math.sqrt(self._capacity_var * self._capacity)
        if acked_kbps < self._capacity - 3 * std:
            self._capacity = acked_kbps  # the link changed: start over
            return
        self._capacity = 0.95 * self._capacity + 0.05 * acked_kbps
        norm = max(self._capacity, 1.0)
        self._capacity_var = 0.95 * self._capacity_var + 0.05 * (self._capacity - acked_kbps) ** 2 / norm
        self._capacity_var = min(max(self._capacity_var, 0.4), 2.5)

    def set_estimate(self, bps: float, now: float) -> None:
        """Jump to ``bps`` (a probe showed the link carries it)."""
        self.rate = min(max(bps, self.min_bps), self.max_bps)
        self._last_change = now

    def update(
        self, signal: str, acked_bps: float | None, now: float, rtt: float, *, app_limited: bool = False
    ) -> float:
        if signal == "overusing":
            self._state = "decrease"
        elif signal == "underusing":
            self._state = "hold"
        elif self._state != "increase":
            self._state = "increase"
        dt = 0.0 if self._last_change is None else min(max(now - self._last_change, 0.0), 1.0)
        if self._state == "increase":
            if self._capacity is not None and self.rate / 1000 > self._capacity + 3 * math.sqrt(
                self._capacity_var * self._capacity
            ):
                self._capacity = None  # well above the old capacity: it is gone
            if self._near_capacity():
                response = rtt + 0.1
                step = max(4_000.0, PACKET_BITS / response) * dt
                new = self.rate + step
            else:
                new = self.rate * (1 + INCREASE_PER_SECOND) ** dt
            if acked_bps is not None:
                new = min(new, max(self.rate, ACKED_HEADROOM * acked_bps + ACKED_SLACK))
            self.rate = new
        elif self._state == "decrease":
            if app_limited:
                # What was acknowledged is what the sender had to send, not what the link carries.
                if now - self.last_decrease >= APP_LIMITED_DECREASE_INTERVAL:
                    self.rate = max(BETA * self.rate, acked_bps or 0.0)
                    self.last_decrease = now
            elif now - self.last_decrease >= min(max(rtt, 0.01), 0.2) or self.last_decrease == -math.inf:
                base = acked_bps if acked_bps is not None else self.rate
                self.rate = min(self.rate, BETA * base)
                if acked_bps is not None:
                    self._learn_capacity(acked_bps / 1000)
                self.last_decrease = now
            self._state = "hold"
        self.rate = min(max(self.rate, self.min_bps), self.max_bps)
        self._last_change = now
        return self.rate


class LossBasedController:
    """A limit from the loss transport-cc feedback reports.

    No limit until loss goes above :data:`LOSS_HIGH`: then the limit is the
    current target times ``1 - loss/2`` (at most once per round trip + 300 ms;
    the caller counts only packets sent after the last cut, so one burst of
    losses is answered once).
    Below :data:`LOSS_LOW` the limit grows by :data:`INCREASE_PER_SECOND` and
    is lifted once it no longer binds; in between it holds. Loss is measured
    over windows of at least :data:`LOSS_WINDOW_PACKETS` packets and
    :data:`LOSS_WINDOW_TIME` seconds, so random loss of a few percent is seen
    as what it is (not congestion), as the larger of the share of packets and
    the share of bytes lost.
    """

    def __init__(self) -> None:
        self.limit: float | None = None
        self.fraction = 0.0  # last measured loss fraction (of packets or bytes, whichever is larger)
        self._lost = 0
        self._total = 0
        self._lost_bytes = 0
        self._total_bytes = 0
        self._window_start: float | None = None
        self.decreased_at = -math.inf  # when the limit was last cut (packets sent before do not count again)
        self._last_update: float | None = None

    @property
    def measured(self) -> bool:
        """True once a loss window was complete (:data:`LOSS_WINDOW_TIME`): until then the loss is not known."""
        return self._last_update is not None

    def on_probe(self, bps: float) -> None:
        """A probe showed the link carries ``bps``: a lower limit rises to it while loss is low."""
        if self.limit is not None and self.fraction < LOSS_LOW:
            self.limit = max(self.limit, bps)

    def on_results(
        self,
        *,
        lost: int,
        received: int,
        now: float,
        rtt: float,
        target: float,
        delay_based: float,
        acked: float | None = None,
        lost_bytes: int = 0,
        received_bytes: int = 0,
    ) -> None:
        """Count one feedback's packets; ``target`` is the current target, ``delay_based`` the delay-based rate,
        ``acked`` the rate the receiver acknowledged (a cut starts from it when the sender sends more than the
        limit: audio and the thinnest video are never paused, so below them a lower limit changes nothing on
        the wire, and each cut only took the last one's outcome down, to the minimum)."""
        if self._window_start is None:
            self._window_start = now
        self._lost += lost
        self._total += lost + received
        self._lost_bytes += lost_bytes
        self._total_bytes += lost_bytes + received_bytes
        enough = self._total >= LOSS_WINDOW_PACKETS and now - self._window_start >= LOSS_WINDOW_TIME
        if not enough and self._total < LOSS_WINDOW_MAX:
            return
        # Packets or bytes, whichever lost more: on an overrun link a full queue keeps taking the small audio
        # packets and drops the large video ones (7-9 % of the packets, 40 % of the bytes, simulated), and
        # without probes adding to it the packet count alone stayed under LOSS_HIGH, the limit never engaged.
        self.fraction = max(self._lost / self._total, self._lost_bytes / max(1, self._total_bytes))
        self._lost = self._total = self._lost_bytes = self._total_bytes = 0
        self._window_start = now
        dt = 0.0 if self._last_update is None else min(now - self._last_update, 1.0)
        self._last_update = now
        if self.fraction > LOSS_HIGH:
            if now - self.decreased_at >= rtt + 0.3:
                base = min(self.limit if self.limit is not None else math.inf, target)
                if acked is not None and acked > base:
                    base = acked
                self.limit = base * (1 - self.fraction / 2)
                self.decreased_at = now
        elif self.fraction < LOSS_LOW and self.limit is not None:
            self.limit = self.limit * (1 + INCREASE_PER_SECOND) ** dt + 1000 * dt
            if self.limit >= delay_based:
                self.limit = None  # no longer the binding limit


class DeliveredFloor:
    """The least the target may drop to: what the receiver demonstrably got with (almost) no loss.

    GCC bounds a decrease by the acknowledged rate (:data:`BETA` x it), but a
    receiver short of CPU (a browser on a loaded machine) stamps arrivals late
    and in bunches: its delay gradient says "overuse" again and again while
    every packet arrives, each decrease takes 0.85 x the last one's outcome, and
    the estimate spirals down until the allocator pauses cameras (the
    intermittent browser-test stall, docs/architecture.md). A full queue on a
    real bottleneck drops packets; a starved receiver does not. So while the
    feedback of the last :data:`DELIVERED_LOSS_TIME` s reports at most
    :data:`DELIVERED_MAX_LOSS` loss, the target stays at :data:`DELIVERED_SHARE`
    of the best acknowledged rate of the last :data:`DELIVERED_WINDOW` s; once
    loss shows up, the delay-based decrease applies as it is.
    """

    def __init__(self) -> None:
        self._acked: deque[tuple[float, float]] = deque()  # (now, acknowledged bit/s)
        self._fates: deque[tuple[float, int, int]] = deque()  # (now, lost, received)

    def on_feedback(self, *, now: float, acked_bps: float | None, lost: int, received: int) -> None:
        if acked_bps is not None:
            self._acked.append((now, acked_bps))
        self._fates.append((now, lost, received))
        while self._acked and self._acked[0][0] < now - DELIVERED_WINDOW:
            self._acked.popleft()
        while self._fates and self._fates[0][0] < now - DELIVERED_LOSS_TIME:
            self._fates.popleft()

    def bps(self, now: float) -> float | None:
        lost = sum(f[1] for f in self._fates if f[0] >= now - DELIVERED_LOSS_TIME)
        total = lost + sum(f[2] for f in self._fates if f[0] >= now - DELIVERED_LOSS_TIME)
        acked = [a for t, a in self._acked if t >= now - DELIVERED_WINDOW]
        if not acked or total < DELIVERED_MIN_PACKETS or lost > DELIVERED_MAX_LOSS * total:
            return None
        return DELIVERED_SHARE * max(acked)


class AcknowledgedBitrate:
    """The rate at which the receiver got packets, over the last :data:`ACKED_WINDOW` seconds of arrivals."""

    def __init__(self) -> None:
        self._packets: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, arrival: float, size: int) -> None:
        packets = self._packets
        packets.append((arrival, size))
        self._bytes += size
        horizon = arrival - ACKED_WINDOW
        while packets[0][0] < horizon:
            self._bytes -= packets.popleft()[1]

    @property
    def bps(self) -> float | None:
        if len(self._packets) < 2:
            return None
        span = self._packets[-1][0] - self._packets[0][0]
        if span < ACKED_WINDOW / 4:
            return None
        return (self._bytes - self._packets[0][1]) * 8 / span


@dataclass
class _Cluster:
    sent: int = 0
    reported: int = 0
    received: list[tuple[float, float, int]] | None = None  # (send_time, arrival, size)
    done: bool = False
    closed: bool = False  # every packet of it was sent (recorded)


class ProbeResultEstimator:
    """The rate a probe cluster got through: min(rate sent, rate received), from its feedback.

    A cluster is measured once it is closed (:meth:`close`: the sender says it is over, or a packet sent after
    it belongs to no cluster or to another) and every packet of it is reported. Without the first condition a
    cluster was "complete" as soon as the feedback had caught up with the packets sent so far: on a loaded
    SFU, whose 5 ms pacing ticks of a cluster came tens of milliseconds apart, feedback for the first 1-4
    packets arrived before the rest were sent, and the cluster told nothing (browser runs: "few:1/1"; a fifth
    of all results, three in a row after a limit's removal).
    """

    def __init__(self) -> None:
        self._clusters: dict[int, _Cluster] = {}
        self._open: int | None = None  # the cluster the last packets recorded belong to

    def on_sent(self, cluster: int) -> None:
        c = self._clusters.setdefault(cluster, _Cluster())
        c.sent += 1
        if self._open != cluster:
            self.close(self._open)
            self._open = cluster
        while len(self._clusters) > 16:
            self._clusters.pop(next(iter(self._clusters)))

    def close(self, cluster: int | None) -> None:
        """Every packet of ``cluster`` was recorded (None: the cluster open now, if any)."""
        if cluster is None:
            cluster = self._open
        if cluster is None:
            return
        if cluster == self._open:
            self._open = None
        c = self._clusters.get(cluster)
        if c is not None:
            c.closed = True

    def on_result(self, cluster: int, *, send_time: float, arrival: float | None, size: int) -> None:
        c = self._clusters.get(cluster)
        if c is None or c.done:
            return
        c.reported += 1
        if arrival is not None:
            if c.received is None:
                c.received = []
            c.received.append((send_time, arrival, size))

    def results(self) -> list[tuple[float | None, str]]:
        """Results of clusters whose every packet is now reported (None: the cluster told nothing usable), each with
        why it told nothing (``_cluster_measure``; "" for a rate)."""
        out: list[tuple[float | None, str]] = []
        for c in self._clusters.values():
            if c.done or not c.closed or c.reported < c.sent:
                continue
            c.done = True
            out.append(_cluster_measure(c.received or [], c.sent))
        return out


def _cluster_rate(received: list[tuple[float, float, int]]) -> float | None:
    return _cluster_measure(received)[0]


def _cluster_measure(received: list[tuple[float, float, int]], sent: int = 0) -> tuple[float | None, str]:
    """(what a probe cluster measured, or None with why: ``few:<received>/<sent>`` packets, ``send:<ms>`` or
    ``arrival:<ms>`` an interval out of range, ``bunched:<arrival/send rate>``)."""
    if len(received) < PROBE_MIN_PACKETS:
        return None, f"few:{len(received)}/{sent}"
    by_send = sorted(received)
    by_arrival = sorted(received, key=lambda r: r[1])
    send_interval = by_send[-1][0] - by_send[0][0]
    arrival_interval = by_arrival[-1][1] - by_arrival[0][1]
    total = sum(r[2] for r in received)
    if send_interval <= 0 or send_interval > 1.0:
        return None, f"send:{send_interval * 1000:.0f}"
    if arrival_interval <= 0:
        return None, f"arrival:{arrival_interval * 1000:.0f}"
    send_rate = (total - by_send[-1][2]) * 8 / send_interval
    arrival_rate = (total - by_arrival[0][2]) * 8 / arrival_interval
    # A token bucket on the path (``tc tbf``'s burst, a modem's) passes a cluster's first bytes at the rate
    # they were sent; the later half, once it ran dry, arrives at what the link carries.
    late = by_arrival[len(by_arrival) // 2 :]
    late_interval = late[-1][1] - late[0][1]
    if len(late) >= PROBE_MIN_PACKETS // 2 + 1 and late_interval > 0:
        arrival_rate = min(arrival_rate, (sum(r[2] for r in late) - late[0][2]) * 8 / late_interval)
    if arrival_rate > 2 * send_rate:
        return None, f"bunched:{arrival_rate / send_rate:.1f}"  # arrivals bunched up behind something else
    if arrival_rate < 0.9 * send_rate:
        return 0.95 * arrival_rate, ""  # the link could not carry what was sent
    return min(send_rate, arrival_rate), ""


class ProbeController:
    """When to probe: while the target is below what the caller wants, at twice the target, until the link says no.

    A probe that comes back at :data:`PROBE_SUCCESS` of its rate or better is
    followed at once by a higher one; a failed (or unanswered) probe waits a
    backoff that doubles from :data:`PROBE_BACKOFF_MIN` to
    :data:`PROBE_BACKOFF_MAX` seconds, so a limited link is asked again now
    and then (the limit may be gone) without being flooded.
    """

    def __init__(self) -> None:
        self._first = True
        self._pending: tuple[float, float, float] | None = None  # (highest rate probed, when, target then)
        self._next_allowed = -math.inf
        self._backoff = PROBE_BACKOFF_MIN
        self.probes_sent = 0
        self.probes_failed = 0
        # (now, probed, result, why a result is None or was rejected): the trace
        self.results: deque[tuple[float, float, float | None, str]] = deque(maxlen=8)

    def request(
        self,
        *,
        now: float,
        target: float,
        wanted: float,
        max_bps: float,
        acked: float | None = None,
        calm: bool = True,
    ) -> list[tuple[int, int]] | None:
        """Clusters ``(bitrate, bytes)`` to send now, or None. A cluster's least size is :data:`PROBE_QUEUE_TIME`
        of the target, for the initial clusters of the lower of the target and ``acked``, what the receiver
        acknowledged lately: the target is then the start rate, a guess (they were 10 kB each on a 100 kbit/s
        link that queues 7.6 kB). Later ones keep it: an application-limited sender's acknowledged rate made them
        smaller than twice a ``tbf`` bucket, whose burst then passed them as spare capacity (simulated).
        ``calm``: the link carries what is sent without a queue building up; if not, only the lower of the initial
        clusters is sent."""
        wanted = min(wanted, max_bps)
        if self._pending is not None and now - self._pending[1] > PROBE_TIMEOUT:
            self._fail(now)
        if self._pending is not None or now < self._next_allowed or wanted <= target:
            return None
        initial, self._first = self._first, False
        factors = (PROBE_INITIAL if calm else PROBE_INITIAL[:1]) if initial else (2.0,)
        rates = sorted({int(min(wanted, target * f)) for f in factors})
        carried = min(target, acked) if initial and acked is not None else target
        least = max(PROBE_SMALLEST, min(PROBE_MIN_BYTES, int(carried * PROBE_QUEUE_TIME / 8)))
        clusters = [(r, max(least, int(r * PROBE_DURATION / 8))) for r in rates]
        self._pending = (float(rates[-1]), now, target)
        self.probes_sent += len(clusters)
        return clusters

    @property
    def initial(self) -> bool:
        """True until the initial clusters (:data:`PROBE_INITIAL`) were requested."""
        return self._first

    def on_result(self, bps: float | None, now: float, why: str = "") -> None:
        """``bps``: what the cluster measured (None: nothing usable, e.g. its arrivals bunched up behind a
        stalled receiver; the link said neither yes nor no, so the next probe waits the least backoff)."""
        if self._pending is None:
            return
        self.results.append((now, self._pending[0], bps, why))
        if bps is None:
            self._pending = None
            self._next_allowed = now + PROBE_BACKOFF_MIN
        elif bps >= PROBE_SUCCESS * self._pending[0] and bps >= PROBE_GAIN * self._pending[2]:
            self._pending = None
            self._next_allowed = now
            self._backoff = PROBE_BACKOFF_MIN
        else:
            self._fail(now)

    def _fail(self, now: float) -> None:
        self._pending = None
        self.probes_failed += 1
        self._next_allowed = now + self._backoff
        self._backoff = min(self._backoff * 2, PROBE_BACKOFF_MAX)


# What the estimator remembers of a sent packet: a list, not a dataclass, because one is made for every packet
# sent (a dataclass's __init__ cost ~0.3 µs of issue 17's 3 µs budget per forwarded packet).
_SIZE, _SENT_AT, _CLUSTER, _REPORTED, _LOST = range(5)  # [size, send time, probe cluster or None, reported, lost]
SENT_WINDOW = 1 << 14  # sent packets remembered (~10 s at 1600 packets/s; older ones never get feedback)


class SendSideEstimator:
    """Target bitrate of one subscribe connection from transport-cc feedback (REMB as fallback and cap).

    Feed it every packet sent (:meth:`on_packet_sent`, with the transport-wide
    sequence number stamped on it), every transport-cc feedback
    (:meth:`on_feedback`), REMB and RTT; read :attr:`target_bps`. The target is
    min(delay-based, loss-based, a fresh REMB), within [min_bps, max_bps].
    Without any transport-cc feedback for :data:`FEEDBACK_FRESH` seconds it
    is the last REMB (``covers_audio`` then is False: Chromium's REMB counts
    only the video it receives).

    :meth:`probe_request` says which probe clusters to send; the caller gives
    each cluster it sends its own id (any int, distinct per cluster) and passes
    it as ``probe_cluster`` for every packet of that cluster.
    """

    def __init__(self, *, start_bps: int, min_bps: int, max_bps: int) -> None:
        self.min_bps, self.max_bps = min_bps, max_bps
        self._sent: dict[int, list[Any]] = {}  # unwrapped sequence number -> [_SIZE, _SENT_AT, ...]
        self._last_seq: int | None = None
        self._inter_arrival = InterArrival()
        self.trendline = TrendlineEstimator()
        self.aimd = AimdRateControl(start_bps=start_bps, min_bps=min_bps, max_bps=max_bps)
        self.loss = LossBasedController()
        self.acked = AcknowledgedBitrate()
        self.delivered = DeliveredFloor()
        self.probe_results = ProbeResultEstimator()
        self.probes = ProbeController()
        self._rtt = 0.1
        self._remb: tuple[float, float] | None = None  # (bps, when)
        self._feedback_at: float | None = None
        self._first_feedback_at: float | None = None
        self._now = 0.0
        self._target = float(min(max(start_bps, min_bps), max_bps))
        self._sent_batches: deque[tuple[float, int]] = deque()  # (last send time, bytes) of each batch recorded
        self.bytes_sent = 0  # of every packet sent (media, retransmissions, probes): the trace's sent rate
        self._byte_fates: deque[tuple[float, int, int]] = deque()  # (now, bytes lost, bytes received) per feedback

    # -- input -----------------------------------------------------------------

    def on_packet_sent(self, *, seq: int, size: int, send_time: float, probe_cluster: int | None = None) -> None:
        self.on_packets_sent([(seq, size, send_time, -1 if probe_cluster is None else probe_cluster)])

    def on_packets_sent(self, records: Iterable[tuple[int, int, float, int]]) -> None:
        """:meth:`on_packet_sent` for a batch of ``(seq, size, send time, probe cluster or -1)`` records, in
        send order (``TransportSequence.drain``): one call per batch, the per-packet work inlined."""
        sent = self._sent
        last = self._last_seq
        on_sent = self.probe_results.on_sent
        total = 0
        cluster = -1
        for seq, size, send_time, cluster in records:
            total += size
            if last is None:
                full = last = seq
            else:
                delta = (seq - last) & 0xFFFF  # unwrap(seq, last), inlined
                full = last + delta - SEQ_MOD if delta >= SEQ_MOD // 2 else last + delta
                if full > last:
                    last = full
            if cluster < 0:
                sent[full] = [size, send_time, None, False, False]
            else:
                sent[full] = [size, send_time, cluster, False, False]
                on_sent(cluster)
            # Numbers are consecutive, so the one leaving the window is known: popping by key, since deleting a
            # dict's first item again and again is slow (CPython scans past the deleted slots: ~10 µs a packet).
            sent.pop(full - SENT_WINDOW, None)
        self._last_seq = last
        self.bytes_sent += total
        if total and cluster < 0:
            # Sent after the cluster open until now: that one is over (checked per batch, not per packet; a
            # record of another cluster closes it in on_sent).
            self.probe_results.close(None)
        if total:
            batches = self._sent_batches
            batches.append((send_time, total))  # one entry per batch: the per-packet path stays as it was
            while batches[0][0] < send_time - SENT_RATE_WINDOW:
                batches.popleft()
        while len(sent) > SENT_WINDOW:  # only after a jump in numbers
            del sent[next(iter(sent))]

    def on_feedback(self, *, now: float, results: list[tuple[int, float | None]]) -> None:
        last = self._last_seq
        if last is None:
            return
        self._now = now
        lost = received = lost_bytes = received_bytes = 0
        sent = self._sent
        decreased_at = self.loss.decreased_at
        acked_add = self.acked.add
        inter_arrival = self._inter_arrival.add
        for seq, arrival in results:
            delta = (seq - last) & 0xFFFF  # unwrap(seq, last), inlined
            packet = sent.get(last + delta - SEQ_MOD if delta >= SEQ_MOD // 2 else last + delta)
            if packet is None or packet[_REPORTED] or (arrival is None and packet[_LOST]):
                continue  # unknown, or told already (a late arrival after a loss report still counts)
            size, send_time, cluster = packet[0], packet[1], packet[2]
            if cluster is not None and not packet[_LOST]:
                self.probe_results.on_result(cluster, send_time=send_time, arrival=arrival, size=size)
            # Loss of packets sent before the last loss-based cut was answered by that cut already.
            counts = send_time >= decreased_at
            if arrival is None:
                packet[_LOST] = True
                if counts:
                    lost += 1
                    lost_bytes += size
                continue
            packet[_REPORTED] = True
            if counts and not packet[_LOST]:  # a late arrival was counted (as lost) already
                received += 1
                received_bytes += size
            acked_add(arrival, size)
            deltas = inter_arrival(send_time, arrival, size)
            if deltas is not None:
                self.trendline.update(deltas)
        if not results:
            return
        self._feedback_at = now
        if self._first_feedback_at is None:
            self._first_feedback_at = now
        fates = self._byte_fates
        fates.append((now, lost_bytes, received_bytes))
        while fates[0][0] < now - OVERRUN_WINDOW:
            fates.popleft()
        for result, why in self.probe_results.results():
            if result is not None and self.trendline.state == "overusing":
                # The delay says the link queues now: what the cluster measured is no spare capacity, and the
                # link said no (libwebrtc's delay-based estimator ignores a probe result while it signals
                # overuse). Browser runs on a 300 kbit/s tbf showed a "success" every ~2.5 s (measured above the
                # link's rate), the backoff reset and a higher probe at once that failed; the simulator has it
                # with a loaded receiver's irregular arrival stamps, and this leaves a third to a half of those
                # successes (docs/benchmarks.md §2b). Rejecting results for QUEUE_MEMORY after every delay-based
                # decrease too removed them, but a loaded receiver (which signals overuse every second or so) then
                # hardly climbed back after a limit was removed.
                self.probes.on_result(0.0, now, f"overuse:{result / 1000:.0f}")
                continue
            if result is not None:
                if result > self.aimd.rate:
                    self.aimd.set_estimate(result, now)
                self.loss.on_probe(result)
            self.probes.on_result(result, now, why)
        self.aimd.update(
            self.trendline.state,
            self.acked.bps,
            now,
            self._rtt,
            app_limited=self.sent_bps(now) < APP_LIMITED_SHARE * self.aimd.rate,
        )
        self.delivered.on_feedback(now=now, acked_bps=self.acked.bps, lost=lost, received=received)
        self.loss.on_results(
            lost=lost,
            received=received,
            lost_bytes=lost_bytes,
            received_bytes=received_bytes,
            now=now,
            rtt=self._rtt,
            target=self._target,
            delay_based=self.aimd.rate,
            acked=self.acked.bps,
        )
        self._update_target()

    def sent_bps(self, now: float) -> float:
        """What the sender sent (every packet) over the last :data:`SENT_RATE_WINDOW` s before ``now``."""
        return sum(b for t, b in self._sent_batches if t >= now - SENT_RATE_WINDOW) * 8 / SENT_RATE_WINDOW

    def on_probe_cluster_sent(self, cluster: int) -> None:
        """The sender sent the last packet of probe ``cluster`` (after recording it: ``on_packets_sent``); its result
        may be measured once every packet is reported, even if nothing is sent after it."""
        self.probe_results.close(cluster)

    def on_remb(self, *, now: float, bps: int) -> None:
        self._now = max(self._now, now)
        self._remb = (float(bps), now)
        self._update_target()

    def on_rtt(self, *, rtt: float) -> None:
        if rtt > 0:
            self._rtt = rtt

    # -- output ----------------------------------------------------------------

    @property
    def target_bps(self) -> int:
        return int(self._target)

    @property
    def covers_audio(self) -> bool:
        """True while the target comes from transport-cc feedback (all media); False on REMB (video only)."""
        return self._transport_cc_fresh()

    def queue_building(self, now: float) -> bool:
        """True while the delay says the path's queue grows (overuse now, or a delay-based decrease in the
        last :data:`QUEUE_MEMORY` s): loss then means congestion, not noise. Loss itself does not tell (a few
        unlucky windows of random loss set the loss-based limit as well)."""
        return self.trendline.state == "overusing" or now - self.aimd.last_decrease < QUEUE_MEMORY

    def overrun(self, now: float) -> bool:
        """True while the sender sends more than the link carries: more than :data:`LOSS_HIGH` of the bytes
        reported over the last :data:`OVERRUN_WINDOW` s lost. What is never paused (audio, the speaker's thinnest video) can overrun a
        slow link whatever the target: a 100 kbit/s subscriber of two microphones and a thin video sends
        ~140 kbit/s (tests/e2e/test_bandwidth_ui.py). Counting packets alone, the many small audio packets
        mostly pass while the video's few large ones are dropped (a full ``tbf`` queue has room for a small
        packet more often): 40 % of the bytes lost at 7-9 % of the packets (simulated). Random loss of a few
        percent is not an overrun, even while a loss-based limit set by one unlucky window holds (asking for
        that too kept 5 % random loss on a 10 Mbit/s link from doubled repairs up to 90 % of the time; over
        1 s, or the loss-based controller's own windows, the share of bytes was above 10 % up to 5 %)."""
        return self._bytes_lost(now, OVERRUN_WINDOW) > LOSS_HIGH

    def _bytes_lost(self, now: float, window: float) -> float:
        """The share of the bytes reported over the last ``window`` s (at most :data:`OVERRUN_WINDOW`) lost."""
        lost = got = 0
        for at, lost_bytes, received_bytes in self._byte_fates:
            if at >= now - window:
                lost += lost_bytes
                got += received_bytes
        return lost / (lost + got) if lost + got else 0.0

    def has_room(self, now: float) -> bool:
        """True while the path has room for more than is sent, so a doubled retransmission helps (random loss)
        rather than adds to the loss: no queue building up (:meth:`queue_building`) and the link not overrun
        (:meth:`overrun`). A standing full queue shows no delay gradient: on an overrun 100 kbit/s ``tbf`` at
        40-50 % loss the delay alone said "room" 68 % of the time and two copies of most repairs were sent
        (simulated, tests/media_server/test_bwe_unit.py)."""
        return not self.queue_building(now) and not self.overrun(now)

    def probe_request(self, *, now: float, wanted_bps: int) -> list[tuple[int, int]] | None:
        """Probe clusters ``(bitrate_bps, bytes)`` to send now (paced at that rate), or None.

        Only while transport-cc feedback flows (a probe's result is measured
        from it), once the first loss measurement is in (:data:`LOSS_WINDOW_TIME`:
        the initial clusters, 3 and 6 x the start rate, are sent to a link
        not yet known; they also wait, up to :data:`PROBE_INITIAL_WAIT`, for a
        link that carries what is sent without a queue building up), and
        while the link is not overrun (:meth:`overrun`, or more than
        :data:`LOSS_HIGH` lost in the last second or the loss-based
        controller's last window: a probe waits on less evidence than a
        doubled repair is refused on).
        ``now`` also moves the estimator's clock: without feedback for
        :data:`FEEDBACK_FRESH` seconds the target falls back to REMB.
        """
        self._now = max(self._now, now)
        self._update_target()
        if not self._transport_cc_fresh() or not self.loss.measured:
            return None
        calm = not self.queue_building(now) and (self.acked.bps or 0.0) >= (1 - LOSS_HIGH) * self.sent_bps(now)
        if (
            self.probes.initial
            and not calm
            and self._first_feedback_at is not None
            and now - self._first_feedback_at < PROBE_INITIAL_WAIT
        ):
            # The initial clusters, at 3 and 6 x a guessed start rate, wait for a link that carries what is sent
            # and no queue building: an overrun 100 kbit/s tbf absorbs the first ~2 s of excess in its bucket and
            # queue before it drops (by then its loss stops them). A receiver whose stamps jitter (a loaded
            # machine) may never look calm: after PROBE_INITIAL_WAIT only the lower one goes.
            return None
        if self.overrun(now) or max(self.loss.fraction, self._bytes_lost(now, LOSS_WINDOW_TIME)) > LOSS_HIGH:
            # The link is overfull already (what is never paused, audio and the speaker's thinnest video, overruns
            # it): a probe would only add to the loss. A 100 kbit/s subscriber of two microphones lost 25-45 %
            # and was still probed every ~3 s (browser run, tests/e2e/test_bandwidth_ui.py: its room socket
            # missed pongs and rejoined every ~13 s). REMB's padding stops above 2 % loss likewise. Each of its
            # rejoins started with initial clusters of 706-1809 kbit/s, 10 kB each, sent before any loss was
            # known: now they wait for the first loss measurement, and an overrun link gets none.
            return None
        return self.probes.request(
            now=now, target=self._target, wanted=wanted_bps, max_bps=self.max_bps, acked=self.acked.bps, calm=calm
        )

    def trace(self) -> str:
        """One line of the estimator's state, for the MEDIA_BWE_TRACE log (what a browser run did, and why)."""
        t, now = self.trendline, self._now
        acked, floor = self.acked.bps, self.delivered.bps(now)
        probes = " ".join(
            f"{p / 1000:.0f}>{'-' if r is None else f'{r / 1000:.0f}'}{f'({why})' if why else ''}@{now - at:.1f}s"
            for at, p, r, why in self.probes.results
        )
        return (
            f"target={self._target / 1000:.0f}k aimd={self.aimd.rate / 1000:.0f}k/{self.aimd._state}"
            f" cap={'-' if self.aimd._capacity is None else f'{self.aimd._capacity:.0f}k'}"
            f" acked={'-' if acked is None else f'{acked / 1000:.0f}k'}"
            f" floor={'-' if floor is None else f'{floor / 1000:.0f}k'}"
            f" loss={self.loss.fraction:.3f}/{'-' if self.loss.limit is None else f'{self.loss.limit / 1000:.0f}k'}"
            f"{' overrun' if self.overrun(now) else ''}{'' if self.has_room(now) else ' noroom'}"
            f" trend={t.state}:{min(t._deltas, 60) * t._trend * TRENDLINE_GAIN:.1f}/{t.threshold:.1f}"
            f" rtt={self._rtt * 1000:.0f}ms remb={'-' if self._remb is None else f'{self._remb[0] / 1000:.0f}k'}"
            f" probes={self.probes.probes_sent}/{self.probes.probes_failed}"
            f" pending={'-' if self.probes._pending is None else f'{self.probes._pending[0] / 1000:.0f}k'}"
            f" next={max(0.0, self.probes._next_allowed - now):.1f}s [{probes}]"
        )

    def _transport_cc_fresh(self) -> bool:
        return self._feedback_at is not None and self._now - self._feedback_at < FEEDBACK_FRESH

    def _update_target(self) -> None:
        remb = self._remb if self._remb is not None and self._now - self._remb[1] < REMB_FRESH else None
        if self._transport_cc_fresh():
            target = self.aimd.rate
            floor = self.delivered.bps(self._now)
            if floor is not None:
                target = max(target, floor)
            if self.loss.limit is not None:
                target = min(target, self.loss.limit)
            if remb is not None:
                target = min(target, remb[0])
        elif self._remb is not None:
            target = self._remb[0]
        else:
            return
        self._target = min(max(target, self.min_bps), self.max_bps)
