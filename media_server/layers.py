"""Per-subscriber adaptive quality: bandwidth estimate and simulcast layer allocation.

Pure logic (no aiortc, no I/O): :class:`BandwidthEstimate` turns what a
subscriber's browser reports (REMB, receiver-report loss) into a usable
bitrate; :func:`allocate` chooses, for each video track the subscriber
receives, which simulcast layer to forward (or none). The
:class:`~media_server.participant.Subscriber` applies the result, switching
layers only on keyframes of the target layer.

Policy (see docs/protocol.md "Media behaviour"):

* audio is always forwarded and, when the estimate covers it, its bitrate
  is reserved first, exactly once (:func:`audio_reserve`): a transport-wide
  (transport-cc) estimate measures all media, Chromium's REMB only the video
  (only video carries abs-send-time, which its receive-side estimator reads),
  so from a REMB nothing is subtracted;
* the first video is a screen share when there is one, else the active
  speaker's: what the meeting looks at (Jitsi and Zoom put a shared screen
  first too). It always gets its lowest level, even over the estimate: a
  screen share has one layer, and pausing it for cameras' thin layers left
  everyone without the shared screen on a busy machine whose estimate had
  sagged (browser run beside a CPU hog, docs/architecture.md);
* when the video budget is under :data:`LOW_VIDEO_BUDGET` only the first
  video is forwarded, on its lowest level (thin, below), or at that
  layer's full frame rate when that fits in what an estimate covering the
  audio leaves for video;
* a video whose lowest layer has temporal layers (VP8 from browsers has
  three) gets an extra level below it, "thin": that layer's base temporal
  layer only (a quarter of the frame rate, :data:`THIN_SHARE` of its
  bitrate; :func:`with_thin_level`). Levels are what the allocator counts in;
  the subscriber maps them back to (layer, temporal limit);
* otherwise every video track gets its lowest layer while the budget lasts
  (the first video first), then tracks are upgraded one layer at a time,
  in the same order, never above the height the subscriber displays
  (``max_height``, when known);
* upgrades need :data:`UPGRADE_HEADROOM` of spare budget for
  :data:`UPGRADE_HOLD` seconds and no congestion (no recent REMB drop, loss
  under 2 %), and not sooner than :data:`UPGRADE_AFTER_DOWN` seconds after
  that video went down; downgrades happen as soon as the current choice no
  longer fits (:class:`LayerGate`: hysteresis against flapping);
* while the ideal layers need more than the estimate, the subscriber probes
  (:func:`wanted_bitrate`, :func:`padding_rate`) so the estimate can climb.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

LOW_BANDWIDTH = 150_000  # bit/s of a link (audio and video): below, only audio and the active speaker's lowest video
AUDIO_RESERVE = 50_000  # bit/s reserved per forwarded audio track (Opus ~32 kbit/s + ~16 kbit/s of headers at 50 pps)
LOW_VIDEO_BUDGET = LOW_BANDWIDTH - AUDIO_RESERVE  # bit/s for video: below, only the active speaker's lowest level
THIN_TEMPORAL_LAYER = 0  # the "thin" level keeps the lowest layer's temporal layers up to this one
THIN_SHARE = 0.4  # bitrate share of VP8's base temporal layer out of three (libwebrtc's default split)
UPGRADE_HEADROOM = 0.85  # an upgrade must fit in this share of the estimate...
UPGRADE_HOLD = 1.0  # ...for this many seconds in a row
UPGRADE_AFTER_DOWN = 4.0  # seconds after a video went down before it may go up again...
UPGRADE_TRIAL = 5.0  # ...doubled (up to UPGRADE_BACKOFF_MAX) each time it came down within this long of going up
UPGRADE_BACKOFF_MAX = 16.0
HEADER_OVERHEAD = 1.08  # RTP/SRTP/UDP/IP headers on top of the payload bitrate
NOMINAL_LAYER_BITRATES = (64_000, 500_000, 1_500_000)  # until a layer's bitrate is measured (call.js CAMERA_LAYERS)
MIN_ACTIVE_BITRATE = 8_000  # a recording taps the highest layer sending at least this (PublishedTrack)
LAYER_STOPPED_AFTER = 2.0  # seconds without a packet after which a layer counts as stopped by its publisher...
LAYER_DROPPED_AFTER = 1.0  # ...or this many while another layer of the same video still sends (it dropped one)
LOSSY_RETRANSMIT = 0.02  # smoothed loss above which each retransmission is sent twice (Downstream.retransmit)
DOUBLE_RETRANSMIT_MIN = 500_000  # bit/s: below this estimate a retransmission is never doubled
RETRANSMIT_RTT_FACTOR = 1.2  # a packet is resent again only after this many round trips
RETRANSMIT_MAX_INTERVAL = 1.0  # seconds: the longest wait before a packet may be resent again
PACE_BELOW = 500_000  # bit/s: a subscriber's video is paced while its estimate is below this...
PACE_UNTIL = 600_000  # ...until it is above this (hysteresis)
PACE_FACTOR = 1.5  # video pacing rate / estimate: REMB covers the video only and grows only towards what arrives
PACE_MIN = 40_000  # bit/s: the slowest pacing rate
REPAIR_QUEUE_MAX = 0.5  # s at the pacing rate: an overrun link's repairs are not queued behind more (repair_budget)
LOSS_HIGH = 0.10  # fraction lost above which the estimate is cut (like GCC's loss-based controller)
# Share of the estimate that must arrive (video + padding) for REMB to keep growing at its full +8 %/s:
# it never exceeds 1.5x what arrives + 10 kbit/s (libwebrtc AimdRateControl), and 1.5 x 0.75 > 1.08.
GROWTH_SHARE = 0.75
HELD_WINDOW = 2.0  # s: a REMB drop is bounded by the video sent throughout this long...
HELD_MAX_LOSS = 0.02  # ...while the smoothed receiver-report loss is at most this...
HELD_REPORT_AGE = 2.5  # ...and the last receiver report is this recent (s)
PROBE_BACKOFF = 10.0  # seconds without padding probes after the estimate dropped


def audio_reserve(audio_tracks: int, *, covers_audio: bool) -> float:
    """Bit/s to set aside for ``audio_tracks`` forwarded audio tracks out of an estimate.

    ``covers_audio``: the estimate measures all media (transport-cc); False
    for Chromium's REMB, which measures only the video (the audio it does not
    see is already missing from it: subtracting it again starves the video).
    """
    return AUDIO_RESERVE * audio_tracks if covers_audio else 0.0


def levels_cost(demands: Sequence[VideoDemand], layers: Sequence[int | None]) -> float:
    return sum((d.costs[i] or 0.0) for d, i in zip(demands, layers, strict=True) if i is not None)


def wanted_bitrate(demands: Sequence[VideoDemand], *, audio_bps: float = 0.0) -> float:
    """The estimate at which the ideal layers (unlimited estimate) plus ``audio_bps`` are allowed up: what
    probing may aim at. An upgrade needs :data:`UPGRADE_HEADROOM`; probing that stopped at the bare need
    left an unthrottled subscriber at 1.3 Mbit/s, just short of its 720p layer (browser run, transport-cc)."""
    return (levels_cost(demands, allocate(float("inf"), demands)) + audio_bps) / UPGRADE_HEADROOM


def padding_rate(
    estimate: float, demands: Sequence[VideoDemand], current: Sequence[int | None], *, audio_bps: float = 0.0
) -> float:
    """Bit/s of probe padding that lets the estimate grow towards what the subscriber could use.

    A browser's REMB only grows while it receives close to it (at most 1.5x what
    arrives + 10 kbit/s, libwebrtc's AimdRateControl), so a subscriber held on a
    low layer would never be offered a higher one. Like Jitsi's bandwidth
    probing, the server fills the gap between what it sends and min(estimate,
    ideal) with padding; 0 when the current layers already are the ideal ones.

    ``audio_bps`` is the audio that shares the link (the caller passes the
    reserve of the forwarded microphones: REMB does not measure it, but it
    still takes room on the link). It comes off the target, but the target
    never falls below :data:`GROWTH_SHARE` of the estimate: Chromium's REMB
    measures only the streams that carry abs-send-time (the forwarded video and
    this padding, no audio), and with less than that arriving its cap stops it
    from growing. Without that floor the padding was 0 whenever the estimate was
    below the audio plus the video still sent, which is exactly where padding is
    the only way out: REMB stayed at 1.5x the one thin video still sent, and a
    video the low estimate had paused never came back (the intermittent
    browser-test stall, docs/architecture.md).
    """
    ideal_cost = levels_cost(demands, allocate(float("inf"), demands))
    current_cost = levels_cost(demands, current)
    if ideal_cost <= current_cost:
        return 0.0
    target = max(estimate - audio_bps, GROWTH_SHARE * estimate)
    return max(0.0, min(ideal_cost, target) - current_cost)


def pacing_rate(estimate: float, *, pacing: bool, audio_bps: float = 0.0) -> float | None:
    """Bit/s to pace a subscriber's video at (None: do not pace), given its estimate.

    Only slow links are paced (a keyframe burst is a large part of their
    queue); the rate is above the estimate so that pacing spreads bursts
    without holding back the steady stream (and REMB, which never exceeds
    1.5x what arrives, can still grow).

    ``audio_bps``: the audio the estimate covers (:func:`audio_reserve`; a transport-cc estimate covers all
    media, Chromium's REMB only the video). The pacer carries the video and its repairs, never the audio, so
    its rate is a share of what the estimate leaves for video: paced at 1.5 x a whole 43 kbit/s transport-cc
    estimate (64 kbit/s) beside two microphones, a 100 kbit/s subscriber got video and repairs at ~68 kbit/s on
    top of ~100 kbit/s of audio where REMB's 40 kbit/s pace (1.5 x its ~20 kbit/s video estimate, at least
    :data:`PACE_MIN`) let ~55 through; its room socket starved more often (docs/benchmarks.md §2b).
    """
    if estimate >= (PACE_UNTIL if pacing else PACE_BELOW):
        return None
    return max(PACE_MIN, (estimate - audio_bps) * PACE_FACTOR)


def repair_budget(overrun: bool, queued_bytes: int, rate_bps: float | None) -> int | None:
    """Bytes of repairs to send for one NACK (Downstream.retransmit ``max_bytes``; None: no limit).

    While a transport-cc subscriber's link is overrun (bwe.SendSideEstimator.overrun: what is sent already
    exceeds what it carries), a repair only adds to the overflow, and a burst of them waits in the pacer in
    front of the fresh video: at each new subscribe connection of tests/e2e/test_bandwidth_ui.py's 100 kbit/s
    page, the first second at the 300 kbit/s start rate lost ~40 % and its repairs, 15-20 kB NACKed within
    ~1 s, went into a pacer queue of 24 kB at 40 kbit/s (``pacer.MIN_QUEUE_BYTES``): 3-5 s of stale repairs
    ahead of the speaker's video (docs/benchmarks.md §2b). So they are sent only as far as the queue in front
    of them (``queued_bytes``) stays under :data:`REPAIR_QUEUE_MAX` of ``rate_bps`` (the pacing rate, or the
    estimate while not pacing). A REMB subscriber's link counts as overrun while its receiver reports lose over
    :data:`LOSS_HIGH` (BandwidthEstimate.overrun): the same run, on REMB, sent 674 kbit of repairs in one 0.5 s
    interval on the 100 kbit/s link and its slow page decoded no camera for 60 s (2 runs of 4).
    """
    if not overrun or not rate_bps:
        return None
    return max(0, int(rate_bps / 8 * REPAIR_QUEUE_MAX) - queued_bytes)


def retransmit_policy(
    estimate: float | None, loss: float, rtt: float | None, *, min_interval: float, room: bool | None = None
) -> tuple[int, float]:
    """(copies, interval) for answering a subscriber's NACK (Downstream.retransmit).

    Doubling each retransmission helps on a link with random loss and spare
    capacity (a lost repair costs a 100 ms re-NACK round); on a congested link
    the loss *is* the queue overflowing, and every extra copy makes it worse,
    so only when the estimate leaves room. A packet is resent again only after
    a round trip: until then the previous copy may still be in the queue, and
    the browser NACKs again every 100 ms regardless.

    ``room``: the caller can tell (a send-side estimate: no queue building up
    on the path) whether the link has room, which an estimate cannot: with
    transport-cc it grows only as far as the wanted layers need, so a lossy
    subscriber of one 360p video sat near 400 kbit/s and its repairs were never
    doubled (3 s of freezes per 30 s at 5 % loss, browser run). None: the
    estimate decides (:data:`DOUBLE_RETRANSMIT_MIN`).
    """
    spare = (estimate or 0.0) >= DOUBLE_RETRANSMIT_MIN if room is None else room
    copies = 2 if loss > LOSSY_RETRANSMIT and spare else 1
    interval = min_interval
    if rtt is not None and rtt > 0:
        interval = max(min_interval, min(RETRANSMIT_MAX_INTERVAL, rtt * RETRANSMIT_RTT_FACTOR))
    return copies, interval


@dataclass(frozen=True)
class VideoDemand:
    """One video track a subscriber receives, as the allocator sees it.

    ``costs[i]``: bit/s of layer ``i`` (lowest first), None if the publisher
    does not send it now; ``heights[i]``: its frame height if known.
    """

    costs: Sequence[float | None]
    heights: Sequence[int | None] = ()
    max_height: int | None = None
    speaker: bool = False
    screen: bool = False
    thin: bool = False
    """Level 0 is the "thin" level (:func:`with_thin_level`): level 1 is the same layer at its full frame rate."""


def layer_stopped(silent: Sequence[float], layer: int) -> bool:
    """True if the publisher stopped sending ``layer``, from each layer's seconds without a packet.

    Only a silence of :data:`LAYER_STOPPED_AFTER` counts, or of :data:`LAYER_DROPPED_AFTER` while another
    layer still sends (a publisher short of CPU or uplink dropping its top layer): a machine-wide stall of a
    second silences every layer at once, and taking that for a stopped camera paused every video and cost a
    keyframe round trip to resume (seen in browser runs at load 35-42, docs/architecture.md).
    """
    quiet = silent[layer]
    return quiet >= LAYER_STOPPED_AFTER or (quiet >= LAYER_DROPPED_AFTER and min(silent) < LAYER_DROPPED_AFTER / 2)


def layer_costs(bitrates: Sequence[float], *, measured: bool, silent: Sequence[float]) -> list[float | None]:
    """Layer costs from measured payload bitrates (None for stopped layers, :func:`layer_stopped`) or
    nominal ones; ``silent``: each layer's seconds without a packet."""
    if not measured:
        return [float(NOMINAL_LAYER_BITRATES[min(i, len(NOMINAL_LAYER_BITRATES) - 1)]) for i in range(len(bitrates))]
    # A floor of half the nominal rate: a layer the publisher is still ramping up
    # (or a quiet moment) must not look cheap enough for a link it would overrun.
    return [
        None
        if layer_stopped(silent, i)
        else max(b * HEADER_OVERHEAD, NOMINAL_LAYER_BITRATES[min(i, len(NOMINAL_LAYER_BITRATES) - 1)] / 2)
        for i, b in enumerate(bitrates)
    ]


