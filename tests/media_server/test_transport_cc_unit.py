"""Transport-wide congestion control wiring: SDP, the sequence slot, stamping (C and Python), feedback to the estimator."""

from __future__ import annotations

import importlib
import struct
from typing import Any

import pytest
from ms_helpers import RecordingEstimator

from media_server import aiortc_hooks
from media_server.config import parse_config
from media_server.forwarder import Downstream, ExtensionIds, Forwarder
from media_server.rtputil import one_byte_extensions
from media_server.sdp import TRANSPORT_CC_URI, negotiated_by_mid, offer_transport_cc, parse_sdp
from media_server.send_side import SendSideBwe
from media_server.twcc import RING, TransportSequence, build_feedback

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=sendonly",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=mid:0",
        "a=rtpmap:96 opus/48000/2",
        "a=fingerprint:sha-256 00:11",
        "a=setup:actpass",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98",
        "c=IN IP4 0.0.0.0",
        "a=sendonly",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=mid:1",
        "a=rtpmap:97 VP8/90000",
        "a=rtcp-fb:97 nack",
        "a=rtcp-fb:97 goog-remb",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=fingerprint:sha-256 00:11",
        "a=setup:actpass",
        "m=video 0 UDP/TLS/RTP/SAVPF 97",
        "a=inactive",
        "a=mid:2",
        "a=rtpmap:97 VP8/90000",
        "",
    ]
)


def _section(sdp: str, mid: str) -> list[str]:
    sections = sdp.split("\r\nm=")
    return next(s for s in sections if f"a=mid:{mid}" in s).split("\r\n")


def test_offer_adds_the_extension_and_feedback_to_every_active_m_line_but_rtx() -> None:
    sdp = offer_transport_cc(OFFER)
    audio, video, rejected = _section(sdp, "0"), _section(sdp, "1"), _section(sdp, "2")
    ext = f"a=extmap:5 {TRANSPORT_CC_URI}"
    assert ext in audio and ext in video and ext not in rejected
    assert "a=rtcp-fb:96 transport-cc" in audio
    assert "a=rtcp-fb:97 transport-cc" in video and "a=rtcp-fb:98 transport-cc" not in video
    assert "a=rtcp-fb:97 goog-remb" in video  # REMB stays offered: the fallback
    assert video.index(ext) == video.index("a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time") + 1
    assert video.index("a=rtcp-fb:97 transport-cc") == video.index("a=rtpmap:97 VP8/90000") + 1
    assert offer_transport_cc(sdp) == sdp  # once only
    assert offer_transport_cc(OFFER.replace("\r\n", "\n")).count(TRANSPORT_CC_URI) == 2


def _answer(*, extension: bool, feedback: bool) -> str:
    lines = [
        "v=0",
        "o=- 2 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98",
        "c=IN IP4 0.0.0.0",
        "a=recvonly",
        "a=mid:1",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        *([f"a=extmap:5 {TRANSPORT_CC_URI}"] if extension else []),
        "a=rtpmap:97 VP8/90000",
        *(["a=rtcp-fb:97 transport-cc"] if feedback else []),
        "a=rtcp-fb:97 goog-remb",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=fingerprint:sha-256 00:11",
        "a=setup:active",
        "",
    ]
    return "\r\n".join(lines)


@pytest.mark.parametrize(
    "extension, feedback, expected", [(True, True, 5), (True, False, 0), (False, True, 0), (False, False, 0)]
)
def test_transport_cc_is_used_only_when_the_answer_accepts_extension_and_feedback(
    extension: bool, feedback: bool, expected: int
) -> None:
    negotiated = negotiated_by_mid(parse_sdp(_answer(extension=extension, feedback=feedback)))
    assert negotiated["1"].ext_ids == ExtensionIds(abs_send_time=3, transport_cc=expected)


# --------------------------------------------------------------------------
# The slot: first element of every forwarded packet's extension block
# --------------------------------------------------------------------------


def _downstream(kind: str, sent: list[bytes], ext_ids: ExtensionIds) -> Downstream:
    d = Downstream(kind=kind, ssrc=0x1234, rtx_ssrc=0x5678, send=lambda data: sent.append(data) or True)
    pt = {"video/vp8": 100} if kind == "video" else {"audio/opus": 111}
    d.configure(pt_by_codec=pt, rtx_pt_by_pt={100: 101} if kind == "video" else {}, ext_ids=ext_ids)
    d.ready = True
    return d


def _has_slot(data: bytes, ident: int) -> bool:
    return data[0] & 0x1F == 0x10 and data[12:14] == b"\xbe\xde" and data[16] == (ident << 4) | 1


