"""Forwarder/Downstream rewriting, NACK history, PLI throttle; speaker detection; config."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media_server.config import ConfigError, parse_config
from media_server.forwarder import (
    HOLD_SPAN,
    MAX_RETRANSMITS,
    RETRANSMIT_MEMORY,
    Downstream,
    ExtensionIds,
    Forwarder,
)
from media_server.rtputil import (
    is_h264_keyframe_start,
    is_vp8_keyframe_start,
    rewrite_vp8_picture_ids,
    rtp_header_len,
    vp8_picture_ids,
)
from media_server.speaker import ActiveSpeakerDetector

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
KEY = b"\x10" + b"\x00" * 10  # S=1, PID=0, VP8 P bit 0 => keyframe
DELTA = b"\x10\x01" + b"\x00" * 9


def packet(seq: int, ts: int, payload: bytes, pt: int = 96) -> RtpPacket:
    return RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=1234, payload=payload)


def make_downstream(sent: list[bytes]) -> Downstream:
    d = Downstream(
        kind="video",
        ssrc=0xAABBCCDD,
        rtx_ssrc=0x11223344,
        send=lambda b: sent.append(b) or True,
        initial_sequence=100,
        initial_timestamp=5000,
    )
    d.configure(pt_by_codec={"video/vp8": 120}, rtx_pt_by_pt={120: 121}, ext_ids=ExtensionIds(abs_send_time=3))
    d.ready = True
    return d


def header(data: bytes) -> tuple[int, int, int, int, int]:
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    return b0, b1 & 0x7F, seq, ts, ssrc


def test_rewrites_ssrc_pt_seq_ts_and_starts_on_keyframe() -> None:
    plis: list[int] = []
    fwd = Forwarder(kind="video", request_keyframe=lambda: plis.append(1))
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd.attach(d)
    assert plis == [1]  # a new subscriber stream asks the publisher for a keyframe
    fwd.on_rtp(packet(5000, 900000, DELTA), VP8)
    assert sent == []  # waits for the keyframe
    fwd.on_rtp(packet(5001, 903000, KEY), VP8)
    fwd.on_rtp(packet(5002, 906000, DELTA), VP8)
    (_, pt1, seq1, ts1, ssrc1), (_, _, seq2, ts2, _) = header(sent[0]), header(sent[1])
    assert (pt1, ssrc1) == (120, 0xAABBCCDD)
    assert seq1 == 101 and seq2 == 102  # continues the stream's own sequence space
    assert ts2 - ts1 == 3000
    assert sent[0][12:14] == b"\xbe\xde" and sent[0].endswith(KEY)


def test_sequence_continuous_across_publisher_switch() -> None:
    sent: list[bytes] = []
    d = make_downstream(sent)
    a = Forwarder(kind="video", request_keyframe=lambda: None)
    b = Forwarder(kind="video", request_keyframe=lambda: None)
    a.attach(d)
    a.on_rtp(packet(10, 1000, KEY), VP8)
    a.on_rtp(packet(11, 4000, DELTA), VP8)
    a.detach(d)
    b.attach(d)
    b.on_rtp(packet(60000, 77, KEY), VP8)
    seqs = [header(x)[2] for x in sent]
    assert seqs == [101, 102, 103]
    assert header(sent[2])[3] != 77  # timestamp offset applied


def test_nack_is_answered_from_history_with_rtx() -> None:
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    fwd.attach(d)
    for i in range(5):
        fwd.on_rtp(packet(200 + i, 1000 + i * 3000, KEY if i == 0 else DELTA), VP8)
    original = sent[2]
    lost_seq = header(original)[2]
    sent.clear()
    assert d.retransmit([lost_seq, 9999], now=10.0) == 1  # 9999 was never sent
    b0, pt, _rtx_seq, ts, ssrc = header(sent[0])
    assert (pt, ssrc, ts) == (121, 0x11223344, header(original)[3])
    ext_len = 4 + 4 * struct.unpack("!H", original[14:16])[0]
    assert sent[0][12 + ext_len : 14 + ext_len] == struct.pack("!H", lost_seq)  # RFC 4588 OSN
    assert sent[0][14 + ext_len :] == original[12 + ext_len :]
    d.rtx_pt_by_pt = {}
    sent.clear()
    assert d.retransmit([lost_seq], now=10.05) == 0  # repeated NACK within 100 ms: not resent again
    d.retransmit([lost_seq], now=10.2)
    assert sent == [original]  # plain retransmission without RTX


def _clocked_video_forwarder(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[float], Forwarder]:
    """A video Forwarder on a fake monotonic clock (``now[0]``, seconds) and the clock time of each PLI it sends."""
    now = [100.0]
    monkeypatch.setattr("media_server.forwarder.time.monotonic", lambda: now[0])
    plis: list[float] = []
    return now, plis, Forwarder(kind="video", request_keyframe=lambda: plis.append(now[0]))


def test_keyframe_requests_are_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    now, plis, fwd = _clocked_video_forwarder(monkeypatch)
    for _ in range(10):
        fwd.request_keyframe()
        now[0] += 0.125
    assert plis == [100.0, 100.5, 101.0]


def test_keyframe_request_is_repeated_while_a_stream_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost or throttled PLI must not leave a new video stream silent: re-requested every interval."""
    now, plis, fwd = _clocked_video_forwarder(monkeypatch)
    sent: list[bytes] = []
    d = make_downstream(sent)
    d.ready = False  # attached before the subscriber's transport is connected
    fwd.attach(d)
    for seq in range(5000, 5010):  # nothing is requested on behalf of a stream that cannot send yet
        fwd.on_rtp(packet(seq, seq * 3000, DELTA), VP8)
        now[0] += 0.1
    d.ready = True
    for seq in range(5010, 5040):  # the publisher ignores the first requests (e.g. the PLI was lost)
        fwd.on_rtp(packet(seq, seq * 3000, DELTA), VP8)
        now[0] += 0.1
    assert sent == []
    # first once it can send, then about one per 500 ms while waiting
    assert plis[0] == pytest.approx(101.0) and len(plis) >= 5
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(plis))
    fwd.on_rtp(packet(5040, 5040 * 3000, KEY), VP8)
    count = len(plis)
    for seq in range(5041, 5060):
        fwd.on_rtp(packet(seq, seq * 3000, DELTA), VP8)
        now[0] += 0.1
    assert len(sent) == 20 and len(plis) == count  # flowing: no more requests