def with_thin_level(demand: VideoDemand) -> VideoDemand:
    """``demand`` with the "thin" level (the lowest layer's base temporal layer) in front of its layers."""
    low = _lowest(demand)
    if low is None:
        return demand
    cost = demand.costs[low] or 0.0
    heights = list(demand.heights) or [None] * len(demand.costs)
    return VideoDemand(
        costs=[cost * THIN_SHARE, *demand.costs],
        heights=[heights[low], *heights],
        max_height=demand.max_height,
        speaker=demand.speaker,
        screen=demand.screen,
        thin=True,
    )


def _fits_height(demand: VideoDemand, layer: int) -> bool:
    """True unless a lower layer already fills the displayed height (no layer taller than needed)."""
    if demand.max_height is None or layer >= len(demand.heights):
        return True
    height = demand.heights[layer]
    if height is None or height <= demand.max_height:
        return True
    below = demand.heights[layer - 1] if layer > 0 else None
    if below == height:
        return True  # the same picture at a higher frame rate (thin -> full)
    return below is not None and below < demand.max_height  # the layer below would be upscaled


def _lowest(demand: VideoDemand) -> int | None:
    return next((i for i, c in enumerate(demand.costs) if c is not None), None)


def _next_up(demand: VideoDemand, layer: int) -> int | None:
    for i in range(layer + 1, len(demand.costs)):
        if demand.costs[i] is not None:
            return i if _fits_height(demand, i) else None
    return None


