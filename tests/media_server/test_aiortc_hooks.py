"""Fail loudly if aiortc/aioice change the private internals media_server/aiortc_hooks.py uses."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import inspect
from typing import Any

import aioice.ice
import aioice.mdns
import aioice.stun
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


def test_aioice_mdns_internals_used_by_the_learning_hook() -> None:
    conn = aioice.ice.Connection(ice_controlling=True)
    for name in ("_remote_candidates_resolving", "_remote_candidates_end", "_closing", "_transport_policy"):
        assert hasattr(conn, name), name
    assert callable(conn._end_remote_candidates)
    assert params(aioice.ice.Connection.add_remote_candidate) == ["self", "remote_candidate"]
    # The counter is what defers end-of-candidates and keeps connect()'s check loop (and check_incoming's
    # peer-reflexive learning) going instead of failing.
    assert "_remote_candidates_resolving" in inspect.getsource(aioice.ice.Connection._remote_candidates_expected)
    assert "_remote_candidates_expected()" in inspect.getsource(aioice.ice.Connection._check_periodic)
    assert "_remote_candidates_expected()" in inspect.getsource(aioice.ice.Connection._check_list_maybe_fail)
    assert '"prflx"' in inspect.getsource(aioice.ice.Connection.check_incoming)
    assert aioice.mdns.is_mdns_hostname("0b5f9e3c-4c8e-4bd5-9d5a-0c4e1a2b3c4d.local")


async def _pair(*, server_sees_mdns: bool, browser_checks: bool) -> tuple[aioice.ice.Connection, Any]:
    """A media-server-like agent given the browser's address only as an mDNS name (end-of-candidates right after),
    and a browser-like agent that knows the server's real candidates. Returns (server, its connect task)."""
    server = aioice.ice.Connection(ice_controlling=False)
    browser = aioice.ice.Connection(ice_controlling=True)
    await server.gather_candidates()
    await browser.gather_candidates()
    for candidate in browser.local_candidates:
        if server_sees_mdns:
            candidate = copy.copy(candidate)  # the browser's own candidate keeps its address
            candidate.host = "0b5f9e3c-4c8e-4bd5-9d5a-0c4e1a2b3c4d.local"
        await server.add_remote_candidate(candidate)
    await server.add_remote_candidate(None)
    server.remote_username, server.remote_password = browser.local_username, browser.local_password
    browser.remote_username, browser.remote_password = server.local_username, server.local_password
    for candidate in server.local_candidates:
        await browser.add_remote_candidate(candidate)
    await browser.add_remote_candidate(None)
    server_task = asyncio.ensure_future(server.connect())
    if browser_checks:
        await asyncio.wait_for(browser.connect(), 10)
    server._test_browser = browser  # type: ignore[attr-defined]  # closed by the caller
    return server, server_task


async def test_mdns_candidate_is_learned_as_peer_reflexive_from_the_browsers_checks() -> None:
    """The server never resolves the `.local` name (no multicast) and connects to the browser's real address."""
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_mdns_candidates_learned(seconds=10)
    try:
        server, task = await _pair(server_sees_mdns=True, browser_checks=True)
        try:
            await asyncio.wait_for(task, 10)
            learned = [c for c in server.remote_candidates if c.type == "prflx"]
            assert learned and learned[0].host == "127.0.0.1"
            assert all(not c.host.endswith(".local") for c in server.remote_candidates)
        finally:
            await server.close()
            await server._test_browser.close()  # type: ignore[attr-defined]
    finally:
        aiortc_hooks.set_mdns_candidates_learned(False)
    assert aioice.ice.Connection.add_remote_candidate is aiortc_hooks._ORIGINAL_ADD_REMOTE_CANDIDATE


async def test_mdns_only_peer_that_never_checks_fails_after_the_wait_not_at_once() -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_mdns_candidates_learned(seconds=0.5)
    try:
        server, task = await _pair(server_sees_mdns=True, browser_checks=False)
        try:
            await asyncio.sleep(0.2)
            assert not task.done(), "ICE must wait for the browser's checks"
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(task, 5)
        finally:
            await server.close()
            await server._test_browser.close()  # type: ignore[attr-defined]
    finally:
        aiortc_hooks.set_mdns_candidates_learned(False)


