"""Ordered lanes of jobs, one per key, that run concurrently with each other (a room socket's signaling).

A room socket relays each peer connection's signaling frames to the media server in order (an answer after
the offer it answers, candidates after both), but nothing orders one connection's frames against another's
or against the socket's other frames. Handled one at a time, a joiner's `subscribe` waited behind a
`breakouts_get` database hop and its camera `offer` behind the whole subscribe round trip to the media
server (docs/benchmarks.md §4). :class:`Lanes` runs each key's jobs one after another on a task of its own:
the consumer puts each connection's frames in that connection's lane and goes on with the next frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class Lanes:
    """Jobs by key: in submission order within a key, concurrently across keys. ``close()`` ends them.

    A job should handle its own errors: one that raises is logged and its lane goes on.
    At most ``limit`` jobs wait in one lane (the one running not counted).
    """

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._waiting: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def submit(self, key: str, job: Job) -> bool:
        """Run ``job`` after the jobs already in lane ``key``; False (not taken) when the lane is full or closed."""
        if self._closed:
            return False
        waiting = self._waiting.setdefault(key, deque())
        if len(waiting) >= self.limit:
            return False
        waiting.append(job)
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._run(key), name=f"signal-lane-{key}")
        return True

    async def _run(self, key: str) -> None:
        waiting = self._waiting[key]
        try:
            while waiting:
                try:
                    await waiting.popleft()()
                except Exception:
                    logger.exception("signaling job in lane %s failed", key)
        finally:
            del self._tasks[key]
            if not waiting:
                self._waiting.pop(key, None)

    async def drain(self) -> None:
        """Return once every job submitted so far (and any submitted meanwhile) has run."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        """Drop the jobs not started, wait for the running ones; later submissions are refused."""
        self._closed = True
        for waiting in self._waiting.values():
            waiting.clear()
        with contextlib.suppress(Exception):
            await self.drain()