def allocate(estimate: float, demands: Sequence[VideoDemand], *, audio_bps: float = 0.0) -> list[int | None]:
    """The layer to forward for each demand (None = pause that video) within ``estimate`` bit/s.

    ``audio_bps``: the share of ``estimate`` the audio takes (:func:`audio_reserve`).
    """
    result: list[int | None] = [None] * len(demands)
    # Screen shares first, then the speaker (stable); a video whose publisher sends no layer now (camera off) is
    # nobody's first.
    order = sorted(range(len(demands)), key=lambda i: (not demands[i].screen, not demands[i].speaker))
    order = [i for i in order if _lowest(demands[i]) is not None]
    if not order:
        return result
    budget = estimate - audio_bps
    if budget < LOW_VIDEO_BUDGET:
        first = demands[order[0]]
        low = _lowest(first)
        # With an estimate that covers the audio (``audio_bps`` taken out), thin only when the full frame rate
        # does not fit: the upgrade allocation (UPGRADE_HEADROOM of the estimate) falls under this budget sooner
        # than the estimate does, and taking thin there kept a 300 kbit/s subscriber with two microphones (a
        # transport-cc estimate of ~235 kbit/s, 100 kbit/s of it audio) at a quarter of the frame rate for good
        # although the full rate fitted (browser run, issue 17). A REMB (``audio_bps`` 0) measures the video
        # alone: what the link's audio leaves is unknown, and thin stays the rule under the low budget.
        full = low + 1 if audio_bps > 0 and first.thin and low == 0 and len(first.costs) > 1 else None
        if full is not None and (cost := first.costs[full]) is not None and cost <= budget:
            low = full
        result[order[0]] = low
        return result
    for n, i in enumerate(order):
        low = _lowest(demands[i])
        assert low is not None
        cost = demands[i].costs[low] or 0.0
        if cost <= budget or n == 0:  # the first (screen or speaker) track always gets its lowest layer
            result[i] = low
            budget -= cost
    upgraded = True
    while upgraded:
        upgraded = False
        for i in order:
            current = result[i]
            if current is None:
                continue
            up = _next_up(demands[i], current)
            if up is None:
                continue
            delta = (demands[i].costs[up] or 0.0) - (demands[i].costs[current] or 0.0)
            if delta <= budget:
                result[i] = up
                budget -= delta
                upgraded = True
    return result


