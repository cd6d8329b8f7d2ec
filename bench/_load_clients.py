"""Client worker process for bench/load.py: many synthetic participants in one event loop (loopback only).

Each participant does what the call page (static/js/call/) does, over the real web stack:
REST ``POST /api/v1/rooms/{id}/join`` → room socket (``join`` →
``room_snapshot``) → publish (``offer {pc: "camera"}`` → ``answer``) and
subscribe (``subscribe`` → ``offer``; later pushed ``offer``s are answered in
revision order; ``forwarded_tracks`` is followed: last-N and pooled m-lines,
whose ``mid`` may carry another participant than the offer said; a
``media_state failed`` connection is replaced, as call.js does). Nothing is
encoded or decoded here:

* **Publishing** sends a pre-encoded clip (VP8 frames + Opus packets made
  once by bench/load.py) straight through SRTP with
  ``aiortc_hooks.make_raw_sender``; one task per process paces every stream.
  A PLI/FIR from the media server restarts the clip at its keyframe (frame 0),
  as an encoder would emit a keyframe. Audio carries an RFC 6464 audio level
  (what the server's speaker detection reads). A muted microphone or a camera
  that is off keeps its m-line and sends no packets (``replaceTrack(null)``).
* **Receiving** taps SRTP datagrams of the subscribe connection before
  aiortc sees them: the RTP header is clear text, so packets, bytes, sequence
  gaps (loss) and frames (marker bit) are counted without decrypting. Only
  until a video stream's first complete keyframe is seen are its packets
  decrypted, to read the VP8 payload descriptor. RTCP and DTLS keep aiortc's
  path. The receivers are hooked like the SFU's (no decoder threads); RTCP
  receiver reports are built from these counters, once a second. Packets are
  counted per m-line (SSRC → ``mid`` from the offers; RTX/padding apart), so
  the report can compare what ``forwarded_tracks`` says is fed with what
  arrives.

The orchestrator drives a worker with one command per stdin line and reads
one JSON line per command on stdout:

* ``start <phase> <t0>``: start that phase's participants at ``t0 + offset``
  (CLOCK_MONOTONIC, shared by every process of the machine);
* ``status``: how many joined / failed; ``mark``: cumulative counters;
* ``stop``: per-participant join timings and errors, then leave and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import struct
import sys
import time
from typing import Any

import _media_common as common
import aiohttp
from _media_clients import new_pc
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media_server import aiortc_hooks
from media_server.rtputil import is_vp8_keyframe_start
from media_server.sdp import negotiated_by_mid, parse_sdp

RTP = struct.Struct("!BBHII")
SEQ_TS_SSRC = struct.Struct("!HII")
MAX_PAYLOAD = 1200
VIDEO_CLOCK, AUDIO_CLOCK = 90000, 48000
SPEAKER_LEVEL = 30  # dBov of a speaker's audio-level extension (0 = loudest, 127 = silence)


def load_clip(path: str) -> tuple[list[list[bytes]], list[bytes], int]:
    """(VP8 frames as RTP payloads, Opus packets, fps) from bench/load.py's clip file."""
    with open(path) as f:
        clip = json.load(f)
    frames = [vp8_payloads(base64.b64decode(frame)) for frame in clip["video"]]
    audio = [base64.b64decode(packet) for packet in clip["audio"]]
    return frames, audio, int(clip["fps"])


def vp8_payloads(frame: bytes) -> list[bytes]:
    """RFC 7741 packetization with the one-byte payload descriptor (S=1 on the first packet)."""
    chunks = [frame[i : i + MAX_PAYLOAD - 1] for i in range(0, len(frame), MAX_PAYLOAD - 1)] or [b""]
    return [(b"\x10" if i == 0 else b"\x00") + chunk for i, chunk in enumerate(chunks)]


