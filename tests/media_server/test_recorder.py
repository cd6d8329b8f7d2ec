"""Recording without re-encoding (docs/protocol.md §3): in-process aiortc publishers on 127.0.0.1.

The recorder's files must demux and decode with PyAV, carry the publishers'
pictures and sound, and be consumable by the worker's compose/transcode step
(``recordings.compose`` / ``recordings.transcode`` need no Django).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import traceback
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.mediastreams import VideoStreamTrack
from aiortc.rtp import RtpPacket
from ms_helpers import AUTH, PublisherClient, SubscriberClient, recv_frames, until

from media_server import recorder as rec
from recordings.synthetic import COLORS

VP8_KEY_HEADER = bytes([0x10, 0x00, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00])  # 320x240 keyframe tag


class SolidVideoTrack(VideoStreamTrack):
    """320x240 frames of one solid colour (BT.601 YUV from recordings.synthetic.COLORS)."""

    def __init__(self, color: str, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.yuv = COLORS[color]
        self.width, self.height = width, height

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, value in zip(frame.planes, self.yuv, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


@pytest.fixture
def spool(media: Any, tmp_path: Path) -> Path:
    """Point the media server's RECORDINGS_SPOOL_DIR at a temporary directory."""
    directory = tmp_path / "spool"
    media.service.config = dataclasses.replace(media.service.config, recordings_spool_dir=str(directory))
    return directory


@pytest.fixture
def encoders(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every encoder created from media_server code (stack traces); the test clients' encoders are ignored."""
    created: list[str] = []
    original = av.CodecContext.create

    def create(codec: Any, mode: str | None = None, *args: Any, **kwargs: Any) -> Any:
        stack = "".join(traceback.format_stack())
        if mode == "w" and "media_server/" in stack.replace("tests/media_server/", ""):
            created.append(stack)
        return original(codec, mode, *args, **kwargs)

    monkeypatch.setattr(av.CodecContext, "create", staticmethod(create))
    yield created


async def publish(media: Any, participant: str, color: str, *, codec: str | None = None) -> PublisherClient:
    pub = PublisherClient(media.http, "r1", participant)
    pub.video = SolidVideoTrack(color)
    if codec is not None:
        from aiortc.rtcrtpsender import RTCRtpSender

        pub.pc.addTransceiver(pub.audio, direction="sendonly")
        video = pub.pc.addTransceiver(pub.video, direction="sendonly")
        video.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == codec]
        )
        pub.audio = pub.video = None  # already added
    await pub.start()
    return pub


def last_timestamp(sender: Any) -> int:
    """RTP timestamp of the last packet an aiortc sender sent."""
    return int(sender._RTCRtpSender__rtp_timestamp)


@dataclasses.dataclass
class Sent:
    """What one publisher sender sent during a recorded segment, on its RTP clock: the file must hold it."""

    sender: Any
    tap: Any
    recorded_until: int  # the recorder had received this timestamp (and all before it) before the stop
    first: int = 0  # the segment's first recorded frame
    sent_until: int | None = None  # the last one sent when the stop (of the recording or the track) returned

    def stopped(self) -> None:
        self.sent_until = last_timestamp(self.sender)

    def seconds(self, until: int) -> float:
        return ((until - self.first) & 0xFFFFFFFF) / self.tap.clock_rate


