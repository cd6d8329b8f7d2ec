"""Packet-level fan-out of one published track to its subscribers.

A :class:`Forwarder` receives every (decrypted, RTX-unwrapped) RTP packet of
one publisher track and writes a rewritten copy to each attached
:class:`Downstream` (one per subscriber stream): SSRC, payload type (mapped
by codec), sequence number and timestamp (offsets that keep the subscriber's
stream continuous across publisher switches), and header extensions (the
subscriber's negotiated IDs; ``mid`` is dropped because the subscriber
demultiplexes by the SSRC we announced). Nothing is decoded.

Everything here is synchronous and allocation-light: it runs once per packet
per subscriber. With the C fast path (``native/sfu_native``, loaded by
``aiortc_hooks.NATIVE``) :class:`Downstream`'s hot fields live in the C base
class ``DownstreamCore`` and ``Fanout`` runs the steady state of
:meth:`Downstream.forward` (header, VP8 picture-ID deltas, NACK history,
send, counters, SR batching) for all downstreams of a packet in one call;
every other state (rebase, keyframe gating, thinning, not ready, unknown
codec) still goes through :meth:`Downstream.forward`, the reference.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from .aiortc_hooks import NATIVE
from .rtputil import (
    RTP_HEADER,
    U16,
    codec_key,
    is_keyframe_start,
    one_byte_extensions,
    rewrite_vp8_picture_ids,
    rtp_header_len,
    vp8_descriptor_ids,
    vp8_keyframe_size,
    vp8_picture_ids,
    vp8_temporal_id,
)

HISTORY_SIZE = 1024  # packets kept per subscriber stream for NACK (~1 s of 720p)
_HISTORY_MASK = HISTORY_SIZE - 1
SR_BATCH = 16  # forwarded packets per update of the sender's RTCP SR counters
KEYFRAME_REQUEST_INTERVAL = 0.5  # at most one PLI per publisher track per this many seconds, but for a stream starting
RETRANSMIT_INTERVAL = 0.1  # a NACKed packet is resent at most once per this many seconds (or per RTT, if longer)
MAX_RETRANSMITS = 4  # times one packet is resent at most (a browser NACKs it up to 10 times)
RETRANSMIT_MEMORY = 3.0  # seconds a resent packet's count is remembered
PROBE_PADDING = 255  # bytes of RTP padding per probe packet (the most one packet can carry)
_PADDING = bytes(PROBE_PADDING - 1) + bytes([PROBE_PADDING])
TEMPORAL_DROP_MEMORY = 512  # dropped packets remembered to number a late (repaired) packet between them
RATE_WINDOW = 0.5  # seconds between two samples of a forwarder's incoming bitrate
HOLD_SPAN = 0.1  # seconds of video a stream not yet connected holds (from its keyframe) before it gives up
HOLD_PACKETS = 256  # ...and at most this many packets
_NTP_EPOCH = 2208988800
_TRANSPORT_SEQ_SLOT = b"\x00\x00"  # transport-wide sequence number, filled in when the packet is sent
_pack = RTP_HEADER.pack
_join = b"".join  # one allocation per copy (header + ext + payload), not two

Sink = Callable[[RtpPacket, RTCRtpCodecParameters], None]
"""Gets every publisher packet, unmodified, synchronously (e.g. a recorder): must be cheap, never raise
and never modify the packet."""


@dataclass(frozen=True)
class ExtensionIds:
    """Header extension IDs the subscriber negotiated (0 = not negotiated)."""

    audio_level: int = 0
    abs_send_time: int = 0
    transport_cc: int = 0
    """transport-wide-cc: every packet gets a reserved element first in its extension block (two zero bytes)
    that the connection's send path fills with the transport-wide sequence number (aiortc_hooks.TransportSequence)."""


if TYPE_CHECKING:
    _DownstreamBase = object
else:
    # With the C fast path the hot fields live in a C struct (plain attributes for Python) that Fanout reads directly.
    _DownstreamBase = getattr(NATIVE, "DownstreamCore", object)


