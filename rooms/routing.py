"""WebSocket routes. The process's one media control client is created here, with the application,
and handed to every room consumer (``as_asgi(media=...)``); so is its media node failover monitor
(``conference.asgi`` starts it)."""

from __future__ import annotations

from django.urls import re_path

from .consumers import RoomConsumer
from .media_client import MediaClient
from .media_monitor import MediaNodeMonitor

media_client = MediaClient()
media_monitor = MediaNodeMonitor(media_client.nodes, media_client)

websocket_urlpatterns = [
    re_path(r"^ws/rooms/(?P<room_id>[a-z0-9]{1,32})/$", RoomConsumer.as_asgi(media=media_client)),
]
