"""Process layouts for the end-to-end stack (``E2E_TOPOLOGY``), and nginx rendered from deploy/nginx/conference.conf.

* ``1web1media`` (default): one daphne, one media server on ``MEDIA_CONTROL_URL``.
* ``2web2media``: two daphne processes behind Debian's nginx, two media servers registered in Redis
  (``MEDIA_REDIS_URL``) that Django places rooms on; PostgreSQL when ``DATABASE_URL`` is set (CI).
  Needs ``REDIS_URL`` and nginx.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
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