class Downstream(_DownstreamBase):
    """One subscriber stream: the rewriting state for one outgoing SSRC.

    The same Downstream survives publisher switches (a reused transceiver):
    :meth:`rebase` makes the next forwarded packet continue the outgoing
    sequence/timestamp space. Video restarts only on a keyframe.
    """

    def __init__(
        self,
        *,
        kind: str,
        ssrc: int,
        rtx_ssrc: int,
        send: Callable[[bytes], bool],
        on_sent: Callable[[int, int, int], None] | None = None,
        initial_sequence: int = 0,
        initial_timestamp: int = 0,
    ) -> None:
        self.kind = kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.send = send
        self.on_sent = on_sent
        self._unreported_octets = 0
        self._unreported_packets = 0
        self.pt_by_codec: dict[str, int] = {}
        self.rtx_pt_by_pt: dict[int, int] = {}
        self.ext_ids = ExtensionIds()
        self.ext_key = (0, 0, 0)
        # NACK history: a ring indexed by sequence number & mask; two parallel
        # lists so storing a packet allocates nothing.
        self.history_seq: list[int] = [-1] * HISTORY_SIZE
        self.history: list[bytes] = [b""] * HISTORY_SIZE
        self._retransmitted: dict[int, tuple[float, int]] = {}  # seq -> (last resent at, times resent)
        self.last_seq = initial_sequence & 0xFFFF
        self.last_ts = initial_timestamp & 0xFFFFFFFF
        self.last_time = time.monotonic()
        self.rtx_seq = (initial_sequence + 0x4000) & 0xFFFF
        self.seq_offset = 0
        self.ts_offset = 0
        self.needs_rebase = True
        self.waiting_keyframe = kind == "video"
        self.vp8_deltas: tuple[int, int] | None = None
        """(picture ID, TL0PICIDX) deltas that keep VP8 picture numbering continuous across source switches."""
        # Temporal thinning (VP8 temporal layers): see set_temporal_limit.
        self.temporal_limit: int | None = None
        self.temporal_up = False  # raising the limit (to _temporal_target) at the next keyframe
        self._temporal_target: int | None = None
        self._thinning = False  # hot-path flag: a limit is set, or dropped packets still shift the numbering
        self._last_in_seq = -1
        self._seq_shift = 0  # packets dropped since the last rebase
        self._pid_shift = 0  # pictures dropped since the last rebase
        self._dropped_seqs: deque[int] = deque(maxlen=TEMPORAL_DROP_MEMORY)
        self._dropped_pids: deque[int] = deque(maxlen=TEMPORAL_DROP_MEMORY)
        self.packets_thinned = 0
        self.ready = False  # set once the subscriber's transport is connected
        self.held: list[bytes] | None = None
        """Video rewritten before the transport was ready, sent when it is (:meth:`hold`); None: not holding."""
        self.held_since = 0.0
        self.request_keyframe: Callable[[], None] = lambda: None
        self.missing_codec: str | None = None
        self.packets_sent = 0
        self.packets_dropped = 0
        self.packets_retransmitted = 0
        self.octets_retransmitted = 0  # RTX repairs (each copy), for the MEDIA_BWE_TRACE split of what is sent
        self.probe_octets = 0

    def configure(self, *, pt_by_codec: dict[str, int], rtx_pt_by_pt: dict[int, int], ext_ids: ExtensionIds) -> None:
        """Apply the subscriber's negotiated payload types and extension IDs."""
        self.pt_by_codec = pt_by_codec
        self.rtx_pt_by_pt = rtx_pt_by_pt
        self.ext_ids = ext_ids
        self.ext_key = (ext_ids.audio_level, ext_ids.abs_send_time, ext_ids.transport_cc)

    def rebase(self) -> None:
        """Start a new source on this stream (keyframe-gated for video)."""
        self.needs_rebase = True
        self.waiting_keyframe = self.kind == "video"
        self.drop_held()

    def hold(self) -> None:
        """Until the transport is ready, keep this video stream's packets (from its keyframe on) instead of
        dropping them; :meth:`send_held` sends them once it is.

        A subscriber asks its publishers for keyframes when it applies the answer, not when ICE and DTLS are
        done (30-120 ms later): the keyframe is then held here, at most :data:`HOLD_SPAN` seconds of video
        (a stream started that much behind its source for a moment), rather than asked for after the
        connection (the publisher's next frame, ~40-60 ms more before the first picture; docs/benchmarks.md §4).
        """
        if not self.ready and self.kind == "video":
            self.held = []

    def drop_held(self) -> None:
        """Forget the packets held so far (a new source starts; they belong to the old one), still holding."""
        if self.held:
            self.held = []

    def send_held(self) -> bool:
        """Send the packets held until the transport got ready; True if there were any (the stream has started
        on a keyframe), False if the stream still needs one."""
        held, self.held = self.held, None
        if not held:
            return False
        for data in held:
            if self.send(data):
                self.packets_sent += 1
            else:
                self.packets_dropped += 1
        return True

    def _keep(self, data: bytes, now: float) -> bool:
        """Hold ``data`` (the transport is not ready); False once too much is held: nothing is then, and the
        stream waits for a keyframe asked for when the transport is ready (Subscriber._make_ready)."""
        held = self.held
        if held is None:
            return False
        if not held:
            self.held_since = now
        elif now - self.held_since > HOLD_SPAN or len(held) >= HOLD_PACKETS:
            self.held = None
            self.rebase()
            return False
        held.append(data)
        return True

    def forward(
        self,
        key: str,
        marker: int,
        seq: int,
        ts: int,
        ext: bytes,
        payload: bytes,
        keyframe: bool,
        clock_rate: int,
        now: float,
    ) -> None:
        """Rewrite and send one packet (hot path)."""
        if not self.ready and self.held is None:
            return
        pt = self.pt_by_codec.get(key)
        if pt is None:
            self.missing_codec = key
            return
        if self.needs_rebase:
            if self.waiting_keyframe and not keyframe:
                self.request_keyframe()
                return
            self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
            ticks = max(1, int((now - self.last_time) * clock_rate))
            self.ts_offset = (self.last_ts + ticks - ts) & 0xFFFFFFFF
            self.vp8_deltas = self._vp8_continuation(payload) if key == "video/vp8" else None
            self.needs_rebase = self.waiting_keyframe = False
            self._restart_thinning(seq)
            self._thinning = self.temporal_limit is not None
        if self._thinning and key == "video/vp8":  # (H.264 from browsers has no temporal layers)
            shifts = self._thin(seq, payload, keyframe)
            if shifts is None:
                return
            seq_shift, pid_shift = shifts
            seq = (seq - seq_shift) & 0xFFFF
            if pid_shift or self.vp8_deltas is not None:
                pid_delta, tl0_delta = self.vp8_deltas or (0, 0)
                payload = rewrite_vp8_picture_ids(payload, pid_delta - pid_shift, tl0_delta)
        elif self.vp8_deltas is not None:
            payload = rewrite_vp8_picture_ids(payload, *self.vp8_deltas)
        oseq = (seq + self.seq_offset) & 0xFFFF
        ots = (ts + self.ts_offset) & 0xFFFFFFFF
        data = _join((_pack(0x90 if ext else 0x80, (marker << 7) | pt, oseq, ots, self.ssrc), ext, payload))
        slot = oseq & _HISTORY_MASK
        self.history_seq[slot] = oseq
        self.history[slot] = data
        if not self.ready:  # holding (see hold)
            if not self._keep(data, now):
                return
        elif self.send(data):
            self.packets_sent += 1
        else:
            self.packets_dropped += 1  # not connected yet, or the subscriber is not draining
        if ((oseq - self.last_seq) & 0xFFFF) < 0x8000:
            self.last_seq = oseq
            self.last_ts = ots
            self.last_time = now
        # SR bookkeeping is batched: pushing it into the aiortc sender costs
        # ~1 us, and SRs only go out about once a second.
        self._unreported_octets += len(payload)
        self._unreported_packets += 1
        if self._unreported_packets >= SR_BATCH and self.on_sent is not None:
            self.on_sent(ots, self._unreported_octets, self._unreported_packets)
            self._unreported_octets = self._unreported_packets = 0

    def set_temporal_limit(self, limit: int | None) -> None:
        """Forward only VP8 temporal layers up to ``limit`` (None: all of them).

        Going down applies at once: no frame of a lower temporal layer refers
        to a higher one. The dropped packets and pictures are taken out of the
        outgoing sequence numbers and picture IDs, so the receiver sees no gap
        to NACK. Going up waits for a keyframe (requested now): the frames the
        restored layers refer to were never sent. Streams without temporal
        layers (H.264, VP8 without TID) are not affected.
        """
        current = self.temporal_limit
        if limit is not None and (current is None or limit <= current):
            self.temporal_limit = limit
            self.temporal_up = False
            self._thinning = True
        elif current is not None and (not self.temporal_up or limit != self._temporal_target):
            self._temporal_target = limit
            self.temporal_up = True
            self.request_keyframe()

    def _restart_thinning(self, seq: int) -> None:
        """Forget dropped packets: the numbering is continuous again from ``seq`` (a rebase, or folded back)."""
        self._seq_shift = self._pid_shift = 0
        self._dropped_seqs.clear()
        self._dropped_pids.clear()
        self._last_in_seq = seq

    def _thin(self, seq: int, payload: bytes, keyframe: bool) -> tuple[int, int] | None:
        """(sequence shift, picture ID shift) for this packet, or None to drop it (temporal thinning)."""
        if self.temporal_up and keyframe and self._temporal_target is not None:
            self.temporal_limit = self._temporal_target
            self.temporal_up = False
        elif self.temporal_up:
            if keyframe:  # every layer again from here: fold the shifts into the offsets, back to the plain path
                self.seq_offset = (self.seq_offset - self._seq_shift) & 0xFFFF
                pid_delta, tl0_delta = self.vp8_deltas or (0, 0)
                pid_delta = (pid_delta - self._pid_shift) % 0x8000
                self.vp8_deltas = (pid_delta, tl0_delta) if pid_delta or tl0_delta else None
                self._restart_thinning(seq)
                self.temporal_limit = None
                self.temporal_up = self._thinning = False
                return 0, 0
            self.request_keyframe()
        newest = 0 < (seq - self._last_in_seq) & 0xFFFF < 0x8000
        limit = self.temporal_limit
        pid, _, _, tid = vp8_descriptor_ids(payload)
        if limit is not None and tid > limit:
            if newest:
                self._last_in_seq = seq
                self._dropped_seqs.append(seq)
                self._seq_shift += 1
                if pid >= 0 and (not self._dropped_pids or self._dropped_pids[-1] != pid):
                    self._dropped_pids.append(pid)
                    self._pid_shift += 1
            self.packets_thinned += 1
            return None
        if newest:
            self._last_in_seq = seq
            return self._seq_shift, self._pid_shift
        # A late packet (repaired upstream): only the drops after it are not yet in its numbering.
        later = sum(1 for s in self._dropped_seqs if 0 < (s - seq) & 0xFFFF < 0x8000)
        if later == len(self._dropped_seqs) == TEMPORAL_DROP_MEMORY:
            return None  # older than what we remember: its number cannot be told
        later_pids = sum(1 for p in self._dropped_pids if pid >= 0 and 0 < (p - pid) & 0x7FFF < 0x4000)
        return self._seq_shift - later, self._pid_shift - later_pids

    def _vp8_continuation(self, payload: bytes) -> tuple[int, int] | None:
        """Deltas that make this new source's first picture follow the last one this stream sent.

        Every simulcast layer (and every publisher) numbers its VP8 pictures on
        its own; without this a layer switch makes picture IDs and TL0PICIDX
        jump, often backwards. None: nothing sent yet, or the numbers already follow.
        """
        last = self.last_seq
        slot = last & _HISTORY_MASK
        if self.history_seq[slot] != last:
            return None
        data = self.history[slot]
        if data[1] & 0x7F != self.pt_by_codec.get("video/vp8"):
            return None  # the previous source was another codec: a keyframe restarts the numbering anyway
        header_len = rtp_header_len(data)
        last_pid, _, last_tl0 = vp8_picture_ids(data[header_len:])
        pid, modulus, tl0 = vp8_picture_ids(payload)
        pid_delta = (last_pid + 1 - pid) % modulus if last_pid >= 0 and pid >= 0 else 0
        tl0_delta = (last_tl0 + 1 - tl0) & 0xFF if last_tl0 >= 0 and tl0 >= 0 else 0
        return (pid_delta, tl0_delta) if pid_delta or tl0_delta else None

    def release(self) -> None:
        """Drop the NACK history now (the stream is gone for good; nothing is resent after this).

        A closed subscriber's Downstream is only freed by Python's cyclic garbage
        collector (aiortc's peer connection objects are reference cycles), whose
        full collections can be minutes apart: without this, the ~1 MB history of
        every departed video stream waited for it, and the malloc heap grew to
        that high-water mark for good (the soak's one-off RSS step).
        """
        self.history_seq = [-1] * HISTORY_SIZE
        self.history = [b""] * HISTORY_SIZE
        self._retransmitted.clear()
        self.ready = False
        self.held = None

    def probe(self, count: int) -> int:
        """Send ``count`` padding-only RTX packets (a bandwidth probe); returns the bytes sent.

        Each carries a fresh abs-send-time so the subscriber's receive-side
        estimator (REMB) can measure the burst, and :data:`PROBE_PADDING` bytes
        of RTP padding and nothing else: the browser's RTX receiver drops a
        packet too short to hold an original sequence number before it
        reaches the video receiver. (Copies of forwarded packets, the other
        way to pad, are seen by the packet buffer; old ones can be assembled
        again as frames, and they coincided with decoding stalls.) Nothing is
        sent without a negotiated RTX payload type or before a packet was
        forwarded.
        """
        if not self.ready:
            return 0
        last = self.last_seq
        slot = last & _HISTORY_MASK
        if self.history_seq[slot] != last:
            return 0
        data = self.history[slot]
        rtx_pt = self.rtx_pt_by_pt.get(data[1] & 0x7F)
        if rtx_pt is None:
            return 0
        ts = int.from_bytes(data[4:8], "big")
        abs_send_time_id = self.ext_ids.abs_send_time
        transport_cc_id = self.ext_ids.transport_cc
        padding = _PADDING
        sent = 0
        for _ in range(count):
            elements = [(transport_cc_id, _TRANSPORT_SEQ_SLOT)] if transport_cc_id else []
            if abs_send_time_id:
                ast = int((time.time() + _NTP_EPOCH) * 262144) & 0xFFFFFF
                elements.append((abs_send_time_id, ast.to_bytes(3, "big")))
            ext = one_byte_extensions(elements)
            packet = _pack(0xB0 if ext else 0xA0, rtx_pt, self.rtx_seq, ts, self.rtx_ssrc) + ext + padding
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            if not self.send(packet):
                break
            sent += len(packet)
        self.probe_octets += sent
        return sent

    def retransmit(
        self,
        lost: list[int],
        now: float | None = None,
        *,
        copies: int = 1,
        interval: float = RETRANSMIT_INTERVAL,
        max_bytes: int | None = None,
    ) -> int:
        """Resend NACKed packets still in history (RTX-wrapped if negotiated); returns the packets sent.

        A packet is resent at most once per ``interval`` (the caller passes the
        subscriber's round-trip time when it is longer than
        :data:`RETRANSMIT_INTERVAL`) and at most :data:`MAX_RETRANSMITS` times:
        a receiver repeats its whole missing list in every NACK (Chromium every
        100 ms, up to 10 times, when it has no RTT estimate), and answering each
        repetition turns one loss into a retransmission storm. On a congested
        link that storm is what keeps it congested: at 100 kbit/s the
        retransmissions once outnumbered the media 40 to 1.

        ``copies`` > 1 (a lossy subscriber, see Subscriber) sends each RTX
        packet that many times under distinct RTX sequence numbers: a browser
        that gets no RTT estimate (receive-only) NACKs again only after 100 ms,
        so a lost retransmission costs a visible freeze; the extra copy is
        dropped by the browser as a duplicate when the first one arrives.

        ``max_bytes`` (None: no limit): stop once this many bytes of repairs were sent, newest lost packet
        first (layers.repair_budget: an overrun link, whose queue already holds more than it carries in
        time; the oldest loss is the likeliest to be too late to help).
        """
        now = time.monotonic() if now is None else now
        if max_bytes is not None:
            lost = lost[::-1]
        recent = self._retransmitted
        if len(recent) > HISTORY_SIZE:
            for old in [s for s, (t, _) in recent.items() if now - t >= RETRANSMIT_MEMORY]:
                del recent[old]
        sent = 0
        budget = -1 if max_bytes is None else max_bytes
        for seq in lost:
            slot = seq & _HISTORY_MASK
            if self.history_seq[slot] != seq:
                continue
            if max_bytes is not None and len(self.history[slot]) + 2 > budget:  # an RTX repair adds the OSN
                break
            previous = recent.get(seq)
            if previous is None or now - previous[0] >= RETRANSMIT_MEMORY:
                recent[seq] = (now, 1)
            elif now - previous[0] < interval or previous[1] >= MAX_RETRANSMITS:
                continue
            else:
                recent[seq] = (now, previous[1] + 1)
            data = self.history[slot]
            rtx_pt = self.rtx_pt_by_pt.get(data[1] & 0x7F)
            if rtx_pt is None:
                if self.send(data):  # plain resend: one copy (a repeated SRTP index is refused)
                    sent += 1
                    self.octets_retransmitted += len(data)
                    budget -= len(data)
                continue
            header_len = rtp_header_len(data)
            ts = int.from_bytes(data[4:8], "big")
            body = data[12:header_len] + U16.pack(seq) + data[header_len:]
            for _ in range(copies):
                packet = RTP_HEADER.pack(data[0], (data[1] & 0x80) | rtx_pt, self.rtx_seq, ts, self.rtx_ssrc) + body
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                if self.send(packet):
                    sent += 1
                    self.octets_retransmitted += len(packet)
                    budget -= len(packet)
        self.packets_retransmitted += sent
        return sent


