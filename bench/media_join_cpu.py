"""The media server's own CPU per join (publish + subscribe connection), by thread CPU time, in one process.

    .venv/bin/python bench/media_join_cpu.py [--rooms 4] [--size 5] [--rounds 3] [--profile OUT.prof]
        [--steps] [--cameras-send] [--spare-mlines S] [--max-audio-mlines M]

Issue 19 item 2 (goal: at most 15 ms of media-server CPU per join). The media server runs as
``python -m media_server`` does (``media_server.__main__.serve``: every hook it installs, the control API on
127.0.0.1, its event sink) on its own event loop in its own thread; the participants are aiortc peer
connections on the main thread's loop, with a stand-in for Django's event endpoint that hands every pushed
``subscribe_offer`` to its subscriber (answered at once, as call.js does). Each participant publishes a
camera and a microphone whose tracks never produce a frame (``aiortc_hooks.IdleTrack``: every m-line is
negotiated, nothing is forwarded, as bench/load.py's server-CPU mode) and subscribes.

Rooms are filled one join at a time up to ``--size`` participants; a join is timed from its publish request
until both of its connections are connected on both sides, every offer the join caused is answered and
applied, and nothing new happened for ``SETTLE`` seconds. Its CPU is the server thread's CPU time
(``pthread_getcpuclockid``: neither the clients nor anything else on the machine counts, so the figure
holds under load) over that window, minus the server thread's idle rate per participant (timers, consent
checks, sender reports; measured with every room full) times the participants already there and the
window. The process's cyclic garbage collector runs between joins, not in them (one heap for the server
and the clients: a collection would land in whichever thread allocates). Printed per round and over all
rounds: the median and mean ms per join, the median by how many were in the room before (0 ..
``--size - 1``: a join re-offers each of them), and the leaves. ``--profile`` writes a cProfile of the
server thread (thread CPU time) over every join of every round (cProfile inflates Python-heavy code several
times: read it for proportions); ``--steps`` adds the server CPU per join of each step (the control API's
publish, subscribe and answer handlers, the re-offer passes, aiortc's connect task: ICE + DTLS, aioice's own
checks and consent checks), each counting only its own coroutine's execution.

To compare trees, copy this file into the other worktree and run it there, alternating (it imports the
``media_server`` of the tree it is in).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import dataclasses
import gc
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media_server import aiortc_hooks
from media_server.__main__ import serve
from media_server.config import Config

SECRET = "bench-secret"  # noqa: S105 (loopback bench)
AUTH = {"Authorization": f"Bearer {SECRET}"}
SETTLE = 0.25  # seconds without a new offer or state change before a join counts as done


class StepCpu:
    """``--steps``: the server thread's CPU per join step, each coroutine's own execution (its ``send``s), not
    what runs between them; nested steps count in the outer one."""

    def __init__(self) -> None:
        self.cpu: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.server: int | None = None  # the server thread's ident
        self.depth = 0

    def wrap(self, cls: Any, name: str, step: str) -> None:
        original = getattr(cls, name)
        steps = self

        async def timed(*args: Any, **kwargs: Any) -> Any:
            coroutine = original(*args, **kwargs)
            if threading.get_ident() != steps.server or steps.depth:
                return await coroutine
            steps.calls[step] += 1
            return await _Timed(coroutine, step, steps)

        setattr(cls, name, timed)

    def install(self) -> None:
        import aioice.ice
        import aiortc.rtcpeerconnection

        from media_server.room import Room
        from media_server.service import MediaService

        self.wrap(MediaService, "publish", "publish")
        self.wrap(MediaService, "subscribe", "subscribe (its offer)")
        self.wrap(MediaService, "subscribe_answer", "answers applied")
        self.wrap(Room, "renegotiate_all", "re-offers to the others")
        self.wrap(aiortc.rtcpeerconnection.RTCPeerConnection, "_RTCPeerConnection__connect", "connect (ICE+DTLS)")
        self.wrap(aioice.ice.Connection, "check_start", "own ICE checks")
        self.wrap(aioice.ice.Connection, "query_consent", "consent checks")


def install_camera_packets(delay: float = 0.03) -> None:
    """``--cameras-send``: each published camera "sends" one packet ``delay`` s after its publish request.

    The bench's cameras never produce a frame, so in the media server they look like cameras that are off,
    which force no m-line (docs/architecture.md *Large rooms*: a camera gets its m-line at its first packet).
    A browser's camera sends within ~0.1 s of its connection: this hands one VP8 packet (no keyframe: nothing
    here decodes) to the camera's forwarder on the server's loop, as the hooked receiver would, so the
    first-packet rule runs as in a call (main: a second re-offer of everyone shown it; spare m-lines: a
    mapping). The packet itself is forwarded to nobody yet (no subscriber has the camera).
    """
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import RtpPacket

    from media_server.room import Room

    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    original = Room.publish

    async def publish(self: Room, participant_id: str, pc_name: str, sdp: str) -> str:
        answer = await original(self, participant_id, pc_name, sdp)
        publisher = self.participants[participant_id].publishers[pc_name]
        for track in publisher.tracks:
            if track.source == "camera":
                packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=3000, ssrc=1)
                packet.payload = b"\x90\x80\x00\x01\x00\x00"
                asyncio.get_running_loop().call_later(delay, track.forwarder.on_rtp, packet, vp8)
        return answer

    Room.publish = publish  # type: ignore[method-assign]


class _Timed:
    def __init__(self, coroutine: Any, step: str, steps: StepCpu) -> None:
        self.coroutine, self.step, self.steps = coroutine, step, steps

    def __await__(self) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            self.steps.depth += 1
            start = time.thread_time()
            try:
                yielded = self.coroutine.throw(error) if error is not None else self.coroutine.send(value)
            except StopIteration as stop:
                return stop.value
            finally:
                self.steps.cpu[self.step] += time.thread_time() - start
                self.steps.depth -= 1
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # handed on to the coroutine, as await does
                value, error = None, exc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread(threading.Thread):
    """``serve(config)`` on its own event loop; ``cpu()`` is this thread's CPU time in seconds."""

    def __init__(self, config: Config) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.clock: int | None = None
        self.profile: cProfile.Profile | None = None
        self.steps: StepCpu | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.clock = time.pthread_getcpuclockid(threading.get_ident())
        if self.steps is not None:
            self.steps.server = threading.get_ident()

        async def main() -> None:
            self.stop = asyncio.Event()
            await serve(self.config, self.stop)

        self.loop.run_until_complete(main())

    def cpu(self) -> float:
        assert self.clock is not None
        return time.clock_gettime(self.clock)

    def call(self, fn: Any) -> None:
        """Run ``fn`` on the server thread (e.g. start/stop a profile there: cProfile is per thread)."""
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(10)

    def shutdown(self) -> None:
        if self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.join(20)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class Participant:
    def __init__(self, bench: Bench, room: str, name: str) -> None:
        self.bench, self.room, self.name = bench, room, name
        self.base = f"{bench.base}/v1/rooms/{room}/participants/{name}"
        self.pub = new_pc()
        self.sub = new_pc()
        self.tracks = [aiortc_hooks.IdleTrack("audio"), aiortc_hooks.IdleTrack("video")]

    async def join(self) -> None:
        http = self.bench.http
        for track in self.tracks:
            self.pub.addTransceiver(track, direction="sendonly")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        body = {"protocol": 1, "pc": "camera", "sdp": self.pub.localDescription.sdp}
        async with http.post(self.base + "/publish", json=body, headers=AUTH) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        await self.pub.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        async with http.post(self.base + "/subscribe", json={"protocol": 1}, headers=AUTH) as resp:
            offer = await resp.json()
            assert resp.status == 200, offer
        await self.answer(offer)

    async def answer(self, offer: dict[str, Any]) -> None:
        if offer.get("sdp") is None:
            return
        self.bench.pending += 1
        try:
            await self.sub.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            body = {"protocol": 1, "sdp": self.sub.localDescription.sdp, "revision": offer["revision"]}
            async with self.bench.http.post(self.base + "/subscribe/answer", json=body, headers=AUTH) as resp:
                assert resp.status == 204, await resp.text()
        finally:
            self.bench.pending -= 1
            self.bench.changed = time.monotonic()

    def settled(self) -> bool:
        return all(
            pc.remoteDescription is None or pc.connectionState == "connected" for pc in (self.pub, self.sub)
        ) and all(state == "connected" for state in self.bench.server_states.get((self.room, self.name), {}).values())

    async def leave(self) -> None:
        async with self.bench.http.delete(self.base, headers=AUTH) as resp:
            assert resp.status in (200, 204), await resp.text()
        await self.pub.close()
        await self.sub.close()
        for track in self.tracks:
            track.stop()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.participants: dict[tuple[str, str], Participant] = {}
        self.server_states: dict[tuple[str, str], dict[str, str]] = {}
        self.pending = 0
        self.offers = 0  # subscribe_offer events pushed
        self.changed = time.monotonic()
        self.tasks: set[asyncio.Task[None]] = set()
        self.http: aiohttp.ClientSession
        self.base = ""

    async def events(self, request: web.Request) -> web.Response:
        for event in (await request.json())["events"]:
            key = (event.get("room"), event.get("participant"))
            if event["type"] == "subscribe_offer" and key in self.participants:
                self.offers += 1
                task = asyncio.create_task(self.participants[key].answer(event))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif event["type"] == "peer_state":
                self.server_states.setdefault(key, {})[event["pc"]] = event["state"]
            self.changed = time.monotonic()
        return web.Response(status=204)

    async def settled(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.pending == 0
                and not self.tasks
                and time.monotonic() - self.changed >= SETTLE
                and all(p.settled() for p in self.participants.values())
            ):
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("the room did not settle")

    async def round(self, server: ServerThread, number: int) -> dict[str, Any]:
        """Fill ``--rooms`` rooms to ``--size``, one join at a time; ms of server CPU per join, by room size."""
        by_size: list[list[float]] = [[] for _ in range(self.args.size)]  # [i]: joins into a room of i others
        walls: list[float] = []
        step_cpu: collections.Counter[str] = collections.Counter()
        step_calls: collections.Counter[str] = collections.Counter()
        offers = self.offers
        idle = self.idle_rate  # per participant present
        for i in range(self.args.size):
            for r in range(self.args.rooms):
                room = f"r{number}-{r}"
                p = Participant(self, room, f"p{i}")
                self.participants[(room, p.name)] = p
                if self.profile is not None:
                    server.call(self.profile.enable)
                steps = server.steps
                before = (collections.Counter(steps.cpu), collections.Counter(steps.calls)) if steps else None
                wall, cpu = time.monotonic(), server.cpu()
                await p.join()
                await self.settled()
                cpu, wall = server.cpu() - cpu, time.monotonic() - wall
                if steps is not None and before is not None:
                    step_cpu.update(steps.cpu - before[0])
                    step_calls.update(steps.calls - before[1])
                if self.profile is not None:
                    server.call(self.profile.disable)
                by_size[i].append(1000 * (cpu - idle * (len(self.participants) - 1) * wall))
                walls.append(wall)
                gc.collect()  # outside the windows (the clients' garbage is collected by whichever thread allocates)
        joins = [ms for sizes in by_size for ms in sizes]
        offers = (self.offers - offers) / len(joins)
        await asyncio.sleep(0.5)
        wall, cpu = time.monotonic(), server.cpu()
        await asyncio.sleep(self.args.idle)
        self.idle_rate = (server.cpu() - cpu) / (time.monotonic() - wall) / len(self.participants)
        wall, cpu = time.monotonic(), server.cpu()
        for p in list(self.participants.values()):
            await p.leave()
        self.participants.clear()
        self.server_states.clear()
        await asyncio.sleep(SETTLE)
        present = len(self.participants) / 2  # on average while they leave
        leaves = server.cpu() - cpu - self.idle_rate * present * (time.monotonic() - wall)
        leaves /= self.args.rooms * self.args.size
        gc.collect()
        return {
            "by_size": by_size,
            "join_ms": statistics.mean(joins),
            "join_median_ms": statistics.median(joins),
            "leave_ms": 1000 * leaves,
            "idle_ms_per_s": 1000 * self.idle_rate,  # per participant
            "wall_ms": 1000 * statistics.median(walls),
            "offers": offers,  # offers pushed to the others per join (each join's own subscribe offer comes on top)
            "steps": {k: (1000 * v / len(joins), step_calls[k] / len(joins)) for k, v in step_cpu.most_common()},
        }

    async def run(self) -> None:
        port = free_port()
        fake = web.Application()
        fake.router.add_post("/internal/media/v1/events", self.events)
        runner = web.AppRunner(fake, access_log=None)
        await runner.setup()
        events_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", events_port).start()
        config = Config(
            control_port=port,
            secret=SECRET,
            events_url=f"http://127.0.0.1:{events_port}/internal/media/v1/events",
            node_id="bench",
            dev=True,
            ice_addresses=("127.0.0.1",),
        )
        if self.args.max_audio_mlines is not None:  # e.g. 0: microphones on pooled lines from the start
            config = dataclasses.replace(config, max_audio_mlines=self.args.max_audio_mlines)
        if self.args.spare_mlines is not None:
            if not hasattr(config, "spare_mlines"):
                raise SystemExit("--spare-mlines: this tree's media server has no spare m-lines")
            config = dataclasses.replace(config, spare_mlines=self.args.spare_mlines)
        server = ServerThread(config)
        if self.args.cameras_send:
            install_camera_packets()
        if self.args.steps:
            server.steps = StepCpu()
            server.steps.install()
        server.start()
        self.base = f"http://127.0.0.1:{port}"
        self.profile = cProfile.Profile(time.thread_time) if self.args.profile else None
        self.idle_rate = 0.0
        gc.disable()  # collected between joins instead (one heap for the server and the clients)
        async with aiohttp.ClientSession() as self.http:
            for _ in range(200):
                try:
                    async with self.http.get(self.base + "/v1/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            warm = await self.round(server, 0)  # first-use costs (imports, codec tables); also sets the idle rate
            print(f"warm-up: {warm['join_ms']:.1f} ms per join, idle {warm['idle_ms_per_s']:.2f} ms/s per participant")
            if self.profile is not None:
                self.profile = cProfile.Profile(time.thread_time)
            results = []
            for number in range(1, self.args.rounds + 1):
                load = Path("/proc/loadavg").read_text().split()[0]
                result = await self.round(server, number)
                results.append(result)
                sizes = " ".join(f"{statistics.median(ms):.1f}" for ms in result["by_size"])
                print(
                    f"round {number} (load {load}): join median {result['join_median_ms']:.2f} ms, mean"
                    f" {result['join_ms']:.2f} ms; median by others in the room (0..{self.args.size - 1}): {sizes};"
                    f" leave {result['leave_ms']:.2f} ms, idle {result['idle_ms_per_s']:.2f} ms/s per participant, join window"
                    f" median {result['wall_ms']:.0f} ms, {result['offers']:.1f} offers to the others per join",
                    flush=True,
                )
                if result["steps"]:
                    print(
                        "  per join: "
                        + ", ".join(f"{k} {ms:.2f} ms ({n:.1f}x)" for k, (ms, n) in result["steps"].items()),
                        flush=True,
                    )
            every = [ms for r in results for sizes in r["by_size"] for ms in sizes]
            by_size = [[ms for r in results for ms in r["by_size"][i]] for i in range(self.args.size)]
            print(
                f"all rounds: join median {statistics.median(every):.2f} ms, mean {statistics.mean(every):.2f} ms"
                f" ({len(every)} joins); median by others in the room: "
                + ", ".join(f"{i}: {statistics.median(ms):.2f}" for i, ms in enumerate(by_size))
                + f"; leave median {statistics.median(r['leave_ms'] for r in results):.2f} ms",
                flush=True,
            )
        gc.enable()
        server.shutdown()
        await runner.cleanup()
        if self.profile is not None:
            self.profile.dump_stats(self.args.profile)
            print(f"profile (server thread, CPU time, every measured join): {self.args.profile}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=4, help="rooms filled in turn (one join each in turn)")
    parser.add_argument("--size", type=int, default=5, help="participants per room")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (after a warm-up round)")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle-rate measurement per round")
    parser.add_argument(
        "--max-audio-mlines", type=int, help="MEDIA_MAX_AUDIO_MLINES (microphones pooled above it; default 6)"
    )
    parser.add_argument(
        "--spare-mlines", type=int, help="MEDIA_SPARE_MLINES (spare m-lines per kind per offer; 0: none; default 2)"
    )
    parser.add_argument(
        "--cameras-send", action="store_true", help="each camera sends one packet after its publish, as in a call"
    )
    parser.add_argument("--steps", action="store_true", help="also the server CPU per join step (publish, answers...)")
    parser.add_argument("--profile", help="write a cProfile (server thread CPU time) of the joins here")
    asyncio.run(Bench(parser.parse_args()).run())


if __name__ == "__main__":
    main()