def test_lazy_bitrate_estimator_is_built_on_first_packet_and_estimates_the_same() -> None:
    """A video receiver that never receives (a subscriber's sendonly m-line) never builds aiortc's estimator."""
    import aiortc.rate

    assert "RemoteBitrateEstimator()" in inspect.getsource(RTCRtpReceiver.__init__)  # looked up at construction
    assert params(aiortc.rate.RemoteBitrateEstimator.add) == [
        "self",
        "arrival_time_ms",
        "abs_send_time",
        "payload_size",
        "ssrc",
    ]
    dtls = object.__new__(RTCDtlsTransport)
    dtls._state = State.NEW  # type: ignore[attr-defined]
    aiortc_hooks.set_lazy_bitrate_estimators()
    try:
        video = RTCRtpReceiver("video", dtls)
        lazy = video._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
        assert isinstance(lazy, aiortc_hooks.LazyRemoteBitrateEstimator) and not lazy.built
        assert RTCRtpReceiver("audio", dtls)._RTCRtpReceiver__remote_bitrate_estimator is None  # type: ignore[attr-defined]
    finally:
        aiortc_hooks.set_lazy_bitrate_estimators(False)
    assert aiortc.rtcrtpreceiver.RemoteBitrateEstimator is aiortc.rate.RemoteBitrateEstimator
    real = aiortc.rate.RemoteBitrateEstimator()
    # 1200-byte packets every 5 ms for 3 s, abs-send-time in 6.18 fixed point (1/262144 s per unit)
    for i in range(600):
        ms = 1000 + 5 * i
        packet = {"arrival_time_ms": ms, "abs_send_time": (ms * 262144 // 1000) & 0xFFFFFF, "payload_size": 1200}
        assert lazy.add(**packet, ssrc=1234) == real.add(**packet, ssrc=1234)
    assert lazy.built


def test_fast_codec_copy_is_a_deep_copy() -> None:
    import copy

    from aiortc.codecs import CODECS
    from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

    fields = {f.name for f in dataclasses.fields(RTCRtpCodecParameters)}
    assert fields == {"mimeType", "clockRate", "channels", "payloadType", "rtcpFeedback", "parameters"}
    assert {f.name for f in dataclasses.fields(RTCRtcpFeedback)} == {"type", "parameter"}
    for cls in (RTCRtpCodecParameters, RTCRtcpFeedback):  # plain instances: a __dict__ copy is copy.copy
        assert "__slots__" not in vars(cls) and not hasattr(cls, "__copy__")
        assert cls.__reduce_ex__ is object.__reduce_ex__ and cls.__getstate__ is object.__getstate__  # type: ignore[misc]
    codecs = [*CODECS["audio"], *CODECS["video"]]
    generic = [copy.deepcopy(c) for c in codecs]
    aiortc_hooks.set_fast_codec_copies()
    try:
        fast = [copy.deepcopy(c) for c in codecs]
    finally:
        aiortc_hooks.set_fast_codec_copies(False)
    assert "__deepcopy__" not in vars(RTCRtpCodecParameters)
    assert fast == generic == codecs
    for original, new in zip(codecs, fast, strict=True):
        assert new is not original and new.parameters is not original.parameters
        assert new.rtcpFeedback is not original.rtcpFeedback
        assert all(a is not b for a, b in zip(new.rtcpFeedback, original.rtcpFeedback, strict=True))
        new.parameters["x-test"] = 1
        new.rtcpFeedback.append(RTCRtcpFeedback(type="nack"))
        assert "x-test" not in original.parameters and len(original.rtcpFeedback) == len(new.rtcpFeedback) - 1


async def _connect(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    """Offer/answer between two in-process connections and wait until both are connected."""
    a.addTransceiver("video", direction="sendonly")
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    for _ in range(600):  # 30 s: generous for a loaded machine
        if a.connectionState == b.connectionState == "connected":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not connected: {a.connectionState} / {b.connectionState}")


async def test_shared_certificate_one_per_process_and_connections_still_connect() -> None:
    """aiortc makes a certificate per RTCPeerConnection (looked up as a module global) and an SSL context per
    DTLS start; with the hook every connection uses one certificate and one context, and DTLS still works."""
    import aiortc.rtcpeerconnection
    from aiortc.rtcdtlstransport import RTCCertificate

    assert "RTCCertificate.generateCertificate()" in inspect.getsource(aiortc.rtcpeerconnection.RTCPeerConnection)
    assert "_create_ssl_context(" in inspect.getsource(RTCDtlsTransport.start)
    assert params(RTCCertificate._create_ssl_context) == ["self", "srtp_profiles"]
    assert params(RTCCertificate.__init__) == ["self", "key", "cert"]
    aiortc_hooks.set_shared_certificate()
    pcs = [RTCPeerConnection(), RTCPeerConnection()]
    try:
        certs = [pc._RTCPeerConnection__certificates[0] for pc in pcs]  # type: ignore[attr-defined]
        assert isinstance(certs[0], aiortc_hooks.SharedCertificate) and certs[0] is certs[1]
        assert certs[0].getFingerprints() == certs[0].getFingerprints() != []
        await _connect(*pcs)
        transports = [pc.getTransceivers()[0].receiver.transport for pc in pcs]
        contexts = [t._ssl.get_context() for t in transports]
        assert contexts[0] is contexts[1]  # both ends (DTLS server and client role) use one context
    finally:
        for pc in pcs:
            await pc.close()
        aiortc_hooks.set_shared_certificate(False)
    assert aiortc.rtcpeerconnection.RTCCertificate is RTCCertificate
    fresh = [RTCPeerConnection(), RTCPeerConnection()]
    assert fresh[0]._RTCPeerConnection__certificates[0] is not fresh[1]._RTCPeerConnection__certificates[0]  # type: ignore[attr-defined]


async def test_sdp_reuse_hands_the_parsed_description_to_aiortc_once() -> None:
    """Both set*Description parse the text themselves; with the hook they take the description handed over."""
    import aiortc.sdp
    from aiortc import RTCSessionDescription

    for method in (RTCPeerConnection.setRemoteDescription, RTCPeerConnection.setLocalDescription):
        assert "sdp.SessionDescription.parse(sessionDescription.sdp)" in inspect.getsource(method)
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    offer = (await pc.createOffer()).sdp
    await pc.close()
    parsed = aiortc.sdp.SessionDescription.parse(offer)
    aiortc_hooks.reuse_parsed(offer, parsed)  # off: ignored
    assert aiortc.sdp.SessionDescription.parse(offer) is not parsed
    aiortc_hooks.set_sdp_reuse()
    try:
        aiortc_hooks.reuse_parsed(offer, parsed)
        assert aiortc.sdp.SessionDescription.parse(offer) is parsed
        assert aiortc.sdp.SessionDescription.parse(offer) is not parsed  # once
        for i in range(aiortc_hooks.PARSED_KEEP + 5):
            aiortc_hooks.reuse_parsed(f"{offer}a=x-{i}\r\n", parsed)
        assert len(aiortc_hooks._PARSED) == aiortc_hooks.PARSED_KEEP  # bounded when aiortc never takes them
        a, b = RTCPeerConnection(), RTCPeerConnection()
        try:
            a.addTransceiver("video", direction="sendonly")
            await a.setLocalDescription(await a.createOffer())
            text = a.localDescription.sdp
            handed = aiortc.sdp.SessionDescription.parse(text)
            aiortc_hooks.reuse_parsed(text, handed)
            await b.setRemoteDescription(RTCSessionDescription(sdp=text, type="offer"))
            assert text not in aiortc_hooks._PARSED  # taken
            answer = await b.createAnswer()
            await b.setLocalDescription(answer)
            await a.setRemoteDescription(b.localDescription)
            assert [t.kind for t in b.getTransceivers()] == ["video"]
        finally:
            await a.close()
            await b.close()
    finally:
        aiortc_hooks.set_sdp_reuse(False)
    assert not aiortc_hooks.sdp_reuse_enabled() and not aiortc_hooks._PARSED
    aiortc_hooks.reuse_parsed(offer, parsed)
    assert not aiortc_hooks._PARSED


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
    nack = NackGenerator()
    assert nack.max_seq is None and nack.missing == set()  # read to tell an RTX repair from a padding probe
    assert params(StreamStatistics.add) == ["self", "packet"]


def test_sender_internals() -> None:
    assert params(RTCRtpSender._handle_rtcp_packet) == ["self", "packet"]
    src = inspect.getsource(RTCRtpSender)
    for name in ("__ntp_timestamp", "__rtp_timestamp", "__octet_count", "__packet_count", "__rtt"):
        assert f"self.{name}" in src, name
    assert "self.__ntp_timestamp" in inspect.getsource(RTCRtpSender._run_rtcp)
    assert "self._ssrc = random32()" in src and "self._rtx_ssrc = random32()" in src


def test_sender_rtcp_loop_internals() -> None:
    """SenderReports replaces the per-instance _run_rtcp and does around its loop what aiortc's does."""
    assert "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())" in inspect.getsource(RTCRtpSender.send)
    assert "self.__cname = parameters.rtcp.cname" in inspect.getsource(RTCRtpSender.send)
    loop = inspect.getsource(RTCRtpSender._run_rtcp)
    for line in (
        "self.__rtcp_started.set()",
        "await asyncio.sleep(0.5 + random.random())",
        "self.__lsr = ((self.__ntp_timestamp) >> 16) & 0xFFFFFFFF",
        "self.__lsr_time = time.time()",
        "packet_count=self.__packet_count & 0xFFFFFFFF",
        "octet_count=self.__octet_count & 0xFFFFFFFF",
        'items=[(1, self.__cname.encode("utf8"))]',
        "packet = RtcpByePacket(sources=[self._ssrc])",
        "await self._send_rtcp([packet])",
        "self.__rtcp_exited.set()",
    ):
        assert line in loop, line
    stop = inspect.getsource(RTCRtpSender.stop)
    assert "self.__rtcp_started.wait()" in stop and "self.__rtcp_task.cancel()" in stop
    assert "self.__rtcp_exited.wait()" in stop
    assert "if self.__lsr == report.lsr and report.dlsr:" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert params(RTCRtpSender._send_rtcp) == ["self", "packets"]


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
    assert aiortc_hooks.sender_rtt(transceiver.sender) is None  # no receiver report yet
    transceiver.sender._RTCRtpSender__rtt = 0.25
    assert aiortc_hooks.sender_rtt(transceiver.sender) == 0.25
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
@pytest.mark.parametrize("use_native", [False, pytest.param(True, marks=pytest.mark.native)], ids=["python", "native"])
async def test_fast_demux_drains_socket(use_native: bool) -> None:
    """Datagrams queued on an ICE socket are all handled in one datagram_received call (both paths)."""
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
    aiortc_hooks.install_fast_demux(dtls, native=_native() if use_native else None)
    protocol = connection._protocols[0]
    addr = protocol.transport.get_extra_info("sockname")
    stun: list[tuple[bytes, tuple[str, int]]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(3):
            s.sendto(bytes([0x80, i]), addr[:2])  # loopback: queued on the ICE socket before sendto returns
        s.sendto(b"\x00\x01 not media", addr[:2])  # STUN range: aioice's path, with the sender's address
        s.sendto(bytes([0x80, 3]), addr[:2])
        # aioice's STUN path is bound as the hook's first default: record what reaches it instead.
        protocol.datagram_received.__defaults__ = (  # type: ignore[attr-defined]
            lambda data, a: stun.append((data, a)),
            *protocol.datagram_received.__defaults__[1:],  # type: ignore[attr-defined]
        )
        protocol.datagram_received(b"\x80\xff", ("127.0.0.1", 1))  # no await: the loop has not read them
        assert stun == [(b"\x00\x01 not media", ("127.0.0.1", s.getsockname()[1]))]
    assert got == [(b"\x80\xff", 1), (b"\x80\x00", 1), (b"\x80\x01", 1), (b"\x80\x02", 1), (b"\x80\x03", 1)]
    await pc.close()


@pytest.mark.native
def test_native_recv_nowait() -> None:
    """_sfu_native.recv_nowait: None when nothing is queued or the socket is closed; address only for non-media."""
    import socket

    native: Any = _native()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        assert native.recv_nowait(rx) is None
        tx.sendto(b"\x90rtp", rx.getsockname())
        tx.sendto(b"\x00\x01stun", rx.getsockname())
        tx.sendto(b"", rx.getsockname())
        assert native.recv_nowait(rx) == (b"\x90rtp", None)
        assert native.recv_nowait(rx) == (b"\x00\x01stun", ("127.0.0.1", tx.getsockname()[1]))
        assert native.recv_nowait(rx) == (b"", ("127.0.0.1", tx.getsockname()[1]))
        assert native.recv_nowait(rx) is None
        tx.sendto(b"\x80" * 3000, rx.getsockname())
        assert native.recv_nowait(rx) == (b"\x80" * 2048, None)  # truncated like recvfrom(2048)
    rx.close()
    assert native.recv_nowait(rx) is None


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


# --------------------------------------------------------------------------
# Native fast path (native/sfu_native, module _sfu_native) vs the Python path
# --------------------------------------------------------------------------


def _native() -> object:
    import importlib

    # Built and installed from this repo by `make venv` where gcc and the Python headers exist (CI installs
    # them): a failure here means that build is broken, not the media server (it falls back to Python).
    return importlib.import_module("_sfu_native")


@pytest.mark.native
def test_pylibsrtp_internals_for_the_native_path() -> None:
    """The C path calls libsrtp with pylibsrtp's own function pointers and ``srtp_t``: their C types must not change."""
    from importlib.metadata import version

    import pylibsrtp
    import pylibsrtp._binding as binding

    assert version("pylibsrtp") == "1.0.0"
    ffi, lib = binding.ffi, binding.lib
    for name in ("srtp_protect", "srtp_protect_rtcp", "srtp_unprotect"):
        # sfu_native.c: typedef int (*srtp_function)(void *context, void *packet, int *length)
        assert ffi.typeof(ffi.addressof(lib, name)).cname == "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
    assert ffi.sizeof("srtp_err_status_t") == ffi.sizeof("int")
    session = pylibsrtp.Session(pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    assert ffi.typeof(session._srtp).cname == "struct srtp_ctx_t_ * *"
    assert len(session._cdata) == _native().BUFFER_SIZE == 1500  # type: ignore[attr-defined]
    src = inspect.getsource(pylibsrtp.Session)
    assert (
        "len(data) > len(self._cdata) - trailer" in src
        and "_srtp_assert(func(self._srtp[0], self._cdata, len_p))" in src
    )


def _fake_dtls(session: object, transport: object, remote: tuple[str, int]) -> object:
    """The attributes of RTCDtlsTransport / aioice that make_raw_sender reads, around a real asyncio socket."""
    from types import SimpleNamespace

    pair = SimpleNamespace(protocol=SimpleNamespace(transport=transport), remote_addr=remote)
    return SimpleNamespace(
        _state=State.CONNECTED,
        _tx_srtp=session,
        transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
    )


def _rtp(seq: int, size: int) -> bytes:
    return (
        bytes([0x80, 0x60])
        + seq.to_bytes(2, "big")
        + (seq * 3000).to_bytes(4, "big")
        + b"\x00\x00\x30\x39"
        + bytes((seq + i) & 0xFF for i in range(size))
    )


@pytest.mark.asyncio
@pytest.mark.native
async def test_native_sender_sends_the_same_bytes_as_the_python_path() -> None:
    """Same key, same packets: the C SrtpSender and the pure-Python sender put identical datagrams on the wire."""
    import os
    import socket

    import pylibsrtp

    native = _native()
    loop = asyncio.get_running_loop()
    key = os.urandom(30)

    def session() -> pylibsrtp.Session:
        return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    remote = rx.getsockname()
    t_py, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    t_c, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    dtls_py = _fake_dtls(session(), t_py, remote)
    dtls_c = _fake_dtls(session(), t_c, remote)
    py_send = aiortc_hooks.make_raw_sender(dtls_py, native=None)  # type: ignore[arg-type]
    c_send = aiortc_hooks.make_raw_sender(dtls_c, native=native)  # type: ignore[arg-type]
    assert type(c_send).__name__ == "SrtpSender" and not c_send.configured  # type: ignore[attr-defined]
    try:
        for seq, size in enumerate([1100, 100, 1, 1344, 700, 1100, 20, 1100]):
            packet = _rtp(seq + 1, size)
            assert py_send(packet) is True
            expected = rx.recv(2048)
            assert c_send(packet) is True
            assert rx.recv(2048) == expected
        # The first packet went through the Python path, which armed the C path for the rest.
        assert c_send.configured and c_send.native_packets == 7  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="too long"):
            py_send(_rtp(100, 1500))
        with pytest.raises(ValueError, match="too long"):
            c_send(_rtp(100, 1500))
        # A guard that fails sends through the Python path: not connected -> nothing sent.
        dtls_c._state = dtls_py._state = State.CLOSED  # type: ignore[attr-defined]
        assert py_send(_rtp(20, 10)) is False and c_send(_rtp(20, 10)) is False
        assert c_send.native_packets == 7  # type: ignore[attr-defined]
        # A new SRTP session (e.g. a new DTLS handshake): the Python path re-arms the C path with it.
        dtls_c._state = dtls_py._state = State.CONNECTED  # type: ignore[attr-defined]
        dtls_py._tx_srtp, dtls_c._tx_srtp = session(), session()  # type: ignore[attr-defined]
        for seq in (1, 2, 3):
            assert py_send(_rtp(seq, 500)) is True
            expected = rx.recv(2048)
            assert c_send(_rtp(seq, 500)) is True
            assert rx.recv(2048) == expected
        assert c_send.native_packets == 9  # type: ignore[attr-defined]
    finally:
        t_py.close()
        t_c.close()
        rx.close()


@pytest.mark.asyncio
@pytest.mark.native
async def test_native_sender_stamps_the_same_transport_sequence_as_the_python_path() -> None:
    """The C SrtpSender stamps the transport-wide sequence number in its own path and in its fallback, like
    the Python sender: same datagrams, same records; a packet refused (not connected) consumes no number."""
    import os
    import socket

    import pylibsrtp

    from media_server.rtputil import one_byte_extensions

    native = _native()
    loop = asyncio.get_running_loop()
    key = os.urandom(30)

    def session() -> pylibsrtp.Session:
        return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))

    def slotted(seq: int, size: int) -> bytes:
        ext = one_byte_extensions([(5, b"\x00\x00"), (3, b"\x01\x02\x03")])
        return bytes([0x90, 0x60]) + seq.to_bytes(2, "big") + bytes(4) + b"\x00\x00\x30\x39" + ext + bytes(size)

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    remote = rx.getsockname()
    t_py, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    t_c, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    dtls_py = _fake_dtls(session(), t_py, remote)
    dtls_c = _fake_dtls(session(), t_c, remote)
    seq_py = aiortc_hooks.transport_sequence(None)
    seq_c = aiortc_hooks.transport_sequence(native)
    for seq in (seq_py, seq_c):
        seq.id = 5
        seq.next_seq = 65534
    seq_py.clock = seq_c.clock = lambda: 0.5  # both paths record this send time
    py_send = aiortc_hooks.make_raw_sender(dtls_py, native=None, sequence=seq_py)  # type: ignore[arg-type]
    c_send = aiortc_hooks.make_raw_sender(dtls_c, native=native, sequence=seq_c)  # type: ignore[arg-type]
    try:
        for n, size in enumerate([1100, 100, 1, 700, 20]):
            packet = slotted(n + 1, size)
            assert py_send(packet) is True
            expected = rx.recv(2048)
            assert c_send(packet) is True
            assert rx.recv(2048) == expected
        assert c_send.native_packets == 4  # type: ignore[attr-defined]  (the first went through the fallback)
        dtls_c._state = dtls_py._state = State.CLOSED  # type: ignore[attr-defined]
        assert py_send(slotted(9, 10)) is False and c_send(slotted(9, 10)) is False
        assert seq_py.next_seq == seq_c.next_seq == 3
        records = seq_py.drain()
        assert seq_c.drain() == records
        assert [r[0] for r in records] == [65534, 65535, 0, 1, 2]
        assert [r[1] for r in records] == [len(slotted(0, s)) for s in (1100, 100, 1, 700, 20)]
    finally:
        t_py.close()
        t_c.close()
        rx.close()


@pytest.mark.native
def test_native_srtp_processor_matches_the_python_path() -> None:
    """srtp_processor with and without _sfu_native: same bytes, same errors (replay, too long)."""
    import os

    import pylibsrtp

    native = _native()
    key = os.urandom(30)
    out = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    py_tx, c_tx = (pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=out)) for _ in range(2))
    c_rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    py_protect = aiortc_hooks.srtp_processor(py_tx, "protect", native=None)
    c_protect = aiortc_hooks.srtp_processor(c_tx, "protect", native=native)
    c_unprotect = aiortc_hooks.srtp_processor(c_rx, "unprotect", native=native)
    for seq in range(1, 20):
        rtp = _rtp(seq, 37 * seq)
        protected = c_protect(rtp)
        assert protected == py_protect(rtp)
        assert c_unprotect(protected) == rtp
    with pytest.raises(pylibsrtp.Error):
        c_unprotect(protected)  # replay
    with pytest.raises(ValueError, match="too long"):
        c_protect(b"\x80" * 1500)
    rtcp = b"\x80\xc8\x00\x06" + b"\x00\x00\x00\x02" + b"\x00" * 20
    assert aiortc_hooks.srtp_processor(c_tx, "protect_rtcp", native=native)(rtcp) == aiortc_hooks.srtp_processor(
        py_tx, "protect_rtcp", native=None
    )(rtcp)