def test_a_stream_starting_just_after_a_keyframe_went_by_gets_its_own_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Joins close together: B becomes ready 30 ms after A's keyframe arrived; B's PLI is sent then, not 0.5 s later."""
    now, plis, fwd = _clocked_video_forwarder(monkeypatch)
    sent_a: list[bytes] = []
    sent_b: list[bytes] = []
    a, b = make_downstream(sent_a), make_downstream(sent_b)
    fwd.attach(a)
    assert plis == [100.0]
    now[0] += 0.02
    fwd.on_rtp(packet(5000, 900000, KEY), VP8)  # A's keyframe
    assert len(sent_a) == 1
    now[0] += 0.03
    b.ready = False
    fwd.attach(b)  # before B's transport is connected: nothing could be sent, so nothing is asked yet
    now[0] += 0.01
    fwd.on_rtp(packet(5001, 903000, KEY), VP8)  # another subscriber's keyframe goes by while B cannot send
    now[0] += 0.01
    b.ready = True  # connected (Subscriber._make_ready)
    fwd.request_keyframe(force=True)
    assert plis == pytest.approx([100.0, 100.07])
    now[0] += 0.02
    fwd.on_rtp(packet(5002, 906000, KEY), VP8)
    assert len(sent_b) == 1


def test_answered_requests_without_force_still_wait_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """A subscriber that keeps sending PLIs cannot make the camera send keyframes more than twice a second."""
    now, plis, fwd = _clocked_video_forwarder(monkeypatch)
    fwd.attach(make_downstream([]))
    for seq in range(5000, 5020):  # every request answered by a keyframe 50 ms later; a PLI every 100 ms
        fwd.request_keyframe()
        now[0] += 0.05
        fwd.on_rtp(packet(seq, seq * 3000, KEY), VP8)
        now[0] += 0.05
    assert 3 <= len(plis) <= 4 and all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(plis))  # in 2 s


def test_one_unanswered_keyframe_request_serves_every_stream_starting_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now, plis, fwd = _clocked_video_forwarder(monkeypatch)
    streams = [make_downstream([]) for _ in range(5)]
    for d in streams:  # five subscribers become ready within 40 ms
        fwd.attach(d)
        now[0] += 0.01
    for seq in range(5000, 5005):  # the keyframe is not there yet: the waiting streams ask on each packet
        fwd.on_rtp(packet(seq, seq * 3000, DELTA), VP8)
    assert plis == [100.0]
    fwd.on_rtp(packet(5005, 5005 * 3000, KEY), VP8)
    assert all(not d.waiting_keyframe for d in streams)
    now[0] += 0.01
    fwd.on_rtp(packet(5006, 5006 * 3000, DELTA), VP8)
    assert plis == [100.0]  # flowing: nobody asks again


def _holding_downstream(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[float], list[float], Forwarder, list[bytes], Downstream]:
    """A clocked video forwarder and an attached downstream that is not connected yet and holds (``hold``)."""
    now, plis, fwd = _clocked_video_forwarder(monkeypatch)
    sent: list[bytes] = []
    d = make_downstream(sent)
    d.ready = False
    d.hold()
    fwd.attach(d)
    return now, plis, fwd, sent, d


def test_a_stream_not_yet_connected_holds_the_keyframe_asked_for_and_sends_it_once_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hold(): the keyframe is asked for when the answer is applied, kept (with what follows) while ICE and
    DTLS finish, and sent the moment the transport is ready: no PLI round trip after the connection."""
    now, plis, fwd, sent, d = _holding_downstream(monkeypatch)
    assert plis == [100.0]  # at once, not when connected
    fwd.on_rtp(packet(5000, 900000, DELTA), VP8)  # before the keyframe: not held
    now[0] += 0.04
    for i, payload in enumerate((KEY, DELTA, DELTA)):
        fwd.on_rtp(packet(5001 + i, 903000 + i * 3000, payload), VP8)
        now[0] += 0.02
    assert sent == []
    d.ready = True  # connected (Subscriber._make_ready)
    assert d.send_held()
    fwd.on_rtp(packet(5004, 912000, DELTA), VP8)
    assert [header(x)[2] for x in sent] == [101, 102, 103, 104] and sent[0].endswith(KEY)
    assert d.packets_sent == 4 and d.held is None
    assert plis == [100.0]  # nothing more to ask


