"""Every access to aiortc / aioice private internals lives in this module.

aiortc==1.16.0 and aioice==0.13.0 are pinned exactly; tests in
``tests/media_server/test_aiortc_hooks.py`` assert that each private attribute
or method used here still exists with the expected shape, so an upgrade fails
loudly instead of silently decoding (or silently dropping) media.

What we hook and why:

* ``aioice.ice.get_host_addresses`` (module global, the one documented piece of
  module-level state of the media server): aioice never gathers loopback and
  gathers *every* interface; we want exactly the configured addresses.
* ``aioice.ice.Connection.add_remote_candidate`` (class attribute, process
  global like the above) and its ``_remote_candidates_resolving`` counter: a
  browser's mDNS host candidate (``<uuid>.local``) is not resolved by multicast
  DNS but waited for as a peer-reflexive candidate learned from the browser's
  checks (:func:`set_mdns_candidates_learned`).
* ``aioice.ice.Connection.check_incoming`` (class attribute, process global)
  and ``aioice.stun.Transaction``'s private request, address and future: a
  check from the peer resends our own unanswered check on that path at once
  (:func:`set_in_progress_checks_resent`: ICE back right after a UDP outage).
* ``RTCRtpReceiver.receive`` / ``_handle_rtp_packet`` (per instance): the stock
  receiver starts a decoder thread and pushes every frame through a jitter
  buffer and a decoder. The SFU replaces both so packets are only forwarded.
* Simulcast (``SimulcastRoute``): aiortc neither answers nor parses RIDs. The
  transport's ``_rtp_header_extensions_map`` is told the publisher's
  rtp-stream-id / repaired-rtp-stream-id IDs, and the forwarding receiver
  splits the one m-line's SSRCs into layers by RID (NACK per SSRC, PLI per
  layer). An RTX packet is forwarded only if it fills a gap we NACKed (the
  publisher also pads over RTX with old packets); unknown SSRCs reach the
  receiver because aiortc's router falls back to the payload type.
* ``RTCRtpSender._handle_rtcp_packet`` (per instance): aiortc answers NACKs from
  its own history (empty, we never use its encoder) and turns PLI/FIR into
  "encode a keyframe" (we have no encoder). The SFU takes those over, and also
  reads REMB and receiver-report loss for its per-subscriber bandwidth estimate.
* Sender SR statistics and the DTLS/ICE transport's send path: forwarded
  packets bypass ``RTCRtpSender._run_rtp``; we send through SRTP + the
  nominated ICE pair synchronously and keep the sender's SR counters right.
* ``RTCRtpSender._run_rtcp`` (per instance, :class:`SenderReports`): aiortc
  wakes a task per sender about once a second to send that SSRC's SR; a
  subscribe connection has a sender per m-line, so one timer per connection
  sends all of them in compound packets instead.
* pylibsrtp's cffi internals (``Session._srtp``/``_cdata``, ``_srtp_assert``,
  ``_binding``): SRTP without its per-call wrapper; and for the optional C
  fast path ``_sfu_native`` (``native/sfu_native``, owned by this module)
  the libsrtp function pointers and ``srtp_t`` it calls. Without that module
  (or with ``MEDIA_NATIVE=0``) everything runs in Python, byte-identically.
  :data:`NATIVE` is also where ``forwarder.py`` takes its C fan-out from
  (``Fanout``, ``DownstreamCore``: no aiortc internals involved).
* Join-path CPU (process global, installed by ``python -m media_server``):
  ``aiortc.rtcpeerconnection.RTCCertificate`` (one certificate per process,
  :class:`SharedCertificate`), ``aiortc.sdp.SessionDescription.parse`` and
  ``aiortc.rtcpeerconnection.wrap_session_description`` (each SDP parsed once:
  :func:`set_sdp_reuse`, :func:`reuse_parsed`, :func:`set_local_offer`),
  ``aiortc.rtcrtpreceiver.RemoteBitrateEstimator`` (built lazily) and
  ``RTCRtpCodecParameters.__deepcopy__``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aioice
import aioice.ice
import aioice.mdns
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.sdp
import pylibsrtp
import pylibsrtp._binding
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint, RTCDtlsTransport, SRTPProtectionProfile, State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from OpenSSL import SSL

from . import twcc
from .publisher_remb import RembFloor

# --------------------------------------------------------------------------
# aioice host address hook (documented module-level state)
# --------------------------------------------------------------------------

_ORIGINAL_GET_HOST_ADDRESSES = aioice.ice.get_host_addresses
_ORIGINAL_ADD_REMOTE_CANDIDATE = aioice.ice.Connection.add_remote_candidate
_ORIGINAL_CHECK_INCOMING = aioice.ice.Connection.check_incoming
_ORIGINAL_BITRATE_ESTIMATOR = aiortc.rtcrtpreceiver.RemoteBitrateEstimator
_NTP_EPOCH = 2208988800  # seconds from 1900-01-01 to 1970-01-01
MAX_SEND_BUFFER = 64 * 1024  # bytes queued in asyncio for one peer before media packets are dropped
MAX_DRAIN = 32  # extra datagrams read from one ICE socket per event-loop wake-up
_SRTP_MAX_TRAILER_LEN = pylibsrtp.SRTP_MAX_TRAILER_LEN  # type: ignore[attr-defined]
_SRTP_MAX_SRTCP_TRAILER_LEN = pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN  # type: ignore[attr-defined]
SR_PER_PACKET = 15  # sender reports (each with its SDES CNAME chunk) per compound RTCP packet: ~1.1 kB

logger = logging.getLogger(__name__)
trace_logger = logging.getLogger("media_server.bwe")  # MEDIA_BWE_TRACE=1: the REMB sent to publishers too


def _load_native() -> Any:
    """The optional C fast path (``native/sfu_native``, module ``_sfu_native``), or None.

    Installed by ``make venv`` (requirements.txt); when it is missing (or
    ``MEDIA_NATIVE=0``) the pure-Python path below is used: same bytes on the
    wire, only slower (tests/media_server/test_aiortc_hooks.py compares them).
    """
    if os.environ.get("MEDIA_NATIVE", "1") == "0":
        return None
    try:
        return importlib.import_module("_sfu_native")
    except ImportError:
        return None


NATIVE: Any = _load_native()
"""``_sfu_native`` or None: chosen once at import (read-only afterwards)."""

_SRTP_OPERATIONS = {  # operation -> (libsrtp function name, trailer room the buffer needs)
    "protect": ("srtp_protect", _SRTP_MAX_TRAILER_LEN),
    "protect_rtcp": ("srtp_protect_rtcp", _SRTP_MAX_SRTCP_TRAILER_LEN),
    "unprotect": ("srtp_unprotect", 0),
    "unprotect_rtcp": ("srtp_unprotect_rtcp", 0),
}


def _native_srtp_args(session: pylibsrtp.Session, operation: str) -> dict[str, Any]:
    """What ``_sfu_native`` needs to run ``operation`` on ``session`` from C.

    pylibsrtp links libsrtp statically into its cffi module: the function
    pointer comes from that module (``ffi.addressof(lib, name)``), so the C
    path runs exactly the libsrtp that ``Session.protect`` runs. ``srtp_t`` is
    ``session._srtp[0]``; the session is kept alive by the C object.
    """
    ffi, lib = pylibsrtp._binding.ffi, pylibsrtp._binding.lib
    name, trailer = _SRTP_OPERATIONS[operation]
    return {
        "function": int(ffi.cast("uintptr_t", ffi.addressof(lib, name))),
        "context": int(ffi.cast("uintptr_t", session._srtp[0])),  # type: ignore[attr-defined]
        "keepalive": session,
        "limit": len(session._cdata) - trailer,  # type: ignore[attr-defined]  # same limit as pylibsrtp
        "check": pylibsrtp._srtp_assert,  # type: ignore[attr-defined]  # raises pylibsrtp.Error for a libsrtp code
    }


def srtp_processor(session: pylibsrtp.Session, operation: str, native: Any = NATIVE) -> Callable[[bytes], bytes]:
    """A cheaper ``session.<operation>(data)`` ("protect", "protect_rtcp", "unprotect", "unprotect_rtcp").

    pylibsrtp's ``Session.__process`` allocates a cffi ``int *`` and re-checks
    the argument type on every call; this binds the session's C handle, its
    1500-byte work buffer and one length cell once. Same C calls, same result
    (``bytes``), same errors (``pylibsrtp.Error`` / ``ValueError``). With
    ``native`` (the ``_sfu_native`` module) the call is one C function.
    """
    if native is not None:
        return native.SrtpProcessor(**_native_srtp_args(session, operation))  # type: ignore[no-any-return]
    lib = pylibsrtp._binding.lib
    name, trailer = _SRTP_OPERATIONS[operation]
    func = getattr(lib, name)
    cdata = session._cdata  # type: ignore[attr-defined]
    buffer = session._buffer  # type: ignore[attr-defined]
    srtp = session._srtp[0]  # type: ignore[attr-defined]
    limit = len(cdata) - trailer
    length = pylibsrtp._binding.ffi.new("int *")
    check = pylibsrtp._srtp_assert  # type: ignore[attr-defined]

    def process(data: bytes) -> bytes:
        n = len(data)
        if n > limit:
            raise ValueError("packet is too long")
        length[0] = n
        buffer[0:n] = data
        rc = func(srtp, cdata, length)
        if rc:
            check(rc)
        return buffer[0 : length[0]]  # type: ignore[no-any-return]

    process.session = session  # type: ignore[attr-defined]  # keeps the C handle alive
    return process


def set_ice_host_addresses(addresses: Sequence[str] | None) -> None:
    """Make every ICE agent in this process gather exactly ``addresses``.

    ``None`` or an empty sequence restores aioice's default gathering (all
    non-loopback interfaces). Loopback addresses are allowed. This is process
    global because aioice looks the function up as a module global.
    """
    if not addresses:
        aioice.ice.get_host_addresses = _ORIGINAL_GET_HOST_ADDRESSES  # type: ignore[attr-defined]
        return
    fixed = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# mDNS host candidates: learned from the browser's checks, never resolved
# --------------------------------------------------------------------------

MDNS_LEARN_SECONDS = 10.0  # how long a connection whose peer offered only mDNS names waits for its checks


def _hold_end_of_candidates(connection: aioice.ice.Connection, seconds: float) -> None:
    """Keep ``connection`` from treating the remote candidates as complete for ``seconds``.

    Uses aioice's own "an mDNS name is being resolved" counter
    (``_remote_candidates_resolving``): while it is non-zero, end-of-candidates is
    deferred, ``connect()`` keeps its check loop running and does not report
    failure, so the first incoming check creates a peer-reflexive candidate
    (RFC 8445 §7.3.1.3) whose pair is checked and nominated as usual. When the
    hold ends, a deferred end-of-candidates is applied: with no check received
    meanwhile, ICE fails then (not at once). One hold per connection.
    """
    if getattr(connection, "_conference_mdns_hold", False):
        return
    connection._conference_mdns_hold = True  # type: ignore[attr-defined]
    connection._remote_candidates_resolving += 1

    def release() -> None:
        connection._remote_candidates_resolving -= 1
        if (
            connection._remote_candidates_end
            and not connection._remote_candidates_resolving
            and not connection._closing
        ):
            connection._end_remote_candidates()

    asyncio.get_running_loop().call_later(seconds, release)


def _learning_add_remote_candidate(seconds: float) -> Callable[..., Awaitable[None]]:
    original = _ORIGINAL_ADD_REMOTE_CANDIDATE

    async def add_remote_candidate(self: aioice.ice.Connection, remote_candidate: aioice.Candidate | None) -> None:
        if (
            remote_candidate is None
            or not aioice.mdns.is_mdns_hostname(remote_candidate.host)
            or self._remote_candidates_end
            or self._closing
            or self._transport_policy != aioice.ice.TransportPolicy.ALL
        ):
            await original(self, remote_candidate)  # aioice raises/ignores as documented in those cases
            return
        logger.debug(
            "ICE: remote mDNS candidate %s: learning its address from the peer's checks", remote_candidate.host
        )
        _hold_end_of_candidates(self, seconds)

    add_remote_candidate.conference_hook = True  # type: ignore[attr-defined]
    return add_remote_candidate


def set_mdns_candidates_learned(enabled: bool = True, *, seconds: float = MDNS_LEARN_SECONDS) -> None:
    """Never resolve a remote ``<uuid>.local`` candidate; learn the peer's address from its checks (process global).

    Browsers hide their host addresses behind mDNS names unless the page has a
    capture permission (Firefox by default; Chromium too); with no STUN server
    those are their only candidates. aioice would resolve each name by multicast
    DNS from the media server (1 s timeout each, inside ``setRemoteDescription``),
    which only works on the browser's own link -- never for a server, and it would
    send multicast onto whatever network the server sits on. Unresolved, the name
    is dropped, and once end-of-candidates arrives aioice prunes the component
    and fails ICE at once, before the browser's first check arrives.

    Instead, a connection given an mDNS candidate waits (up to ``seconds``) for the
    browser's connectivity checks, which reach our host candidate from the
    browser's real address: a peer-reflexive candidate (RFC 8445 §7.3.1.3,
    draft-ietf-mmusic-mdns-ice-candidates §3.3.2: a peer that cannot resolve the
    name relies on peer-reflexive candidates). ``False`` restores aioice's resolving.
    """
    method = _learning_add_remote_candidate(seconds) if enabled else _ORIGINAL_ADD_REMOTE_CANDIDATE
    aioice.ice.Connection.add_remote_candidate = method  # type: ignore[method-assign,assignment]


def _check_incoming_resending(self: aioice.ice.Connection, message: Any, addr: tuple[str, int], protocol: Any) -> None:
    _ORIGINAL_CHECK_INCOMING(self, message, addr, protocol)
    for transaction in list(protocol.transactions.values()):
        future = transaction._Transaction__future
        if transaction._Transaction__addr == addr and not future.done():
            protocol.send_stun(transaction._Transaction__request, addr)


def set_in_progress_checks_resent(enabled: bool = True) -> None:
    """A check from the peer on a pair whose own check is still unanswered resends that check at once (process global).

    aioice starts a triggered check only for a frozen, waiting or failed pair (RFC 8445 §7.3.1.4 also asks
    to redo one in progress); an in-progress check waits out its STUN retransmission timer, which doubles
    from 0.5 s. A connection negotiated while UDP was dropped (an outage: the page rebuilds its connections
    on a live socket) had its checks backed off to 2-4 s apart when UDP came back: the browser's checks got
    through at once and it said ICE `connected`, but our side finished ICE (and started DTLS) only at our
    next retransmission, 0.2-2 s later (issue 16). The peer's check proves the path works now, so the
    pending request goes out again right away (the same transaction: its answer completes it; the timer
    and retry count are untouched). ``False`` restores aioice's behaviour.
    """
    method = _check_incoming_resending if enabled else _ORIGINAL_CHECK_INCOMING
    aioice.ice.Connection.check_incoming = method  # type: ignore[method-assign]


def bundle_remote_candidates(sdp: str) -> str:
    """Give every m-line of the remote SDP's BUNDLE group the tagged m-line's candidates.

    With max-bundle, aiortc's ``setRemoteDescription`` keeps the candidates of
    only the *last* m-line for the shared ICE transport
    (``iceCandidates[iceTransport] = media`` is overwritten per m-line). A
    browser offer gathers one port per m-line, and after BUNDLE the browser
    keeps only the first (tagged) m-line's port: aiortc would check (and may
    succeed on, until the answer lands) a port the browser is about to drop,
    and only learns the real one as a peer-reflexive candidate. Copying the
    tagged m-line's candidate lines to the other bundled m-lines makes aiortc
    use the right ones. SDPs without a BUNDLE group are returned unchanged.
    """
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailing = lines[-1] == ""
    if trailing:
        lines.pop()
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    session, media = sections[0], sections[1:]
    group = next((line.split()[1:] for line in session if line.startswith("a=group:BUNDLE ")), [])
    mids = [next((line[6:] for line in m if line.startswith("a=mid:")), None) for m in media]
    if not group or group[0] not in mids:
        return sdp

    def is_candidate(line: str) -> bool:
        return line.startswith(("a=candidate:", "a=end-of-candidates"))

    tagged = [line for line in media[mids.index(group[0])] if is_candidate(line)]
    if not tagged:
        return sdp
    out = list(session)
    for mid, section in zip(mids, media, strict=True):
        if mid in group and mid != group[0]:
            section = [line for line in section if not is_candidate(line)] + tagged
        out.extend(section)
    return eol.join(out) + (eol if trailing else "")


# --------------------------------------------------------------------------
# Publisher side: a receiver that forwards instead of decoding
# --------------------------------------------------------------------------

RtpHandler = Callable[[RtpPacket, RTCRtpCodecParameters], None]
"""Called synchronously for every (RTX-unwrapped) media packet."""


RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


@dataclass(frozen=True)
class SimulcastRoute:
    """How to split one simulcast m-line into layers.

    ``rids`` lowest quality first (the publisher's order); ``handlers[i]`` gets
    layer ``i``'s packets; the extension IDs are the publisher's.
    """

    rids: tuple[str, ...]
    handlers: tuple[RtpHandler, ...]
    rid_ext_id: int
    rrid_ext_id: int = 0


def _repairs(nack: NackGenerator, seq: int) -> bool:
    """True if a retransmitted ``seq`` is one this stream misses (or has not seen yet)."""
    if seq in nack.missing or nack.max_seq is None:
        return True
    return 0 < (seq - nack.max_seq) & 0xFFFF < 0x8000


class ForwardingReceiver:
    """Turns one publisher ``RTCRtpReceiver`` into a packet source.

    Keeps what the receiver does for the *publisher's* sake (RTCP receiver
    reports, NACK generation, REMB, RTX unwrapping) and replaces the jitter
    buffer + decoder thread with a synchronous callback. Must be installed
    before aiortc calls ``receiver.receive()`` (i.e. right after
    ``setRemoteDescription`` returns, before the next ``await``).
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        kind: str,
        on_rtp: RtpHandler,
        *,
        simulcast: SimulcastRoute | None = None,
    ) -> None:
        self.receiver = receiver
        self.kind = kind
        self.on_rtp = on_rtp
        self.simulcast = simulcast
        self.layer_ssrcs: dict[int, int] = {}  # simulcast: media SSRC -> layer index (learned from the RID)
        self._layer_handlers: dict[int, RtpHandler] = {}  # simulcast: media SSRC -> its layer's handler
        self._layer_nacks: dict[int, NackGenerator] = {}
        self.codecs: dict[int, RTCRtpCodecParameters] = {}
        self.rtx_ssrc: dict[int, int] = {}
        self.rtx_pts: set[int] = set()
        self.media_ssrc: int | None = None
        self.packets = 0
        self.rtx_packets = 0
        self.rtx_duplicates = 0
        """RTX packets dropped because they repair nothing: the publisher's padding probes (Chromium pads
        by resending recent packets over RTX) or answers to a NACK already filled. Forwarding them cost every
        subscriber bandwidth and could hand a layer switch a stale keyframe."""
        self.started = False
        self._nack = NackGenerator() if kind == "video" else None
        self._rtcp_send: Callable[[bytes], bool] | None = None
        self.native_receive: Any = None
        """The transport's ``_sfu_native.RtpReceive`` (set by :func:`install_fast_receive`): streams in the steady
        state are registered there (:meth:`_offer_native`) and then handled in C."""
        self._streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
        self.remb_floor = RembFloor()
        receiver.receive = self._receive  # type: ignore[method-assign]
        receiver._handle_rtp_packet = self._handle_rtp_packet  # type: ignore[method-assign]

    async def _receive(self, parameters: RTCRtpReceiveParameters) -> None:
        # Same as RTCRtpReceiver.receive() minus the decoder thread.
        if self.started:
            return
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                self.codecs[codec.payloadType] = codec
                if is_rtx(codec):
                    self.rtx_pts.add(codec.payloadType)
        for encoding in parameters.encodings:
            if encoding.rtx:
                self.rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        r = self.receiver
        r.transport._register_rtp_receiver(r, parameters)
        route = self.simulcast
        if route is not None:
            # aiortc answers without the RID extensions: parse them anyway (the SFU munges them into the answer).
            r.transport._rtp_header_extensions_map.configure(
                RTCRtpParameters(
                    headerExtensions=[
                        RTCRtpHeaderExtensionParameters(id=route.rid_ext_id, uri=RTP_STREAM_ID_URI),
                        *(
                            [RTCRtpHeaderExtensionParameters(id=route.rrid_ext_id, uri=REPAIRED_RTP_STREAM_ID_URI)]
                            if route.rrid_ext_id
                            else []
                        ),
                    ]
                )
            )
        r._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(r._run_rtcp())  # type: ignore[attr-defined]
        r._RTCRtpReceiver__started = True  # type: ignore[attr-defined]
        self.started = True

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        # aiortc's (queued, awaited) path; used until the fast path takes over.
        self.handle_rtp(packet, arrival_time_ms)

    def handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """Process one decrypted RTP packet synchronously (hot path).

        Same bookkeeping as ``RTCRtpReceiver._handle_rtp_packet`` for the
        publisher's sake (stats for RTCP RR, REMB, NACK), then ``on_rtp``.
        RTCP feedback is sent synchronously through SRTCP.
        """
        if self._estimator is not None:
            abs_send_time = packet.extensions.abs_send_time
            if abs_send_time is not None:
                self._estimate(abs_send_time, arrival_time_ms, len(packet.payload) + packet.padding_size, packet.ssrc)
        codec = self.codecs.get(packet.payload_type)
        if codec is None:
            return
        stats = self._streams.get(packet.ssrc)
        if stats is None:
            stats = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if packet.payload_type in self.rtx_pts:
            original_ssrc = self.rtx_ssrc.get(packet.ssrc)
            if original_ssrc is None and self.simulcast is not None:
                original_ssrc = self._learn_rtx(packet)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int) or apt not in self.codecs:
                return  # includes RTX padding probes
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self.codecs[apt]
            self.rtx_packets += 1
            recovered = True
        else:
            recovered = False
        if self.simulcast is not None:
            self._handle_layer(packet, codec, recovered)
            return
        nack = self._nack
        if recovered and (nack is None or not _repairs(nack, packet.sequence_number)):
            self.rtx_duplicates += 1
            return
        self.media_ssrc = packet.ssrc
        self.packets += 1
        if nack is not None and nack.add(packet):
            self._send_nack(packet.ssrc, nack)
        if packet.payload:
            self.on_rtp(packet, codec)
        if self.native_receive is not None and not recovered and packet.ssrc not in self.native_receive.streams:
            self._offer_native(packet, nack, self.on_rtp, vars(self), "on_rtp")

    def _estimate(self, abs_send_time: int, arrival_time_ms: int, payload_size: int, ssrc: int) -> None:
        """Feed aiortc's receive-side bandwidth estimator; send the REMB it asks for."""
        remb = self._estimator.add(
            abs_send_time=abs_send_time, arrival_time_ms=arrival_time_ms, payload_size=payload_size, ssrc=ssrc
        )
        rtcp_ssrc = self.receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if rtcp_ssrc is not None and remb is not None:
            # Not below what arrives intact (a busy event loop's late arrival stamps read as a queue).
            streams = self._streams.values()
            bitrate = self.remb_floor.apply(
                now=arrival_time_ms / 1000,
                remb_bps=remb[0],
                incoming_bps=self._estimator.incoming_bitrate.rate(arrival_time_ms),
                expected=sum(s.packets_expected for s in streams),
                received=sum(s.packets_received for s in streams),
            )
            if trace_logger.isEnabledFor(logging.DEBUG):
                trace_logger.debug("publisher REMB %.0fk (aiortc %.0fk, ssrc %s)", bitrate / 1000, remb[0] / 1000, ssrc)
            self._send_rtcp(
                bytes(
                    RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, remb[1]))
                )
            )

    def _offer_native(
        self, packet: RtpPacket, nack: NackGenerator | None, handler: RtpHandler, guard: dict[Any, Any], key: Any
    ) -> None:
        """Let the C receive path (``_sfu_native.RtpReceive``) take this media SSRC's next packets.

        Only for a handler that is an unmodified ``Forwarder.on_rtp`` with the C fan-out (it says so with
        ``accepts_native_receive()``), after a packet of the SSRC went through this Python path (so its
        statistics and NACK state exist). The C path re-checks per packet that ``guard[key]`` is still
        ``handler`` and that aiortc's router still routes the SSRC and payload type to this receiver; every
        packet outside the steady state comes back to :meth:`handle_rtp`.
        """
        if type(self).handle_rtp is not _HANDLE_RTP:
            return  # handle_rtp is wrapped (a test's loss simulation): every packet must reach it
        target = getattr(handler, "__self__", None)
        accepts = getattr(target, "accepts_native_receive", None)
        if accepts is None or getattr(handler, "__func__", None) is not getattr(type(target), "on_rtp", None):
            return
        if not accepts():
            return
        stats = self._streams.get(packet.ssrc)
        if stats is None:
            return
        self.native_receive.streams[packet.ssrc] = (
            self.receiver,
            packet.payload_type,
            vars(self),
            vars(stats),
            vars(nack) if nack is not None else None,
            vars(target),
            target,
            self._estimate if self._estimator is not None else None,
            functools.partial(self._send_nack, packet.ssrc, nack) if nack is not None else None,
            guard,
            key,
            handler,
        )

    def _learn_layer(self, packet: RtpPacket) -> int | None:
        route = self.simulcast
        rid = packet.extensions.rtp_stream_id
        if route is None or rid not in route.rids:
            return None  # Chromium puts the RID on a stream's first packets; without it we cannot place the SSRC
        layer = route.rids.index(rid)
        for ssrc, known in list(self.layer_ssrcs.items()):
            if known == layer:  # the publisher restarted this layer with a new SSRC
                del self.layer_ssrcs[ssrc]
                self._layer_handlers.pop(ssrc, None)
                self._layer_nacks.pop(ssrc, None)
                if self.native_receive is not None:
                    self.native_receive.streams.pop(ssrc, None)
        self.layer_ssrcs[packet.ssrc] = layer
        self._layer_handlers[packet.ssrc] = route.handlers[layer]
        self._layer_nacks[packet.ssrc] = NackGenerator()
        return layer

    def _learn_rtx(self, packet: RtpPacket) -> int | None:
        route = self.simulcast
        rid = packet.extensions.repaired_rtp_stream_id
        if route is None or rid not in route.rids:
            return None
        layer = route.rids.index(rid)
        media = next((ssrc for ssrc, known in self.layer_ssrcs.items() if known == layer), None)
        if media is not None:
            self.rtx_ssrc[packet.ssrc] = media
        return media

    def _handle_layer(self, packet: RtpPacket, codec: RTCRtpCodecParameters, recovered: bool = False) -> None:
        handler = self._layer_handlers.get(packet.ssrc)
        if handler is None:
            if recovered or self._learn_layer(packet) is None:
                return
            handler = self._layer_handlers[packet.ssrc]
        nack = self._layer_nacks[packet.ssrc]
        if recovered and not _repairs(nack, packet.sequence_number):
            self.rtx_duplicates += 1
            return
        self.media_ssrc = packet.ssrc
        self.packets += 1
        if nack.add(packet):
            self._send_nack(packet.ssrc, nack)
        if packet.payload:
            handler(packet, codec)
        if self.native_receive is not None and not recovered and packet.ssrc not in self.native_receive.streams:
            self._offer_native(packet, nack, handler, self._layer_handlers, packet.ssrc)

    def _send_nack(self, media_ssrc: int, nack: NackGenerator) -> None:
        rtcp_ssrc = self.receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if rtcp_ssrc is not None:
            feedback = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=rtcp_ssrc, media_ssrc=media_ssrc)
            feedback.lost = sorted(nack.missing)
            self._send_rtcp(bytes(feedback))

    def _send_rtcp(self, data: bytes) -> bool:
        if self._rtcp_send is None:
            self._rtcp_send = make_raw_sender(self.receiver.transport, rtcp=True)
        return self._rtcp_send(data)

    def decoder_running(self) -> bool:
        """True if aiortc's decoder thread exists for this receiver (it must not)."""
        return self.receiver._RTCRtpReceiver__decoder_thread is not None  # type: ignore[attr-defined,no-any-return]

    def request_keyframe(self, layer: int | None = None) -> bool:
        """Send a PLI for the publisher's media SSRC (of simulcast ``layer``) now (synchronously).

        Returns False (nothing sent) before media (of that layer) arrived or when not connected.
        """
        rtcp_ssrc = self.receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        ssrc = self.media_ssrc
        if layer is not None and self.simulcast is not None:
            ssrc = next((s for s, known in self.layer_ssrcs.items() if known == layer), None)
        if ssrc is None or rtcp_ssrc is None:
            return False
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=rtcp_ssrc, media_ssrc=ssrc)
        return self._send_rtcp(bytes(packet))


