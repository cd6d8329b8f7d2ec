"""Expiring download links for finished recordings.

Local storage: a signed Django URL (``/recordings/files/<token>``) valid for
``RECORDINGS_URL_EXPIRE_SECONDS``, served by :func:`recording_file`. S3 (or
any other remote storage): the storage's own URL, which django-storages
presigns (``querystring_auth``, ``S3_URL_EXPIRE_SECONDS``).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.http import require_GET

from conference.errors import error_body

from .models import Recording

SALT = "recordings.download"
FIELDS = ("file", "thumbnail")


def _is_local() -> bool:
    return isinstance(default_storage, FileSystemStorage)  # LazyObject proxies __class__


def url_lifetime() -> int:
    if _is_local():
        return settings.RECORDINGS_URL_EXPIRE_SECONDS
    return int(getattr(default_storage, "querystring_expire", settings.RECORDINGS_URL_EXPIRE_SECONDS))


def download_url(recording: Recording, field: str, *, base_url: str) -> str | None:
    """An expiring URL for ``field`` (file or thumbnail) of a ready recording; None otherwise."""
    name = getattr(recording, field).name
    if recording.status != Recording.Status.READY or not name:
        return None
    filename = f"{recording.public_id}{PurePosixPath(name).suffix}"
    if _is_local():
        token = signing.dumps({"r": recording.pk, "f": field, "n": name}, salt=SALT, compress=True)
        return base_url + reverse("recording-file", kwargs={"token": token})
    parameters: dict[str, Any] = {}
    if field == "file":
        parameters["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    try:
        return str(default_storage.url(name, parameters=parameters))  # type: ignore[call-arg]
    except TypeError:  # a storage without presigning parameters
        return str(default_storage.url(name))


@require_GET
def recording_file(request: HttpRequest, token: str) -> HttpResponseBase:
    """Serve a recording file named by a signed, unexpired token (local storage only)."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.RECORDINGS_URL_EXPIRE_SECONDS)
    except signing.SignatureExpired:
        return JsonResponse(error_body("link_expired", "This download link has expired."), status=410)
    except signing.BadSignature:
        return JsonResponse(error_body("link_invalid", "This download link is not valid."), status=403)
    if not isinstance(data, dict) or not isinstance(data.get("r"), int):
        return JsonResponse(error_body("link_invalid", "This download link is not valid."), status=403)
    field = data.get("f")
    recording = Recording.objects.filter(pk=data["r"]).first()
    if (
        recording is None
        or field not in FIELDS
        or recording.status != Recording.Status.READY
        or getattr(recording, field).name != data.get("n")
    ):
        return JsonResponse(error_body("not_found", "This recording is gone."), status=404)
    name = getattr(recording, field).name
    filename = f"{recording.public_id}{PurePosixPath(name).suffix}"
    return FileResponse(default_storage.open(name, "rb"), as_attachment=field == "file", filename=filename)
