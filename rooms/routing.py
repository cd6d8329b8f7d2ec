"""WebSocket routes. The process's one media control client is created here, with the application,
and handed to every room consumer (``as_asgi(media=...)``), as is the set of open sockets (closed together
when Redis fails, ``rooms.open_sockets``); so is its media node failover monitor
(``conference.asgi`` starts it) and its threads for synchronous Django code (``conference.sync_threads``:
``conference.asgi`` runs HTTP requests on them, the room consumers their database hops)."""

from __future__ import annotations

from django.conf import settings
from django.urls import re_path

from conference.sync_threads import SyncThreads

from .consumers import RoomConsumer
from .media_client import MediaClient
from .media_monitor import MediaNodeMonitor
from .open_sockets import OpenSockets

media_client = MediaClient()
media_monitor = MediaNodeMonitor(media_client.nodes, media_client)
sync_threads = SyncThreads(settings.WEB_SYNC_THREADS)
open_sockets = OpenSockets()

websocket_urlpatterns = [
    re_path(
        r"^ws/rooms/(?P<room_id>[a-z0-9]{1,32})/$",
        RoomConsumer.as_asgi(media=media_client, threads=sync_threads, sockets=open_sockets),
    ),
]
