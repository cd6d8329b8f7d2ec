"""In-process test peers and fakes for the media server tests (loopback only)."""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

import av
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from media_server.bwe import SendSideEstimator

AUTH = {"Authorization": "Bearer test-secret"}
VIDEO_CLOCK = 90000


class PatternVideoTrack(VideoStreamTrack):
    """Small (160x120) moving-gradient frames at 30 fps; cheap to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0
        self.sending = asyncio.Event()  # cleared: no frames, as a browser whose camera is off sends no packets
        self.sending.set()

    async def recv(self) -> av.VideoFrame:
        await self.sending.wait()
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(160, 120, "yuv420p")
        shift = self.frames % 160
        row = bytes((x + shift) % 256 for x in range(160))
        frame.planes[0].update(row * 120)
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([(self.frames * 3) % 256]) * frame.planes[2].buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A 440 Hz tone; ``amplitude`` 0 = digital silence (level 127 dBov)."""

    def __init__(self, amplitude: int = 8000) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._n = 0

    async def recv(self) -> av.AudioFrame:
        if getattr(self, "_start", None) is None:
            self._start = time.time()
            self._timestamp = 0
        else:
            self._timestamp += 960
            wait = self._start + self._timestamp / 48000 - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = [int(self.amplitude * math.sin(2 * math.pi * 440 * (self._n + i) / 48000)) for i in range(960)]
        self._n += 960
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(struct.pack("<960h", *samples))
        frame.sample_rate = 48000
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


def published_tracks(media: Any) -> list[Any]:
    """Every published track (``participant.PublishedTrack``) in every room of the ``media`` fixture's service."""
    return [
        t
        for r in media.service.rooms.values()
        for p in r.participants.values()
        for pub in p.publishers.values()
        for t in pub.tracks
    ]


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a media server process started by a test (kill it if it does not stop)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class PublisherClient:
    """A client publish connection (sendonly), as a browser would offer it."""

    def __init__(
        self,
        http: TestClient,
        room: str,
        participant: str,
        pc_name: str = "camera",
        *,
        video: bool = True,
        audio: bool = True,
        amplitude: int = 8000,
        video_codec: str | None = None,
        browser_ports: bool = False,
    ) -> None:
        self.http, self.room, self.participant, self.pc_name = http, room, participant, pc_name
        self.video_codec = video_codec  # e.g. "H264": offer only that codec (+ RTX)
        # browser_ports: offer like Chrome does ("balanced"): a BUNDLE group but one port per
        # m-line, video first; after the answer only the first (tagged) m-line's port lives on.
        self.browser_ports = browser_ports
        self.pc = (
            RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.BALANCED))
            if browser_ports
            else new_pc()
        )
        self.video = PatternVideoTrack() if video else None
        self.audio = ToneAudioTrack(amplitude) if audio else None
        self.keyframe_requests = 0

    async def start(self) -> dict[str, Any]:
        for track in (self.video, self.audio) if self.browser_ports else (self.audio, self.video):
            if track is not None:
                transceiver = self.pc.addTransceiver(track, direction="sendonly")
                if track.kind == "video" and self.video_codec:
                    wanted = (f"video/{self.video_codec}".lower(), "video/rtx")
                    codecs = RTCRtpSender.getCapabilities("video").codecs
                    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in wanted])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        resp = await self.http.post(
            f"/v1/rooms/{self.room}/participants/{self.participant}/publish",
            json={"protocol": 1, "pc": self.pc_name, "sdp": self.pc.localDescription.sdp},
            headers=AUTH,
        )
        body = await resp.json()
        assert resp.status == 200, body
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        for sender in self.pc.getSenders():
            if sender.kind == "video":
                original = sender._send_keyframe

                def counting(original: Callable[[], None] = original) -> None:
                    self.keyframe_requests += 1
                    original()

                sender._send_keyframe = counting  # type: ignore[method-assign]
        return body

    async def close(self) -> None:
        await self.pc.close()


class SubscriberClient:
    """A client subscribe connection (recvonly), answering server offers."""

    def __init__(
        self,
        http: TestClient,
        room: str,
        participant: str,
        *,
        without_codec: str | None = None,
        answer_filter: Callable[[str], str] | None = None,
    ) -> None:
        self.http, self.room, self.participant = http, room, participant
        self.pc = new_pc()
        self.tracks: list[dict[str, Any]] = []
        self.revision = 0
        self.without_codec = without_codec  # e.g. "H264": answer as a client that cannot decode it
        self.answer_filter = answer_filter  # rewrites the answer SDP (e.g. accept_transport_cc)

    async def start(self) -> dict[str, Any]:
        resp = await self.http.post(
            f"/v1/rooms/{self.room}/participants/{self.participant}/subscribe", json={"protocol": 1}, headers=AUTH
        )
        body = await resp.json()
        assert resp.status == 200, body
        await self.answer(body)
        return body

    async def answer(self, offer: dict[str, Any]) -> None:
        if offer["sdp"] is None:  # nothing to receive yet: the server offers later (subscribe_offer)
            self.tracks, self.revision = offer["tracks"], offer["revision"]
            return
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.tracks = offer["tracks"]
        self.revision = offer["revision"]
        sdp = self.pc.localDescription.sdp
        if self.without_codec:
            sdp = strip_codec(sdp, self.without_codec)
        if self.answer_filter is not None:
            sdp = self.answer_filter(sdp)
        resp = await self.http.post(
            f"/v1/rooms/{self.room}/participants/{self.participant}/subscribe/answer",
            json={"protocol": 1, "sdp": sdp, "revision": offer["revision"]},
            headers=AUTH,
        )
        assert resp.status == 204, await resp.text()

    def apply_forwarded(self, event: dict[str, Any]) -> None:
        """A ``forwarded_tracks`` event, as the web client applies it: a listed mid carries the listed track,
        whatever the last offer said (a spare m-line given to a new track, a re-mapped one); a mid in ``spare``
        carries nobody (a line a leave freed)."""
        listed = {t["mid"]: t for t in [*event["video"], *event["audio"]]}
        gone = set(event.get("spare", [])) | set(listed)
        self.tracks = [t for t in self.tracks if t["mid"] not in gone] + list(listed.values())

    def track(self, participant: str, source: str) -> MediaStreamTrack:
        info = next(t for t in self.tracks if t["participant"] == participant and t["source"] == source)
        transceiver = next(t for t in self.pc.getTransceivers() if t.mid == info["mid"])
        return transceiver.receiver.track

    def receiver(self, participant: str, source: str) -> Any:
        info = next(t for t in self.tracks if t["participant"] == participant and t["source"] == source)
        return next(t for t in self.pc.getTransceivers() if t.mid == info["mid"]).receiver

    async def close(self) -> None:
        await self.pc.close()


