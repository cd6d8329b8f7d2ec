"""Adaptive quality, pure logic: layer allocation, hysteresis, bandwidth estimate; layer switches in the forwarder."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from typing import Any, cast

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from test_forwarder_unit import make_downstream

from media_server import aiortc_hooks as hooks
from media_server.audio_lines import DOWN_AFTER
from media_server.bwe import LOSS_WINDOW_MAX, SendSideEstimator
from media_server.config import Config
from media_server.forwarder import PROBE_PADDING, Downstream, ExtensionIds, Forwarder
from media_server.layers import (
    AUDIO_RESERVE,
    DOUBLE_RETRANSMIT_MIN,
    GROWTH_SHARE,
    HELD_REPORT_AGE,
    LOW_BANDWIDTH,
    PACE_FACTOR,
    PACE_MIN,
    REPAIR_QUEUE_MAX,
    RETRANSMIT_MAX_INTERVAL,
    THIN_SHARE,
    UPGRADE_AFTER_DOWN,
    UPGRADE_HEADROOM,
    UPGRADE_HOLD,
    BandwidthEstimate,
    LayerGate,
    VideoDemand,
    allocate,
    audio_reserve,
    layer_costs,
    padding_rate,
    repair_budget,
    retransmit_policy,
    wanted_bitrate,
    with_hysteresis,
    with_thin_level,
)
from media_server.participant import PublishedTrack, Subscriber
from media_server.protocol import TrackInfo
from media_server.rtputil import vp8_keyframe_size
from media_server.send_side import START_BPS

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
COSTS = (100_000.0, 500_000.0, 1_500_000.0)


def vp8_keyframe(width: int, height: int) -> bytes:
    # descriptor (S=1), frame tag (P=0: keyframe), start code, 14-bit width/height
    return b"\x10" + b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8


DELTA = b"\x10\x01" + b"\x00" * 9


def demand(
    speaker: bool = False, max_height: int | None = None, costs: tuple[float | None, ...] = COSTS
) -> VideoDemand:
    return VideoDemand(costs=costs, heights=(180, 360, 720), max_height=max_height, speaker=speaker)


def test_one_video_gets_the_best_layer_the_estimate_allows() -> None:
    assert allocate(10_000_000, [demand()]) == [2]
    assert allocate(1_000_000, [demand()]) == [1]
    assert allocate(300_000, [demand()]) == [0]


def test_audio_is_reserved_before_video() -> None:
    budget = 500_000 + 2 * AUDIO_RESERVE
    assert allocate(budget, [demand()], audio_bps=2 * AUDIO_RESERVE) == [1]
    assert allocate(budget - 1, [demand()], audio_bps=2 * AUDIO_RESERVE) == [0]


def test_under_150_kbit_only_the_active_speakers_lowest_layer_is_forwarded() -> None:
    got = allocate(LOW_BANDWIDTH - 1, [demand(), demand(speaker=True), demand()], audio_bps=3 * AUDIO_RESERVE)
    assert got == [None, 0, None]


def test_a_video_that_sends_nothing_does_not_take_the_place_of_the_one_guaranteed_video() -> None:
    off = demand(costs=(None, None, None))  # a camera that is off: its publisher sends no layer
    assert allocate(LOW_BANDWIDTH - AUDIO_RESERVE - 1, [off, demand()]) == [None, 0]
    assert allocate(LOW_BANDWIDTH - 1, [off, demand()], audio_bps=AUDIO_RESERVE) == [None, 0]
    assert allocate(120_000, [off, demand(costs=(150_000.0, 500_000.0, None))]) == [None, 0]  # over budget, still 1


def test_the_thin_level_serves_weak_links_and_small_budgets() -> None:
    """Levels: thin (base temporal layer of the lowest layer, 40 % of its bitrate), then the layers."""
    thin = [with_thin_level(demand(speaker=True)), with_thin_level(demand())]
    assert thin[0].costs[:2] == [40_000.0, 100_000.0] and list(thin[0].heights[:2]) == [180, 180]
    assert allocate(LOW_BANDWIDTH - 1, thin, audio_bps=2 * AUDIO_RESERVE) == [0, None]  # audio + the speaker, thin
    assert allocate(260_000, thin, audio_bps=2 * AUDIO_RESERVE) == [1, 0]  # the other video thin rather than paused
    assert allocate(10_000_000, thin) == [3, 3]
    small_tile = with_thin_level(demand(max_height=100))
    assert allocate(1_000_000, [small_tile]) == [1]  # full frame rate: same picture height as thin


def test_under_the_low_budget_the_speaker_gets_the_full_frame_rate_of_its_lowest_layer_when_it_fits() -> None:
    """A 300 kbit/s link, two microphones: a transport-cc estimate of ~235 kbit/s covers ~100 kbit/s of audio.
    The upgrade allocation (85 % of it) is under the low budget; it used to answer "thin" there, so the video
    never went up from thin (3.8 fps in the browser run) although its full frame rate fitted with room."""
    thin = with_thin_level(demand(speaker=True, costs=(65_000.0, 500_000.0, 1_500_000.0)))
    audio = audio_reserve(2, covers_audio=True)
    assert allocate(235_000, [thin], audio_bps=audio) == [1]
    assert allocate(235_000 * UPGRADE_HEADROOM, [thin], audio_bps=audio) == [1]  # headroom: still the full rate
    assert allocate(audio + 60_000, [thin], audio_bps=audio) == [0]  # 60 kbit/s for video: thin
    assert allocate(100_000, [thin], audio_bps=AUDIO_RESERVE) == [0]  # a 100 kbit/s link, one microphone: thin
    assert allocate(90_000, [demand(speaker=True, costs=(65_000.0, 500_000.0, None))]) == [0]  # no thin level
    assert allocate(90_000, [thin]) == [0]  # a video-only REMB: the link's audio is unknown, thin as before


def test_the_speaker_is_served_first_then_others_share_upgrades() -> None:
    got = allocate(1_200_000, [demand(), demand(speaker=True)])
    assert got == [1, 1]  # both at least the lowest; upgrades round-robin, speaker first
    got = allocate(250_000, [demand(), demand(speaker=True)])
    assert got == [0, 0]
    got = allocate(160_000, [demand(), demand(speaker=True)])
    assert got == [None, 0]  # only one lowest layer fits: the speaker's


def test_a_screen_share_comes_first_and_is_never_paused_for_cameras() -> None:
    """A screen share has one layer (no simulcast). Behind the speaker's camera it was paused for the cameras'
    thin layers when the estimate sagged (142 kbit/s on an unshaped link, a browser run beside a CPU hog), and
    nobody saw the shared screen; it comes first now and always gets its layer, as the speaker's camera did."""
    screen = VideoDemand(costs=(300_000.0,), heights=(720,), screen=True)
    cameras = [with_thin_level(demand(speaker=True)), with_thin_level(demand())]
    assert allocate(142_000, [*cameras, screen]) == [None, None, 0]  # over the estimate, still forwarded
    assert allocate(90_000, [*cameras, screen]) == [None, None, 0]  # under the low budget: the screen alone
    assert allocate(350_000, [*cameras, screen]) == [0, None, 0]  # the speaker's thin layer with what is left
    assert allocate(400_000, [*cameras, screen]) == [0, 0, 0]
    assert allocate(10_000_000, [*cameras, screen]) == [3, 3, 0]
    assert with_thin_level(VideoDemand(costs=COSTS, screen=True)).screen


