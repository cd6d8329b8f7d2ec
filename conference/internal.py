"""Endpoints for our own processes: media-server events and health."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from conference.errors import error_body
from media_server import signing
from recordings.services import recording_media_event
from rooms import events, groups, media_nodes
from rooms.routing import media_client
from rooms.signaling import media_event_frames

logger = logging.getLogger(__name__)
PROTOCOL_VERSION = 1
RECORDING_EVENTS = frozenset({"recording_stopped", "recording_failed"})
# Event batches up to this size are accepted (the media server splits at 1 MiB); it stays below Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB), past which request.body would raise. Larger: 413 too_large (JSON).
MAX_EVENTS_BODY = 2 * 1024 * 1024
# A batch's id (media_server/events.py): the same on each attempt, each attempt signed afresh. The ids routed in
# the last ten minutes are kept in the shared cache with the signature that brought them, so another attempt
# (a retry after a lost answer, the re-post at shutdown) is answered but not routed again, and the same attempt
# sent again is a replay (a batch's attempts end within a minute: 5 attempts, backoff up to 5 s, 5 s each).
BATCH_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
BATCH_MEMORY_SECONDS = 600
ROUTED_ALREADY = "routed_already"


def _signature_error(request: HttpRequest) -> str | None:
    """``None`` if the batch is signed with ``MEDIA_SECRET`` (``media_server/signing.py``, as control requests
    are) and within the allowed skew; else the error code."""
    if not settings.MEDIA_SECRET:
        return "unauthorized"
    header = request.headers.get("Authorization", "")
    return signing.verify_signature(
        settings.MEDIA_SECRET, request.method or "POST", request.get_full_path(), request.body, header
    )


async def _seen(request: HttpRequest, batch_id: str | None) -> tuple[str | None, str | None]:
    """(``None``, the key to forget if routing fails) for an attempt seen for the first time by any web
    process (one shared-cache operation); else (``"replayed_request"`` or ``ROUTED_ALREADY``, ``None``).

    Without a batch id, the signatures of the last minute are kept instead: any repeat is a replay."""
    signature = hashlib.sha256(signing.signature_of(request.headers.get("Authorization", "")).encode()).hexdigest()
    if batch_id is None:
        key = "media-events-sig:" + signature
        if not await cache.aadd(key, 1, timeout=int(2 * signing.MAX_SKEW_SECONDS)):
            return "replayed_request", None
        return None, None
    key = "media-events-batch:" + batch_id
    if await cache.aadd(key, signature, timeout=BATCH_MEMORY_SECONDS):
        return None, key
    return ("replayed_request" if await cache.aget(key) == signature else ROUTED_ALREADY), None


SIGNATURE_ERRORS = {
    "unauthorized": "Missing or bad signature (docs/protocol.md §2).",
    "stale_request": "The signature's timestamp is more than 30 s from this server's clock.",
    "replayed_request": "This signature was already used.",
}


@csrf_exempt
@require_POST
async def media_events(request: HttpRequest) -> HttpResponse:
    """Media server → Django event batches (docs/protocol.md §2), signed like control requests: a batch
    captured on the way cannot be replayed or altered. Routes each event to sockets, once per batch id."""
    if not request.headers.get("Authorization", "").startswith(signing.SCHEME + " "):
        return JsonResponse(error_body("unauthorized", SIGNATURE_ERRORS["unauthorized"]), status=401)
    try:
        too_large = int(request.headers.get("Content-Length") or 0) > MAX_EVENTS_BODY or (
            len(request.body) > MAX_EVENTS_BODY
        )
    except (ValueError, RequestDataTooBig):
        too_large = True
    if too_large:
        return JsonResponse(error_body("too_large", f"An event batch has at most {MAX_EVENTS_BODY} bytes."), status=413)
    error = _signature_error(request)
    if error is not None:
        return JsonResponse(error_body(error, SIGNATURE_ERRORS[error]), status=401)
    try:
        batch: Any = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return JsonResponse(error_body("malformed_json", "Body is not JSON (or nested too deeply)."), status=400)
    if not isinstance(batch, dict) or not isinstance(batch.get("events"), list):
        return JsonResponse(error_body("bad_request", "Expected {protocol, events: [...]}."), status=400)
    if batch.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        return JsonResponse(error_body("protocol_mismatch", "Unsupported protocol version."), status=409)
    batch_id = batch.get("batch")
    if batch_id is not None and not (isinstance(batch_id, str) and BATCH_ID.fullmatch(batch_id)):
        return JsonResponse(error_body("bad_request", "A batch id is 1-64 letters, digits, - or _."), status=400)
    error, forget = await _seen(request, batch_id)
    if error == ROUTED_ALREADY:
        return HttpResponse(status=204)  # another attempt of a batch routed already
    if error is not None:
        return JsonResponse(error_body(error, SIGNATURE_ERRORS[error]), status=401)
    try:
        await _route(batch)
    except BaseException:
        if forget is not None:
            await cache.adelete(forget)  # not routed (whole): the next attempt routes it
        raise
    return HttpResponse(status=204)


async def _route(batch: dict[str, Any]) -> None:
    """Each event of a batch to recordings or to the sockets' groups."""
    layer = get_channel_layer()
    stale = await _rooms_elsewhere(batch)
    for event in batch["events"]:
        if not isinstance(event, dict):
            continue
        if event.get("type") in RECORDING_EVENTS:  # docs/protocol.md §3: handled by recordings, not sockets
            try:
                await sync_to_async(recording_media_event)(event=event)
            except Exception:
                logger.exception("could not handle media event %s", event.get("type"))
            continue
        if event.get("room") in stale:
            continue  # from a node that no longer hosts the room (it was failed over): its peers are gone
        for group, frame in media_event_frames(event):
            if layer is not None:
                await layer.group_send(group, events.layer_message(group, frame))


