"""Send-side bandwidth estimation of one subscribe connection: the wiring around the estimator.

The estimator itself (``media_server/bwe.py``: GCC-style delay-based + loss-based
controller and probe controller, pure Python) knows nothing of packets or RTCP.
:class:`SendSideBwe` connects it to the wire:

* what was sent: every packet the connection sends is stamped with a
  transport-wide sequence number by its ``TransportSequence`` (in the send
  path, C or Python, see ``aiortc_hooks.make_raw_sender``), which records
  (seq, size, send time, probe cluster); :meth:`SendSideBwe.on_feedback`
  drains those records into ``on_packet_sent`` before it reports feedback,
  so the estimator always knows a packet before it hears about it;
* what arrived: transport-cc feedback (``twcc.parse_feedback``) becomes
  ``on_feedback(results=[(seq, arrival or None), ...])``;
* REMB and the RTT still reach it (``on_remb``, ``on_rtt``).

Once the subscriber's answer accepts transport-cc, the subscriber
(participant.py) uses the estimator as its ``send_side``: the allocator reads
its target while its feedback is fresh (``SendSideEstimator.covers_audio``),
else the REMB-based ``layers.BandwidthEstimate``; probe clusters are tagged
through ``TransportSequence.cluster`` (``Subscriber.probing_cluster``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .bwe import SendSideEstimator
from .twcc import parse_feedback

logger = logging.getLogger(__name__)

START_BPS = 300_000  # bit/s before the first feedback (libwebrtc's default start bitrate)
MIN_BPS = 30_000  # the estimate never goes below: audio and the thinnest video level must still fit
MAX_BPS = 20_000_000  # more than three 1080p layers: the estimate never caps what a subscriber can get


def estimator_factory() -> Callable[..., Any] | None:
    """The estimator class for new subscribe connections (None: do not offer transport-cc).

    A seam for tests and benchmarks (a stand-in or a no-op estimator); the media server uses
    :class:`media_server.bwe.SendSideEstimator`.
    """
    return SendSideEstimator


class SendSideBwe:
    """One connection's estimator fed from its ``TransportSequence`` and transport-cc feedback."""

    def __init__(
        self,
        *,
        estimator: Any,
        sequence: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.estimator = estimator
        self.sequence = sequence
        self._clock = clock
        self.feedback_at: float | None = None  # when the last valid feedback arrived
        self.feedback_packets = 0
        self.malformed = 0
        self.reported = 0  # packets the feedback said arrived or were lost
        self.lost = 0

    @property
    def active(self) -> bool:
        """True once the subscriber's answer accepted transport-cc (its sequence stamps packets)."""
        return bool(self.sequence.id)

    def sent(self) -> None:
        """Hand every packet stamped since the last call to the estimator (``on_packet_sent``)."""
        records = self.sequence.drain()
        batch = getattr(self.estimator, "on_packets_sent", None)
        if batch is not None:
            batch(records)
            return
        on_packet_sent = self.estimator.on_packet_sent
        for seq, size, send_time, cluster in records:
            on_packet_sent(seq=seq, size=size, send_time=send_time, probe_cluster=None if cluster < 0 else cluster)

    def on_feedback(self, packets: list[bytes]) -> None:
        """Transport-cc feedback packets of one RTCP datagram (plaintext, from ``aiortc_hooks``)."""
        now = self._clock()
        self.sent()
        for raw in packets:
            try:
                feedback = parse_feedback(raw)
            except ValueError as exc:
                self.malformed += 1
                logger.debug("dropping malformed transport-cc feedback: %s", exc)
                continue
            self.feedback_packets += 1
            self.reported += len(feedback.results)
            self.lost += sum(1 for _, arrival in feedback.results if arrival is None)
            self.estimator.on_feedback(now=now, results=feedback.results)
            self.feedback_at = now