def test_display_height_caps_the_layer() -> None:
    assert allocate(10_000_000, [demand(max_height=360)]) == [1]
    assert allocate(10_000_000, [demand(max_height=100)]) == [0]  # the lowest layer is always allowed
    # A 500-pixel tile: 360p would be upscaled, so the 720p layer is the one that fills it.
    assert allocate(10_000_000, [demand(max_height=500)]) == [2]


def test_stopped_layers_are_skipped() -> None:
    assert allocate(10_000_000, [demand(costs=(100_000.0, 500_000.0, None))]) == [1]
    assert allocate(10_000_000, [demand(costs=(None, None, None))]) == [None]
    assert layer_costs([0.0, 300_000.0, 1_000.0], measured=True, silent=[3.0, 0.0, 1.0])[0::2] == [None, None]
    costs = layer_costs([90_000.0, 100_000.0, 200_000.0], measured=True, silent=[0.0, 0.0, 0.0])
    assert costs == [97_200.0, 250_000.0, 750_000.0]
    assert layer_costs([0.0, 0.0], measured=False, silent=[9.0, 9.0]) == [64_000.0, 500_000.0]


def test_a_layer_counts_as_stopped_after_2_s_of_silence_or_1_s_while_another_layer_sends() -> None:
    """A machine-wide stall of a second silences every layer at once: before, one 0.5 s window under
    8 kbit/s made the thin layer look stopped, every video was paused and came back a keyframe later."""
    stall = layer_costs([4_000.0, 40_000.0, 100_000.0], measured=True, silent=[1.5, 1.5, 1.5])
    assert None not in stall
    assert layer_costs([4_000.0, 40_000.0, 100_000.0], measured=True, silent=[2.0, 2.0, 2.0]) == [None] * 3
    # The publisher dropped its top layer (CPU or uplink): the subscriber on it must not wait the full 2 s.
    assert layer_costs([90_000.0, 300_000.0, 700_000.0], measured=True, silent=[0.0, 0.0, 1.0])[2] is None
    assert layer_costs([90_000.0, 300_000.0, 700_000.0], measured=True, silent=[0.0, 0.0, 0.5])[2] is not None


def test_a_forwarder_knows_how_long_it_has_been_silent() -> None:
    forwarder = Forwarder(kind="video", request_keyframe=lambda: None)
    start = forwarder.created
    assert forwarder.silent_for(start + 1.0) == pytest.approx(1.0)  # nothing yet: silent since it was made
    forwarder.octets_in += 1200  # what on_rtp (Python or the C receive path) counts
    assert forwarder.silent_for(start + 1.5) == 0.0
    assert forwarder.silent_for(start + 2.5) == pytest.approx(1.0)


def test_hysteresis_goes_up_only_with_headroom_and_down_only_when_needed() -> None:
    assert with_hysteresis([1], keep=[2], up=[1]) == [1]  # fits, but without headroom: stay
    assert with_hysteresis([1], keep=[2], up=[2]) == [2]
    assert with_hysteresis([2], keep=[2], up=[1]) == [2]  # still fits at the full estimate: stay
    assert with_hysteresis([2], keep=[0], up=[0]) == [0]
    assert with_hysteresis([None], keep=[0], up=[None]) == [0]


def test_padding_fills_the_gap_to_the_ideal_layers_up_to_the_estimate() -> None:
    assert padding_rate(800_000, [demand()], [1]) == 300_000  # REMB may then grow towards the 720p layer
    assert padding_rate(10_000_000, [demand()], [1]) == 1_000_000  # never more than the ideal needs
    assert padding_rate(10_000_000, [demand()], [2]) == 0.0  # already ideal
    assert padding_rate(10_000_000, [demand(max_height=360)], [1]) == 0.0  # the tile needs no more
    assert padding_rate(400_000, [demand()], [0], audio_bps=2 * AUDIO_RESERVE) == 200_000


def test_audio_is_taken_out_of_a_transport_wide_estimate_once_and_never_out_of_a_video_only_remb() -> None:
    assert audio_reserve(3, covers_audio=True) == 3 * AUDIO_RESERVE
    assert audio_reserve(3, covers_audio=False) == 0.0
    # issue 17: REMB ~60 kbit/s, two microphones, thin video flowing. Subtracting the audio from the
    # video-only REMB left no padding at all, so REMB (at most 1.5x what arrives) could never grow.
    thin = with_thin_level(demand())
    remb = 60_000
    assert padding_rate(remb, [thin], [0], audio_bps=audio_reserve(2, covers_audio=False)) == remb - 40_000
    assert allocate(remb, [thin], audio_bps=audio_reserve(2, covers_audio=False)) == [0]


def test_the_wanted_bitrate_is_what_the_ideal_layers_need_plus_the_audio() -> None:
    # ...with the headroom an upgrade needs (probing aims at it)
    want = wanted_bitrate([demand(), demand(max_height=360)], audio_bps=100_000)
    assert want == pytest.approx((1_500_000 + 500_000 + 100_000) / UPGRADE_HEADROOM)
    assert wanted_bitrate([demand(costs=(100_000.0, None, None))]) == pytest.approx(100_000 / UPGRADE_HEADROOM)
    assert wanted_bitrate([]) == 0.0


