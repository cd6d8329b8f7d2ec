"""GET /metrics on the media control listener: names, values after a real publish/subscribe, auth."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ms_helpers import AUTH, PublisherClient, SubscriberClient, recv_frames
from prometheus_client.parser import text_string_to_metric_families

from media_server.control import create_app

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: TestClient, headers: dict[str, str] = AUTH) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def v(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.asyncio
async def test_metrics_after_publish_and_subscribe(media: Any) -> None:
    """Rooms, peers, tracks, forwarded packets/bytes, keyframe requests and RTT appear; counters survive a leave."""
    pub = PublisherClient(media.http, "r1", "alice")
    await pub.start()
    sub = SubscriberClient(media.http, "r1", "bob")
    await sub.start()
    await recv_frames(sub.track("alice", "camera"), 5)
    receiver = sub.receiver("alice", "camera")
    await receiver._send_rtcp_pli(receiver.getSynchronizationSources()[0].source)

    # Until a receiver report carried an RTT back, the PLI arrived and forwarded bytes were counted (~1-2 s when
    # idle; bounded by a deadline, not a number of polls, for a busy machine). Bytes come from the senders' SR
    # counts, which the forwarder adds to every SR_BATCH packets: 5 frames received may be fewer than that.
    samples: Samples = {}
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        samples = await scrape(media.http)
        if (
            v(samples, "conference_media_subscriber_rtt_seconds", stat="streams") > 0
            and v(samples, "conference_media_keyframe_requests_received_total") > 0
            and v(samples, "conference_media_forwarded_bytes_total") > 0
        ):
            break
        await asyncio.sleep(0.1)

    assert v(samples, "conference_media_info", node="test-node") == 1
    assert v(samples, "conference_media_rooms") == 1
    assert v(samples, "conference_media_participants") == 2
    assert v(samples, "conference_media_peer_connections", kind="publish") == 1
    assert v(samples, "conference_media_peer_connections", kind="subscribe") == 1
    assert v(samples, "conference_media_published_tracks", kind="video") == 1
    assert v(samples, "conference_media_published_tracks", kind="audio") == 1
    assert v(samples, "conference_media_subscriber_streams") == 2
    assert v(samples, "conference_media_received_packets_total") > 0
    assert v(samples, "conference_media_forwarded_packets_total") > 0
    assert v(samples, "conference_media_forwarded_bytes_total") > 0
    assert v(samples, "conference_media_keyframe_requests_received_total") >= 1
    assert v(samples, "conference_media_keyframe_requests_sent_total") >= 1
    assert v(samples, "conference_media_subscriber_rtt_seconds", stat="streams") >= 1
    # loopback, measured by a loop that runs both ends (0.3-0.9 s seen under load); catches a wrong unit
    assert 0 < v(samples, "conference_media_subscriber_rtt_seconds", stat="max") < 5
    assert 0 <= v(samples, "conference_media_subscriber_fraction_lost", stat="max") <= 1
    for name in (
        "conference_media_dropped_packets_total",
        "conference_media_nacks_received_total",
        "conference_media_retransmitted_packets_total",
        "conference_media_events_dropped_total",
        "conference_media_publisher_packets_lost",
        "conference_media_subscriber_packets_lost",
        "conference_media_recordings_active",
    ):
        assert (name, ()) in samples, name

    health = await (await media.http.get("/v1/health", headers=AUTH)).json()
    assert v(samples, "conference_media_forwarded_packets_total") <= health["forwarded_packets"]

    before = samples
    response = await media.http.delete("/v1/rooms/r1/participants/bob", headers=AUTH)
    assert response.status == 204
    after = await scrape(media.http)
    assert v(after, "conference_media_peer_connections", kind="subscribe") == 0
    for counter in ("forwarded_packets", "forwarded_bytes", "keyframe_requests_received", "received_packets"):
        name = f"conference_media_{counter}_total"
        assert v(after, name) >= v(before, name), f"{name} went backwards after a leave"
    await asyncio.gather(pub.close(), sub.close())


@pytest.mark.asyncio
async def test_metrics_token_opens_metrics_only(media: Any) -> None:
    """Without auth: 401. MEDIA_METRICS_TOKEN opens /metrics but no control route; the control secret opens both."""
    assert (await media.http.get("/metrics")).status == 401
    http = TestClient(TestServer(create_app(media.service, "test-secret", "scrape-only"), host="127.0.0.1"))
    await http.start_server()
    try:
        scraper = {"Authorization": "Bearer scrape-only"}
        samples = await scrape(http, scraper)
        assert v(samples, "conference_media_rooms") == 0
        assert (await http.get("/v1/health", headers=scraper)).status == 401
        assert (await http.delete("/v1/rooms/r1", headers=scraper)).status == 401
        await scrape(http, AUTH)
    finally:
        await http.close()