def accept_transport_cc(sdp: str, ext_id: int = 5) -> str:
    """An answer as a browser that accepts transport-cc writes it (aiortc's own answer drops both lines)."""
    uri = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    out = []
    for line in sdp.split("\r\n"):
        out.append(line)
        if line.startswith("a=mid:"):
            out.append(f"a=extmap:{ext_id} {uri}")
        elif line.startswith("a=rtpmap:") and "rtx/" not in line:
            out.append(f"a=rtcp-fb:{line[9:].split()[0]} transport-cc")
    return "\r\n".join(out)


class RecordingEstimator(SendSideEstimator):
    """media_server/bwe.py's estimator, recording every call made through the agreed interface."""

    def __init__(self, *, start_bps: int, min_bps: int, max_bps: int) -> None:
        super().__init__(start_bps=start_bps, min_bps=min_bps, max_bps=max_bps)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def on_packets_sent(self, records: Iterable[tuple[int, int, float, int]]) -> None:
        records = list(records)  # (on_packet_sent comes here too)
        for seq, size, send_time, cluster in records:
            probe_cluster = None if cluster < 0 else cluster
            self.calls.append(
                ("sent", {"seq": seq, "size": size, "send_time": send_time, "probe_cluster": probe_cluster})
            )
        super().on_packets_sent(records)

    def on_feedback(self, *, now: float, results: list[tuple[int, float | None]]) -> None:
        self.calls.append(("feedback", {"now": now, "results": results}))
        super().on_feedback(now=now, results=results)

    def on_remb(self, *, now: float, bps: int) -> None:
        self.calls.append(("remb", {"now": now, "bps": bps}))
        super().on_remb(now=now, bps=bps)

    def on_rtt(self, *, rtt: float) -> None:
        self.calls.append(("rtt", {"rtt": rtt}))
        super().on_rtt(rtt=rtt)


def strip_codec(sdp: str, name: str) -> str:
    """Remove codec ``name`` (and RTX for it) from every m-line of ``sdp``."""
    lines = sdp.split("\r\n")
    drop: set[str] = set()
    for line in lines:
        if line.startswith("a=rtpmap:") and line.split(" ")[1].split("/")[0].lower() == name.lower():
            drop.add(line[len("a=rtpmap:") :].split(" ")[0])
    for line in lines:  # RTX entries whose apt is a dropped payload type
        if line.startswith("a=fmtp:") and any(line.endswith(f"apt={pt}") for pt in drop):
            drop.add(line[len("a=fmtp:") :].split(" ")[0])
    out = []
    for line in lines:
        if line.startswith("m="):
            head, pts = line.split(" ")[:3], line.split(" ")[3:]
            line = " ".join(head + [pt for pt in pts if pt not in drop])
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")) and line.split(":", 1)[1].split(" ")[0] in drop:
            continue
        out.append(line)
    return "\r\n".join(out)


async def recv_frames(track: MediaStreamTrack, count: int, timeout: float = 60.0) -> list[Any]:
    """Receive ``count`` decoded frames or fail after ``timeout`` seconds.

    The default is generous on purpose: on the busy 2-core machine (load ~25, tests at nice 10) a test process
    got 2-4 s of CPU per minute, and it encodes, sends, forwards and decodes every stream itself; after a
    last-N switch the first frames need a keyframe asked for by PLI on top of that.
    """
    frames = []

    async def run() -> None:
        while len(frames) < count:
            frames.append(await track.recv())

    await asyncio.wait_for(run(), timeout)
    return frames


async def until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; return its last value (assert on it).

    For outcomes that come on their own schedule (an RTCP report on its timer, counters updated in batches):
    a deadline generous enough for a busy 2-core machine instead of a fixed number of short sleeps.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() >= deadline:
            return condition()
        await asyncio.sleep(interval)
    return True


class FakeDjango:
    """An aiohttp endpoint on 127.0.0.1 collecting event batches."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.batches: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.bodies: list[bytes] = []
        self._changed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/internal/media/v1/events", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization"))
        self.bodies.append(await request.read())
        if self.status >= 300:
            return web.Response(status=self.status)
        self.batches.append(await request.json())
        self._changed.set()
        return web.Response(status=self.status)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for b in self.batches for e in b["events"]]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0, start: int = 0
    ) -> dict[str, Any]:
        """Wait for the first event (from index ``start``) matching ``predicate`` (bounded; generous for a
        starved test process, see ``recv_frames``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for event in self.events[start:]:
                if predicate(event):
                    return event
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no matching event; got {[e['type'] for e in self.events]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