def with_hysteresis(
    current: Sequence[int | None], keep: Sequence[int | None], up: Sequence[int | None]
) -> list[int | None]:
    """Combine an allocation at the full estimate (``keep``) and one with headroom (``up``).

    A track goes up only if the headroom allocation says so, and down only if
    the full-estimate one no longer holds its current layer.
    """
    out: list[int | None] = []
    for cur, k, u in zip(current, keep, up, strict=True):
        if cur is None:
            out.append(u if u is not None else k)
        elif u is not None and u > cur:
            out.append(u)
        elif k is None or k < cur:
            out.append(k)
        else:
            out.append(cur)
    return out


def _lower(level: int | None, than: int | None) -> bool:
    return than is not None and (level is None or level < than)


def _higher(level: int | None, than: int | None) -> bool:
    return level is not None and (than is None or level > than)


class LayerGate:
    """Time hysteresis for one subscriber's video levels, on top of :func:`with_hysteresis`.

    Videos are identified by a stable key. Down (or pause) at once. Up
    (resuming a paused video included) only once the headroom allocation has
    allowed at least that level for :data:`UPGRADE_HOLD` seconds in a row,
    and no sooner than :data:`UPGRADE_AFTER_DOWN` seconds after that video last
    went down: an estimate that wobbles around a layer's need does not make
    the picture flap. An upgrade that came down again within
    :data:`UPGRADE_TRIAL` seconds failed (the link could not carry it, whatever
    the estimate said: a probe through a token bucket's burst looks like room),
    and the next one waits twice as long, up to :data:`UPGRADE_BACKOFF_MAX`;
    each failed upgrade costs the subscriber a keyframe switch and usually a
    freeze. A video seen for the first time starts at once.
    """

    def __init__(self) -> None:
        self._rising: dict[Hashable, tuple[int, float]] = {}  # key -> (lowest level allowed since, since)
        self._down_at: dict[Hashable, float] = {}
        self._up_at: dict[Hashable, float] = {}  # when the video last went up (cleared when it comes down)
        self._wait: dict[Hashable, float] = {}  # seconds after going down before it may go up (default AFTER_DOWN)
        self._known: set[Hashable] = set()

    def choose(
        self,
        now: float,
        keys: Sequence[Hashable],
        current: Sequence[int | None],
        keep: Sequence[int | None],
        up: Sequence[int | None],
    ) -> list[int | None]:
        """The levels to use now (arguments as for :func:`with_hysteresis`, plus each video's key)."""
        out: list[int | None] = []
        for key, cur, want in zip(keys, current, with_hysteresis(current, keep, up), strict=True):
            if _lower(want, cur):
                self._rising.pop(key, None)
                self._down_at[key] = now
                failed = now - self._up_at.pop(key, -1e18) < UPGRADE_TRIAL
                wait = self._wait.get(key, UPGRADE_AFTER_DOWN)
                self._wait[key] = min(2 * wait, UPGRADE_BACKOFF_MAX) if failed else UPGRADE_AFTER_DOWN
                out.append(want)
            elif want is not None and _higher(want, cur) and key in self._known:
                level, since = self._rising.get(key, (want, now))
                level = min(level, want)
                wait = self._wait.get(key, UPGRADE_AFTER_DOWN)
                if now - since >= UPGRADE_HOLD and now - self._down_at.get(key, -1e18) >= wait:
                    self._rising.pop(key, None)
                    self._up_at[key] = now
                    out.append(level)
                else:
                    self._rising[key] = (level, since)
                    out.append(cur)
            else:
                self._rising.pop(key, None)
                out.append(want)
            self._known.add(key)
        present = set(keys)
        for table in (self._rising, self._down_at, self._up_at, self._wait):
            for gone in [k for k in table if k not in present]:
                del table[gone]
        self._known &= present
        return out


