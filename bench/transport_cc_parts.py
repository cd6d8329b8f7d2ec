"""Micro-benchmark: what transport-cc costs per forwarded packet, part by part, in process.

    .venv/bin/python bench/transport_cc_parts.py [--packets 200000]

Parts (each per packet; bench/sfu_forward.py --transport-cc measures them together, end to end):

* stamp: ``TransportSequence.stamp`` called from Python (a bytes copy + the record); the C sender
  stamps inside its own copy before SRTP protect, so the in-C cost is below this figure;
* records: ``SendSideBwe.sent`` handing the records to an estimator that does nothing
  (``on_packet_sent`` per packet: the wiring's share; the real estimator adds its own work);
* feedback: ``twcc.parse_feedback`` of 100-packet feedback (one per ~35 ms at 2880 packets/s), per packet;
* forward extension: ``Forwarder._extensions`` with the slot vs without (the per-packet extension block);
* with the estimator: ``SendSideBwe.on_feedback`` with media_server/bwe.py's ``SendSideEstimator`` (records,
  parse, trendline, AIMD, loss, acknowledged rate) for a 2880 packets/s stream reported every 100 ms.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

import _media_common  # noqa: F401 (puts the repository root on sys.path)
from _media_sfu_probe import NullEstimator

from media_server import aiortc_hooks
from media_server.bwe import SendSideEstimator
from media_server.forwarder import Forwarder
from media_server.rtputil import one_byte_extensions
from media_server.send_side import SendSideBwe
from media_server.twcc import build_feedback, parse_feedback


def per_call(fn: Callable[[], Any], n: int) -> float:
    """Best of 5 timings of ``n`` calls, in µs of this thread's CPU time per call (a loaded machine's
    waiting for a CPU is not counted)."""
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, time.thread_time() - start)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=200_000)
    n = parser.parse_args().packets
    ext = one_byte_extensions([(5, b"\x00\x00"), (3, b"\x01\x02\x03")])
    packet = bytes([0x90, 100, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]) + ext + bytes(1100)
    for label, native in (("C", aiortc_hooks.NATIVE), ("Python", None)):
        if label == "C" and native is None:
            continue
        sequence = aiortc_hooks.transport_sequence(native)
        sequence.id = 5
        us = per_call(functools.partial(sequence.stamp, packet), n)
        sequence.drain()
        print(f"stamp ({label} TransportSequence, called from Python): {us:.3f} us/packet")
    sequence = aiortc_hooks.transport_sequence()
    sequence.id = 5
    bwe = SendSideBwe(estimator=NullEstimator(start_bps=0, min_bps=0, max_bps=0), sequence=sequence)
    batch = 100
    stamp = sequence.stamp
    best = float("inf")
    for _ in range(5):
        spent = 0.0
        for _ in range(n // batch):
            for _ in range(batch):
                stamp(packet)
            t0 = time.thread_time()
            bwe.sent()
            spent += time.thread_time() - t0
        best = min(best, spent)
    print(f"records (SendSideBwe.sent -> on_packet_sent, no-op estimator): {best / n * 1e6:.3f} us/packet")
    feedback = build_feedback(
        sender_ssrc=1, media_ssrc=2, base_seq=65500, feedback_count=0, reference=5, deltas=[4, 3, None, 8] * 25
    )
    print(
        f"feedback (parse_feedback, 100 packets each): {per_call(lambda: parse_feedback(feedback), n // batch) / batch:.3f} us/packet"
    )
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    with_slot = per_call(lambda: fwd._extensions((0, 3, 5), None), n)
    without = per_call(lambda: fwd._extensions((0, 3, 0), None), n)
    print(
        f"extension block (Python path, once per packet per ID set): {with_slot:.3f} vs {without:.3f} us without the slot"
    )
    print(
        f"with the estimator (bwe.SendSideEstimator; records + feedback + estimation): {with_estimator(n):.3f} us/packet"
    )


def with_estimator(n: int) -> float:
    """CPU µs per packet of records + feedback + the real estimator, for a steady 2880 packets/s stream."""
    now = [1000.0]
    sequence = aiortc_hooks.transport_sequence()
    sequence.id = 5
    sequence.clock = lambda: now[0]
    estimator = SendSideEstimator(start_bps=300_000, min_bps=30_000, max_bps=20_000_000)
    bwe = SendSideBwe(estimator=estimator, sequence=sequence, clock=lambda: now[0])
    ext = one_byte_extensions([(5, b"\x00\x00"), (3, b"\x01\x02\x03")])
    packet = bytes([0x90, 100, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]) + ext + bytes(1100)
    per_feedback = 288  # packets per 100 ms
    spent = 0.0
    base = 1
    for _ in range(n // per_feedback):
        for _ in range(per_feedback):
            now[0] += 1 / 2880
            sequence.stamp(packet)
        # Arrivals 1.4 ticks (~347 µs) apart: as sent, no queue builds.
        deltas: list[int | None] = [1 if i % 5 < 3 else 2 for i in range(per_feedback)]
        feedback = build_feedback(
            sender_ssrc=1, media_ssrc=2, base_seq=base, feedback_count=0, reference=int(now[0] / 0.064), deltas=deltas
        )
        base = (base + per_feedback) & 0xFFFF
        t0 = time.thread_time()
        bwe.on_feedback([feedback])
        spent += time.thread_time() - t0
    return spent / (n // per_feedback * per_feedback) * 1e6


if __name__ == "__main__":
    main()
