"""Peer connections of one participant: publish connections and the subscribe connection."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

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
from . import turn
from .config import Config
from .forwarder import Downstream, Forwarder
from .protocol import SOURCES, InvalidSdp, NoCommonCodec, StaleRevision, TrackInfo
from .rtputil import codec_key
from .sdp import announce_addresses, negotiated_by_mid, parse_sdp

logger = logging.getLogger(__name__)


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
    codecs: tuple[RTCRtpCodecParameters, ...] = ()
    """The negotiated codecs themselves (payload types of the publisher; no RTX): described to relay targets."""


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
        parse_sdp(offer_sdp)
        await asyncio.sleep(0)  # let queued media through between the ~1 ms SDP steps of a join
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=hooks.bundle_remote_candidates(offer_sdp), type="offer")
            )
        except OperationError as exc:
            # aiortc: "Failed to set remote <kind> description send parameters"
            raise NoCommonCodec(f"no common codec: {exc}") from exc
        except (ValueError, InvalidAccessError, InvalidStateError) as exc:
            raise InvalidSdp(f"offer rejected: {exc}") from exc
        # Hooks must be in place before aiortc calls receiver.receive() (next await).
        for transceiver in self.pc.getTransceivers():
            self._hook(transceiver, on_audio_level)
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
        await self.pc.setLocalDescription(answer)
        if dtls is not None:
            hooks.install_fast_demux(dtls)  # sockets exist once gathering (setLocalDescription) is done
        return announce_addresses(self.pc.localDescription.sdp, self.config.ice_announce)

    def _hook(self, transceiver: RTCRtpTransceiver, on_audio_level: Callable[[int], None] | None) -> None:
        kind = transceiver.kind
        if kind not in ("audio", "video") or transceiver.direction == "inactive":
            return
        source = SOURCES[(self.name, kind)]
        holder: list[hooks.ForwardingReceiver] = []

        def request_keyframe() -> None:
            holder[0].request_keyframe()

        forwarder = Forwarder(
            kind=kind,
            request_keyframe=request_keyframe,
            on_audio_level=on_audio_level if source == "microphone" else None,
        )
        receiver = hooks.ForwardingReceiver(transceiver.receiver, kind, forwarder.on_rtp)
        holder.append(receiver)
        self.tracks.append(
            PublishedTrack(self.participant, self.name, kind, source, forwarder, receiver, mid=transceiver.mid)
        )

    @property
    def sources(self) -> list[str]:
        return [t.source for t in self.tracks]

    async def close(self) -> None:
        """Stop forwarding and close the connection."""
        for track in self.tracks:
            for downstream in list(track.forwarder.downstreams):
                track.forwarder.detach(downstream)
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
    pending: bool = field(default=True)
    nacks_received: int = 0  # RTCP feedback from the subscriber (media_server/metrics.py)
    keyframe_requests_received: int = 0


class Subscriber:
    """The server-offered connection that carries everyone else's tracks.

    Renegotiation is serialized: at most one offer is outstanding; changes that
    arrive meanwhile set ``dirty`` and are offered after the answer.
    """

    def __init__(self, *, participant: str, config: Config, revision_base: int = 0) -> None:
        self.participant = participant
        self.config = config
        self.pc = new_peer_connection(config)
        self.slots: list[Slot] = []
        self.revision = revision_base
        self.outstanding: int | None = None
        self.dirty = False
        self.reoffers = 0  # consecutive offers replaced because the client did not answer
        self.forwarded_retired = 0

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

    async def offer(self, desired: list[PublishedTrack]) -> tuple[str, int, list[TrackInfo]]:
        """Assign ``desired`` tracks to m-lines (reusing freed ones) and create an offer."""
        desired_ids = {id(t) for t in desired}
        for slot in self.slots:
            if slot.track is not None and id(slot.track) not in desired_ids:
                self._detach(slot)
                slot.track = None
                slot.info = None
                slot.transceiver.direction = "inactive"
        assigned = {id(s.track) for s in self.slots if s.track}
        for track in desired:
            if id(track) in assigned:
                continue
            free = next((s for s in self.slots if s.track is None and s.kind == track.kind), None)
            slot = free if free is not None else self._new_slot(track.kind)
            slot.track = track
            slot.transceiver.direction = "sendonly"
        offer = await self.pc.createOffer()
        await asyncio.sleep(0)  # let queued media through between the ~1 ms SDP steps of a join
        await self.pc.setLocalDescription(offer)
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
        return sdp, self.revision, tracks

    def _new_slot(self, kind: str) -> Slot:
        transceiver = self.pc.addTransceiver(hooks.IdleTrack(kind), direction="sendonly")
        ssrc, rtx_ssrc = hooks.sender_ssrcs(transceiver.sender)
        sender = transceiver.sender
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

        async def on_feedback(kind_: str, lost: list[int]) -> None:
            if kind_ == "nack":
                slot.nacks_received += 1
                downstream.retransmit(lost)
            else:
                slot.keyframe_requests_received += 1
                if slot.attached is not None:
                    slot.attached.forwarder.request_keyframe()

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
        description = parse_sdp(answer_sdp) if "m=" in answer_sdp else None
        await asyncio.sleep(0)
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=hooks.bundle_remote_candidates(answer_sdp), type="answer")
            )
        except (ValueError, OperationError, InvalidAccessError, InvalidStateError) as exc:
            raise InvalidSdp(f"answer rejected: {exc}") from exc
        self.outstanding = None
        self.reoffers = 0
        negotiated = negotiated_by_mid(description) if description else {}
        missing: list[tuple[TrackInfo, str]] = []
        for slot in self.slots:
            if slot.track is None:
                continue
            mid = slot.transceiver.mid
            params = negotiated.get(mid or "")
            if params is None:
                continue
            slot.downstream.configure(
                pt_by_codec=params.pt_by_codec, rtx_pt_by_pt=params.rtx_pt_by_pt, ext_ids=params.ext_ids
            )
            slot.downstream.send = hooks.make_raw_sender(slot.transceiver.sender.transport)
            codec = slot.track.forwarder.codec
            key = codec_key(codec) if codec is not None else next(iter(slot.track.codec_keys), None)
            if key is not None and key not in params.pt_by_codec and slot.info is not None:
                missing.append((slot.info, key))
            if slot.attached is not slot.track:
                self._detach(slot)
                slot.track.forwarder.attach(slot.downstream)
                slot.attached = slot.track
            if self.pc.connectionState == "connected":
                self._make_ready(slot)
        return missing

    def _make_ready(self, slot: Slot) -> None:
        # Forward only once packets can actually leave: a keyframe "sent" into
        # a transport that is not connected yet would be lost.
        if slot.attached is not None and not slot.downstream.ready:
            slot.downstream.ready = True
            slot.attached.forwarder.request_keyframe(force=True)

    def _detach(self, slot: Slot) -> None:
        if slot.attached is not None:
            slot.attached.forwarder.detach(slot.downstream)
            slot.attached = None

    def forwarded_packets(self) -> int:
        return sum(s.downstream.packets_sent for s in self.slots)

    async def close(self) -> None:
        """Stop forwarding to this subscriber and close the connection."""
        for slot in self.slots:
            self._detach(slot)
        await self.pc.close()