def run_gate(estimates: list[float], *, start: int | None = 2, step: float = 0.5) -> list[int | None]:
    """Feed a LayerGate one video's allocations (as Subscriber.adapt does) for a sequence of estimates."""
    gate = LayerGate()
    level = start
    gate.choose(0.0, ["v"], [level], [level], [level])  # the video is known (it was started before)
    chosen = []
    for n, estimate in enumerate(estimates, start=1):
        keep = allocate(estimate, [demand()])
        up = allocate(estimate * UPGRADE_HEADROOM, [demand()])
        level = gate.choose(n * step, ["v"], [level], keep, up)[0]
        chosen.append(level)
    return chosen


def test_the_gate_goes_down_at_once_and_up_only_after_the_room_lasted() -> None:
    assert run_gate([1_000_000])[0] == 1  # 720p no longer fits: down at the next allocation
    assert run_gate([100_000])[0] == 0
    chosen = run_gate([1_000_000] + [3_000_000] * 12)
    assert chosen[0] == 1
    first_up = chosen.index(2)
    # up not before UPGRADE_AFTER_DOWN after the drop, and only after UPGRADE_HOLD of room
    assert (first_up + 1) * 0.5 >= 0.5 + UPGRADE_AFTER_DOWN
    assert chosen[first_up:] == [2] * (len(chosen) - first_up)


def test_an_estimate_wobbling_around_a_layer_does_not_flap() -> None:
    # 720p needs 1.5 Mbit/s (1.76 with the headroom): the estimate goes 1.7 <-> 1.9 every allocation
    chosen = run_gate([1_700_000, 1_900_000] * 20, start=1)
    assert set(chosen) == {1}  # never a full UPGRADE_HOLD of room in a row
    # around the 360p layer: dips below it pull the video down at once, and it climbs back at most once per
    # UPGRADE_AFTER_DOWN, however often the estimate comes back
    wobble = ([600_000] * 3 + [450_000]) * 10
    chosen = run_gate(wobble, start=1)
    switches = sum(1 for a, b in itertools.pairwise([1, *chosen]) if a != b)
    ups = sum(1 for a, b in itertools.pairwise([1, *chosen]) if (b or 0) > (a or 0))
    assert ups <= len(wobble) * 0.5 / UPGRADE_AFTER_DOWN + 1
    assert switches <= 2 * ups + 1


def test_an_upgrade_the_link_cannot_carry_is_retried_less_and_less_often() -> None:
    """A 300 kbit/s ``tc tbf`` link (browser run, transport-cc): each probe passed the bucket's burst and
    put the estimate at 450-690 kbit/s, 360p went up, overflowed the link and came down 0.5 s later, every
    ~5 s, a freeze each time. Modelled: the estimate says 600k while 180p flows, 250k once 360p does."""
    gate, level, ups, ups_at = LayerGate(), 0, 0, []
    gate.choose(0.0, ["v"], [level], [level], [level])
    up_since = None
    for n in range(1, 121):  # 60 s
        now = n * 0.5
        estimate = 250_000 if up_since is not None and now - up_since >= 0.5 else 600_000
        keep, up = allocate(estimate, [demand()]), allocate(estimate * UPGRADE_HEADROOM, [demand()])
        new = gate.choose(now, ["v"], [level], keep, up)[0]
        if (new or 0) > level:
            ups, up_since = ups + 1, now
            ups_at.append(now)
        elif new != level:
            up_since = None
        level = new or 0
    assert ups <= 6, ups_at  # was 14: one every UPGRADE_AFTER_DOWN + UPGRADE_HOLD
    # An upgrade that holds resets the wait: the next failure waits UPGRADE_AFTER_DOWN again.
    gate = LayerGate()
    gate.choose(0.0, ["v"], [0], [0], [0])
    assert gate.choose(1.0, ["v"], [0], [1], [1]) == [0]
    assert gate.choose(2.0, ["v"], [0], [1], [1]) == [1]  # up after UPGRADE_HOLD
    assert gate.choose(20.0, ["v"], [1], [0], [0]) == [0]  # down 18 s later: the upgrade had held
    assert gate.choose(20.0 + UPGRADE_AFTER_DOWN, ["v"], [0], [1], [1]) == [0]
    assert gate.choose(21.0 + UPGRADE_AFTER_DOWN, ["v"], [0], [1], [1]) == [1]


def test_a_new_video_starts_at_once_and_a_paused_one_resumes_after_the_hold() -> None:
    gate = LayerGate()
    assert gate.choose(0.0, ["a"], [None], [1], [1]) == [1]  # first seen: at once
    assert gate.choose(0.5, ["a"], [1], [None], [None]) == [None]  # paused
    assert gate.choose(10.0, ["a"], [None], [1], [1]) == [None]
    assert gate.choose(10.0 + UPGRADE_HOLD, ["a"], [None], [1], [1]) == [1]
    assert gate.choose(11.0 + UPGRADE_HOLD, ["b"], [None], [0], [0]) == [0]  # "a" left; "b" is new


def test_padding_flows_below_the_audio_reserve_where_it_is_the_only_way_up() -> None:
    """A subscriber at 60 kbit/s receiving one thin video (40 kbit/s) of two, with two microphones: padding
    brings what arrives to 75 % of the estimate (REMB, which counts no audio, grows at most to 1.5x that)."""
    thin = [with_thin_level(demand(speaker=True)), with_thin_level(demand())]
    assert padding_rate(60_000, thin, [0, None], audio_bps=2 * AUDIO_RESERVE) == pytest.approx(
        60_000 * GROWTH_SHARE - 40_000
    )
    assert padding_rate(1_000_000, thin, [0, None], audio_bps=2 * AUDIO_RESERVE) == pytest.approx(900_000 - 40_000)


def test_remb_drops_and_loss_pause_probing() -> None:
    est = BandwidthEstimate()
    est.on_remb(1_000_000, 0.0)
    est.on_remb(980_000, 1.0)
    assert not est.congested(1.0)
    est.on_remb(600_000, 2.0)
    assert est.congested(3.0) and not est.congested(20.0)
    est.on_loss(26, 20.0)  # 10 % in one report
    assert est.congested(20.0)


