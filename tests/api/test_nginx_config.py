"""deploy/nginx/conference.conf: `nginx -t`, then nginx on 127.0.0.1 in front of two daphne processes.

The repository's file is used as is except for the lines marked CHANGE (ports, certificate, static
root), rewritten to loopback test values. Needs Debian's nginx (installed by .ci/run).
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx" / "conference.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [pytest.mark.timeout(120), pytest.mark.nginx]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def render(tmp: Path, *, web_ports: list[int], http: int, https: int, private: int) -> Path:
    """The repository's site file with its CHANGE lines pointed at loopback test values, in a full nginx.conf."""
    cert, key = _self_signed(tmp)
    static = tmp / "static"
    static.mkdir()
    (static / "hello.txt").write_text("static ok")
    site = CONF.read_text()
    replacements = {
        "server 127.0.0.1:8001 ": f"server 127.0.0.1:{web_ports[0]} ",
        "server 127.0.0.1:8002 ": f"server 127.0.0.1:{web_ports[1]} ",
        "    listen 80;\n    listen [::]:80;\n": f"    listen 127.0.0.1:{http};\n",
        "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n": f"    listen 127.0.0.1:{https} ssl http2;\n",
        "/etc/ssl/certs/conference.pem": str(cert),
        "/etc/ssl/private/conference.key": str(key),
        "/srv/conference/var/static/": f"{static}/",
        "listen 127.0.0.1:8081;": f"listen 127.0.0.1:{private};",
    }
    for old, new in replacements.items():
        assert site.count(old) == 1, f"deploy/nginx/conference.conf changed: {old!r} not found once"
        site = site.replace(old, new)
    (tmp / "site.conf").write_text(site)
    temp = tmp / "temp"
    temp.mkdir()
    main = tmp / "nginx.conf"
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private temporary directory.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"""daemon off;
{user}pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp}/site.conf;
}}
"""
    )
    return main


def _nginx(main: Path, *args: str) -> list[str]:
    return [NGINX, "-p", str(main.parent), "-e", str(main.parent / "error.log"), "-c", str(main), *args]


def test_config_passes_nginx_syntax_check(tmp_path: Path) -> None:
    main = render(tmp_path, web_ports=[18001, 18002], http=18080, https=18443, private=18081)
    result = subprocess.run(_nginx(main, "-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, context: ssl.SSLContext | None = None) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not up at {url}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, int]]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "CONFERENCE_ENV": "test",
        "SQLITE_PATH": str(tmp_path / "web.sqlite3"),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)  # the in-memory layer: this test is about the proxy, not the cluster
    procs: list[subprocess.Popen[bytes]] = []
    ports = {"web1": _free_port(), "web2": _free_port(), "http": _free_port(), "https": _free_port()}
    ports["private"] = _free_port()
    try:
        daphne = str(Path(sys.executable).parent / "daphne")
        for name in ("web1", "web2"):
            procs.append(
                subprocess.Popen(
                    [daphne, "-b", "127.0.0.1", "-p", str(ports[name]), "conference.asgi:application"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        main = render(
            tmp_path,
            web_ports=[ports["web1"], ports["web2"]],
            http=ports["http"],
            https=ports["https"],
            private=ports["private"],
        )
        nginx = subprocess.Popen(_nginx(main), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(nginx)
        for proc, name in zip(procs[:2], ("web1", "web2"), strict=True):
            _wait_http(f"http://127.0.0.1:{ports[name]}/healthz", proc, name)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        _wait_http(f"https://127.0.0.1:{ports['https']}/static/hello.txt", nginx, "nginx", insecure)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def test_requests_and_a_websocket_through_nginx(stack: dict[str, int]) -> None:
    base = f"https://127.0.0.1:{stack['https']}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        async with http.get(f"http://127.0.0.1:{stack['http']}/healthz", allow_redirects=False) as r:
            assert r.status == 301 and r.headers["Location"].startswith("https://")
        for _ in range(4):  # both upstreams answer (least_conn alternates when idle)
            async with http.get(base + "/healthz") as r:
                assert r.status == 200
                assert (await r.json())["checks"] == {"database": "ok", "channel_layer": "ok"}
        async with http.get(base + "/static/hello.txt") as r:
            assert r.status == 200 and await r.text() == "static ok"
        for path in ("/metrics", "/internal/media/v1/events"):
            async with http.get(base + path) as r:
                assert r.status == 404, path
        async with http.post(base + "/api/v1/auth/token", data=b"x" * (2 * 1024 * 1024)) as r:
            assert r.status == 413  # client_max_body_size
        async with http.ws_connect(base + "/ws/rooms/abcdefabcdef/", headers={"Origin": "http://localhost"}) as ws:
            await ws.send_json({"type": "ping"})
            frame = await ws.receive_json(timeout=5)
            assert frame["type"] == "error" and frame["code"] == "join_first"
        async with http.post(f"http://127.0.0.1:{stack['private']}/internal/media/v1/events", json={"events": []}) as r:
            assert r.status == 401  # reached Django through the private listener (and needs the media secret)
