"""Recording fixtures: a spool and media root per test, eager Celery, a fake media server, sent events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rec_helpers import MEDIA_SECRET, FakeMedia, free_port


@pytest.fixture
def spool(settings: Any, tmp_path: Path) -> Path:
    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RECORDINGS_WIDTH, settings.RECORDINGS_HEIGHT, settings.RECORDINGS_FPS = 640, 360, 15
    settings.RECORDINGS_X264_PRESET = "ultrafast"
    settings.MEDIA_SECRET = MEDIA_SECRET
    settings.RECORDINGS_HEARTBEAT_SECONDS = 0.5
    return settings.RECORDINGS_SPOOL_DIR


@pytest.fixture
def sent_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every (group, frame) rooms.events sends (after commit)."""
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr("rooms.events._send", lambda group, event: sent.append((group, event)))
    return sent


@pytest.fixture
def fake_media(settings: Any, spool: Path) -> Iterator[FakeMedia]:
    media = FakeMedia(spool=spool)
    media.start()
    settings.MEDIA_CONTROL_URL = media.url
    settings.MEDIA_CONTROL_TIMEOUT_SECONDS = 60  # DELETE writes a synthetic spool: slow on a busy machine
    yield media
    media.stop()


@pytest.fixture
def media_down(settings: Any) -> None:
    settings.MEDIA_CONTROL_URL = f"http://127.0.0.1:{free_port()}"
    settings.MEDIA_CONTROL_TIMEOUT_SECONDS = 2


@pytest.fixture
def room_with_host(auth_client: Any) -> tuple[Any, str]:
    host = auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "Recorded"}, format="json").json()["roomId"]
    return host, room_id