def test_bandwidth_estimate_follows_remb_and_cuts_on_heavy_loss() -> None:
    est = BandwidthEstimate()
    assert est.value(0.0) is None
    est.on_remb(1_000_000, 0.0)
    assert est.value(0.0) == 1_000_000
    for _ in range(10):
        est.on_loss(64, 1.0)  # 25 % lost
    value = est.value(1.0)
    assert value is not None and 850_000 < value < 900_000
    for _ in range(20):
        est.on_loss(0, 2.0)
    assert est.value(2.0) == 1_000_000


def packet(seq: int, ts: int, payload: bytes, ssrc: int) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload)


def test_a_layer_switch_waits_for_the_target_keyframe_without_freezing_the_current_layer() -> None:
    low_plis: list[int] = []
    high_plis: list[int] = []
    low = Forwarder(kind="video", request_keyframe=lambda: low_plis.append(1))
    high = Forwarder(kind="video", request_keyframe=lambda: high_plis.append(1))
    sent: list[bytes] = []
    d = make_downstream(sent)
    low.attach(d)
    low.on_rtp(packet(10, 1000, vp8_keyframe(320, 180), 1), VP8)
    assert low.frame_size == (320, 180)
    switched: list[Downstream] = []
    high.switch_on_keyframe(d, lambda x: (low.detach(x), switched.append(x)))
    assert high_plis  # the target layer is asked for a keyframe at once
    low.on_rtp(packet(11, 4000, DELTA, 1), VP8)
    high.on_rtp(packet(500, 77000, DELTA, 2), VP8)  # not a keyframe: the low layer keeps flowing
    assert len(sent) == 2 and not switched
    high.on_rtp(packet(501, 80000, vp8_keyframe(1280, 720), 2), VP8)
    assert switched == [d] and high.frame_size == (1280, 720)
    low.on_rtp(packet(12, 7000, DELTA, 1), VP8)  # detached: no longer forwarded
    high.on_rtp(packet(502, 83000, DELTA, 2), VP8)
    seqs = [struct.unpack("!H", p[2:4])[0] for p in sent]
    assert seqs == [101, 102, 103, 104]  # one continuous outgoing sequence across the switch
    assert sent[2].endswith(vp8_keyframe(1280, 720))
    assert d not in low.downstreams and not high.pending


def test_a_newer_choice_cancels_a_pending_switch() -> None:
    low = Forwarder(kind="video", request_keyframe=lambda: None)
    high = Forwarder(kind="video", request_keyframe=lambda: None)
    d = make_downstream([])
    low.attach(d)
    high.switch_on_keyframe(d, low.detach)
    high.cancel_switch(d)
    high.on_rtp(packet(1, 1, vp8_keyframe(640, 360), 2), VP8)
    assert d in low.downstreams and d not in high.downstreams


def test_probe_sends_padding_only_rtx_with_fresh_abs_send_time() -> None:
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    sent: list[bytes] = []
    d = make_downstream(sent)
    assert d.probe(3) == 0  # nothing forwarded yet
    fwd.attach(d)
    fwd.on_rtp(packet(10, 1000, vp8_keyframe(320, 180) + b"x" * 900, 1), VP8)
    count = len(sent)
    octets = d.probe(3)
    probes = sent[count:]
    assert len(probes) == 3 and octets == sum(len(p) for p in probes)
    for p in probes:
        b0, b1, _, _, ssrc = struct.unpack("!BBHII", p[:12])
        assert (b1 & 0x7F, ssrc) == (121, 0x11223344) and b0 & 0x10  # RTX, with the abs-send-time extension
        assert b0 & 0x20 and p[-1] == PROBE_PADDING  # padding only: no payload for the browser to assemble
        ext_len = 4 + 4 * struct.unpack("!H", p[14:16])[0]
        assert len(p) == 12 + ext_len + PROBE_PADDING
    assert d.probe_octets == octets


def test_vp8_keyframe_size_reads_the_frame_header_only_when_present() -> None:
    assert vp8_keyframe_size(vp8_keyframe(640, 360)) == (640, 360)
    assert vp8_keyframe_size(DELTA) is None
    assert vp8_keyframe_size(b"\x10\x00\x00\x00\x12\x34\x56" + b"\x00" * 8) is None  # encrypted: no start code
    assert vp8_keyframe_size(b"\x90") is None


def simulcast_slot(sub: Subscriber, publisher: str) -> tuple[Any, tuple[Forwarder, ...]]:
    """A ready video m-line of ``sub`` fed by ``publisher``'s three-layer VP8 camera, on its lowest layer."""
    slot = sub._new_slot("video")
    layers = tuple(Forwarder(kind="video", request_keyframe=lambda: None) for _ in range(3))
    for f, rate in zip(layers, (90_000.0, 450_000.0, 1_400_000.0), strict=True):
        f.bitrate = lambda now, rate=rate: rate  # type: ignore[method-assign]
    layers[0].temporal_layers = True  # VP8 with three temporal layers, as browsers send it
    track = PublishedTrack(publisher, "camera", "video", "camera", layers[-1], cast(Any, None), layers=layers)
    slot.downstream.send = lambda b: True
    slot.downstream.configure(pt_by_codec={"video/vp8": 120}, rtx_pt_by_pt={}, ext_ids=ExtensionIds())
    slot.downstream.ready = True
    slot.track = slot.attached = track
    slot.info = TrackInfo(mid=str(len(sub.slots)), participant=publisher, pc="camera", source="camera", kind="video")
    sub._select_layer(slot, 0)
    return slot, layers


