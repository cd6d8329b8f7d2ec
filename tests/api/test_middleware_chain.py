"""The middleware chain runs synchronously on the request's thread (conference/sync_chain.py, issue 19).

Counted, not timed: how many times one request hands work from the event loop to a thread
(``asgiref.sync.SyncToAsync``). Each hand-over costs CPU on both sides; with every async-capable
``MiddlewareMixin`` in async mode an event batch made 15 of them (a DRF call more), now 5.
"""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.test import AsyncClient

from tests.conftest import MEDIA_EVENTS_PATH, media_events_request
from tests.hand_overs import count_hand_overs

pytestmark = pytest.mark.django_db(transaction=True)


async def _hand_overs() -> int:
    client = AsyncClient()
    text, headers = media_events_request({"protocol": 1, "events": []})
    with count_hand_overs() as hand_overs:
        response = await client.post(MEDIA_EVENTS_PATH, text, content_type="application/json", headers=headers)
    assert response.status_code == 204, response.content
    return hand_overs.count


async def test_a_request_hands_over_to_a_thread_a_few_times_not_once_per_middleware_hook(settings):
    assert django_settings.MIDDLEWARE[-1] == "conference.sync_chain.SyncChainMiddleware"
    with_sync_chain = await _hand_overs()
    # request_started/finished (database connection upkeep), the chain itself, the replay check's cache.aadd
    assert with_sync_chain <= 5, with_sync_chain
    settings.MIDDLEWARE = settings.MIDDLEWARE[:-1]
    without = await _hand_overs()
    assert without >= with_sync_chain + 8, (without, with_sync_chain)  # what the last middleware saves (15 vs 5)
