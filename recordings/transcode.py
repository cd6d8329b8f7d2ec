"""Run the composition: ffmpeg (compose + thumbnail) and ffprobe, with a heartbeat.

:func:`render` turns a spool directory into ``recording.mp4`` and
``thumbnail.jpg`` in a work directory. ffmpeg's failure to render valid input
is permanent (:class:`TranscodeError`); ffmpeg killed by a signal (e.g. out of
memory) is transient (:class:`TranscodeInterrupted`). While ffmpeg runs,
``heartbeat()`` is called every ``heartbeat_seconds``; if it returns False
ffmpeg is killed and :class:`Abandoned` raised.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .compose import Canvas, compose_command, probe_command, thumbnail_command
from .spool import Manifest


class TranscodeError(Exception):
    """ffmpeg could not render this input (permanent)."""


class TranscodeInterrupted(Exception):
    """ffmpeg was killed by a signal (transient: retry)."""


class Abandoned(Exception):
    """The heartbeat said stop (the lease was lost)."""


@dataclass(frozen=True)
class Rendered:
    video: Path
    thumbnail: Path
    duration: float
    size: int


def _run(argv: list[str], log: Path, *, heartbeat: Callable[[], bool], every: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while True:
                try:
                    proc.wait(timeout=every)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise TranscodeError(f"ffmpeg took longer than {timeout:.0f} s") from None
                    if not heartbeat():
                        raise Abandoned() from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode < 0:
        raise TranscodeInterrupted(f"ffmpeg was killed by signal {-proc.returncode}")
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise TranscodeError(f"ffmpeg exited with {proc.returncode}: {' | '.join(tail)[:500]}")


def probe(path: Path, *, ffprobe: str = "ffprobe") -> tuple[float, set[str]]:
    """(duration in seconds, stream kinds) of a media file."""
    result = subprocess.run(probe_command(path, ffprobe=ffprobe), capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise TranscodeError(f"ffprobe failed: {result.stderr.strip()[:300]}")
    data = json.loads(result.stdout or "{}")
    kinds = {s.get("codec_type", "") for s in data.get("streams", [])}
    return float(data.get("format", {}).get("duration") or 0.0), kinds


def render(
    manifest: Manifest,
    spool: Path,
    work: Path,
    *,
    canvas: Canvas,
    heartbeat: Callable[[], bool] = lambda: True,
    heartbeat_seconds: float = 15.0,
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
) -> Rendered:
    """Compose ``manifest`` (files in ``spool``) into ``work``; checks the result has video and audio."""
    work.mkdir(parents=True, exist_ok=True)
    video, thumb = work / "recording.mp4", work / "thumbnail.jpg"
    timeout = max(600.0, manifest.duration * 20)
    argv = compose_command(manifest, spool, video, canvas, ffmpeg=ffmpeg)
    _run(argv, work / "ffmpeg.log", heartbeat=heartbeat, every=heartbeat_seconds, timeout=timeout)
    duration, kinds = probe(video, ffprobe=ffprobe)
    if not {"video", "audio"} <= kinds:
        raise TranscodeError(f"the composed file lacks streams: {sorted(kinds)}")
    at = min(duration / 2, 10.0)
    _run(
        thumbnail_command(video, thumb, at=at, ffmpeg=ffmpeg),
        work / "thumbnail.log",
        heartbeat=heartbeat,
        every=heartbeat_seconds,
        timeout=120,
    )
    return Rendered(video=video, thumbnail=thumb, duration=duration, size=video.stat().st_size)