@pytest.mark.asyncio
async def test_a_video_paused_for_bandwidth_is_not_reported_as_forwarded(media_config: Config) -> None:
    """The client must not take a video the allocator pauses for a stuck line (call.js checkSilentTracks)."""
    speaker = "a"
    sub = Subscriber(participant="s", config=media_config, speaker=lambda: speaker)
    changes: list[int] = []
    sub.on_forwarding_changed = lambda: changes.append(1)
    try:
        a, _ = simulcast_slot(sub, "a")
        b, b_layers = simulcast_slot(sub, "b")
        assert [t.participant for t in sub.forwarded()] == ["a", "b"]
        sub.estimate.on_remb(90_000, 0.0)  # under LOW_VIDEO_BUDGET: only the active speaker's video
        sub.adapt(1.0)
        assert b.target is None and [t.participant for t in sub.forwarded()] == ["a"] and changes == [1]
        sub.adapt(1.5)
        assert changes == [1]  # no change, no event
        assert sub.stalls(100.0, 0.0) == []
        for seq in range(5):  # b's camera keeps sending; nothing goes to this subscriber
            b_layers[-1].on_rtp(packet(seq, seq, DELTA, seq), VP8)
        assert sub.stalls(200.0, 0.0) == []  # a pause is not a stall
        sub.estimate.on_remb(3_000_000, 2.0)
        sub.estimate.decreased_at = -1e9
        sub.adapt(20.0)
        assert b.target is None  # room again, but a paused video resumes only once the room lasts (LayerGate)
        sub.adapt(20.5)
        assert b.target is None
        sub.adapt(21.0)
        assert [t.participant for t in sub.forwarded()] == ["a", "b"] and changes == [1, 1]
    finally:
        await sub.close()


def _chromium_remb(remb: float, incoming: float, seconds: float) -> float:
    """Chromium's next REMB while it sees no overuse (libwebrtc AimdRateControl, multiplicative increase):
    +8 % per second, never above 1.5x the bitrate arriving on the streams it measures + 10 kbit/s."""
    return min(remb * 1.08**seconds, 1.5 * incoming + 10_000)


def _video_arriving(sub: Subscriber) -> float:
    """Bit/s of forwarded video (a thin stream is its layer's base temporal layer) plus probe padding."""
    total = sub.padding
    for slot in sub.slots:
        if slot.kind == "video" and slot.forwarder is not None:
            rate = slot.forwarder.bitrate(0.0)
            total += rate * THIN_SHARE if slot.downstream.temporal_limit is not None else rate
    return total


@pytest.mark.asyncio
async def test_a_video_paused_by_a_low_first_estimate_comes_back_as_the_estimate_grows(
    media_config: Config,
) -> None:
    """The intermittent browser-test stall (docs/architecture.md): under CPU load a subscriber's REMB fell
    to 20-60 kbit/s, the allocator paused one of two cameras, and no padding was sent below the audio
    reserve, so REMB stayed at 1.5x the one thin video and the camera never came back.

    Chromium's REMB is modelled (its documented increase and cap); two microphones are forwarded too.
    """
    sub = Subscriber(participant="s", config=media_config, speaker=lambda: "a")
    try:
        a, _ = simulcast_slot(sub, "a")
        b, _ = simulcast_slot(sub, "b")
        for publisher in ("a", "b"):
            mic = sub._new_slot("audio")
            mic.attached = PublishedTrack(
                publisher, "camera", "audio", "microphone", Forwarder(kind="audio", request_keyframe=lambda: None), None
            )
        remb, now, resumed_at = 40_000.0, 0.0, None
        while now < 60.0 and resumed_at is None:
            sub.estimate.on_remb(remb, now)
            sub.adapt(now)
            if now == 0.0:
                assert b.target is None  # paused: under 150 kbit/s only the speaker's video
            elif b.target is not None:
                resumed_at = now
            remb = _chromium_remb(remb, _video_arriving(sub), 0.5)
            now += 0.5
        assert resumed_at is not None, f"b stayed paused; REMB {remb:.0f}, padding {sub.padding:.0f}"  # 19.5 s
        assert a.target is not None
    finally:
        await sub.close()


@pytest.mark.asyncio
async def test_subscriber_follows_remb_and_loss_from_its_browser_across_layers(media_config: Config) -> None:
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpReceiverInfo, RtcpRrPacket, pack_remb_fci

    sub = Subscriber(participant="s", config=media_config)
    try:
        slot, layers = simulcast_slot(sub, "p")
        assert slot.forwarder is layers[0] and slot.target == 0

        sub.adapt(0.0)  # no REMB yet: nothing changes
        assert slot.target == 0
        ssrc, _ = hooks.sender_ssrcs(slot.transceiver.sender)
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(3_000_000, [ssrc]))
        await slot.transceiver.sender._handle_rtcp_packet(remb)
        assert sub.estimate.remb == 3_000_000
        sub.adapt(1.0)
        assert slot.target == 2 and slot.forwarder is layers[0]  # switching: the low layer flows until...
        layers[2].on_rtp(packet(1, 1, vp8_keyframe(1280, 720), 3), VP8)
        assert slot.forwarder is layers[2] and slot.layer_switches == 1  # ...the high layer's keyframe

        sub.max_heights[("p", "camera")] = 360  # shown in a small tile: the 720p layer is more than it needs
        sub.adapt(2.0)
        assert slot.target == 1
        del sub.max_heights[("p", "camera")]

        report = RtcpReceiverInfo(
            ssrc=ssrc, fraction_lost=128, packets_lost=10, highest_sequence=1, jitter=0, lsr=0, dlsr=0
        )
        for _ in range(10):  # 50 % loss reported: the estimate is cut below the high layer
            await slot.transceiver.sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[report]))
        assert sub.estimate.loss > 0.4
        await slot.transceiver.sender._handle_rtcp_packet(
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(600_000, [ssrc]))
        )
        sub.adapt(3.0)
        assert slot.target == 0

        await slot.transceiver.sender._handle_rtcp_packet(
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(100_000, [ssrc]))
        )
        sub.adapt(4.0)
        assert slot.target == 0  # under 150 kbit/s the only (so the first) video keeps its lowest layer...
        assert slot.downstream.temporal_limit == 0  # ...at its base temporal layer only ("thin")
        await slot.transceiver.sender._handle_rtcp_packet(
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(160_000, [ssrc]))
        )
        sub.adapt(5.0)
        assert slot.downstream.temporal_limit == 0  # 160 kbit/s, still lossy: not enough to go back up
        await slot.transceiver.sender._handle_rtcp_packet(
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(400_000, [ssrc]))
        )
        sub.adapt(6.0)
        assert slot.downstream.temporal_limit == 0 and not slot.downstream.temporal_up  # lossy: nothing goes up
        clean = RtcpReceiverInfo(
            ssrc=ssrc, fraction_lost=0, packets_lost=10, highest_sequence=1, jitter=0, lsr=0, dlsr=0
        )
        for _ in range(15):
            await slot.transceiver.sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[clean]))
        sub.estimate.decreased_at = -1e9  # (REMB drops are stamped with the real clock) long ago
        sub.adapt(20.0)
        assert slot.downstream.temporal_limit == 0  # up only once the room lasts UPGRADE_HOLD
        sub.adapt(20.0 + UPGRADE_HOLD)
        assert slot.target == 0 and slot.downstream.temporal_up  # every temporal layer again from the next keyframe
    finally:
        await sub.close()
    assert all(slot.downstream not in f.downstreams for f in layers)


