"""conference.cache: the Redis cache keeps its connections across requests (Django's made one per request).

Under daphne each request is a new async context, and Django's ``caches`` hands each context a new backend:
with Django's own ``RedisCache`` a new connection pool, so a new Redis connection per request that used the
cache (the media server's event POSTs, a guest's rate-limited REST join). Connections are counted, not timed.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator

import pytest
from django.core.cache import CacheHandler

from conference.cache import RedisCache
from tests.conftest import redis_delete_prefix, redis_test_prefix, redis_test_url

pytestmark = pytest.mark.redis


@pytest.fixture
def handler() -> Iterator[tuple[CacheHandler, str]]:
    """A cache handler as Django's ``caches``, for the Redis cache under this test's key prefix."""
    prefix = redis_test_prefix("cache-pool")
    settings = {
        "default": {"BACKEND": "conference.cache.RedisCache", "LOCATION": redis_test_url(), "KEY_PREFIX": prefix}
    }
    try:
        yield CacheHandler(settings), prefix
    finally:
        redis_delete_prefix(prefix)


def test_requests_in_new_contexts_share_one_redis_connection(handler: tuple[CacheHandler, str]) -> None:
    caches, _ = handler

    def request(n: int) -> RedisCache:  # what a view does: the context's cache, one add
        cache = caches["default"]
        assert cache.add(f"sig:{n}", 1, 60)
        assert not cache.add(f"sig:{n}", 1, 60)  # a replay is still refused
        return cache  # type: ignore[return-value]

    backends = [contextvars.Context().run(request, n) for n in range(5)]
    assert len({id(b) for b in backends}) == 5  # a backend per context, as Django makes them
    assert len({id(b._cache) for b in backends}) == 1
    pool = backends[0]._cache._get_connection_pool(write=True)
    assert pool._created_connections == 1


async def test_async_requests_share_it_too(handler: tuple[CacheHandler, str]) -> None:
    caches, _ = handler

    async def request(n: int) -> RedisCache:
        cache = caches["default"]
        assert await cache.aadd(f"async:{n}", 1, 60)
        return cache  # type: ignore[return-value]

    backends = await asyncio.gather(*(asyncio.create_task(request(n)) for n in range(3)))
    assert len({id(b._cache) for b in backends}) == 1
    assert (
        backends[0]._cache._get_connection_pool(write=True)._created_connections <= 3
    )  # at most one per thread at once


def test_another_location_gets_its_own_client(handler: tuple[CacheHandler, str]) -> None:
    caches, _ = handler
    other = CacheHandler({"default": {"BACKEND": "conference.cache.RedisCache", "LOCATION": redis_test_url() + "?x=1"}})
    assert caches["default"]._cache is not other["default"]._cache  # type: ignore[attr-defined]
