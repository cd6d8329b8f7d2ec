"""Django's Redis cache with one client (and connection pool) per process, not one per request.

Django keeps a cache backend per async context (``caches`` is an asgiref ``Local``), and under daphne every
request is a new context: each request that touched the cache (the media server's event POSTs check their
signature there; a guest's REST join counts its rate limits there) built a new ``RedisCache``, a new redis-py
connection pool and so a new TCP connection to Redis (connect, ``SELECT``), left for the garbage collector
to close. Measured in process: an ``add`` on a fresh backend 1.7-1.9 ms of CPU, on one already connected
0.27-0.31 ms (docs/benchmarks.md §4, seventh session).

Here every ``RedisCache`` made with the same servers and options shares one ``RedisCacheClient``: its pools
are redis-py's, thread-safe and reset after a fork. Keys, values, timeouts and every cache operation are
Django's own.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple[Any, ...], RedisCacheClient] = {}
_clients_lock = threading.Lock()


class RedisCache(DjangoRedisCache):
    """``django.core.cache.backends.redis.RedisCache`` whose client is shared by the process's instances."""

    @cached_property
    def _cache(self) -> RedisCacheClient:
        # The options' reprs: a retry policy or a pool class is the same object for every instance of one
        # setting (an override in a test makes a new client, as a new setting should).
        # Django's own attributes (set in RedisCache.__init__; django-stubs do not declare them).
        client_class: type[RedisCacheClient] = self._class  # type: ignore[attr-defined]
        servers: list[str] = self._servers  # type: ignore[attr-defined]
        options: dict[str, Any] = self._options  # type: ignore[attr-defined]
        key = (client_class, tuple(servers), tuple(sorted((k, repr(v)) for k, v in options.items())))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = client_class(servers, **options)
        return client