async def caught_up(media: Any, *pubs: PublisherClient, timeout: float = 60.0) -> dict[tuple[str, str], Sent]:
    """Wait until the recorder received everything the publishers sent until now; per (participant, source)
    what was sent (the file's media is compared with it after the stop, see ``assert_holds``).

    Not "until the sources caught up with the wall clock": a source stamps frames on an ideal 30 fps / 20 ms
    clock and, in a starved process (2-4 s of CPU a minute on the busy 2-core machine), falls ever further
    behind, so a file holds less media than its wall-clock segment. What it must hold is what was sent.
    """
    taps = {(tap.track.participant, tap.track.source): tap for tap in media.service.rooms["r1"].recorder.taps.values()}
    sent = {
        (pub.participant, pub.pc_name if sender.kind == "video" else "microphone"): sender
        for pub in pubs
        for sender in pub.pc.getSenders()
        if sender.track is not None
    }
    # aiortc encodes, sends, then asks the source for its next frame: once a sender's timestamp moved on,
    # the frame in flight when we looked is sent.
    before = {key: last_timestamp(sender) for key, sender in sent.items()}
    assert await until(lambda: all(last_timestamp(s) != before[k] for k, s in sent.items()), timeout)
    spans = {key: Sent(sender, taps[key], last_timestamp(sender)) for key, sender in sent.items()}

    def recorded() -> bool:  # each tap wrote a frame at or after the publisher's last sent timestamp
        return all((s.tap.ts32 - s.recorded_until) & 0xFFFFFFFF < 1 << 31 for s in spans.values())

    assert await until(recorded, timeout), {k: (s.tap.ts32, s.recorded_until) for k, s in spans.items()}
    for span in spans.values():
        assert span.tap.segment is not None
        span.first = span.tap.segment.first_ts & 0xFFFFFFFF
    return spans


def assert_holds(kind: str, frames: list[Any], span: Sent) -> None:
    """The file holds what the publisher sent: at least until the recorder had it all before the stop, at most
    what was sent by the time the stop returned (a frame's worth of slack; audio counts its last frame's length)."""
    at_least = span.seconds(span.recorded_until)
    assert span.sent_until is not None, "call stopped() after the stop"
    at_most = span.seconds(span.sent_until) + (0.02 if kind == "audio" else 0.0)
    held = media_duration(kind, frames)
    assert at_least - 0.05 <= held <= at_most + 0.05, (held, at_least, at_most)


async def recording_every_track(media: Any, tracks: int, video_frames: int = 1) -> None:
    """Wait (bounded) until each of ``tracks`` tracks has a segment and ``video_frames`` video frames are written:
    a fixed pause did not always see a starved publisher's first keyframe."""
    recorder = media.service.rooms["r1"].recorder

    def written() -> bool:
        video = sum(n for seg, n in recorder._writer.frames.copy().items() if recorder.segments[seg].kind == "video")
        return len(recorder.taps) == tracks and all(t.segment for t in recorder.taps.values()) and video >= video_frames

    assert await until(written, 60), (len(recorder.taps), recorder._writer.frames)


async def start_recording(media: Any, recording: str, room: str = "r1") -> Any:
    return await media.http.post(
        f"/v1/rooms/{room}/recordings", json={"protocol": 1, "recording": recording}, headers=AUTH
    )


def decode(path: Path) -> tuple[str, list[Any]]:
    """(stream type, decoded frames) of a one-stream file."""
    with av.open(str(path)) as container:
        assert len(container.streams) == 1
        stream = container.streams[0]
        return stream.type, list(container.decode(stream))


def rgb_at(frame: av.VideoFrame, x: int, y: int) -> tuple[int, int, int]:
    plane = frame.to_rgb().planes[0]
    data, i = bytes(plane), y * plane.line_size + x * 3
    return data[i], data[i + 1], data[i + 2]


def media_duration(kind: str, frames: list[Any]) -> float:
    last = frames[-1]
    return float(last.time) + (last.samples / last.sample_rate if kind == "audio" else 0.0)


def is_red(rgb: tuple[int, int, int]) -> bool:
    return rgb[0] > 200 and rgb[1] < 60 and rgb[2] < 60


def is_blue(rgb: tuple[int, int, int]) -> bool:
    return rgb[2] > 200 and rgb[0] < 60 and rgb[1] < 60