_HANDLE_RTP = ForwardingReceiver.handle_rtp


def _extension_ids(extensions_map: Any) -> tuple[int | None, ...]:
    """The header extension IDs aiortc's ``HeaderExtensionsMap`` parses, in its ``get`` order."""
    ids = extensions_map._HeaderExtensionsMap__ids
    return (
        ids.mid,
        ids.repaired_rtp_stream_id,
        ids.rtp_stream_id,
        ids.abs_send_time,
        ids.transmission_offset,
        ids.audio_level,
        ids.transport_sequence_number,
    )


def install_fast_receive(dtls: RTCDtlsTransport, receivers: Sequence[ForwardingReceiver], native: Any = NATIVE) -> None:
    """Handle SRTP media of ``dtls`` synchronously as datagrams arrive.

    aiortc queues every datagram (``aioice.Connection.data_received`` ->
    ``asyncio.Queue``) and a task per transport awaits it, unprotects it in
    ``RTCDtlsTransport._recv_next``, parses it and awaits the receiver: a task
    wake-up and several coroutine frames per packet. Once the transport is
    connected we take SRTP (not SRTCP, not DTLS/STUN, which keep aiortc's path)
    straight from the ICE connection's ``data_received`` callback: unprotect,
    parse, route, and call :meth:`ForwardingReceiver.handle_rtp`. Counters
    used for silence detection are kept.

    With ``native`` (``_sfu_native``) a ``RtpReceive`` does all of that, and
    ``Forwarder.on_rtp``'s fan-out, in one C call for streams in the steady
    state (the receivers register them, :meth:`ForwardingReceiver._offer_native`);
    it hands every other packet back to this Python path, unprotected or not.
    The C object is ``data_received.native_receive`` (``install_fast_demux``
    calls it straight from the socket callback), the Python path for a packet
    it unprotected ``data_received.handle_plain``.
    """
    connection = dtls.transport._connection
    queue_datagram = connection.data_received
    by_receiver: dict[object, ForwardingReceiver] = {hook.receiver: hook for hook in receivers}
    router = dtls._rtp_router
    extensions_map = dtls._rtp_header_extensions_map
    connected = State.CONNECTED
    parse = RtpPacket.parse
    srtp_error = pylibsrtp.Error
    unprotect: list[Any] = [None, None]  # (session, its srtp_processor)
    fast: Any = native.RtpReceive() if native is not None else None
    if fast is not None:
        for hook in receivers:
            hook.native_receive = fast
        configure_extensions = extensions_map.configure

        def configure(parameters: RTCRtpParameters) -> None:
            configure_extensions(parameters)
            fast.set_extension_ids(_extension_ids(extensions_map))

        extensions_map.configure = configure  # type: ignore[method-assign]
        fast.set_extension_ids(_extension_ids(extensions_map))

    def handle_plain(data: bytes) -> None:
        try:
            packet = parse(data, extensions_map)
        except ValueError:
            return
        receiver = router.route_rtp(packet)
        hook = by_receiver.get(receiver) if receiver is not None else None
        if hook is not None:
            # Same base as aiortc's clock.current_ms() (ms since the NTP epoch), without datetime.
            hook.handle_rtp(packet, int((time.time() + _NTP_EPOCH) * 1000))

    def python_path(data: bytes, component: int) -> None:
        rx = dtls._rx_srtp
        if (
            rx is None
            or dtls._state is not connected
            or len(data) < 12
            or not 127 < data[0] < 192
            or 191 < data[1] < 209
        ):
            queue_datagram(data, component)  # DTLS, SRTCP, or not connected yet: aiortc's path
            return
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        if rx is not unprotect[0]:
            unprotect[:] = [rx, srtp_processor(rx, "unprotect", native)]
            if fast is not None:
                fast.configure(
                    **_native_srtp_args(rx, "unprotect"),
                    items=((vars(dtls), "_state", connected), (vars(dtls), "_rx_srtp", rx)),
                    counters=vars(dtls),
                    packets_key="_RTCDtlsTransport__rx_packets",
                    bytes_key="_RTCDtlsTransport__rx_bytes",
                    ssrc_table=router.ssrc_table,
                    payload_type_table=router.payload_type_table,
                )
        try:
            data = unprotect[1](data)
        except (srtp_error, ValueError):
            return
        handle_plain(data)

    if fast is None:
        connection.data_received = python_path  # type: ignore[method-assign]
        return

    data_received: Any = _native_first(fast, python_path, handle_plain)
    data_received.native_receive = fast  # type: ignore[attr-defined]
    data_received.handle_plain = handle_plain  # type: ignore[attr-defined]
    data_received.python_path = python_path  # type: ignore[attr-defined]
    connection.data_received = data_received  # type: ignore[method-assign]


