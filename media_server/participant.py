"""Peer connections of one participant: publish connections and the subscribe connection."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.codecs import is_rtx
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from . import aiortc_hooks as hooks
from . import bandwidth_report, turn
from .audio_lines import AudioLines, microphones_fit, microphones_fit_remb
from .bwe import SendSideEstimator
from .config import Config, ice_policy
from .forwarder import RETRANSMIT_INTERVAL, Downstream, Forwarder
from .ice_policy import filter_sdp_candidates
from .layers import (
    MIN_ACTIVE_BITRATE,
    THIN_TEMPORAL_LAYER,
    UPGRADE_HEADROOM,
    BandwidthEstimate,
    LayerGate,
    VideoDemand,
    allocate,
    audio_reserve,
    layer_costs,
    levels_cost,
    pacing_rate,
    padding_rate,
    repair_budget,
    retransmit_policy,
    wanted_bitrate,
    with_thin_level,
)
from .pacer import Pacer
from .protocol import SOURCES, InvalidSdp, NoCommonCodec, StaleRevision, TrackInfo
from .rtputil import codec_key
from .sdp import (
    SimulcastOffer,
    accept_simulcast,
    announce_addresses,
    negotiated_by_mid,
    offer_transport_cc,
    parse_sdp,
    simulcast_offers,
)
from .send_side import MAX_BPS, MIN_BPS, START_BPS, SendSideBwe, estimator_factory

logger = logging.getLogger(__name__)
trace_logger = logging.getLogger("media_server.bwe")  # MEDIA_BWE_TRACE=1: the estimator's state every 0.5 s

ADAPT_INTERVAL = 0.5  # seconds between two layer allocations of a subscriber
PAD_INTERVAL = 0.05  # seconds between two bursts of probe padding
PROBE_RATES = (500_000, 1_000_000, 2_000_000, 3_000_000)  # bit/s of the initial probe clusters
PROBE_CLUSTER = 10  # packets per probe cluster
PROBE_TICK = 0.005  # seconds between two bursts of a paced probe cluster (send-side probing)
# MEDIA_BWE_TRACE's split of what is sent: bytes on the wire beyond an RTP packet (SRTP tag 10, UDP 8, IPv4 20),
# and beyond a forwarded packet's payload (those plus an RTP header of 12 and ~12 of header extensions).
TRACE_WIRE_OVERHEAD = 38
TRACE_MEDIA_OVERHEAD = 62
MEASURE_AFTER = 2.0  # seconds after which a publisher track's layer bitrates are trusted


def new_peer_connection(config: Config) -> RTCPeerConnection:
    """An RTCPeerConnection with exactly the configured ICE servers (none by default).

    With TURN configured, each connection gets freshly minted time-limited credentials.
    """
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential) for s in turn.ice_servers(config)
    ]
    # max-bundle: with aiortc's default "balanced" policy a second m-line of one
    # kind stays on a never-connected transport after BUNDLE negotiation.
    return RTCPeerConnection(RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def peer_dtls(pc: RTCPeerConnection) -> RTCDtlsTransport | None:
    """The (bundled) DTLS transport of ``pc``, if it has any transceiver."""
    transceivers = pc.getTransceivers()
    return transceivers[0].receiver.transport if transceivers else None


def safe_remote_sdp(config: Config, sdp: str) -> str:
    """A client's SDP without the candidates the server must not send checks to (media_server/ice_policy.py)."""
    return filter_sdp_candidates(sdp, ice_policy(config))


@dataclass(eq=False)
class PublishedTrack:
    """One track of a publish connection and its fan-out."""

    participant: str
    pc: str
    kind: str
    source: str
    forwarder: Forwarder
    receiver: hooks.ForwardingReceiver | None
    """The publisher's hooked receiver; None for a publication relayed from another node (cascade.py)."""
    mid: str | None = None
    codec_keys: tuple[str, ...] = ()
    """Codecs negotiated with the publisher, preferred (the one it sends) first."""
    layers: tuple[Forwarder, ...] = ()
    """Simulcast: one forwarder per layer, lowest quality first (``forwarder`` is the highest).
    Empty for a single-stream track."""

    @property
    def all_layers(self) -> tuple[Forwarder, ...]:
        return self.layers or (self.forwarder,)

    def recording_layer(self) -> Forwarder:
        """What a recording taps: the highest simulcast layer the publisher sends now (it may
        hold back its top layer when its own bandwidth or CPU is short), else ``forwarder``."""
        now = time.monotonic()
        for forwarder in reversed(self.layers):
            if forwarder.bitrate(now) >= MIN_ACTIVE_BITRATE:
                return forwarder
        return self.forwarder

    codecs: tuple[RTCRtpCodecParameters, ...] = ()
    """The negotiated codecs themselves (payload types of the publisher; no RTX): described to relay targets."""
    closed: bool = False
    """Its publisher closed (left, unpublished, replaced, failed; a relay dropped it): never attached again. A
    subscriber whose offer carrying it is outstanding still answers its m-line (the coalesced re-offer after
    that answer frees it), and must not start forwarding it meanwhile (``Subscriber._forward``)."""


