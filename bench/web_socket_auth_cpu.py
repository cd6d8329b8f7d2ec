"""CPU per guest room-socket join, with Channels' session + user lookup and without it, in one process.

    .venv/bin/python bench/web_socket_auth_cpu.py [--joins 40] [--rounds 6]

Builds the WebSocket application twice as ``conference/asgi.py`` does, once
with ``AuthMiddlewareStack`` (every socket: cookie parsing, a session store,
the user looked up on Channels' database thread, as before issue 19) and once
with ``conference.socket_auth.SessionAuthIfCookie`` (a socket without the
session cookie gets ``AnonymousUser`` at once). Each round, alternating, opens
``--joins`` guest sockets on each (``channels.testing.WebsocketCommunicator``:
first every handshake, then on each the ``join`` frame until ``room_snapshot``;
then close; a new room every 5 joins, made beforehand and not counted) and
takes the process's CPU (all threads, ``time.process_time``) per socket, for
the handshakes alone and for handshake + join. Prints the median over rounds
and the ratio. No daphne: what differs is only the middleware.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _inprocess import CpuClock, alternating_rounds, print_medians, run_with_scratch_database  # noqa: E402


async def run(joins: int, rounds: int) -> None:
    import django

    django.setup()
    from asgiref.sync import sync_to_async
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser

    from conference.socket_auth import SessionAuthIfCookie
    from rooms import services
    from rooms.routing import media_client, media_monitor, sync_threads, websocket_urlpatterns

    apps = {
        "lookup always": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "only with cookie": AllowedHostsOriginValidator(SessionAuthIfCookie(URLRouter(websocket_urlpatterns))),
    }
    host = await sync_to_async(get_user_model().objects.create_user)("bench-host")

    def grants(count: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        room = None
        for n in range(count):
            if n % 5 == 0:
                room = services.room_create(host=host, name="bench", max_participants=100)
            assert room is not None
            grant = services.participant_join(
                room_id=room.public_id, user=AnonymousUser(), display_name=f"Guest{n}", password=""
            )
            out.append((room.public_id, grant.token))
        return out

    async def open_socket(app: Any, room_id: str) -> WebsocketCommunicator:
        comm = WebsocketCommunicator(app, f"/ws/rooms/{room_id}/", headers=[(b"origin", b"http://localhost")])
        connected, _ = await comm.connect(timeout=30)
        assert connected
        return comm

    async def join(app: Any, room_id: str, token: str, comm: WebsocketCommunicator | None = None) -> Any:
        comm = comm or await open_socket(app, room_id)
        await comm.send_to(text_data=json.dumps({"type": "join", "token": token, "protocol": 1}))
        while True:
            frame = json.loads(await comm.receive_from(timeout=30))
            if frame["type"] == "room_snapshot":
                return comm
            assert frame["type"] != "error", frame

    for app in apps.values():  # imports, URL resolver, first queries
        for room_id, token in await sync_to_async(grants)(5):
            await (await join(app, room_id, token)).disconnect()

    async def measure(name: str) -> dict[str, float]:
        app = apps[name]
        todo = await sync_to_async(grants)(joins)
        await asyncio.sleep(0.2)  # the previous round's leaves, done before the clock starts
        clock = CpuClock()
        comms = [await open_socket(app, room_id) for room_id, _token in todo]
        opened = clock.per(joins)
        for (room_id, token), comm in zip(todo, comms, strict=True):
            await join(app, room_id, token, comm)
        joined = clock.per(joins)
        for comm in comms:
            await comm.disconnect()
        return {"open (handshake)": opened, "open + join": joined}

    figures = await alternating_rounds(rounds, list(apps), measure)
    await media_monitor.close()
    await media_client.close()
    sync_threads.close()
    title = f"CPU per guest socket join (process, all threads), ms: median of {rounds} alternating rounds of {joins}"
    print_medians(title, figures, new="only with cookie", old="lookup always")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    no_media_server = "http://127.0.0.1:9"  # a guest join never calls it
    run_with_scratch_database("conf-sockauth-", lambda: run(args.joins, args.rounds), MEDIA_CONTROL_URL=no_media_server)


if __name__ == "__main__":
    main()
