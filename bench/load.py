"""Load test of the whole stack: N rooms x M synthetic participants, join time, media, server CPU/RSS.

    .venv/bin/python bench/load.py --rooms 1 --participants 100 --video-publishers 6 --speakers 3 \\
        --warm 6 --join-interval 0.3 --seconds 60                      # one 100-person meeting
    .venv/bin/python bench/load.py --rooms 50 --participants 2 --warm 1 --concurrent-joins 50 \\
        --seconds 10                                                   # 50 concurrent joins

Starts the real stack on 127.0.0.1 (``--web`` daphne processes and one
``python -m media_server``; PostgreSQL/Redis when DATABASE_URL/REDIS_URL are
set: a fresh database named after DATABASE_URL's is created and dropped,
otherwise a SQLite file and the in-memory layer), registers a host, creates
the rooms over REST and runs the participants in ``--client-procs`` worker
processes (bench/_load_clients.py: REST join + room socket + publish +
subscribe like call.js, a pre-encoded VP8/Opus clip sent without an encoder,
packet-level receive without decoding).

Realistic rooms: every participant offers a video and an audio m-line (as
call.js does: camera off / muted = no packets); the first
``--video-publishers`` of each room send video, the first ``--speakers`` send
audio, the rest are muted listeners. ``--mlines sending`` offers only what is
sent instead. Every participant subscribes (today: to every track; after
last-N, to what the server picks).

Phases: ``--warm`` participants per room join first, one after the other
(``--warm-interval``), and are not measured; then the others join in groups of
``--concurrent-joins`` every ``--join-interval`` s. Join time = REST join call
→ first complete remote video keyframe received, for participants with a
remote video publisher in their room; with a breakdown by step. Then the room
is held for ``--seconds`` (the steady window): received bitrate, frames and
loss (sequence gaps) per participant, the media server's /metrics deltas,
CPU (utime+stime from /proc) and RSS per process, servers and clients apart.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fractions
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _media_common as common
import aiohttp
from _media_relay import encode_loop
from chat_fanout import Node, drop_database, post, prepare_database

SECRET = "load-bench-secret-loopback-only-0123456789"  # noqa: S105 (loopback-only benchmark; >= 32 chars)
JOIN_GOAL_MS = 500.0
CPU_GOAL_MS = 30.0  # server CPU (web + media) per join, issue 19
BACKGROUND_SECONDS = 2.0  # CPU rate of every process measured this long before the measured joins
STEPS = (
    ("rest", "REST join"),
    ("socket", "socket join (room_snapshot)"),
    ("pub_offer", "publish offer created (ICE gathered)"),
    ("pub_answer", "publish answer"),
    ("sub_reply", "subscribe offer (reply)"),
    ("sub_answer", "subscribe answered (last before first frame)"),
    ("pub_connected", "publish ICE+DTLS connected"),
    ("sub_connected", "subscribe ICE+DTLS connected"),
    ("first_video_packet", "first video packet"),
    ("first_frame", "first complete keyframe"),
)
COUNTED = (  # cumulative per-participant counters of the client workers (deltas over the steady window)
    "rx_packets",
    "rx_bytes",
    "rx_video_packets",
    "rx_lost",
    "rx_frames",
    "rx_rtx_packets",
    "tx_packets",
    "tx_dropped",
    "keyframe_requests",
)
MEDIA_COUNTERS = (
    "received_packets_total",
    "forwarded_packets_total",
    "forwarded_bytes_total",
    "dropped_packets_total",
    "nacks_received_total",
    "retransmitted_packets_total",
    "keyframe_requests_received_total",
    "keyframe_requests_sent_total",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rooms", type=int, default=1)
    p.add_argument("--participants", type=int, default=10, help="per room (2-100)")
    p.add_argument("--video-publishers", type=int, default=6, help="per room: the first K send video")
    p.add_argument("--speakers", type=int, default=2, help="per room: the first S send audio; the rest are muted")
    p.add_argument(
        "--mlines",
        choices=("browser", "sending"),
        default="browser",
        help="browser: everyone offers video+audio m-lines (call.js); sending: only what is sent",
    )
    p.add_argument("--warm", type=int, default=1, help="per room: participants joined before the measured joins")
    p.add_argument("--warm-interval", type=float, default=0.3, help="s between two warm joins")
    p.add_argument("--concurrent-joins", type=int, default=1, help="measured joins started at once")
    p.add_argument("--join-interval", type=float, default=0.5, help="s between two groups of measured joins")
    p.add_argument("--join-timeout", type=float, default=30.0, help="s until a join without a frame counts as failed")
    p.add_argument("--seconds", type=float, default=30.0, help="steady window after the joins")
    p.add_argument("--client-procs", type=int, default=2, help="client worker processes")
    p.add_argument("--web", type=int, default=1, help="daphne processes (more than 1 needs REDIS_URL)")
    p.add_argument("--video-size", default="640x360")
    p.add_argument("--video-kbps", type=int, default=600)
    p.add_argument(
        "--media-slow-ms",
        type=float,
        default=0,
        help="log media-server event-loop steps using more CPU than this (bench/_media_sfu_probe.py) to media.log",
    )
    p.add_argument(
        "--profile",
        help="cProfile (CPU time, bench/_cpu_profile.py) the media server and every daphne for the whole run;"
        " the stats go to DIR/media.prof, DIR/web0.prof, ... (python -m pstats; CPU figures are then inflated)",
    )
    p.add_argument("--json", help="also write the full result to this file")
    p.add_argument("--logs", help="keep the media server's and client workers' logs (and raw /metrics) here")
    args = p.parse_args(argv)
    if not 2 <= args.participants <= 100:
        p.error("--participants must be 2..100 (the rooms' capacity range)")
    if args.web > 1 and not os.environ.get("REDIS_URL"):
        p.error("--web > 1 needs REDIS_URL (the channel layer is shared between processes)")
    args.warm = min(args.warm, args.participants - 1)
    return args


def make_clip(path: Path, size: str, kbps: int, fps: int = 30) -> None:
    """2 s of VP8 (keyframe first, then inter frames only) and 1 s of Opus, written as JSON."""
    import av

    width, height = (int(v) for v in size.split("x"))
    video = encode_loop(2.0, width, height, kbps * 1000)  # 30 fps
    ctx: Any = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = 48000, "mono", "s16", 32000
    ctx.time_base = fractions.Fraction(1, 48000)
    audio: list[bytes] = []
    for i in range(51):
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        tone = (int(8000 * math.sin(2 * math.pi * 440 * (i * 960 + j) / 48000)) for j in range(960))
        frame.planes[0].update(struct.pack("<960h", *tone))
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        audio += [bytes(packet) for packet in ctx.encode(frame)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "fps": fps,
                "video": [base64.b64encode(f).decode() for f in video],
                "audio": [base64.b64encode(a).decode() for a in audio[:50]],
            }
        )
    )
    tmp.replace(path)


def clip_facts(path: Path) -> dict[str, float]:
    clip = json.loads(path.read_text())
    video = [base64.b64decode(f) for f in clip["video"]]
    audio = [base64.b64decode(a) for a in clip["audio"]]
    return {
        "video_kbps": round(sum(map(len, video)) * 8 / (len(video) / clip["fps"]) / 1000),
        "keyframe_bytes": len(video[0]),
        "audio_kbps": round(sum(map(len, audio)) * 8 / (len(audio) * 0.02) / 1000),
    }


def participant_specs(args: argparse.Namespace, rooms: list[str], access: str) -> list[dict[str, Any]]:
    """Who joins where, sends what, and when (offsets within their phase)."""
    specs: list[dict[str, Any]] = []
    warm_n = measure_n = 0
    for i in range(args.participants):  # i-th participant of every room, rooms interleaved
        for r, room in enumerate(rooms):
            sends_video, sends_audio = i < args.video_publishers, i < args.speakers
            warm = i < args.warm
            others = [j for j in range(args.participants) if j != i and j < args.video_publishers]
            if warm:
                offset = warm_n * args.warm_interval
                warm_n += 1
                expect_video = any(j < i for j in others)
            else:
                offset = (measure_n // max(1, args.concurrent_joins)) * args.join_interval
                measure_n += 1
                expect_video = bool(others)
            browser = args.mlines == "browser"
            specs.append(
                {
                    "name": f"r{r}p{i}",
                    "room": room,
                    "access": access if i == 0 else None,  # each room's first participant is its host (JWT)
                    "phase": "warm" if warm else "measure",
                    "offset": offset,
                    "sends_video": sends_video,
                    "sends_audio": sends_audio,
                    "video_mline": browser or sends_video,
                    "audio_mline": browser or sends_audio,
                    "expect_video": expect_video,
                }
            )
    return specs


class ClientWorker:
    """One bench/_load_clients.py process (line commands on stdin, JSON lines on stdout)."""

    def __init__(self, index: int, spec_path: Path, log: Any) -> None:
        self.index, self.spec_path, self.log = index, spec_path, log
        self.proc: asyncio.subprocess.Process

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(common.ROOT / "bench" / "_load_clients.py"),
            str(self.spec_path),
            cwd=common.ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log,
            limit=64 * 1024 * 1024,
        )
        await self.read()

    async def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 120)
        if not line:
            raise RuntimeError(f"client worker {self.index} exited (see --logs)")
        return dict(json.loads(line))

    async def command(self, *words: object) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(map(str, words)) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.read()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Sampler:
    """CPU seconds and RSS of named processes, sampled every second."""

    pids: dict[str, int]
    samples: list[tuple[float, dict[str, tuple[float, float]]]] = field(default_factory=list)

    def sample(self) -> tuple[float, dict[str, tuple[float, float]]]:
        now: dict[str, tuple[float, float]] = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                now[name] = (common.cpu_seconds(pid), common.rss_mb(pid))
        point = (time.monotonic(), now)
        self.samples.append(point)
        return point

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(1.0)

    def cpu_percent(self, t0: float, t1: float) -> dict[str, float]:
        inside = [s for s in self.samples if t0 - 0.6 <= s[0] <= t1 + 0.6]
        if len(inside) < 2:
            return {}
        (a_t, a), (b_t, b) = inside[0], inside[-1]
        return {n: round((b[n][0] - a[n][0]) / (b_t - a_t) * 100, 1) for n in b if n in a}

    def rss(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for _, point in self.samples:
            for name, (_, rss) in point.items():
                r = out.setdefault(name, {"start": rss, "peak": rss, "end": rss})
                r["peak"], r["end"] = max(r["peak"], rss), rss
        return out


async def media_metrics(http: aiohttp.ClientSession, base: str, keep: Path | None = None) -> dict[str, float]:
    """The media server's /metrics, summed over labels, plus the labelled RTT/loss stats."""
    async with http.get(base + "/metrics", headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        text = await resp.text()
    if keep is not None:
        keep.write_text(text)
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        key = name.removeprefix("conference_media_")
        if "{stat=" in key:
            out[key] = float(value)
            key = key.split("{")[0]
            continue
        key = key.split("{")[0]
        out[key] = out.get(key, 0.0) + float(value)
    return out


def progress(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    return round(common.percentile(values, q), 1) if values else float("nan")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """(monotonic time, utime+stime seconds) of every process that still runs."""
    out: dict[str, tuple[float, float]] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            out[name] = (time.monotonic(), common.cpu_seconds(pid))
    return out


def cpu_delta(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """(elapsed s, CPU s) per process between two snapshots."""
    return {n: (b[n][0] - a[n][0], b[n][1] - a[n][1]) for n in b if n in a}


def cpu_per_join(
    joins: dict[str, tuple[float, float]], background: dict[str, tuple[float, float]], n: int
) -> dict[str, dict[str, float]]:
    """CPU ms per measured join for media, web (all daphne) and clients (all workers): ``raw`` = the
    processes' CPU over the join phase / n; ``net`` = the same less what they used per second just before
    the joins (warm publishers' media, timers) times the phase's length."""
    groups = {"media": ("media",), "web": ("web",), "clients": ("client",)}
    out: dict[str, dict[str, float]] = {}
    for group, prefixes in groups.items():
        names = [name for name in joins if name.startswith(prefixes)]
        raw = sum(joins[name][1] for name in names)
        idle = sum(background[name][1] / background[name][0] * joins[name][0] for name in names if name in background)
        out[group] = {"raw": round(raw / max(1, n) * 1000, 1), "net": round((raw - idle) / max(1, n) * 1000, 1)}
    out["server"] = {k: round(out["media"][k] + out["web"][k], 1) for k in ("raw", "net")}
    out["joins"] = {"raw": float(n), "net": float(n)}
    return out


async def wait_phase(workers: list[ClientWorker], expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = [await w.command("status") for w in workers]
        if sum(s["joined"] + s["failed"] for s in status) >= expected:
            return
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark (stack, clients, phases) and return the result dict."""
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="conf-load-") as tmp_name:
        tmp = Path(tmp_name)
        logs = Path(args.logs) if args.logs else tmp
        logs.mkdir(parents=True, exist_ok=True)
        media_port = common.free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "conference.settings",
            "CONFERENCE_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "CHANNEL_PREFIX": f"load{tag}",
            "CACHE_PREFIX": f"load{tag}",
            "AUTH_THROTTLE_RATE": "10000/minute",
            "THROTTLES_ENABLED": "0",  # hundreds of joins from one address: the rate limits would refuse them
            "MEDIA_CONTROL_URL": f"http://127.0.0.1:{media_port}",
            "MEDIA_SECRET": SECRET,
            "RECORDINGS_SPOOL_DIR": str(tmp / "spool"),
        }
        if not os.environ.get("REDIS_URL"):
            env.pop("REDIS_URL", None)
        progress("migrating a fresh database")
        dbname = await asyncio.to_thread(prepare_database, env, tmp_name)
        clip_path = common.ROOT / "var" / "bench-clips" / f"clip-{args.video_size}-{args.video_kbps}.json"
        if not clip_path.exists():  # encoded once, then reused (var/ is not versioned)
            progress("encoding the clip")
            clip_path.parent.mkdir(parents=True, exist_ok=True)
            make_clip(clip_path, args.video_size, args.video_kbps)
        clip = clip_facts(clip_path)
        nodes: list[Node] = []
        workers: list[ClientWorker] = []
        media: subprocess.Popen[bytes] | None = None
        sampler_task: asyncio.Task[None] | None = None
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            progress("starting daphne and the media server")
            profiles = Path(args.profile) if args.profile else None
            if profiles is not None:
                profiles.mkdir(parents=True, exist_ok=True)
            nodes = [Node(env, str(profiles / f"web{i}.prof") if profiles else None) for i in range(args.web)]
            media_command = [sys.executable, "-m", "media_server"]
            if profiles is not None:
                wrapper = str(common.ROOT / "bench" / "_cpu_profile.py")  # CPU time, not wall time
                media_command = [sys.executable, wrapper, str(profiles / "media.prof"), "-m", "media_server"]
            elif args.media_slow_ms:
                media_command = [sys.executable, "bench/_media_sfu_probe.py", "--slow-ms", str(args.media_slow_ms)]
            media = subprocess.Popen(
                media_command,
                cwd=common.ROOT,
                env={
                    **env,
                    "MEDIA_CONTROL_PORT": str(media_port),
                    "MEDIA_EVENTS_URL": f"{nodes[0].base}/internal/media/v1/events",
                    "MEDIA_ICE_ADDRESSES": "127.0.0.1",
                },
                stderr=open(logs / "media.log", "wb"),
            )
            media_base = f"http://127.0.0.1:{media_port}"
            await asyncio.gather(*(n.ready(http) for n in nodes))
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    if (await media_metrics(http, media_base)) is not None:
                        break
                await asyncio.sleep(0.1)
            host = await post(
                http,
                nodes[0].base + "/api/v1/auth/register",
                {"username": f"load{tag}", "password": "Synthetic-Participants-4821"},
            )
            rooms = [
                (
                    await post(
                        http,
                        nodes[0].base + "/api/v1/rooms",
                        {"name": f"load {r}", "max_participants": max(2, args.participants)},
                        host["access"],
                    )
                )["roomId"]
                for r in range(args.rooms)
            ]
            progress(f"{len(rooms)} rooms created; starting client workers")
            specs = participant_specs(args, rooms, host["access"])
            procs = max(1, min(args.client_procs, len(specs)))
            for w in range(procs):
                mine = specs[w::procs]
                spec_path = tmp / f"worker{w}.json"
                node = nodes[w % len(nodes)]  # sockets spread over the web processes
                spec_path.write_text(
                    json.dumps(
                        {
                            "base": node.base,
                            "clip": str(clip_path),
                            "join_timeout": args.join_timeout,
                            "participants": mine,
                        }
                    )
                )
                workers.append(ClientWorker(w, spec_path, open(logs / f"client{w}.log", "wb")))
            await asyncio.gather(*(w.start() for w in workers))
            pids = {"media": media.pid, **{f"web{i}": n.proc.pid for i, n in enumerate(nodes)}}
            pids.update({f"client{w.index}": w.proc.pid for w in workers})
            sampler = Sampler(pids)
            sampler_task = asyncio.create_task(sampler.run())
            load: dict[str, float] = {"start": os.getloadavg()[0]}

            warm = [s for s in specs if s["phase"] == "warm"]
            measured = [s for s in specs if s["phase"] == "measure"]
            progress(f"{len(warm)} warm joins")
            t_warm = time.monotonic() + 0.2
            for w in workers:
                await w.command("start", "warm", t_warm)
            await wait_phase(workers, len(warm), args.join_timeout + len(warm) * args.warm_interval + 5)
            await asyncio.sleep(2.0)  # warm publishers are sending; the warm joins' ICE/DTLS is over
            background = cpu_snapshot(pids)
            await asyncio.sleep(BACKGROUND_SECONDS)  # what the processes use without joins (warm media, timers)
            background = cpu_delta(background, cpu_snapshot(pids))
            progress(f"{len(measured)} measured joins")
            t_join = time.monotonic() + 0.3
            for w in workers:
                await w.command("start", "measure", t_join)
            cpu_joins = cpu_snapshot(pids)
            last_start = max((s["offset"] for s in measured), default=0.0)
            await wait_phase(workers, len(specs), last_start + args.join_timeout + 5)
            t_joined = time.monotonic()
            cpu_joins = cpu_delta(cpu_joins, cpu_snapshot(pids))
            load["after_joins"] = os.getloadavg()[0]
            await asyncio.sleep(2.0)  # renegotiations of the last joins settle

            progress(f"steady window of {args.seconds:g} s")
            before = [await w.command("mark") for w in workers]
            m_before = await media_metrics(http, media_base, logs / "media-metrics-before.txt")
            t_steady = time.monotonic()
            sampler.sample()
            await asyncio.sleep(args.seconds)
            sampler.sample()
            t_end = time.monotonic()
            after = [await w.command("mark") for w in workers]
            m_after = await media_metrics(http, media_base, logs / "media-metrics-after.txt")
            load["end"] = os.getloadavg()[0]
            progress("stopping")
            final = [await w.command("stop") for w in workers]
            result = summarize(
                args, specs, clip, before, after, final, m_before, m_after, sampler, (t_join, t_joined, t_steady, t_end)
            )
            result["loadavg"] = {k: round(v, 2) for k, v in load.items()}
            result["cpu_per_join_ms"] = cpu_per_join(cpu_joins, background, len(measured))
            result["database"] = "PostgreSQL" if dbname else "SQLite"
            result["channel_layer"] = "Redis" if env.get("REDIS_URL") else "in-memory"
            progress("stopping the stack")
            return result
        finally:
            if sampler_task is not None:
                sampler_task.cancel()
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            await http.close()
            if media is not None:
                media.terminate()
                try:
                    media.wait(10)
                except subprocess.TimeoutExpired:
                    media.kill()
            for n in nodes:
                n.stop()
            await asyncio.to_thread(drop_database, dbname)


def summarize(
    args: argparse.Namespace,
    specs: list[dict[str, Any]],
    clip: dict[str, float],
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    final: list[dict[str, Any]],
    m_before: dict[str, float],
    m_after: dict[str, float],
    sampler: Sampler,
    times: tuple[float, float, float, float],
) -> dict[str, Any]:
    t_join, t_joined, t_steady, t_end = times
    window = t_end - t_steady
    by_name = {s["name"]: s for s in specs}
    joins = {name: j for f in final for name, j in f["joins"].items()}
    measured = [n for n, s in by_name.items() if s["phase"] == "measure" and s["expect_video"]]
    ok = [n for n in measured if "first_frame" in joins.get(n, {}).get("times", {})]
    failed = {
        n: f"{joins.get(n, {}).get('error') or 'no frame'} (steps reached: {joins.get(n, {}).get('times')};"
        f" received: {joins.get(n, {}).get('streams')})"
        for n in measured
        if n not in ok
    }
    join_ms = [joins[n]["times"]["first_frame"] for n in ok]
    steps = {}
    for key, label in STEPS:
        values = [joins[n]["times"][key] for n in ok if key in joins[n]["times"]]
        steps[key] = {"label": label, "p50": pct(values, 0.5), "p99": pct(values, 0.99), "n": len(values)}
    c0 = {n: c for b in before for n, c in b["participants"].items()}
    c1 = {n: c for a in after for n, c in a["participants"].items()}
    per: dict[str, dict[str, float]] = {}
    lines = {"video_forwarded": 0, "video_on": 0, "video_flowing": 0, "audio_flowing": 0, "complete": 0}
    for name, c in c1.items():
        d = {k: c[k] - c0.get(name, {}).get(k, 0) for k in COUNTED}
        flowing = {
            line for line, n in c["rx_by_line"].items() if n > c0.get(name, {}).get("rx_by_line", {}).get(line, 0)
        }
        video = [mid for mid in c["forwarded_video_on"] if f"video:{mid}" in flowing]
        lines["video_forwarded"] += len(c["forwarded_video"])
        lines["video_on"] += len(c["forwarded_video_on"])
        lines["video_flowing"] += len(video)
        lines["audio_flowing"] += sum(1 for line in flowing if line.startswith("audio:"))
        lines["complete"] += int(len(video) == len(c["forwarded_video_on"]))
        per[name] = {
            "kbps": d["rx_bytes"] * 8 / window / 1000,
            "fps": d["rx_frames"] / window,
            "lost": d["rx_lost"],
            "packets": d["rx_packets"],
            "tx_packets": d["tx_packets"],
            "tx_dropped": d["tx_dropped"],
            "streams": c["rx_streams"],
        }
    everyone = list(c1.values())
    forwarded_tracks = {
        "video_mlines_forwarded": lines["video_forwarded"],
        "video_mlines_camera_on": lines["video_on"],
        "video_mlines_flowing": lines["video_flowing"],
        "participants_all_forwarded_video_flowing": lines["complete"],
        "audio_mlines_flowing_mean": round(lines["audio_flowing"] / max(1, len(everyone)), 2),
        "last_n": sorted({c["last_n"] for c in everyone}, key=str),
        "audio_pooled": sum(1 for c in everyone if c["audio_pooled"]),
        "events": sum(c["forwarded_events"] for c in everyone),
        "remaps": sum(c["remaps"] for c in everyone),
        "reconnects": sum(c["reconnects"] for c in everyone),
    }
    rx_packets = sum(p["packets"] for p in per.values())
    rx_lost = sum(p["lost"] for p in per.values())
    kbps = [p["kbps"] for p in per.values()]
    media_delta = {k: m_after.get(k, 0.0) - m_before.get(k, 0.0) for k in MEDIA_COUNTERS}
    cpu_join = sampler.cpu_percent(t_join, t_joined)
    cpu_steady = sampler.cpu_percent(t_steady, t_end)
    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "logs")},
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "clip": clip,
        "participants": len(specs),
        "joins": {
            "measured": len(measured),
            "ok": len(ok),
            "failed": len(failed),
            "errors": dict(list(failed.items())[:10]),
            "p50": pct(join_ms, 0.5),
            "p90": pct(join_ms, 0.9),
            "p99": pct(join_ms, 0.99),
            "max": round(max(join_ms), 1) if join_ms else float("nan"),
            "phase_s": round(t_joined - t_join, 1),
            "goal_p99_ms": JOIN_GOAL_MS,
            "goal_met": bool(join_ms) and not failed and pct(join_ms, 0.99) < JOIN_GOAL_MS,
            "steps": steps,
            "times": {n: joins.get(n, {}).get("times") for n in measured},  # per participant, in join order
        },
        "steady": {
            "seconds": round(window, 1),
            "rx_kbps_mean": round(sum(kbps) / len(kbps), 1) if kbps else 0.0,
            "rx_kbps_min": round(min(kbps), 1) if kbps else 0.0,
            "rx_kbps_max": round(max(kbps), 1) if kbps else 0.0,
            "rx_fps_mean": round(sum(p["fps"] for p in per.values()) / max(1, len(per)), 1),
            "rx_packets": rx_packets,
            "rx_lost": rx_lost,
            "rx_loss_percent": round(100 * rx_lost / max(1, rx_packets + rx_lost), 3),
            "participants_receiving": sum(1 for p in per.values() if p["packets"] > 0),
            "forwarded_tracks": forwarded_tracks,
            "tx_packets": sum(p["tx_packets"] for p in per.values()),
            "tx_dropped": sum(p["tx_dropped"] for p in per.values()),
            "keyframe_restarts_total": sum(c["keyframe_requests"] for c in c1.values()),
            "media": {k: round(v / window, 1) for k, v in media_delta.items()},
            "media_gauges": {
                k: m_after.get(k, 0.0)
                for k in (
                    "peer_connections",
                    "published_tracks",
                    "subscriber_streams",
                    "publisher_packets_lost",
                    "subscriber_packets_lost",
                    'subscriber_fraction_lost{stat="mean"}',
                    'subscriber_fraction_lost{stat="max"}',
                    'subscriber_rtt_seconds{stat="mean"}',
                )
            },
        },
        "cpu_percent": {"joins": cpu_join, "steady": cpu_steady},
        "rss_mb": sampler.rss(),
        "client_max_loop_lag_ms": max(f["max_lag_ms"] for f in final),
        "socket_errors": [e for f in final for e in f["socket_errors"]][:20],
    }


def report(result: dict[str, Any]) -> None:
    cfg, j, s = result["config"], result["joins"], result["steady"]
    print(
        f"# load: {cfg['rooms']} room(s) x {cfg['participants']} participants ({result['participants']} in all),"
        f" {cfg['video_publishers']} video / {cfg['speakers']} speakers per room, m-lines: {cfg['mlines']},"
        f" {cfg['client_procs']} client procs, {cfg['web']} daphne, {result['database']}, {result['channel_layer']} layer"
    )
    c = result["clip"]
    print(
        f"# clip {cfg['video_size']} VP8 {c['video_kbps']} kbit/s (keyframe {c['keyframe_bytes']} B) + Opus"
        f" {c['audio_kbps']} kbit/s; machine: {result['machine']['cpus']} CPUs, {result['machine']['processor']},"
        f" Python {result['machine']['python']}; loadavg {result['loadavg']}"
    )
    print(
        f"\njoin (REST join -> first remote keyframe), {j['measured']} measured, {cfg['concurrent_joins']} at once"
        f" every {cfg['join_interval']} s, phase {j['phase_s']} s: ok {j['ok']}, failed {j['failed']}"
    )
    print("| | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    print(f"| join time | {j['p50']} | {j['p90']} | {j['p99']} | {j['max']} |")
    print(f"goal join p99 < {j['goal_p99_ms']:.0f} ms: {'met' if j['goal_met'] else 'NOT met'}")
    if j["errors"]:
        print(f"failed joins (first 10): {j['errors']}")
    cpu = result["cpu_per_join_ms"]
    print(
        f"server CPU per join (/proc utime+stime over the join phase / {cpu['joins']['raw']:.0f} joins, net of the rate"
        f" {BACKGROUND_SECONDS:g} s before): media {cpu['media']['net']} ms (raw {cpu['media']['raw']}), web"
        f" {cpu['web']['net']} ms (raw {cpu['web']['raw']}), server {cpu['server']['net']} ms (raw"
        f" {cpu['server']['raw']}; goal <= {CPU_GOAL_MS:g} ms: {'met' if cpu['server']['net'] <= CPU_GOAL_MS else 'NOT met'});"
        f" clients {cpu['clients']['net']} ms (raw {cpu['clients']['raw']})"
    )
    print("\nbreakdown (ms since the REST call, successful joins)\n| step | p50 | p99 | n |\n|---|---|---|---|")
    for step in j["steps"].values():
        print(f"| {step['label']} | {step['p50']} | {step['p99']} | {step['n']} |")
    m = s["media"]
    print(
        f"\nsteady window {s['seconds']} s: received per participant {s['rx_kbps_mean']} kbit/s mean"
        f" (min {s['rx_kbps_min']}, max {s['rx_kbps_max']}), {s['rx_fps_mean']} video frames/s;"
        f" {s['participants_receiving']}/{result['participants']} receiving"
    )
    f = s["forwarded_tracks"]
    print(
        f"forwarded_tracks (last_n {f['last_n']}, {f['audio_pooled']} with pooled audio): video m-lines fed"
        f" {f['video_mlines_forwarded']}, {f['video_mlines_camera_on']} of cameras that are on, of which"
        f" {f['video_mlines_flowing']} received packets;"
        f" {f['participants_all_forwarded_video_flowing']}/{result['participants']} participants received every"
        f" video they were told about; audio m-lines with packets {f['audio_mlines_flowing_mean']} per participant;"
        f" {f['events']} events, {f['remaps']} video re-maps, {f['reconnects']} reconnects (media_state failed)"
    )
    print(
        f"loss at receivers (sequence gaps): {s['rx_lost']} of {s['rx_packets'] + s['rx_lost']} packets"
        f" ({s['rx_loss_percent']} %); publishers dropped {s['tx_dropped']} of {s['tx_packets'] + s['tx_dropped']}"
        " sends (socket buffer full)"
    )
    print(
        f"media server: {m['received_packets_total']:.0f} pkt/s in, {m['forwarded_packets_total']:.0f} pkt/s out"
        f" ({m['forwarded_bytes_total'] * 8 / 1e6:.1f} Mbit/s), dropped {m['dropped_packets_total']:.1f}/s,"
        f" NACKs {m['nacks_received_total']:.1f}/s, keyframe requests in/out {m['keyframe_requests_received_total']:.2f}"
        f"/{m['keyframe_requests_sent_total']:.2f} per s; gauges {s['media_gauges']}"
    )
    print("\n| process | CPU % during joins | CPU % steady | RSS MB start / peak / end |\n|---|---|---|---|")
    for name, rss in result["rss_mb"].items():
        print(
            f"| {name} | {result['cpu_percent']['joins'].get(name, '')} | {result['cpu_percent']['steady'].get(name, '')}"
            f" | {rss['start']:.0f} / {rss['peak']:.0f} / {rss['end']:.0f} |"
        )
    print(f"client max event-loop lag {result['client_max_loop_lag_ms']} ms")
    if result["socket_errors"]:
        print(f"socket errors (first 20): {result['socket_errors']}")


def main() -> None:
    args = parse_args()
    result = asyncio.run(run(args))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