@pytest.mark.parametrize("native", [False, pytest.param(True, marks=pytest.mark.native)], ids=["python", "native"])
def test_every_forwarded_packet_reserves_the_slot_first(native: bool) -> None:
    """Audio, video, NACK repairs (RTX) and probes carry the two-byte slot as the first element."""
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import RtpPacket

    if native and aiortc_hooks.NATIVE is None:
        pytest.skip("MEDIA_NATIVE=0")
    module = aiortc_hooks.NATIVE if native else None
    sent: list[bytes] = []
    video = _downstream("video", sent, ExtensionIds(abs_send_time=3, transport_cc=5))
    fwd = Forwarder(kind="video", request_keyframe=lambda: None, native=module)
    fwd.attach(video)
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    for seq in range(5):
        payload = b"\x10\x00\x9d\x01\x2a" + bytes(50) if seq == 0 else b"\x10\x01" + bytes(40)
        fwd.on_rtp(RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=1, payload=payload), vp8)
    assert len(sent) == 5 and all(_has_slot(p, 5) and p[17:19] == b"\x00\x00" for p in sent)
    assert all(p[19] == (3 << 4) | 2 for p in sent)  # abs-send-time follows
    video.retransmit([video.last_seq])
    video.probe(1)
    assert len(sent) == 7 and all(_has_slot(p, 5) for p in sent[5:])
    sent.clear()
    audio = _downstream("audio", sent, ExtensionIds(audio_level=2, transport_cc=5))
    afwd = Forwarder(kind="audio", request_keyframe=lambda: None, native=module)
    afwd.attach(audio)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    for seq in range(3):
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=2, payload=b"o" * 30)
        packet.extensions.audio_level = (True, 20)
        afwd.on_rtp(packet, opus)
    assert len(sent) == 3 and all(_has_slot(p, 5) and p[19] == (2 << 4) for p in sent)
    sent.clear()
    plain = _downstream("video", sent, ExtensionIds(abs_send_time=3))  # not negotiated: no slot
    fwd.attach(plain)
    fwd.on_rtp(
        RtpPacket(payload_type=96, sequence_number=9, timestamp=1, ssrc=1, payload=b"\x10\x00\x9d\x01\x2a" + bytes(9)),
        vp8,
    )
    assert any(not _has_slot(p, 5) and p[16] == (3 << 4) | 2 for p in sent)


# --------------------------------------------------------------------------
# Stamping: the C TransportSequence against the Python one
# --------------------------------------------------------------------------


def _slotted(seq: int, size: int, ident: int = 5, padding: bool = False) -> bytes:
    ext = one_byte_extensions([(ident, b"\x00\x00"), (3, b"\x01\x02\x03")])
    first = 0x90 | (0x20 if padding else 0)
    return struct.pack("!BBHII", first, 100, seq, seq * 3000, 0x1234) + ext + bytes([seq & 0xFF]) * size


def _script() -> list[bytes]:
    packets = [_slotted(i, 100 + i) for i in range(10)]
    packets.append(struct.pack("!BBHII", 0x80, 100, 1, 2, 3) + bytes(30))  # no extension: not stamped
    packets.append(_slotted(11, 10, ident=6))  # another element first: not stamped
    packets.append(_slotted(12, 255, padding=True))  # a probe (RTP padding)
    packets.append(b"\x90" + bytes(10))  # too short
    return packets


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.mark.native
def test_c_and_python_sequences_stamp_and_record_the_same() -> None:
    if aiortc_hooks.NATIVE is None:
        pytest.skip("MEDIA_NATIVE=0")
    native = importlib.import_module("_sfu_native")
    results = []
    for seq in (
        TransportSequence(id=5, next_seq=65533, clock=_Clock()),
        native.TransportSequence(id=5, next_seq=65533, clock=_Clock()),
    ):
        out = []
        for i, packet in enumerate(_script()):
            seq.cluster = 7 if i == 12 else -1
            out.append(seq.stamp(packet))
        results.append((out, seq.next_seq, seq.pending, seq.drain(), seq.pending))
    py, c = results
    assert c == py
    out, next_seq, pending, records, after = py
    assert [int.from_bytes(p[17:19], "big") for p in out[:10]] == [65533, 65534, 65535, 0, 1, 2, 3, 4, 5, 6]
    assert out[10:12] == _script()[10:12] and out[13] == _script()[13]
    assert int.from_bytes(out[12][17:19], "big") == 7 and next_seq == 8
    assert pending == 11 and after == 0
    assert records[0] == (65533, len(_script()[0]), pytest.approx(100.001), -1)
    assert records[-1][0] == 7 and records[-1][3] == 7


