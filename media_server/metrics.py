"""Prometheus metrics of one media process: ``GET /metrics`` on the control listener.

Everything is read at scrape time from the objects that already count it
(``Forwarder``, ``Downstream``, subscribe slots, and aiortc's public
``getStats()`` for bytes, loss and round-trip time): nothing is added to the
per-packet path. Counters of closed connections are folded into a
:class:`Totals` (per room, then per service) when they close, so the process
totals never go backwards.

Authentication: the control secret, or ``MEDIA_METRICS_TOKEN`` which opens
``/metrics`` only (docs/protocol.md §2).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from aiortc import RTCRtpReceiver, RTCRtpSender

    from .participant import Publisher, Subscriber
    from .service import MediaService

logger = logging.getLogger(__name__)


@dataclass
class Totals:
    """Monotonic per-process counters (see the ``COUNTERS`` help texts)."""

    received_packets: int = 0
    forwarded_bytes: int = 0
    dropped_packets: int = 0
    nacks_received: int = 0
    retransmitted_packets: int = 0
    keyframe_requests_received: int = 0
    keyframe_requests_sent: int = 0

    def add(self, other: Totals) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def add_publisher(self, publisher: Publisher) -> None:
        for track in publisher.tracks:
            for forwarder in track.all_layers:  # every simulcast layer
                self.received_packets += forwarder.packets_in
                self.keyframe_requests_sent += forwarder.keyframe_requests

    async def add_subscriber(self, subscriber: Subscriber) -> list[_SenderStats]:
        """Add a subscribe connection's counters (bytes from aiortc's ``getStats()``); its streams' stats."""
        streams = []
        for slot in list(subscriber.slots):
            d = slot.downstream
            self.dropped_packets += d.packets_dropped
            self.retransmitted_packets += d.packets_retransmitted
            self.nacks_received += slot.nacks_received
            self.keyframe_requests_received += slot.keyframe_requests_received
            stats = await _sender_stats(slot.transceiver.sender)
            self.forwarded_bytes += stats.bytes_sent
            streams.append(stats)
        return streams


COUNTERS: dict[str, str] = {
    "received_packets": "RTP packets received from publishers and handed to the forwarders.",
    "forwarded_bytes": "RTP payload bytes forwarded to subscribers (as counted for RTCP sender reports).",
    "dropped_packets": "Forwarded packets the transport refused (not connected, or the send queue was full).",
    "nacks_received": "RTCP NACK packets received from subscribers.",
    "retransmitted_packets": "Packets resent to subscribers in answer to NACKs.",
    "keyframe_requests_received": "PLI/FIR received from subscribers.",
    "keyframe_requests_sent": "Keyframe requests (PLI) relayed to publishers, after throttling.",
}


@dataclass
class _SenderStats:
    bytes_sent: int = 0
    rtt: float | None = None
    fraction_lost: float | None = None
    packets_lost: int = 0


async def _sender_stats(sender: RTCRtpSender) -> _SenderStats:
    out = _SenderStats()
    for stat in (await sender.getStats()).values():
        if stat.type == "outbound-rtp":
            out.bytes_sent = stat.bytesSent or 0
        elif stat.type == "remote-inbound-rtp":  # from the subscriber's last receiver report
            out.rtt = stat.roundTripTime
            out.fraction_lost = (stat.fractionLost or 0) / 256
            out.packets_lost = stat.packetsLost or 0
    return out


async def _receiver_packets_lost(receiver: RTCRtpReceiver) -> int:
    return sum(s.packetsLost or 0 for s in (await receiver.getStats()).values() if s.type == "inbound-rtp")