async def record_two_party(
    media: Any, fake_django: Any, spool: Path, recording: str
) -> tuple[dict[str, Any], float, float]:
    """Alice (red, 440 Hz) publishes before the recording; Bob (blue) joins ~1 s in; stop after ~3 s more.

    Returns the manifest, what each sender sent while recorded (``caught_up``), the latest Bob's segment can
    have started (seconds into the recording, as the test saw it) and the wall time from before the start
    request to after the stop request (bounds the duration).
    """
    alice = await publish(media, "palice", "red")
    await asyncio.sleep(0.5)
    requested = time.monotonic()
    resp = await start_recording(media, recording)
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"protocol": 1, "room": "r1", "recording": recording}
    await asyncio.sleep(1.0)
    bob = await publish(media, "pbob", "blue")
    recorder = media.service.rooms["r1"].recorder
    await until(lambda: len(recorder._writer.outputs) == 4, 60)  # Bob's first keyframe (slow on a busy machine)
    bob_latest_start = time.monotonic() - requested
    outputs = list(recorder._writer.outputs.values())
    assert len(outputs) == 4 and all(o.stream.codec_context is None for o in outputs)  # mux-only streams
    await asyncio.sleep(2.0)
    spans = await caught_up(media, alice, bob)
    resp = await media.http.delete(f"/v1/rooms/r1/recordings/{recording}", headers=AUTH)
    assert resp.status == 204, await resp.text()
    elapsed = time.monotonic() - requested
    for span in spans.values():
        span.stopped()
    assert (spool / recording / "manifest.json").is_file()  # written before the 204
    event = await fake_django.wait_for(lambda e: e["type"] == "recording_stopped")
    assert event == {
        "type": "recording_stopped",
        "room": "r1",
        "recording": recording,
        "manifest": f"{recording}/manifest.json",
    }
    await asyncio.gather(alice.close(), bob.close())
    return json.loads((spool / recording / "manifest.json").read_text()), spans, bob_latest_start, elapsed


@pytest.mark.asyncio
async def test_two_publishers_recorded_to_decodable_files_without_reencoding(
    media, fake_django, spool, encoders
) -> None:
    """Each track becomes its own WebM that decodes to the publisher's picture/sound, timed as the manifest says;
    a participant joining mid-recording starts later; the media server creates no encoder."""
    manifest, spans, bob_latest_start, elapsed = await record_two_party(media, fake_django, spool, "rectwoparty")
    duration = manifest["stopped_at"] - manifest["started_at"]
    assert manifest["protocol"] == 1 and manifest["recording"] == "rectwoparty" and manifest["room"] == "r1"
    assert 3.0 <= duration <= elapsed  # the test waited 3 s between start and stop; a busy machine adds more
    tracks = {(t["participant"], t["source"]): t for t in manifest["tracks"]}
    assert set(tracks) == {
        ("palice", "camera"),
        ("palice", "microphone"),
        ("pbob", "camera"),
        ("pbob", "microphone"),
    }
    for (participant, source), t in tracks.items():
        assert t["kind"] == ("video" if source == "camera" else "audio")
        assert t["codec"] == ("vp8" if source == "camera" else "opus")
        assert t["file"].endswith(".webm") and (spool / "rectwoparty" / t["file"]).is_file()
        kind, frames = decode(spool / "rectwoparty" / t["file"])
        assert kind == t["kind"] and frames
        assert_holds(kind, frames, spans[(participant, source)])
        length = media_duration(kind, frames)  # ≈ t["end"] - t["start"] when the sources keep up with real time
        # Alice's segment starts at the keyframe the recorder asked for (≈ at once when idle; later on a busy
        # machine, but before Bob's); Bob's at his first keyframe, after he published ~1 s in. Both last to the stop.
        if participant == "palice":
            assert t["start"] < min(u["start"] for u in tracks.values() if u["participant"] == "pbob")
        else:
            assert 1.0 <= t["start"] <= bob_latest_start
        assert t["end"] == pytest.approx(duration, abs=0.1)
        if kind == "video":
            assert all((f.width, f.height) == (320, 240) for f in frames)
            assert frames[0].key_frame
            check = is_red if participant == "palice" else is_blue
            assert check(rgb_at(frames[-1], 160, 120)), rgb_at(frames[-1], 160, 120)
            assert len(frames) >= 20 * length  # ~30 fps
        else:
            assert frames[0].sample_rate == 48000
            assert sum(f.samples for f in frames) / 48000 == pytest.approx(length, rel=0.1)
    assert encoders == [], encoders[0]


