"""The project's ASGI application plus trivial endpoints, for bench/web_floor.py only (its daphne serves this).

Started as ``daphne bench._floor_app:application`` from the repository root with
``DJANGO_SETTINGS_MODULE=bench._floor_settings``. The application is the project's own
``conference.asgi.application`` (the same HTTP path through ``sync_threads`` and the full ``MIDDLEWARE``, the same
WebSocket stack: ``AllowedHostsOriginValidator``, ``SessionAuthIfCookie``, ``URLRouter``), built after this module
has appended its socket routes to ``rooms.routing.websocket_urlpatterns`` (the router keeps that list); the URLconf
is the project's ``urlpatterns`` plus the views below, so the real join runs on the same process too. The
endpoints do (almost) nothing of ours, so what daphne spends on them is the framework's floor for that step:

* ``GET /floor/get``: a plain Django view, ``{}`` (no database, no auth);
* ``POST /floor/drf``: a DRF ``APIView`` with the project's default authenticators and ``AllowAny`` that reads
  ``request.data`` and returns ``{}`` (what a guest's REST join goes through before its own logic);
* ``POST /floor/drf-jwt``: the same with ``IsAuthenticated``, sent with a JWT (one user read by simplejwt);
* ``POST /floor/events``: signed like the media server's event batches (``media_server.signing``, checked here,
  no replay check), its JSON parsed, then one ``group_send`` per event to the ``group`` the body names (none
  without a ``group``; with ``one_message``, one ``group_send`` carrying them all);
* ``ws/floor/echo/``: an ``AsyncJsonWebsocketConsumer`` that accepts and answers each frame with one frame;
* ``ws/floor/join/<room>/<own>/``: on its first frame, 2 ``group_add`` (``floor.room.<room>``, ``floor.own.<own>``),
  2 ``group_send`` (one to each: the socket is in both, and a room has one more socket in its room group), then a
  reply frame; every message it receives from the layer goes out as a frame (what a room socket's join does at
  the channel layer, minus our logic; with ``"sends": 1`` in the frame only the room's ``group_send``);
  ``ws/floor/join-stock/...`` is the same with Channels' own ``dispatch``
  (a ``close_old_connections`` hop to the database thread per message, which rooms/consumers.py skips).
"""

from __future__ import annotations

import json
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench._floor_settings")

import django

django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402
from rest_framework.permissions import AllowAny, IsAuthenticated  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from conference.urls import handler400, handler403, handler404, handler500  # noqa: E402, F401
from conference.urls import urlpatterns as project_urlpatterns  # noqa: E402
from media_server import signing  # noqa: E402
from rooms import routing  # noqa: E402


@require_GET
def floor_get(request: HttpRequest) -> HttpResponse:
    return JsonResponse({})


class FloorDrf(APIView):
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        request.data  # noqa: B018 (parsed, as a view reading its input does)
        return Response({})


class FloorDrfJwt(FloorDrf):
    permission_classes = [IsAuthenticated]


@csrf_exempt
@require_POST
async def floor_events(request: HttpRequest) -> HttpResponse:
    header = request.headers.get("Authorization", "")
    if signing.verify_signature(settings.MEDIA_SECRET, "POST", request.get_full_path(), request.body, header):
        return HttpResponse(status=401)
    batch: dict[str, Any] = json.loads(request.body)
    layer = get_channel_layer()
    assert layer is not None
    if batch.get("one_message"):  # all events in one channel-layer message
        await layer.group_send(batch["group"], {"type": "floor.event", "frames": batch["events"]})
    elif "group" in batch:  # none: the POST alone
        for event in batch["events"]:
            await layer.group_send(batch["group"], {"type": "floor.event", "frame": event})
    return HttpResponse(status=204)


class LeanDispatch:
    """``dispatch`` without Channels' per-message ``close_old_connections`` hop, as rooms/consumers.py does."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        from channels.consumer import get_handler_name

        await getattr(self, get_handler_name(message))(message)


class EchoConsumer(LeanDispatch, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"type": "pong", "ref": content.get("ref")})


class StockJoinConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    joined = False

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content.get("type") != "join" or self.joined:
            await self.send_json({"type": "pong", "ref": content.get("ref")})
            return
        self.joined = True
        kwargs_ = self.scope["url_route"]["kwargs"]
        self.floor_groups = [f"floor.room.{kwargs_['room']}", f"floor.own.{kwargs_['own']}"]
        for group in self.floor_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        if content.get("seat_only"):  # a socket already in the room: its groups, nothing sent
            await self.send_json({"type": "joined"})
            return
        for group in self.floor_groups[: content.get("sends", 2)]:  # the room's group first
            await self.channel_layer.group_send(
                group, {"type": "floor.event", "frame": {"type": "event", "group": group}}
            )
        await self.send_json({"type": "joined"})

    async def floor_event(self, message: dict[str, Any]) -> None:
        for frame in message["frames"] if "frames" in message else [message["frame"]]:
            await self.send_json(frame)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "floor_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)


class JoinConsumer(LeanDispatch, StockJoinConsumer):
    pass


routing.websocket_urlpatterns += [
    re_path(r"^ws/floor/echo/$", EchoConsumer.as_asgi()),
    re_path(r"^ws/floor/join/(?P<room>[a-z0-9]+)/(?P<own>[a-z0-9]+)/$", JoinConsumer.as_asgi()),
    re_path(r"^ws/floor/join-stock/(?P<room>[a-z0-9]+)/(?P<own>[a-z0-9]+)/$", StockJoinConsumer.as_asgi()),
]

urlpatterns = [
    *project_urlpatterns,
    path("floor/get", floor_get),
    path("floor/drf", FloorDrf.as_view()),
    path("floor/drf-jwt", FloorDrfJwt.as_view()),
    path("floor/events", floor_events),
]

from conference.asgi import application  # noqa: E402, F401  (built now: with the routes above)