def feed_transport_cc(side: SendSideEstimator, *, now: float, packets: int = LOSS_WINDOW_MAX) -> None:
    """Packets sent and acknowledged without queuing: the send-side estimate is current, and its loss measured
    (a full loss window: probes wait for the first)."""
    for i in range(packets):
        side.on_packet_sent(seq=i, size=700, send_time=now - 2.1 + i * 0.01)  # 560 kbit/s acknowledged
    side.on_feedback(now=now, results=[(i, 50.0 + i * 0.01) for i in range(packets)])


@pytest.mark.asyncio
async def test_with_transport_cc_the_audio_is_set_aside_once_and_paced_probe_clusters_aim_at_the_wanted_layers(
    media_config: Config,
) -> None:
    sub = Subscriber(participant="s", config=media_config)
    sub._adapter.cancel()  # this test drives adapt() with its own clock
    try:
        slot, layers = simulcast_slot(sub, "p")
        sent: list[bytes] = []
        slot.direct_send = lambda b: sent.append(b) or True
        slot.downstream.send = slot.direct_send
        slot.downstream.configure(pt_by_codec={"video/vp8": 120}, rtx_pt_by_pt={120: 121}, ext_ids=ExtensionIds())
        layers[0].on_rtp(packet(1, 1, vp8_keyframe(320, 180), 1), VP8)
        assert slot.downstream.packets_sent == 1
        mic = sub._new_slot("audio")
        mic.attached = mic.track = PublishedTrack(
            "p", "microphone", "audio", "mic", Forwarder(kind="audio", request_keyframe=lambda: None), cast(Any, None)
        )

        side = SendSideEstimator(start_bps=640_000, min_bps=30_000, max_bps=10_000_000)
        sub.send_side = side
        feed_transport_cc(side, now=10.0)
        assert side.covers_audio and side.target_bps == 640_000
        sub.adapt(10.0)
        # 640 kbit/s covers the audio (50k) too: 360p (450k * 1.08) fits with headroom only if the audio is set aside
        # once (0.85 * 640k - 50k - 97k >= 486k - 97k)
        assert slot.target == 1
        assert sub.padding == 0.0  # transport-cc: probe clusters, not padding
        assert sub.wanted_bps == pytest.approx((1_400_000 * 1.08 + AUDIO_RESERVE) / UPGRADE_HEADROOM)

        sub._request_probes(10.0)
        assert sub._probing is not None
        await sub._probing
        assert sub.probing_cluster is None
        probes = [b for b in sent if b[1] & 0x7F == 121]
        assert len(probes) * (PROBE_PADDING + 12) >= 6_000  # at least one cluster of PROBE_MIN_BYTES
        sub._request_probes(10.1)
        assert sub._probing.done()  # one probe at a time: the next waits for this one's result
    finally:
        await sub.close()


def a_video_and_microphones(sub: Subscriber, microphones: Sequence[str]) -> None:
    """Give ``sub`` a sending 180p simulcast video from "p" and one attached microphone from each of ``microphones``."""
    slot, layers = simulcast_slot(sub, "p")
    slot.direct_send = lambda b: True
    slot.downstream.send = slot.direct_send
    slot.downstream.configure(pt_by_codec={"video/vp8": 120}, rtx_pt_by_pt={120: 121}, ext_ids=ExtensionIds())
    layers[0].on_rtp(packet(1, 1, vp8_keyframe(320, 180), 1), VP8)
    for who in microphones:
        mic = sub._new_slot("audio")
        forwarder = Forwarder(kind="audio", request_keyframe=lambda: None)
        mic.attached = mic.track = PublishedTrack(who, "microphone", "audio", "mic", forwarder, cast(Any, None))


@pytest.mark.asyncio
async def test_with_transport_cc_the_video_is_paced_from_what_the_estimate_leaves_after_the_audio(
    media_config: Config,
) -> None:
    """The pacer carries the video and its repairs, never the audio. A transport-cc estimate covers the audio: the
    100 kbit/s subscriber of tests/e2e/test_bandwidth_ui.py (two pooled microphones, ~100 kbit/s on the wire,
    target ~43 kbit/s) had its thin video and repairs paced at 1.5 x the whole target (64 kbit/s) and sent ~68
    kbit/s of them where REMB, whose estimate counts only the video, paced at PACE_MIN (40k): its link stayed
    more overrun and the page's room socket starved more often (rejoins every ~12 s; browser runs,
    docs/benchmarks.md §2b)."""
    sub = Subscriber(participant="s", config=media_config)
    sub._adapter.cancel()  # this test drives adapt() with its own clock
    try:
        a_video_and_microphones(sub, ("q", "r"))
        side = SendSideEstimator(start_bps=640_000, min_bps=30_000, max_bps=10_000_000)
        sub.send_side = side
        feed_transport_cc(side, now=10.0)
        side._target = 43_000.0  # what the browser runs' overrun 100 kbit/s link gave
        assert side.covers_audio
        sub.adapt(10.0)
        assert sub.pacer.active and sub.pacer.rate * 8 == PACE_MIN  # before: 1.5 x 43k = 64.5k
        side._target = 300_000.0  # two microphones' reserve out of 300k: 200k of video, paced at 1.5 x that
        sub.adapt(10.5)
        assert sub.pacer.rate * 8 == pytest.approx((300_000 - 2 * AUDIO_RESERVE) * PACE_FACTOR)  # before: 450k
    finally:
        await sub.close()


def test_a_remb_link_is_overrun_while_fresh_reports_lose_over_a_tenth_of_its_video_or_of_its_audio() -> None:
    e = BandwidthEstimate()
    assert not e.overrun(10.0)
    for t in (10.0, 11.0, 12.0):
        e.on_audio_loss(64, t)  # 25 %
        e.on_loss(0, t)
    assert e.overrun(12.0)
    assert not e.overrun(12.0 + HELD_REPORT_AGE + 0.1)  # stale
    e = BandwidthEstimate()
    for t in (10.0, 11.0, 12.0):
        e.on_loss(64, t)
    assert e.overrun(12.0)
    e = BandwidthEstimate()
    for t in (10.0, 11.0, 12.0):
        e.on_audio_loss(13, t)  # 5 %: random loss on a link with room
    assert not e.overrun(12.0)