def _run_now(coroutine: Any, tasks: set[asyncio.Future[Any]]) -> None:
    """Run ``coroutine`` synchronously up to its first suspension; a task finishes it if it suspends.

    aiortc's RTCP handlers are coroutines that (for what the SFU receives) never suspend, so a task per
    packet is pure overhead; should one suspend, it continues as a task (kept in ``tasks`` until done).
    """
    try:
        yielded = coroutine.send(None)
    except StopIteration:
        return
    task = asyncio.ensure_future(_finish(_Resumed(coroutine, yielded)))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


class _Resumed:
    """Awaitable that continues a coroutine already started by :func:`_run_now` (first yielded ``first``)."""

    def __init__(self, coroutine: Any, first: Any) -> None:
        self.coroutine = coroutine
        self.first = first

    def __await__(self) -> Any:
        value = self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown in by the task (cancellation): pass it on
                try:
                    value = self.coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = self.coroutine.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(resumed: _Resumed) -> Any:
    return await resumed


def _fast_rtcp(
    dtls: RTCDtlsTransport, previous: Callable[[bytes, int], None], native: Any
) -> Callable[[bytes, int], None]:
    """``data_received`` that handles SRTCP of a connected ``dtls`` synchronously, everything else via ``previous``.

    aiortc's path for an SRTCP datagram is the one of RTP before :func:`install_fast_receive`: queue,
    task wake-up, ``_recv_next``, unprotect, ``_handle_rtcp_data`` with an await per recipient. Here:
    the same counters, unprotect, ``RtcpPacket.parse``, ``RtpRouter.route_rtcp`` and each recipient's
    ``_handle_rtcp_packet`` (hooked senders: :func:`hook_sender_feedback`) run from the datagram callback.
    Transport-cc feedback (RTPFB FMT 15, which aiortc would parse as a NACK) is taken out of the compound
    packet first and handed, raw, to the connection's handler (``data_received.feedback[0]``, set by
    :func:`install_fast_demux`) if it has one.
    """
    router = dtls._rtp_router
    connected = State.CONNECTED
    parse = RtcpPacket.parse
    srtp_error = pylibsrtp.Error
    unprotect: list[Any] = [None, None]  # (session, its srtp_processor)
    suspended: set[asyncio.Future[Any]] = set()  # handlers that did suspend (none of aiortc 1.16's do)
    feedback: list[Callable[[list[bytes]], None] | None] = [None]
    split = twcc.split_feedback

    def data_received(data: bytes, component: int) -> None:
        rx = dtls._rx_srtp
        if rx is None or dtls._state is not connected or len(data) < 2 or not 191 < data[1] < 209:
            previous(data, component)
            return
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        if rx is not unprotect[0]:
            unprotect[:] = [rx, srtp_processor(rx, "unprotect_rtcp", native)]
        try:
            plain = unprotect[1](data)
        except srtp_error:
            return
        handler = feedback[0]
        if handler is not None:
            found, plain = split(plain)
            if found:
                try:
                    handler(found)
                except Exception:  # the estimator's bug must not cost the connection its other feedback
                    logger.exception("transport-cc feedback handler failed")
                if not plain:
                    return
        try:
            packets = parse(plain)
        except ValueError:
            return
        for packet in packets:
            for recipient in router.route_rtcp(packet):
                _run_now(recipient._handle_rtcp_packet(packet), suspended)

    data_received.feedback = feedback  # type: ignore[attr-defined]
    return data_received