@pytest.mark.native
def test_native_sender_guards_and_errors() -> None:
    """_sfu_native.SrtpSender: every guard falls back to Python; a refused datagram goes to the queue callable."""
    import os
    import socket
    from types import SimpleNamespace

    import pylibsrtp

    native: Any = _native()
    key = os.urandom(30)
    session = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    reference = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    fallback: list[bytes] = []
    queued: list[tuple[bytes, tuple[str, int]]] = []
    buffered = [0]
    state = SimpleNamespace(ok="yes")
    nominated = {1: "pair"}
    sender = native.SrtpSender(lambda data: fallback.append(data) or False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        tx.setblocking(False)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2)

        def arm(address: tuple[str, int]) -> None:
            sender.configure(
                **aiortc_hooks._native_srtp_args(session, "protect"),
                sock=tx,
                address=address,
                queue=lambda packet, addr: queued.append((packet, addr)),
                buffered=lambda: buffered[0],
                guards=((state, "ok", "yes"),),
                items=((nominated, 1, "pair"),),
            )

        assert sender(_rtp(1, 10)) is False and len(fallback) == 1  # not configured
        arm(rx.getsockname())
        assert sender(_rtp(1, 10)) is True and rx.recv(2048) == reference.protect(_rtp(1, 10))
        for flip, undo in (
            (lambda: setattr(state, "ok", "no"), lambda: setattr(state, "ok", "yes")),
            (lambda: nominated.__setitem__(1, "other"), lambda: nominated.__setitem__(1, "pair")),
            (lambda: buffered.__setitem__(0, 10), lambda: buffered.__setitem__(0, 0)),
        ):
            flip()
            assert sender(_rtp(2, 10)) is False
            undo()
        assert len(fallback) == 4 and sender.native_packets == 1
        # A datagram the kernel refuses (port 0: EINVAL) is handed to asyncio's queue, protected.
        arm(("127.0.0.1", 0))
        assert sender(_rtp(2, 10)) is True
        assert queued == [(reference.protect(_rtp(2, 10)), ("127.0.0.1", 0))]
        with pytest.raises(ValueError):
            arm(("::1", 5000))  # family of the socket differs: not configured
        assert not sender.configured
        sender.reset()
    # A closed socket (its descriptor number may be reused) is a failed guard, not a send on a stale fd.
    arm_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.configure(
        **aiortc_hooks._native_srtp_args(session, "protect"),
        sock=arm_sock,
        address=("127.0.0.1", 9),
        queue=lambda packet, addr: None,
        buffered=lambda: 0,
        guards=(),
        items=(),
    )
    arm_sock.close()
    assert sender(_rtp(3, 10)) is False and len(fallback) == 5


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


