"""Django → media server recording control (docs/protocol.md §3), synchronous.

Called from services (request threads, Celery workers), so it uses urllib
with ``MEDIA_CONTROL_TIMEOUT_SECONDS``; the base URL and secret are read from
settings on every call.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from django.conf import settings

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


def _request(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"{settings.MEDIA_CONTROL_URL}{path}"
    data = json.dumps({"protocol": PROTOCOL_VERSION, **body}).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - URL comes from settings
    request.add_header("Authorization", f"Bearer {settings.MEDIA_SECRET}")
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
    return _request("POST", _path(room), {"recording": recording})


def stop_recording(*, room: str, recording: str) -> None:
    """Stop; on return (204) the media server has written ``manifest.json``. Unknown recordings answer 404."""
    _request("DELETE", _path(room, recording))
