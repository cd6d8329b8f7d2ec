"""HTTP control API (aiohttp): authenticate, parse, delegate to MediaService, serialize."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from . import metrics, protocol, signing
from .cascade import parse_remote_tracks
from .protocol import MediaError
from .service import MediaService

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVICE_KEY: web.AppKey[MediaService] = web.AppKey("service", MediaService)


def _error(exc: MediaError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status)


READ_ONLY_ROUTES = frozenset({("GET", "/v1/health"), ("GET", "/metrics")})


def create_app(
    service: MediaService, secret: str, metrics_token: str = "", *, accept_bearer: bool = False
) -> web.Application:
    """The control application; every request must be signed (``media_server.signing``, docs/protocol.md §2).

    ``Authorization: Bearer <secret>`` opens only ``GET /v1/health`` and ``GET /metrics`` (read-only: a
    replayed one changes nothing), or every route with ``accept_bearer`` (``--dev``: curl during
    development). ``GET /metrics`` also accepts ``Bearer <metrics_token>`` (when set), which opens nothing else.
    """
    expected = f"Bearer {secret}".encode()
    metrics_expected = f"Bearer {metrics_token}".encode() if metrics_token else None
    replays = signing.ReplayGuard()

    async def authenticated(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        given = header.encode()
        if metrics_expected is not None and request.path == "/metrics" and hmac.compare_digest(given, metrics_expected):
            return None
        if header.startswith("Bearer "):
            bearer_allowed = accept_bearer or (request.method, request.path) in READ_ONLY_ROUTES
            return None if bearer_allowed and hmac.compare_digest(given, expected) else "unauthorized"
        body = await request.read() if request.body_exists else b""
        return signing.verify(secret, request.method, request.raw_path, body, header, guard=replays)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = await authenticated(request)
        if refused == "stale_request":
            return _error(protocol.StaleRequest("the request's timestamp is more than 30 s off"))
        if refused == "replayed_request":
            return _error(protocol.ReplayedRequest("this signed request was already received"))
        if refused is not None:
            return _error(protocol.Unauthorized("missing or wrong request signature"))
        try:
            return await handler(request)
        except MediaError as exc:
            return _error(exc)
        except web.HTTPException as exc:
            if exc.status >= 400:
                code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
                return web.json_response(
                    {"error": {"code": code, "message": exc.reason, "details": {}}}, status=exc.status
                )
            raise

    app = web.Application(middlewares=[middleware], client_max_size=1024 * 1024)
    app[SERVICE_KEY] = service

    async def body(request: web.Request) -> Any:
        # body_exists, not can_read_body: the signature check has already read (and cached) the body.
        if not request.body_exists:
            return {}
        try:
            return json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise protocol.BadRequest(f"body is not JSON: {exc}") from exc
        except RecursionError:  # nested deeper than the parser's stack allows
            raise protocol.BadRequest("body is not JSON: nested too deeply") from None

    def ids(request: web.Request) -> tuple[str, str]:
        return request.match_info["room"], request.match_info["participant"]

    def deadline(request: web.Request) -> float | None:
        """When the caller gives up (``X-Conference-Timeout``: seconds, from now), on time.monotonic()."""
        raw = request.headers.get(protocol.TIMEOUT_HEADER)
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            raise protocol.BadRequest(f"{protocol.TIMEOUT_HEADER} must be a number of seconds") from None
        if not 0 < seconds <= protocol.MAX_TIMEOUT:
            raise protocol.BadRequest(f"{protocol.TIMEOUT_HEADER} must be in (0, {protocol.MAX_TIMEOUT:g}]")
        return time.monotonic() + seconds

    async def health(request: web.Request) -> web.Response:
        return web.json_response(protocol.health_response(**service.health()))

    async def drain(request: web.Request) -> web.Response:
        service.draining = protocol.parse_drain(await body(request))
        return web.json_response(protocol.health_response(**service.health()))

    async def publish(request: web.Request) -> web.Response:
        req = protocol.parse_publish(await body(request))
        room, participant = ids(request)
        answer = await service.publish(
            room=room, participant=participant, pc=req.pc, sdp=req.sdp, deadline=deadline(request)
        )
        return web.json_response(protocol.publish_response(req.pc, answer))

    async def unpublish(request: web.Request) -> web.Response:
        room, participant = ids(request)
        pc = request.match_info["pc"]
        if pc not in protocol.PUBLISH_PCS:
            raise protocol.PeerNotFound(f"no publish connection {pc!r}")
        await service.unpublish(room=room, participant=participant, pc=pc)
        return web.Response(status=204)

    async def subscribe(request: web.Request) -> web.Response:
        settings = protocol.parse_subscribe(await body(request))
        room, participant = ids(request)
        sdp, revision, tracks, connection = await service.subscribe(
            room=room, participant=participant, settings=settings, deadline=deadline(request)
        )
        return web.json_response(protocol.subscribe_response(sdp, revision, tracks, connection))

    async def answer(request: web.Request) -> web.Response:
        req = protocol.parse_answer(await body(request))
        room, participant = ids(request)
        await service.subscribe_answer(
            room=room, participant=participant, sdp=req.sdp, revision=req.revision, deadline=deadline(request)
        )
        return web.Response(status=204)

    async def ice(request: web.Request) -> web.Response:
        req = protocol.parse_ice(await body(request))
        room, participant = ids(request)
        cand = dict(req.candidate) if req.candidate is not None else None
        await service.add_ice(room=room, participant=participant, pc=req.pc, candidate=cand)
        return web.Response(status=204)

    async def preferences(request: web.Request) -> web.Response:
        prefs = protocol.parse_preferences(await body(request))
        room, participant = ids(request)
        await service.set_preferences(room=room, participant=participant, preferences=prefs)
        return web.Response(status=204)

    async def room_settings(request: web.Request) -> web.Response:
        settings = protocol.parse_room_settings(await body(request))
        await service.set_room_settings(room=request.match_info["room"], settings=settings)
        return web.Response(status=204)

    async def leave(request: web.Request) -> web.Response:
        room, participant = ids(request)
        await service.leave(room=room, participant=participant)
        return web.Response(status=204)

    async def close_room(request: web.Request) -> web.Response:
        await service.close_room(room=request.match_info["room"])
        return web.Response(status=204)

    async def start_recording(request: web.Request) -> web.Response:
        recording = protocol.parse_start_recording(await body(request))
        room = request.match_info["room"]
        created = await service.start_recording(room=room, recording=recording)
        return web.json_response(protocol.recording_response(room, recording), status=201 if created else 200)

    async def stop_recording(request: web.Request) -> web.Response:
        recording = protocol.check_recording_id(request.match_info["recording"])
        await service.stop_recording(room=request.match_info["room"], recording=recording)
        return web.Response(status=204)

    async def add_relay(request: web.Request) -> web.Response:
        req = protocol.parse_relay(await body(request))
        room = request.match_info["room"]
        created = await service.add_relay(room=room, node=req.node, url=req.url)
        return web.json_response(
            {"protocol": protocol.PROTOCOL_VERSION, "room": room, "node": req.node, **service.relays(room=room)},
            status=201 if created else 200,
        )

    async def list_relays(request: web.Request) -> web.Response:
        room = request.match_info["room"]
        return web.json_response({"protocol": protocol.PROTOCOL_VERSION, "room": room, **service.relays(room=room)})

    async def remove_relay(request: web.Request) -> web.Response:
        await service.remove_relay(room=request.match_info["room"], node=request.match_info["node"])
        return web.Response(status=204)

    async def put_remote(request: web.Request) -> web.Response:
        feedback, tracks = parse_remote_tracks(await body(request))
        relay = await service.update_origin(
            room=request.match_info["room"], origin=request.match_info["node"], feedback=feedback, tracks=tracks
        )
        return web.json_response({"protocol": protocol.PROTOCOL_VERSION, "relay": relay})

    async def remove_remote(request: web.Request) -> web.Response:
        await service.remove_origin(room=request.match_info["room"], origin=request.match_info["node"])
        return web.Response(status=204)

    async def metrics_handler(request: web.Request) -> web.Response:
        body = generate_latest(await metrics.snapshot(service))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    base = "/v1/rooms/{room}/participants/{participant}"
    app.router.add_get("/v1/health", health)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_post("/v1/drain", drain)
    app.router.add_post(base + "/publish", publish)
    app.router.add_delete(base + "/publish/{pc}", unpublish)
    app.router.add_post(base + "/subscribe", subscribe)
    app.router.add_post(base + "/subscribe/answer", answer)
    app.router.add_post(base + "/ice", ice)
    app.router.add_put(base + "/preferences", preferences)
    app.router.add_put("/v1/rooms/{room}/settings", room_settings)
    app.router.add_delete(base, leave)
    app.router.add_delete("/v1/rooms/{room}", close_room)
    app.router.add_post("/v1/rooms/{room}/recordings", start_recording)
    app.router.add_delete("/v1/rooms/{room}/recordings/{recording}", stop_recording)
    app.router.add_post("/v1/rooms/{room}/relays", add_relay)
    app.router.add_get("/v1/rooms/{room}/relays", list_relays)
    app.router.add_delete("/v1/rooms/{room}/relays/{node}", remove_relay)
    app.router.add_put("/v1/rooms/{room}/remote/{node}", put_remote)
    app.router.add_delete("/v1/rooms/{room}/remote/{node}", remove_remote)
    return app