def test_native_receive_internals() -> None:
    """What install_fast_receive's C path (_sfu_native.RtpReceive) reads and writes besides the Python path's hooks.

    It writes the instance dicts of aiortc's StreamStatistics and NackGenerator and of the DTLS transport's
    receive counters, reads the RTP router's tables and the header extension map's IDs, and re-reads those IDs
    whenever ``HeaderExtensionsMap.configure`` runs on the transport's map.
    """
    stats = StreamStatistics(90000)
    assert set(vars(stats)) == {
        "base_seq",
        "max_seq",
        "cycles",
        "packets_received",
        "_clockrate",
        "_jitter_q4",
        "_last_arrival",
        "_last_timestamp",
        "_expected_prior",
        "_received_prior",
    }
    add = inspect.getsource(StreamStatistics.add)
    for line in (
        "arrival = int(time.time() * self._clockrate)",
        "self.cycles += 1 << 16",
        "if packet.timestamp != self._last_timestamp and self.packets_received > 1:",
        "self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)",
    ):
        assert line in add, line
    assert set(vars(NackGenerator())) == {"max_seq", "missing"}
    assert "min_seq = uint16_add(self.max_seq, -RTP_HISTORY_SIZE)" in inspect.getsource(NackGenerator.truncate)
    import aiortc.rtp

    assert aiortc.rtp.RTP_HISTORY_SIZE == 128  # sfu_native.c: NackGenerator.truncate's window
    ids = HeaderExtensionsMap()._HeaderExtensionsMap__ids  # type: ignore[attr-defined]
    assert {f.name for f in dataclasses.fields(ids)} >= {
        "mid",
        "repaired_rtp_stream_id",
        "rtp_stream_id",
        "abs_send_time",
        "transmission_offset",
        "audio_level",
        "transport_sequence_number",
    }
    get = inspect.getsource(HeaderExtensionsMap.get)
    order = [get.index(f"self.__ids.{name}") for name in ("mid", "repaired_rtp_stream_id", "rtp_stream_id")]
    order += [get.index(f"self.__ids.{name}") for name in ("abs_send_time", "transmission_offset", "audio_level")]
    assert order == sorted(order)  # sfu_native.c dispatches in this order
    assert 'values.abs_send_time = unpack("!L", b"\\00" + x_value)[0]' in get
    router = RtpRouter()
    assert vars(router).keys() >= {"ssrc_table", "payload_type_table"}
    register = inspect.getsource(RtpRouter.register_receiver)
    assert "self.ssrc_table[ssrc] = receiver" in register and "self.payload_type_table[payload_type].add(" in register
    route = inspect.getsource(RtpRouter.route_rtp)
    assert "if ssrc_receiver is not None and ssrc_receiver in pt_receivers:" in route
    assert "self._rtp_header_extensions_map.configure(parameters)" in inspect.getsource(
        RTCDtlsTransport._register_rtp_receiver
    )


