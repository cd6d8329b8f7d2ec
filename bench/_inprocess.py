"""What the in-process web benchmarks share: a scratch database around the run, guest joins, alternating CPU rounds.

``bench/web_middleware_cpu.py`` and ``bench/web_socket_auth_cpu.py`` build two
variants of the web application in one process and compare them. Both measure the
process's CPU (all threads, ``time.process_time``) per operation in rounds that
alternate the variants, so that a change of machine load during the run falls on
both alike, and print the median over rounds with their ratio.

``bench/web_join_cpu.py`` and ``bench/web_join_ab.py`` time guest joins in process
(:class:`GuestJoins`) on a scratch database (:func:`scratch_database`).
web_join_ab.py runs its workers in another source tree too (e.g. main): this
module is imported from the benchmark's own folder, and touches Django only once
the worker has put its tree first on ``sys.path`` (``root`` says whose migrations).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from chat_fanout import drop_database, prepare_database  # noqa: E402

# figures[label][variant] = one figure (ms per operation) per round
Figures = dict[str, dict[str, list[float]]]


@contextmanager
def scratch_database(prefix: str, *, root: Path = ROOT, **env: str) -> Iterator[None]:
    """Inside: this process's environment names a freshly migrated database (``root``'s migrations); dropped after.

    SQLite in a temporary folder, or with ``DATABASE_URL`` a fresh PostgreSQL database named after it
    (bench/chat_fanout.py). Sets the benchmark environment first: test settings, throttles off (many joins
    from one address), warnings only, and ``env`` on top. Call it before ``django.setup()``.
    """
    environ = os.environ
    environ.setdefault("DJANGO_SETTINGS_MODULE", "conference.settings")
    environ.update({"CONFERENCE_ENV": "test", "THROTTLES_ENABLED": "0", "LOG_LEVEL": "WARNING", **env})
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        scratch = dict(environ)
        dbname = prepare_database(scratch, tmp, root)
        environ.update({k: v for k, v in scratch.items() if k in ("DATABASE_URL", "SQLITE_PATH")})
        environ.setdefault("RECORDINGS_SPOOL_DIR", str(Path(tmp) / "spool"))
        try:
            yield
        finally:
            drop_database(dbname)


def run_with_scratch_database(prefix: str, run: Callable[[], Coroutine[Any, Any, None]], **env: str) -> None:
    """Run ``run()`` in an event loop against a freshly migrated database (:func:`scratch_database`), then drop it."""
    with scratch_database(prefix, **env):
        asyncio.run(run())


@dataclass(frozen=True)
class JoinCost:
    """One guest join in process: CPU (``time.thread_time``, ms) and, when counted, queries of each part."""

    rest_ms: float
    socket_ms: float
    rest_queries: int | None = None
    socket_queries: int | None = None


class GuestJoins:
    """Guests joining rooms in process, as the web tier runs it minus ASGI, Channels and the channel layer.

    A host (an account) creates the rooms through the REST API; a guest's join is ``POST
    /api/v1/rooms/{id}/join`` through Django's test client (middleware, DRF, the view, the service), then the
    room socket's ``join`` database hop (``presence.socket_join``, as rooms/consumers.py runs it; its events
    collected, not sent). Sets Django up: make it after :func:`scratch_database`.
    """

    def __init__(self) -> None:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from rest_framework.test import APIClient

        self.host = APIClient()
        self.host.force_authenticate(get_user_model().objects.create_user("bench-host"))

    def room(self) -> str:
        """A new room's ID."""
        body = {"name": "bench", "max_participants": 100}
        return str(self.host.post("/api/v1/rooms", body, format="json").json()["roomId"])

    def rooms(self, per_room: int) -> Iterator[str]:
        """Room IDs for joins, one after the other: each new room ``per_room`` times (its snapshot lists those seated)."""
        while True:
            yield from itertools.repeat(self.room(), per_room)

    def join(self, room_id: str, *, count_queries: bool = False) -> JoinCost:
        """A new guest (no cookies) joins ``room_id``: the REST join, then the socket's join hop."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from rest_framework.test import APIClient

        from rooms import events, presence
        from rooms.grants import grant_read

        client = APIClient()
        with CaptureQueriesContext(connection) if count_queries else _Uncounted() as rest_q:
            t0 = time.thread_time()
            grant = client.post(f"/api/v1/rooms/{room_id}/join", {"display_name": "Ada"}, format="json").json()
            t1 = time.thread_time()
        with CaptureQueriesContext(connection) if count_queries else _Uncounted() as socket_q:
            t2 = time.thread_time()
            events.collecting(presence.socket_join)(grant=grant_read(grant["token"]), room_id=room_id, user=None)
            t3 = time.thread_time()
        return JoinCost(
            (t1 - t0) * 1000,
            (t3 - t2) * 1000,
            len(rest_q) if count_queries else None,
            len(socket_q) if count_queries else None,
        )

    def warm_up(self, joins: int) -> None:
        """``joins`` joins into one room, not measured (imports, URL resolver, caches, the connection)."""
        room_id = self.room()
        for _ in range(joins):
            self.join(room_id)


class _Uncounted:
    def __enter__(self) -> list[Any]:
        return []

    def __exit__(self, *exc: object) -> None:
        return None


class CpuClock:
    """The process's CPU (all threads) since the clock was made, in ms per operation: ``per(n)``."""

    def __init__(self) -> None:
        self.start = time.process_time()

    def per(self, n: int) -> float:
        return (time.process_time() - self.start) / n * 1000


async def alternating_rounds(
    rounds: int, variants: list[str], measure: Callable[[str], Awaitable[dict[str, float]]]
) -> Figures:
    """Call ``measure(variant)`` for every variant in turn, ``rounds`` times; collect what each returns.

    ``measure`` returns ``{label: ms per operation}`` for one round of one variant (it times itself with
    ``CpuClock``, leaving its untimed set-up out).
    """
    figures: Figures = {}
    for _ in range(rounds):
        for variant in variants:
            for label, value in (await measure(variant)).items():
                figures.setdefault(label, {}).setdefault(variant, []).append(value)
    return figures


def print_medians(title: str, figures: Figures, *, new: str, old: str) -> None:
    """Print ``title`` with the load, then per label each variant's median (and its rounds) and new/old."""
    print(f"{title}; load {os.getloadavg()[0]:.1f}")
    for label, table in figures.items():
        medians = {variant: statistics.median(values) for variant, values in table.items()}
        print(f"  {label}:")
        for variant, values in table.items():
            rounds = ", ".join(f"{v:.2f}" for v in values)
            print(f"    {variant:17s} {medians[variant]:6.2f}   (rounds: {rounds})")
        print(f"    ratio {medians[new] / medians[old]:.2f}")
