"""Server-side recording without re-encoding (docs/protocol.md §3).

A :class:`Recorder` records one recording of one room. It is just another
subscriber: a :class:`_Tap` is attached as a sink to the :class:`Forwarder`
of every published track (present and future), depacketizes RTP into encoded
frames on the event loop (cheap byte work: VP8 RFC 7741, H.264 RFC 6184,
Opus one packet = one frame) and hands whole frames to one writer thread per
recording through a bounded queue. The writer muxes them with PyAV into one
WebM (VP8/Opus) or Matroska (H.264) file per track segment using mux-only
streams (``add_mux_stream``: no codec context, so nothing can decode or
encode). Stopping closes every file, writes ``manifest.json`` atomically and
emits ``recording_stopped``; an error (queue overflow, disk) emits
``recording_failed`` instead and writes no manifest.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from . import protocol

if TYPE_CHECKING:
    from .participant import PublishedTrack

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

MANIFEST_NAME = "manifest.json"
MS = Fraction(1, 1000)
RESUME_GAP = 5.0  # s without packets after which a track's next packet starts a new segment (mute, stall)
REORDER_WAIT = 0.25  # s a video gap may wait for a retransmission before it counts as lost
REORDER_MAX = 512  # packets buffered behind a gap at most
MAX_QUEUE_FRAMES = 4096  # frames waiting for the writer thread (~10 s of a 10-person call)
MAX_QUEUE_BYTES = 64 << 20
CODECS = {"video/vp8": "vp8", "video/h264": "h264", "audio/opus": "opus"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_START_CODE = b"\x00\x00\x00\x01"


# --------------------------------------------------------------------------
# Depacketization (pure)
# --------------------------------------------------------------------------


def vp8_frame(payloads: list[bytes]) -> bytes | None:
    """Reassemble one VP8 frame from its RTP payloads (RFC 7741); None if it does not start a frame."""
    out: list[bytes] = []
    for n, payload in enumerate(payloads):
        if not payload:
            return None
        b0 = payload[0]
        i = 1
        if b0 & 0x80:  # X
            if len(payload) < 2:
                return None
            x = payload[1]
            i = 2
            if x & 0x80:  # I: picture ID (7 or 15 bits)
                if len(payload) <= i:
                    return None
                i += 2 if payload[i] & 0x80 else 1
            if x & 0x40:  # L: TL0PICIDX
                i += 1
            if x & 0x30:  # T/K
                i += 1
        if n == 0 and (not b0 & 0x10 or b0 & 0x07):  # must start partition 0 (S=1, PID=0)
            return None
        out.append(payload[i:])
    frame = b"".join(out)
    return frame or None


def vp8_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) if ``frame`` is a VP8 keyframe, else None."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


def h264_nal_units(payloads: list[bytes]) -> list[bytes] | None:
    """The NAL units of one access unit (RFC 6184 single NAL, STAP-A, FU-A); None if a fragment is missing."""
    nals: list[bytes] = []
    fu: bytearray | None = None
    for payload in payloads:
        if not payload:
            continue
        kind = payload[0] & 0x1F
        if 1 <= kind <= 23:
            nals.append(payload)
        elif kind == 24:  # STAP-A
            i = 1
            while i + 2 <= len(payload):
                size = int.from_bytes(payload[i : i + 2], "big")
                i += 2
                if size == 0 or i + size > len(payload):
                    return None
                nals.append(payload[i : i + size])
                i += size
        elif kind == 28 and len(payload) > 2:  # FU-A
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                fu = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            elif fu is None:
                return None
            fu += payload[2:]
            if end:
                nals.append(bytes(fu))
                fu = None
        else:
            return None  # STAP-B, MTAP, FU-B: not in packetization-mode 1
    if fu is not None:
        return None
    return nals


class _Bits:
    """Big-endian bit reader for SPS parsing (Exp-Golomb)."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("SPS truncated")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def h264_sps_size(sps: bytes) -> tuple[int, int] | None:
    """(width, height) from an H.264 SPS NAL unit (with its header byte), or None."""
    try:
        r = _Bits(sps[1:].replace(b"\x00\x00\x03", b"\x00\x00"))
        profile = r.u(8)
        r.u(16)  # constraint flags, level
        r.ue()  # seq_parameter_set_id
        chroma = 1
        if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma = r.ue()
            if chroma == 3:
                r.u(1)
            r.ue()
            r.ue()
            r.u(1)
            if r.u(1):  # seq_scaling_matrix_present_flag
                for i in range(12 if chroma == 3 else 8):
                    if r.u(1):
                        last, nxt = 8, 8
                        for _ in range(16 if i < 6 else 64):
                            if nxt:
                                nxt = (last + r.se() + 256) % 256
                            last = nxt or last
        r.ue()  # log2_max_frame_num_minus4
        poc_type = r.ue()
        if poc_type == 0:
            r.ue()
        elif poc_type == 1:
            r.u(1)
            r.se()
            r.se()
            for _ in range(r.ue()):
                r.se()
        r.ue()  # max_num_ref_frames
        r.u(1)
        width_mbs, height_units = r.ue() + 1, r.ue() + 1
        frame_mbs_only = r.u(1)
        if not frame_mbs_only:
            r.u(1)
        r.u(1)
        left = right = top = bottom = 0
        if r.u(1):
            left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
    except ValueError:
        return None
    crop_x = 2 if chroma in (1, 2) else 1
    crop_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (left + right)
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (top + bottom)
    return (width, height) if width > 0 and height > 0 else None


