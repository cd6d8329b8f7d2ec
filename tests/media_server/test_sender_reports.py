"""RTCP sender reports of a subscribe connection: one timer and compound packets for all its m-lines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpSdesPacket, RtcpSrPacket
from ms_helpers import PublisherClient, SubscriberClient, recv_frames, until

from media_server import aiortc_hooks


def _record_rtcp(client: SubscriberClient) -> list[list[Any]]:
    """Every SRTCP datagram the client's transport receives, parsed (one list of packets per datagram)."""
    dtls = client.pc.getTransceivers()[0].receiver.transport
    original = dtls._handle_rtcp_data
    datagrams: list[list[Any]] = []

    async def recording(data: bytes) -> None:
        datagrams.append(RtcpPacket.parse(data))
        await original(data)

    dtls._handle_rtcp_data = recording
    return datagrams


def _subscriber(media: Any, participant: str) -> Any:
    return next(iter(media.service.rooms.values())).participants[participant].subscriber


def _report_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "SenderReports._run"]


@pytest.mark.asyncio
async def test_one_timer_sends_every_m_lines_sender_report_in_one_compound_packet(media) -> None:
    """Four m-lines: their SRs (with aiortc's values) and CNAMEs arrive together; aiortc's per-sender loops never run."""
    pubs = [PublisherClient(media.http, "r1", name) for name in ("alice", "carol")]
    for pub in pubs:
        await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    datagrams = _record_rtcp(sub)
    await recv_frames(sub.track("alice", "camera"), 2)
    await recv_frames(sub.track("carol", "camera"), 2)
    server = _subscriber(media, "bob")
    senders = [slot.transceiver.sender for slot in server.slots]
    ssrcs = {s._ssrc for s in senders}
    assert len(ssrcs) == 4 and server.sender_reports.senders == 4
    assert len(_report_tasks()) == 1  # bob's connection; the publishers subscribe to nothing
    for sender in senders:  # aiortc's own per-sender loop (RTCRtpSender._run_rtcp) is not what runs
        assert sender._RTCRtpSender__rtcp_task.get_coro().__qualname__ == "SenderReports._run_sender"

    # The forwarder adds to a sender's SR counts every SR_BATCH packets, so an SR sent before a stream's first
    # batch (on a busy machine: seconds) truly says 0 packets and proves nothing about the values. Wait (bounded;
    # the timer fires every 0.5-1.5 s) for a compound packet with every m-line's SR, sent once each had counted
    # packets: a product that left aiortc's counts out of the SRs would never send one.
    def complete() -> list[list[Any]]:
        return [
            d
            for d in datagrams
            if {p.ssrc for p in d if isinstance(p, RtcpSrPacket) and p.sender_info.packet_count > 0} == ssrcs
        ]

    assert await until(lambda: bool(complete())), datagrams
    packets = complete()[0]
    assert isinstance(packets[0], RtcpSrPacket)  # a compound packet starts with a report
    sdes = [p for p in packets if isinstance(p, RtcpSdesPacket)]
    assert len(sdes) == 1
    cname = senders[0]._RTCRtpSender__cname
    assert {c.ssrc: c.items for c in sdes[0].chunks} == {ssrc: [(1, cname.encode())] for ssrc in ssrcs}
    for report in (p for p in packets if isinstance(p, RtcpSrPacket)):
        sender = next(s for s in senders if s._ssrc == report.ssrc)
        assert 0 < report.sender_info.packet_count <= sender._RTCRtpSender__packet_count
        assert report.sender_info.octet_count <= sender._RTCRtpSender__octet_count
    for sender in senders:  # what the receiver's reports will quote (LSR): the middle of the last SR's NTP time

        def quotes_last_sr(sender: Any = sender) -> bool:  # (the latest SR may still be on its way)
            sent = [p for d in datagrams for p in d if isinstance(p, RtcpSrPacket) and p.ssrc == sender._ssrc]
            return bool(sender._RTCRtpSender__lsr == (sent[-1].sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF)

        assert await until(quotes_last_sr)

    # The receiver's reports refer to these SRs: the SFU measures each m-line's round-trip time as before.
    await until(lambda: all(aiortc_hooks.sender_rtt(s) is not None for s in senders))
    # Loopback, but measured by an event loop that also runs both ends: 0.3-0.9 s on the busy 2-core machine.
    # The bound still catches a wrong LSR/DLSR reading (off by 2^16 units, or negative).
    assert all(0 <= aiortc_hooks.sender_rtt(s) < 5 for s in senders), [aiortc_hooks.sender_rtt(s) for s in senders]

    await sub.close()
    assert await until(lambda: not _report_tasks() and server.sender_reports.senders == 0)
    await asyncio.gather(*(p.close() for p in pubs))


@pytest.mark.asyncio
async def test_stopping_the_connection_sends_bye_and_ends_the_timer(media) -> None:
    """The server closing a subscribe connection stops every sender: each says BYE (as aiortc's did), no task stays."""
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    datagrams = _record_rtcp(sub)
    await recv_frames(sub.track("alice", "camera"), 2)
    server = _subscriber(media, "bob")
    ssrcs = {slot.transceiver.sender._ssrc for slot in server.slots}
    assert len(_report_tasks()) == 1
    await server.close()
    for _ in range(20):
        byes = {s for d in datagrams for p in d if isinstance(p, RtcpByePacket) for s in p.sources}
        if byes == ssrcs:
            break
        await asyncio.sleep(0.05)
    assert byes == ssrcs
    assert not _report_tasks() and server.sender_reports.senders == 0
    await asyncio.gather(pub.close(), sub.close())


def test_sender_reports_split_into_packets_that_fit_a_datagram() -> None:
    """A connection with many m-lines sends several compound packets, each SR+SDES, each well under an MTU."""
    from aiortc.rtcdtlstransport import State

    class FakeTransport:
        _state = State.CONNECTED

    transport = FakeTransport()

    class FakeSender:
        def __init__(self, ssrc: int) -> None:
            self._ssrc = ssrc
            self.transport = transport
            self._RTCRtpSender__ntp_timestamp = (3_900_000_000 << 32) | 0x12345678
            self._RTCRtpSender__rtp_timestamp = 1000 + ssrc
            self._RTCRtpSender__packet_count = 10 + ssrc
            self._RTCRtpSender__octet_count = 1 << 33  # wraps like aiortc's
            self._RTCRtpSender__cname = "{ca53c1c0-8a36-4d4b-8bd5-3d2a5a8e8d2f}"
            self._RTCRtpSender__lsr = None
            self._RTCRtpSender__lsr_time = None

    senders = [FakeSender(i + 1) for i in range(2 * aiortc_hooks.SR_PER_PACKET + 1)]
    sent: list[bytes] = []
    reports = aiortc_hooks.SenderReports()
    reports._senders = senders  # type: ignore[assignment]  # as if each had started
    reports._send[transport] = lambda data: sent.append(data) is None  # type: ignore[index]  # the raw SRTCP sender
    assert reports.send_now() == 3
    assert [len(RtcpPacket.parse(data)) - 1 for data in sent] == [aiortc_hooks.SR_PER_PACKET] * 2 + [1]
    for data in sent:
        assert len(data) + 14 + 10 < 1200  # + SRTCP index and authentication tag
    packets = [p for data in sent for p in RtcpPacket.parse(data)]
    reported = [p for p in packets if isinstance(p, RtcpSrPacket)]
    assert [p.ssrc for p in reported] == [s._ssrc for s in senders]
    assert reported[0].sender_info.octet_count == 0 and reported[0].sender_info.packet_count == 11
    assert reported[0].sender_info.rtp_timestamp == 1001
    chunks = [c.ssrc for p in packets if isinstance(p, RtcpSdesPacket) for c in p.chunks]
    assert chunks == [s._ssrc for s in senders]
    assert all(s._RTCRtpSender__lsr == (s._RTCRtpSender__ntp_timestamp >> 16) & 0xFFFFFFFF for s in senders)
    assert all(s._RTCRtpSender__lsr_time is not None for s in senders)