def _native_first(
    native_receive: Any, python_path: Callable[[bytes, int], None], handle_plain: Callable[[bytes], None]
) -> Callable[[bytes, int], None]:
    """``data_received`` that offers each datagram to the C ``RtpReceive`` first.

    It answers ``True`` (handled), ``False`` (not taken, nothing changed: ``python_path`` gets the datagram as it
    came) or the plaintext it unprotected for a packet outside the steady state (``handle_plain``).
    """

    def data_received(data: bytes, component: int) -> None:
        got = native_receive(data)
        if got is False:
            python_path(data, component)
        elif got is not True:
            handle_plain(got)

    return data_received


def install_fast_demux(
    dtls: RTCDtlsTransport,
    native: Any = NATIVE,
    on_transport_feedback: Callable[[list[bytes]], None] | None = None,
) -> None:
    """Skip aioice's STUN parse attempt for RTP/RTCP datagrams of ``dtls``'s ICE sockets.

    ``aioice.StunProtocol.datagram_received`` tries ``stun.parse_message`` on
    every datagram and treats the ValueError as "not STUN". RFC 7983
    demultiplexing by the first byte (128..191 = RTP/RTCP) makes that
    exception per media packet unnecessary. Call after ICE gathering
    (``setLocalDescription``): it hooks the sockets gathered so far.

    After each datagram asyncio read, up to :data:`MAX_DRAIN` more queued
    datagrams are read in the same callback; with ``native`` (``_sfu_native``)
    the "nothing queued" answer is ``None`` instead of a ``BlockingIOError``.
    SRTCP of the connected transport is handled synchronously (:func:`_fast_rtcp`),
    and a publisher's RTP goes straight to :func:`install_fast_receive`'s C
    ``RtpReceive`` when there is one. ``on_transport_feedback`` (a subscribe connection's estimator) gets
    the plaintext transport-cc feedback packets of each SRTCP datagram, synchronously.
    """
    connection = dtls.transport._connection
    receive: Any = connection.data_received
    native_receive: Any = getattr(receive, "native_receive", None)
    handle_plain: Any = getattr(receive, "handle_plain", None)
    if native_receive is not None:
        receive = receive.python_path
    if not getattr(connection.data_received, "fast_rtcp", False):
        receive = _fast_rtcp(dtls, receive, native)
        receive.fast_rtcp = True
        if native_receive is not None:
            receive.native_receive = native_receive
            receive.handle_plain = handle_plain
            receive.python_path = receive
        connection.data_received = receive  # type: ignore[method-assign]
    if on_transport_feedback is not None:
        connection.data_received.feedback[0] = on_transport_feedback  # type: ignore[attr-defined]
    for protocol in connection._protocols:
        if "datagram_received" in vars(protocol):
            continue
        stun_path = protocol.datagram_received
        component = protocol.local_candidate.component
        transport = protocol.transport
        sock = getattr(transport, "_sock", None)  # asyncio's _SelectorDatagramTransport

        deliver = _native_first(native_receive, receive, handle_plain) if native_receive is not None else None

        def datagram_received(
            data: bytes,
            addr: tuple[Any, ...],
            stun_path: Any = stun_path,
            component: int = component,
            recvfrom: Any = sock.recvfrom if sock is not None else None,
            sock: Any = sock,
            recv_nowait: Any = native.recv_nowait if native is not None and sock is not None else None,
            deliver: Any = deliver,
        ) -> None:
            if data and 127 < data[0] < 192:
                if deliver is not None:
                    deliver(data, component)
                else:
                    connection.data_received(data, component)
            else:
                stun_path(data, addr)
            if recv_nowait is not None:
                for _ in range(MAX_DRAIN):
                    got = recv_nowait(sock)
                    if got is None:
                        return
                    data, addr = got
                    if addr is None:  # RTP/RTCP
                        if deliver is not None:
                            deliver(data, component)
                        else:
                            connection.data_received(data, component)
                    else:
                        stun_path(data, addr)
                return
            if recvfrom is None:
                return
            # Drain what else is queued on the socket now: one epoll wake-up + loop
            # iteration per datagram is most of the receive cost. Bounded so one
            # busy socket cannot starve the loop; errors are left to asyncio's next read.
            for _ in range(MAX_DRAIN):
                try:
                    data, addr = recvfrom(2048)
                except OSError:
                    return
                if data and 127 < data[0] < 192:
                    connection.data_received(data, component)
                else:
                    stun_path(data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[assignment]


# --------------------------------------------------------------------------
# Subscriber side: a sender fed by the forwarder
# --------------------------------------------------------------------------


class IdleTrack(MediaStreamTrack):
    """A track whose ``recv`` never returns until stopped.

    Gives ``RTCRtpSender._run_rtp`` something to await forever (a ``None``
    track makes it poll every 20 ms) while the forwarder sends packets.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await asyncio.shield(self._ended)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._ended.done():
            self._ended.set_result(None)


RtcpFeedbackHandler = Callable[[str, list[int]], Awaitable[None]]
"""Called with ("nack", lost_sequence_numbers), ("pli", []), ("remb", [bitrate_bps]) or
("loss", [fraction_lost_of_256])."""


def hook_sender_feedback(sender: RTCRtpSender, on_feedback: RtcpFeedbackHandler) -> None:
    """Route NACK and PLI/FIR received for ``sender`` to ``on_feedback``.

    Receiver reports and REMB also go to ``on_feedback`` (bandwidth estimation) and
    still to aiortc (RTT/stats).
    """
    original = sender._handle_rtcp_packet
    ssrc = sender._ssrc

    async def handle(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            await on_feedback("nack", list(packet.lost))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_FIR, RTCP_PSFB_PLI):
            await on_feedback("pli", [])
        else:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass
                else:
                    if ssrc in ssrcs:
                        await on_feedback("remb", [bitrate])
            elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for report in packet.reports:
                    if report.ssrc == ssrc:
                        await on_feedback("loss", [report.fraction_lost])
            await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) that aiortc announced for this sender."""
    return sender._ssrc, sender._rtx_ssrc


def sender_rtt(sender: RTCRtpSender) -> float | None:
    """The round-trip time (seconds, smoothed) aiortc measured from the receiver's reports, None before one."""
    rtt = sender._RTCRtpSender__rtt  # type: ignore[attr-defined]
    return None if rtt is None else float(rtt)


def update_sender_report(sender: RTCRtpSender, rtp_timestamp: int, octets: int, packets: int = 1) -> None:
    """Keep the sender's RTCP SR true for forwarded packets.

    ``rtp_timestamp`` is the timestamp of the packet sent just now (the SR's
    NTP↔RTP mapping); ``octets``/``packets`` are added to the SR counts.
    """
    # aiortc's clock.current_ntp_time() goes through datetime (~1.5 us); this is the same value.
    sender._RTCRtpSender__ntp_timestamp = int((time.time() + _NTP_EPOCH) * 4294967296.0)  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count += octets  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count += packets  # type: ignore[attr-defined]


def sender_octets(sender: RTCRtpSender) -> int:
    """The payload octets counted for the sender's RTCP SR so far (forwarded packets: batched, SR_BATCH)."""
    return int(sender._RTCRtpSender__octet_count)  # type: ignore[attr-defined]


class SenderReports:
    """RTCP sender reports of every sender of one peer connection, on one timer.

    aiortc runs a task per ``RTCRtpSender`` that wakes every 0.5-1.5 s and sends
    an SR and an SDES CNAME for its SSRC through three awaits. A subscribe
    connection has a sender per m-line (dozens in a large room), so that is a
    wake-up, a packet build and an SRTCP send per m-line per second. Here an
    adopted sender's RTCP task only waits (and, when the sender stops, sends
    the BYE as aiortc's does); one task per connection sends, at aiortc's
    randomized interval, every sender's SR followed by one SDES packet with
    their CNAME chunks, in compound packets of up to :data:`SR_PER_PACKET`
    senders (RFC 3550 6.1 and RFC 8108 5.3 allow several SSRCs' reports in one
    compound packet). Each SR carries the same values aiortc's would, and the
    sender's last-SR time is recorded as aiortc does, so its RTT estimate from
    the receiver's reports is unchanged.

    The timer runs while at least one adopted sender is started and stops with
    the last one (``RTCPeerConnection.close`` stops them all).
    """

    def __init__(self) -> None:
        self._senders: list[RTCRtpSender] = []
        self._task: asyncio.Task[None] | None = None
        self._send: dict[RTCDtlsTransport, Callable[[bytes], bool]] = {}

    def adopt(self, sender: RTCRtpSender) -> None:
        """Send ``sender``'s reports on this timer. Call before the sender starts (``RTCRtpSender.send``)."""
        sender._run_rtcp = functools.partial(self._run_sender, sender)  # type: ignore[method-assign]

    @property
    def senders(self) -> int:
        """How many started senders this timer reports for."""
        return len(self._senders)

    async def _run_sender(self, sender: RTCRtpSender) -> None:
        # What aiortc's RTCRtpSender._run_rtcp does around its loop (RTCRtpSender.stop waits for both events).
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        self._senders.append(sender)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        try:
            await asyncio.get_running_loop().create_future()  # until RTCRtpSender.stop cancels this task
        except asyncio.CancelledError:
            pass
        self._senders.remove(sender)
        if not self._senders and self._task is not None:
            self._task.cancel()
            self._task = None
            self._send.clear()
        await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    async def _run(self) -> None:
        while True:
            # RFC 3550 6.3.1: the interval is varied randomly over [0.5, 1.5] times the calculated interval.
            await asyncio.sleep(0.5 + random.random())
            try:
                self.send_now()
            except Exception:  # a bug here must not end every sender's reports
                logger.exception("sending RTCP sender reports failed")

    def send_now(self) -> int:
        """Send every started sender's SR + SDES now; returns the number of compound packets sent."""
        by_transport: dict[RTCDtlsTransport, list[RTCRtpSender]] = {}
        for sender in self._senders:
            by_transport.setdefault(sender.transport, []).append(sender)
        sent = 0
        for dtls, senders in by_transport.items():
            if dtls._state is not State.CONNECTED:
                continue  # aiortc's send would raise ConnectionError, which its loop ignores
            send = self._send.get(dtls)
            if send is None:
                send = self._send[dtls] = make_raw_sender(dtls, rtcp=True)
            for start in range(0, len(senders), SR_PER_PACKET):
                sent += send(_compound_sender_reports(senders[start : start + SR_PER_PACKET]))
        return sent


def _compound_sender_reports(senders: Sequence[RTCRtpSender]) -> bytes:
    """SRs of ``senders`` + one SDES with their CNAMEs, recording each SR as sent (as ``RTCRtpSender._run_rtcp``)."""
    reports: list[bytes] = []
    chunks: list[RtcpSourceInfo] = []
    now = time.time()
    for sender in senders:
        ntp_timestamp = sender._RTCRtpSender__ntp_timestamp  # type: ignore[attr-defined]
        info = RtcpSenderInfo(
            ntp_timestamp=ntp_timestamp,
            rtp_timestamp=sender._RTCRtpSender__rtp_timestamp,  # type: ignore[attr-defined]
            packet_count=sender._RTCRtpSender__packet_count & 0xFFFFFFFF,  # type: ignore[attr-defined]
            octet_count=sender._RTCRtpSender__octet_count & 0xFFFFFFFF,  # type: ignore[attr-defined]
        )
        reports.append(bytes(RtcpSrPacket(ssrc=sender._ssrc, sender_info=info)))
        sender._RTCRtpSender__lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF  # type: ignore[attr-defined]
        sender._RTCRtpSender__lsr_time = now  # type: ignore[attr-defined]
        cname = sender._RTCRtpSender__cname  # type: ignore[attr-defined]
        if cname is not None:
            chunks.append(RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))]))
    if chunks:
        reports.append(bytes(RtcpSdesPacket(chunks=chunks)))
    return b"".join(reports)


