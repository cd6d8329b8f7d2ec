"""Received video per subscriber bandwidth (100 kbit/s .. 10 Mbit/s): one command, prints a table.

    flock /tmp/heavy.lock .venv/bin/python bench/adaptive.py [--rates 100kbit,300kbit,...]

Starts the end-to-end stack (daphne, the media server, Chromium in network
namespaces; needs root, Debian's chromium and iproute2's tc) through pytest
with the fixtures of tests/e2e/conftest.py, runs bench/_adaptive_scenario.py
(one host publishing 1280x720 simulcast, one guest per bandwidth in the room,
each guest's downlink shaped with ``tc tbf``; one guest at a time unless
``--together``) and prints, per bandwidth:
received resolution, frames per second, freeze time (``totalFreezesDuration``)
over the window, and the video/audio bitrate actually received.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100kbit,300kbit,1mbit,3mbit,10mbit", help="tc rates, comma-separated")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--together", action="store_true", help="all subscribers in the room at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adaptive-bench-") as tmp:
        out = Path(tmp) / "rows.jsonl"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "e2e"), str(ROOT)]),
            "ADAPTIVE_OUT": str(out),
            "ADAPTIVE_RATES": args.rates,
            "ADAPTIVE_SETTLE": str(args.settle),
            "ADAPTIVE_WINDOW": str(args.window),
            "ADAPTIVE_TOGETHER": "1" if args.together else "0",
        }
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-s", "-p", "conftest", "-p", "no:cacheprovider",
            "-o", "python_files=_adaptive_scenario.py", "--rootdir", str(ROOT / "bench"),
            str(ROOT / "bench" / "_adaptive_scenario.py"),
        ]  # fmt: skip
        result = subprocess.run(cmd, cwd=ROOT, env=env)
        if not out.exists():
            print("no results (the scenario failed)", file=sys.stderr)
            return result.returncode or 1
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    print(f"\nwindow {args.window:.0f} s after {args.settle:.0f} s of settling; publisher 1280x720 VP8 simulcast\n")
    print(
        "| subscriber downlink | received (last) | height min–max | fps | freeze time | video kbit/s | audio kbit/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "height" not in r:
            print(f"| {r['rate']} | no video | – | – | – | – | – |")
            continue
        print(
            f"| {r['rate']} | {r['width']}x{r['height']} | {r['min_height']}–{r['max_height']} | {r['fps']} | "
            f"{r['freeze_s']} s ({r['freezes']}) | {r['video_kbps']} | {r['audio_kbps']} |"
        )
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