async def _rooms_elsewhere(batch: dict[str, Any]) -> set[str]:
    """With the node registry: the rooms of this batch that are not placed on the node that sent it."""
    node = batch.get("node")
    if not media_nodes.enabled() or not isinstance(node, str):
        return set()
    rooms = {e["room"] for e in batch["events"] if isinstance(e, dict) and isinstance(e.get("room"), str)}
    try:
        if media_nodes.spanning():
            hosts = await media_client.nodes.hosts(sorted(rooms))
            return {room for room, host in hosts.items() if host != node}
        # Rooms without any placement (Redis restarted empty) are placed back on the node that hosts them.
        return await media_client.nodes.elsewhere(node, sorted(rooms))
    except Exception as exc:  # the registry is down: deliver rather than drop
        logger.warning("media events not checked against placements: %r", exc)
        return set()


def _database_ping() -> None:
    """SELECT 1 on a fresh connection, closed again: it runs on an executor thread (not Channels' DB thread,
    so a queue of socket hops cannot delay it), and a connection left open there would linger per thread."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def _channel_layer_ping() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health")
    await layer.send(channel, {"type": "health.ping"})
    await layer.receive(channel)


async def _check(probe: Callable[[], Awaitable[None]], seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            await probe()
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        logger.warning("health check failed: %r", exc)
        return "error"
    return "ok"


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness + readiness of this web process: 200 when the database and the channel layer
    (Redis) answer within HEALTH_CHECK_TIMEOUT_SECONDS each, else 503 with the failing check."""
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    database, layer = await asyncio.gather(
        _check(sync_to_async(_database_ping, thread_sensitive=False), timeout),
        _check(_channel_layer_ping, timeout),
    )
    ok = database == layer == "ok"
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {"database": database, "channel_layer": layer},
        "groups_prefix": groups.room_group(""),
    }
    return JsonResponse(body, status=200 if ok else 503)