@pytest.mark.parametrize("native", [False, pytest.param(True, marks=pytest.mark.native)], ids=["python", "native"])
def test_sequence_forgets_the_oldest_records_when_nobody_drains(native: bool) -> None:
    if native and aiortc_hooks.NATIVE is None:
        pytest.skip("MEDIA_NATIVE=0")
    seq: Any = aiortc_hooks.transport_sequence(aiortc_hooks.NATIVE if native else None)
    assert seq.id == 0 and seq.stamp(_slotted(1, 10)) == _slotted(1, 10)  # id 0: nothing stamped
    seq.id = 5
    for i in range(RING + 3):
        seq.stamp(_slotted(i, 1))
    assert seq.pending == RING and seq.dropped == 3
    records = seq.drain()
    assert records[0][0] == 4 and records[-1][0] == RING + 3  # next_seq starts at 1
    with pytest.raises(ValueError):
        seq.id = 15


# --------------------------------------------------------------------------
# Feedback to the estimator (a stand-in with bwe.SendSideEstimator's signature)
# --------------------------------------------------------------------------


def test_feedback_reaches_the_estimator_after_the_packets_it_reports() -> None:
    clock = _Clock()
    sequence = TransportSequence(id=5, next_seq=65534, clock=clock)
    estimator = RecordingEstimator(start_bps=300_000, min_bps=30_000, max_bps=10_000_000)
    bwe = SendSideBwe(estimator=estimator, sequence=sequence, clock=clock)
    assert bwe.active and not estimator.covers_audio  # no feedback yet: REMB decides
    for i in range(4):
        sequence.cluster = 3 if i == 3 else -1
        sequence.stamp(_slotted(i, 50))
    feedback = build_feedback(
        sender_ssrc=1, media_ssrc=2, base_seq=65534, feedback_count=0, reference=10, deltas=[4, None, 8, 300]
    )
    bwe.on_feedback([feedback, b"\x8f\xcd\x00\x01" + bytes(4)])  # the second one is malformed
    kinds = [k for k, _ in estimator.calls]
    assert kinds == ["sent", "sent", "sent", "sent", "feedback"]
    sent = [c for k, c in estimator.calls if k == "sent"]
    assert [c["seq"] for c in sent] == [65534, 65535, 0, 1]
    assert [c["probe_cluster"] for c in sent] == [None, None, None, 3]
    assert sent[0]["size"] == len(_slotted(0, 50))
    assert sent[0]["send_time"] == pytest.approx(100.001)
    results = estimator.calls[-1][1]["results"]
    assert [s for s, _ in results] == [65534, 65535, 0, 1]
    assert results[1][1] is None and results[0][1] == pytest.approx(0.64 + 0.001)
    assert (bwe.feedback_packets, bwe.malformed, bwe.reported, bwe.lost) == (1, 1, 4, 1)
    assert estimator.covers_audio  # fresh transport-cc feedback: the estimate covers all media
    bwe.on_feedback([feedback[:-4]])  # cut short: dropped, counted
    assert bwe.malformed == 2 and [k for k, _ in estimator.calls].count("feedback") == 1


def test_the_pacer_restamps_abs_send_time_behind_the_sequence_slot_and_the_sequence_is_written_after() -> None:
    """A packet that waited in the pacer gets a fresh abs-send-time (rtputil.set_abs_send_time, as the pacer
    calls it) without touching the transport-wide slot in front of it; the number is written when it is sent."""
    from media_server.rtputil import abs_send_time, set_abs_send_time

    packet = _slotted(7, 40)
    restamped = set_abs_send_time(packet, 3, abs_send_time(1_700_000_000.0))
    assert restamped[16:19] == b"\x51\x00\x00" and restamped[19] == 0x32 and restamped[20:23] != b"\x01\x02\x03"
    assert restamped[23:] == packet[23:]
    sequence = TransportSequence(id=5, next_seq=42)
    assert sequence.stamp(restamped)[16:19] == b"\x51\x00\x2a"


def test_transport_cc_is_offered_by_default_and_off_only_when_asked() -> None:
    """On by default: only the send-side estimate's probing brings a subscriber back to 720p within 10 s of a
    300 kbit/s limit going away (tests/e2e/test_network.py); MEDIA_TRANSPORT_CC=0 leaves REMB alone."""
    env = {"MEDIA_SECRET": "s" * 32}
    assert parse_config([], env=env).transport_cc
    assert parse_config([], env={**env, "MEDIA_TRANSPORT_CC": "1"}).transport_cc
    for off in ("0", "false", "no", "FALSE", " no "):
        assert not parse_config([], env={**env, "MEDIA_TRANSPORT_CC": off}).transport_cc
