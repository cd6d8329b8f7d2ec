"""TURN with time-limited credentials, end to end: Debian's coturn, daphne, the media server and Chromium.

The test starts its own ``turnserver`` (``use-auth-secret`` with a random
``static-auth-secret``) on the veth host address, and a second small stack —
daphne and the media server, sharing the session's database — configured
with ``TURN_SECRET``/``TURN_URLS`` (browsers, via the join grant) and
``MEDIA_TURN_SECRET``/``MEDIA_TURN_URLS`` (the media server's own agents).
Its pages wrap ``RTCPeerConnection`` to force ``iceTransportPolicy: "relay"``,
so media can only flow through coturn.

coturn relays to nothing but the test's own address: every peer address is
denied except the veth host address (where the media server and coturn's own
relay ports live).

What is proven:

* a browser that may only use relay candidates joins with the grant's TURN
  credentials and decodes another participant's video and audio; its selected
  candidate pairs are ``relay`` ones;
* coturn refuses expired credentials (and a wrong secret) with 401, from
  Python (aioice's TURN client) and from the browser (no relay candidate).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import create_room, join_call, log_in, new_page, participant_id, second_chromium, wait_media

from media_server.turn import turn_credentials

pytestmark = [pytest.mark.e2e, pytest.mark.coturn]

ROOT = Path(__file__).resolve().parents[2]
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
TTL = 600

FORCE_RELAY = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcConfigs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config, ...rest) {
      const forced = { ...(config || {}), iceTransportPolicy: "relay" };
      window.__pcConfigs.push(forced);
      super(forced, ...rest);
    }
    setConfiguration(config) { return super.setConfiguration({ ...(config || {}), iceTransportPolicy: "relay" }); }
  };
})();
"""

# The local candidate of each connection's selected pair (type and relay protocol).
SELECTED_PAIRS_JS = """
async () => {
  const out = {};
  for (const [name, pc] of Object.entries(window.conferenceCall.pcs)) {
    const report = await pc.getStats();
    for (const s of report.values()) {
      if (s.type !== "transport" || !s.selectedCandidatePairId) continue;
      const pair = report.get(s.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      const remote = pair && report.get(pair.remoteCandidateId);
      out[name] = {local: local && local.candidateType, relayProtocol: local && local.relayProtocol,
                   remote: remote && remote.candidateType, state: pair && pair.state};
    }
  }
  return out;
}
"""

# Gather with only the given TURN server and relay policy: relay candidates and ICE errors.
GATHER_JS = """
async (server) => {
  const pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: "relay" });
  const candidates = [], errors = [];
  pc.onicecandidateerror = (e) => errors.push({ code: e.errorCode, text: e.errorText, url: e.url });
  const done = new Promise((resolve) => {
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
    setTimeout(resolve, 15000);
  });
  pc.onicecandidate = (e) => { if (e.candidate && e.candidate.candidate) candidates.push(e.candidate.type); };
  pc.createDataChannel("probe");
  await pc.setLocalDescription(await pc.createOffer());
  await done;
  pc.close();
  return { candidates, errors };
}
"""


