"""The C receive path (_sfu_native.RtpReceive) against the Python path it replaces."""

from __future__ import annotations

import asyncio

import pytest
from ms_helpers import PublisherClient, SubscriberClient, published_tracks, recv_frames

from media_server import aiortc_hooks
from media_server.twcc import build_feedback


@pytest.mark.asyncio
@pytest.mark.native
async def test_a_publisher_stream_is_received_in_c_end_to_end(media) -> None:
    """Real aiortc publisher and subscriber: once a stream is in the steady state its packets take the C path."""
    if aiortc_hooks.NATIVE is None:
        pytest.skip("MEDIA_NATIVE=0")
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 20)
    await recv_frames(sub.track("alice", "microphone"), 20)
    tracks = published_tracks(media)
    rx = tracks[0].receiver.native_receive
    assert rx is not None and all(t.receiver.native_receive is rx for t in tracks)
    print(rx.native_packets, {t.kind: (t.forwarder.packets_in, t.receiver.packets) for t in tracks})
    assert rx.native_packets > 0
    await asyncio.gather(pub.close(), sub.close())


# --------------------------------------------------------------------------
# Byte-for-byte: one packet sequence through the Python path and through the C path
# --------------------------------------------------------------------------

_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_KEY = bytes(range(30))


class _Clock:
    """time.time / time.monotonic for both runs: the same value for every call while one packet is handled."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.123

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 1_699_000_000.0


def _ext(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements)
    body += bytes(-len(body) % 4)
    return b"\xbe\xde" + (len(body) // 4).to_bytes(2, "big") + body


def _packet(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    *,
    ext: bytes = b"",
    marker: int = 0,
    padding: int = 0,
    csrc: bool = False,
) -> bytes:
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if ext else 0) | (1 if csrc else 0)
    head = bytes([b0, (marker << 7) | pt]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + ssrc.to_bytes(4, "big")
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    return head + (b"\x00\x00\x00\x07" if csrc else b"") + ext + payload + tail


def _video_packets() -> list[tuple[str, bytes]]:
    """(action, plaintext RTP) for a VP8 publisher: keyframe, deltas, loss + RTX repair, odd packets, a late join."""
    out: list[tuple[str, bytes]] = []
    key, delta = b"\x10\x00\x9d\x01\x2a", b"\x10\x01"

    def add(seq: int, payload: bytes, **kw: object) -> None:
        out.append(("rtp", _packet(96, seq & 0xFFFF, seq * 3000 & 0xFFFFFFFF, 1111, payload, **kw)))  # type: ignore[arg-type]

    add(65530, key + bytes(300), marker=1)
    for seq in range(65531, 65536 + 70):  # wraps; passes the 64th-packet temporal sample
        if seq in (65536 + 20, 65536 + 21):
            continue  # lost: NACKed
        if seq == 65536 + 45:
            out.append(("pli", b""))  # a subscriber's PLI: until a keyframe answers it, Python looks for one
        if seq == 65536 + 55:
            add(seq, key + b"answer", marker=1)  # the answer, while nobody waits for a keyframe
            continue
        add(seq, delta + bytes([seq & 0xFF]) * (seq % 700 + 1), marker=seq % 3 == 0)
    out.append(("rtp", _packet(97, 500, 20 * 3000, 2222, (20).to_bytes(2, "big") + delta + b"repaired")))
    add(65536 + 21 - 30, delta + b"late")  # an old packet (out of order): no stats advance, NACK discard
    add(65536 + 71, delta + b"ext", ext=_ext([(3, b"\x12\x34\x56"), (1, b"\x85")]))
    add(65536 + 72, delta + b"pad", padding=4)
    add(65536 + 73, delta + b"csrc", csrc=True)
    add(65536 + 74, b"")  # no payload: statistics only
    add(65536 + 75, delta + b"two-byte", ext=b"\x10\x00\x00\x01\x01\x01\x99\x00")
    out.append(("attach", b""))  # a second subscriber: waits for a keyframe (the C path hands those to Python)
    for seq in range(65536 + 76, 65536 + 80):
        add(seq, delta + b"wait")
    add(65536 + 80, key + b"k2", marker=1)
    for seq in range(65536 + 81, 65536 + 140):
        add(seq, delta + bytes(seq % 50), marker=1)
    out.append(("detach", b""))
    for seq in range(65536 + 140, 65536 + 150):
        add(seq, delta + b"one")
    return out


def _audio_packets() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for seq in range(1, 120):
        if seq == 40:
            out.append(("mute", b""))
        if seq == 60:
            out.append(("unmute", b""))
        ext = _ext([(1, bytes([(0x80 if seq % 2 else 0) | (seq % 100)]))]) if seq % 5 else b""
        out.append(("rtp", _packet(111, seq, seq * 960, 3333, bytes([seq]) * 40, ext=ext, marker=seq == 1)))
    return out


async def _run(kind: str, script: list[tuple[str, bytes]], native: object, monkeypatch) -> dict[str, object]:
    import pylibsrtp
    from aiortc import RTCPeerConnection
    from aiortc.rtcdtlstransport import State
    from aiortc.rtcrtpparameters import (
        RTCRtpCodecParameters,
        RTCRtpDecodingParameters,
        RTCRtpHeaderExtensionParameters,
        RTCRtpReceiveParameters,
        RTCRtpRtxParameters,
    )

    from media_server import forwarder as forwarder_module
    from media_server.forwarder import Downstream, ExtensionIds, Forwarder

    clock = _Clock()
    for module in (aiortc_hooks, forwarder_module, __import__("aiortc.rtcrtpreceiver", fromlist=["x"])):
        monkeypatch.setattr(module, "time", clock)
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver(kind, direction="recvonly").receiver
    dtls = receiver.transport
    levels: list[int] = []
    plis: list[int] = []
    fwd = Forwarder(
        kind=kind,
        request_keyframe=lambda: plis.append(1),
        on_audio_level=levels.append if kind == "audio" else None,
        native=native,
    )
    hook = aiortc_hooks.ForwardingReceiver(receiver, kind, fwd.on_rtp)
    aiortc_hooks.install_fast_receive(dtls, [hook], native=native)
    if hook.native_receive is not None:  # the C path reads the clocks itself: give it the same ones
        hook.native_receive.wall_clock = clock.time
        hook.native_receive.monotonic_clock = clock.monotonic
    if kind == "video":
        codecs = [
            RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
            RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}),
        ]
        encodings = [RTCRtpDecodingParameters(ssrc=1111, payloadType=96, rtx=RTCRtpRtxParameters(ssrc=2222))]
        pt_by_codec, ext_ids = {"video/vp8": 100}, ExtensionIds(audio_level=0, abs_send_time=4, transport_cc=5)
    else:
        codecs = [RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)]
        encodings = [RTCRtpDecodingParameters(ssrc=3333, payloadType=111)]
        pt_by_codec, ext_ids = {"audio/opus": 109}, ExtensionIds(audio_level=2, abs_send_time=0, transport_cc=5)
    await hook._receive(
        RTCRtpReceiveParameters(
            codecs=codecs,
            encodings=encodings,
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=3, uri=_ABS_SEND_TIME),
                RTCRtpHeaderExtensionParameters(id=1, uri=_AUDIO_LEVEL),
            ],
            muxId="0",
        )
    )
    dtls._rx_srtp = pylibsrtp.Session(pylibsrtp.Policy(key=_KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    dtls._state = State.CONNECTED
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=_KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    wire: dict[int, list[bytes]] = {}
    reports: list[tuple[int, ...]] = []
    # One transport-wide sequence for the "connection" (both subscribers here), stamped as the send path does.
    sequence = aiortc_hooks.transport_sequence(native)
    sequence.id = 5
    sequence.clock = clock.monotonic
    stamp = sequence.stamp

    def downstream(ssrc: int) -> Downstream:
        sent = wire.setdefault(ssrc, [])
        d = Downstream(
            kind=kind,
            ssrc=ssrc,
            rtx_ssrc=ssrc + 1,
            send=lambda data: sent.append(stamp(data)) or True,
            on_sent=lambda *a: reports.append(a),
            initial_sequence=ssrc,
            initial_timestamp=ssrc * 7,
        )
        d.configure(pt_by_codec=pt_by_codec, rtx_pt_by_pt={}, ext_ids=ext_ids)
        d.ready = True
        return d

    downstreams = [downstream(10), downstream(20)]
    for d in downstreams:
        fwd.attach(d)
    late = downstream(30)
    receive = dtls.transport._connection.data_received
    for action, data in script:
        clock.now += 0.0123
        if action == "rtp":
            receive(tx.protect(data), 1)
        elif action == "attach":
            fwd.attach(late)
        elif action == "detach":
            fwd.detach(downstreams[0])
        elif action == "pli":
            fwd.request_keyframe()
            assert fwd._pli_unanswered
        elif action == "mute":
            fwd.set_audible(False)
        elif action == "unmute":
            fwd.set_audible(True)
    receive(b"\x80\x60\x00\x01" + b"\x00" * 40, 1)  # not authentic: dropped by both
    stats = {ssrc: dict(vars(s)) for ssrc, s in receiver._RTCRtpReceiver__remote_streams.items()}
    state = {
        "wire": wire,
        "reports": reports,
        "stats": stats,
        "nack": (hook._nack.max_seq, sorted(hook._nack.missing)) if hook._nack is not None else None,
        "hook": (hook.packets, hook.media_ssrc, hook.rtx_packets, hook.rtx_duplicates),
        "forwarder": (
            fwd.packets_in,
            fwd.octets_in,
            fwd.keyframe_requests,
            fwd.frame_size,
            fwd.temporal_layers,
            fwd._pli_unanswered,
        ),
        "levels": levels,
        "transport_cc": (sequence.next_seq, sequence.drain()),
        "plis": len(plis),
        "counters": (dtls._RTCDtlsTransport__rx_packets, dtls._RTCDtlsTransport__rx_bytes),
        "downstreams": [
            (
                d.packets_sent,
                d.packets_dropped,
                d.last_seq,
                d.last_ts,
                d.last_time,
                d.seq_offset,
                d.ts_offset,
                d.needs_rebase,
                d.waiting_keyframe,
                d._unreported_octets,
                d._unreported_packets,
                [s for s in d.history_seq if s >= 0],
            )
            for d in [*downstreams, late]
        ],
    }
    native_packets = hook.native_receive.native_packets if hook.native_receive is not None else 0
    await pc.close()
    return {"state": state, "native_packets": native_packets}


@pytest.mark.asyncio
@pytest.mark.native
@pytest.mark.parametrize("kind", ["video", "audio"])
async def test_native_receive_matches_the_python_path(kind: str, monkeypatch) -> None:
    """Same datagrams in: the C receive path and the Python path send the same bytes and leave the same state.

    The sequence covers the steady state (taken by C) and what C hands back to Python: the first packet of an
    SSRC, RTX repairs, CSRCs, padding, a two-byte extension header, a subscriber waiting for a keyframe, a
    keyframe request not answered yet (Forwarder._pli_unanswered), the video forwarder's 64th-packet sample; plus statistics across a sequence wrap, a loss (NACK), a late
    packet, a packet without payload, audio levels with a muted (gated) microphone, a failed unprotect.
    """
    import importlib

    if aiortc_hooks.NATIVE is None:  # the forwarders then have no C fan-out for RtpReceive to hand packets to
        pytest.skip("MEDIA_NATIVE=0")
    native = importlib.import_module("_sfu_native")
    script = _video_packets() if kind == "video" else _audio_packets()
    python = await _run(kind, script, None, monkeypatch)
    c = await _run(kind, script, native, monkeypatch)
    assert python["native_packets"] == 0
    assert c["native_packets"] > len(script) // 2  # the steady state did take the C path
    py_state, c_state = python["state"], c["state"]
    assert isinstance(py_state, dict) and isinstance(c_state, dict)
    for name in py_state:
        assert c_state[name] == py_state[name], name
    assert sum(len(v) for v in py_state["wire"].values()) > 100  # type: ignore[union-attr]
    # Every packet sent carries its transport-wide sequence number, in send order across both subscribers.
    stamped = [p for v in py_state["wire"].values() for p in v]  # type: ignore[union-attr]
    assert all(p[12:14] == b"\xbe\xde" and p[16] == 0x51 for p in stamped)
    next_seq, records = py_state["transport_cc"]  # type: ignore[misc]
    assert len(records) == len(stamped) and next_seq == (1 + len(stamped)) & 0xFFFF
    assert sorted(int.from_bytes(p[17:19], "big") for p in stamped) == [r[0] for r in records]


# --------------------------------------------------------------------------
# SRTCP from the datagram callback (subscribe connections' feedback)
# --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("use_native", [False, pytest.param(True, marks=pytest.mark.native)], ids=["python", "native"])
async def test_srtcp_feedback_is_handled_synchronously(use_native: bool) -> None:
    """NACK, PLI, REMB and receiver reports reach the hooked sender inside the datagram callback (no task)."""
    import importlib

    import pylibsrtp
    from aiortc import RTCPeerConnection
    from aiortc.rtcdtlstransport import State
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
    from aiortc.rtp import (
        RTCP_PSFB_APP,
        RTCP_PSFB_PLI,
        RTCP_RTPFB_NACK,
        RtcpPsfbPacket,
        RtcpReceiverInfo,
        RtcpRrPacket,
        RtcpRtpfbPacket,
        pack_remb_fci,
    )

    native = importlib.import_module("_sfu_native") if use_native else None
    pc = RTCPeerConnection()
    sender = pc.addTransceiver("video", direction="sendonly").sender
    dtls = sender.transport
    ssrc, _ = aiortc_hooks.sender_ssrcs(sender)
    dtls._register_rtp_sender(
        sender,
        RTCRtpSendParameters(codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)]),
    )
    got: list[tuple[str, list[int]]] = []

    async def on_feedback(kind: str, values: list[int]) -> None:
        got.append((kind, values))

    aiortc_hooks.hook_sender_feedback(sender, on_feedback)
    transport_feedback: list[list[bytes]] = []
    aiortc_hooks.install_fast_demux(dtls, native=native)
    # a re-offer installs again: still one wrapper (now with the connection's transport-cc handler)
    aiortc_hooks.install_fast_demux(dtls, native=native, on_transport_feedback=transport_feedback.append)
    receive = dtls.transport._connection.data_received
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=_KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=7, media_ssrc=ssrc)
    nack.lost = [5, 6, 9]
    packets = [
        nack,
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=7, media_ssrc=ssrc),
        RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=7, media_ssrc=0, fci=pack_remb_fci(300_000, [ssrc])),
        RtcpRrPacket(
            ssrc=7,
            reports=[
                RtcpReceiverInfo(
                    ssrc=ssrc, fraction_lost=12, packets_lost=3, highest_sequence=100, jitter=1, lsr=0, dlsr=0
                )
            ],
        ),
    ]
    receive(tx.protect_rtcp(bytes(packets[0])), 1)  # not connected yet: aiortc's queue
    assert got == [] and dtls.transport._connection._queue.qsize() == 1
    dtls._rx_srtp = pylibsrtp.Session(pylibsrtp.Policy(key=_KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    dtls._state = State.CONNECTED
    for packet in packets:
        receive(tx.protect_rtcp(bytes(packet)), 1)
    receive(b"\x80\xc9\x00\x01" + bytes(20), 1)  # not authentic: dropped
    assert got == [("nack", [5, 6, 9]), ("pli", []), ("remb", [300_000]), ("loss", [12])]
    assert transport_feedback == []
    # Transport-cc feedback (RTPFB FMT 15) goes to the connection's handler, never to aiortc as a "NACK";
    # the rest of its compound packet is handled as before.
    tcc = build_feedback(sender_ssrc=7, media_ssrc=ssrc, base_seq=10, feedback_count=0, reference=1, deltas=[1, None])
    receive(tx.protect_rtcp(bytes(packets[3]) + tcc), 1)
    receive(tx.protect_rtcp(tcc + tcc), 1)
    assert transport_feedback == [[tcc], [tcc, tcc]]
    assert got[4:] == [("loss", [12])]
    assert aiortc_hooks.dtls_last_receive_counter(dtls) == 7
    assert dtls.transport._connection._queue.qsize() == 1
    dtls._state = State.CLOSED
    await pc.close()


@pytest.mark.asyncio
async def test_run_now_finishes_a_handler_that_suspends_as_a_task() -> None:
    """_run_now runs a coroutine synchronously; one that awaits something continues in a task, in order."""
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[int] = loop.create_future()
    trace: list[object] = []

    async def quick() -> None:
        trace.append("quick")

    async def slow() -> None:
        trace.append("slow started")
        trace.append(await gate)
        await asyncio.sleep(0)
        trace.append("slow done")

    tasks: set[asyncio.Future[object]] = set()
    aiortc_hooks._run_now(quick(), tasks)
    assert trace == ["quick"] and not tasks
    aiortc_hooks._run_now(slow(), tasks)
    assert trace == ["quick", "slow started"] and len(tasks) == 1
    gate.set_result(42)
    for _ in range(5):
        await asyncio.sleep(0)
    assert trace == ["quick", "slow started", 42, "slow done"] and not tasks