def opus_duration_ms(packet: bytes) -> float:
    """Duration of one Opus packet from its TOC byte (RFC 6716 §3.1); 20 ms if unreadable."""
    if not packet:
        return 20.0
    config, code = packet[0] >> 3, packet[0] & 0x03
    if config < 12:
        frame = (10.0, 20.0, 40.0, 60.0)[config % 4]
    elif config < 16:
        frame = (10.0, 20.0)[config % 2]
    else:
        frame = (2.5, 5.0, 10.0, 20.0)[config % 4]
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 1
    return frame * max(1, count)


class _Reorder:
    """Hands out packets in sequence order; a gap is given up after REORDER_WAIT (or REORDER_MAX packets)."""

    def __init__(self) -> None:
        self.next: int | None = None
        self.highest = 0
        self.buffer: dict[int, RtpPacket] = {}
        self.gap_since = 0.0

    def push(self, packet: RtpPacket, now: float) -> tuple[list[RtpPacket], bool]:
        """Returns (packets now in order, whether packets were lost before the first of them)."""
        seq = packet.sequence_number
        if self.next is None:
            self.next = self.highest = seq
        delta = (seq - self.highest) & 0xFFFF
        ext = self.highest + delta if delta < 0x8000 else self.highest - (0x10000 - delta)
        self.highest = max(self.highest, ext)
        if ext < self.next or ext in self.buffer:
            return [], False  # late duplicate / retransmission we gave up on
        self.buffer[ext] = packet
        out = self._drain()
        lost = False
        if self.buffer:
            if not self.gap_since:
                self.gap_since = now
            if now - self.gap_since > REORDER_WAIT or len(self.buffer) > REORDER_MAX:
                self.next = min(self.buffer)
                lost = True
                out += self._drain()
        if not self.buffer:
            self.gap_since = 0.0
        return out, lost

    def _drain(self) -> list[RtpPacket]:
        out: list[RtpPacket] = []
        assert self.next is not None
        while True:
            packet = self.buffer.pop(self.next, None)
            if packet is None:
                return out
            out.append(packet)
            self.next += 1


# --------------------------------------------------------------------------
# Writer thread
# --------------------------------------------------------------------------