class Publisher:
    """A sendonly connection offered by the client (``pc`` = camera|screen)."""

    def __init__(self, *, participant: str, name: str, config: Config) -> None:
        self.participant = participant
        self.name = name
        self.config = config
        self.pc = new_peer_connection(config)
        self.tracks: list[PublishedTrack] = []

    async def accept(self, offer_sdp: str, on_audio_level: Callable[[int], None] | None) -> str:
        """Apply the client's offer, hook every receiver, and return our answer.

        Raises InvalidSdp or NoCommonCodec.
        """
        remote = hooks.bundle_remote_candidates(safe_remote_sdp(self.config, offer_sdp))
        hooks.reuse_parsed(remote, parse_sdp(remote))  # validated here, and aiortc does not parse it again
        simulcast = simulcast_offers(offer_sdp)
        await asyncio.sleep(0)  # let queued media through between the ~1 ms SDP steps of a join
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=remote, type="offer"))
        except OperationError as exc:
            # aiortc: "Failed to set remote <kind> description send parameters"
            raise NoCommonCodec(f"no common codec: {exc}") from exc
        except (ValueError, InvalidAccessError, InvalidStateError) as exc:
            raise InvalidSdp(f"offer rejected: {exc}") from exc
        # Hooks must be in place before aiortc calls receiver.receive() (next await).
        for transceiver in self.pc.getTransceivers():
            self._hook(transceiver, on_audio_level, simulcast.get(transceiver.mid or ""))
        dtls = peer_dtls(self.pc)
        if dtls is not None and self.tracks:
            hooks.install_fast_receive(dtls, [t.receiver for t in self.tracks if t.receiver is not None])
        answer = await self.pc.createAnswer()
        await asyncio.sleep(0)
        description = parse_sdp(answer.sdp)
        rejected = [m.rtp.muxId for m in description.media if m.kind in ("audio", "video") and not m.rtp.codecs]
        if rejected or not self.tracks:
            raise NoCommonCodec("no common codec for offered media", {"mids": rejected})
        negotiated = negotiated_by_mid(description)
        codecs: dict[str | None, tuple[RTCRtpCodecParameters, ...]] = {
            m.rtp.muxId: tuple(c for c in m.rtp.codecs if not is_rtx(c)) for m in description.media
        }
        for track in self.tracks:
            params = negotiated.get(track.mid or "")
            track.codec_keys = tuple(params.pt_by_codec) if params is not None else ()
            track.codecs = codecs.get(track.mid, ()) if track.mid is not None else ()
        hooks.reuse_parsed(answer.sdp, description)
        await self.pc.setLocalDescription(answer)
        if dtls is not None:
            hooks.install_fast_demux(dtls)  # sockets exist once gathering (setLocalDescription) is done
        accepted = {t.mid: simulcast[t.mid] for t in self.tracks if t.layers and t.mid in simulcast}
        answer_sdp = accept_simulcast(self.pc.localDescription.sdp, accepted)
        return announce_addresses(answer_sdp, self.config.ice_announce)

    def _hook(
        self,
        transceiver: RTCRtpTransceiver,
        on_audio_level: Callable[[int], None] | None,
        simulcast: SimulcastOffer | None = None,
    ) -> None:
        kind = transceiver.kind
        if kind not in ("audio", "video") or transceiver.direction == "inactive":
            return
        source = SOURCES[(self.name, kind)]
        holder: list[hooks.ForwardingReceiver] = []

        def keyframe_requester(layer: int | None) -> Callable[[], None]:
            def request_keyframe() -> None:
                holder[0].request_keyframe(layer)

            return request_keyframe

        layers: tuple[Forwarder, ...] = ()
        route = None
        if simulcast is not None and kind == "video":
            layers = tuple(
                Forwarder(kind=kind, request_keyframe=keyframe_requester(i)) for i in range(len(simulcast.rids))
            )
            route = hooks.SimulcastRoute(
                rids=simulcast.rids,
                handlers=tuple(f.on_rtp for f in layers),
                rid_ext_id=simulcast.rid_ext_id,
                rrid_ext_id=simulcast.rrid_ext_id,
            )
            forwarder = layers[-1]
        else:
            forwarder = Forwarder(
                kind=kind,
                request_keyframe=keyframe_requester(None),
                on_audio_level=on_audio_level if source == "microphone" else None,
            )
        receiver = hooks.ForwardingReceiver(transceiver.receiver, kind, forwarder.on_rtp, simulcast=route)
        holder.append(receiver)
        self.tracks.append(
            PublishedTrack(
                self.participant, self.name, kind, source, forwarder, receiver, mid=transceiver.mid, layers=layers
            )
        )

    @property
    def sources(self) -> list[str]:
        return [t.source for t in self.tracks]

    async def close(self) -> None:
        """Stop forwarding and close the connection."""
        for track in self.tracks:
            track.closed = True
            for forwarder in track.all_layers:
                for downstream in [*forwarder.downstreams, *(d for d, _ in forwarder.pending)]:
                    forwarder.detach(downstream)
        await self.pc.close()


@dataclass(eq=False)
class Slot:
    """One m-line of the subscribe connection (reused across publications)."""

    transceiver: RTCRtpTransceiver
    kind: str
    downstream: Downstream
    track: PublishedTrack | None = None
    attached: PublishedTrack | None = None
    info: TrackInfo | None = None
    answered: PublishedTrack | None = None
    """The track the client's last answer accepted on this m-line (forwardable unless paused)."""
    pending: bool = field(default=True)
    nacks_received: int = 0  # RTCP feedback from the subscriber (media_server/metrics.py)
    keyframe_requests_received: int = 0
    forwarder: Forwarder | None = None
    """The layer of ``attached`` being forwarded now (None: paused)."""
    target: int | None = None
    """The layer chosen for this subscriber (forwarded from its next keyframe; None: paused)."""
    layer_switches: int = 0
    stall_mark: tuple[float, int, int] | None = None  # (since, source packets, sent packets): see Subscriber.stalls
    stall_reported: bool = False
    direct_send: Callable[[bytes], bool] | None = None
    """The transport's send for this m-line; ``downstream.send`` is it, or it behind the pacer (video)."""
    spare: bool = False
    """A negotiated m-line without a track (the last answer accepted it sendonly): ``Subscriber.map_spares``
    gives it a new track without a re-offer."""
    released: tuple[str, str] | None = None
    """(participant, source) of the track a leave took off this spare line (``Subscriber.release``): the
    client may still map its mid to them, so that track's owner, back again, gets this line first."""

    @property
    def paused_for_bandwidth(self) -> bool:
        """An attached video the allocator gives no layer (Subscriber.adapt): it sends nothing on purpose."""
        return self.kind == "video" and self.attached is not None and self.target is None


