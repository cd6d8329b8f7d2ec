"""Helpers for recording tests: pixels, audio level, a fake media server (docs/protocol.md §3)."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av

from recordings.synthetic import SynthTrack, write_spool

MEDIA_SECRET = "test-media-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pixel(path: Path, at: float, points: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """RGB of ``points`` in the first frame of ``path`` at or after ``at`` seconds."""
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            if frame.time is not None and frame.time >= at:
                rgb = frame.to_rgb()
                plane = rgb.planes[0]
                data, line = bytes(plane), plane.line_size
                return [
                    (data[y * line + x * 3], data[y * line + x * 3 + 1], data[y * line + x * 3 + 2]) for x, y in points
                ]
    raise AssertionError(f"no frame at {at}s in {path}")


def is_color(rgb: tuple[int, int, int], name: str) -> bool:
    r, g, b = rgb
    return {
        "red": r > 200 and g < 60 and b < 60,
        "blue": b > 200 and r < 60 and g < 60,
        "green": g > 200 and r < 60 and b < 60,
        "background": max(rgb) < 45,
    }[name]


def audio_rms(path: Path) -> float:
    """RMS level of the whole audio stream (0..1)."""
    total, count = 0.0, 0
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            assert frame.format.name == "fltp", frame.format.name  # AAC decodes to planar float
            samples = memoryview(bytes(frame.planes[0])).cast("f")[: frame.samples]
            for v in samples[::16]:
                total += v * v
                count += 1
    return (total / max(1, count)) ** 0.5


def small_tracks(duration: float) -> list[SynthTrack]:
    return [
        SynthTrack("palice", "camera", 0.0, duration, color="red", width=320, height=180, fps=15),
        SynthTrack("palice", "microphone", 0.0, duration, tone_hz=440.0),
        SynthTrack("pbob", "camera", 0.0, duration, color="blue", width=320, height=180, fps=15),
        SynthTrack("pbob", "microphone", 0.0, duration, tone_hz=660.0),
    ]


@dataclass
class FakeMedia:
    """A media server speaking docs/protocol.md §3: POST starts, DELETE writes a synthetic spool + manifest."""

    spool: Path
    url: str = ""
    duration: float = 2.0
    requests: list[tuple[str, str, dict[str, Any] | None, str]] = field(default_factory=list)
    fail_start: int | None = None  # answer POST with this status
    recording: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _record(self) -> dict[str, Any] | None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((self.command, self.path, body, self.headers.get("Authorization", "")))
                return body

            def do_POST(self) -> None:
                body = self._record()
                if fake.fail_start:
                    self._reply(fake.fail_start, {"error": {"code": "room_busy", "message": "no", "details": {}}})
                    return
                parts = self.path.strip("/").split("/")  # v1 rooms <room> recordings
                assert body is not None and body["protocol"] == 1
                fake.recording.add(body["recording"])
                self._reply(201, {"protocol": 1, "recording": body["recording"], "room": parts[2]})

            def do_DELETE(self) -> None:
                self._record()
                parts = self.path.strip("/").split("/")  # v1 rooms <room> recordings <rec>
                room, rec = parts[2], parts[4]
                if rec not in fake.recording:
                    self._reply(404, {"error": {"code": "recording_not_found", "message": "", "details": {}}})
                    return
                fake.recording.discard(rec)
                write_spool(
                    fake.spool / rec,
                    recording=rec,
                    room=room,
                    duration=fake.duration,
                    tracks=small_tracks(fake.duration),
                )
                self._reply(204)

        return Handler

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def write_two_party_spool(directory: Path, recording: str, room: str, duration: float = 2.0) -> dict[str, Any]:
    return write_spool(directory, recording=recording, room=room, duration=duration, tracks=small_tracks(duration))
