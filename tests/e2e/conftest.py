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
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import CHROMIUM, chromium_args

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CLONE_NEWNET = 0x40000000
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up:\n{log.read_text()[-3000:]}")


@dataclass
class Netns:
    """A network namespace joined to the host by a veth pair."""

    name: str
    host_if: str
    host_ip: str
    ns_ip: str

    @classmethod
    def create(cls, index: int) -> Netns:
        pid = os.getpid()
        ns = cls(
            name=f"conf-e2e-{pid}",
            host_if=f"ce{pid % 10_000_000}h",
            host_ip=f"10.231.{index}.1",
            ns_ip=f"10.231.{index}.2",
        )
        peer = f"ce{pid % 10_000_000}n"
        _run("ip", "netns", "add", ns.name)
        try:
            _run("ip", "link", "add", ns.host_if, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", peer, "netns", ns.name)
            _run("ip", "addr", "add", f"{ns.host_ip}/24", "dev", ns.host_if)
            _run("ip", "link", "set", ns.host_if, "up")
            _run("ip", "netns", "exec", ns.name, "ip", "addr", "add", f"{ns.ns_ip}/24", "dev", peer)
            _run("ip", "netns", "exec", ns.name, "ip", "link", "set", peer, "up")
            _run("ip", "netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        except BaseException:
            ns.destroy()
            raise
        return ns

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
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

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


@pytest.fixture(scope="session")
def stack(netns: Netns) -> Iterator[Stack]:
    """daphne on the veth host address + the media server + a Celery worker, sharing a fresh database."""
    workdir = Path(tempfile.mkdtemp(prefix="conference-e2e-"))
    web_port = _free_port(netns.host_ip)
    media_port = _free_port("127.0.0.1")
    base_url = f"http://{netns.host_ip}:{web_port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "CONFERENCE_ENV": "local",
        "DJANGO_DEBUG": "1",
        "DJANGO_ALLOWED_HOSTS": f"{netns.host_ip},127.0.0.1,localhost",
        "DJANGO_CSRF_TRUSTED_ORIGINS": base_url,
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{media_port}",
        "MEDIA_CONTROL_HOST": "127.0.0.1",
        "MEDIA_CONTROL_PORT": str(media_port),
        "MEDIA_EVENTS_URL": f"{base_url}/internal/media/v1/events",
        "MEDIA_ICE_ADDRESSES": netns.host_ip,
        "MEDIA_DEV": "1",
        # Last-N pools video m-lines above 2 other videos (default 16) so that tests/e2e/test_lastn.py covers
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
    for folder in ("spool", "media", "celery/queue", "celery/processed"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    with _database(env, workdir):
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        stack = Stack(base_url=base_url, env=env, workdir=workdir)
        commands = {
            "web": [PYTHON, "-m", "daphne", "-b", netns.host_ip, "-p", str(web_port), "conference.asgi:application"],
            "media": [PYTHON, "-m", "media_server"],
            # Composes recordings (recordings/tasks.py; needs ffmpeg). Not waited for: tasks wait in the queue.
            "worker": [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "conference",
                "worker",
                "--concurrency",
                "1",
                "-l",
                "info",
                "-n",
                f"e2e{os.getpid()}@%h",
            ],
        }
        try:
            for name, cmd in commands.items():
                log = workdir / f"{name}.log"
                stack.logs[name] = log
                with log.open("wb") as out:
                    stack.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
            _wait_http(f"{base_url}/healthz", stack.procs[0], stack.logs["web"])
            _wait_http(f"http://127.0.0.1:{media_port}/v1/health", stack.procs[1], stack.logs["media"])
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
        print("\n--- web log ---\n" + stack.log_tail("web"))
        print("\n--- media log ---\n" + stack.log_tail("media"))
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