@pytest.mark.asyncio
async def test_a_link_that_carries_one_microphone_gets_one_with_transport_cc_or_remb(
    media_config: Config,
) -> None:
    """The 100 kbit/s page of tests/e2e/test_bandwidth_ui.py: three microphones (~45 kbit/s each on the wire) and
    a thin video on a link whose transport-wide estimate is ~50 kbit/s: after DOWN_AFTER the room is asked to
    send one microphone (audio_lines.py). A REMB, which does not measure the audio, says one fewer while the
    receiver reports lose over 10 % and it leaves no room for the video."""
    sub = Subscriber(participant="s", config=media_config)
    sub._adapter.cancel()
    changes: list[int | None] = []
    sub.on_audio_lines_changed = lambda: changes.append(sub.audio_lines.limit)
    try:
        a_video_and_microphones(sub, ("q", "r", "t"))
        sub.estimate.on_remb(50_000, 1.0)
        sub.adapt(1.0)
        sub.adapt(1.0 + DOWN_AFTER + 1)
        assert changes == [] and sub.audio_lines.limit is None  # REMB, no loss
        for t in (4.0, 5.0, 6.0):
            sub.estimate.on_loss(0, t)  # the video's reports: what RTX repaired counts as received
            sub.estimate.on_audio_loss(40, t)  # 16 % of the audio lost
            sub.estimate.on_remb(20_000, t)
            sub.adapt(t)
        sub.adapt(6.0 + DOWN_AFTER)
        assert changes == [2]  # one fewer
        sub.audio_lines.limit = None  # (what the room would pool next is another test's)
        changes.clear()
        side = SendSideEstimator(start_bps=640_000, min_bps=30_000, max_bps=10_000_000)
        sub.send_side = side
        feed_transport_cc(side, now=10.0)
        side._target = 50_000.0
        assert side.covers_audio
        sub.adapt(10.0)
        assert changes == []
        sub.adapt(10.0 + DOWN_AFTER)
        assert changes == [1]
    finally:
        await sub.close()


@pytest.mark.asyncio
async def test_only_a_subscriber_on_an_overrun_link_gets_its_repairs_limited(media_config: Config) -> None:
    sub = Subscriber(participant="s", config=media_config)
    sub._adapter.cancel()
    try:
        assert sub._repair_budget(10.0) is None  # REMB, no loss reported
        side = SendSideEstimator(start_bps=640_000, min_bps=30_000, max_bps=10_000_000)
        sub.send_side = side
        feed_transport_cc(side, now=10.0)
        assert side.covers_audio and not side.overrun(10.0)
        assert sub._repair_budget(10.0) is None  # a link that carries what is sent
        for i in range(300, 400):  # the next second: 40 % of it lost
            side.on_packet_sent(seq=i, size=700, send_time=10.0 + (i - 300) * 0.01)
        side.on_feedback(now=11.1, results=[(i, None if i % 5 < 2 else 61.0 + i * 0.01) for i in range(300, 400)])
        assert side.overrun(11.1)
        sub.pacer.set_rate(PACE_MIN)
        assert sub._repair_budget(11.1) == int(PACE_MIN / 8 * REPAIR_QUEUE_MAX)
        sub.pacer.set_rate(None)
        assert sub._repair_budget(11.1) == int(side.target_bps / 8 * REPAIR_QUEUE_MAX)  # not paced: the estimate
    finally:
        await sub.close()


@pytest.mark.asyncio
async def test_a_remb_subscriber_whose_receiver_reports_lose_over_a_tenth_gets_its_repairs_limited(
    media_config: Config,
) -> None:
    """REMB, the overrun 100 kbit/s page of tests/e2e/test_bandwidth_ui.py: 674 kbit of repairs in one 0.5 s
    interval and no camera decoded for 60 s (docs/benchmarks.md §2b). Its receiver reports tell the overrun."""
    sub = Subscriber(participant="s", config=media_config)
    sub._adapter.cancel()
    try:
        sub.estimate.on_loss(13, 10.0)  # 5 % lost: random loss on a link with room
        sub.estimate.on_loss(13, 11.0)
        assert sub._repair_budget(11.0) is None
        for t in (12.0, 13.0, 14.0):
            sub.estimate.on_loss(102, t)  # 40 % lost
        assert sub.estimate.overrun(14.0)
        assert sub._repair_budget(14.0) == int(START_BPS / 8 * REPAIR_QUEUE_MAX)  # no REMB yet: the start rate
        sub.estimate.on_remb(30_000, 14.0)
        assert sub._repair_budget(14.0) == int(sub.estimate.value(14.0) / 8 * REPAIR_QUEUE_MAX)
        sub.pacer.set_rate(PACE_MIN)
        assert sub._repair_budget(14.0) == int(PACE_MIN / 8 * REPAIR_QUEUE_MAX)
        assert sub._repair_budget(14.0 + HELD_REPORT_AGE + 1) is None  # no fresh report: nothing known
    finally:
        await sub.close()


@pytest.mark.asyncio
async def test_probe_clusters_go_out_even_when_every_video_is_paused_for_bandwidth(media_config: Config) -> None:
    """With every video paused only audio is acknowledged, which caps the send-side estimate: probing on the
    paused stream's m-line is what lets it climb back (a Chromium subscriber stayed paused for good without)."""
    sub = Subscriber(participant="s", config=media_config)
    sub._adapter.cancel()
    try:
        slot, layers = simulcast_slot(sub, "p")
        sent: list[bytes] = []
        slot.direct_send = lambda b: sent.append(b) or True
        slot.downstream.send = slot.direct_send
        slot.downstream.configure(pt_by_codec={"video/vp8": 120}, rtx_pt_by_pt={120: 121}, ext_ids=ExtensionIds())
        layers[0].on_rtp(packet(1, 1, vp8_keyframe(320, 180), 1), VP8)
        sub._select_layer(slot, None)
        assert slot.forwarder is None and slot.paused_for_bandwidth
        side = SendSideEstimator(start_bps=640_000, min_bps=30_000, max_bps=10_000_000)
        sub.send_side = side
        feed_transport_cc(side, now=10.0)
        sub.wanted_bps = 1_500_000
        sub._request_probes(10.0)
        assert sub._probing is not None
        await sub._probing
        assert [b for b in sent if b[1] & 0x7F == 121]
    finally:
        await sub.close()