def test_fast_rtcp_internals() -> None:
    """install_fast_demux's SRTCP path: aiortc's unprotect_rtcp + parse + route_rtcp + awaited handlers."""
    import pylibsrtp._binding as binding
    from aiortc.rtp import RtcpPacket

    recv_next = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "if is_rtcp(data):" in recv_next and "data = self._rx_srtp.unprotect_rtcp(data)" in recv_next
    handle = inspect.getsource(RTCDtlsTransport._handle_rtcp_data)
    assert "packets = RtcpPacket.parse(data)" in handle
    assert "for recipient in self._rtp_router.route_rtcp(packet):" in handle
    assert params(RtcpPacket.parse) == ["data"]
    assert params(RtpRouter.route_rtcp) == ["self", "packet"]
    assert inspect.iscoroutinefunction(RTCRtpSender._handle_rtcp_packet)
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtcp_packet)
    ffi, lib = binding.ffi, binding.lib
    assert ffi.typeof(ffi.addressof(lib, "srtp_unprotect_rtcp")).cname == (
        "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
    )


@pytest.mark.asyncio
async def test_native_guards_read_instance_dicts() -> None:
    """The C paths' guards are dict lookups by identity: these attributes must be plain instance attributes."""
    import asyncio.selector_events

    pc = RTCPeerConnection()
    dtls = pc.addTransceiver("video", direction="sendonly").sender.transport
    assert {"_state", "_tx_srtp", "_rx_srtp", "_RTCDtlsTransport__rx_packets", "_RTCDtlsTransport__rx_bytes"} <= set(
        vars(dtls)
    )
    await pc.close()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    try:
        assert isinstance(transport, asyncio.selector_events._SelectorDatagramTransport)
        assert vars(transport)["_buffer_size"] is 0  # noqa: F632  (identity with the cached small int is the guard)
        assert "return self._buffer_size" in inspect.getsource(type(transport).get_write_buffer_size)
        for method in (type(transport).sendto, type(transport)._sendto_ready):
            src = inspect.getsource(method)
            assert "self._buffer_size += " in src or "self._buffer_size -= " in src
    finally:
        transport.close()