def transport_sequence(native: Any = NATIVE) -> Any:
    """A new transport-wide sequence (``twcc.TransportSequence`` or its C twin, which the C sender stamps from)."""
    return native.TransportSequence() if native is not None else twcc.TransportSequence()


def make_raw_sender(
    dtls: RTCDtlsTransport, rtcp: bool = False, native: Any = NATIVE, sequence: Any = None
) -> Callable[[bytes], bool]:
    """Return ``send(plaintext_rtp_or_rtcp) -> sent`` for a DTLS transport.

    ``sequence`` (from :func:`transport_sequence` with the same ``native``; shared by every sender of one
    connection) stamps each RTP packet that is sent with the connection's next transport-wide sequence
    number (``TransportSequence.stamp``); a packet dropped here gets none.

    Protects with the transport's SRTP session and writes to the nominated
    ICE pair's datagram transport synchronously: no coroutine per packet
    (``RTCDtlsTransport._send_rtp`` costs three awaits per packet). When the
    kernel refuses datagrams (EAGAIN) asyncio queues them without bound; once
    more than :data:`MAX_SEND_BUFFER` bytes wait there, packets are dropped
    (``send`` returns False) instead of adding seconds of latency and memory.

    With ``native`` (the ``_sfu_native`` module) RTP goes through a C
    ``SrtpSender``: after the first packet sent on the raw socket, protect +
    ``sendto`` are one C call as long as its guards hold (DTLS connected, same
    nominated pair, same SRTP session, same socket descriptor, nothing queued
    in asyncio); otherwise it calls the Python path below, which is the
    reference behaviour (and re-arms the C path for a new pair or session).
    """
    connection = dtls.transport._connection
    nominated = connection._nominated
    operation = "protect_rtcp" if rtcp else "protect"
    connected = State.CONNECTED
    # (pair, its datagram transport's sendto, remote address, buffered-bytes
    # getter, the raw socket's sendto or None): resolved once per nominated
    # pair (``remote_addr`` is a property building a tuple).
    route: list[Any] = [None, None, None, None, None]
    srtp: list[Any] = [None, None]  # (session, its srtp_processor)
    fast: Any = None  # the C SrtpSender wrapping this function (native RTP only)
    stamp = None if rtcp or sequence is None else sequence.stamp
    armed: list[Any] = [None]  # (pair, session) the C path was last configured for

    def send(data: bytes) -> bool:
        if dtls._state is not connected:
            return False
        pair = nominated.get(1)
        if pair is not route[0] or pair is None:
            if pair is None:
                return False  # (also before the first pair: route[0] is None too)
            transport = pair.protocol.transport
            sock = getattr(transport, "_sock", None)
            direct = sock.sendto if sock is not None and not transport.get_extra_info("peername") else None
            route[:] = [pair, transport.sendto, pair.remote_addr, transport.get_write_buffer_size, direct]  # type: ignore[attr-defined]
        session = dtls._tx_srtp
        if session is not srtp[0]:
            srtp[:] = [session, srtp_processor(session, operation, native)]
        if route[3]():  # asyncio already queues for this peer: keep the order, bound the queue
            if route[3]() > MAX_SEND_BUFFER:
                return False  # the peer is not draining: drop rather than queue (stale media is useless)
            if stamp is not None:
                data = stamp(data)
            route[1](srtp[1](data), route[2])
            return True
        if stamp is not None:
            data = stamp(data)
        packet = srtp[1](data)
        if route[4] is None:
            route[1](packet, route[2])
            return True
        try:
            route[4](packet, route[2])  # the socket directly: asyncio's sendto re-checks type/address/state
        except OSError:
            route[1](packet, route[2])  # EAGAIN: asyncio queues and retries when writable; errors reported as usual
            return True
        if fast is not None and armed[0] != (pair, session):
            armed[0] = (pair, session)
            _arm_native_sender(fast, dtls, session, pair, connected)
        return True

    if native is None or rtcp:
        return send
    fast = native.SrtpSender(send, sequence=sequence)
    return fast  # type: ignore[no-any-return]


