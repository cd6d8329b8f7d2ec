"""Synthetic recording spools, exactly as the media server writes them (docs/protocol.md §3).

Used by the tests, the transcode benchmark and as a reference for the media
server: each track is a WebM (VP8/Opus) or Matroska (H.264) file of encoded
frames with millisecond timestamps starting at 0, and ``manifest.json``
describes them. Video is a solid colour (optionally with a moving pattern, so
encoders and decoders do realistic work); audio is a sine tone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .spool import MANIFEST_NAME, PROTOCOL_VERSION

# BT.601 limited-range YUV of a few solid colours.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (81, 90, 240),
    "blue": (41, 240, 110),
    "green": (145, 54, 34),
    "yellow": (210, 16, 146),
    "magenta": (106, 202, 222),
    "cyan": (170, 166, 16),
    "white": (235, 128, 128),
    "orange": (151, 44, 201),
    "purple": (60, 170, 180),
}
RGB: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "blue": (0, 0, 255),
    "green": (0, 255, 0),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
    "orange": (255, 128, 0),
    "purple": (128, 0, 160),
}


@dataclass
class SynthTrack:
    participant: str
    source: str  # camera | microphone | screen | screen_audio
    start: float
    end: float
    color: str = "red"  # video
    tone_hz: float = 440.0  # audio
    width: int = 1280
    height: int = 720
    fps: int = 30
    codec: str = ""  # "" = vp8 (video) / opus (audio); "h264" writes Matroska
    pattern: bool = False  # a moving pattern over the colour (benchmarks)
    display_name: str = ""
    resize_at: float | None = None  # switch to half resolution here (as WebRTC senders do)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "video" if self.source in ("camera", "screen") else "audio"


_NOISE: dict[tuple[int, int], list[bytes]] = {}


def _noise(size: int, variant: int) -> bytes:
    """A few cached buffers of random bytes: camera-like sensor noise that keeps the bitrate realistic."""
    key = (size, variant % 8)
    if key not in _NOISE:
        _NOISE[key] = [os.urandom(size)]
    return _NOISE[key][0]


def _video_frame(track: SynthTrack, width: int, height: int, index: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    y, u, v = COLORS[track.color]
    for n, (plane, value) in enumerate(zip(frame.planes, (y, u, v), strict=True)):
        size = plane.line_size * plane.height
        if n == 0 and track.pattern:
            # colour ± 24 of noise, plus a moving bright square
            table = bytes(max(16, min(235, value - 24 + b * 48 // 256)) for b in range(256))
            block = bytearray(_noise(size, index).translate(table))
            line = plane.line_size
            top = (index * 5) % max(1, plane.height - 64)
            left = (index * 9) % max(1, width - 64)
            for r in range(top, top + 64):
                block[r * line + left : r * line + left + 64] = b"\xeb" * 64
            plane.update(bytes(block))
        else:
            plane.update(bytes([value]) * size)
    return frame


def _encoder(codec: str, width: int, height: int, fps: int) -> av.VideoCodecContext:
    ctx = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 1000)
    ctx.framerate = Fraction(fps, 1)
    ctx.bit_rate = 1_500_000
    if codec == "h264":
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
    else:
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    return ctx


def _write_video(path: Path, track: SynthTrack) -> str:
    """Encode with a standalone encoder and mux its packets, as the media server remuxes RTP frames.

    A ``resize_at`` switches to a new encoder at half size: the stream then
    carries a keyframe with new dimensions, like a WebRTC sender adapting.
    """
    codec = track.codec or "vp8"
    fmt = "matroska" if codec == "h264" else "webm"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("h264" if codec == "h264" else "vp8", rate=track.fps)
        stream.width, stream.height = track.width, track.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        encoder = _encoder(codec, track.width, track.height, track.fps)
        if codec == "h264":
            encoder.open()
            stream.codec_context.extradata = encoder.extradata
        frames = round((track.end - track.start) * track.fps)
        size = (track.width, track.height)

        def emit(packets: list[av.Packet]) -> None:
            for packet in packets:
                packet.stream = stream
                packet.time_base = Fraction(1, 1000)
                out.mux(packet)

        for i in range(frames):
            t = i / track.fps
            if (
                track.resize_at is not None
                and size == (track.width, track.height)
                and t >= track.resize_at - track.start
            ):
                emit(encoder.encode(None))
                size = (track.width // 4 * 2, track.height // 4 * 2)
                encoder = _encoder(codec, *size, track.fps)
            frame = _video_frame(track, *size, i)
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            emit(encoder.encode(frame))
        emit(encoder.encode(None))
    return codec


def _write_audio(path: Path, track: SynthTrack) -> str:
    rate, samples = 48000, 960  # 20 ms Opus frames, as WebRTC sends them
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        stream.time_base = Fraction(1, 1000)
        count = round((track.end - track.start) * rate / samples)
        for i in range(count):
            frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
            base = i * samples
            pcm = bytearray()
            for n in range(samples):
                value = int(8000 * math.sin(2 * math.pi * track.tone_hz * (base + n) / rate))
                pcm += value.to_bytes(2, "little", signed=True)
            frame.planes[0].update(bytes(pcm))
            frame.sample_rate = rate
            frame.pts = base
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return "opus"


def write_spool(
    directory: Path,
    *,
    recording: str,
    room: str,
    duration: float,
    tracks: Sequence[SynthTrack],
    started_at: float = 1_700_000_000.0,
) -> dict[str, Any]:
    """Write one file per track and ``manifest.json`` into ``directory``; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for n, track in enumerate(tracks):
        ext = "mkv" if track.codec == "h264" else "webm"
        name = f"{track.participant}-{track.source}-{n}.{ext}"
        writer = _write_video if track.kind == "video" else _write_audio
        codec = writer(directory / name, track)
        entry: dict[str, Any] = {
            "file": name,
            "participant": track.participant,
            "source": track.source,
            "kind": track.kind,
            "codec": codec,
            "start": track.start,
            "end": track.end,
            **track.extra,
        }
        if track.display_name:
            entry["display_name"] = track.display_name
        entries.append(entry)
    manifest = {
        "protocol": PROTOCOL_VERSION,
        "recording": recording,
        "room": room,
        "started_at": started_at,
        "stopped_at": started_at + duration,
        "tracks": entries,
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def two_participants(duration: float, **video: Any) -> list[SynthTrack]:
    """Alice (red camera, 440 Hz) for the whole call; Bob (blue camera, 660 Hz) joins 1 s in."""
    return [
        SynthTrack("palice", "camera", 0.0, duration, color="red", **video),
        SynthTrack("palice", "microphone", 0.0, duration, tone_hz=440.0),
        SynthTrack("pbob", "camera", min(1.0, duration / 4), duration, color="blue", **video),
        SynthTrack("pbob", "microphone", min(1.0, duration / 4), duration, tone_hz=660.0),
    ]
