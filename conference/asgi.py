"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Django is set up before the routing import, because consumers import models.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conference.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from conference import gc_tuning  # noqa: E402
from conference.socket_auth import SessionAuthIfCookie  # noqa: E402
from rooms.media_monitor import with_media_monitor  # noqa: E402
from rooms.routing import media_monitor, sync_threads, websocket_urlpatterns  # noqa: E402

# The media node failover monitor (rooms/media_monitor.py) starts with the first request or socket.
# HTTP requests run their synchronous code on the process's fixed threads (conference/sync_threads.py),
# not on a new thread (and database connection) per request. A room socket without a session cookie (a
# guest) skips Channels' session and user lookup (conference/socket_auth.py).
application = with_media_monitor(
    ProtocolTypeRouter(
        {
            "http": sync_threads.http(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(SessionAuthIfCookie(URLRouter(websocket_urlpatterns))),
        }
    ),
    media_monitor,
)

# Everything loaded so far lives as long as the process: freeze it out of the cyclic garbage
# collector, and make its full collections (event-loop stalls of 20-100 ms) rare.
gc_tuning.configure()