def test_a_hold_longer_than_its_span_is_given_up_and_the_stream_waits_for_a_fresh_keyframe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never more than HOLD_SPAN of video behind its source: a connection that takes longer starts on a keyframe
    asked for when it is ready, as without holding."""
    now, plis, fwd, sent, d = _holding_downstream(monkeypatch)
    seq = 5000
    for payload in (KEY, *[DELTA] * 10):
        fwd.on_rtp(packet(seq, seq * 3000, payload), VP8)
        seq += 1
        now[0] += HOLD_SPAN / 5
    d.ready = True
    assert not d.send_held()  # nothing held: Subscriber._make_ready asks for a keyframe now
    assert d.waiting_keyframe and sent == []
    fwd.on_rtp(packet(seq, seq * 3000, KEY), VP8)
    assert len(sent) == 1 and sent[0].endswith(KEY)


def test_a_held_stream_detached_before_it_is_ready_forgets_what_it_held() -> None:
    """The held packets belong to their source: a stream moved to another one (last-N, a layer) drops them."""
    sent: list[bytes] = []
    d = make_downstream(sent)
    d.ready = False
    d.hold()
    a = Forwarder(kind="video", request_keyframe=lambda: None)
    a.attach(d)
    a.on_rtp(packet(10, 1000, KEY), VP8)
    assert d.held
    a.detach(d)
    assert d.held == []
    d.ready = True
    assert not d.send_held() and sent == []


def test_audio_is_never_held() -> None:
    d = Downstream(kind="audio", ssrc=1, rtx_ssrc=2, send=lambda b: True)
    d.hold()
    assert d.held is None


def test_no_common_codec_is_not_forwarded() -> None:
    sent: list[bytes] = []
    d = make_downstream(sent)
    d.pt_by_codec = {"video/h264;1;42e0": 99}
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    fwd.attach(d)
    fwd.on_rtp(packet(1, 1, KEY), VP8)
    assert sent == [] and d.missing_codec == "video/vp8"


def test_keyframe_detection() -> None:
    assert is_vp8_keyframe_start(bytes.fromhex("9080ba57f00f"))
    assert not is_vp8_keyframe_start(bytes.fromhex("9080ba583104"))
    assert is_h264_keyframe_start(bytes([0x65]))  # IDR
    assert is_h264_keyframe_start(bytes([0x7C, 0x85]))  # FU-A start of IDR
    assert not is_h264_keyframe_start(bytes([0x41]))
    assert is_h264_keyframe_start(bytes([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE]))  # STAP-A SPS


def test_active_speaker_hysteresis() -> None:
    changes: list[str] = []
    det = ActiveSpeakerDetector(changes.append)
    t = 0.0
    for _ in range(100):  # 1 s: alice loud, bob quiet
        det.feed("alice", 20, t)
        det.feed("bob", 100, t)
        t += 0.01
    assert changes == ["alice"]
    for _ in range(20):  # a 200 ms burst from bob does not switch
        det.feed("alice", 120, t)
        det.feed("bob", 10, t)
        t += 0.01
    for _ in range(20):
        det.feed("alice", 20, t)
        det.feed("bob", 120, t)
        t += 0.01
    assert changes == ["alice"]
    for _ in range(150):  # bob speaks for 1.5 s: switch once
        det.feed("alice", 127, t)
        det.feed("bob", 10, t)
        t += 0.01
    assert changes == ["alice", "bob"]


def test_config_from_env_and_flags() -> None:
    with pytest.raises(ConfigError):
        parse_config([], env={})
    dev = parse_config(["--dev"], env={})
    assert dev.secret == "dev-media-secret" and dev.ice_addresses == ("127.0.0.1",) and dev.ice_servers == ()
    cfg = parse_config(
        ["--control-port", "9000"],
        env={
            "MEDIA_SECRET": "s" * 32,
            "MEDIA_ICE_ADDRESSES": "10.0.0.5, 127.0.0.1",
            "MEDIA_ICE_ANNOUNCE": "10.0.0.5=203.0.113.7",
            "MEDIA_ICE_SERVERS": '[{"urls": "turn:t.example:3478", "username": "u", "credential": "c"}]',
            "MEDIA_NODE_ID": "node-a",
        },
    )
    assert cfg.control_port == 9000 and cfg.secret == "s" * 32 and cfg.node_id == "node-a"
    assert cfg.ice_addresses == ("10.0.0.5", "127.0.0.1")
    assert cfg.ice_announce == {"10.0.0.5": "203.0.113.7"}
    assert cfg.ice_servers[0].urls == ("turn:t.example:3478",)
    assert parse_config([], env={"MEDIA_SECRET": "s" * 32, "MEDIA_ICE_ADDRESSES": ""}).ice_addresses == ()
    with pytest.raises(ConfigError):
        parse_config([], env={"MEDIA_SECRET": "s" * 32, "MEDIA_ICE_SERVERS": "{"})


def test_announce_rewrites_candidates() -> None:
    from media_server.sdp import announce_addresses

    sdp = "c=IN IP4 10.0.0.5\r\na=candidate:abc 1 udp 2130706431 10.0.0.5 5000 typ host\r\n"
    out = announce_addresses(sdp, {"10.0.0.5": "203.0.113.7"})
    assert "203.0.113.7 5000 typ host" in out and "10.0.0.5" not in out


def test_sender_report_counters_are_batched() -> None:
    """SR bookkeeping is pushed to the aiortc sender every SR_BATCH packets."""
    from media_server.forwarder import SR_BATCH

    reports: list[tuple[int, int, int]] = []
    d = Downstream(kind="audio", ssrc=1, rtx_ssrc=2, send=lambda b: True, on_sent=lambda *a: reports.append(a))
    d.configure(pt_by_codec={"audio/opus": 111}, rtx_pt_by_pt={}, ext_ids=ExtensionIds())
    d.ready = True
    fwd = Forwarder(kind="audio", request_keyframe=lambda: None)
    fwd.attach(d)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
    for i in range(SR_BATCH * 2 + 3):
        fwd.on_rtp(packet(i, i * 960, b"x" * 10), opus)
    assert [(octets, n) for _, octets, n in reports] == [(10 * SR_BATCH, SR_BATCH)] * 2


def test_release_drops_the_nack_history_at_once() -> None:
    """A closed subscriber stream frees its ~1 MB history by refcount, without waiting for the cyclic GC."""
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd.attach(d)
    fwd.on_rtp(packet(5001, 903000, KEY), VP8)
    fwd.on_rtp(packet(5002, 906000, DELTA), VP8)
    assert d.retransmit([101]) == 1
    fwd.detach(d)
    d.release()
    assert not d.ready and all(h == b"" for h in d.history)
    assert d.retransmit([102], now=1e9) == 0
    fwd.on_rtp(packet(5003, 909000, DELTA), VP8)
    assert len(sent) == 3  # nothing forwarded after detach + release


def vp8(pid: int, tl0: int, tid: int, *, key: bool) -> bytes:
    """A VP8 payload with the descriptor Chromium sends: X, 15-bit picture ID, TL0PICIDX, TID."""
    descriptor = bytes([0x90, 0xE0, 0x80 | pid >> 8, pid & 0xFF, tl0, tid << 6])
    return descriptor + (b"\x00" if key else b"\x01") + b"frame-data"


def sent_ids(data: bytes) -> tuple[int, int, int]:
    ext_len = 4 + 4 * struct.unpack("!H", data[14:16])[0] if data[0] & 0x10 else 0
    return vp8_picture_ids(data[12 + ext_len :])


def test_picture_ids_stay_continuous_across_a_layer_switch() -> None:
    """Each simulcast layer numbers its pictures on its own: a switch must not make them jump (back)."""
    sent: list[bytes] = []
    d = make_downstream(sent)
    low = Forwarder(kind="video", request_keyframe=lambda: None)
    high = Forwarder(kind="video", request_keyframe=lambda: None)
    low.attach(d)
    for i in range(4):
        low.on_rtp(packet(100 + i, i * 3000, vp8(7000 + i, 50 + i // 2, i % 2, key=i == 0)), VP8)
    assert [sent_ids(x)[0] for x in sent] == [7000, 7001, 7002, 7003]  # the first source passes unchanged
    high.switch_on_keyframe(d, low.detach)
    high.on_rtp(packet(9000, 20000, vp8(6900, 200, 1, key=False)), VP8)  # not a keyframe: still on `low`
    low.on_rtp(packet(104, 12000, vp8(7004, 52, 0, key=False)), VP8)
    high.on_rtp(packet(9001, 23000, vp8(6901, 201, 0, key=True)), VP8)
    high.on_rtp(packet(9002, 26000, vp8(6902, 201, 1, key=False)), VP8)
    high.on_rtp(packet(9003, 29000, vp8(32767, 255, 0, key=False)), VP8)  # both numbers wrap on the wire
    high.on_rtp(packet(9004, 32000, vp8(0, 0, 0, key=False)), VP8)
    ids = [sent_ids(x) for x in sent[4:]]
    assert ids[0] == (7004, 0x8000, 52)
    assert ids[1:3] == [(7005, 0x8000, 53), (7006, 0x8000, 53)]  # the new layer continues where `low` stopped
    assert (ids[3][0] - ids[2][0]) % 0x8000 == 32767 - 6902 and (ids[4][0] - ids[3][0]) % 0x8000 == 1
    assert (ids[4][2] - ids[3][2]) % 256 == 1
    assert all(x.endswith(b"frame-data") for x in sent)  # only the descriptor changes
    lost = header(sent[5])[2]
    sent.clear()
    d.retransmit([lost], now=50.0)
    assert sent[0].endswith(b"frame-data")
    rtx_ext = 4 + 4 * struct.unpack("!H", sent[0][14:16])[0]
    assert vp8_picture_ids(sent[0][12 + rtx_ext + 2 :]) == (7005, 0x8000, 53)  # NACKs get the rewritten packet


def test_rewrite_keeps_the_descriptor_width() -> None:
    short = bytes([0x90, 0xC0, 0x7E, 9, 0x00]) + b"x"  # 7-bit picture ID and TL0PICIDX, no TID
    assert vp8_picture_ids(short) == (0x7E, 0x80, 9)
    moved = rewrite_vp8_picture_ids(short, 3, 250)
    assert vp8_picture_ids(moved) == (1, 0x80, 3) and moved[-2:] == b"\x00x" and len(moved) == len(short)
    plain = b"\x10\x00abc"  # no extension: nothing to rewrite
    assert rewrite_vp8_picture_ids(plain, 5, 5) is plain and vp8_picture_ids(plain) == (-1, 0, -1)


def one_packet_lost() -> tuple[Downstream, list[bytes], int]:
    """A downstream that forwarded one keyframe packet, the list it sends into (emptied) and that packet's seq."""
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    fwd.attach(d)
    fwd.on_rtp(packet(200, 1000, KEY), VP8)
    lost = header(sent[0])[2]
    sent.clear()
    return d, sent, lost