@pytest.mark.asyncio
async def test_a_subscriber_near_60_kbit_with_two_microphones_pads_so_its_remb_can_climb(media_config: Config) -> None:
    """Issue 17: after a tc tbf limit was removed the REMB stayed near 60 kbit/s for minutes (no padding)."""
    sub = Subscriber(participant="s", config=media_config)
    sub._adapter.cancel()  # this test drives adapt() with its own clock
    try:
        slot, _ = simulcast_slot(sub, "p")
        for who in ("p", "q"):
            mic = sub._new_slot("audio")
            forwarder = Forwarder(kind="audio", request_keyframe=lambda: None)
            mic.attached = mic.track = PublishedTrack(who, "microphone", "audio", "mic", forwarder, cast(Any, None))
        sub.estimate.on_remb(60_000, 0.0)
        sub.estimate.decreased_at = -1e9
        sub.adapt(100.0)
        assert slot.target == 0 and slot.downstream.temporal_limit == 0  # the thin level (~39 kbit/s) fits
        # Padding up to what REMB needs to keep growing (GROWTH_SHARE of it; the two microphones' reserve, which
        # the link carries beside it, would leave none): it was 0 before.
        assert sub.padding == pytest.approx(60_000 * GROWTH_SHARE - 90_000 * 1.08 * 0.4)
        assert 1.5 * (sub.padding + 90_000 * 1.08 * 0.4) > 60_000 * 1.08  # REMB can grow at its full 8 %/s
        assert sub.wanted_bps == pytest.approx(1_400_000 * 1.08 / UPGRADE_HEADROOM)  # REMB: no audio in it
    finally:
        await sub.close()


def test_a_recording_taps_the_highest_layer_the_publisher_sends() -> None:
    layers = tuple(Forwarder(kind="video", request_keyframe=lambda: None) for _ in range(3))
    track = PublishedTrack("p", "camera", "video", "camera", layers[-1], cast(Any, None), layers=layers)
    layers[0].bitrate = lambda now: 90_000.0  # type: ignore[method-assign]
    layers[1].bitrate = lambda now: 400_000.0  # type: ignore[method-assign]
    layers[2].bitrate = lambda now: 0.0  # type: ignore[method-assign]  # held back by the publisher
    assert track.recording_layer() is layers[1]
    single = Forwarder(kind="video", request_keyframe=lambda: None)
    assert PublishedTrack("p", "camera", "video", "camera", single, cast(Any, None)).recording_layer() is single


def test_retransmissions_are_doubled_only_with_room_and_spaced_by_the_round_trip() -> None:
    assert retransmit_policy(2_000_000, 0.05, None, min_interval=0.1) == (2, 0.1)  # random loss, spare capacity
    assert retransmit_policy(90_000, 0.05, None, min_interval=0.1)[0] == 1  # congestion loss on a slow link
    assert retransmit_policy(DOUBLE_RETRANSMIT_MIN, 0.01, None, min_interval=0.1)[0] == 1  # little loss
    assert retransmit_policy(None, 0.5, None, min_interval=0.1)[0] == 1  # no estimate yet
    assert retransmit_policy(1e6, 0.0, 0.5, min_interval=0.1)[1] == pytest.approx(0.6)  # queueing: wait a round trip
    assert retransmit_policy(1e6, 0.0, 0.02, min_interval=0.1)[1] == 0.1
    assert retransmit_policy(1e6, 0.0, 5.0, min_interval=0.1)[1] == RETRANSMIT_MAX_INTERVAL


def test_with_a_send_side_estimate_the_delay_tells_whether_loss_leaves_room_for_doubled_repairs() -> None:
    # A lossy subscriber of one 360p video: transport-cc grows its estimate only as far as it wants (~400k).
    assert retransmit_policy(400_000, 0.05, 0.05, min_interval=0.1)[0] == 1  # the estimate alone: no room
    assert retransmit_policy(400_000, 0.05, 0.05, min_interval=0.1, room=True)[0] == 2  # no queue building
    assert retransmit_policy(2_000_000, 0.05, 0.05, min_interval=0.1, room=False)[0] == 1  # a full queue


def test_repairs_are_limited_only_on_an_overrun_link_to_what_keeps_the_queue_in_front_of_them_short() -> None:
    assert repair_budget(False, 30_000, 40_000) is None  # not overrun: as many as were NACKed
    assert repair_budget(True, 0, None) is None  # nothing to go by
    assert repair_budget(True, 0, 40_000) == int(40_000 / 8 * REPAIR_QUEUE_MAX)  # 2.5 kB at 40 kbit/s
    assert repair_budget(True, 2_000, 40_000) == 500
    assert repair_budget(True, 24_000, 40_000) == 0  # a full pacer queue: none


def test_a_remb_drop_is_bounded_by_the_video_that_kept_arriving_without_loss() -> None:
    """Three starved browsers' REMB fell to 15-18 kbit/s at the same instant (browser run, load ~26) and
    every camera paused; their receiver reports said nothing was lost."""
    est = BandwidthEstimate()
    est.on_remb(900_000, 0.0)
    for step in range(5):  # 540 kbit/s of video sent for 2 s, receiver reports without loss
        est.on_sent(540_000, step * 0.5)
        est.on_loss(0, step * 0.5)
    est.on_remb(18_000, 2.0)
    assert est.value(2.0) == 540_000  # held: that much demonstrably arrived
    assert allocate(est.value(2.0) or 0.0, [demand()]) == [1]  # 360p kept (it was 180p-only at 18k)
    assert est.value(4.6) == 18_000  # no receiver report for 2.6 s: nothing demonstrated
    lossy = BandwidthEstimate()
    lossy.on_remb(900_000, 0.0)
    for step in range(5):
        lossy.on_sent(540_000, step * 0.5)
        lossy.on_loss(26, step * 0.5)  # 10 % lost: a full queue, the drop is real
    lossy.on_remb(300_000, 2.0)
    assert lossy.value(2.0) == 300_000
