"""The recording spool shared by the media server and workers (docs/protocol.md §3).

Pure parsing and validation of ``manifest.json``; no Django models. A manifest
that breaks the contract raises :class:`ManifestError` (a permanent failure:
retrying cannot fix it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1
MANIFEST_NAME = "manifest.json"
SOURCES = frozenset({"camera", "microphone", "screen", "screen_audio"})
KIND_OF_SOURCE = {"camera": "video", "screen": "video", "microphone": "audio", "screen_audio": "audio"}
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_TRACKS = 2000


class ManifestError(ValueError):
    """The manifest is missing, not JSON, or breaks the contract."""


@dataclass(frozen=True)
class Track:
    file: str
    participant: str
    display_name: str
    source: str
    kind: str
    codec: str
    start: float
    end: float

    @property
    def is_video(self) -> bool:
        return self.kind == "video"


@dataclass(frozen=True)
class Manifest:
    recording: str
    room: str
    started_at: float
    stopped_at: float
    tracks: tuple[Track, ...]

    @property
    def duration(self) -> float:
        return max(0.0, self.stopped_at - self.started_at)


def recording_dir(spool_dir: str | Path, recording_id: str) -> Path:
    if not _ID_RE.match(recording_id):
        raise ManifestError(f"bad recording id {recording_id!r}")
    return Path(spool_dir) / recording_id


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        raise ManifestError(f"{what} must be a number")
    return float(value)


def _str(value: Any, what: str, *, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise ManifestError(f"{what} is missing or malformed")
    return value


def manifest_parse(data: Any, *, recording_id: str | None = None) -> Manifest:
    """Validate a decoded manifest. Track times are clipped to [0, duration]; empty tracks are dropped."""
    if not isinstance(data, dict):
        raise ManifestError("the manifest must be a JSON object")
    if data.get("protocol") != PROTOCOL_VERSION:
        raise ManifestError(f"unsupported manifest protocol {data.get('protocol')!r}")
    recording = _str(data.get("recording"), "recording", pattern=_ID_RE)
    if recording_id is not None and recording != recording_id:
        raise ManifestError("the manifest belongs to another recording")
    room = _str(data.get("room"), "room", pattern=_ID_RE)
    started_at = _number(data.get("started_at"), "started_at")
    stopped_at = _number(data.get("stopped_at"), "stopped_at")
    if stopped_at < started_at:
        raise ManifestError("stopped_at is before started_at")
    duration = stopped_at - started_at
    raw_tracks = data.get("tracks")
    if not isinstance(raw_tracks, list) or len(raw_tracks) > MAX_TRACKS:
        raise ManifestError("tracks must be a list")
    tracks: list[Track] = []
    for i, raw in enumerate(raw_tracks):
        if not isinstance(raw, dict):
            raise ManifestError(f"track {i} must be an object")
        source = _str(raw.get("source"), f"track {i} source")
        if source not in SOURCES:
            raise ManifestError(f"track {i} has unknown source {source!r}")
        kind = _str(raw.get("kind", KIND_OF_SOURCE[source]), f"track {i} kind")
        if kind != KIND_OF_SOURCE[source]:
            raise ManifestError(f"track {i}: a {source} track must be {KIND_OF_SOURCE[source]}")
        start = min(max(0.0, _number(raw.get("start"), f"track {i} start")), duration)
        end = min(max(0.0, _number(raw.get("end"), f"track {i} end")), duration)
        if end <= start:
            continue
        display_name = raw.get("display_name") or ""
        tracks.append(
            Track(
                file=_str(raw.get("file"), f"track {i} file", pattern=_FILE_RE),
                participant=_str(raw.get("participant"), f"track {i} participant", pattern=_ID_RE),
                display_name=display_name if isinstance(display_name, str) else "",
                source=source,
                kind=kind,
                codec=_str(raw.get("codec", ""), f"track {i} codec").lower(),
                start=start,
                end=end,
            )
        )
    return Manifest(recording=recording, room=room, started_at=started_at, stopped_at=stopped_at, tracks=tuple(tracks))


def manifest_load(directory: Path, *, recording_id: str | None = None) -> Manifest:
    """Read and validate ``<directory>/manifest.json``; every listed file must exist in ``directory``."""
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError("manifest.json is missing") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError("manifest.json is not JSON") from exc
    manifest = manifest_parse(data, recording_id=recording_id)
    missing = [t.file for t in manifest.tracks if not (directory / t.file).is_file()]
    if missing:
        raise ManifestError(f"track files are missing: {', '.join(missing[:5])}")
    return manifest
