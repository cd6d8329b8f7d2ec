"""CPU of the web tier's join path in process: the REST join and the room socket's database hop.

    .venv/bin/python bench/web_join_cpu.py [--joins 60] [--per-room 5] [--profile OUT.prof]

Migrates a fresh SQLite file (or, with DATABASE_URL, a fresh PostgreSQL
database named after it, as bench/chat_fanout.py does), creates a host and
rooms, then runs guest joins: ``POST /api/v1/rooms/{id}/join`` through
Django's test client (middleware, DRF, the view) and the socket join's
database work (``presence.socket_join``, what rooms/consumers.py runs on a
database thread; before issue 19's fourth session two hops). Prints the median
CPU (``time.thread_time``) of each and the queries each ran. Not counted:
ASGI/Channels, the channel layer, events sent after commit, the media
server (bench/load.py measures all of that together). ``--per-room``
joins go to each room (the snapshot lists everyone seated). ``--profile``
writes a cProfile (CPU-time clock) of the measured joins (``python -m pstats``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chat_fanout import drop_database, prepare_database  # noqa: E402


def run(joins: int, per_room: int, profile_out: str | None = None) -> None:
    import cProfile

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from rooms import events, presence
    from rooms.grants import grant_read

    host = APIClient()
    host.force_authenticate(get_user_model().objects.create_user("bench-host"))

    def room() -> str:
        body = {"name": "bench", "max_participants": 100}
        return str(host.post("/api/v1/rooms", body, format="json").json()["roomId"])

    def one(room_id: str) -> tuple[float, float, int, int]:
        client = APIClient()
        with CaptureQueriesContext(connection) as rest_q:
            t0 = time.thread_time()
            grant = client.post(f"/api/v1/rooms/{room_id}/join", {"display_name": "Ada"}, format="json").json()
            t1 = time.thread_time()
        with CaptureQueriesContext(connection) as socket_q:
            t2 = time.thread_time()
            events.collecting(presence.socket_join)(grant=grant_read(grant["token"]), room_id=room_id, user=None)
            t3 = time.thread_time()
        return t1 - t0, t3 - t2, len(rest_q), len(socket_q)

    warm = room()
    for _ in range(5):
        one(warm)
    results = []
    room_id = ""
    profile = cProfile.Profile(time.thread_time) if profile_out else None
    for i in range(joins):
        if i % per_room == 0:
            room_id = room()
        if profile is not None:
            profile.enable()
        results.append(one(room_id))
        if profile is not None:
            profile.disable()
    if profile is not None and profile_out:
        profile.dump_stats(profile_out)
    rest = sorted(r[0] * 1000 for r in results)
    sock = sorted(r[1] * 1000 for r in results)
    print(
        f"web join CPU, median of {joins} guest joins ({per_room} per room), {connection.vendor}:"
        f" REST join {rest[joins // 2]:.2f} ms ({results[-1][2]} queries),"
        f" socket join hop {sock[joins // 2]:.2f} ms ({results[-1][3]} queries)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=60)
    parser.add_argument("--per-room", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile (CPU time) of the measured joins to this file")
    args = parser.parse_args()
    env = os.environ
    env.setdefault("DJANGO_SETTINGS_MODULE", "conference.settings")
    env["CONFERENCE_ENV"] = "test"
    env["THROTTLES_ENABLED"] = "0"  # many guest joins from one address
    env["LOG_LEVEL"] = "WARNING"
    with tempfile.TemporaryDirectory(prefix="conf-webjoin-") as tmp:
        scratch = dict(env)
        dbname = prepare_database(scratch, tmp)
        env.update({k: v for k, v in scratch.items() if k in ("DATABASE_URL", "SQLITE_PATH")})
        try:
            run(args.joins, args.per_room, args.profile)
        finally:
            drop_database(dbname)


if __name__ == "__main__":
    main()