def _arm_native_sender(
    fast: Any, dtls: RTCDtlsTransport, session: pylibsrtp.Session, pair: Any, connected: State
) -> None:
    """Configure ``fast`` (a ``_sfu_native.SrtpSender``) for ``pair`` and ``session``.

    The guards are what ``make_raw_sender``'s Python path checks per packet;
    while they hold, the C path protects and sends with ``sendto(2)`` on the
    socket's descriptor (asyncio's ``transport.sendto`` when the kernel
    refuses the datagram). If it cannot be configured (e.g. an address it
    cannot parse), the Python path stays in use.
    """
    transport = pair.protocol.transport
    state = vars(dtls)
    try:
        fast.configure(
            **_native_srtp_args(session, "protect"),
            sock=transport._sock,
            address=pair.remote_addr,
            queue=transport.sendto,
            # Dict lookups by identity, no attribute lookup or Python call per copy. _buffer_size is what
            # get_write_buffer_size() returns; 0 is CPython's cached small int, so "is 0" is "nothing queued"
            # (any other object, even an equal one, only sends that packet through the Python path).
            buffered=None,
            guards=(),
            items=(
                (state, "_state", connected),
                (state, "_tx_srtp", session),
                (dtls.transport._connection._nominated, 1, pair),
                (vars(transport), "_buffer_size", 0),
            ),
        )
    except (TypeError, ValueError, OSError):
        fast.reset()