@pytest.mark.asyncio
@pytest.mark.ffmpeg
async def test_real_recording_is_composed_by_the_worker_transcoder(media, fake_django, spool, tmp_path) -> None:
    """recordings.transcode.render turns the recorder's real spool into an MP4: red alone, then red | blue."""
    from recordings.compose import Canvas
    from recordings.spool import manifest_load
    from recordings.transcode import render

    manifest, _, _, _ = await record_two_party(media, fake_django, spool, "reccompose")
    duration = manifest["stopped_at"] - manifest["started_at"]
    loaded = manifest_load(spool / "reccompose", recording_id="reccompose")
    assert len(loaded.tracks) == 4
    canvas = Canvas(width=640, height=360, fps=15, preset="ultrafast")
    result = await asyncio.to_thread(render, loaded, spool / "reccompose", tmp_path / "work", canvas=canvas)
    assert abs(result.duration - duration) <= 0.1 * duration
    with av.open(str(result.video)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        frames = list(container.decode(container.streams.video[0]))

    # Sampled where each layout holds: a picture shows from its segment's start for as long as its file's media
    # lasts (the segment's length when the sources keep up with real time; less in a starved process).
    def shown(participant: str) -> tuple[float, float]:
        t = next(t for t in manifest["tracks"] if t["participant"] == participant and t["kind"] == "video")
        kind, pictures = decode(spool / "reccompose" / t["file"])
        return t["start"], t["start"] + media_duration(kind, pictures)

    (alice_from, alice_to), (bob_from, bob_to) = shown("palice"), shown("pbob")
    alone = next(f for f in frames if f.time >= (alice_from + min(alice_to, bob_from)) / 2)
    assert is_red(rgb_at(alone, 320, 180))
    both = next(f for f in frames if f.time >= (bob_from + min(alice_to, bob_to)) / 2)
    assert is_red(rgb_at(both, 160, 180)) and is_blue(rgb_at(both, 480, 180))


@pytest.mark.asyncio
async def test_h264_publisher_is_recorded_to_matroska(media, fake_django, spool) -> None:
    """An H.264 camera (STAP-A/FU-A) becomes an MKV of Annex B access units that decodes at its size."""
    pub = await publish(media, "palice", "red", codec="video/h264")
    assert (await start_recording(media, "rech264")).status == 201
    await recording_every_track(media, 2, video_frames=21)
    assert (await media.http.delete("/v1/rooms/r1/recordings/rech264", headers=AUTH)).status == 204
    manifest = json.loads((spool / "rech264" / "manifest.json").read_text())
    video = next(t for t in manifest["tracks"] if t["kind"] == "video")
    assert video["codec"] == "h264" and video["file"].endswith(".mkv")
    with av.open(str(spool / "rech264" / video["file"])) as container:
        stream = container.streams.video[0]
        assert container.format.name.startswith("matroska") and stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)  # from the SPS
        frames = list(container.decode(stream))
    assert len(frames) > 20 and is_red(rgb_at(frames[-1], 160, 120))
    await pub.close()


@pytest.mark.asyncio
async def test_screen_share_during_recording_is_its_own_segment(media, fake_django, spool) -> None:
    """A screen share started and stopped mid-recording yields a segment with its start/end offsets."""
    cam = await publish(media, "palice", "red")
    assert (await start_recording(media, "recscreen")).status == 201
    await asyncio.sleep(0.8)
    screen = PublisherClient(media.http, "r1", "palice", "screen", audio=False)
    screen.video = SolidVideoTrack("blue")
    await screen.start()
    await asyncio.sleep(1.5)
    spans = await caught_up(media, screen)
    assert (await media.http.delete("/v1/rooms/r1/participants/palice/publish/screen", headers=AUTH)).status == 204
    span = spans[("palice", "screen")]
    span.stopped()
    await asyncio.sleep(0.8)
    assert (await media.http.delete("/v1/rooms/r1/recordings/recscreen", headers=AUTH)).status == 204
    manifest = json.loads((spool / "recscreen" / "manifest.json").read_text())
    duration = manifest["stopped_at"] - manifest["started_at"]
    shared = next(t for t in manifest["tracks"] if t["source"] == "screen")
    assert shared["participant"] == "palice" and shared["kind"] == "video"
    assert 0.8 <= shared["start"] < shared["end"] <= duration - 0.6
    kind, frames = decode(spool / "recscreen" / shared["file"])
    assert_holds(kind, frames, span)
    assert is_blue(rgb_at(frames[-1], 160, 120))
    await asyncio.gather(cam.close(), screen.close())


