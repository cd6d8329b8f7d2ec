"""Django → media server recording control (docs/protocol.md §3), synchronous.

Called from services (request threads, Celery workers), so it uses urllib
with ``MEDIA_CONTROL_TIMEOUT_SECONDS``; the base URL and secret are read from
settings on every call. With the node registry (``MEDIA_REDIS_URL``) a request
goes to the node hosting the room (a start places the room first).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from redis.exceptions import RedisError

from media_server import signing
from rooms import media_nodes

PROTOCOL_VERSION = 1


class MediaRecordingError(Exception):
    """The media server refused (4xx, its error ``code``) or could not be reached (``media_unavailable``)."""

    def __init__(self, code: str, message: str, *, status: int = 503) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    @property
    def unavailable(self) -> bool:
        return self.code == "media_unavailable"


def _base_url(room: str, *, place: bool) -> str:
    if not media_nodes.enabled():
        return str(settings.MEDIA_CONTROL_URL)
    try:
        node = media_nodes.place_sync(room) if place else media_nodes.lookup_sync(room)
    except media_nodes.NoMediaNode as exc:
        raise MediaRecordingError("media_unavailable", str(exc)) from exc
    except (RedisError, OSError) as exc:
        raise MediaRecordingError("media_unavailable", "The media node registry is unavailable.") from exc
    if node is None:  # the room's node died (or it never had one): nothing of this recording survives there
        raise MediaRecordingError("room_not_found", "No media server hosts this room.", status=404)
    return node.control_url


def _request(
    method: str, path: str, body: dict[str, Any] | None = None, *, room: str, place: bool = False
) -> dict[str, Any]:
    url = f"{_base_url(room, place=place)}{path}"
    data = json.dumps({"protocol": PROTOCOL_VERSION, **body}).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - URL comes from settings
    request.add_header("Authorization", signing.sign(settings.MEDIA_SECRET, method, urlsplit(url).path, data or b""))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=settings.MEDIA_CONTROL_TIMEOUT_SECONDS) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            payload: Any = json.loads(exc.read() or b"null")
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if exc.code >= 500 or not isinstance(error, dict) or not isinstance(error.get("code"), str):
            raise MediaRecordingError(
                "media_unavailable", f"The media server answered {exc.code}.", status=exc.code
            ) from exc
        raise MediaRecordingError(error["code"], str(error.get("message", "")), status=exc.code) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise MediaRecordingError("media_unavailable", "The media server is unavailable.") from exc
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        payload = {}
    return payload if isinstance(payload, dict) else {}


def _path(room: str, recording: str | None = None) -> str:
    path = f"/v1/rooms/{quote(room, safe='')}/recordings"
    return f"{path}/{quote(recording, safe='')}" if recording else path


def start_recording(*, room: str, recording: str) -> dict[str, Any]:
    """Ask the media server to record every track of ``room`` into the spool (201; 200 if already recording)."""
    return _request("POST", _path(room), {"recording": recording}, room=room, place=True)


def stop_recording(*, room: str, recording: str) -> None:
    """Stop; on return (204) the media server has written ``manifest.json``. Unknown recordings answer 404."""
    _request("DELETE", _path(room, recording), room=room)
