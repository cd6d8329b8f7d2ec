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
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _inprocess import GuestJoins, scratch_database  # noqa: E402


def run(joins: int, per_room: int, profile_out: str | None = None) -> None:
    import cProfile

    bench = GuestJoins()
    from django.db import connection

    bench.warm_up(5)
    results = []
    rooms = bench.rooms(per_room)
    profile = cProfile.Profile(time.thread_time) if profile_out else None
    for _ in range(joins):
        room_id = next(rooms)
        if profile is not None:
            profile.enable()
        results.append(bench.join(room_id, count_queries=True))
        if profile is not None:
            profile.disable()
    if profile is not None and profile_out:
        profile.dump_stats(profile_out)
    rest = sorted(r.rest_ms for r in results)
    sock = sorted(r.socket_ms for r in results)
    print(
        f"web join CPU, median of {joins} guest joins ({per_room} per room), {connection.vendor}:"
        f" REST join {rest[joins // 2]:.2f} ms ({results[-1].rest_queries} queries),"
        f" socket join hop {sock[joins // 2]:.2f} ms ({results[-1].socket_queries} queries)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=60)
    parser.add_argument("--per-room", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile (CPU time) of the measured joins to this file")
    args = parser.parse_args()
    with scratch_database("conf-webjoin-"):
        run(args.joins, args.per_room, args.profile)


if __name__ == "__main__":
    main()