class _WriteQueue:
    """Frames (bounded by count and bytes) and control messages (always accepted) for the writer."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._items: collections.deque[tuple[Any, ...]] = collections.deque()
        self._cond = threading.Condition()
        self._frames = 0
        self._bytes = 0
        self.max_frames = max_frames
        self.max_bytes = max_bytes

    def put_frame(self, item: tuple[Any, ...], size: int) -> bool:
        with self._cond:
            if self._frames >= self.max_frames or self._bytes + size > self.max_bytes:
                return False
            self._frames += 1
            self._bytes += size
            self._items.append(item)
            self._cond.notify()
            return True

    def put_control(self, item: tuple[Any, ...]) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def get(self) -> tuple[Any, ...]:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            if item[0] == "frame":
                self._frames -= 1
                self._bytes -= len(item[2])
            return item


@dataclass
class _Output:
    container: Any
    stream: Any
    last_pts: int = -1
    frames: int = 0


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if isinstance(exc, OSError):
        return "spool_unwritable"
    return "mux_error"


class _Writer:
    """The recording's writer thread: opens, muxes into and closes the segment files."""

    def __init__(self, queue: _WriteQueue, on_error: Callable[[str], None], on_done: Callable[[], None]) -> None:
        self.queue = queue
        self.outputs: dict[int, _Output] = {}
        self.frames: dict[int, int] = {}  # segment id → frames written (kept after close)
        self.error: str | None = None
        self._on_error = on_error
        self._on_done = on_done
        self.thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item[0] == "finish":
                    break
                if self.error is not None:
                    continue  # failed: drain without writing
                try:
                    self._handle(item)
                except Exception as exc:
                    logger.exception("recording writer failed")
                    self.error = _failure_reason(exc)
                    self._on_error(self.error)
        finally:
            for seg in list(self.outputs):
                self._close(seg)
            self._on_done()

    def _handle(self, item: tuple[Any, ...]) -> None:
        op, seg = item[0], item[1]
        if op == "open":
            _, _, path, fmt, codec, width, height = item
            container = av.open(str(path), "w", format=fmt)
            try:
                if codec == "opus":
                    stream = container.add_mux_stream("opus", rate=48000)
                else:
                    stream = container.add_mux_stream(codec, width=width, height=height)
                stream.time_base = MS
            except BaseException:
                container.close()
                raise
            self.outputs[seg] = _Output(container, stream)
            self.frames[seg] = 0
        elif op == "frame":
            _, _, data, pts, keyframe, duration = item
            out = self.outputs[seg]
            packet = av.Packet(data)
            packet.stream = out.stream
            packet.time_base = MS
            packet.pts = packet.dts = max(pts, out.last_pts)  # never decreasing
            packet.is_keyframe = keyframe
            if duration:
                packet.duration = duration
            out.container.mux(packet)
            out.last_pts = packet.pts
            out.frames += 1
            self.frames[seg] = out.frames
        elif op == "close":
            self._close(seg)

    def _close(self, seg: int) -> None:
        out = self.outputs.pop(seg, None)
        if out is None:
            return
        try:
            out.container.close()
        except Exception as exc:
            logger.exception("closing a recording file failed")
            if self.error is None:
                self.error = _failure_reason(exc)
                self._on_error(self.error)


# --------------------------------------------------------------------------
# Loop side: segments and taps
# --------------------------------------------------------------------------


@dataclass
class _Segment:
    id: int
    file: str
    participant: str
    source: str
    kind: str
    codec: str
    start: float  # seconds since the recording started
    end: float | None = None
    first_ts: int = 0
    last_pts: int = 0