def dtls_last_receive_counter(dtls: RTCDtlsTransport) -> int:
    """Number of datagrams received so far (any kind) — used for silence detection."""
    return int(dtls._RTCDtlsTransport__rx_packets)  # type: ignore[attr-defined]


class LazyRemoteBitrateEstimator:
    """aiortc's ``RemoteBitrateEstimator``, built when its first packet arrives.

    Every video ``RTCRtpReceiver`` builds one in its constructor, ~1 ms of CPU
    (a 1000-slot ``RateCounter`` and the overuse detector), also for the receiver
    of every *sendonly* transceiver, which never receives a packet: each video
    m-line of a subscribe offer paid it on the media event loop when it was
    created (docs/benchmarks.md §2 *Joins*). Built on first use, the estimate is
    the same; only receivers that get packets with abs-send-time pay for it.
    """

    __slots__ = ("_real",)

    def __init__(self) -> None:
        self._real: Any = None

    @property
    def built(self) -> bool:
        return self._real is not None

    @property
    def incoming_bitrate(self) -> Any:
        """The real estimator's incoming ``RateCounter`` (read after :meth:`add`: it exists then)."""
        return self._real.incoming_bitrate

    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int) -> Any:
        if self._real is None:
            self._real = _ORIGINAL_BITRATE_ESTIMATOR()
        return self._real.add(
            arrival_time_ms=arrival_time_ms, abs_send_time=abs_send_time, payload_size=payload_size, ssrc=ssrc
        )


def set_lazy_bitrate_estimators(enabled: bool = True) -> None:
    """Make every video ``RTCRtpReceiver`` created from now on build its bitrate estimator lazily (process global:
    aiortc looks the class up as a module global of ``aiortc.rtcrtpreceiver``); ``False`` restores aiortc's own."""
    estimator: Any = LazyRemoteBitrateEstimator if enabled else _ORIGINAL_BITRATE_ESTIMATOR
    aiortc.rtcrtpreceiver.RemoteBitrateEstimator = estimator  # type: ignore[misc]


