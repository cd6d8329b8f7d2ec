"""End-to-end harness: real daphne + media server + Chromium with fake devices, isolated in a network namespace.

Network rule: test traffic stays on loopback or inside the namespace this
harness creates. A veth pair links the host (``10.231.<n>.1``) to a fresh
namespace (``10.231.<n>.2``). Daphne listens on the host end only, the media
server gathers ICE candidates on it only (``MEDIA_ICE_ADDRESSES``), and
Chromium runs inside the namespace, whose only non-loopback interface is the
veth: every browser candidate is ``10.231.<n>.2``. The media server's control
API stays on 127.0.0.1. Everything is torn down at session end, even on
failure.

The database is a temporary SQLite file, or with ``DATABASE_URL`` (CI) a
fresh PostgreSQL database ``conference_e2e_<pid>``; with ``REDIS_URL`` the
channel layer uses a per-run prefix.

``E2E_TOPOLOGY=2web2media`` (tests/e2e/topology.py) runs the same suite on two
daphne processes behind nginx (deploy/nginx/conference.conf, listening on the
veth host address; daphne on loopback) and two media servers registered in
Redis, which Django places rooms on (``.ci/run`` runs the suite in both).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import CHROMIUM, chromium_args, second_chromium
from firefox_harness import DENY_DEVICES, FirefoxDriver, FirefoxPage, VirtualDisplay, firefox_missing, xvfb_missing
from topology import (
    ServiceStack,
    Topology,
    free_port,
    nginx_command,
    render_nginx,
    service_stack,
    topology_from_env,
    topology_missing,
    wait_http,
)

from tests.conftest import redis_delete_prefix, redis_test_prefix, redis_test_url

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CLONE_NEWNET = 0x40000000
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TOPOLOGY = topology_from_env()


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def _netns_lock() -> Iterator[None]:
    """Held while a namespace's subnet is chosen and its host address added: test runs started side by side
    (several suites on one machine) would otherwise pick the same subnet and break each other's routes."""
    with open(Path(tempfile.gettempdir()) / "conference-e2e-netns.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_index(preferred: int) -> int:
    """The first of ``preferred``, ``preferred + 1``, … (1…250, wrapping) whose ``10.231.<n>.0/24`` has no
    address on this (the root) namespace; every test namespace's host end is there."""
    shown = subprocess.run(["ip", "-4", "-o", "addr"], check=True, capture_output=True, text=True).stdout
    used = {int(n) for n in re.findall(r"inet 10\.231\.(\d+)\.", shown)}
    for step in range(250):
        index = (preferred - 1 + step) % 250 + 1
        if index not in used:
            return index
    raise RuntimeError("no free 10.231.<n>.0/24 subnet for a test namespace")


def _remove_stale_namespaces() -> None:
    """Remove the namespaces (and their veths) of test runs that died without cleaning up (killed, e.g.)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name, pid, tag in re.findall(r"^(conf-e2e-(\d+)([a-z]?))\b", listed, flags=re.MULTILINE):
        if not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "link", "del", f"ce{int(pid) % 10_000_000}{tag}h"], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _tbf(rate: str) -> list[str]:
    """A token bucket at ``rate``: a queue of at most 200 ms at that rate plus a burst of a few packets."""
    return ["tbf", "rate", rate, "burst", "5kb", "latency", "200ms"]


@dataclass
class Netns:
    """A network namespace joined to the host by a veth pair."""

    name: str
    host_if: str
    host_ip: str
    ns_ip: str

    @classmethod
    def create(cls, index: int, tag: str = "") -> Netns:
        """``tag`` (one character) names a second namespace of the same run. ``index`` is the preferred
        subnet (``10.231.<index>.0/24``); the nearest one no other namespace uses is taken (:func:`_netns_lock`)."""
        with _netns_lock():
            _remove_stale_namespaces()
            return cls._create(_free_index(index), tag)

    @classmethod
    def _create(cls, index: int, tag: str) -> Netns:
        pid = os.getpid()
        ns = cls(
            name=f"conf-e2e-{pid}{tag}",
            host_if=f"ce{pid % 10_000_000}{tag}h",
            host_ip=f"10.231.{index}.1",
            ns_ip=f"10.231.{index}.2",
        )
        peer = f"ce{pid % 10_000_000}{tag}n"
        _run("ip", "netns", "add", ns.name)
        try:
            # No IPv6 inside: a new veth gets a link-local address that turns valid ~1-2 s after the link is up
            # (duplicate address detection), and a Chromium (or Firefox) already loading a page sees that as a
            # network change and aborts its requests (net::ERR_NETWORK_CHANGED; the call page's module graph
            # then fails half-loaded). The tests use IPv4 only.
            _run(
                "ip", "netns", "exec", ns.name, "sysctl", "-q", "-w",
                "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
            )  # fmt: skip
            _run("ip", "link", "add", ns.host_if, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", peer, "netns", ns.name)
            _run("ip", "addr", "add", f"{ns.host_ip}/24", "dev", ns.host_if)
            _run("ip", "link", "set", ns.host_if, "up")
            _run("ip", "netns", "exec", ns.name, "ip", "addr", "add", f"{ns.ns_ip}/24", "dev", peer)
            _run("ip", "netns", "exec", ns.name, "ip", "link", "set", peer, "up")
            _run("ip", "netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
            # Other namespaces' host addresses (daphne, the media server) are reached through this one's host end.
            _run("ip", "netns", "exec", ns.name, "ip", "route", "add", "default", "via", ns.host_ip)
        except BaseException:
            ns.destroy()
            raise
        return ns

    def shape(self, rate: str) -> None:
        """Limit what the host sends into the namespace (the browser's downlink) to ``rate`` with ``tc tbf``.

        The queue holds at most 200 ms at that rate (plus a burst of a few packets), like a
        modest access link; netem is not available here, so there is no added delay or random loss.
        """
        _run("tc", "qdisc", "replace", "dev", self.host_if, "root", *_tbf(rate))

    def unshape(self) -> None:
        """Remove the downlink limit of :meth:`shape` (back to the veth's own queue)."""
        _run("tc", "qdisc", "del", "dev", self.host_if, "root")

    def shape_uplink(self, rate: str) -> None:
        """Limit what leaves the namespace (the browser's uplink) to ``rate``: ``tc tbf`` on the egress of its
        own end of the veth pair, inside the namespace, with the same queue as :meth:`shape`."""
        _run("ip", "netns", "exec", self.name, "tc", "qdisc", "replace", "dev", self.ns_if, "root", *_tbf(rate))

    @property
    def ns_if(self) -> str:
        """The namespace's end of the veth pair (``…h`` is the host's, ``…n`` this one)."""
        return self.host_if[:-1] + "n"

    def lose(self, probability: float) -> None:
        """Drop each UDP datagram entering or leaving the namespace with ``probability`` (iptables statistic)."""
        for chain in ("INPUT", "OUTPUT"):
            _run(
                "ip", "netns", "exec", self.name, "iptables", "-A", chain, "-p", "udp", "-m", "statistic",
                "--mode", "random", "--probability", str(probability), "-j", "DROP",
            )  # fmt: skip

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block (on this thread) inside the namespace; processes spawned there stay in it."""
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        original = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
            try:
                yield
            finally:
                if libc.setns(original, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")
        finally:
            os.close(target)
            os.close(original)


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    workdir: Path
    topology: Topology = TOPOLOGY
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def media_control_url(self, room_id: str) -> str:
        """The control URL of the media server hosting ``room_id`` (its placement, with several nodes)."""
        if not self.topology.registry:
            return self.env["MEDIA_CONTROL_URL"]
        import json

        import redis

        client = redis.Redis.from_url(self.env["MEDIA_REDIS_URL"])
        try:
            prefix = self.env["MEDIA_REDIS_PREFIX"]
            node = client.get(f"{prefix}:media:room:{room_id}")
            record = client.get(f"{prefix}:media:node:{node.decode()}") if node else None
        finally:
            client.close()
        if record is None:
            raise AssertionError(f"room {room_id} is not placed on a live media node")
        return str(json.loads(record)["control_url"])

    def manage(self, code: str) -> str:
        """Run Python with Django set up against the e2e database; returns stdout."""
        script = "import django; django.setup()\n" + code
        out = subprocess.run([PYTHON, "-c", script], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        return out.stdout

    def create_user(self, username: str, password: str) -> None:
        self.manage(
            "from django.contrib.auth.models import User\n"
            f"User.objects.create_user(username={username!r}, password={password!r})\n"
        )

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""


def _requirements_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a network namespace"
    if not Path(CHROMIUM).exists():
        return f"needs {CHROMIUM}"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


@contextlib.contextmanager
def _database(env: dict[str, str], workdir: Path) -> Iterator[None]:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(workdir / "e2e.sqlite3")
        yield
        return
    import dj_database_url
    import psycopg

    parsed = dj_database_url.parse(url)
    name = f"conference_e2e_{os.getpid()}"
    admin = {
        "host": parsed.get("HOST") or "127.0.0.1",
        "port": parsed.get("PORT") or 5432,
        "user": parsed.get("USER") or "postgres",
        "password": parsed.get("PASSWORD") or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    env["DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield
    finally:
        with contextlib.suppress(Exception), psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def netns() -> Iterator[Netns]:
    missing = _requirements_missing()
    if missing:
        # tests/conftest.py deselects e2e tests outside CI when this is missing.
        pytest.fail(f"end-to-end tests cannot run: {missing}")
    ns = Netns.create(index=20 + os.getpid() % 200)
    try:
        yield ns
    finally:
        ns.destroy()


def _wait_registered(env: dict[str, str], count: int, timeout: float = 20.0) -> None:
    """Until ``count`` media nodes are registered (their first heartbeat)."""
    import redis

    client = redis.Redis.from_url(env["MEDIA_REDIS_URL"])
    try:
        deadline = time.monotonic() + timeout
        while client.zcard(f"{env['MEDIA_REDIS_PREFIX']}:media:load") < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} media nodes did not register in Redis")
            time.sleep(0.2)
    finally:
        client.close()


@pytest.fixture(scope="session")
def stack(netns: Netns) -> Iterator[Stack]:
    """daphne on the veth host address + the media server + a Celery worker, sharing a fresh database.

    With ``E2E_TOPOLOGY=2web2media``: nginx on the veth host address in front of two daphne processes,
    and two media servers that register in Redis.
    """
    missing = topology_missing(TOPOLOGY)
    if missing:
        pytest.fail(missing)
    workdir = Path(tempfile.mkdtemp(prefix="conference-e2e-"))
    web_port = free_port(netns.host_ip)
    media_ports = [free_port("127.0.0.1") for _ in range(TOPOLOGY.medias)]
    base_url = f"http://{netns.host_ip}:{web_port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "CONFERENCE_ENV": "local",
        "DJANGO_DEBUG": "1",
        "DJANGO_ALLOWED_HOSTS": f"{netns.host_ip},127.0.0.1,localhost",
        "DJANGO_CSRF_TRUSTED_ORIGINS": base_url,
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{media_ports[0]}",
        "MEDIA_CONTROL_HOST": "127.0.0.1",
        "MEDIA_CONTROL_PORT": str(media_ports[0]),
        "MEDIA_EVENTS_URL": f"{base_url}/internal/media/v1/events",
        "MEDIA_ICE_ADDRESSES": netns.host_ip,
        "MEDIA_DEV": "1",
        # Last-N pools video m-lines above 2 other videos (default 16) so that tests/e2e/test_browser_lastn.py covers
        # both modes with 3 and 4 browsers; it only matters in rooms with a last-N (a last_n setting or > 6 people).
        "MEDIA_MAX_VIDEO_MLINES": "2",
        # ... and pools audio m-lines above 2 other microphones (default 6): 4 browsers = pooled audio.
        "MEDIA_MAX_AUDIO_MLINES": "2",
        "ICE_SERVERS": "[]",
        "CHANNEL_PREFIX": f"e2e{os.getpid()}",
        "PYTHONUNBUFFERED": "1",
        # Recordings: the media server writes the spool, the worker composes it into MEDIA_ROOT; the
        # worker takes tasks from a private queue (Redis with REDIS_URL, as in CI, else files in workdir).
        "RECORDINGS_SPOOL_DIR": str(workdir / "spool"),
        "MEDIA_ROOT": str(workdir / "media"),
        "CELERY_QUEUE": f"e2e{os.getpid()}",
        "CELERY_FILESYSTEM_DIR": str(workdir / "celery"),
    }
    env.pop("MEDIA_SECRET", None)
    env.pop("CELERY_BROKER_URL", None)  # REDIS_URL if set, else filesystem:// (conference/settings.py)
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    env.pop("MEDIA_REDIS_URL", None)
    env.pop("PUBLIC_BASE_URL", None)
    redis_prefix = redis_test_prefix("e2e")
    if env.get("REDIS_URL"):  # the test database, every key under this run's prefix (deleted at the end)
        env["REDIS_URL"] = redis_test_url()
        env.update(CHANNEL_PREFIX=redis_prefix, CACHE_PREFIX=redis_prefix, CELERY_KEY_PREFIX=redis_prefix)
    if TOPOLOGY.registry:
        env["MEDIA_REDIS_URL"] = env["REDIS_URL"]
        env["MEDIA_REDIS_PREFIX"] = redis_prefix
    web_ports: list[int] = []
    if TOPOLOGY.behind_nginx:
        web_ports = [free_port("127.0.0.1") for _ in range(TOPOLOGY.webs)]
        private_port = free_port("127.0.0.1")
        env["PUBLIC_BASE_URL"] = base_url  # nginx passes Host without the port
        env["MEDIA_EVENTS_URL"] = (
            f"http://127.0.0.1:{private_port}/internal/media/v1/events"  # nginx's private listener
        )
    for folder in ("spool", "media", "celery/queue", "celery/processed"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    with _database(env, workdir):
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        stack = Stack(base_url=base_url, env=env, workdir=workdir)
        daphne = [PYTHON, "-m", "daphne"]
        # name -> (command, environment changes, health URL)
        commands: dict[str, tuple[list[str], dict[str, str], str | None]] = {}
        if TOPOLOGY.behind_nginx:
            for index, port in enumerate(web_ports):
                name = "web" if index == 0 else f"web{index + 1}"
                cmd = [*daphne, "-b", "127.0.0.1", "-p", str(port), "conference.asgi:application"]
                commands[name] = (cmd, {}, f"http://127.0.0.1:{port}/healthz")
            main = render_nginx(
                workdir,
                listen=f"{netns.host_ip}:{web_port}",
                web_ports=web_ports,
                private_port=private_port,
                redirect_port=free_port("127.0.0.1"),
            )
            commands["nginx"] = (nginx_command(main), {}, f"{base_url}/healthz")
        else:
            cmd = [*daphne, "-b", netns.host_ip, "-p", str(web_port), "conference.asgi:application"]
            commands["web"] = (cmd, {}, f"{base_url}/healthz")
        for index, port in enumerate(media_ports):
            name = "media" if index == 0 else f"media{index + 1}"
            changes = {"MEDIA_CONTROL_PORT": str(port), "MEDIA_NODE_ID": f"e2e-{name}"}
            commands[name] = ([PYTHON, "-m", "media_server"], changes, f"http://127.0.0.1:{port}/v1/health")
        # Composes recordings (recordings/tasks.py; needs ffmpeg). Not waited for: tasks wait in the queue.
        worker = [PYTHON, "-m", "celery", "-A", "conference", "worker", "--concurrency", "1", "-l", "info"]
        commands["worker"] = ([*worker, "-n", f"e2e{os.getpid()}@%h"], {}, None)
        try:
            started: list[tuple[str, subprocess.Popen[bytes], str | None]] = []
            for name, (cmd, changes, health) in commands.items():
                log = workdir / f"{name}.log"
                stack.logs[name] = log
                with log.open("wb") as out:
                    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, **changes}, stdout=out, stderr=subprocess.STDOUT)
                stack.procs.append(proc)
                started.append((name, proc, health))
            for name, proc, health in started:
                if health is not None:
                    wait_http(health, proc, stack.logs[name])
            if TOPOLOGY.registry:
                _wait_registered(env, TOPOLOGY.medias)
            yield stack
        finally:
            for proc in stack.procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in stack.procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if env.get("REDIS_URL"):
                with contextlib.suppress(Exception):
                    redis_delete_prefix(redis_prefix)
            if os.environ.get("E2E_KEEP_LOGS"):
                print(f"\ne2e logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser(netns: Netns, stack: Stack) -> Iterator[Any]:
    """One headless Chromium (fake camera, microphone and screen) running inside the namespace."""
    from playwright.sync_api import sync_playwright

    with netns.entered():  # the Node driver, and the Chromium it spawns, live in the namespace
        playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=chromium_args(stack.base_url),
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def own_stack(request: pytest.FixtureRequest, netns: Netns, stack: Stack) -> Iterator[ServiceStack]:
    """A stack the test module owns, to kill and restart (topology.service_stack): one daphne and the media
    nodes named by the module's ``OWN_MEDIA_NODES``, registered in Redis under a private prefix."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    prefix = redis_test_prefix(f"e2e{name}")
    try:
        with service_stack(
            name=name,
            host_ip=netns.host_ip,
            base_env=stack.env,
            workdir=stack.workdir,
            redis_url=redis_test_url(),
            prefix=prefix,
            media_nodes=list(request.module.OWN_MEDIA_NODES),
        ) as result:
            yield result
    finally:
        redis_delete_prefix(prefix)


@pytest.fixture(scope="module")
def own_browser(browser: Any, own_stack: ServiceStack) -> Iterator[Any]:
    """A second Chromium from the same (namespaced) Playwright driver: ``own_stack``'s origin is another port."""
    with second_chromium(browser, own_stack.base_url) as second:
        yield second


@pytest.fixture(scope="session")
def firefox(netns: Netns, stack: Stack) -> Iterator[FirefoxDriver]:
    """One headless Firefox ESR (fake camera and microphone, default ICE preferences) inside the namespace,
    driven over WebDriver BiDi by tests/e2e/firefox/driver.mjs (see firefox_harness.py)."""
    missing = firefox_missing()
    if missing:
        pytest.fail(f"Firefox tests cannot run: {missing}")
    driver = FirefoxDriver(netns.name, stack.base_url, log_dir=stack.workdir)
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def firefox_denied(netns: Netns, stack: Stack) -> Iterator[FirefoxDriver]:
    """A second Firefox whose user refused camera and microphone: it joins to listen, and without a
    capture permission Firefox offers only mDNS host candidates (``<uuid>.local``), its default."""
    missing = firefox_missing()
    if missing:
        pytest.fail(f"Firefox tests cannot run: {missing}")
    driver = FirefoxDriver(netns.name, stack.base_url, log_dir=stack.workdir, prefs=DENY_DEVICES)
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def firefox_on_screen(netns: Netns, stack: Stack, request: pytest.FixtureRequest) -> Iterator[FirefoxDriver]:
    """A Firefox with a screen to share: not headless, on an Xvfb display of its own in the namespace
    (headless Firefox's getDisplayMedia finds no screen). Closing it closes its pages; their consoles are
    printed if the test failed."""
    missing = firefox_missing() or xvfb_missing()
    if missing:
        pytest.fail(f"Firefox screen-sharing tests cannot run: {missing}")
    display = VirtualDisplay(netns.name)
    try:
        driver = FirefoxDriver(netns.name, stack.base_url, log_dir=stack.workdir, display=display.name)
        try:
            yield driver
        finally:
            failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
            for page_id, lines in driver.consoles().items():
                if failed or os.environ.get("E2E_KEEP_LOGS"):
                    shown = [line for line in lines if not line.startswith("log:")]
                    print(f"\n--- Firefox (on a screen) console of page {page_id} ---\n" + "\n".join(shown[-60:]))
            driver.close()
    finally:
        display.close()


@pytest.fixture
def firefox_pages(firefox: FirefoxDriver, request: pytest.FixtureRequest, stack: Stack) -> Iterator[list[FirefoxPage]]:
    """Firefox pages opened by a test (``firefox.new_page()``); closed after it, console printed on failure."""
    opened: list[FirefoxPage] = []
    yield opened
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for page in opened:
        if failed or os.environ.get("E2E_KEEP_LOGS"):
            lines = [line for line in page.console_lines if not line.startswith("log:")]
            print(f"\n--- Firefox console of page {page.id} ---\n" + "\n".join(lines[-60:]))
        with contextlib.suppress(Exception):
            page.close()


class ShapedBrowsers:
    """``launch(rate, loss, uplink=)``: a Chromium in its own namespace whose downlink is shaped to ``rate``
    (tc tbf), whose uplink is shaped to ``uplink`` (tc tbf on its own end of the veth) and/or that loses
    ``loss`` of its UDP datagrams each way (iptables statistic). ``netns(chromium)``: that browser's
    namespace, to change its shaping later; ``reshape(chromium, rate)`` changes its downlink limit (None:
    removes it).

    Each call makes a new namespace (own veth pair, ``10.231.<n>.0/24``) that reaches the
    stack through its host end. The session's Playwright driver launches it through
    ``ip netns exec`` (one sync Playwright per thread). Browsers and namespaces go away after the test.
    """

    def __init__(self, browser: Any, stack: Stack) -> None:
        self.browser = browser
        self.stack = stack
        self.made: list[tuple[Netns, Any]] = []

    def reshape(self, chromium: Any, rate: str | None) -> None:
        ns = self.netns(chromium)
        if rate:
            ns.shape(rate)
        else:
            ns.unshape()

    def __call__(self, rate: str | None = None, loss: float = 0.0, *, uplink: str | None = None) -> Any:
        n = len(self.made)
        ns = Netns.create(index=(20 + os.getpid() % 200 + 17 * (n + 1)) % 250 + 1, tag="stuvwxyz"[n])
        try:
            if rate:
                ns.shape(rate)
            if uplink:
                ns.shape_uplink(uplink)
            if loss:
                ns.lose(loss)
            wrapper = self.stack.workdir / f"chromium-{ns.name}"
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} "$@"\n')
            wrapper.chmod(0o755)
            chromium = self.browser.browser_type.launch(
                executable_path=str(wrapper), headless=True, args=chromium_args(self.stack.base_url)
            )
        except BaseException:
            ns.destroy()
            raise
        self.made.append((ns, chromium))
        return chromium

    def netns(self, chromium: Any) -> Netns:
        return next(ns for ns, launched in self.made if launched is chromium)

    def close(self) -> None:
        for ns, chromium in self.made:
            with contextlib.suppress(Exception):
                chromium.close()
            ns.destroy()


@pytest.fixture
def shaped_browser(browser: Any, stack: Stack) -> Iterator[ShapedBrowsers]:
    """Chromiums in namespaces of their own, shaped (:class:`ShapedBrowsers`); gone after the test."""
    shaped = ShapedBrowsers(browser, stack)
    try:
        yield shaped
    finally:
        shaped.close()


@pytest.fixture(scope="session")
def users(stack: Stack) -> dict[str, str]:
    """Accounts shared by the tests (username → password)."""
    accounts = {"hana": "host-pass-9-e2e", "ravi": "ravi-pass-9-e2e", "mona": "mona-pass-9-e2e"}
    for username, password in accounts.items():
        stack.create_user(username, password)
    return accounts


@pytest.fixture
def contexts(browser: Any, request: pytest.FixtureRequest, stack: Stack) -> Iterator[list[Any]]:
    """Browser contexts opened by a test (one per participant); closed after it, logs attached on failure."""
    opened: list[Any] = []
    yield opened
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        for name in stack.logs:
            if name != "worker":
                print(f"\n--- {name} log ---\n" + stack.log_tail(name))
    for ctx in opened:
        if failed or os.environ.get("E2E_KEEP_LOGS"):
            for page in ctx.pages:
                lines = [line for line in getattr(page, "console_lines", []) if not line.startswith("log:")]
                if lines:
                    print(f"\n--- console of {page.url} ---\n" + "\n".join(lines[-40:]))
        with contextlib.suppress(Exception):
            ctx.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