def test_aioice_internals_used_to_resend_in_progress_checks() -> None:
    assert params(aioice.ice.Connection.check_incoming) == ["self", "message", "addr", "protocol"]
    assert "self.transactions[request.transaction_id] = transaction" in inspect.getsource(
        aioice.ice.StunProtocol.request
    )
    assert params(aioice.ice.StunProtocol.send_stun) == ["self", "message", "addr"]
    assert "check_incoming(" in inspect.getsource(aioice.ice.Connection.request_received)
    # Triggered checks are started for frozen/waiting/failed pairs only: an in-progress one waits its timer.
    assert "CandidatePair.State.FROZEN, CandidatePair.State.FAILED" in inspect.getsource(
        aioice.ice.Connection.check_incoming
    )


async def test_a_check_from_the_peer_resends_our_unanswered_check_to_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[Any, tuple[str, int]]] = []

    class Protocol:  # aioice.ice.StunProtocol's shape: pending transactions by id, send_stun
        def __init__(self) -> None:
            self.transactions: dict[bytes, aioice.stun.Transaction] = {}

        def send_stun(self, message: Any, addr: tuple[str, int]) -> None:
            sent.append((message, addr))

    protocol = Protocol()
    peer, other = ("10.0.0.2", 5000), ("10.0.0.3", 5000)
    pending = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    answered = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    elsewhere = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    for message, addr in ((pending, peer), (answered, peer), (elsewhere, other)):
        protocol.transactions[message.transaction_id] = aioice.stun.Transaction(message, addr, protocol)
    protocol.transactions[answered.transaction_id]._Transaction__future.set_result((answered, peer))
    for transaction in protocol.transactions.values():
        assert hasattr(transaction, "_Transaction__request") and hasattr(transaction, "_Transaction__addr")
    handled: list[tuple[str, int]] = []
    monkeypatch.setattr(
        aiortc_hooks, "_ORIGINAL_CHECK_INCOMING", lambda self, message, addr, protocol: handled.append(addr)
    )
    aiortc_hooks._check_incoming_resending(aioice.ice.Connection(ice_controlling=True), None, peer, protocol)
    assert handled == [peer]  # aioice's own handling first (the response was sent by its caller)
    assert sent == [(pending, peer)]  # only the unanswered check to that address


