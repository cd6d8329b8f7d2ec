"""Fail loudly if aiortc/aioice change the private internals media_server/aiortc_hooks.py uses."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter, State
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import HeaderExtensionsMap

from media_server import aiortc_hooks


def params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_versions_pinned() -> None:
    import aiortc

    assert aiortc.__version__ == "1.16.0"
    from importlib.metadata import version

    assert version("aioice") == "0.13.0"


def test_aioice_host_address_hook() -> None:
    assert params(aioice.ice.get_host_addresses) == ["use_ipv4", "use_ipv6"]
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    aiortc_hooks.set_ice_host_addresses(None)
    assert aioice.ice.get_host_addresses is aiortc_hooks._ORIGINAL_GET_HOST_ADDRESSES
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    src = inspect.getsource(aioice.ice.Connection.gather_candidates)
    assert "get_host_addresses(" in src  # looked up as a module global at call time
    assert "_nominated" in inspect.getsource(aioice.ice.Connection.sendto)


def test_receiver_internals() -> None:
    assert params(RTCRtpReceiver._handle_rtp_packet) == ["self", "packet", "arrival_time_ms"]
    assert params(RTCRtpReceiver.receive) == ["self", "parameters"]
    assert params(RTCRtpReceiver._send_rtcp_nack) == ["self", "media_ssrc", "lost"]
    assert params(RTCRtpReceiver._send_rtcp) == ["self", "packet"]
    assert inspect.iscoroutinefunction(RTCRtpReceiver._run_rtcp)
    src = inspect.getsource(RTCRtpReceiver)
    for name in (
        "__remote_streams",
        "__remote_bitrate_estimator",
        "__rtcp_ssrc",
        "__rtcp_task",
        "__started",
        "__decoder_thread",
    ):
        assert f"self.{name}" in src, name
    assert "self.__decoder_thread = threading.Thread(" in inspect.getsource(RTCRtpReceiver.receive)
    assert params(NackGenerator.add) == ["self", "packet"]
    assert params(StreamStatistics.add) == ["self", "packet"]


def test_sender_internals() -> None:
    assert params(RTCRtpSender._handle_rtcp_packet) == ["self", "packet"]
    src = inspect.getsource(RTCRtpSender)
    for name in ("__ntp_timestamp", "__rtp_timestamp", "__octet_count", "__packet_count"):
        assert f"self.{name}" in src, name
    assert "self.__ntp_timestamp" in inspect.getsource(RTCRtpSender._run_rtcp)
    assert "self._ssrc = random32()" in src and "self._rtx_ssrc = random32()" in src


def test_dtls_internals() -> None:
    src = inspect.getsource(RTCDtlsTransport)
    for name in ("self._tx_srtp", "self._state", "self.__rx_packets", "self._rtp_router"):
        assert name in src, name
    assert State.CONNECTED.name == "CONNECTED"
    assert params(RTCDtlsTransport._register_rtp_receiver) == ["self", "receiver", "parameters"]
    assert "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in inspect.getsource(
        RTCDtlsTransport._handle_rtp_data
    )
    assert "recipient._handle_rtcp_packet(packet)" in inspect.getsource(RTCDtlsTransport._handle_rtcp_data)
    assert params(RtpRouter.route_rtp) == ["self", "packet"]


def test_peer_connection_calls_receive_after_set_remote_description() -> None:
    """Hooks are installed right after setRemoteDescription; receive() runs later in __connect."""
    src = inspect.getsource(RTCPeerConnection.setRemoteDescription)
    assert "asyncio.ensure_future(self.__connect())" in src
    assert "await transceiver.receiver.receive(" in inspect.getsource(RTCPeerConnection._RTCPeerConnection__connect)


@pytest.mark.asyncio
async def test_forwarding_receiver_and_idle_track_install() -> None:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    got: list[object] = []
    hook = aiortc_hooks.ForwardingReceiver(transceiver.receiver, "video", lambda p, c: got.append(p))
    assert transceiver.receiver._handle_rtp_packet == hook._handle_rtp_packet
    assert not hook.decoder_running()
    assert hook.request_keyframe() is False  # no media yet
    track = aiortc_hooks.IdleTrack("video")
    task = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    assert not task.done()
    track.stop()
    from aiortc.mediastreams import MediaStreamError

    with pytest.raises(MediaStreamError):
        await task
    ssrc, rtx = aiortc_hooks.sender_ssrcs(transceiver.sender)
    assert isinstance(ssrc, int) and isinstance(rtx, int)
    aiortc_hooks.update_sender_report(transceiver.sender, 1234, 100)
    assert transceiver.sender._RTCRtpSender__packet_count == 1
    send = aiortc_hooks.make_raw_sender(transceiver.sender.transport)
    assert send(b"\x80" * 20) is False  # not connected
    assert aiortc_hooks.dtls_last_receive_counter(transceiver.sender.transport) == 0
    await pc.close()


def test_fast_receive_internals() -> None:
    """install_fast_receive replaces the ICE connection's data_received and reads DTLS transport state."""
    assert params(aioice.ice.Connection.data_received) == ["self", "data", "component"]
    assert "self.receiver.data_received(data, self.local_candidate.component)" in inspect.getsource(
        aioice.ice.StunProtocol.datagram_received
    )
    assert "self._queue.put_nowait((data, component))" in inspect.getsource(aioice.ice.Connection.data_received)
    src = inspect.getsource(RTCDtlsTransport)
    for name in ("self._rx_srtp", "self.__rx_bytes", "self._rtp_header_extensions_map"):
        assert name in src, name
    recv_next = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self._rx_srtp.unprotect(data)" in recv_next and "first_byte > 127 and first_byte < 192" in recv_next
    assert "packet = RtpPacket.parse(data, self._rtp_header_extensions_map)" in inspect.getsource(
        RTCDtlsTransport._handle_rtp_data
    )
    from aiortc import clock

    assert "NTP_EPOCH" in inspect.getsource(clock.current_ms)  # arrival times: ms since 1900


