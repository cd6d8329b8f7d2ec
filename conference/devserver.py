"""`make run`: web (daphne) + media server + Celery worker, on embedded defaults.

Starts the processes, prints the URL, and stops them all when one exits or on
Ctrl-C. Not for production (use a process manager there; see README).

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--media-port", type=int, default=8790)
    parser.add_argument(
        "--media-nodes", type=int, default=1, help="media servers to start (more than 1 needs REDIS_URL)"
    )
    args = parser.parse_args()
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
        "web": [py, "-m", "daphne", "-b", args.host, "-p", str(args.port), "conference.asgi:application"],
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
            str(ROOT / "var" / "celerybeat-schedule"),
            "-l",
            "info",
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
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, env=envs[name]) for name, cmd in commands.items()}
    print(f"\n  Conference is running at http://{args.host}:{args.port}/  (Ctrl-C to stop)\n", flush=True)
    if env.get("MEDIA_REDIS_URL"):
        print(f"  {args.media_nodes} media server(s) registered in Redis; rooms are placed on them\n", flush=True)
    if env.get("TURN_SECRET") and env.get("TURN_URLS"):
        print(f"  TURN: {env['TURN_URLS']} (time-limited credentials; start coturn, see README)\n", flush=True)
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
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping the others", file=sys.stderr)
                    code = proc.returncode or 1
                    stopping = True
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
