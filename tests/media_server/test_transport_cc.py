"""Transport-cc end to end: real aiortc publisher and subscriber (answering as a browser that accepts transport-cc)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from ms_helpers import PublisherClient, RecordingEstimator, SubscriberClient, accept_transport_cc, recv_frames

from media_server import participant as participant_module
from media_server.twcc import build_feedback


async def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _capture_transport_seqs(sub: SubscriberClient) -> tuple[Any, list[tuple[int, int]]]:
    """The client's DTLS transport, and (transport seq, RTP size) of every RTP packet it receives from now on."""
    dtls = sub.pc.getTransceivers()[0].receiver.transport
    seen: list[tuple[int, int]] = []
    original = dtls._handle_rtp_data

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        if len(data) >= 20 and data[12:14] == b"\xbe\xde" and data[16] == 0x51:
            seen.append((int.from_bytes(data[17:19], "big"), len(data)))
        else:
            seen.append((-1, len(data)))
        await original(data, arrival_time_ms)

    dtls._handle_rtp_data = handle
    return dtls, seen


@pytest.mark.asyncio
async def test_a_subscriber_accepting_transport_cc_gets_numbered_packets_and_its_feedback_drives_the_estimate(
    media: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every packet (audio and video) carries the next transport-wide number; feedback reaches the estimator
    (media_server/bwe.py, recording its calls) after the packets it reports, and its target becomes the
    subscriber's estimate (REMB no longer decides)."""
    monkeypatch.setattr(participant_module, "estimator_factory", lambda: RecordingEstimator)
    pub = PublisherClient(media.http, "tcc", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "tcc", "bob", answer_filter=accept_transport_cc)
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 5)
    dtls, seen = _capture_transport_seqs(sub)
    await _until(lambda: len(seen) >= 60)
    subscriber = media.service.rooms["tcc"].participants["bob"].subscriber
    assert subscriber.transport_sequence.id == 5
    numbers = [n for n, _ in seen[:60]]
    assert -1 not in numbers  # audio, video (and any RTX/padding) alike
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(numbers))  # loopback: in order
    first = numbers[0]
    deltas: list[int | None] = [4] * 60
    deltas[10] = None  # one reported lost
    await dtls._send_rtp(
        build_feedback(sender_ssrc=1, media_ssrc=0, base_seq=first, feedback_count=0, reference=100, deltas=deltas)
    )
    estimator = subscriber.tcc.estimator
    assert subscriber.send_side is estimator  # the answer accepted transport-cc
    await _until(lambda: any(kind == "feedback" for kind, _ in estimator.calls))
    feedback = next(c for kind, c in estimator.calls if kind == "feedback")
    assert [s for s, _ in feedback["results"]] == [(first + i) & 0xFFFF for i in range(60)]
    assert feedback["results"][10][1] is None
    sent_before = {
        c["seq"]: c["size"]
        for kind, c in estimator.calls[: estimator.calls.index(("feedback", feedback))]
        if kind == "sent"
    }
    assert all(sent_before.get(n) == size for n, size in seen[:60])  # what went out, as the client received it
    estimate, covers_audio, _ = subscriber._estimate(asyncio.get_running_loop().time())
    assert covers_audio and estimate == estimator.target_bps  # the send-side estimate, not REMB, decides
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_a_subscriber_without_transport_cc_keeps_remb(media: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The offer carries transport-cc, the answer does not: no numbers on the wire, REMB stays the estimate."""
    monkeypatch.setattr(participant_module, "estimator_factory", lambda: RecordingEstimator)
    pub = PublisherClient(media.http, "remb", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "remb", "bob")
    await sub.start()
    assert "transport-wide-cc" in sub.pc.remoteDescription.sdp
    await recv_frames(sub.track("alice", "camera"), 5)
    _, seen = _capture_transport_seqs(sub)
    await _until(lambda: len(seen) >= 20)
    assert all(n == -1 for n, _ in seen)
    subscriber = media.service.rooms["remb"].participants["bob"].subscriber
    assert subscriber.transport_sequence.id == 0 and subscriber.tcc is not None
    assert not subscriber.tcc.active and subscriber.send_side is None
    await _until(lambda: subscriber.estimate.remb is not None)  # aiortc's receiver sends REMB (abs-send-time)
    estimate, covers_audio, _ = subscriber._estimate(asyncio.get_running_loop().time())
    assert not covers_audio and estimate == subscriber.estimate.value(asyncio.get_running_loop().time())
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_without_an_estimator_nothing_is_offered(media: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(participant_module, "estimator_factory", lambda: None)
    pub = PublisherClient(media.http, "none", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "none", "bob", answer_filter=accept_transport_cc)
    await sub.start()
    assert "transport-wide-cc" not in sub.pc.remoteDescription.sdp
    await recv_frames(sub.track("alice", "camera"), 5)
    _, seen = _capture_transport_seqs(sub)
    await _until(lambda: len(seen) >= 20)
    assert all(n == -1 for n, _ in seen)  # the answer's extension is ignored: it was not offered
    await asyncio.gather(pub.close(), sub.close())