def _free_port(host: str) -> int:
    """A port free for both TCP and UDP on ``host`` (coturn listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no free TCP+UDP port on {host}")


def _wait(ready: Any, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up:\n{log.read_text(errors='replace')[-3000:]}")


def _http_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _tcp_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Coturn:
    host: str
    port: int
    secret: str
    log: Path

    @property
    def urls(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp,turn:{self.host}:{self.port}?transport=tcp"


@dataclass
class TurnStack:
    """What e2e_helpers.new_page needs (``base_url``), plus the coturn and logs of this module."""

    base_url: str
    coturn: Coturn
    logs: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def coturn(netns: Any, stack: Any) -> Iterator[Coturn]:
    """coturn on the veth host address: time-limited credentials only, relaying to that address only."""
    if not Path(TURNSERVER).exists():
        # tests/conftest.py deselects these tests outside CI when coturn is missing (marker `coturn`).
        pytest.fail("needs Debian's coturn (apt-get install coturn)")
    workdir = stack.workdir / "coturn"
    workdir.mkdir(exist_ok=True)
    turn = Coturn(host=netns.host_ip, port=_free_port(netns.host_ip), secret=secrets.token_hex(16), log=workdir / "log")
    cmd = [
        TURNSERVER,
        "-n",  # no configuration file: everything is on this command line
        f"--listening-ip={turn.host}",
        f"--relay-ip={turn.host}",
        f"--listening-port={turn.port}",
        "--use-auth-secret",
        f"--static-auth-secret={turn.secret}",
        "--realm=conference.test",
        "--fingerprint",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--no-multicast-peers",
        "--denied-peer-ip=0.0.0.0-255.255.255.255",
        "--denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        f"--allowed-peer-ip={turn.host}",
        f"--userdb={workdir / 'turndb'}",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--log-file={turn.log}",
        "--simple-log",
        "--verbose",  # logs each session's username, which the test looks for
    ]
    with (workdir / "stdout").open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: _tcp_up(turn.host, turn.port), proc, turn.log, "turnserver")
        yield turn
    finally:
        _stop([proc])


@pytest.fixture(scope="module")
def turn_stack(netns: Any, stack: Any, coturn: Coturn) -> Iterator[TurnStack]:
    """daphne + media server with TURN, on the session's database (its users work here too)."""
    web_port = _free_port(netns.host_ip)
    media_port = _free_port("127.0.0.1")
    base_url = f"http://{netns.host_ip}:{web_port}"
    env = {
        **stack.env,
        "DJANGO_CSRF_TRUSTED_ORIGINS": base_url,
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{media_port}",
        "MEDIA_CONTROL_PORT": str(media_port),
        "MEDIA_EVENTS_URL": f"{base_url}/internal/media/v1/events",
        "CHANNEL_PREFIX": f"e2eturn{os.getpid()}",
        # Its own daphne and media server even in E2E_TOPOLOGY=2web2media: no nginx, its own node registry.
        "PUBLIC_BASE_URL": base_url,
        "MEDIA_REDIS_PREFIX": f"e2eturn{os.getpid()}",
        "TURN_SECRET": coturn.secret,
        "TURN_URLS": coturn.urls,
        "TURN_TTL_SECONDS": str(TTL),
        "MEDIA_TURN_SECRET": coturn.secret,
        "MEDIA_TURN_URLS": coturn.urls,
        "MEDIA_TURN_TTL_SECONDS": str(TTL),
    }
    result = TurnStack(base_url=base_url, coturn=coturn)
    commands = {
        "turn-web": [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            netns.host_ip,
            "-p",
            str(web_port),
            "conference.asgi:application",
        ],
        "turn-media": [sys.executable, "-m", "media_server"],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, cmd in commands.items():
            log = stack.workdir / f"{name}.log"
            result.logs[name] = log
            with log.open("wb") as out:
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        _wait(lambda: _http_up(f"{base_url}/healthz"), procs[0], result.logs["turn-web"], "daphne")
        _wait(
            lambda: _http_up(f"http://127.0.0.1:{media_port}/v1/health"), procs[1], result.logs["turn-media"], "media"
        )
        yield result
    finally:
        _stop(procs)


@pytest.fixture(scope="module")
def turn_browser(browser: Any, turn_stack: TurnStack) -> Iterator[Any]:
    """A second Chromium from the same (namespaced) Playwright driver: this stack's origin is another port."""
    with second_chromium(browser, turn_stack.base_url) as second:
        yield second


@pytest.fixture
def turn_contexts(turn_stack: TurnStack, coturn: Coturn, request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        for name, log in {**turn_stack.logs, "coturn": coturn.log}.items():
            print(f"\n--- {name} log ---\n" + log.read_text(errors="replace")[-4000:])
        for ctx in opened:
            for page in ctx.pages:
                print(f"\n--- console of {page.url} ---\n" + "\n".join(getattr(page, "console_lines", [])[-40:]))
    for ctx in opened:
        with contextlib.suppress(Exception):
            ctx.close()


def _relay_page(turn_browser: Any, contexts: list[Any], turn_stack: TurnStack) -> Any:
    page = new_page(turn_browser, contexts, turn_stack)
    page.add_init_script(FORCE_RELAY)
    return page


def test_a_browser_forced_to_relay_joins_through_coturn_and_receives_video(
    turn_browser: Any, turn_contexts: list[Any], turn_stack: TurnStack, users: dict[str, str]
) -> None:
    host = _relay_page(turn_browser, turn_contexts, turn_stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Behind a strict NAT")
    join_call(host, room_id)
    guest = _relay_page(turn_browser, turn_contexts, turn_stack)
    join_call(guest, room_id, name="Nat (guest)")

    # The grant carried coturn with time-limited credentials, and every connection was forced to relay.
    grant = host.evaluate("() => window.conferenceCall.grant")
    (entry,) = grant["ice_servers"]
    assert entry["urls"] == turn_stack.coturn.urls.split(",")
    expiry, user = entry["username"].split(":")
    assert user == grant["participantId"] and 0 < int(expiry) - time.time() <= TTL
    configs = host.evaluate("() => window.__pcConfigs")
    assert configs and all(c["iceTransportPolicy"] == "relay" and c["iceServers"] for c in configs)

    wait_media(host, participant_id(guest), timeout=30)
    wait_media(guest, participant_id(host), timeout=30)
    for page in (host, guest):
        pairs = page.evaluate(SELECTED_PAIRS_JS)
        assert pairs.get("subscribe"), pairs
        for name, pair in pairs.items():
            assert pair["local"] == "relay", f"{name}: {pairs}"
    # coturn did the relaying for the participant the grant named, and the media server allocated its own relay.
    assert f":{grant['participantId']}" in turn_stack.coturn.log.read_text(errors="replace")
    assert "TURN allocation created" in turn_stack.logs["turn-media"].read_text(errors="replace")


def test_coturn_refuses_expired_credentials(turn_stack: TurnStack) -> None:
    """aioice's TURN client: fresh credentials allocate a relay; expired ones and a wrong secret get 401."""
    from aioice.stun import TransactionFailed
    from aioice.turn import create_turn_endpoint

    turn = turn_stack.coturn

    async def allocate(username: str, password: str) -> str:
        try:
            transport, _ = await asyncio.wait_for(
                create_turn_endpoint(asyncio.DatagramProtocol, (turn.host, turn.port), username, password), 10
            )
        except TransactionFailed as exc:
            return f"refused {exc.response.attributes.get('ERROR-CODE', ('?',))[0]}"
        relayed = transport.get_extra_info("sockname")
        transport.close()
        return f"relay {relayed[0]}"

    now = time.time()
    fresh = turn_credentials(secret=turn.secret, user="probe", ttl=60, now=now)
    expired = turn_credentials(secret=turn.secret, user="probe", ttl=60, now=now - 120)
    forged = turn_credentials(secret="not-the-secret", user="probe", ttl=60, now=now)

    def run(username: str, password: str) -> str:
        # Playwright's sync API keeps an event loop on this thread: run asyncio on another one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, allocate(username, password)).result(30)

    assert run(*fresh) == f"relay {turn.host}"
    assert run(*expired) == "refused 401"
    assert run(*forged) == "refused 401"


def test_a_browser_with_expired_credentials_gets_no_relay_candidate(
    turn_browser: Any, turn_contexts: list[Any], turn_stack: TurnStack
) -> None:
    turn = turn_stack.coturn
    page = new_page(turn_browser, turn_contexts, turn_stack)
    page.goto("/healthz")
    now = time.time()
    url = f"turn:{turn.host}:{turn.port}?transport=udp"

    def server(at: float) -> dict[str, Any]:
        username, credential = turn_credentials(secret=turn.secret, user="browser", ttl=60, now=at)
        return {"urls": [url], "username": username, "credential": credential}

    fresh = page.evaluate(GATHER_JS, server(now))
    assert "relay" in fresh["candidates"], fresh
    expired = page.evaluate(GATHER_JS, server(now - 120))
    assert "relay" not in expired["candidates"], expired
    assert any(e["code"] == 401 for e in expired["errors"]), expired
