"""``SyncChainMiddleware``: the last entry of ``MIDDLEWARE``, synchronous only, so the chain runs on one thread.

Under daphne, Django runs middleware in the mode of the handler below it, and
that starts out asynchronous. An async-capable ``MiddlewareMixin`` (sessions,
CSRF, auth, messages, security, CSP, ...) in async mode hands each of its
``process_request``/``process_response`` hooks to a thread and back
(``sync_to_async``): about 20 hand-overs between the event loop and the
request's thread for every API call and every media-server event batch, and
each costs CPU on both sides. With this synchronous entry at the bottom, every
middleware above it runs synchronously on the request's thread (one hand-over
in, one back to the loop for Django's async response path, one for a DRF
view). docs/benchmarks.md §4 has the figures (issue 19). It does nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase


class SyncChainMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)
