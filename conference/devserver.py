"""`make run`: web (daphne) + media server + Celery worker, on embedded defaults.

Starts the processes with their output in ``var/log/<name>.log``, prints the URL
once the web process answers ``/healthz`` (and where the logs are), and stops
them all when one exits or on Ctrl-C. Logs are quiet by default: warnings and
errors only (``LOG_LEVEL=INFO make run`` for more). Not for production (use a
process manager there; see README).

With ``REDIS_URL`` set, the media servers register in that Redis
(``MEDIA_REDIS_URL``) and Django places each room on one of them;
``--media-nodes N`` (``make run MEDIA_NODES=N``) then starts N media servers on
consecutive ports. Without Redis there is exactly one media server.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 120.0  # generous: a cold start takes seconds, many more on a busy 2-core machine


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (``var/log/web.log``), else absolute."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a process's log, indented for the terminal."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "".join(f"    {line}\n" for line in text.splitlines()[-lines:])


def wait_healthy(url: str, procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> str | None:
    """Until ``url`` answers 200; returns the name of a process that exited first, or "timeout"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                return name
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http:// URL
                if response.status == 200:
                    return None
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    return "timeout"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--media-port", type=int, default=8790)
    parser.add_argument(
        "--var", type=Path, default=ROOT / "var", help="folder for the logs (log/<process>.log) and Celery beat's state"
    )
    parser.add_argument(
        "--media-nodes", type=int, default=1, help="media servers to start (more than 1 needs REDIS_URL)"
    )
    args = parser.parse_args()
    args.var = args.var.resolve()
    if args.media_nodes < 1 or (args.media_nodes > 1 and not os.environ.get("REDIS_URL")):
        parser.error("--media-nodes above 1 needs REDIS_URL (the media node registry lives in Redis)")

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "MEDIA_CONTROL_URL": f"http://127.0.0.1:{args.media_port}",
        "MEDIA_EVENTS_URL": f"http://127.0.0.1:{args.port}/internal/media/v1/events",
        "MEDIA_CONTROL_PORT": str(args.media_port),
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("MEDIA_DEV", "1")
    # Quiet by default: warnings and errors only (Django's root logger, daphne, the Celery worker).
    env.setdefault("LOG_LEVEL", "WARNING")
    verbose = env["LOG_LEVEL"].upper() in {"INFO", "DEBUG"}
    env.setdefault("MEDIA_ICE_ADDRESSES", "127.0.0.1")
    # TURN (README "TURN"): `TURN_SECRET=… TURN_URLS=turn:127.0.0.1:3478 make run` enables it for browsers
    # (join grants) and for the media server, which mints its own credentials from the same secret.
    for name in ("TURN_SECRET", "TURN_URLS", "TURN_TTL_SECONDS"):
        if env.get(name):
            env.setdefault(f"MEDIA_{name}", env[name])
    # Several media nodes (README "Several media servers"): web and media share the registry in Redis.
    if env.get("REDIS_URL"):
        env.setdefault("MEDIA_REDIS_URL", env["REDIS_URL"])
    py = sys.executable
    commands: dict[str, list[str]] = {
        "web": [
            *(py, "-m", "daphne", "-v", "1" if verbose else "0"),
            *("-b", args.host, "-p", str(args.port), "conference.asgi:application"),
        ],
        # -B: embedded beat for the periodic recordings cleanup (one worker only, as here).
        "worker": [
            py,
            "-m",
            "celery",
            "-A",
            "conference",
            "worker",
            "-B",
            "-s",
            str(args.var / "celerybeat-schedule"),
            "-l",
            env["LOG_LEVEL"].lower(),
            "--concurrency",
            "1",
        ],
    }
    envs = {name: env for name in commands}
    for index in range(args.media_nodes):
        port = args.media_port + index
        name = "media" if args.media_nodes == 1 else f"media{index + 1}"
        commands[name] = [py, "-m", "media_server"]
        envs[name] = {**env, "MEDIA_CONTROL_PORT": str(port)}  # node ID: hostname:port
    log_dir = args.var / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = {name: log_dir / f"{name}.log" for name in commands}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmd in commands.items():
        with logs[name].open("wb") as out:  # this run's log (the child keeps its own descriptor)
            procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=envs[name], stdout=out, stderr=subprocess.STDOUT)
    print(f"Starting {', '.join(commands)} ...", flush=True)
    signal.signal(signal.SIGTERM, interrupt)  # stop the children too when stopped while starting
    try:
        failed = wait_healthy(f"http://{args.host}:{args.port}/healthz", procs, STARTUP_TIMEOUT_SECONDS)
    except KeyboardInterrupt:
        stop_all(procs)
        return 130
    if failed is not None:
        what = "the web process did not answer /healthz in time" if failed == "timeout" else f"{failed} exited"
        print(f"Conference did not start: {what}.", file=sys.stderr)
        for name in [failed] if failed in logs else ["web"]:
            print(f"  last lines of {shown(logs[name])}:\n{log_tail(logs[name])}", file=sys.stderr)
        stop_all(procs)
        return 1
    print(f"\n  Conference is running at http://{args.host}:{args.port}/  (Ctrl-C to stop)\n", flush=True)
    if env.get("MEDIA_REDIS_URL"):
        print(f"  {args.media_nodes} media server(s) registered in Redis; rooms are placed on them\n", flush=True)
    if env.get("TURN_SECRET") and env.get("TURN_URLS"):
        print(f"  TURN: {env['TURN_URLS']} (time-limited credentials; start coturn, see README)\n", flush=True)
    level = "everything" if verbose else "warnings and errors; LOG_LEVEL=INFO make run for more"
    print(f"  Logs ({level}): {shown(log_dir)}/{{{','.join(commands)}}}.log", flush=True)
    print(f"  e.g. tail -f {shown(log_dir)}/*.log\n", flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None and not stopping:
                    print(f"{name} exited with {proc.returncode}; stopping the others", file=sys.stderr)
                    print(f"  last lines of {shown(logs[name])}:\n{log_tail(logs[name])}", file=sys.stderr)
                    code = proc.returncode or 1
                    stopping = True
            time.sleep(0.5)
    finally:
        stop_all(procs)
    return code


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then SIGKILL what is left after 10 s."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