class Subscriber:
    """The server-offered connection that carries everyone else's tracks.

    Renegotiation is serialized: at most one offer is outstanding; changes that
    arrive meanwhile set ``dirty`` and are offered after the answer.
    """

    def __init__(
        self,
        *,
        participant: str,
        config: Config,
        revision_base: int = 0,
        speaker: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.participant = participant
        self.config = config
        self.pc = new_peer_connection(config)
        self.connection = secrets.token_hex(6)
        """Names this connection in its offers and ``forwarded_tracks`` (its revisions restart with a new
        participant record: a rejoin after a leave, another media node): a client ignores another one's."""
        self.slots: list[Slot] = []
        self.revision = revision_base
        self.outstanding: int | None = None
        self.dirty = False
        self.reoffers = 0  # consecutive offers replaced because the client did not answer
        self.forwarded_retired = 0
        self.speaker = speaker
        self.estimate = BandwidthEstimate()
        # Transport-wide congestion control (send-side estimation): one sequence for every m-line's sends;
        # offered only with an estimator (media_server/bwe.py) to feed, else REMB as before.
        self.transport_sequence: Any = hooks.transport_sequence()
        factory = estimator_factory() if config.transport_cc else None
        self.tcc: SendSideBwe | None = (
            SendSideBwe(
                estimator=factory(start_bps=START_BPS, min_bps=MIN_BPS, max_bps=MAX_BPS),
                sequence=self.transport_sequence,
            )
            if factory is not None
            else None
        )
        """The transport-cc wiring (stamped-packet records and feedback into the estimator); None: not offered."""
        self.sender_reports = hooks.SenderReports()  # one RTCP SR timer for all m-lines
        self.max_heights: dict[tuple[str, str], int] = {}
        """(participant, source) -> the largest height this subscriber displays that video at (unset: any)."""
        self._probed = False
        self.padding = 0.0  # bit/s of probe padding wanted now (layers.padding_rate)
        self.pacer = Pacer()  # video on a slow link (pacing_rate)
        self._gate = LayerGate()  # time hysteresis of layer switches
        self.send_side: SendSideEstimator | None = None
        """Send-side estimate from transport-cc feedback (media_server/bwe.py), once the answer accepted
        transport-cc (``tcc.estimator``)."""
        self._clusters = 0
        self._probing: asyncio.Task[None] | None = None
        self.wanted_bps = 0.0  # what the ideal layers (and the audio the estimate covers) need: probing aims at it
        self.on_forwarding_changed: Callable[[], None] = lambda: None
        """Called when the allocator pauses or resumes a video (what ``forwarded()`` returns changed)."""
        # How many microphones the link carries (audio_lines.py); the room pools the audio lines to that many.
        self.audio_lines = AudioLines()
        self.on_audio_lines_changed: Callable[[], None] = lambda: None
        self._bandwidth_paused: frozenset[int] = frozenset()
        self._limits: dict[tuple[int, int], str] = {}  # (slot, track) -> bandwidth_report reason
        self._limits_estimate: float | None = None  # bit/s when the reasons were last computed
        self._pad_credit = 0.0
        self._traced_bytes = 0
        self._traced_split: dict[str, int] = {}
        self._adapter = asyncio.create_task(self._run_adaptation(), name=f"subscriber-{participant}-layers")
        # Last-N (media_server/lastn.py): the video tracks to forward (ids); None = every one.
        self.selected_video: set[int] | None = None
        self.selected_audio: set[int] | None = None  # the microphones sent while fewer fit (select_audio)
        self.audio_pooled = False  # microphone m-lines are a pool (Room._audio_pool)
        self.reported: tuple[str, ...] | None = None  # tracks last announced in a forwarded_tracks event

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                for slot in self.slots:
                    self._make_ready(slot)

    def wanted(self, desired: list[PublishedTrack]) -> bool:
        """True if the negotiated track set differs from ``desired``."""
        return {id(s.track) for s in self.slots if s.track} != {id(t) for t in desired}

    @property
    def active(self) -> bool:
        return any(s.attached for s in self.slots)

    async def offer(
        self, desired: list[PublishedTrack], spares: dict[str, int] | None = None
    ) -> tuple[str, int, list[TrackInfo]]:
        """Assign ``desired`` tracks to m-lines (reusing freed ones) and create an offer.

        ``spares``: per kind, how many m-lines without a track the offer negotiates at least when it has to
        add lines of that kind anyway (``lastn.spare_lines``; freed lines count). Without any, freed lines
        become inactive (as before spares existed); with them every line without a track stays sendonly, a
        spare once answered.
        """
        desired_ids = {id(t) for t in desired}
        keep_spares = bool(spares and any(spares.values()))
        for slot in self.slots:
            slot.spare = False  # a spare again once this offer is answered (apply_answer)
            slot.released = None  # the offer's ``tracks`` replace whatever mapping the client had
            if slot.track is not None and id(slot.track) not in desired_ids:
                self._detach(slot)
                slot.track = None
                slot.answered = None
                slot.info = None
                slot.transceiver.direction = "sendonly" if keep_spares else "inactive"
        assigned = {id(s.track) for s in self.slots if s.track}
        grown: set[str] = set()  # kinds that needed a new m-line (a first offer, or out of spares)
        for track in desired:
            if id(track) in assigned:
                continue
            free = next((s for s in self.slots if s.track is None and s.kind == track.kind), None)
            if free is None:
                grown.add(track.kind)
            slot = free if free is not None else self._new_slot(track.kind)
            slot.track = track
            slot.transceiver.direction = "sendonly"
        for kind, wanted in (spares or {}).items() if keep_spares else ():
            free_lines = [s for s in self.slots if s.track is None and s.kind == kind]
            for slot in free_lines:
                slot.transceiver.direction = "sendonly"
            # Spares are added only with lines that had to be added anyway: an offer for a leave (its freed
            # lines become the spares) or a pin does not grow the connection.
            for _ in range(wanted - len(free_lines) if kind in grown else 0):
                self._new_slot(kind)
        await hooks.set_local_offer(self.pc)  # createOffer + setLocalDescription, the offer parsed by neither
        dtls = peer_dtls(self.pc)
        if dtls is not None:
            # Subscribers' RTCP skips aioice's STUN parse attempt too; transport-cc feedback goes to the estimator.
            feedback = self._on_transport_feedback if self.tcc is not None else None
            hooks.install_fast_demux(dtls, on_transport_feedback=feedback)
        self.revision += 1
        self.outstanding = self.revision
        tracks = []
        for slot in self.slots:
            slot.info = None
            if slot.track is not None and slot.transceiver.mid is not None:
                t = slot.track
                slot.info = TrackInfo(
                    mid=slot.transceiver.mid, participant=t.participant, pc=t.pc, source=t.source, kind=t.kind
                )
                tracks.append(slot.info)
        sdp = announce_addresses(self.pc.localDescription.sdp, self.config.ice_announce)
        if self.tcc is not None:
            sdp = offer_transport_cc(sdp)  # REMB (goog-remb) stays offered: the fallback if the answer drops these
        return sdp, self.revision, tracks

    def _new_slot(self, kind: str) -> Slot:
        transceiver = self.pc.addTransceiver(hooks.IdleTrack(kind), direction="sendonly")
        ssrc, rtx_ssrc = hooks.sender_ssrcs(transceiver.sender)
        sender = transceiver.sender
        self.sender_reports.adopt(sender)
        downstream = Downstream(
            kind=kind,
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc,
            send=lambda data: False,
            on_sent=lambda ts, octets, packets: hooks.update_sender_report(sender, ts, octets, packets),
            initial_sequence=random.randrange(0, 32768),
            initial_timestamp=random.randrange(0, 1 << 32),
        )
        slot = Slot(transceiver=transceiver, kind=kind, downstream=downstream)

        async def on_feedback(kind_: str, values: list[int]) -> None:
            if kind_ == "nack":
                slot.nacks_received += 1
                now = time.monotonic()
                estimate, covers_audio, _ = self._estimate(now)
                side = self.send_side
                copies, interval = retransmit_policy(
                    estimate,
                    self.estimate.loss,
                    hooks.sender_rtt(sender),
                    min_interval=RETRANSMIT_INTERVAL,
                    # transport-cc: the delay tells whether loss is a full queue (a REMB cannot)
                    room=None if side is None or not covers_audio else side.has_room(now),
                )
                downstream.retransmit(values, now, copies=copies, interval=interval, max_bytes=self._repair_budget(now))
            elif kind_ == "pli":
                slot.keyframe_requests_received += 1
                if slot.forwarder is not None:
                    slot.forwarder.request_keyframe()
            elif kind_ == "remb":
                self.estimate.on_remb(values[0], time.monotonic())
                if self.send_side is not None:
                    self.send_side.on_remb(now=time.monotonic(), bps=values[0])
            elif kind_ == "loss" and kind == "video":
                self.estimate.on_loss(values[0], time.monotonic())
            elif kind_ == "loss":
                self.estimate.on_audio_loss(values[0], time.monotonic())

        hooks.hook_sender_feedback(sender, on_feedback)
        self.slots.append(slot)
        return slot

    async def apply_answer(self, answer_sdp: str, revision: int) -> list[tuple[TrackInfo, str]]:
        """Apply the client's answer and start forwarding negotiated tracks.

        Returns (track, codec key) for each track whose codec the answer lacks
        (or whose m-line it rejected): those are not forwarded.
        Raises StaleRevision or InvalidSdp.
        """
        if revision != self.outstanding:
            raise StaleRevision(f"revision {revision} is not outstanding", {"outstanding": self.outstanding})
        remote = hooks.bundle_remote_candidates(safe_remote_sdp(self.config, answer_sdp))
        description = parse_sdp(remote) if "m=" in answer_sdp else None
        negotiated = negotiated_by_mid(description) if description else {}
        hooks.reuse_parsed(remote, description)  # parsed once: aiortc takes this description
        await asyncio.sleep(0)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=remote, type="answer"))
        except (ValueError, OperationError, InvalidAccessError, InvalidStateError) as exc:
            raise InvalidSdp(f"answer rejected: {exc}") from exc
        self.outstanding = None
        self.reoffers = 0
        missing: list[tuple[TrackInfo, str]] = []
        for slot in self.slots:
            mid = slot.transceiver.mid
            params = negotiated.get(mid or "")
            if slot.track is None:
                # A spare line: ready to carry a track that appears later, without a re-offer (map_spares).
                slot.spare = params is not None and slot.transceiver.direction == "sendonly"
                if not slot.spare:
                    continue
            if params is None:
                continue
            ext_ids = params.ext_ids
            if self.tcc is None:
                ext_ids = replace(ext_ids, transport_cc=0)  # not offered (an answer cannot add it)
            elif ext_ids.transport_cc:
                self.transport_sequence.id = ext_ids.transport_cc  # one ID for the bundle
                self.send_side = self.tcc.estimator
            slot.downstream.configure(pt_by_codec=params.pt_by_codec, rtx_pt_by_pt=params.rtx_pt_by_pt, ext_ids=ext_ids)
            slot.direct_send = hooks.make_raw_sender(
                slot.transceiver.sender.transport, sequence=self.transport_sequence
            )
            self._route(slot)
            if slot.track is None:
                continue
            key = self._missing_codec(slot.track, params.pt_by_codec)
            if key is not None and slot.info is not None:
                missing.append((slot.info, key))
            slot.answered = slot.track
            if self.pc.connectionState != "connected":
                slot.downstream.hold()  # its keyframe is asked for now, held until the transport is ready
            self._forward(slot)
            if self.pc.connectionState == "connected":
                self._make_ready(slot)
        return missing

    @staticmethod
    def _missing_codec(track: PublishedTrack, pt_by_codec: dict[str, int]) -> str | None:
        """The codec key ``track`` is sent in if the m-line did not negotiate it (it is then not forwarded)."""
        codec = track.forwarder.codec
        key = codec_key(codec) if codec is not None else next(iter(track.codec_keys), None)
        return key if key is not None and key not in pt_by_codec else None

    def spare_lines(self, kind: str) -> int:
        """How many negotiated m-lines of ``kind`` wait for a track (``map_spares``)."""
        return sum(1 for s in self.slots if s.spare and s.kind == kind)

    def spare_mids(self) -> list[str]:
        """The mids of the m-lines that carry no track now (``forwarded_tracks.spare``): spares, lines an
        outstanding offer frees, inactive ones.

        The client forgets whom it mapped them to: a line a leave released (``release``) may still be mapped
        to the leaver there, whose stream (silent now) would otherwise stay attributed to them. Not only
        ``Slot.spare`` lines: those flags are down while an offer is outstanding, which would make the list
        (and ``Room._report``'s key) change at every offer for nothing.
        """
        return [s.transceiver.mid for s in self.slots if s.track is None and s.transceiver.mid is not None]

    def map_spares(self, tracks: list[PublishedTrack]) -> tuple[list[PublishedTrack], list[tuple[TrackInfo, str]]]:
        """Give each of ``tracks`` a spare negotiated m-line of its kind, forwarding at once; no renegotiation.

        The client learns the line's track from the next ``forwarded_tracks`` (the caller's ``_report``),
        as for a re-mapped line. Returns (the tracks mapped, (track, codec key) for each mapped track whose
        codec the line did not negotiate: not forwarded, as after an answer that lacks it). Tracks left
        without a line (no spare of their kind) need an offer.
        """
        mapped: list[PublishedTrack] = []
        missing: list[tuple[TrackInfo, str]] = []
        for track in tracks:
            spares = [s for s in self.slots if s.spare and s.kind == track.kind]
            owner = (track.participant, track.source)
            # The line its owner had (back under the same ID), else one that never carried anyone (the browser's
            # receiver holds no one's last frame or audio tail there), else the one idle longest.
            slot = next((s for s in spares if s.released == owner), None) or min(
                spares,
                key=lambda s: (s.released is not None or s.downstream.packets_sent > 0, s.downstream.last_time),
                default=None,
            )
            if slot is None or slot.transceiver.mid is None:
                continue
            slot.spare = False
            slot.released = None
            slot.track = slot.answered = track
            slot.info = TrackInfo(
                mid=slot.transceiver.mid,
                participant=track.participant,
                pc=track.pc,
                source=track.source,
                kind=track.kind,
            )
            key = self._missing_codec(track, slot.downstream.pt_by_codec)
            if key is not None:
                missing.append((slot.info, key))
            if self.pc.connectionState != "connected":
                slot.downstream.hold()
            self._forward(slot)
            mapped.append(track)
        return mapped, missing

    def release(self, tracks: list[PublishedTrack]) -> bool:
        """Free the answered m-lines of ``tracks`` (their participant left) as spares; no renegotiation.

        The client learns it from the next ``forwarded_tracks``, which lists these mids in ``spare``
        (``spare_mids``: forget whom they carried). ``map_spares`` gives such a line back to the same
        participant and source first (someone who comes back under the same ID). True if anything was freed.
        """
        ids = {id(t) for t in tracks}
        freed = False
        for slot in self.slots:
            track = slot.track
            if track is None or id(track) not in ids or slot.answered is not track or slot.info is None:
                continue
            self._detach(slot)
            slot.track = slot.answered = None
            slot.info = None
            slot.spare = True
            slot.released = (track.participant, track.source)
            freed = True
        return freed

    def rebind(self, video: list[PublishedTrack]) -> bool:
        """Move video m-lines from tracks not in ``video`` to tracks of ``video`` that have none; no renegotiation.

        The m-line keeps its mid, SSRC and sequence space (``Downstream.rebase``);
        the new publisher's video starts on a keyframe. Tracks left without an
        m-line need a renegotiation (the caller's). True if anything moved.
        """
        return self._rebind(video, [s for s in self.slots if s.kind == "video"])

    def rebind_audio(self, microphones: list[PublishedTrack]) -> bool:
        """Pooled audio: move microphone m-lines to ``microphones`` lacking one, forwarding at once.

        The line given up is the one idle longest (the browser's jitter buffer
        has played out its previous talker). Its outgoing stream continues: the
        next packet gets the next sequence number and a timestamp advanced by
        the time elapsed (``Downstream.rebase``). True if anything moved.
        """
        lines = [s for s in self.slots if s.kind == "audio" and s.track is not None and s.track.source == "microphone"]
        lines.sort(key=lambda s: s.downstream.last_time)
        moved = self._rebind(microphones, lines)
        if moved:
            for slot in lines:
                self._forward(slot)
        return moved

    def pooled_microphones(self) -> list[PublishedTrack]:
        """The microphones holding audio m-lines, most recently forwarded first."""
        lines = [s for s in self.slots if s.kind == "audio" and s.track is not None and s.track.source == "microphone"]
        lines.sort(key=lambda s: s.downstream.last_time, reverse=True)
        return [s.track for s in lines if s.track is not None]

    def _rebind(self, tracks: list[PublishedTrack], lines: list[Slot]) -> bool:
        wanted = {id(t) for t in tracks}
        bound = {id(s.track) for s in self.slots if s.track is not None}
        incoming = [t for t in tracks if id(t) not in bound]
        moved = False
        for slot in lines:
            if not incoming:
                break
            if slot.track is None or id(slot.track) in wanted:
                continue
            track = incoming.pop(0)
            self._detach(slot)
            slot.track = track
            if slot.answered is not None:
                slot.answered = track  # negotiated m-line: forwardable at once
            if slot.info is not None:
                slot.info = TrackInfo(
                    mid=slot.info.mid, participant=track.participant, pc=track.pc, source=track.source, kind=track.kind
                )
            moved = True
        return moved

    def paused(self, slot: Slot) -> bool:
        """True if last-N leaves this slot's video out, or the link's microphone count this slot's microphone (its
        m-line stays negotiated but gets no packets)."""
        selected = self.selected_video if slot.kind == "video" else self.selected_audio
        return selected is not None and slot.track is not None and id(slot.track) not in selected

    def select_audio(self, microphones: list[PublishedTrack] | None) -> None:
        """Forward only the microphones in ``microphones`` (None: every one); no renegotiation. While the link
        carries fewer microphones than this connection has audio lines (audio_lines.py) the other lines go quiet."""
        self.selected_audio = None if microphones is None else {id(t) for t in microphones}
        for slot in self.slots:
            if slot.kind == "audio":
                self._forward(slot)

    def select(self, video: list[PublishedTrack] | None) -> None:
        """Forward only the video tracks in ``video`` (None: all); no renegotiation.

        A video that is resumed restarts on a keyframe (``Forwarder.attach`` asks
        the publisher for one); audio is not affected.
        """
        self.selected_video = None if video is None else {id(t) for t in video}
        for slot in self.slots:
            self._forward(slot)

    def _forward(self, slot: Slot) -> None:
        """Attach the slot to its answered track unless it is paused or closed; detach it otherwise.

        A closed track is one whose publisher went while an offer carrying it was outstanding here: the answer
        accepts its m-line, but forwarding it would ask a closed receiver for a keyframe and report the track in
        ``forwarded_tracks`` again (the page already forgot its participant) until the re-offer drops it.
        """
        target = None if slot.answered is None or slot.answered.closed or self.paused(slot) else slot.answered
        if slot.attached is target:
            return
        self._detach(slot)
        if target is not None:
            slot.attached = target
            self._select_layer(slot, 0)  # simulcast: start on the lowest layer; adapt() moves it up
            if self.pc.connectionState == "connected":
                self._make_ready(slot)

    def forwarded(self) -> list[TrackInfo]:
        """The m-lines currently fed with packets (what the client receives).

        A video the bandwidth allocator pauses (``Slot.paused_for_bandwidth``) is not fed.
        """
        return [
            s.info for s in self.slots if s.attached is not None and s.info is not None and not s.paused_for_bandwidth
        ]

    def _make_ready(self, slot: Slot) -> None:
        # Forward only once packets can actually leave: a keyframe "sent" into
        # a transport that is not connected yet would be lost.
        if slot.attached is not None and not slot.downstream.ready:
            slot.downstream.ready = True
            if not slot.downstream.send_held() and slot.forwarder is not None:  # no keyframe held (hold)
                slot.forwarder.request_keyframe(force=True)

    def _detach(self, slot: Slot) -> None:
        if slot.attached is not None:
            for forwarder in slot.attached.all_layers:
                forwarder.detach(slot.downstream)
            slot.attached = None
        slot.forwarder = None
        slot.target = None

    # -- adaptive quality (media_server/layers.py) ---------------------------

    def _select_layer(self, slot: Slot, layer: int | None) -> None:
        """Forward layer ``layer`` of ``slot.attached`` to this subscriber (None: pause the video).

        A switch between layers happens at the target layer's next keyframe
        (requested now); the current layer keeps flowing until then, and the
        outgoing sequence/timestamps continue (Downstream.rebase).
        """
        track = slot.attached
        if track is None:
            return
        layers = track.all_layers
        layer = None if layer is None else min(layer, len(layers) - 1)
        if layer == slot.target and (layer is None or slot.forwarder is not None):
            return
        if slot.target != layer:
            logger.info(
                "%s: %s/%s layer %s -> %s (estimate %s)",
                self.participant,
                track.participant,
                track.source,
                slot.target,
                layer,
                self._estimate(time.monotonic())[0],
            )
        slot.target = layer
        downstream = slot.downstream
        if layer is None:
            for forwarder in layers:
                forwarder.detach(downstream)
            slot.forwarder = None
            return
        wanted = layers[layer]
        for forwarder in layers:
            if forwarder is not wanted:
                forwarder.cancel_switch(downstream)
        current = slot.forwarder
        if current is None:
            wanted.attach(downstream)
            slot.forwarder = wanted
        elif current is not wanted:
            old = current

            def on_switch(d: Downstream) -> None:
                old.detach(d)
                slot.forwarder = wanted
                slot.layer_switches += 1

            wanted.switch_on_keyframe(downstream, on_switch)

    def _demand(self, slot: Slot, now: float, speaker: str | None) -> VideoDemand:
        track = slot.attached
        assert track is not None
        layers = track.all_layers
        rates = [f.bitrate(now) for f in layers]
        # Nominal costs only while nothing could be measured yet; later a silent layer is a stopped one.
        measured = any(rates) or now - min(f.created for f in layers) > MEASURE_AFTER
        demand = VideoDemand(
            costs=layer_costs(rates, measured=measured, silent=[f.silent_for(now) for f in layers]),
            heights=[f.frame_size[1] if f.frame_size else None for f in layers],
            max_height=self.max_heights.get((track.participant, track.source)),
            speaker=track.participant == speaker,
            screen=track.source == "screen",
        )
        return with_thin_level(demand) if layers[0].temporal_layers else demand

    @staticmethod
    def _level(slot: Slot, layer: int | None, thin_level: bool) -> int | None:
        """The allocator's level for ``layer`` of this slot (levels count the thin one first, if any)."""
        if layer is None or not thin_level:
            return layer
        return 0 if layer == 0 and slot.downstream.temporal_limit is not None else layer + 1

    def adapt(self, now: float) -> None:
        """Choose every video slot's layer (and temporal limit) from the bandwidth estimate.

        No-op until the first estimate (transport-cc feedback, else REMB). The
        allocator counts in levels: the layers, preceded by a "thin" level (the
        lowest layer's base temporal layer) when that layer has temporal layers
        (layers.with_thin_level). With transport-cc the estimator's probe
        clusters replace REMB's padding (:meth:`_request_probes`).
        """
        if self.tcc is not None and self.send_side is not None:
            self.tcc.sent()  # between feedback packets too: the record ring stays short
            rtt = next((r for r in (hooks.sender_rtt(s.transceiver.sender) for s in self.slots) if r), None)
            if rtt is not None:
                self.send_side.on_rtt(rtt=rtt)
        estimate, covers_audio, congested = self._estimate(now)
        if estimate is None:
            return
        # A transport-wide estimate covers the audio: it is set aside once. REMB measures the video alone (only
        # video carries abs-send-time): the audio is not in it, and is not taken out of it.
        audio_tracks = sum(1 for s in self.slots if s.kind == "audio" and s.attached is not None)
        fit = (
            microphones_fit(estimate)
            if covers_audio
            # the browser's own REMB: the allocator's floor of what was delivered does not count the audio's losses
            else microphones_fit_remb(
                self.estimate.remb or estimate, sent=audio_tracks, overrun=self.estimate.overrun(now)
            )
        )
        if self.audio_lines.update(now, fit, sent=audio_tracks, most=self.config.max_audio_mlines):
            logger.info(
                "%s: microphones sent limited to %s (estimate %.0f)", self.participant, self.audio_lines.limit, estimate
            )
            self.on_audio_lines_changed()
        audio_bps = audio_reserve(audio_tracks, covers_audio=covers_audio)
        self._set_pacing(estimate, audio_bps)
        video = [s for s in self.slots if s.kind == "video" and s.attached is not None and s.downstream.ready]
        if not video:
            self.wanted_bps = 0.0
            return
        speaker = self.speaker()
        demands = [self._demand(s, now, speaker) for s in video]
        self.wanted_bps = wanted_bitrate(demands, audio_bps=audio_bps)
        thin = [s.attached is not None and s.attached.all_layers[0].temporal_layers for s in video]
        targets = [self._level(s, s.target, t) for s, t in zip(video, thin, strict=True)]
        keep = allocate(estimate, demands, audio_bps=audio_bps)
        # While congested nothing goes up.
        up = targets if congested else allocate(estimate * UPGRADE_HEADROOM, demands, audio_bps=audio_bps)
        keys = [(id(s), id(s.attached)) for s in video]
        levels = self._gate.choose(now, keys, targets, keep, up)
        for slot, level, has_thin in zip(video, levels, thin, strict=True):
            if level is None or not has_thin:
                self._select_layer(slot, level)
                slot.downstream.set_temporal_limit(None)
            else:
                self._select_layer(slot, max(0, level - 1))
                slot.downstream.set_temporal_limit(THIN_TEMPORAL_LAYER if level == 0 else None)
        paused = frozenset(id(s) for s in video if s.paused_for_bandwidth)
        changed = paused != self._bandwidth_paused
        self._bandwidth_paused = paused
        if self._note_limits(video, demands, levels, estimate) or changed:
            self.on_forwarding_changed()
        current = [
            self._level(s, s.attached.all_layers.index(s.forwarder), t) if s.attached and s.forwarder else None
            for s, t in zip(video, thin, strict=True)
        ]
        # What flows now: a REMB that drops below it while receiver reports show no loss is a starved browser's.
        self.estimate.on_sent(levels_cost(demands, current), now)
        self.padding = 0.0
        if not congested and not covers_audio:  # REMB: padding lets it grow (transport-cc: probe clusters do)
            # The audio REMB does not measure still shares the link (padding_rate keeps GROWTH_SHARE at least).
            link_audio = audio_reserve(audio_tracks, covers_audio=True)
            self.padding = padding_rate(estimate, demands, current, audio_bps=link_audio)

    # -- what the client is told about its bandwidth (media_server/bandwidth_report.py) --

    def _note_limits(
        self, video: list[Slot], demands: list[VideoDemand], levels: list[int | None], estimate: float
    ) -> bool:
        """Remember why each video is below its best (paused or reduced for bandwidth); True if that changed."""
        before = bandwidth_report.report_key(self.limited())
        reasons = bandwidth_report.track_reasons(demands, levels)
        self._limits = {
            (id(s), id(s.attached)): reason for s, reason in zip(video, reasons, strict=True) if reason is not None
        }
        self._limits_estimate = estimate
        return bandwidth_report.report_key(self.limited()) != before

    def limited(self) -> list[bandwidth_report.LimitedTrack]:
        """The negotiated videos paused or reduced for bandwidth now (what ``forwarded_tracks.bandwidth`` lists)."""
        return [
            bandwidth_report.LimitedTrack(track=s.info.to_json(), reason=reason)
            for s in self.slots
            if s.attached is not None
            and s.info is not None
            and (reason := self._limits.get((id(s), id(s.attached)))) is not None
        ]

    def bandwidth(self) -> dict[str, Any]:
        """The ``bandwidth`` object of a ``forwarded_tracks`` event (docs/protocol.md §2 *Events*)."""
        return bandwidth_report.bandwidth_json(self._limits_estimate, self.limited())

    def _estimate(self, now: float) -> tuple[float | None, bool, bool]:
        """(bit/s or None, whether it covers the audio, whether the link is congested now).

        The send-side estimate while transport-cc feedback flows (congested:
        its loss-based limit binds); otherwise the browser's REMB (congested:
        it just dropped, or loss is above 2 %).
        """
        side = self.send_side
        if side is not None and side.covers_audio:
            return float(side.target_bps), True, side.loss.limit is not None
        return self.estimate.value(now), False, self.estimate.congested(now)

    def _request_probes(self, now: float) -> None:
        """Start the probe clusters the send-side estimator asks for (when the wanted layers need more)."""
        side = self.send_side
        if side is None or (self._probing is not None and not self._probing.done()) or not self.wanted_bps:
            return
        clusters = side.probe_request(now=now, wanted_bps=int(self.wanted_bps))
        if clusters:
            self._probing = asyncio.create_task(
                self._send_clusters(clusters), name=f"subscriber-{self.participant}-probe"
            )

    async def _send_clusters(self, clusters: list[tuple[int, int]]) -> None:
        """Send each cluster's bytes of padding-only RTX packets paced at its bitrate, tagged with a fresh cluster id.

        Probe packets bypass the pacer (they are the pacer's measuring stick,
        not media that could queue); anything else sent while a cluster is
        under way belongs to it too, as in libwebrtc (it shares the link).
        """
        loop = asyncio.get_running_loop()
        for rate, size in clusters:
            # A forwarding video stream if there is one, else one paused for bandwidth: when every video is
            # paused, probing is the only way the estimate can climb back (acknowledged audio alone caps it).
            candidates = [s for s in self.slots if s.kind == "video" and s.downstream.packets_sent and s.direct_send]
            slot = next((s for s in candidates if s.forwarder), candidates[0] if candidates else None)
            if slot is None or slot.direct_send is None:
                return
            self._clusters += 1
            self.probing_cluster = self._clusters
            try:
                start, sent = loop.time(), 0
                while sent < size:
                    due = min(size, (loop.time() - start) * rate / 8) or 1
                    paced, slot.downstream.send = slot.downstream.send, slot.direct_send
                    try:
                        while sent < due:
                            n = slot.downstream.probe(1)
                            if not n:
                                return
                            sent += n
                    finally:
                        slot.downstream.send = paced
                    await asyncio.sleep(PROBE_TICK)
            finally:
                self.probing_cluster = None
                self._cluster_sent(self._clusters)

    def _cluster_sent(self, cluster: int) -> None:
        """Tell the estimator that ``cluster`` is over (its records drained first): only then is it measured."""
        side = self.send_side
        if side is None:
            return
        if self.tcc is not None:
            self.tcc.sent()
        closed = getattr(side, "on_probe_cluster_sent", None)  # (a stand-in estimator may not have it)
        if closed is not None:
            closed(cluster)

    def _on_transport_feedback(self, packets: list[bytes]) -> None:
        """Transport-cc feedback from the subscriber's browser (aiortc_hooks, in the datagram callback)."""
        tcc = self.tcc
        if tcc is None:
            return
        first = tcc.feedback_packets == 0
        tcc.on_feedback(packets)
        if first and tcc.feedback_packets:
            logger.info("%s: transport-cc feedback flowing: send-side estimation replaces REMB", self.participant)

    @property
    def probing_cluster(self) -> int | None:
        """The probe cluster being sent now: every packet sent meanwhile belongs to it
        (SendSideEstimator.on_packet_sent); it is recorded with each packet the connection's
        TransportSequence stamps."""
        cluster: int = self.transport_sequence.cluster
        return None if cluster < 0 else cluster

    @probing_cluster.setter
    def probing_cluster(self, cluster: int | None) -> None:
        self.transport_sequence.cluster = -1 if cluster is None else cluster

    def _route(self, slot: Slot) -> None:
        """Send the slot's packets directly, or (video, while pacing) through the pacer."""
        if slot.direct_send is not None:
            paced = self.pacer.active and slot.kind == "video"
            send = slot.direct_send
            slot.downstream.send = self.pacer.wrap(send, slot.downstream.ext_ids.abs_send_time) if paced else send

    def _repair_budget(self, now: float) -> int | None:
        """Bytes of repairs for a NACK now (layers.repair_budget). An overrun link: the transport-cc estimator's
        lost bytes, or for REMB the receiver reports' loss; the rate: the pacer's, else the estimate (for REMB
        before its first REMB, the send-side start rate)."""
        pacer = self.pacer
        side = self.send_side
        if side is not None and side.covers_audio:
            rate = pacer.rate * 8 if pacer.active else float(side.target_bps)
            return repair_budget(side.overrun(now), pacer.queued_bytes, rate)
        remb = self.estimate
        rate = pacer.rate * 8 if pacer.active else (remb.value(now) or float(START_BPS))
        return repair_budget(remb.overrun(now), pacer.queued_bytes, rate)

    def _set_pacing(self, estimate: float, audio_bps: float = 0.0) -> None:
        """Pace the video (and its repairs) from the estimate, less ``audio_bps`` of audio it covers."""
        was = self.pacer.active
        self.pacer.set_rate(pacing_rate(estimate, pacing=was, audio_bps=audio_bps))
        if self.pacer.active != was:
            for slot in self.slots:
                self._route(slot)

    def _pad(self, seconds: float) -> None:
        """Send ``padding`` bit/s worth of probe packets for ``seconds`` (on one forwarding video stream)."""
        if self.pacer.queued_bytes:  # the link is full already: padding would only queue behind media
            self._pad_credit = 0.0
            return
        self._pad_credit += self.padding * seconds / 8
        slot = next((s for s in self.slots if s.kind == "video" and s.forwarder and s.downstream.packets_sent), None)
        if slot is None:
            self._pad_credit = 0.0
            return
        while self._pad_credit > 0:
            sent = slot.downstream.probe(1)
            if not sent:
                self._pad_credit = 0.0
                return
            self._pad_credit -= sent

    async def _probe(self) -> None:
        """Send the initial bandwidth probe: clusters of padding-only RTX packets at rising rates.

        Chromium's receive-side estimator only believes probes in the first
        seconds of a connection (before it has an estimate); a cluster that
        arrives as fast as it was sent sets its REMB to that rate, so a
        subscriber on a good link is offered HD within seconds instead of
        after the slow 8 %/s ramp-up of REMB.
        """
        for rate in PROBE_RATES:
            slot = next((s for s in self.slots if s.kind == "video" and s.downstream.packets_sent), None)
            if slot is None:
                return
            sent = slot.downstream.probe(1)
            if not sent:
                return
            gap = sent * 8 / rate
            for _ in range(PROBE_CLUSTER - 1):
                await asyncio.sleep(gap)
                slot.downstream.probe(1)
            await asyncio.sleep(0.1)

    async def _run_adaptation(self) -> None:
        last_adapt = last_pad = time.monotonic()
        while True:
            await asyncio.sleep(PAD_INTERVAL if self.padding else ADAPT_INTERVAL)
            now = time.monotonic()
            if self.padding:
                self._pad(min(now - last_pad, 2 * ADAPT_INTERVAL))
            last_pad = now
            if now - last_adapt < ADAPT_INTERVAL:
                continue
            last_adapt = now
            if (
                self.send_side is None  # with transport-cc its estimator probes (_request_probes)
                and not self._probed
                and any(s.kind == "video" and s.downstream.packets_sent > 20 for s in self.slots)
            ):
                self._probed = True
                await self._probe()
            self.adapt(now)
            self._request_probes(now)
            if trace_logger.isEnabledFor(logging.DEBUG):
                self._trace(now)

    def _sent_counts(self) -> dict[str, int]:
        """Cumulative counts of what this connection sent, per kind (the trace's split; read, no per-packet work)."""
        counts = dict.fromkeys(("audio", "audio_p", "video", "video_p", "rtx", "rtx_p", "probe", "nack", "pli"), 0)
        for slot in self.slots:
            d = slot.downstream
            kind = "audio" if slot.kind == "audio" else "video"
            counts[kind] += hooks.sender_octets(slot.transceiver.sender) + d._unreported_octets
            counts[kind + "_p"] += d.packets_sent
            counts["rtx"] += d.octets_retransmitted
            counts["rtx_p"] += d.packets_retransmitted
            counts["probe"] += d.probe_octets
            counts["nack"] += slot.nacks_received
            counts["pli"] += slot.keyframe_requests_received
        counts["paced_drop"] = self.pacer.packets_dropped
        return counts

    def _trace(self, now: float) -> None:
        """One MEDIA_BWE_TRACE line: what was sent over the last interval, per kind, and the estimate (both modes).

        ``audio``/``video``: forwarded media, kbit/s on the wire (payload plus :data:`TRACE_MEDIA_OVERHEAD` a
        packet) / packets; ``rtx``: repairs (every copy) kbit/s / packets; ``probe``: padding kbit/s (REMB's
        padding and initial clusters, or transport-cc's clusters); ``nack``/``pli``: RTCP received; ``drop``:
        video the pacer refused. With transport-cc, ``sent`` is every packet the transport-wide sequence stamped.
        """
        counts = self._sent_counts()
        last = self._traced_split or dict.fromkeys(counts, 0)
        delta = {k: v - last.get(k, 0) for k, v in counts.items()}
        self._traced_split = counts

        def kbps(octets: int, packets: int, overhead: int) -> float:
            return (octets + packets * overhead) * 8 / 1000 / ADAPT_INTERVAL

        split = (
            f"audio={kbps(delta['audio'], delta['audio_p'], TRACE_MEDIA_OVERHEAD):.0f}k/{delta['audio_p']}p"
            f" video={kbps(delta['video'], delta['video_p'], TRACE_MEDIA_OVERHEAD):.0f}k/{delta['video_p']}p"
            f" rtx={kbps(delta['rtx'], delta['rtx_p'], TRACE_WIRE_OVERHEAD):.0f}k/{delta['rtx_p']}p"
            f" probe={kbps(delta['probe'], 0, 0):.0f}k nack={delta['nack']} pli={delta['pli']}"
            f" drop={delta['paced_drop']} pace={'-' if not self.pacer.active else f'{self.pacer.rate * 8 / 1000:.0f}k'}"
        )
        if self.send_side is not None:
            sent = self.send_side.bytes_sent
            trace_logger.debug(
                "%s: sent=%.0fk %s wanted=%.0fk %s",
                self.participant,
                (sent - self._traced_bytes) * 8 / 1000 / ADAPT_INTERVAL,
                split,
                self.wanted_bps / 1000,
                self.send_side.trace(),
            )
            self._traced_bytes = sent
        elif self.slots:
            e = self.estimate
            value = e.value(now)
            trace_logger.debug(
                "%s: remb %s wanted=%.0fk estimate=%s remb=%s loss=%.3f%s padding=%.0fk",
                self.participant,
                split,
                self.wanted_bps / 1000,
                "-" if value is None else f"{value / 1000:.0f}k",
                "-" if e.remb is None else f"{e.remb / 1000:.0f}k",
                e.loss,
                " congested" if e.congested(now) else "",
                self.padding / 1000,
            )

    def forwarded_packets(self) -> int:
        return sum(s.downstream.packets_sent for s in self.slots)

    def stalls(self, now: float, after: float) -> list[str]:
        """Describe each negotiated stream that sent nothing for ``after`` seconds while its source had packets.

        A video that adaptive quality paused (no layer fits the estimate) sends nothing on purpose: not a stall.

        Called by the room's watchdog; each stall is described once (again only
        after the stream flowed meanwhile). The description says which gate
        holds the packets back (not ready, waiting for a keyframe, codec
        missing, transport refusing), for the logs of a stuck call.
        """
        found = []
        for slot in self.slots:
            track = slot.attached
            if track is None or slot.track is not track or slot.paused_for_bandwidth:
                slot.stall_mark, slot.stall_reported = None, False
                continue
            d = slot.downstream
            layer = slot.forwarder or track.forwarder  # the simulcast layer being forwarded
            source, sent = layer.packets_in, d.packets_sent
            mark = slot.stall_mark
            if mark is None or sent != mark[2]:  # first look, or the stream flowed
                slot.stall_mark, slot.stall_reported = (now, source, sent), False
                continue
            if source == mark[1]:  # the source is silent too: not a stall of this stream
                slot.stall_mark = (now, source, sent)
                continue
            if now - mark[0] < after or slot.stall_reported:
                continue
            slot.stall_reported = True
            found.append(
                f"mid {slot.transceiver.mid} ({track.participant} {track.source}): {source - mark[1]} source packets,"
                f" none sent in {now - mark[0]:.1f} s; ready={d.ready} waiting_keyframe={d.waiting_keyframe}"
                f" missing_codec={d.missing_codec} dropped={d.packets_dropped}"
                f" keyframe_requests={layer.keyframe_requests} publisher_ssrc={track.receiver.media_ssrc if track.receiver else 'relayed'}"
                f" connection={self.pc.connectionState}"
            )
        return found

    async def close(self) -> None:
        """Stop forwarding to this subscriber and close the connection."""
        self._adapter.cancel()
        if self._probing is not None:
            self._probing.cancel()
        await asyncio.gather(self._adapter, *([self._probing] if self._probing else []), return_exceptions=True)
        self.pacer.close()
        for slot in self.slots:
            self._detach(slot)
            slot.downstream.release()  # its history would otherwise wait for a full GC cycle
        await self.pc.close()