def _smoothed_loss(previous: float, fraction_lost_256: int) -> float:
    """A receiver report's fraction lost (of 256) folded into the smoothed fraction (0..1)."""
    return 0.7 * previous + 0.3 * max(0, min(255, fraction_lost_256)) / 256


class BandwidthEstimate:
    """What one subscriber can receive, from its browser's RTCP.

    REMB (the browser's delay-based estimate) is the base; receiver reports
    with more than :data:`LOSS_HIGH` loss cut it (``1 - loss/2``, as GCC's
    loss-based controller does). ``None`` until the first REMB.

    A REMB drop is bounded by what the subscriber demonstrably receives: while
    fresh receiver reports say at most :data:`HELD_MAX_LOSS` is lost, the
    estimate is at least the video it was sent throughout the last
    :data:`HELD_WINDOW` seconds (:meth:`on_sent`). A starved browser's REMB is
    0.85 x what its starved network thread measured, again and again (three
    subscribers fell to 15-18 kbit/s at the same instant in a browser run and
    every camera paused); a real bottleneck overflows its queue and the loss
    lifts the bound.
    """

    def __init__(self) -> None:
        self.remb: float | None = None
        self.remb_time = 0.0
        self.decreased_at = -1e9  # when REMB last dropped by more than 10 % (congestion)
        self.loss = 0.0  # smoothed fraction lost (0..1)
        self.audio_loss = 0.0  # the same from the audio's receiver reports (overrun only)
        self.audio_loss_time = -1e9
        self.loss_time = -1e9  # when the last receiver report came
        self._sent: list[tuple[float, float]] = []  # (when, bit/s of video being sent then)

    def on_sent(self, bps: float, now: float) -> None:
        """The video (bit/s with headers: the allocator's cost of the levels forwarded) being sent now."""
        self._sent = [(t, b) for t, b in self._sent if t >= now - HELD_WINDOW] + [(now, bps)]

    def held(self, now: float) -> float | None:
        """The least video sent throughout the last :data:`HELD_WINDOW` s, if fresh reports say it arrived."""
        recent = [(t, b) for t, b in self._sent if t >= now - HELD_WINDOW]
        if self.loss > HELD_MAX_LOSS or now - self.loss_time > HELD_REPORT_AGE or not recent:
            return None
        if recent[0][0] > now - HELD_WINDOW + 0.5:
            return None  # not yet sent for (about) the whole window
        return min(b for _, b in recent)

    def on_remb(self, bitrate: float, now: float) -> None:
        if self.remb is not None and bitrate < 0.9 * self.remb:
            self.decreased_at = now
        self.remb = float(bitrate)
        self.remb_time = now

    def overrun(self, now: float) -> bool:
        """True while fresh receiver reports say over :data:`LOSS_HIGH` of the video or of the audio is lost: the
        link is overfull (REMB's counterpart of bwe.SendSideEstimator.overrun, for :func:`repair_budget` and
        audio_lines). The audio's count: on the bandwidth UI test's 100 kbit/s page the video's reports said
        0 % (what RTX repaired counts as received) while ~110 kbit/s of audio went into the link."""
        return any(
            loss > LOSS_HIGH and now - at <= HELD_REPORT_AGE
            for loss, at in ((self.loss, self.loss_time), (self.audio_loss, self.audio_loss_time))
        )

    def congested(self, now: float) -> bool:
        """True shortly after a REMB drop or while loss is above 2 %: no probing then."""
        return now - self.decreased_at < PROBE_BACKOFF or self.loss > 0.02

    def on_loss(self, fraction_lost_256: int, now: float) -> None:
        self.loss = _smoothed_loss(self.loss, fraction_lost_256)
        self.loss_time = now

    def on_audio_loss(self, fraction_lost_256: int, now: float) -> None:
        """An audio receiver report's fraction lost (every microphone's, smoothed together)."""
        self.audio_loss = _smoothed_loss(self.audio_loss, fraction_lost_256)
        self.audio_loss_time = now

    def value(self, now: float) -> float | None:
        if self.remb is None:
            return None
        held = self.held(now)
        estimate = self.remb if held is None else max(self.remb, held)
        if self.loss > LOSS_HIGH:
            estimate *= 1 - self.loss / 2
        return estimate