def _copy_plain(value: Any) -> Any:
    """``copy.copy`` of an instance of a plain class (a ``__dict__``, no ``__slots__`` or ``__copy__``), 3x faster."""
    new = object.__new__(type(value))
    new.__dict__.update(value.__dict__)
    return new


def _copy_codec(codec: RTCRtpCodecParameters, memo: dict[int, Any]) -> RTCRtpCodecParameters:
    """``copy.deepcopy`` of a codec, fast (1.7 us; 4.7 with ``copy.copy`` of the codec and its entries, ~11 with
    the generic deepcopy, on this machine): its fields are immutable values
    or a list of feedback entries (plain dataclasses of immutable fields) and a dict of int/str/None, so copying
    those containers and entries is a deep copy."""
    new: RTCRtpCodecParameters = _copy_plain(codec)
    new.rtcpFeedback = [_copy_plain(feedback) for feedback in codec.rtcpFeedback]
    new.parameters = dict(codec.parameters)
    return new


def set_fast_codec_copies(enabled: bool = True) -> None:
    """Give aiortc's ``RTCRtpCodecParameters`` a ``__deepcopy__`` (process global; ``False`` removes it).

    aiortc deep-copies every negotiated codec of every m-line on each offer and answer
    (``find_common_codecs``, transceiver creation): ~24 us each with the generic deepcopy, 4 % of the
    media server's CPU while a 100-person room was joining (docs/benchmarks.md §4).
    """
    if enabled:
        RTCRtpCodecParameters.__deepcopy__ = _copy_codec  # type: ignore[attr-defined]
    elif "__deepcopy__" in vars(RTCRtpCodecParameters):
        del RTCRtpCodecParameters.__deepcopy__  # type: ignore[attr-defined]


CERTIFICATE_REUSE_SECONDS = 24 * 3600.0
"""A process makes a new DTLS certificate after this long (aiortc's are valid for 30 days)."""


class SharedCertificate(RTCCertificate):
    """One ECDSA P-256 certificate, its fingerprints and its DTLS contexts for every peer connection of the
    process (as a browser reuses one per origin): aiortc makes a key, a certificate, and on every DTLS start an
    ``SSL.Context``, for each ``RTCPeerConnection`` (~0.15 + 0.3 ms each, two connections per join)."""

    _current: ClassVar[SharedCertificate | None] = None

    def __init__(self, key: Any, cert: Any) -> None:
        super().__init__(key=key, cert=cert)
        self.made = time.monotonic()
        self._fingerprints: list[RTCDtlsFingerprint] | None = None
        self._contexts: dict[tuple[bytes, ...], Any] = {}

    @classmethod
    def generateCertificate(cls) -> SharedCertificate:
        current = cls._current
        if current is None or time.monotonic() - current.made > CERTIFICATE_REUSE_SECONDS:
            current = cls._current = super().generateCertificate()
        return current

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return list(self._fingerprints)

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> Any:
        key = tuple(p.openssl_profile for p in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = super()._create_ssl_context(srtp_profiles)
            # Shared by every connection: no server-side session cache (a context per connection had none worth
            # keeping either; WebRTC peers do not resume DTLS sessions).
            context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            self._contexts[key] = context
        return context


def set_shared_certificate(enabled: bool = True) -> None:
    """Make every ``RTCPeerConnection`` created from now on use :class:`SharedCertificate` (process global: aiortc
    looks ``RTCCertificate`` up as a module global of ``aiortc.rtcpeerconnection``); ``False`` restores aiortc's
    own (a new certificate per connection) and forgets the shared one."""
    SharedCertificate._current = None
    certificate: Any = SharedCertificate if enabled else RTCCertificate
    aiortc.rtcpeerconnection.RTCCertificate = certificate  # type: ignore[misc]


_ORIGINAL_SDP_PARSE = aiortc.sdp.SessionDescription.parse.__func__  # type: ignore[attr-defined]
_PARSED: OrderedDict[str, aiortc.sdp.SessionDescription] = OrderedDict()
PARSED_KEEP = 16
"""Descriptions handed over (:func:`reuse_parsed`) and not yet taken by aiortc, at most (oldest dropped)."""


def _reusing_parse(cls: type[aiortc.sdp.SessionDescription], sdp: str) -> aiortc.sdp.SessionDescription:
    description = _PARSED.pop(sdp, None)
    return description if description is not None else _ORIGINAL_SDP_PARSE(cls, sdp)


def reuse_parsed(sdp: str, description: aiortc.sdp.SessionDescription | None) -> None:
    """Let aiortc's next ``SessionDescription.parse(sdp)`` (``setRemoteDescription``/``setLocalDescription`` of
    exactly this text) return ``description`` instead of parsing ``sdp`` again. Only with
    :func:`set_sdp_reuse` on; ``description`` must not be changed afterwards (aiortc keeps it)."""
    if description is None or not sdp_reuse_enabled():
        return
    _PARSED[sdp] = description
    _PARSED.move_to_end(sdp)
    while len(_PARSED) > PARSED_KEEP:
        _PARSED.popitem(last=False)


def sdp_reuse_enabled() -> bool:
    return getattr(vars(aiortc.sdp.SessionDescription)["parse"], "__func__", None) is _reusing_parse


def set_sdp_reuse(enabled: bool = True) -> None:
    """Parse each SDP once (process global): with this on, a description the media server parsed
    (:func:`reuse_parsed`) is what aiortc's ``set*Description`` uses instead of parsing the same text again,
    and :func:`set_local_offer` hands aiortc the offer it has just built. A subscribe answer of 16 video
    m-lines takes ~1-2 ms to parse; ``False`` restores aiortc's parser."""
    _PARSED.clear()
    if enabled:
        aiortc.sdp.SessionDescription.parse = classmethod(_reusing_parse)  # type: ignore[assignment, method-assign]
        aiortc.rtcpeerconnection.wrap_session_description = _recording_wrap
    else:
        aiortc.sdp.SessionDescription.parse = classmethod(_ORIGINAL_SDP_PARSE)  # type: ignore[assignment, method-assign]
        aiortc.rtcpeerconnection.wrap_session_description = _ORIGINAL_WRAP


_ORIGINAL_WRAP = aiortc.rtcpeerconnection.wrap_session_description
_CREATED: contextvars.ContextVar[list[aiortc.sdp.SessionDescription] | None] = contextvars.ContextVar(
    "created_descriptions", default=None
)


def _recording_wrap(session_description: aiortc.sdp.SessionDescription | None) -> RTCSessionDescription | None:
    """aiortc's ``wrap_session_description`` (the text of a description it built), also noting the description
    itself while :func:`set_local_offer` awaits ``createOffer``."""
    created = _CREATED.get()
    if created is not None and session_description is not None:
        created.append(session_description)
    return _ORIGINAL_WRAP(session_description)


async def set_local_offer(pc: RTCPeerConnection) -> None:
    """``pc.setLocalDescription(await pc.createOffer())``, without aiortc parsing the offer it has just written.

    ``createOffer`` builds a ``SessionDescription`` and returns only its text, which ``setLocalDescription``
    parses back into an equal description (a subscribe offer of 8 m-lines: ~0.5 ms, every re-offer of every
    subscriber). With :func:`set_sdp_reuse` on, ``setLocalDescription`` takes the built one instead (it is
    referenced nowhere else; tests/media_server/test_aiortc_hooks.py pins that parsing its text gives an
    equal one). Yields to the loop once between the two steps, as the media server's join path does.
    """
    created: list[aiortc.sdp.SessionDescription] = []
    token = _CREATED.set(created)
    try:
        offer = await pc.createOffer()
    finally:
        _CREATED.reset(token)
    await asyncio.sleep(0)  # let queued media through between the ~1 ms SDP steps of a join
    if len(created) == 1:
        reuse_parsed(offer.sdp, created[0])
    try:
        await pc.setLocalDescription(offer)  # parses first thing (before any await): takes it from _PARSED
    finally:
        if len(created) == 1 and _PARSED.get(offer.sdp) is created[0]:
            del _PARSED[offer.sdp]  # not taken (a closed connection raises before parsing): never hand it on
