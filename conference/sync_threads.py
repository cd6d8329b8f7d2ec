"""A fixed set of long-lived threads for the web process's synchronous Django code (views, database hops).

Why: under daphne, Django runs every HTTP request's synchronous code (sync
middleware, DRF views) inside a ``ThreadSensitiveContext`` of its own, i.e. on
a **new thread per request**. Database connections are per thread, so every
request opened a new PostgreSQL connection (a server process fork, a few ms of
CPU on the same cores) and its persistent connection (``CONN_MAX_AGE``) was
never reused; under 50 concurrent joins the open connections also ran into
PostgreSQL's ``max_connections`` (500 errors). The room sockets' database hops
(``channels.db.database_sync_to_async``, thread-sensitive) have the opposite
problem: all of them, for every socket of the process, run one after the other
on asgiref's one thread-sensitive thread, so 50 sockets joining at once queue
behind each other's queries (docs/benchmarks.md §4).

:class:`SyncThreads` owns ``size`` single-thread executors that live as long
as the process. :meth:`SyncThreads.http` wraps Django's ASGI application so
each request runs its synchronous code on the least busy of them (Django's own
per-request context then nests inside and changes nothing), and
:meth:`SyncThreads.run` does the same for one database hop of a room socket.
Each thread keeps its database connection between requests (``CONN_MAX_AGE``),
so a web process holds at most ``size`` + 1 connections (the one
thread-sensitive thread Channels still uses for its own hops, e.g. the session
and user lookup when a socket connects).

A request or hop still runs on one thread from start to end, which is what
Django's thread-sensitive mode guarantees (a transaction never spans threads).
The threads share the GIL: they overlap database round trips, not Python CPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext
from channels.db import database_sync_to_async

R = TypeVar("R")
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class SyncThreads:
    """``size`` long-lived threads for synchronous Django work, picked by fewest calls in flight."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("SyncThreads needs at least one thread")
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"django-sync-{i}") for i in range(size)
        ]
        self._busy = [0] * size

    @property
    def size(self) -> int:
        return len(self._executors)

    @contextmanager
    def _pick(self) -> Iterator[ThreadPoolExecutor]:
        """The executor with the fewest calls in flight (the lowest index on a tie), held until exit."""
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            yield self._executors[index]
        finally:
            self._busy[index] -= 1

    def in_flight(self) -> list[int]:
        """Calls in flight per thread (for tests and diagnostics)."""
        return list(self._busy)

    def http(self, app: ASGIApp) -> ASGIApp:
        """``app`` (Django's ASGI handler) with each connection's synchronous code on one of these threads."""

        async def application(
            scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
        ) -> None:
            with self._pick() as executor:
                async with ThreadSensitiveContext(executor=executor):
                    await app(scope, receive, send)

        return application

    async def run(self, fn: Callable[..., R], /, **kwargs: Any) -> R:
        """``fn(**kwargs)`` as one ``database_sync_to_async`` hop (stale connections closed around it) on one of these threads."""
        with self._pick() as executor:
            async with ThreadSensitiveContext(executor=executor):
                return await database_sync_to_async(fn)(**kwargs)  # type: ignore[no-any-return]

    def close_connections(self) -> None:
        """Close every thread's database connections now (waits for each thread; tests before dropping their database)."""
        from django.db import connections

        for executor in self._executors:
            executor.submit(connections.close_all).result()

    def close(self) -> None:
        """Stop the threads once their queued calls have run (process shutdown, tests)."""
        for executor in self._executors:
            executor.shutdown(wait=False)