class OutStream:
    """One outgoing RTP stream of a publisher: the clip, looped, paced by :class:`Pacer`."""

    def __init__(self, kind: str, ssrc: int, pt: int, send: Any, payloads: list[Any], fps: int, level_id: int):
        self.kind, self.ssrc, self.pt, self.send = kind, ssrc, pt, send
        self.payloads = payloads  # video: frames (lists of payloads); audio: packets
        self.interval = 1 / fps if kind == "video" else 0.02
        self.ts_step = VIDEO_CLOCK // fps if kind == "video" else AUDIO_CLOCK // 50
        # RFC 8285 one-byte extension with the audio level (V=1: voice)
        self.ext = struct.pack("!HHBBH", 0xBEDE, 1, level_id << 4, 0x80 | SPEAKER_LEVEL, 0) if level_id else b""
        self.index = 0
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.ts = int.from_bytes(os.urandom(4), "big")
        self.next_due = time.monotonic()
        self.sent = self.dropped = self.keyframes_requested = 0
        self.closed = False

    def restart(self) -> None:
        """A keyframe was requested: go back to the clip's keyframe (frame 0)."""
        self.keyframes_requested += 1  # the server throttles PLIs; an encoder would not wait either
        self.index = 0

    def emit(self) -> None:
        item = self.payloads[self.index % len(self.payloads)]
        self.index += 1
        packets = item if self.kind == "video" else [item]
        b0 = 0x90 if self.ext else 0x80
        last = len(packets) - 1
        for i, payload in enumerate(packets):
            marker = 0x80 if (i == last and self.kind == "video") else 0
            header = RTP.pack(b0, marker | self.pt, self.seq & 0xFFFF, self.ts & 0xFFFFFFFF, self.ssrc)
            self.seq += 1
            if self.send(header + self.ext + payload):
                self.sent += 1
            else:
                self.dropped += 1
        self.ts += self.ts_step


class Pacer:
    """One task sending every publisher stream of this process on time."""

    def __init__(self) -> None:
        self.streams: list[OutStream] = []

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            for s in self.streams:
                if s.closed:
                    continue
                if now - s.next_due > 0.5:  # this loop stalled: skip ahead instead of bursting
                    s.next_due = now
                while s.next_due <= now:
                    s.emit()
                    s.next_due += s.interval
            if any(s.closed for s in self.streams):
                self.streams = [s for s in self.streams if not s.closed]


class InStream:
    """Counters of one received SSRC (clear-text RTP header only)."""

    __slots__ = (
        "bytes",
        "complete",
        "cycles",
        "frames",
        "kf_count",
        "kf_seq",
        "kf_ts",
        "kind",
        "last_seq",
        "lost",
        "mid",
        "packets",
        "reported",
    )

    def __init__(self, kind: str, mid: str | None) -> None:
        self.kind, self.mid = kind, mid  # kind: audio, video or rtx (repairs and padding probes)
        self.packets = self.bytes = self.lost = self.frames = self.kf_seq = self.kf_count = self.cycles = 0
        self.reported = (0, 0)  # (packets, lost) at the last receiver report
        self.last_seq: int | None = None
        self.kf_ts: int | None = None
        self.complete = kind != "video"  # video: until the first complete keyframe


def rtp_payload(plain: bytes) -> bytes:
    cc = plain[0] & 0x0F
    offset = 12 + 4 * cc
    if plain[0] & 0x10 and len(plain) >= offset + 4:
        offset += 4 + 4 * int.from_bytes(plain[offset + 2 : offset + 4], "big")
    end = len(plain) - (plain[-1] if plain[0] & 0x20 else 0)
    return plain[offset:end]


def install_rtp_tap(dtls: RTCDtlsTransport, on_rtp: Any) -> None:
    """Hand SRTP *RTP* datagrams of ``dtls`` to ``on_rtp(data)`` (still encrypted) instead of aiortc.

    DTLS, STUN and SRTCP keep aiortc's path. Same private attributes as
    ``aiortc_hooks.install_fast_receive`` (which tests/media_server pins).
    """
    connection = dtls.transport._connection
    queue_datagram = connection.data_received
    connected = State.CONNECTED

    def data_received(data: bytes, component: int) -> None:
        if (
            dtls._rx_srtp is None
            or dtls._state is not connected
            or len(data) < 12
            or not 127 < data[0] < 192
            or 191 < data[1] < 209
        ):
            queue_datagram(data, component)
            return
        on_rtp(data)

    connection.data_received = data_received  # type: ignore[method-assign]