async def test_connections_still_connect_with_in_progress_checks_resent() -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_in_progress_checks_resent()
    try:
        assert aioice.ice.Connection.check_incoming is aiortc_hooks._check_incoming_resending
        server, task = await _pair(server_sees_mdns=False, browser_checks=True)
        try:
            await asyncio.wait_for(task, 10)
        finally:
            await server.close()
            await server._test_browser.close()  # type: ignore[attr-defined]
    finally:
        aiortc_hooks.set_in_progress_checks_resent(False)
    assert aioice.ice.Connection.check_incoming is aiortc_hooks._ORIGINAL_CHECK_INCOMING


def _shape(value: Any, path: str = "d") -> list[tuple[str, str]]:
    """Every field of an aiortc description, recursively, as (path, type and value) rows."""
    if isinstance(value, list | tuple):
        return [(path, f"len {len(value)}")] + [row for i, v in enumerate(value) for row in _shape(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [(path, f"keys {sorted(map(str, value))}")] + [
            row for k, v in value.items() for row in _shape(v, f"{path}.{k}")
        ]
    if hasattr(value, "__dict__") and type(value).__module__.startswith("aiortc"):
        return [(path, type(value).__name__)] + [
            row for k, v in vars(value).items() for row in _shape(v, f"{path}.{k}")
        ]
    return [(path, repr(value))]


async def test_set_local_offer_hands_aiortc_the_offer_it_built_equal_to_its_parsed_text() -> None:
    """aiortc's createOffer returns the text of a description it built and setLocalDescription parses that text
    again; set_local_offer hands the built one over. Pinned: the wrapper is where createOffer's description
    goes, parsing its text gives an equal description (every field, for the subscribe shapes: first offer,
    a re-offer with a line set inactive and a new one), setLocalDescription parses nothing, and the connection
    negotiates as before."""
    import aiortc.rtcpeerconnection
    import aiortc.sdp
    from aiortc import RTCSessionDescription
    from aiortc.exceptions import InvalidStateError
    from ms_helpers import until

    assert "return wrap_session_description(description)" in inspect.getsource(RTCPeerConnection.createOffer)
    assert "sdp.SessionDescription.parse(sessionDescription.sdp)" in inspect.getsource(
        RTCPeerConnection.setLocalDescription
    )
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_sdp_reuse()
    parses: list[str] = []
    original = aiortc_hooks._ORIGINAL_SDP_PARSE

    def counting(cls: Any, sdp: str) -> Any:
        parses.append(sdp)
        return original(cls, sdp)

    server, client = RTCPeerConnection(), RTCPeerConnection()
    try:
        assert aiortc.rtcpeerconnection.wrap_session_description is aiortc_hooks._recording_wrap
        aiortc_hooks._ORIGINAL_SDP_PARSE = counting
        lines = [
            server.addTransceiver(aiortc_hooks.IdleTrack(kind), direction="sendonly") for kind in ("audio", "video")
        ]
        for step in range(3):
            if step == 2:
                lines[1].direction = "inactive"
                server.addTransceiver(aiortc_hooks.IdleTrack("video"), direction="sendonly")
            created: list[Any] = []
            token = aiortc_hooks._CREATED.set(created)
            try:
                offer = await server.createOffer()
            finally:
                aiortc_hooks._CREATED.reset(token)
            assert len(created) == 1 and aiortc.sdp.SessionDescription.parse(offer.sdp) is not created[0]
            reparsed = aiortc.sdp.SessionDescription.parse(offer.sdp)
            reparsed.type = "offer"
            assert _shape(created[0]) == _shape(reparsed)
            parses.clear()
            await aiortc_hooks.set_local_offer(server)
            assert parses == [] and not aiortc_hooks._PARSED  # taken, not parsed
            await client.setRemoteDescription(server.localDescription)
            await client.setLocalDescription(await client.createAnswer())
            await server.setRemoteDescription(
                RTCSessionDescription(sdp=client.localDescription.sdp, type=client.localDescription.type)
            )
        assert [t.direction for t in server.getTransceivers()] == ["sendonly", "inactive", "sendonly"]
        assert await until(lambda: server.connectionState == client.connectionState == "connected")
    finally:
        aiortc_hooks._ORIGINAL_SDP_PARSE = original
        await server.close()
        await client.close()
    closing = RTCPeerConnection()
    closing.addTransceiver("audio", direction="sendonly")

    async def closed_meanwhile(description: Any) -> None:  # as a connection closed during the yield: raises first
        raise InvalidStateError("RTCPeerConnection is closed")

    closing.setLocalDescription = closed_meanwhile  # type: ignore[method-assign]
    with pytest.raises(InvalidStateError):
        await aiortc_hooks.set_local_offer(closing)
    assert not aiortc_hooks._PARSED  # a description aiortc did not take is never handed to another parse
    await closing.close()
    aiortc_hooks.set_sdp_reuse(False)
    assert aiortc.rtcpeerconnection.wrap_session_description is aiortc_hooks._ORIGINAL_WRAP
