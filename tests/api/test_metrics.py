"""Web process /metrics (Prometheus text) and /healthz (database + channel layer readiness)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from conference import internal
from recordings.models import Recording
from rooms.models import Room

pytestmark = pytest.mark.django_db


def scrape(client: Client | None = None, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics → {(sample name, sorted labels): value}."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_name_not_path(auth_client):
    before = scrape()
    c = auth_client()
    room_id = c.post("/api/v1/rooms", {"name": "Metrics"}, format="json").json()["roomId"]
    assert c.post(f"/api/v1/rooms/{room_id}/join", {}, format="json").status_code == 200
    Client().get("/no/such/page/12345")
    after = scrape()

    def delta(**labels: str) -> float:
        name = "conference_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(method="POST", route="api-rooms", status="201") == 1
    assert delta(method="POST", route="api-room-join", status="200") == 1
    assert delta(method="GET", route="<unmatched>", status="404") == 1
    assert not any(room_id in str(labels) for _, labels in after), "raw paths must never become labels"
    hist = "conference_http_request_duration_seconds_count"
    assert (
        value(after, hist, method="POST", route="api-room-join")
        - value(before, hist, method="POST", route="api-room-join")
        == 1
    )


def test_rooms_participants_and_recording_queue_are_read_from_the_database(auth_client):
    c = auth_client()
    room_id = c.post("/api/v1/rooms", {"name": "Live"}, format="json").json()["roomId"]
    c.post(f"/api/v1/rooms/{room_id}/join", {}, format="json")
    ended = Room.objects.create(name="old", host=c.user, status=Room.Status.ENDED)
    room = Room.objects.get(public_id=room_id)
    Recording.objects.create(room=room, status=Recording.Status.PENDING)
    Recording.objects.create(room=ended, status=Recording.Status.FAILED)
    Recording.objects.create(
        room=ended, status=Recording.Status.PROCESSING, processing_started_at=timezone.now() - timedelta(seconds=90)
    )
    Recording.objects.create(room=ended, status=Recording.Status.READY)

    samples = scrape()
    assert value(samples, "conference_rooms_active") == 1
    assert value(samples, "conference_participants", state="admitted") == 1
    assert value(samples, "conference_participants", state="waiting") == 0
    assert value(samples, "conference_recordings", status="pending") == 1
    assert value(samples, "conference_recordings", status="recording") == 0
    assert value(samples, "conference_recordings", status="processing") == 1
    assert value(samples, "conference_recordings", status="failed") == 1
    assert ("conference_recordings", (("status", "ready"),)) not in samples
    assert 89 <= value(samples, "conference_recording_oldest_processing_age_seconds") < 150
    assert ("conference_websockets_open", ()) in samples


@pytest.mark.django_db(transaction=True)
async def test_open_sockets_gauge_follows_connect_and_disconnect():
    from prometheus_client import REGISTRY

    from conference.asgi import application

    def sockets() -> float | None:
        return REGISTRY.get_sample_value("conference_websockets_open")

    before = sockets()
    assert before is not None
    comm = WebsocketCommunicator(application, "/ws/rooms/abcdefabcdef/", headers=[(b"origin", b"http://localhost")])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    assert sockets() == before + 1
    await comm.disconnect()
    await asyncio.sleep(0)
    assert sockets() == before


def test_metrics_in_production_need_the_token_or_an_allowed_address(settings):
    settings.PRODUCTION = True
    settings.METRICS_TOKEN = "scrape-me"
    settings.METRICS_ALLOWED_IPS = []
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    scrape(HTTP_AUTHORIZATION="Bearer scrape-me")
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 404
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    assert Client().get("/metrics").status_code == 404  # neither configured: disabled


def test_health_is_200_when_database_and_channel_layer_answer():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "ok"}


def test_health_is_503_when_the_database_fails(monkeypatch):
    from django.db import connections

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("database is down")

    monkeypatch.setattr(type(connections["default"]), "cursor", broken)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "error", "channel_layer": "ok"}


class _DownLayer:
    async def new_channel(self, prefix: str = "specific") -> str:
        raise ConnectionError("redis is down")


class _StuckLayer:
    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.x!y"

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        pass

    async def receive(self, channel: str) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}


def test_health_is_503_when_the_channel_layer_fails(monkeypatch):
    monkeypatch.setattr(internal, "get_channel_layer", lambda: _DownLayer())
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "error"}


def test_health_is_503_quickly_when_the_channel_layer_hangs(monkeypatch, settings):
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr(internal, "get_channel_layer", lambda: _StuckLayer())
    started = timezone.now()
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"] == "timeout"
    assert (timezone.now() - started).total_seconds() < 2