class Participant:
    def __init__(self, worker: Worker, spec: dict[str, Any]) -> None:
        self.worker, self.spec = worker, spec
        self.name: str = spec["name"]
        self.times: dict[str, float] = {}  # phase -> ms since the REST join call
        self.t0 = 0.0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pcs: list[RTCPeerConnection] = []
        self.sub_pc: RTCPeerConnection | None = None
        self.sub_lock = asyncio.Lock()
        self.sub_revision = -1
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ref = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.out: list[OutStream] = []
        self.rx: dict[int, InStream] = {}
        self.ssrc_lines: dict[int, tuple[str, str]] = {}  # SSRC -> (kind, mid) from the subscribe offers
        # forwarded_tracks: the m-lines fed now (mid -> participant); None until the first event
        self.forwarded_video: dict[str, str] | None = None
        self.forwarded_audio: dict[str, str] = {}
        self.audio_pooled = False
        self.last_n: int | None = None
        self.forwarded_events = self.remaps = 0
        self.resubscribes = self.republishes = 0
        self.replacing: set[str] = set()
        self.camera_off: set[str] = set()  # participantIds with video_muted (snapshot, participant_* events)
        self.unprotect: Any = None
        self.unprotect_session: Any = None
        self.tapped = False
        self.error: str | None = None
        self.done = False  # joined (first remote video frame, or publish + subscribe done when none expected)
        self.hooked: set[int] = set()
        self.leaving = False
        self.rr_send: Any = None
        self.rr_ssrc = int.from_bytes(os.urandom(4), "big")

    def mark(self, phase: str) -> None:
        if phase not in self.times:
            self.times[phase] = round((time.monotonic() - self.t0) * 1000, 1)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        try:
            await asyncio.wait_for(self.join(), self.worker.join_timeout)
        except Exception as exc:  # reported per participant, the run goes on
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            self.worker.failed += 1
            return
        self.worker.joined += 1

    async def join(self) -> None:
        w, spec = self.worker, self.spec
        self.t0 = time.monotonic()
        headers = {"Authorization": f"Bearer {spec['access']}"} if spec.get("access") else {}
        body = {} if spec.get("access") else {"display_name": self.name}
        body["stream_capabilities"] = {"video": True, "audio": True}
        async with w.http.post(f"{w.base}/api/v1/rooms/{spec['room']}/join", json=body, headers=headers) as resp:
            grant = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"REST join {resp.status}: {grant}")
        self.mark("rest")
        self.ws = await w.http.ws_connect(grant["ws_url"], origin=w.base, max_msg_size=0)
        # as call.js does: our media state in the join frame, so who sees us knows our camera is off (an avatar)
        # from participant_joined on, and no media_state frame follows (docs/protocol.md "Connecting")
        media_state = {"audio_muted": not spec["sends_audio"], "video_muted": not spec["sends_video"]}
        join = {"type": "join", "token": grant["token"], "protocol": 1, "media_state": media_state}
        await self.ws.send_str(json.dumps(join))
        while True:
            frame = json.loads((await self.ws.receive()).data)
            if frame["type"] == "room_snapshot":
                for participant in frame.get("participants") or []:
                    self.on_participant(participant)
                break
            if frame["type"] == "error":
                raise RuntimeError(f"socket join: {frame}")
        self.mark("socket")
        self.spawn(self.read())
        await asyncio.gather(self.publish(), self.subscribe())
        if spec["expect_video"]:
            while "first_frame" not in self.times:
                await asyncio.sleep(0.01)
        self.done = True

    async def read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(message.data)
            kind = frame["type"]
            ref = frame.get("ref")
            if isinstance(ref, int) and ref in self.replies:
                self.replies.pop(ref).set_result(frame)
            elif kind == "offer" and frame.get("pc") == "subscribe":
                self.spawn(self.apply_offer(frame))
            elif kind in ("participant_joined", "participant_updated"):
                self.on_participant(frame["participant"])
            elif kind == "forwarded_tracks":
                self.on_forwarded_tracks(frame)
            elif kind == "media_state" and frame.get("state") == "failed":
                self.spawn(self.replace_connection(str(frame.get("pc"))))
            elif kind == "ping":
                await self.ws.send_str('{"type":"pong"}')
            elif kind == "error":
                self.worker.socket_errors.append(f"{self.name}: {frame.get('code')}")
        if not self.leaving:
            self.worker.socket_errors.append(
                f"{self.name}: socket closed {self.ws.close_code} after {time.monotonic() - self.t0:.1f} s"
            )

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        self.ref += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[self.ref] = future
        await self.ws.send_str(json.dumps({**frame, "ref": self.ref}))
        reply = await future
        if reply["type"] == "error":
            raise RuntimeError(f"{frame['type']}: {reply.get('code')} {reply.get('message')}")
        return reply

    async def publish(self) -> None:
        spec = self.spec
        kinds = [k for k in ("video", "audio") if spec[f"{k}_mline"]]  # call.js: video first
        if not kinds:
            return
        pc = new_pc()
        self.pcs.append(pc)
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                connected.set()

        for kind in kinds:
            pc.addTransceiver(aiortc_hooks.IdleTrack(kind), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        self.mark("pub_offer")
        answer = await self.request({"type": "offer", "pc": "camera", "sdp": pc.localDescription.sdp})
        self.mark("pub_answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        negotiated = negotiated_by_mid(parse_sdp(answer["sdp"]))
        await connected.wait()
        self.mark("pub_connected")
        w = self.worker
        for t in pc.getTransceivers():
            sends = spec["sends_video"] if t.kind == "video" else spec["sends_audio"]
            if not sends:
                continue  # camera off / muted: the m-line stays, no packets
            n = negotiated[t.mid or ""]
            codec = "video/vp8" if t.kind == "video" else "audio/opus"
            ssrc, _ = aiortc_hooks.sender_ssrcs(t.sender)
            stream = OutStream(
                t.kind,
                ssrc,
                n.pt_by_codec[codec],
                aiortc_hooks.make_raw_sender(t.sender.transport),
                w.video if t.kind == "video" else w.audio,
                w.fps,
                n.ext_ids.audio_level if t.kind == "audio" else 0,
            )
            if t.kind == "video":

                async def on_feedback(kind: str, lost: list[int], stream: OutStream = stream) -> None:
                    if kind == "pli":
                        stream.restart()

                aiortc_hooks.hook_sender_feedback(t.sender, on_feedback)
            self.out.append(stream)
            w.pacer.streams.append(stream)

    async def subscribe(self) -> None:
        async with self.sub_lock:
            self.sub_pc = pc = new_pc()
            self.pcs.append(pc)
            self.tapped = False
            self.forwarded_video, self.forwarded_audio = None, {}  # the server tells a new connection again

            @pc.on("connectionstatechange")
            def on_state() -> None:
                if pc.connectionState == "connected":
                    self.mark("sub_connected")

            offer = await self.request({"type": "subscribe"})
            self.mark("sub_reply")
            self.sub_revision = offer["revision"] - 1
            await self._apply(offer)

    async def replace_connection(self, pc_name: str) -> None:
        """``media_state failed``: connect again, as call.js does (subscribe, or publish the camera again)."""
        if pc_name in self.replacing or pc_name not in ("subscribe", "camera"):
            return
        self.replacing.add(pc_name)
        try:
            if pc_name == "subscribe":
                self.resubscribes += 1
                if self.sub_pc is not None:
                    with contextlib.suppress(Exception):
                        await self.sub_pc.close()
                await self.subscribe()
            else:
                self.republishes += 1
                for s in self.out:
                    s.closed = True
                self.out = []
                await self.publish()
        except Exception as exc:  # reported, the participant goes on
            self.worker.socket_errors.append(f"{self.name}: reconnect {pc_name} {type(exc).__name__}: {exc}"[:200])
        finally:
            self.replacing.discard(pc_name)

    def on_participant(self, participant: dict[str, Any]) -> None:
        if participant.get("video_muted"):
            self.camera_off.add(participant["participantId"])
        else:
            self.camera_off.discard(participant["participantId"])

    def on_forwarded_tracks(self, frame: dict[str, Any]) -> None:
        """What the subscribe connection is fed with now (docs/protocol.md): overrides the last offer's ``tracks``."""
        video = {str(t["mid"]): str(t["participant"]) for t in frame.get("video") or []}
        if self.forwarded_video is not None:
            self.remaps += sum(1 for mid, who in video.items() if self.forwarded_video.get(mid, who) != who)
        self.forwarded_video = video
        self.forwarded_audio = {str(t["mid"]): str(t["participant"]) for t in frame.get("audio") or []}
        self.audio_pooled = frame.get("audio_pooled") is True
        self.last_n = frame.get("last_n")
        self.forwarded_events += 1

    async def apply_offer(self, frame: dict[str, Any]) -> None:
        async with self.sub_lock:
            try:
                await self._apply(frame)
            except Exception as exc:  # one failed renegotiation is reported, the participant goes on
                self.worker.socket_errors.append(f"{self.name}: renegotiation {type(exc).__name__}: {exc}"[:200])

    async def _apply(self, frame: dict[str, Any]) -> None:
        pc = self.sub_pc
        if pc is None or frame["revision"] <= self.sub_revision:
            return
        self.sub_revision = frame["revision"]
        sdp = frame.get("sdp")
        if not sdp or "\nm=" not in sdp:
            return  # nothing to receive yet: never answered (docs/protocol.md §1)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for t in pc.getTransceivers():
            if id(t.receiver) not in self.hooked:  # no decoder threads (as the SFU does)
                self.hooked.add(id(t.receiver))
                aiortc_hooks.ForwardingReceiver(t.receiver, t.kind, lambda packet, codec: None)
        for media in parse_sdp(sdp).media:
            rtx = {int(g.items[1]) for g in media.ssrc_group if g.semantic == "FID" and len(g.items) > 1}
            for s in media.ssrc:
                self.ssrc_lines[s.ssrc] = ("rtx" if s.ssrc in rtx else media.kind, media.rtp.muxId or "")
        await pc.setLocalDescription(await pc.createAnswer())
        if not self.tapped:
            self.tapped = True
            dtls = pc.getTransceivers()[0].receiver.transport
            install_rtp_tap(dtls, lambda data, dtls=dtls: self.on_rtp(dtls, data))
            self.rr_send = aiortc_hooks.make_raw_sender(dtls, rtcp=True)
            aiortc_hooks.install_fast_demux(dtls)
        assert self.ws is not None
        await self.ws.send_str(
            json.dumps(
                {"type": "answer", "pc": "subscribe", "sdp": pc.localDescription.sdp, "revision": frame["revision"]}
            )
        )
        self.mark("sub_answer")

    def on_rtp(self, dtls: RTCDtlsTransport, data: bytes) -> None:
        seq, ts, ssrc = SEQ_TS_SSRC.unpack_from(data, 2)
        s = self.rx.get(ssrc)
        if s is None:
            kind, mid = self.ssrc_lines.get(ssrc, ("unknown", None))
            s = self.rx[ssrc] = InStream(kind, mid)
            self.mark(f"first_{s.kind}_packet")
        s.packets += 1
        s.bytes += len(data)
        marker = data[1] & 0x80
        if s.last_seq is not None:
            gap = (seq - s.last_seq) & 0xFFFF
            if gap == 0 or gap >= 0x8000:
                return  # duplicate or late: already counted as lost once
            s.lost += gap - 1
            if seq < s.last_seq:
                s.cycles += 1
        s.last_seq = seq
        if s.kind != "video":
            return
        if marker:
            s.frames += 1
        if s.complete:
            return
        if self.unprotect is None or self.unprotect_session is not dtls._rx_srtp:
            # (the native SrtpProcessor has no .session: keep the session it was made for ourselves)
            self.unprotect_session = dtls._rx_srtp
            self.unprotect = aiortc_hooks.srtp_processor(dtls._rx_srtp, "unprotect")
        try:
            payload = rtp_payload(self.unprotect(data))
        except Exception:
            return
        if is_vp8_keyframe_start(payload):
            s.kf_ts, s.kf_seq, s.kf_count = ts, seq, 0
        if s.kf_ts != ts:
            return
        s.kf_count += 1
        if marker:
            if (seq - s.kf_seq) & 0xFFFF == s.kf_count - 1:  # every packet of the keyframe arrived
                s.complete = True
                self.mark("first_frame")
            else:
                s.kf_ts = None

    def send_receiver_report(self) -> None:
        """RTCP RR for every received stream, about once a second, as browsers send them.

        The packets never reach aiortc's receivers, whose RRs would be empty (aiortc
        then sends none, and the media server fails a peer silent for 30 s). Loss
        figures are ours (sequence gaps), so the server's loss metrics are real too.
        """
        if self.rr_send is None or not self.rx:
            return
        reports = []
        for ssrc, s in self.rx.items():
            if s.kind == "rtx":
                continue  # browsers report the media SSRCs only
            packets, lost = s.packets - s.reported[0], s.lost - s.reported[1]
            s.reported = (s.packets, s.lost)
            fraction = min(255, lost * 256 // max(1, packets + lost)) if lost > 0 else 0
            reports.append(
                RtcpReceiverInfo(
                    ssrc=ssrc,
                    fraction_lost=fraction,
                    packets_lost=min(s.lost, 0x7FFFFF),
                    highest_sequence=(s.cycles << 16) | (s.last_seq or 0),
                    jitter=0,
                    lsr=0,
                    dlsr=0,
                )
            )
        for i in range(0, len(reports), 31):  # at most 31 report blocks per RR
            self.rr_send(bytes(RtcpRrPacket(ssrc=self.rr_ssrc, reports=reports[i : i + 31])))

    def counters(self) -> dict[str, Any]:
        rx = list(self.rx.values())
        by_mid: dict[str, int] = {}
        for s in rx:
            if s.mid is not None and s.kind in ("audio", "video"):
                by_mid[f"{s.kind}:{s.mid}"] = by_mid.get(f"{s.kind}:{s.mid}", 0) + s.packets
        return {
            "rx_by_line": by_mid,
            "forwarded_video": sorted(self.forwarded_video or {}),
            # forwarded camera lines whose participant's camera is on: those should carry packets
            "forwarded_video_on": sorted(
                m for m, who in (self.forwarded_video or {}).items() if who not in self.camera_off
            ),
            "forwarded_audio": sorted(self.forwarded_audio),
            "audio_pooled": self.audio_pooled,
            "last_n": self.last_n,
            "forwarded_events": self.forwarded_events,
            "remaps": self.remaps,
            "reconnects": self.resubscribes + self.republishes,
            "rx_rtx_packets": sum(s.packets for s in rx if s.kind == "rtx"),
            "rx_packets": sum(s.packets for s in rx),
            "rx_bytes": sum(s.bytes for s in rx),
            "rx_video_packets": sum(s.packets for s in rx if s.kind == "video"),
            "rx_lost": sum(s.lost for s in rx if s.kind != "rtx"),
            "rx_frames": sum(s.frames for s in rx),
            "rx_streams": len(rx),
            "tx_packets": sum(s.sent for s in self.out),
            "tx_dropped": sum(s.dropped for s in self.out),
            "keyframe_requests": sum(s.keyframes_requested for s in self.out),
        }

    async def leave(self) -> None:
        self.leaving = True
        for s in self.out:
            s.closed = True
        for task in list(self.tasks):
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        for pc in self.pcs:
            with contextlib.suppress(Exception):
                await pc.close()


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.base: str = spec["base"]
        self.join_timeout: float = spec["join_timeout"]
        self.video, self.audio, self.fps = load_clip(spec["clip"])
        self.specs: list[dict[str, Any]] = spec["participants"]
        self.participants: dict[str, Participant] = {}
        self.pacer = Pacer()
        self.joined = self.failed = 0
        self.socket_errors: list[str] = []
        self.max_lag_ms = 0.0
        self.http: aiohttp.ClientSession

    async def report_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for p in list(self.participants.values()):
                p.send_receiver_report()

    async def watch_loop(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self.max_lag_ms = max(self.max_lag_ms, (time.monotonic() - t - 0.05) * 1000)

    def start(self, phase: str, t0: float) -> None:
        for spec in self.specs:
            if spec["phase"] == phase:
                p = self.participants[spec["name"]] = Participant(self, spec)
                p.spawn(p.run(t0 + spec["offset"]))

    def reply(self, command: str) -> dict[str, Any]:
        ps = list(self.participants.values())
        out: dict[str, Any] = {
            "t": time.monotonic(),
            "joined": self.joined,
            "failed": self.failed,
            "cpu_s": common.cpu_seconds(os.getpid()),
            "rss_mb": round(common.rss_mb(os.getpid()), 1),
            "max_lag_ms": round(self.max_lag_ms, 1),
        }
        if command in ("mark", "stop"):
            out["participants"] = {p.name: p.counters() for p in ps}
        if command == "stop":
            out["joins"] = {p.name: {"times": p.times, "error": p.error, "done": p.done} for p in ps}
            for p in ps:
                if p.error:  # what arrived, per m-line (kind:mid packets, * = complete keyframe seen)
                    out["joins"][p.name]["streams"] = sorted(
                        f"{s.kind}:{s.mid} {s.packets}{'*' if s.complete else ''}" for s in p.rx.values()
                    )
            out["socket_errors"] = self.socket_errors[:50]
        return out


async def main(path: str) -> None:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    aiortc_hooks.set_lazy_bitrate_estimators()  # as the media server does (the clients share its cores)
    aiortc_hooks.set_fast_codec_copies()
    with open(path) as f:
        worker = Worker(json.load(f))
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        worker.http = http
        background = [asyncio.create_task(c) for c in (worker.pacer.run(), worker.watch_loop(), worker.report_loop())]
        print(json.dumps({"ready": True}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            words = line.split()
            if not words:  # stdin closed: the orchestrator is gone
                break
            if words[0] == "start":
                worker.start(words[1], float(words[2]))
            print(json.dumps(worker.reply(words[0])), flush=True)
            if words[0] == "stop":
                break
        for task in background:
            task.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(p.leave() for p in worker.participants.values()), return_exceptions=True), 20
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", help="JSON file written by bench/load.py")
    asyncio.run(main(parser.parse_args().spec))
