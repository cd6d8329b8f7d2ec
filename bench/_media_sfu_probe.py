"""Run the media server with bench-only instrumentation (bench/sfu_forward.py starts it).

* SFU hop latency (``--probe FILE``): sets ``Forwarder.probe`` (wraps
  ``Forwarder.on_rtp`` in trees without it); after a
  publisher packet has been handed to the kernel for every subscriber, the
  send time the bench publisher embedded in the payload (CLOCK_MONOTONIC,
  shared by all processes on one machine) is subtracted from now. That is
  publisher send -> last forwarded copy sent: the SFU's own added latency
  (socket queueing while its loop is busy + processing), independent of how
  fast the subscriber processes read. The cumulative histogram is written to
  FILE every second (JSON list of [bin, count]; bins as in
  bench/_media_clients.py). Per packet it only appends the raw hop (ns) to an
  array, binned once a second: in process 0.55 µs per *incoming* packet
  instead of 1.16 µs for a ``Histogram.add`` per packet (it is counted in
  the SFU's CPU figure; see docs/benchmarks.md §2).
* VP8 picture-ID rewrite (``--vp8-deltas``): every video downstream carries
  picture-ID/TL0PICIDX deltas, as after a simulcast layer switch.
* Loop stalls (``--slow-ms N``): wraps ``asyncio.Handle._run`` (every callback
  and task step) with ``time.thread_time()`` and logs steps that used more
  than N ms of *CPU* to stderr. asyncio's own debug mode measures wall time,
  which on a loaded machine mostly measures the scheduler.
* Transport-cc wiring alone (``--null-estimator``): subscribers that accept
  transport-cc get transport-wide sequence numbers and their feedback is parsed
  and fed to :class:`NullEstimator` instead of media_server/bwe.py.
* Memory (``--memtrace FILE``, ``--memtrace-interval S``): starts
  ``tracemalloc`` (5 frames) and every S seconds appends to FILE the RSS,
  glibc ``mallinfo2`` (bytes in use / free inside malloc's heap / mmapped),
  the Python-traced total and the 15 biggest growths since the previous
  snapshot (grouped by allocating traceback). Python-traced memory that does
  not grow while RSS does points at C allocations or at malloc holding freed
  memory (``free`` grows). Costs a lot of CPU (every allocation is traced):
  for finding memory growth, not for CPU figures.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import time
import tracemalloc
from array import array
from typing import Any

import _media_common  # noqa: F401 (puts the repository root on sys.path unless PYTHONPATH overrides)
from _media_clients import Histogram, send_time_ns

from media_server import forwarder
from media_server.__main__ import serve
from media_server.config import parse_config


def install_probe(path: str) -> asyncio.Task[None] | None:
    hist = Histogram()
    original = forwarder.Forwarder.on_rtp
    clock = time.monotonic_ns
    # Per packet only the raw hop (ns) is appended to a C array; binning (Histogram.add, a Python call)
    # happens once a second for the batch: the probe's cost is counted in the SFU's CPU figure.
    hops = array("q")

    def on_rtp(self: forwarder.Forwarder, packet: Any, codec: Any) -> None:
        original(self, packet, codec)
        if self.downstreams:
            sent = send_time_ns(packet.payload)
            if sent is not None:
                hops.append(clock() - sent)

    def probe(self: forwarder.Forwarder, payload: bytes) -> None:
        sent = send_time_ns(payload)
        if sent is not None:
            hops.append(clock() - sent)

    if "probe" in vars(forwarder.Forwarder):
        # Called after every fan-out on the Python and the C receive path (wrapping on_rtp would turn the C
        # receive path off: it only runs an unmodified Forwarder.on_rtp).
        forwarder.Forwarder.probe = probe
    else:  # an older media_server tree (bench/sfu_forward.py --compare)
        forwarder.Forwarder.on_rtp = on_rtp  # type: ignore[method-assign]

    async def dump() -> None:
        while True:
            await asyncio.sleep(1)
            batch = hops.tolist()
            del hops[:]
            for ns in batch:
                hist.add(ns / 1e6)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(list(hist.bins.items()), f)
            os.replace(tmp, path)

    return asyncio.ensure_future(dump())


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def install_memtrace(path: str, interval: float) -> asyncio.Task[None]:
    tracemalloc.start(5)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    start = time.monotonic()

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

    async def dump() -> None:
        previous = tracemalloc.take_snapshot()
        while True:
            await asyncio.sleep(interval)
            snapshot = tracemalloc.take_snapshot()
            info = libc.mallinfo2()
            traced, peak = tracemalloc.get_traced_memory()
            mb = 1 / (1 << 20)
            lines = [
                f"t={time.monotonic() - start:.0f}s rss={rss_mb():.1f}MB malloc in-use={info.uordblks * mb:.1f}MB"
                f" free={info.fordblks * mb:.1f}MB heap={info.arena * mb:.1f}MB mmapped={info.hblkhd * mb:.1f}MB"
                f" traced={traced * mb:.1f}MB (peak {peak * mb:.1f})"
            ]
            for stat in snapshot.compare_to(previous, "traceback")[:15]:
                where = " <- ".join(f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}" for frame in stat.traceback)
                lines.append(f"    {stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+7d} blocks  {where}")
            with open(path, "a") as f:
                f.write("\n".join(lines) + "\n")
            previous = snapshot

    return asyncio.ensure_future(dump())


def install_slow_step_log(slow_ms: float) -> None:
    original = asyncio.events.Handle._run
    threshold = slow_ms / 1000
    log = logging.getLogger("slow_step")

    def describe(handle: asyncio.Handle) -> str:
        task = getattr(handle._callback, "__self__", None)  # TaskStepMethWrapper -> Task
        if not isinstance(task, asyncio.Task):
            return repr(handle)[:200]
        coro: Any = task.get_coro()
        chain = []
        while coro is not None and len(chain) < 8:
            chain.append(getattr(coro, "__qualname__", type(coro).__name__))
            coro = getattr(coro, "cr_await", None)
        return " > ".join(chain)

    def timed_run(self: asyncio.Handle) -> None:
        start = time.thread_time()
        what = describe(self)  # where the task resumes
        original(self)
        used = time.thread_time() - start
        if used > threshold:
            log.warning("slow step %.1f ms cpu %s", used * 1000, what)

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]


def install_vp8_deltas() -> None:
    """Every subscriber stream rewrites VP8 picture IDs, as after a simulcast layer switch (sfu_forward.py never
    switches layers; with --vp8-pictures publishers the rewrite then touches every video packet)."""

    def continuation(self: forwarder.Downstream, payload: bytes) -> tuple[int, int]:
        return (1, 1)

    forwarder.Downstream._vp8_continuation = continuation  # type: ignore[method-assign]


class NullEstimator:
    """bwe.SendSideEstimator's interface doing no estimation (``--null-estimator``): the transport-cc wiring
    alone (stamping, records, feedback parsing) is measured, and what is forwarded stays what it was without
    transport-cc (``covers_audio`` False: the subscriber keeps its REMB estimate, which these clients never send)."""

    covers_audio = False

    def __init__(self, *, start_bps: int, min_bps: int, max_bps: int) -> None:
        self.target_bps = 50_000_000

    def on_packet_sent(self, *, seq: int, size: int, send_time: float, probe_cluster: int | None = None) -> None:
        pass

    def on_feedback(self, *, now: float, results: list[tuple[int, float | None]]) -> None:
        pass

    def on_remb(self, *, now: float, bps: int) -> None:
        pass

    def on_rtt(self, *, rtt: float) -> None:
        pass

    def probe_request(self, *, now: float, wanted_bps: int) -> None:
        return None


def install_null_estimator() -> None:
    """Feed transport-cc to :class:`NullEstimator` instead of media_server/bwe.py's estimator.
    A tree from before transport-cc (``--compare``) is left as it is."""
    try:
        from media_server import participant
    except ImportError:
        return
    if hasattr(participant, "estimator_factory"):
        participant.estimator_factory = lambda: NullEstimator  # type: ignore[assignment,return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", help="write the SFU hop latency histogram here")
    parser.add_argument("--slow-ms", type=float, default=0, help="log loop steps using more CPU than this")
    parser.add_argument("--memtrace", help="append tracemalloc/malloc statistics to this file")
    parser.add_argument("--memtrace-interval", type=float, default=20)
    parser.add_argument("--vp8-deltas", action="store_true", help="make every video downstream rewrite picture IDs")
    parser.add_argument("--null-estimator", action="store_true", help="transport-cc feeds NullEstimator, not bwe.py")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_config([])
    if args.slow_ms:
        install_slow_step_log(args.slow_ms)
    if args.vp8_deltas:
        install_vp8_deltas()
    if args.null_estimator:
        install_null_estimator()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        probe = install_probe(args.probe) if args.probe else None
        memtrace = install_memtrace(args.memtrace, args.memtrace_interval) if args.memtrace else None
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(config, stop)
        finally:
            for task in (probe, memtrace):
                if task is not None:
                    task.cancel()

    asyncio.run(run())


if __name__ == "__main__":
    main()
