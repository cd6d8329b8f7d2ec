"""Process layouts for the end-to-end stack (``E2E_TOPOLOGY``), and nginx rendered from deploy/nginx/conference.conf.

* ``1web1media`` (default): one daphne, one media server on ``MEDIA_CONTROL_URL``.
* ``2web2media``: two daphne processes behind Debian's nginx, two media servers registered in Redis
  (``MEDIA_REDIS_URL``) that Django places rooms on; PostgreSQL when ``DATABASE_URL`` is set (CI).
  Needs ``REDIS_URL`` and nginx.

``service_stack``: a stack a test module owns, to kill and restart its processes (issue 16's fault tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
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

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx" / "conference.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOPOLOGIES = {"1web1media": (1, 1), "2web2media": (2, 2)}


@dataclass(frozen=True)
class Topology:
    name: str
    webs: int
    medias: int

    @property
    def behind_nginx(self) -> bool:
        return self.webs > 1

    @property
    def registry(self) -> bool:
        """Media nodes register in Redis and Django places rooms (MEDIA_REDIS_URL)."""
        return self.medias > 1


def topology_from_env() -> Topology:
    name = os.environ.get("E2E_TOPOLOGY", "") or "1web1media"
    if name not in TOPOLOGIES:
        raise ValueError(f"E2E_TOPOLOGY={name!r}: expected one of {', '.join(TOPOLOGIES)}")
    webs, medias = TOPOLOGIES[name]
    return Topology(name=name, webs=webs, medias=medias)


def topology_missing(topology: Topology) -> str | None:
    if topology.registry and not os.environ.get("REDIS_URL"):
        return f"E2E_TOPOLOGY={topology.name} needs REDIS_URL (media node registry, channel layer)"
    if topology.behind_nginx and not Path(NGINX).exists():
        return f"E2E_TOPOLOGY={topology.name} needs Debian's nginx"
    return None


def render_nginx(workdir: Path, *, listen: str, web_ports: list[int], private_port: int, redirect_port: int) -> Path:
    """deploy/nginx/conference.conf for the test: its upstream and listeners pointed at test addresses.

    Plain HTTP on ``listen`` (host:port) instead of TLS on 443 (the browser treats the test origin as
    secure), no ``/static/`` alias (daphne's WhiteNoise serves static files), every other line as shipped.
    Returns the main nginx.conf, which includes the site file.
    """
    site = CONF.read_text()
    upstream = "".join(f"    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;\n" for port in web_ports)
    site, count = re.subn(r"(    server 127\.0\.0\.1:800\d [^\n]*\n)+", upstream, site)
    assert count == 1, "deploy/nginx/conference.conf: upstream servers not found"
    replacements = {
        "    listen 80;\n    listen [::]:80;\n": f"    listen 127.0.0.1:{redirect_port};\n",
        "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n": f"    listen {listen};\n",
        "listen 127.0.0.1:8081;": f"listen 127.0.0.1:{private_port};",
    }
    for old, new in replacements.items():
        assert site.count(old) == 1, f"deploy/nginx/conference.conf changed: {old!r} not found once"
        site = site.replace(old, new)
    site = re.sub(r"\n    ssl_[^\n]*", "", site)
    site, count = re.subn(r"\n    location /static/ \{[^}]*\}\n", "\n", site)
    assert count == 1, "deploy/nginx/conference.conf: the /static/ location not found"
    (workdir / "nginx-site.conf").write_text(site)
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    main = workdir / "nginx.conf"
    # As root, nginx's workers would run as nobody, who may not enter the private work directory.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"""daemon off;
{user}pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {workdir}/nginx-site.conf;
}}
"""
    )
    return main


def nginx_command(main: Path) -> list[str]:
    return [NGINX, "-p", str(main.parent), "-e", str(main.parent / "nginx-error.log"), "-c", str(main)]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    """Until ``url`` answers (any HTTP status); fails early if ``proc`` exits.

    90 s: a cold start of daphne or the media server (Django, Channels, aiortc imports) on a loaded 2-core
    machine. 30 s was too short: with a busy loop beside the browser layer (load ~19), two session stacks
    starting together each had a process still silent after 30 s, and every test of both runs errored.
    """
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
class ServiceStack:
    """A stack a test module owns (so it may ``kill -9`` and restart its processes): one daphne on the
    namespace's host address and media servers registered in Redis under a private prefix, sharing the
    session's database (its accounts work). ``base_url`` is what e2e_helpers.new_page needs.
    """

    base_url: str
    env: dict[str, str]
    workdir: Path
    name: str
    commands: dict[str, tuple[list[str], dict[str, str], str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def media_nodes(self) -> list[str]:
        return sorted(name for name in self.commands if name != "web")

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{self.name}-{name}.log"

    def start(self, name: str) -> None:
        """Start process ``name`` ("web" or a media node ID) and wait until it answers its health check."""
        cmd, changes, health = self.commands[name]
        log = self.log_path(name)
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **changes}, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        # A restart on a loaded 2-core machine: daphne's start-up alone took 16-26 s at load 30-40
        # (docs/benchmarks.md §5); wait_http's default allows 90 s.
        wait_http(health, proc, log)

    def kill(self, name: str) -> None:
        """``kill -9``: no clean shutdown, no deregistration."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.env["MEDIA_REDIS_URL"])

    def registered(self) -> list[str]:
        """The media nodes registered now."""
        client = self._redis()
        try:
            keys = client.keys(f"{self.env['MEDIA_REDIS_PREFIX']}:media:node:*")
            records = [json.loads(r) for r in client.mget(keys) if r is not None] if keys else []
        finally:
            client.close()
        return sorted(r["node"] for r in records)

    def wait_registered(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.registered() != self.media_nodes:
            if time.monotonic() > deadline:
                raise AssertionError(f"media nodes registered: {self.registered()}, expected {self.media_nodes}")
            time.sleep(0.1)

    def placement(self, room_id: str) -> str | None:
        """The media node the room is placed on."""
        client = self._redis()
        try:
            node = client.get(f"{self.env['MEDIA_REDIS_PREFIX']}:media:room:{room_id}")
        finally:
            client.close()
        return node.decode() if node else None

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextlib.contextmanager
def service_stack(
    *,
    name: str,
    host_ip: str,
    base_env: dict[str, str],
    workdir: Path,
    redis_url: str,
    prefix: str,
    media_nodes: list[str],
) -> Iterator[ServiceStack]:
    """Start a ServiceStack (media nodes first, then daphne with its failover monitor) and stop it afterwards."""
    web_port = free_port(host_ip)
    base_url = f"http://{host_ip}:{web_port}"
    env = {
        **base_env,
        "DJANGO_CSRF_TRUSTED_ORIGINS": base_url,
        "PUBLIC_BASE_URL": base_url,
        "MEDIA_EVENTS_URL": f"{base_url}/internal/media/v1/events",
        "CHANNEL_PREFIX": prefix,
        "MEDIA_REDIS_URL": redis_url,
        "MEDIA_REDIS_PREFIX": prefix,
    }
    result = ServiceStack(base_url=base_url, env=env, workdir=workdir, name=name)
    for node in media_nodes:
        port = free_port("127.0.0.1")
        result.commands[node] = (
            [sys.executable, "-m", "media_server"],
            {"MEDIA_CONTROL_PORT": str(port), "MEDIA_NODE_ID": node},
            f"http://127.0.0.1:{port}/v1/health",
        )
    web = [sys.executable, "-m", "daphne", "-b", host_ip, "-p", str(web_port), "conference.asgi:application"]
    result.commands["web"] = (web, {}, f"{base_url}/healthz")
    try:
        for node in media_nodes:
            result.start(node)
        result.start("web")  # also starts its failover monitor
        result.wait_registered()
        yield result
    finally:
        for proc in result.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in result.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