def test_a_lossy_subscriber_gets_each_retransmission_twice() -> None:
    d, sent, lost = one_packet_lost()
    assert d.retransmit([lost], now=10.0, copies=2) == 2
    (_, pta, rtx_a, _, ssrca), (_, _, rtx_b, _, _) = header(sent[0]), header(sent[1])
    assert (pta, ssrca) == (121, 0x11223344) and rtx_b == (rtx_a + 1) & 0xFFFF  # distinct RTX sequence numbers
    assert sent[0][12:] == sent[1][12:]  # same OSN and payload
    assert d.retransmit([lost], now=10.05, copies=2) == 0  # still one answer per NACK interval


def test_a_packet_is_resent_at_most_max_retransmits_times_and_once_per_interval() -> None:
    """A browser re-NACKs every 100 ms; on a slow link each answer would join the queue (a storm)."""
    d, sent, lost = one_packet_lost()
    answers = [d.retransmit([lost], now=10.0 + 0.1 * i, interval=0.25) for i in range(20)]
    assert answers[:4] == [1, 0, 0, 1]  # one answer per interval (the round trip), not per NACK
    assert sum(answers) == MAX_RETRANSMITS and len(sent) == MAX_RETRANSMITS
    assert d.retransmit([lost], now=10.0 + 0.1 * 19 + RETRANSMIT_MEMORY) == 1  # a much later loss is new


