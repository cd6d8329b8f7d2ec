"""Event delivery to Django: a bounded queue drained by one task posting batches."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from . import signing
from .protocol import PROTOCOL_VERSION

logger = logging.getLogger(__name__)

Event = dict[str, Any]
# A batch's JSON body stays at or under this (docs/protocol.md §2: Django accepts up to 2 MiB).
MAX_BATCH_BYTES = 1024 * 1024
# How long the first event queued into an idle sink waits for others to share its POST (seconds). Each POST
# costs daphne ~4-6 ms of CPU whatever it carries (docs/benchmarks.md §4, "Cheaper joins, third session").
DEFAULT_LINGER = 0.05
# Events a client waits on: they end the wait at once, carrying what was queued before them (order kept).
URGENT_EVENTS = frozenset({"subscribe_offer"})


class EventSink:
    """Queues events and POSTs them in batches to ``url`` with retry/backoff.

    The queue is bounded: when full the oldest event is dropped and counted
    (``dropped``). A batch that still fails after ``max_attempts`` is dropped
    and counted too. ``close()`` tries one final flush, then stops the task. Every attempt is signed afresh
    (``signing``: new timestamp and nonce), so a retry is never refused as a replay.
    A batch holds at most ``max_batch`` events and ``max_batch_bytes`` of JSON; an event that alone
    exceeds that is dropped (logged and counted): Django would refuse it.

    Batching: the first event queued while nothing is being posted waits up to ``linger`` seconds for more
    (one POST instead of one per event); an event in ``URGENT_EVENTS``, a full batch or ``close()`` ends the
    wait at once. Events queued while a POST (or its retries) is under way go in the next POST without
    waiting. ``posts`` counts the POST attempts.
    """

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        node_id: str,
        max_queue: int = 1000,
        max_batch: int = 100,
        max_attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        timeout: float = 5.0,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        self._url = url
        parts = urlsplit(url)
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._secret = secret
        self._node_id = node_id
        self._queue: collections.deque[Event] = collections.deque(maxlen=max_queue)
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._linger = linger
        self._wakeup = asyncio.Event()
        self._flush = asyncio.Event()  # set: post what is queued now, without lingering
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[str] = []  # the batch being posted (or waiting to be retried), taken off the queue
        self._inflight_id = ""  # its id: every attempt carries the same one, so Django routes it once
        self._session: aiohttp.ClientSession | None = None
        self.dropped = 0
        self.delivered = 0
        self.failed_batches = 0
        self.posts = 0

    def start(self) -> None:
        """Start the delivery task (idempotent)."""
        if self._task is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._task = asyncio.create_task(self._run(), name="media-events")

    def emit(self, event: Event) -> None:
        """Queue one event (never blocks; drops the oldest if full)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        if event.get("type") in URGENT_EVENTS or len(self._queue) >= self._max_batch:
            self._flush.set()
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def close(self) -> None:
        """Stop delivering, with one last attempt for what is left: the batch a POST or its retries were
        delivering when stopped (again, whole, with its id: Django routes it once even if the interrupted POST
        had arrived), then what is still queued.
        What that attempt cannot deliver is lost."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
            inflight, self._inflight = self._inflight, []
            if inflight and not await self._post_once(inflight, self._inflight_id):
                self.dropped += len(inflight)
            if self._queue:
                await self._post_once(self._take_batch(), _batch_id())
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _envelope(self, events: list[str], batch_id: str) -> bytes:
        head = json.dumps({"protocol": PROTOCOL_VERSION, "node": self._node_id, "batch": batch_id})[:-1]
        return f'{head}, "events": [{", ".join(events)}]}}'.encode()

    def _take_batch(self) -> list[str]:
        """Up to ``max_batch`` events (JSON-encoded) whose batch body fits in ``max_batch_bytes``."""
        batch: list[str] = []
        size = len(self._envelope([], _batch_id()))
        while self._queue and len(batch) < self._max_batch:
            encoded = json.dumps(self._queue[0])
            added = len(encoded.encode()) + (2 if batch else 0)
            if size + added > self._max_batch_bytes:
                if batch:
                    break  # the next batch starts with it
                dropped = self._queue.popleft()
                self.dropped += 1
                logger.error("dropped a %d-byte %s event: over the batch limit", added, dropped.get("type"))
                continue
            self._queue.popleft()
            batch.append(encoded)
            size += added
        return batch

    async def _post_once(self, batch: list[str], batch_id: str) -> bool:
        assert self._session is not None
        self.posts += 1
        body = self._envelope(batch, batch_id)
        headers = {
            "Authorization": signing.sign(self._secret, "POST", self._path, body),
            "Content-Type": "application/json",
        }
        try:
            async with self._session.post(self._url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    self.delivered += len(batch)
                    return True
                logger.warning("events POST got HTTP %s", response.status)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            logger.warning("events POST failed: %s", exc)
        return False

    async def _wait_for_more(self) -> None:
        """Let the queue fill for up to ``linger`` seconds, unless something must go now."""
        if self._linger <= 0 or not self._queue:
            return
        try:
            async with asyncio.timeout(self._linger):
                await self._flush.wait()
        except TimeoutError:
            pass

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._wait_for_more()
            while self._queue:
                batch = self._inflight = self._take_batch()
                batch_id = self._inflight_id = _batch_id()
                delay = self._backoff
                for _attempt in range(self._max_attempts):
                    if await self._post_once(batch, batch_id):
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                else:
                    self.failed_batches += 1
                    self.dropped += len(batch)
                self._inflight = []
            self._flush.clear()  # everything queued went: the next event lingers again


def _batch_id() -> str:
    """A batch's id (32 hex digits), the same on each of its attempts: Django routes a batch it has already
    taken once only (docs/protocol.md §2 *Events*)."""
    return uuid.uuid4().hex
