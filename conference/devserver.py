"""`make run`: web (daphne) + media server + Celery worker, on embedded defaults.

Starts the three processes, prints the URL, and stops them all when one exits
or on Ctrl-C. Not for production (use a process manager there; see README).
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
    args = parser.parse_args()

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
    py = sys.executable
    commands = {
        "web": [py, "-m", "daphne", "-b", args.host, "-p", str(args.port), "conference.asgi:application"],
        "media": [py, "-m", "media_server"],
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
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, env=env) for name, cmd in commands.items()}
    print(f"\n  Conference is running at http://{args.host}:{args.port}/  (Ctrl-C to stop)\n", flush=True)
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
