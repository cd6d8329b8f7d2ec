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

    flock /tmp/heavy.lock .venv/bin/python bench/adaptive.py --drop 300kbit [--hold 30]

runs the drop-and-recover scenario instead: one guest on an unlimited link
until it receives 720p, then its downlink limited to that rate for ``--hold``
seconds, then the limit removed. Prints, per phase (before, limited, after),
the resolution range, fps and freezes, plus the time from the drop to the
first lower resolution (step down) and from the lift to 720p again (recover;
"not in 120 s" when it did not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100kbit,300kbit,1mbit,3mbit,10mbit", help="tc rates, comma-separated")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--together", action="store_true", help="all subscribers in the room at once")
    parser.add_argument("--drop", default="", help="drop-and-recover scenario: the limited rate (e.g. 300kbit)")
    parser.add_argument("--hold", type=float, default=30.0, help="drop-and-recover: seconds at the limited rate")
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
            "ADAPTIVE_DROP": args.drop,
            "ADAPTIVE_HOLD": str(args.hold),
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
    if args.drop:
        print_drop(rows)
        return result.returncode
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


def print_drop(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        reached = r["reached_720_s"]
        print(f"\ndrop to {r['rate']} for {r['hold']:.0f} s (720p reached {reached} s after video started)\n")
        print("| phase | height min–max | fps | freeze time (count) |")
        print("|---|---|---|---|")
        for name, label in (("before", "unlimited (10 s)"), ("held", f"{r['rate']}"), ("after", "limit removed")):
            p = r.get(name) or {}
            if not p:
                print(f"| {label} | – | – | – |")
                continue
            print(
                f"| {label} | {p['min_height']}–{p['max_height']} | {p['fps']} | {p['freeze_s']} s ({p['freezes']}) |"
            )
        down, up = r["step_down_s"], r["recover_s"]
        print(
            f"\nstep down: {'none' if down is None else f'{down} s'}; recover to 720p: "
            f"{'not in 120 s' if up is None else f'{up} s'}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