@pytest.mark.asyncio
async def test_room_close_stops_the_recording(media, fake_django, spool) -> None:
    """DELETE /v1/rooms/{room} stops a running recording (manifest + recording_stopped); its later DELETE is 204."""
    pub = await publish(media, "palice", "red")
    assert (await start_recording(media, "recclose")).status == 201
    await recording_every_track(media, 2)
    assert (await media.http.delete("/v1/rooms/r1", headers=AUTH)).status == 204
    event = await fake_django.wait_for(lambda e: e["type"] == "recording_stopped")
    assert event["recording"] == "recclose"
    manifest = json.loads((spool / "recclose" / "manifest.json").read_text())
    assert {t["source"] for t in manifest["tracks"]} == {"camera", "microphone"}
    resp = await media.http.delete("/v1/rooms/r1/recordings/recclose", headers=AUTH)
    assert resp.status == 204  # idempotent: already stopped, manifest exists
    await pub.close()


@pytest.mark.asyncio
async def test_shutdown_writes_what_it_has(media, fake_django, spool) -> None:
    """Closing the media service (SIGTERM) stops every running recording as if DELETEd."""
    pub = await publish(media, "palice", "red")
    assert (await start_recording(media, "recshutdown")).status == 201
    await recording_every_track(media, 2)
    await media.service.close()
    assert json.loads((spool / "recshutdown" / "manifest.json").read_text())["tracks"]
    await fake_django.wait_for(lambda e: e["type"] == "recording_stopped" and e["recording"] == "recshutdown")
    await pub.close()