class Forwarder:
    """Fans out one publisher track to its downstreams.

    ``request_keyframe`` sends a PLI to the publisher; it is throttled here to
    one per :data:`KEYFRAME_REQUEST_INTERVAL`, except that a stream starting
    (``force``) asks at once unless the keyframe asked for last is still on its
    way (that one serves it too).

    With the C fast path, :meth:`on_rtp`'s steady state also runs in C, called
    by the publisher's receive path (``_sfu_native.RtpReceive``, see
    ``aiortc_hooks.install_fast_receive``) without a packet object: it reads
    and writes this object's attributes (``packets_in``, ``octets_in``,
    ``downstreams``, ...) and hands every packet outside the steady state
    (sinks, a pending switch, a downstream waiting for a keyframe, the
    temporal-layer sample, a keyframe request not yet answered) to :meth:`on_rtp`.
    """

    probe: ClassVar[Callable[[Forwarder, bytes], None] | None] = None
    """Bench instrumentation (bench/_media_sfu_probe.py): called with the payload after every fan-out, on both paths."""

    def __init__(
        self,
        *,
        kind: str,
        request_keyframe: Callable[[], None],
        on_audio_level: Callable[[int], None] | None = None,
        native: Any = NATIVE,
    ) -> None:
        """``native``: the ``_sfu_native`` module (default: the one aiortc_hooks loaded, or None), whose
        ``Fanout`` then does the steady-state part of :meth:`Downstream.forward` for all downstreams of a
        packet in one C call (same bytes, same state; tests/media_server/test_forwarder_unit.py compares)."""
        self.kind = kind
        self.downstreams: list[Downstream] = []
        self._send_pli = request_keyframe
        self._last_pli = -1e9
        self._pli_unanswered = False  # a PLI was sent and no keyframe has arrived since
        self.on_audio_level = on_audio_level
        self.codec: RTCRtpCodecParameters | None = None
        self._keys: dict[int, tuple[str, str, int]] = {}
        self.packets_in = 0
        self.octets_in = 0
        self.keyframe_requests = 0
        self.sinks: list[Sink] = []
        self.pending: list[tuple[Downstream, Callable[[Downstream], None]]] = []
        self.frame_size: tuple[int, int] | None = None  # (width, height) of the last VP8 keyframe
        self.temporal_layers = False  # VP8 with temporal layer indices (sampled every 64 packets)
        self.created = time.monotonic()
        self._rate = 0.0
        self._rate_time = self.created
        self._rate_octets = 0
        self._rate_sampled = False
        self._heard_octets = 0
        self._heard_at = self.created  # when ``silent_for`` last saw octets_in grow
        self.audible = True
        """False: packets carrying an audio level are not forwarded (last-N audio, media_server/lastn.py)."""
        fanout_type = getattr(native, "Fanout", None)
        self._fanout: Any = (
            fanout_type(downstream_type=Downstream, history_mask=_HISTORY_MASK, sr_batch=SR_BATCH)
            if fanout_type is not None and issubclass(Downstream, native.DownstreamCore)
            else None
        )

    def set_audible(self, audible: bool) -> None:
        """Gate this (microphone) track; when it opens, every downstream continues seamlessly."""
        if audible and not self.audible:
            for d in self.downstreams:
                d.rebase()  # no sequence gap for the silence we dropped (subscribers would count it lost)
        self.audible = audible

    def add_sink(self, sink: Sink) -> None:
        """Also hand every packet to ``sink``; for video a keyframe is requested at once."""
        if sink not in self.sinks:
            self.sinks = [*self.sinks, sink]
        if self.kind == "video":
            self.request_keyframe(force=True)

    def notify_first_packet(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, synchronously, when the next packet arrives (at once if one came already).

        A one-shot sink: until then every packet takes the Python path (the C receive path hands packets of
        a forwarder with sinks to :meth:`on_rtp`), afterwards nothing is left in the packet path.
        """
        if self.packets_in:
            callback()
            return

        def sink(packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
            self.remove_sink(sink)
            callback()

        self.sinks = [*self.sinks, sink]

    def remove_sink(self, sink: Sink) -> None:
        self.sinks = [s for s in self.sinks if s is not sink]

    def attach(self, downstream: Downstream) -> None:
        """Start forwarding to ``downstream`` (from the next keyframe for video, requested now if it can send)."""
        if downstream in self.downstreams:
            return
        downstream.rebase()
        downstream.request_keyframe = self.request_keyframe
        self.downstreams = [*self.downstreams, downstream]
        if self.kind == "video" and (downstream.ready or downstream.held is not None):  # else asked when it is
            self.request_keyframe(force=True)  # (Subscriber._make_ready)

    def detach(self, downstream: Downstream) -> None:
        """Stop forwarding to ``downstream`` (and cancel a pending switch to this forwarder)."""
        self.downstreams = [d for d in self.downstreams if d is not downstream]
        self.cancel_switch(downstream)
        downstream.drop_held()
        if downstream.request_keyframe == self.request_keyframe:
            downstream.request_keyframe = lambda: None

    def switch_on_keyframe(self, downstream: Downstream, on_switch: Callable[[Downstream], None]) -> None:
        """Take ``downstream`` over at this forwarder's next keyframe (a keyframe is requested now).

        Until then the downstream keeps whatever it is attached to (no freeze);
        ``on_switch(downstream)`` runs right before the keyframe is forwarded and
        must detach it from its previous forwarder. A newer call replaces an
        older one for the same downstream.
        """
        self.cancel_switch(downstream)
        self.pending = [*self.pending, (downstream, on_switch)]
        self.request_keyframe(force=True)

    def cancel_switch(self, downstream: Downstream) -> None:
        if any(d is downstream for d, _ in self.pending):
            self.pending = [(d, f) for d, f in self.pending if d is not downstream]

    def _take_pending(self) -> None:
        pending, self.pending = self.pending, []
        for downstream, on_switch in pending:
            on_switch(downstream)
            downstream.rebase()
            downstream.request_keyframe = self.request_keyframe
            if downstream not in self.downstreams:
                self.downstreams = [*self.downstreams, downstream]

    def bitrate(self, now: float) -> float:
        """Incoming payload bitrate in bit/s, smoothed over about a second (sampled when asked)."""
        dt = now - self._rate_time
        if dt >= RATE_WINDOW:
            rate = (self.octets_in - self._rate_octets) * 8 / dt
            self._rate = (self._rate + rate) / 2 if self._rate_sampled else rate
            self._rate_time, self._rate_octets, self._rate_sampled = now, self.octets_in, True
        return self._rate

    def silent_for(self, now: float) -> float:
        """Seconds since packets last arrived, as seen by the calls to this method (their spacing is the
        resolution: the subscriber asks every allocation, ``ADAPT_INTERVAL``). The counters are all the C
        receive path updates, so the hot path stays untouched."""
        if self.octets_in != self._heard_octets:
            self._heard_octets, self._heard_at = self.octets_in, now
        return max(0.0, now - self._heard_at)

    def request_keyframe(self, force: bool = False) -> None:
        """Ask the publisher for a keyframe, at most once per :data:`KEYFRAME_REQUEST_INTERVAL`.

        ``force`` (a stream starts now) sends at once unless a keyframe asked for is still on its way
        (no keyframe has arrived since the last PLI, sent less than the interval ago; the PLI or the
        keyframe may be lost). Before, a forced request within 50 ms of another was dropped even when
        that one's keyframe had already gone by: the new stream then waited up to 0.5 s for its first
        frame. Requests without ``force`` (a waiting stream on every packet, a subscriber's own PLI)
        keep the plain interval, so a subscriber cannot make a camera send keyframes more often.
        """
        now = time.monotonic()
        since = now - self._last_pli
        if since < KEYFRAME_REQUEST_INTERVAL and (self._pli_unanswered or not force):
            return
        self._last_pli = now
        self._pli_unanswered = True
        self.keyframe_requests += 1
        self._send_pli()

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        """Forward one publisher packet to every downstream (hot path)."""
        self.packets_in += 1
        info = self._keys.get(packet.payload_type)
        if info is None:
            info = self._keys[packet.payload_type] = (codec_key(codec), codec.mimeType, codec.clockRate)
            self.codec = codec
        key, mime, clock_rate = info
        ext_values = packet.extensions
        audio_level = ext_values.audio_level
        if audio_level is not None and self.on_audio_level is not None:
            self.on_audio_level(audio_level[1])
        for sink in self.sinks:
            sink(packet, codec)
        payload = packet.payload
        self.octets_in += len(payload)
        if not self.packets_in & 63 and self.kind == "video":
            self.temporal_layers = mime.lower() == "video/vp8" and vp8_temporal_id(payload) >= 0
        if self.pending:
            if is_keyframe_start(mime, payload):
                if mime.lower() == "video/vp8":
                    self.frame_size = vp8_keyframe_size(payload) or self.frame_size
                self._take_pending()
            else:
                self.request_keyframe()
        if self._pli_unanswered and is_keyframe_start(mime, payload):
            self._pli_unanswered = False  # answered (or a keyframe anyway): a stream starting now asks again
        downstreams = self.downstreams
        if not downstreams or (audio_level is not None and not self.audible):
            return
        now = time.monotonic()
        keyframe = False
        for d in downstreams:
            if d.waiting_keyframe or d.temporal_up:
                keyframe = is_keyframe_start(mime, payload)
                if keyframe and mime.lower() == "video/vp8":
                    self.frame_size = vp8_keyframe_size(payload) or self.frame_size
                break
        marker, seq, ts = packet.marker, packet.sequence_number, packet.timestamp
        if self._fanout is not None:
            # The loop below and Downstream.forward's steady state in one C call (rare states call forward).
            self._fanout(
                downstreams, key, marker, seq, ts, payload, keyframe, clock_rate, now, self._extensions, audio_level
            )
            if self.probe is not None:
                self.probe(payload)
            return
        # The extension block depends only on the subscriber's negotiated IDs:
        # built once per packet per distinct ID pair (usually one for the room).
        ext_cache: dict[tuple[int, int, int], bytes] = {}
        for d in downstreams:
            ids = d.ext_key
            ext = ext_cache.get(ids)
            if ext is None:
                ext = ext_cache[ids] = self._extensions(ids, audio_level)
            d.forward(key, marker, seq, ts, ext, payload, keyframe, clock_rate, now)
        if self.probe is not None:
            self.probe(payload)

    def accepts_native_receive(self) -> bool:
        """True if the C receive path may run :meth:`on_rtp`'s steady state for this forwarder.

        It needs the C fan-out and this very method (a subclass or a wrapper of ``on_rtp`` would be bypassed).
        """
        return self._fanout is not None and type(self).on_rtp is _FORWARDER_ON_RTP and "on_rtp" not in vars(self)

    def _extensions(self, ids: tuple[int, int, int], audio_level: tuple[bool, int] | None) -> bytes:
        audio_level_id, abs_send_time_id, transport_cc_id = ids
        # The transport-wide sequence number's slot comes first: the send path finds it at a fixed offset.
        elements: list[tuple[int, bytes]] = [(transport_cc_id, _TRANSPORT_SEQ_SLOT)] if transport_cc_id else []
        if audio_level_id and audio_level is not None:
            elements.append((audio_level_id, bytes([(0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)])))
        if abs_send_time_id and self.kind == "video":
            ast = int((time.time() + _NTP_EPOCH) * 262144) & 0xFFFFFF
            elements.append((abs_send_time_id, ast.to_bytes(3, "big")))
        return one_byte_extensions(elements)


_FORWARDER_ON_RTP = Forwarder.on_rtp