@pytest.mark.asyncio
async def test_fast_receive_installs_and_queues_non_media() -> None:
    """Before SRTP is up (and for DTLS/STUN/SRTCP) datagrams still go to aiortc's queue."""
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    hook = aiortc_hooks.ForwardingReceiver(transceiver.receiver, "video", lambda p, c: None)
    dtls = transceiver.receiver.transport
    connection = dtls.transport._connection
    aiortc_hooks.install_fast_receive(dtls, [hook])
    assert "data_received" in vars(connection)  # instance attribute shadows the method
    connection.data_received(b"\x16\xfe\xfd" + b"\x00" * 10, 1)  # a DTLS record, not connected
    assert connection._queue.get_nowait() == (b"\x16\xfe\xfd" + b"\x00" * 10, 1)
    assert aiortc_hooks.dtls_last_receive_counter(dtls) == 0
    await pc.close()


def test_raw_sender_internals() -> None:
    """make_raw_sender caches the nominated pair's transport.sendto and remote_addr, and bounds asyncio's queue."""
    import asyncio.selector_events

    assert isinstance(inspect.getattr_static(aioice.ice.CandidatePair, "remote_addr"), property)
    assert "self.protocol" in inspect.getsource(aioice.ice.CandidatePair.__init__)
    transport_cls = asyncio.selector_events._SelectorDatagramTransport
    assert params(transport_cls.get_write_buffer_size) == ["self"]
    assert "self._buffer.append(" in inspect.getsource(transport_cls.sendto)  # EAGAIN: queued, unbounded


def test_fast_demux_internals() -> None:
    """install_fast_demux shadows StunProtocol.datagram_received on each gathered socket."""
    src = inspect.getsource(aioice.ice.StunProtocol.datagram_received)
    assert "message = stun.parse_message(data)" in src
    assert "except ValueError:\n            self.receiver.data_received(data, self.local_candidate.component)" in src
    assert "self._protocols: list[StunProtocol] = []" in inspect.getsource(aioice.ice.Connection.__init__)
    assert params(aioice.ice.StunProtocol.datagram_received) == ["self", "data", "addr"]


def test_srtp_processor_matches_pylibsrtp() -> None:
    """srtp_processor binds pylibsrtp.Session internals (_cdata, _buffer, _srtp, _srtp_assert, _binding.lib)."""
    import os

    import pylibsrtp

    key = os.urandom(30)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    ref = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    protect = aiortc_hooks.srtp_processor(tx, "protect")
    unprotect = aiortc_hooks.srtp_processor(rx, "unprotect")
    rtp = b"\x80\x60\x00\x01" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x03" + b"payload" * 10
    protected = protect(rtp)
    assert isinstance(protected, bytes) and protected == ref.protect(rtp)
    assert unprotect(protected) == rtp
    with pytest.raises(pylibsrtp.Error):
        unprotect(protected)  # replay
    with pytest.raises(ValueError):
        protect(b"\x80" * 1500)
    rtcp = b"\x80\xc8\x00\x06" + b"\x00\x00\x00\x02" + b"\x00" * 20
    assert aiortc_hooks.srtp_processor(tx, "protect_rtcp")(rtcp) == ref.protect_rtcp(rtcp)