@pytest.mark.asyncio
async def test_recording_control_api_contract(media, fake_django, spool) -> None:
    """Empty rooms can be recorded; start is idempotent; one recording per room; IDs are validated; 404s."""
    resp = await media.http.post("/v1/rooms/r1/recordings", json={"protocol": 1, "recording": "rec1"})
    assert resp.status == 401
    for bad in ("../etc", "", "x" * 33, 7):
        resp = await start_recording(media, bad)  # type: ignore[arg-type]
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request", bad
    resp = await media.http.post("/v1/rooms/r1/recordings", json={"protocol": 2, "recording": "recempty"}, headers=AUTH)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "protocol_mismatch"
    assert (await start_recording(media, "recempty")).status == 201  # nobody in the room yet
    again = await start_recording(media, "recempty")
    assert again.status == 200 and (await again.json())["recording"] == "recempty"
    other = await start_recording(media, "recother")
    assert other.status == 409 and (await other.json())["error"]["code"] == "recording_in_progress"
    missing = await media.http.delete("/v1/rooms/r1/recordings/recnope", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "recording_not_found"
    await asyncio.sleep(0.3)
    assert (await media.http.delete("/v1/rooms/r1/recordings/recempty", headers=AUTH)).status == 204
    manifest = json.loads((spool / "recempty" / "manifest.json").read_text())
    assert manifest["tracks"] == [] and manifest["stopped_at"] - manifest["started_at"] >= 0.3
    assert not (spool / "recempty" / "manifest.json.tmp").exists()
    reused = await start_recording(media, "recempty")
    assert reused.status == 409 and (await reused.json())["error"]["code"] == "recording_exists"
    assert (await media.http.delete("/v1/rooms/r1/recordings/recempty", headers=AUTH)).status == 204
    gone = await media.http.delete("/v1/rooms/nosuchroom/recordings/recnope", headers=AUTH)
    assert gone.status == 404


@pytest.mark.asyncio
async def test_writer_overflow_fails_the_recording_but_not_forwarding(media, fake_django, spool, monkeypatch) -> None:
    """A full writer queue fails the recording (recording_failed writer_overflow, no manifest, DELETE → 404)
    instead of growing memory; subscribers keep receiving."""
    monkeypatch.setattr(rec._WriteQueue, "put_frame", lambda self, item, size: False)
    pub = await publish(media, "palice", "red")
    sub = SubscriberClient(media.http, "r1", "pbob")
    await sub.start()
    assert (await start_recording(media, "recfull")).status == 201
    event = await fake_django.wait_for(lambda e: e["type"] == "recording_failed")
    assert event == {"type": "recording_failed", "room": "r1", "recording": "recfull", "reason": "writer_overflow"}
    await recv_frames(sub.track("palice", "camera"), 5)
    resp = await media.http.delete("/v1/rooms/r1/recordings/recfull", headers=AUTH)
    assert resp.status == 404
    assert not (spool / "recfull" / "manifest.json").exists()
    assert (await start_recording(media, "recnext")).status == 201  # a failed recording does not block the room
    await asyncio.gather(pub.close(), sub.close())


# -- depacketization units ---------------------------------------------------------------------------------------


def test_vp8_frames_are_reassembled_from_payload_descriptors() -> None:
    """RFC 7741: descriptors (with extended picture ID) are stripped; a frame must start at partition 0."""
    first = bytes([0x90, 0x80, 0x81, 0x23]) + VP8_KEY_HEADER  # X, S; I with a 15-bit picture ID
    rest = bytes([0x80, 0x80, 0x05]) + b"tail"  # X; I with a 7-bit picture ID; continuation
    frame = rec.vp8_frame([first, rest])
    assert frame == VP8_KEY_HEADER + b"tail"
    assert rec.vp8_keyframe_size(frame) == (320, 240)
    assert rec.vp8_keyframe_size(b"\x01" + frame[1:]) is None  # inter frame
    assert rec.vp8_frame([rest]) is None  # no start of partition 0


def test_h264_access_units_from_stap_a_and_fu_a() -> None:
    """RFC 6184: STAP-A splits into NAL units, FU-A fragments are joined with the rebuilt NAL header."""
    sps, pps = b"\x67\x42\xc0\x1e\xaa", b"\x68\xce\x3c\x80"
    stap = b"\x18" + len(sps).to_bytes(2, "big") + sps + len(pps).to_bytes(2, "big") + pps
    idr = b"\x65" + bytes(range(200))
    fu = [b"\x7c\x85" + idr[1:100], b"\x7c\x05" + idr[100:150], b"\x7c\x45" + idr[150:]]
    assert rec.h264_nal_units([stap, *fu]) == [sps, pps, idr]
    assert rec.h264_nal_units([stap, fu[1], fu[2]]) is None  # first fragment lost


def test_h264_sps_size_matches_the_encoder() -> None:
    """Width/height (with cropping) parsed from a real libx264 SPS."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 180, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    frame = av.VideoFrame(320, 180, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])
    nals = [n.lstrip(b"\x00") for n in data.split(b"\x00\x00\x01") if n.strip(b"\x00")]
    sps = next(n for n in nals if n[0] & 0x1F == 7)
    assert rec.h264_sps_size(sps) == (320, 180)


def test_reorder_waits_for_retransmissions_then_gives_up() -> None:
    """Out-of-order packets are released in sequence; a gap older than REORDER_WAIT is reported as loss."""
    r = rec._Reorder()

    def pkt(seq: int) -> RtpPacket:
        return RtpPacket(sequence_number=seq & 0xFFFF, timestamp=0)

    assert [p.sequence_number for p in r.push(pkt(65534), 0.0)[0]] == [65534]
    assert r.push(pkt(0), 0.01) == ([], False)  # 65535 missing (across the wrap)
    out, lost = r.push(pkt(65535), 0.02)
    assert [p.sequence_number for p in out] == [65535, 0] and not lost
    assert r.push(pkt(3), 0.03) == ([], False)
    out, lost = r.push(pkt(4), 0.03 + rec.REORDER_WAIT + 0.01)
    assert [p.sequence_number for p in out] == [3, 4] and lost
    assert r.push(pkt(2), 1.0) == ([], False)  # too late: dropped


def test_opus_packet_durations_from_the_toc() -> None:
    assert rec.opus_duration_ms(bytes([0xFC])) == 20.0  # CELT FB 20 ms, one frame
    assert rec.opus_duration_ms(bytes([0x79, 0x00])) == 40.0  # hybrid FB 20 ms, two frames
    assert rec.opus_duration_ms(bytes([0x1B, 0x03])) == 180.0  # SILK 60 ms, code 3 with 3 frames