def test_repairs_within_a_byte_budget_go_newest_first_and_stop_at_the_budget() -> None:
    """layers.repair_budget on an overrun link: the newest losses are repaired first, as far as the budget goes."""
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    fwd.attach(d)
    for i in range(3):
        fwd.on_rtp(packet(200 + i, 1000, KEY), VP8)
    seqs = [header(p)[2] for p in sent]
    size = len(sent[0]) + 2  # an RTX repair carries the original sequence number too
    sent.clear()
    assert d.retransmit(seqs, now=10.0, max_bytes=2 * size) == 2
    osns = [int.from_bytes(p[rtp_header_len(p) : rtp_header_len(p) + 2], "big") for p in sent]
    assert osns == [seqs[2], seqs[1]]  # newest first
    assert d.octets_retransmitted == 2 * size
    assert d.retransmit([seqs[0]], now=10.0, max_bytes=size - 1) == 0  # a repair that does not fit waits
    assert d.retransmit([seqs[0]], now=10.0, max_bytes=None) == 1  # no budget: as before


TIDS = (0, 2, 1, 2)  # Chromium's three-layer VP8 pattern


def test_temporal_thinning_keeps_the_base_layer_with_gapless_numbering() -> None:
    """Under LOW_BANDWIDTH a subscriber gets the base temporal layer only; seq and picture IDs stay gapless."""
    plis: list[int] = []
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd = Forwarder(kind="video", request_keyframe=lambda: plis.append(1))
    fwd.attach(d)
    seq = 1000

    def frame(pid: int, *, key: bool = False) -> None:
        nonlocal seq
        tid = 0 if key else TIDS[pid % 4]
        for part in range(2):  # two packets per picture
            body = vp8(pid, pid // 4, tid, key=key and part == 0)
            if part:
                body = bytes([body[0] & ~0x10]) + body[1:]  # not the start of the picture
            fwd.on_rtp(packet(seq, pid * 3000, body), VP8)
            seq += 1

    frame(0, key=True)
    for pid in range(1, 4):
        frame(pid)
    d.set_temporal_limit(0)
    for pid in range(4, 13):
        frame(pid)
    thinned = [(header(x)[2], sent_ids(x)[0]) for x in sent[8:]]
    assert [p for _, p in thinned] == [4, 4, 5, 5, 6, 6]  # pictures 4, 8, 12 renumbered 4, 5, 6
    assert [s for s, _ in thinned] == list(range(109, 115))  # no sequence gap to NACK
    assert d.packets_thinned == 12

    d.set_temporal_limit(None)  # back up: only from a keyframe (requested), the dropped frames were references
    assert plis and d.temporal_up
    frame(13)  # tid 2, still thinned
    assert len(sent) == 14
    frame(14, key=True)
    frame(15)
    ids = [(header(x)[2], sent_ids(x)[0]) for x in sent[14:]]
    assert ids == [(115, 7), (116, 7), (117, 8), (118, 8)]
    assert not d.temporal_up and d.temporal_limit is None and not d._thinning  # back on the plain path


def test_a_late_packet_between_thinned_ones_gets_its_own_number() -> None:
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    fwd.attach(d)
    fwd.on_rtp(packet(500, 0, vp8(40, 10, 0, key=True)), VP8)
    d.set_temporal_limit(0)
    # 501 (picture 41, tid 0) is lost upstream; 502-503 (tid 2) are thinned; 504 (tid 0) is forwarded.
    fwd.on_rtp(packet(502, 6000, vp8(42, 10, 2, key=False)), VP8)
    fwd.on_rtp(packet(503, 6000, vp8(42, 10, 2, key=False)), VP8)
    fwd.on_rtp(packet(504, 9000, vp8(43, 11, 0, key=False)), VP8)
    fwd.on_rtp(packet(501, 3000, vp8(41, 10, 0, key=False)), VP8)  # the repair arrives
    assert [(header(x)[2], sent_ids(x)[0]) for x in sent] == [(101, 40), (103, 42), (102, 41)]


def test_thinning_leaves_h264_alone() -> None:
    sent: list[bytes] = []
    d = make_downstream(sent)
    d.pt_by_codec = {"video/h264;1;42e0": 99}
    h264 = RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=102,
        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
    )
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    fwd.attach(d)
    d.set_temporal_limit(0)
    fwd.on_rtp(packet(1, 1, bytes([0x65, 0xFF, 0xFF]), pt=102), h264)  # IDR
    fwd.on_rtp(packet(2, 2, bytes([0x81, 0xE0, 0xFF, 0xFF, 0x00, 0xC0]), pt=102), h264)  # would read as VP8 TID 3
    assert len(sent) == 2


