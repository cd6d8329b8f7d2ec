"""Benchmark: media_server packet forwarding vs aiortc MediaRelay, in one run.

    .venv/bin/python bench/sfu_forward.py [--seconds 20] [--publishers 2] [--subscribers 8] [--sub-procs 2]
    .venv/bin/python bench/sfu_forward.py --soak 600     # joins/leaves, RSS + latency per minute

Every party has its own process and event loop: the SFU (a real
``python -m media_server`` on 127.0.0.1), one publisher worker and
``--sub-procs`` subscriber workers (bench/_media_clients.py), so a stall of a
client does not show up as SFU latency. SFU CPU time (utime+stime from /proc,
all threads) is divided by the packets it forwarded (``/v1/health``).
Publishers send synthetic 720p-sized RTP (1100-byte VP8-like video at 130/s +
120-byte audio at 50/s, ~1.2 Mbit/s A+V) straight through SRTP, so clients do
no codec work; each payload carries a CLOCK_MONOTONIC send time (shared by all
processes on one machine) and subscribers histogram receive - send.

In a soak, ``--churners`` of the subscribers live in a separate worker and
one of them leaves and is replaced every ``--churn-interval`` s; latency is
reported for the stable subscribers (undisturbed clients) so SFU stalls
during joins are what it measures. The MediaRelay baseline runs in
bench/_media_relay.py (real 720p VP8 loop, decode + re-encode per subscriber).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _media_common as common
import aiohttp
from _media_clients import Histogram
from aiohttp import web

SECRET = "bench-secret-loopback-only-0123456789abcdef"  # noqa: S105 (loopback-only benchmark; >= 32 chars)
AUTH = {"Authorization": f"Bearer {SECRET}"}
STREAM_PPS = 130 + 50  # video + audio packets per second of one A+V stream (bench/_media_clients.py)


class ClientProcess:
    """One bench/_media_clients.py worker (publishers or a group of subscribers)."""

    def __init__(self, role: str, base: str, extra: Sequence[str] = ()) -> None:
        self.port = common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(common.ROOT / "bench" / "_media_clients.py"),
                "--role",
                role,
                "--port",
                str(self.port),
                "--base",
                base,
                "--secret",
                SECRET,
                *extra,
            ],
            cwd=common.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    async def call(self, http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
        async with http.post(self.url + path, json=body) as resp:
            assert resp.status < 300, await resp.text()

    async def stats(self, http: aiohttp.ClientSession, reset: bool = True) -> dict[str, Any]:
        async with http.get(self.url + "/stats" + ("?reset=1" if reset else "")) as resp:
            return dict(await resp.json())

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def merge(stats: list[dict[str, Any]]) -> dict[int, int]:
    hist: dict[int, int] = {}
    for s in stats:
        for key, count in s["hist"]:
            hist[key] = hist.get(key, 0) + count
    return hist


def hist_percentile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    target, seen = q * total, 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= target:
            return Histogram.value(key)
    return Histogram.value(max(hist))


def start_sfu(
    events_port: int,
    control_port: int,
    log: str | None,
    slow_steps: bool,
    root: Path,
    probe: str,
    memtrace: str | None = None,
    extra_env: dict[str, str] | None = None,
    vp8_deltas: bool = False,
    null_estimator: bool = False,
) -> subprocess.Popen[bytes]:
    """The SFU under bench/_media_sfu_probe.py (hop-latency probe; optional CPU-heavy loop step log)."""
    env = {
        **os.environ,
        "MEDIA_SECRET": SECRET,
        "MEDIA_DEV": "1",  # the clients call the control API with the static secret
        "MEDIA_CONTROL_PORT": str(control_port),
        "MEDIA_EVENTS_URL": f"http://127.0.0.1:{events_port}/events",
        "MEDIA_ICE_ADDRESSES": "127.0.0.1",
        "PYTHONPATH": str(root),  # the media_server package under test (see --compare)
        **(extra_env or {}),
    }
    stderr = open(log, "wb") if log else subprocess.DEVNULL
    command = [sys.executable, str(common.ROOT / "bench" / "_media_sfu_probe.py"), "--probe", probe]
    if slow_steps:
        command += ["--slow-ms", "2"]
    if memtrace:
        command += ["--memtrace", memtrace]
    if vp8_deltas:
        command += ["--vp8-deltas"]
    if null_estimator:
        command += ["--null-estimator"]
    return subprocess.Popen(command, cwd=root, env=env, stderr=stderr)


def read_probe(path: str) -> dict[int, int]:
    try:
        with open(path) as f:
            return {int(k): int(v) for k, v in json.load(f)}
    except (OSError, ValueError):
        return {}


def hist_diff(new: dict[int, int], old: dict[int, int]) -> dict[int, int]:
    return {k: v - old.get(k, 0) for k, v in new.items() if v - old.get(k, 0) > 0}


async def run_sfu(args: argparse.Namespace, root: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    owner: dict[str, ClientProcess] = {}  # subscriber participant -> its worker
    relays: set[asyncio.Task[None]] = set()
    http_holder: list[aiohttp.ClientSession] = []

    async def events(request: web.Request) -> web.Response:
        body = await request.json()
        for e in body["events"]:
            worker = owner.get(e.get("participant", ""))
            if e["type"] == "subscribe_offer" and worker is not None:
                task = asyncio.create_task(worker.call(http_holder[0], "/offer", e))
                relays.add(task)
                task.add_done_callback(relays.discard)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    events_port, control_port = common.free_port(), common.free_port()
    await web.TCPSite(runner, "127.0.0.1", events_port).start()
    probe = f"/tmp/sfu_probe_{os.getpid()}_{events_port}.json"
    own = root == common.ROOT and not extra_env
    proc = start_sfu(
        events_port,
        control_port,
        args.sfu_log if own else None,
        args.slow_steps,
        root,
        probe,
        args.memtrace if own else None,
        extra_env,
        args.vp8_deltas,
        args.null_estimator,
    )
    base = f"http://127.0.0.1:{control_port}"
    workers: list[ClientProcess] = []
    result: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            http_holder.append(http)
            for _ in range(100):
                try:
                    async with http.get(base + "/v1/health", headers=AUTH) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

            async def forwarded() -> int:
                async with http.get(base + "/v1/health", headers=AUTH) as r:
                    return int((await r.json())["forwarded_packets"])

            pub_worker = ClientProcess("publisher", base, ["--vp8-pictures"] if args.vp8_deltas else [])
            sub_flags = ["--transport-cc"] if args.transport_cc else []
            stable = [ClientProcess("subscriber", base, sub_flags) for _ in range(args.sub_procs)]
            churn = ClientProcess("subscriber", base, sub_flags) if args.soak else None
            workers = [pub_worker, *stable, *([churn] if churn else [])]
            for i in range(args.publishers):
                await pub_worker.call(http, "/join", {"name": f"pub{i}"})
            # During a soak, `churners` subscribers live in their own worker and are
            # replaced one at a time; the stable ones measure latency undisturbed.
            churners = min(args.churners, args.subscribers) if churn else 0
            live_churn: list[str] = []
            for i in range(args.subscribers):
                name = f"sub{i}"
                worker = churn if i < churners and churn else stable[i % len(stable)]
                owner[name] = worker
                await worker.call(http, "/join", {"name": name})
                if worker is churn:
                    live_churn.append(name)
            await asyncio.sleep(3)
            for w in workers:
                await w.stats(http)
            await asyncio.sleep(1.1)  # a fresh probe snapshot
            c0, f0, t0 = common.cpu_split(proc.pid), await forwarded(), time.monotonic()
            hop0 = hop_last = read_probe(probe)
            rss: list[tuple[float, float]] = []
            windows: list[dict[str, Any]] = []
            duration = args.soak or args.seconds
            next_churn, next_window = args.churn_interval, 60.0
            joined = args.subscribers
            stable_stats: list[dict[str, Any]] = []
            churn_stats: list[dict[str, Any]] = []
            while (elapsed := time.monotonic() - t0) < duration:
                await asyncio.sleep(0.5)
                if churn and live_churn and elapsed >= next_churn:
                    next_churn += args.churn_interval
                    victim = live_churn.pop(0)
                    await churn.call(http, "/leave", {"name": victim})
                    owner.pop(victim, None)
                    name = f"sub{joined}"
                    joined += 1
                    owner[name] = churn
                    await churn.call(http, "/join", {"name": name})
                    live_churn.append(name)
                if not rss or elapsed - rss[-1][0] >= (10 if args.soak else 1):
                    rss.append((round(elapsed, 1), round(common.rss_mb(proc.pid), 1)))
                if args.soak and elapsed >= next_window:
                    next_window += 60.0
                    s = [await w.stats(http) for w in stable]
                    stable_stats += s
                    if churn:
                        churn_stats.append(await churn.stats(http))
                    h = merge(s)
                    hop_now = read_probe(probe)
                    hop_w = hist_diff(hop_now, hop_last)
                    hop_last = hop_now
                    windows.append(
                        {
                            "hop_p50": hist_percentile(hop_w, 0.5),
                            "hop_p99": hist_percentile(hop_w, 0.99),
                            "hop_max": hist_percentile(hop_w, 1.0),
                            "t": round(elapsed),
                            "p50": hist_percentile(h, 0.5),
                            "p99": hist_percentile(h, 0.99),
                            "max": hist_percentile(h, 1.0),
                            "n": sum(h.values()),
                        }
                    )
            c1, f1, t1 = common.cpu_split(proc.pid), await forwarded(), time.monotonic()
            await asyncio.sleep(1.1)
            hop = hist_diff(read_probe(probe), hop0)
            stable_stats += [await w.stats(http) for w in stable]
            if churn:
                churn_stats.append(await churn.stats(http))
            pub_stats = await pub_worker.stats(http)
            received = sum(s["received"] for s in stable_stats + churn_stats)
            result = {
                "cpu_s": sum(c1) - sum(c0),
                "user_s": c1[0] - c0[0],
                "sys_s": c1[1] - c0[1],
                "packets": f1 - f0,
                "wall_s": t1 - t0,
                "hist": merge(stable_stats),
                "hop": hop,
                "churn_hist": merge(churn_stats),
                "received": received,
                "client_lag_ms": max(s["max_loop_lag_ms"] for s in [*stable_stats, pub_stats]),
                "client_cpu_s": {
                    "publisher": pub_stats["cpu_s"],
                    "subscribers": [s["cpu_s"] for s in stable_stats[-len(stable) :]],
                },
                "rss_mb": rss,
                "windows": windows,
                "joined": joined,
            }
    finally:
        for w in workers:
            w.stop()
        proc.terminate()
        proc.wait(10)
        await runner.cleanup()
        for path in (probe, probe + ".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(path)
    return result


def run_relay(args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            str(common.ROOT / "bench" / "_media_relay.py"),
            "--seconds",
            str(args.seconds),
            "--subscribers",
            str(args.relay_subscribers),
        ],
        capture_output=True,
        text=True,
        check=True,
        # CPU-bound (decode + encode): never real-time, whatever --rt says
        preexec_fn=lambda: os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0)),
        timeout=args.seconds + 120,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--sub-procs", type=int, default=2, help="subscriber worker processes (stable subscribers)")
    parser.add_argument("--relay-subscribers", type=int, default=2)
    parser.add_argument("--soak", type=float, default=0, help="soak for N seconds with joins and leaves")
    parser.add_argument("--churners", type=int, default=2, help="soak: subscribers that are replaced in turn")
    parser.add_argument("--churn-interval", type=float, default=5.0, help="soak: seconds between leave+join")
    parser.add_argument("--skip-relay", action="store_true")
    parser.add_argument(
        "--rt",
        type=int,
        default=0,
        help="run every bench process SCHED_RR at this priority (root): the latency figures then measure"
        " the SFU, not the other jobs of a shared machine; the processes are event-driven (< 1 core together)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling niceness for every bench process (negative needs root): on a shared, loaded machine"
        " this keeps other jobs from dominating the latency figures",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        default=[],
        help="also run the media_server package found in this directory (e.g. a copy of the previous version),"
        " concurrently with the same load, so both see the same machine noise",
    )
    parser.add_argument(
        "--compare-python",
        action="store_true",
        help="also run this tree's SFU with MEDIA_NATIVE=0 (no C fast path), concurrently",
    )
    parser.add_argument(
        "--transport-cc",
        action="store_true",
        help="subscribers accept transport-cc and send feedback every 100 ms (the SFU offers it; its estimator"
        " then also adapts what is forwarded: see --null-estimator). With --compare DIR (a tree from before"
        " transport-cc) both SFUs get the same clients",
    )
    parser.add_argument(
        "--null-estimator",
        action="store_true",
        help="with --transport-cc: the SFU feeds a no-op estimator, so the forwarding stays as without"
        " transport-cc and the difference to --compare DIR is what the transport-cc wiring costs",
    )
    parser.add_argument("--sfu-log", help="write the SFU's stderr (logs) to this file")
    parser.add_argument(
        "--vp8-deltas",
        action="store_true",
        help="video payloads carry VP8 picture IDs and every subscriber stream rewrites them (as after a layer switch)",
    )
    parser.add_argument(
        "--memtrace",
        help="SFU: trace allocations (tracemalloc, slow) and append RSS/malloc/top-growth snapshots"
        " every 20 s to this file (bench/_media_sfu_probe.py)",
    )
    parser.add_argument(
        "--slow-steps",
        action="store_true",
        help="log every SFU event-loop step using > 2 ms CPU (see --sfu-log)",
    )
    args = parser.parse_args()
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by every subprocess
    if args.rt:  # SCHED_RR, inherited; the kernel still caps RT tasks at sched_rt_runtime_us (95 %)
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(args.rt))

    async def run_all() -> list[dict[str, Any]]:
        roots = [common.ROOT, *(root.resolve() for root in args.compare)]
        runs = [run_sfu(args, root) for root in roots]
        if args.compare_python:
            runs.append(run_sfu(args, common.ROOT, {"MEDIA_NATIVE": "0"}))
        return list(await asyncio.gather(*runs))

    load_before = os.getloadavg()[0]
    results = asyncio.run(run_all())
    print(
        f"machine: nproc={os.cpu_count()}  python={sys.version.split()[0]}"
        f"  loadavg before/after={load_before:.1f}/{os.getloadavg()[0]:.1f}"
    )
    labels = ["current", *(f"compare {root}" for root in args.compare)]
    if args.compare_python:
        labels.append("current, pure-Python path (MEDIA_NATIVE=0)")
    for label, sfu in zip(labels, results, strict=True):
        print(f"== {label}")
        report_sfu(args, sfu)
    if not args.skip_relay and not args.soak:
        us = results[0]["cpu_s"] * 1e6 / max(1, results[0]["packets"])
        report_relay(args, us)


def report_sfu(args: argparse.Namespace, sfu: dict[str, Any]) -> None:
    us = sfu["cpu_s"] * 1e6 / max(1, sfu["packets"])
    hist = sfu["hist"]
    print(
        f"SFU: {args.publishers} publishers x {args.subscribers} subscribers, {sfu['wall_s']:.0f} s, {sfu['packets']} packets forwarded "
        f"({sfu['packets'] / sfu['wall_s']:.0f}/s), SFU CPU {sfu['cpu_s']:.2f} s"
    )
    print(
        f"  CPU per forwarded packet : {us:.1f} us  (user {sfu['user_s'] * 1e6 / max(1, sfu['packets']):.1f}"
        f" + kernel {sfu['sys_s'] * 1e6 / max(1, sfu['packets']):.1f}; the kernel share includes loopback delivery"
        " to the subscriber processes)"
    )
    print(f"  forwarded A+V streams/core (1.2 Mbit/s, {STREAM_PPS} pkt/s): {1e6 / (us * STREAM_PPS):.0f}")
    hop = sfu["hop"]
    print(
        f"  SFU hop latency (publisher send -> SFU sendto of every copy) p50/p99/p99.9/max: {hist_percentile(hop, 0.5):.2f}"
        f" / {hist_percentile(hop, 0.99):.2f} / {hist_percentile(hop, 0.999):.2f} / {hist_percentile(hop, 1.0):.2f} ms"
        f" (n={sum(hop.values())} incoming packets)"
    )
    print(
        f"  latency publisher->subscriber p50/p99/p99.9/max: {hist_percentile(hist, 0.5):.2f} / {hist_percentile(hist, 0.99):.2f}"
        f" / {hist_percentile(hist, 0.999):.2f} / {hist_percentile(hist, 1.0):.2f} ms (n={sum(hist.values())}, "
        f"{'stable subscribers' if args.soak else 'all subscribers'}; max client loop lag {sfu['client_lag_ms']:.1f} ms)"
    )
    print(f"  received by subscribers: {sfu['received']}  client CPU s: {sfu['client_cpu_s']}")
    print(f"  SFU RSS MB over time (s, MB): {sfu['rss_mb']}")
    if args.soak:
        ch = sfu["churn_hist"]
        print(
            f"  soak: {sfu['joined']} subscribers joined in total ({args.churners} churning, one leave+join every {args.churn_interval:g} s)"
        )
        print(
            f"  churning subscribers' latency p50/p99: {hist_percentile(ch, 0.5):.2f} / {hist_percentile(ch, 0.99):.2f} ms (n={sum(ch.values())})"
        )
        for w in sfu["windows"]:
            print(
                f"  window to t={w['t']} s: SFU hop p50 {w['hop_p50']:.2f} / p99 {w['hop_p99']:.2f} / max {w['hop_max']:.1f} ms;"
                f" end-to-end p50 {w['p50']:.2f} / p99 {w['p99']:.2f} / max {w['max']:.1f} ms (n={w['n']})"
            )


def report_relay(args: argparse.Namespace, us: float) -> None:
    relay = run_relay(args)
    rus = relay["cpu_s"] * 1e6 / max(1, relay["packets"])
    per_stream_core = relay["cpu_s"] / relay["wall_s"] / relay["subscribers"]
    print(
        f"MediaRelay baseline: {relay['subscribers']} subscribers of a 720p VP8 stream, {relay['wall_s']:.0f} s, {relay['packets']} packets, CPU {relay['cpu_s']:.2f} s"
    )
    print(f"  CPU per forwarded packet : {rus:.0f} us")
    print(f"  720p streams/core         : {1 / per_stream_core:.1f}  (CPU per subscriber: {per_stream_core:.2f} core)")
    print(f"  RSS MB (1 s samples)      : {relay['rss_mb']}")
    print(f"RATIO: SFU is {rus / us:.0f}x cheaper per forwarded packet than MediaRelay")


if __name__ == "__main__":
    main()