def test_direct_socket_internals() -> None:
    """make_raw_sender / install_fast_demux use asyncio's datagram transport's raw socket (``_sock``)."""
    import asyncio.selector_events

    transport_cls = asyncio.selector_events._SelectorDatagramTransport
    read_ready = inspect.getsource(transport_cls._read_ready)
    assert "self._sock.recvfrom(self.max_size)" in read_ready
    assert "self._protocol.datagram_received(data, addr)" in read_ready
    assert "self._sock.sendto(data, addr)" in inspect.getsource(transport_cls.sendto)
    assert "self._sock = sock" in inspect.getsource(asyncio.selector_events._SelectorTransport.__init__)


@pytest.mark.asyncio
async def test_fast_demux_drains_socket() -> None:
    """Datagrams queued on an ICE socket are all handled in one datagram_received call."""
    import socket

    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
    finally:
        aiortc_hooks.set_ice_host_addresses(None)
    dtls = transceiver.receiver.transport
    connection = dtls.transport._connection
    got: list[tuple[bytes, int]] = []
    connection.data_received = lambda data, component: got.append((data, component))
    aiortc_hooks.install_fast_demux(dtls)
    protocol = connection._protocols[0]
    addr = protocol.transport.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(3):
            s.sendto(bytes([0x80, i]), addr[:2])  # loopback: queued on the ICE socket before sendto returns
        protocol.datagram_received(b"\x80\xff", ("127.0.0.1", 1))  # no await: the loop has not read them
    assert got == [(b"\x80\xff", 1), (b"\x80\x00", 1), (b"\x80\x01", 1), (b"\x80\x02", 1)]
    await pc.close()


def _candidate_ports(section: str) -> set[int]:
    return {int(line.split()[5]) for line in section.splitlines() if line.startswith("a=candidate:")}


@pytest.mark.asyncio
async def test_bundle_remote_candidates_uses_the_tagged_m_line() -> None:
    """aiortc keeps only the last bundled m-line's candidates; the hook makes that the tagged one's."""
    from aiortc import RTCConfiguration, RTCSessionDescription
    from aiortc.rtcconfiguration import RTCBundlePolicy

    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    # A browser-like offer: BUNDLE group, but one port per m-line (aiortc's "balanced" policy).
    offerer = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.BALANCED))
    offerer.addTransceiver("video", direction="sendonly")
    offerer.addTransceiver("audio", direction="sendonly")
    try:
        await offerer.setLocalDescription(await offerer.createOffer())
        sdp = offerer.localDescription.sdp
        assert "a=group:BUNDLE 0 1" in sdp
        video, audio = sdp.split("m=")[1:]
        assert _candidate_ports(video) and _candidate_ports(video).isdisjoint(_candidate_ports(audio))

        async def remote_ports(offer_sdp: str) -> set[int]:
            pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
                transport = pc.getTransceivers()[0].receiver.transport.transport
                return {c.port for c in transport.getRemoteCandidates()}
            finally:
                await pc.close()

        # aiortc's own behaviour (why the hook exists): the last m-line wins.
        assert await remote_ports(sdp) == _candidate_ports(audio)
        fixed = aiortc_hooks.bundle_remote_candidates(sdp)
        assert fixed.endswith("\r\n") and fixed.count("m=") == 2
        assert _candidate_ports(fixed.split("m=")[2]) == _candidate_ports(video)
        assert await remote_ports(fixed) == _candidate_ports(video)
        # No BUNDLE group: unchanged.
        unbundled = sdp.replace("a=group:BUNDLE 0 1\r\n", "")
        assert aiortc_hooks.bundle_remote_candidates(unbundled) == unbundled
    finally:
        await offerer.close()
        aiortc_hooks.set_ice_host_addresses(None)


def test_simulcast_and_feedback_internals() -> None:
    """What simulcast routing and the bandwidth estimate rely on."""
    from aiortc.rtp import HeaderExtensions, RtcpReceiverInfo, unpack_remb_fci

    names = {f.name for f in dataclasses.fields(HeaderExtensions)}
    assert {"rtp_stream_id", "repaired_rtp_stream_id"} <= names
    src = inspect.getsource(RTCDtlsTransport)
    assert "self._rtp_header_extensions_map = rtp.HeaderExtensionsMap()" in src
    assert "sdes:rtp-stream-id" in inspect.getsource(HeaderExtensionsMap.configure)
    assert "sdes:repaired-rtp-stream-id" in inspect.getsource(HeaderExtensionsMap.configure)
    assert params(unpack_remb_fci) == ["data"]
    assert "fraction_lost" in {f.name for f in dataclasses.fields(RtcpReceiverInfo)}
    # Unknown SSRCs are routed by payload type: every simulcast layer reaches the one video receiver.
    assert "len(pt_receivers) == 1" in inspect.getsource(RtpRouter.route_rtp)
