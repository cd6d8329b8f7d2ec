"""One retry policy for every Redis client of the web tier (channel layer, cache, media node registry).

A pooled connection that died (Redis restarted, a proxy dropped it) is replaced and the command retried
``REDIS_RETRIES`` times with a short jittered backoff (≤ 0.7 s in all), so the first command after an outage
never fails on a stale connection, while a real outage still raises quickly: room sockets then close with
4503 and clients reconnect (docs/protocol.md §1 "Close codes"). redis-py's own default (3 retries, up to
10 s apart) would hold a socket's frame for half a minute; without a policy, pools built from a URL do not
retry at all.
"""

from __future__ import annotations

import os
from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

REDIS_RETRIES = int(os.environ.get("REDIS_RETRIES", "3"))


def redis_retry(*, asynchronous: bool) -> Any:
    """A fresh ``Retry`` for one connection pool (``redis.asyncio``'s for async clients)."""
    backoff = EqualJitterBackoff(cap=0.4, base=0.05)
    return AsyncRetry(backoff, REDIS_RETRIES) if asynchronous else Retry(backoff, REDIS_RETRIES)