# --------------------------------------------------------------------------
# Native fan-out (native/sfu_native Fanout) vs the Python path
# --------------------------------------------------------------------------

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


class _Clock:
    """Deterministic time for forwarder.py: both paths must see the same clock to compare state."""

    now = 1000.0

    @classmethod
    def monotonic(cls) -> float:
        return cls.now

    @classmethod
    def time(cls) -> float:
        return cls.now + 1.7e9


def _forwarder_state(d: Downstream) -> tuple[object, ...]:
    return (
        d.history_seq,
        d.history,
        d.last_seq,
        d.last_ts,
        d.last_time,
        d.seq_offset,
        d.ts_offset,
        d.vp8_deltas,
        d.packets_sent,
        d.packets_dropped,
        d.packets_thinned,
        d._unreported_octets,
        d._unreported_packets,
        d.missing_codec,
        d.needs_rebase,
        d.waiting_keyframe,
    )


def _run_fanout_scenario(native: object, monkeypatch: pytest.MonkeyPatch) -> tuple[list[object], list[object]]:
    """Every Downstream state the fan-out meets, one packet sequence: (wire log, per-downstream state)."""
    from media_server import forwarder

    monkeypatch.setattr(forwarder, "time", _Clock)
    _Clock.now = 1000.0

    class Subclassed(Downstream):
        pass  # not the exact type: the native fan-out hands it to the Python method

    log: list[object] = []
    sr: list[object] = []
    refuse = {"flag": False}

    def sender(name: str) -> Callable[[bytes], bool]:
        def send(data: bytes) -> bool:
            log.append((name, data))
            return not (refuse["flag"] and name == "d1")

        return send

    def make(name: str, cls: type[Downstream] = Downstream, **ext: int) -> Downstream:
        d = cls(kind="video", ssrc=0xAABB0000 + len(name), rtx_ssrc=0x1000, send=sender(name), initial_sequence=65530)
        d.on_sent = lambda ts, octets, packets, name=name: sr.append((name, ts, octets, packets))
        d.configure(pt_by_codec={"video/vp8": 120}, rtx_pt_by_pt={120: 121}, ext_ids=ExtensionIds(**ext))
        d.ready = True
        return d

    steady = make("d1", abs_send_time=3)
    other_ext = make("d2", abs_send_time=5, audio_level=1)
    no_ext = make("d3")
    thinned = make("d4", abs_send_time=3)
    late = make("d5", abs_send_time=3)
    late.ready = False
    no_codec = make("d6", abs_send_time=3)
    no_codec.pt_by_codec = {"video/h264;1;42e0": 99}
    sub = make("d7", Subclassed, abs_send_time=3)
    switching = make("d8", abs_send_time=3)
    held = make("d9", abs_send_time=3)
    held.ready = False
    held.hold()  # not connected yet: keeps what it gets from its keyframe on, sent once ready
    low = Forwarder(kind="video", request_keyframe=lambda: None, native=native)
    fwd = Forwarder(kind="video", request_keyframe=lambda: None, native=native)
    low.attach(switching)
    for i in range(3):  # a first source, so the switch below needs picture-ID deltas
        low.on_rtp(packet(40000 + i, i * 3000, vp8(20000 + i, 9, 0, key=i == 0)), VP8)
    for d in (steady, other_ext, no_ext, thinned, late, no_codec, sub, held):
        fwd.attach(d)
    low.detach(switching)
    fwd.attach(switching)
    seq, ts = 65500, 0xFFFFF000  # both wrap during the run
    for pid in range(40):
        if pid == 10:
            thinned.set_temporal_limit(0)
            late.ready = True
            held.ready = True
            held.send_held()
            refuse["flag"] = True
        if pid == 20:
            refuse["flag"] = False
            steady.rebase()  # e.g. unmuted: waits for the next keyframe
        if pid == 30:
            thinned.set_temporal_limit(None)
        key = pid % 16 == 0
        for part in range(3):
            body = vp8(pid, pid // 4, 0 if key else TIDS[pid % 4], key=key and part == 0)
            if part:
                body = bytes([body[0] & ~0x10]) + body[1:]
            p = packet(seq & 0xFFFF, ts & 0xFFFFFFFF, body)
            p.marker = int(part == 2)
            fwd.on_rtp(p, VP8)
            seq += 1
            _Clock.now += 0.001
        ts += 3000
    # 7-bit picture IDs, no picture ID at all, a too-short descriptor: the rewrite must agree on all of them.
    for body in (bytes([0x90, 0xC0, 0x15, 7, 0]) + b"x", b"\x10\x00rest", bytes([0x90, 0x80, 0x81])):
        fwd.on_rtp(packet(seq & 0xFFFF, ts & 0xFFFFFFFF, body), VP8)
        seq += 1
    audio = Forwarder(kind="audio", request_keyframe=lambda: None, native=native)
    mic = make("a1", audio_level=1)
    mic.kind = "audio"
    mic.configure(pt_by_codec={"audio/opus": 109}, rtx_pt_by_pt={}, ext_ids=ExtensionIds(audio_level=1))
    audio.attach(mic)
    for i in range(20):
        p = packet(i, i * 960, b"\xfc" + bytes(40), pt=111)
        p.extensions.audio_level = (True, i)
        audio.on_rtp(p, OPUS)
        _Clock.now += 0.02
    # The line given to another microphone (a spare m-line re-mapped after a leave, a pooled line): its stream
    # continues, the timestamp advanced by the time it was idle.
    other_mic = Forwarder(kind="audio", request_keyframe=lambda: None, native=native)
    audio.detach(mic)
    _Clock.now += 1.5
    other_mic.attach(mic)
    for i in range(20):
        p = packet(30000 + i, (0xFFFFF000 + i * 960) & 0xFFFFFFFF, b"\xfc" + bytes(40), pt=111)  # its timestamps wrap
        p.extensions.audio_level = (True, 90 - i)
        other_mic.on_rtp(p, OPUS)
        _Clock.now += 0.02
    downstreams = [steady, other_ext, no_ext, thinned, late, no_codec, sub, switching, held, mic]
    return [*log, *sr], [_forwarder_state(d) for d in downstreams]


@pytest.mark.native
def test_native_fanout_sends_the_same_bytes_and_keeps_the_same_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C fan-out (native/sfu_native Fanout) is Downstream.forward's steady state, byte for byte.

    One run covers the states it must hand to Python (rebase/keyframe gating, thinning and its fold back,
    not ready, unknown codec, a subclass) and the ones it handles itself (VP8 picture-ID deltas after a
    switch, several extension-ID sets, a refused send, sequence/timestamp wrap, SR batching, audio levels).
    """
    from media_server.aiortc_hooks import NATIVE

    if NATIVE is None:
        pytest.skip("MEDIA_NATIVE=0: the pure-Python path is tested by the rest of this file")
    python_log, python_state = _run_fanout_scenario(None, monkeypatch)
    native_log, native_state = _run_fanout_scenario(NATIVE, monkeypatch)
    assert native_log == python_log
    assert native_state == python_state
    assert len(python_log) > 700  # 10 streams, most of ~140 packets each, plus SR batches


@pytest.mark.native
def test_native_fanout_takes_the_steady_state_and_propagates_errors() -> None:
    """Most copies go through C; an exception from send reaches the caller as on the Python path."""
    from media_server.aiortc_hooks import NATIVE

    if NATIVE is None:
        pytest.skip("MEDIA_NATIVE=0")
    sent: list[bytes] = []
    d = make_downstream(sent)
    fwd = Forwarder(kind="video", request_keyframe=lambda: None, native=NATIVE)
    fwd.attach(d)
    for i in range(10):
        fwd.on_rtp(packet(7000 + i, i * 3000, KEY if i == 0 else DELTA), VP8)
    assert len(sent) == 10 and fwd._fanout.native_packets == 9  # the first one rebased in Python

    def broken(data: bytes) -> bool:
        raise OSError("boom")

    d.send = broken
    with pytest.raises(OSError, match="boom"):
        fwd.on_rtp(packet(7010, 30000, DELTA), VP8)
    assert d.history_seq[d.last_seq + 1 & 1023] == d.last_seq + 1  # stored before the send, as in Python
