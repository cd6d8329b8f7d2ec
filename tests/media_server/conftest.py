"""Fixtures for media server tests. Needs no Django (works with -p no:django too)."""

from __future__ import annotations

import sys
from pathlib import Path

# The repository root must win over tests/ (which has a media_server/ folder of
# its own) when pytest is started without the root on sys.path.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)
sys.modules.pop("media_server", None)

import dataclasses  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from ms_helpers import FakeDjango  # noqa: E402

from media_server import aiortc_hooks  # noqa: E402
from media_server.config import Config  # noqa: E402
from media_server.control import create_app  # noqa: E402
from media_server.events import EventSink  # noqa: E402
from media_server.service import MediaService  # noqa: E402


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """Every ICE agent (SFU and test clients) gathers only 127.0.0.1."""
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    yield
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])


@pytest.fixture
def media_config() -> Config:
    # Without spare m-lines (the behaviour these tests were written for: every new track re-offers); the
    # spares (the default) are tested in test_spare_mlines.py, which asks for them.
    return Config(secret="test-secret", node_id="test-node", ice_addresses=("127.0.0.1",), spare_mlines=0)


@pytest_asyncio.fixture
async def fake_django() -> AsyncIterator[FakeDjango]:
    fake = FakeDjango()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("/internal/media/v1/events"))  # type: ignore[attr-defined]
    yield fake
    await server.close()


class MediaHarness:
    def __init__(self, service: MediaService, http: TestClient, events: EventSink) -> None:
        self.service, self.http, self.events = service, http, events


@pytest_asyncio.fixture
async def media(media_config: Config, fake_django: FakeDjango, request: Any) -> AsyncIterator[MediaHarness]:
    overrides = getattr(request, "param", {}) or {}
    config = dataclasses.replace(media_config, events_url=fake_django.url, **overrides)  # type: ignore[attr-defined]
    events = EventSink(url=config.events_url, secret=config.secret, node_id=config.node_id, backoff=0.05)
    events.start()
    service = MediaService(config, events)
    aiortc_hooks.set_shared_certificate()  # as python -m media_server does (process global: the clients too)
    aiortc_hooks.set_sdp_reuse()
    # The tests call the control API with the static secret (as --dev allows); signing: tests/security.
    server = TestServer(create_app(service, config.secret, accept_bearer=True), host="127.0.0.1")
    http = TestClient(server)
    await http.start_server()
    yield MediaHarness(service, http, events)
    await http.close()
    await service.close()
    await events.close()
    aiortc_hooks.set_shared_certificate(False)
    aiortc_hooks.set_sdp_reuse(False)