class _Tap:
    """The recorder's sink on one published track: RTP → encoded frames → writer queue."""

    def __init__(self, recorder: Recorder, track: PublishedTrack) -> None:
        self.recorder = recorder
        self.track = track
        self.forwarder = track.recording_layer()  # simulcast: the best layer sent now; fixed for the recording
        self.video = track.kind == "video"
        self.codec: str | None = None
        self.clock_rate = 90000
        self.segment: _Segment | None = None
        self.ssrc: int | None = None
        self.last_packet = 0.0
        self.last_frame = 0.0
        self.waiting_keyframe = self.video
        self.reorder = _Reorder()
        self.frame_ts: int | None = None
        self.parts: list[bytes] = []
        self.audio_seq: int | None = None
        self.ts32 = 0
        self.ts_ext = 0
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.unsupported = False
        self.errors = 0

    # -- per packet (event loop) -------------------------------------------

    def __call__(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        """Forwarder sink: must never raise into the forwarding path."""
        try:
            self._on_packet(packet, codec)
        except Exception:
            if not self.errors:
                logger.exception("recording %s: cannot depacketize %s", self.recorder.id, self.track.source)
            self.errors += 1
            self.frame_ts, self.parts = None, []
            self._need_keyframe()

    def _on_packet(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        if self.unsupported:
            return
        now = time.monotonic()
        if self.codec is None or packet.ssrc != self.ssrc:
            name = CODECS.get(codec.mimeType.lower())
            if name is None:
                self.unsupported = True
                logger.warning("recording %s: codec %s is not recorded", self.recorder.id, codec.mimeType)
                return
            if self.ssrc is not None:  # a new source (or codec): a new segment
                self._new_source(now)
            self.codec, self.clock_rate, self.ssrc = name, codec.clockRate, packet.ssrc
        elif now - self.last_packet > RESUME_GAP and self.segment is not None:
            self._new_source(now)
        self.last_packet = now
        if not self.video:
            seq = packet.sequence_number
            if self.audio_seq is not None and (seq - self.audio_seq) & 0xFFFF >= 0x8000:
                return  # late: audio is never retransmitted, drop
            self.audio_seq = seq
            self._emit(packet.payload, packet.timestamp, True, None, now)
            return
        ordered, lost = self.reorder.push(packet, now)
        if lost:
            self.frame_ts, self.parts = None, []
            self._need_keyframe()
        for p in ordered:
            if self.frame_ts is not None and p.timestamp != self.frame_ts:
                self._finish_frame(now)  # the previous frame had no marker bit
            if self.frame_ts is None:
                self.frame_ts, self.parts = p.timestamp, []
            self.parts.append(p.payload)
            if p.marker:
                self._finish_frame(now)

    def _new_source(self, now: float) -> None:
        self.close(now)
        self.reorder = _Reorder()
        self.frame_ts, self.parts, self.audio_seq = None, [], None
        self.waiting_keyframe = self.video

    def _need_keyframe(self) -> None:
        if self.video:
            self.waiting_keyframe = True
            self.forwarder.request_keyframe()

    def _finish_frame(self, now: float) -> None:
        ts, parts = self.frame_ts, self.parts
        self.frame_ts, self.parts = None, []
        if ts is None or not parts:
            return
        size: tuple[int, int] | None = None
        if self.codec == "vp8":
            data = vp8_frame(parts)
            if data is None:
                self._need_keyframe()
                return
            size = vp8_keyframe_size(data)
            keyframe = size is not None
        else:
            nals = h264_nal_units(parts)
            if nals is None:
                self._need_keyframe()
                return
            types = {n[0] & 0x1F for n in nals}
            for nal in nals:
                if nal[0] & 0x1F == 7:
                    self.sps = nal
                elif nal[0] & 0x1F == 8:
                    self.pps = nal
            keyframe = 5 in types
            if keyframe and self.segment is None:
                if self.sps is None or self.pps is None:
                    self._need_keyframe()
                    return
                if 7 not in types:  # the file's first packet carries the parameter sets (→ extradata)
                    nals = [self.sps, self.pps, *nals]
                size = h264_sps_size(self.sps)
            data = b"".join(_START_CODE + n for n in nals)
        if self.waiting_keyframe:
            if not keyframe:
                self.forwarder.request_keyframe()
                return
            self.waiting_keyframe = False
        self._emit(data, ts, keyframe, size, now)

    def _emit(self, data: bytes, ts: int, keyframe: bool, size: tuple[int, int] | None, now: float) -> None:
        delta = (ts - self.ts32) & 0xFFFFFFFF
        self.ts32 = ts
        self.ts_ext += delta - (1 << 32) if delta >= 1 << 31 else delta
        seg = self.segment
        if seg is None:
            seg = self.segment = self.recorder.open_segment(self.track, self.codec or "", size, now)
            if seg is None:
                return
            seg.first_ts = self.ts_ext
        pts = max(seg.last_pts, round((self.ts_ext - seg.first_ts) * 1000 / self.clock_rate))
        seg.last_pts = pts
        duration = round(opus_duration_ms(data)) if self.codec == "opus" else 0
        self.last_frame = now
        self.recorder.write(("frame", seg.id, data, pts, keyframe, duration), len(data))

    def close(self, now: float) -> None:
        """End the current segment: ``end`` is now for a live track, its last frame for a stalled one."""
        seg, self.segment = self.segment, None
        if seg is None:
            return
        at = now if now - self.last_frame <= RESUME_GAP else self.last_frame
        seg.end = max(seg.start, at - self.recorder.t0)
        self.recorder.close_segment(seg)


# --------------------------------------------------------------------------
# Recorder
# --------------------------------------------------------------------------


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Recorder:
    """One recording of one room: a sink on every published track, a writer thread, a manifest.

    Create with :meth:`start` (creates ``<spool_dir>/<recording_id>/``; raises
    OSError), attach tracks with :meth:`add_tracks` / detach with
    :meth:`remove_tracks`, and end with :meth:`stop` (idempotent, also after a
    failure). ``failed`` holds the reason once the recording has failed.
    """

    def __init__(
        self,
        *,
        recording_id: str,
        room_id: str,
        spool_dir: Path,
        emit: Emit,
        max_queue_frames: int = MAX_QUEUE_FRAMES,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
    ) -> None:
        self.id = recording_id
        self.room_id = room_id
        self.directory = Path(spool_dir) / recording_id
        self._emit = emit
        self.started_at = time.time()
        self.t0 = time.monotonic()
        self.taps: dict[int, _Tap] = {}
        self.segments: list[_Segment] = []
        self.failed: str | None = None
        self.stopped = False
        self._queue = _WriteQueue(max_queue_frames, max_queue_bytes)
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._writer = _Writer(self._queue, self._writer_error, self._writer_done)
        self._finalizer: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, **kwargs: Any) -> Recorder:
        """Create the recording directory (must not exist yet) and start the writer thread."""
        recorder = cls(**kwargs)
        recorder.directory.mkdir(parents=True, exist_ok=False)
        recorder._writer.thread.start()
        return recorder

    # -- tracks ---------------------------------------------------------------

    def add_tracks(self, tracks: Iterable[PublishedTrack]) -> None:
        """Record ``tracks`` from their next keyframe (a PLI is sent for video)."""
        if self.failed is not None or self.stopped:
            return
        for track in tracks:
            if id(track) not in self.taps:
                tap = self.taps[id(track)] = _Tap(self, track)
                tap.forwarder.add_sink(tap)

    def remove_tracks(self, tracks: Iterable[PublishedTrack]) -> None:
        """Stop recording ``tracks``; their open segments end now."""
        now = time.monotonic()
        for track in tracks:
            tap = self.taps.pop(id(track), None)
            if tap is not None:
                tap.forwarder.remove_sink(tap)
                tap.close(now)

    # -- called by taps -----------------------------------------------------

    def open_segment(
        self, track: PublishedTrack, codec: str, size: tuple[int, int] | None, now: float
    ) -> _Segment | None:
        n = len(self.segments)
        participant = _UNSAFE.sub("_", track.participant)[:40]
        ext = "mkv" if codec == "h264" else "webm"
        seg = _Segment(
            id=n,
            file=f"{participant}-{track.source}-{n}.{ext}",
            participant=track.participant,
            source=track.source,
            kind=track.kind,
            codec=codec,
            start=now - self.t0,
        )
        fmt = "matroska" if codec == "h264" else "webm"
        width, height = size or (0, 0)
        self.segments.append(seg)
        self._queue.put_control(("open", seg.id, self.directory / seg.file, fmt, codec, width, height))
        return seg

    def write(self, item: tuple[Any, ...], size: int) -> None:
        if self.failed is None and not self._queue.put_frame(item, size):
            self.fail("writer_overflow")

    def close_segment(self, seg: _Segment) -> None:
        self._queue.put_control(("close", seg.id))

    # -- failure and stop ---------------------------------------------------

    def _writer_error(self, reason: str) -> None:  # writer thread
        self._loop.call_soon_threadsafe(self.fail, reason)

    def _writer_done(self) -> None:  # writer thread
        def done() -> None:
            if not self._done.done():
                self._done.set_result(None)

        try:
            self._loop.call_soon_threadsafe(done)
        except RuntimeError:  # the loop is already closed
            pass

    def fail(self, reason: str) -> None:
        """Fail the recording: stop taking frames and finalize in the background (recording_failed)."""
        if self.failed is not None or self.stopped:
            return
        logger.error("recording %s of room %s failed: %s", self.id, self.room_id, reason)
        self.failed = reason
        self._detach_all()
        if self._finalizer is None:
            self._finalizer = asyncio.create_task(self._finalize(), name=f"recording-{self.id}-finalize")

    def _detach_all(self) -> None:
        now = time.monotonic()
        for tap in list(self.taps.values()):
            tap.forwarder.remove_sink(tap)
            tap.close(now)
        self.taps.clear()

    async def stop(self) -> str | None:
        """Close every file, write the manifest, emit the event; returns the failure reason or None."""
        if self._finalizer is None:
            self._detach_all()
            self._finalizer = asyncio.create_task(self._finalize(), name=f"recording-{self.id}-finalize")
        await asyncio.shield(self._finalizer)
        return self.failed

    async def _finalize(self) -> None:
        stopped_mono = time.monotonic()
        self._queue.put_control(("finish",))
        await self._done
        self.stopped = True
        if self.failed is None and self._writer.error is not None:
            self.failed = self._writer.error
        if self.failed is not None:
            self._emit(protocol.recording_failed_event(self.room_id, self.id, self.failed))
            return
        manifest = self.manifest(self.started_at + (stopped_mono - self.t0), stopped_mono)
        try:
            await asyncio.to_thread(_write_json_atomic, self.directory / MANIFEST_NAME, manifest)
        except OSError as exc:
            logger.exception("writing the manifest of %s failed", self.id)
            self.failed = _failure_reason(exc)
            self._emit(protocol.recording_failed_event(self.room_id, self.id, self.failed))
            return
        self._emit(protocol.recording_stopped_event(self.room_id, self.id, f"{self.id}/{MANIFEST_NAME}"))

    def manifest(self, stopped_at: float, stopped_mono: float) -> dict[str, Any]:
        """The manifest (docs/protocol.md §3.3) of every segment that received at least one frame."""
        duration = stopped_mono - self.t0
        tracks = []
        for seg in self.segments:
            if not self._writer.frames.get(seg.id):
                continue
            end = seg.end if seg.end is not None else duration
            tracks.append(
                {
                    "file": seg.file,
                    "participant": seg.participant,
                    "source": seg.source,
                    "kind": seg.kind,
                    "codec": seg.codec,
                    "start": round(seg.start, 3),
                    "end": round(min(end, duration), 3),
                }
            )
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "recording": self.id,
            "room": self.room_id,
            "started_at": round(self.started_at, 3),
            "stopped_at": round(stopped_at, 3),
            "tracks": tracks,
        }