@dataclass
class Snapshot:
    """One scrape's worth of figures, gathered with the (async) stats calls done."""

    node: str = ""
    rooms: int = 0
    participants: int = 0
    peers: dict[str, int] = field(default_factory=lambda: {"publish": 0, "subscribe": 0})
    tracks: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    subscriber_streams: int = 0
    recordings: int = 0
    forwarded_packets: int = 0
    events_dropped: int = 0
    totals: Totals = field(default_factory=Totals)
    publisher_packets_lost: int = 0
    subscriber_packets_lost: int = 0
    rtts: list[float] = field(default_factory=list)
    fractions_lost: list[float] = field(default_factory=list)

    def collect(self) -> Iterator[Metric]:
        """The Prometheus metric families (a ``prometheus_client`` collector)."""
        info = GaugeMetricFamily("conference_media_info", "Always 1; the node ID (MEDIA_NODE_ID).", labels=["node"])
        info.add_metric([self.node], 1)
        yield info

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"conference_media_{name}", doc, value=value)

        yield gauge("rooms", "Rooms on this media process.", self.rooms)
        yield gauge("participants", "Participants with at least one connection here.", self.participants)
        peers = GaugeMetricFamily("conference_media_peer_connections", "Peer connections, by kind.", labels=["kind"])
        for kind, n in self.peers.items():
            peers.add_metric([kind], n)
        yield peers
        tracks = GaugeMetricFamily("conference_media_published_tracks", "Published tracks, by kind.", labels=["kind"])
        for kind, n in self.tracks.items():
            tracks.add_metric([kind], n)
        yield tracks
        yield gauge(
            "subscriber_streams", "Subscriber streams being forwarded (fan-out copies).", self.subscriber_streams
        )
        yield gauge("recordings_active", "Recordings running here.", self.recordings)
        yield CounterMetricFamily(
            "conference_media_forwarded_packets", "RTP packets forwarded to subscribers.", value=self.forwarded_packets
        )
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"conference_media_{name}", doc, value=getattr(self.totals, name))
        yield CounterMetricFamily(
            "conference_media_events_dropped",
            "Events to Django dropped (queue full or undeliverable).",
            value=self.events_dropped,
        )
        yield gauge(
            "publisher_packets_lost",
            "Packets lost from publishers to this server, summed over live publisher streams.",
            self.publisher_packets_lost,
        )
        yield gauge(
            "subscriber_packets_lost",
            "Packets lost from this server to subscribers (their receiver reports), summed over live streams.",
            self.subscriber_packets_lost,
        )
        yield _stats_family(
            "conference_media_subscriber_rtt_seconds",
            "Round-trip time to subscribers over live streams with a receiver report.",
            self.rtts,
        )
        yield _stats_family(
            "conference_media_subscriber_fraction_lost",
            "Fraction lost in the subscribers' last receiver report, over live streams (0–1).",
            self.fractions_lost,
        )


def _stats_family(name: str, doc: str, values: list[float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["stat"])
    family.add_metric(["mean"], sum(values) / len(values) if values else 0.0)
    family.add_metric(["max"], max(values, default=0.0))
    family.add_metric(["streams"], len(values))
    return family


async def snapshot(service: MediaService) -> Snapshot:
    """Gather every figure of ``service`` now (read-only; no packet-path state is touched)."""
    health: dict[str, Any] = service.health()
    snap = Snapshot(
        node=service.config.node_id,
        rooms=health["rooms"],
        forwarded_packets=health["forwarded_packets"],
        events_dropped=health["events_dropped"],
    )
    snap.totals.add(service.retired)
    for room in list(service.rooms.values()):
        snap.totals.add(room.retired)
        snap.recordings += room.recorder is not None and room.recorder.failed is None
        for p in list(room.participants.values()):
            snap.participants += 1
            for publisher in list(p.publishers.values()):
                snap.peers["publish"] += 1
                snap.totals.add_publisher(publisher)
                for track in publisher.tracks:
                    snap.tracks[track.kind] = snap.tracks.get(track.kind, 0) + 1
                    if track.receiver is not None:
                        snap.publisher_packets_lost += await _receiver_packets_lost(track.receiver.receiver)
            subscriber = p.subscriber
            if subscriber is None:
                continue
            snap.peers["subscribe"] += 1
            snap.subscriber_streams += sum(slot.attached is not None for slot in subscriber.slots)
            for stats in await snap.totals.add_subscriber(subscriber):
                if stats.rtt is not None:
                    snap.rtts.append(stats.rtt)
                if stats.fraction_lost is not None:
                    snap.fractions_lost.append(stats.fraction_lost)
                    snap.subscriber_packets_lost += stats.packets_lost
    return snap
