"""Prometheus metrics of one web process: ``GET /metrics`` (README, *Operations*).

Each daphne process exposes its own counters (no prometheus multiprocess
mode): scrape every process as its own target. HTTP requests are labelled by
the resolver's route *name* (never the raw path, so label cardinality stays
bounded); room, participant and recording figures are read from the database
at scrape time (a few COUNT queries), so every process reports the same
cluster-wide values for them.

Access: open with ``CONFERENCE_ENV`` local/test; in production only with
``Authorization: Bearer <METRICS_TOKEN>`` or from an address in
``METRICS_ALLOWED_IPS`` (404 otherwise, and when neither is configured).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "conference_http_requests",
    "HTTP requests handled, by method, route name and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "conference_http_request_duration_seconds",
    "Time to produce an HTTP response (until the view returns; streaming bodies not included).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SOCKETS_OPEN = Gauge("conference_websockets_open", "Room sockets open in this process (accepted, not yet closed).")


def route_label(request: HttpRequest) -> str:
    """The URL pattern's name (``api-room-join``), its route if unnamed, or ``<unmatched>``."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unmatched>"
    return match.view_name or match.route or "<unnamed>"


class MetricsMiddleware:
    """Counts and times every HTTP request (first in ``MIDDLEWARE``); async-native under daphne."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        start = time.perf_counter()
        response = self.get_response(request)
        self._observe(request, response, start)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = await self.get_response(request)
        self._observe(request, response, start)
        return response  # type: ignore[no-any-return]

    @staticmethod
    def _observe(request: HttpRequest, response: HttpResponse, start: float) -> None:
        method = request.method if request.method in HTTP_METHODS else "other"
        route = route_label(request)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_DURATION.labels(method, route).observe(time.perf_counter() - start)


class DatabaseCollector:
    """Scrape-time figures from the database: rooms, seated participants, the recording queue."""

    def collect(self) -> Iterable[Metric]:
        from recordings.models import Recording
        from rooms.models import Participant, Room
        from rooms.selectors import presence_cutoff

        now = timezone.now()
        rooms = GaugeMetricFamily("conference_rooms_active", "Rooms not ended.")
        rooms.add_metric([], Room.objects.filter(status=Room.Status.ACTIVE).count())
        yield rooms
        people = GaugeMetricFamily(
            "conference_participants", "Participants seen within PRESENCE_TIMEOUT_SECONDS, by state.", labels=["state"]
        )
        live = Participant.objects.filter(
            state__in=(Participant.State.ADMITTED, Participant.State.WAITING), last_seen_at__gte=presence_cutoff(now)
        )
        by_state = dict(live.values_list("state").annotate(n=Count("id")).order_by())
        for state in (Participant.State.ADMITTED, Participant.State.WAITING):
            people.add_metric([str(state)], by_state.get(state, 0))
        yield people
        recordings = GaugeMetricFamily("conference_recordings", "Recordings by status (not ready).", labels=["status"])
        open_statuses = [s for s in Recording.Status.values if s != Recording.Status.READY]
        counts = dict(
            Recording.objects.filter(status__in=open_statuses).values_list("status").annotate(n=Count("id")).order_by()
        )
        for status in open_statuses:
            recordings.add_metric([status], counts.get(status, 0))
        yield recordings
        oldest = Recording.objects.filter(status=Recording.Status.PROCESSING).aggregate(t=Min("processing_started_at"))
        age = GaugeMetricFamily(
            "conference_recording_oldest_processing_age_seconds",
            "Age of the oldest recording in processing (0 when none): a growing value means stuck or too few workers.",
        )
        age.add_metric([], (now - oldest["t"]).total_seconds() if oldest["t"] else 0.0)
        yield age


def _allowed(request: HttpRequest) -> bool:
    if not settings.PRODUCTION:
        return True
    token: str = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """This process's metrics in the Prometheus text format (0.0.4)."""
    if not _allowed(request):
        return HttpResponseNotFound()
    body = generate_latest(REGISTRY) + generate_latest(DatabaseCollector())
    return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
