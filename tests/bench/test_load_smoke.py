"""bench/load.py keeps working: a tiny run of the real stack with three synthetic participants.

Runs the tool as a user would (a subprocess: its own daphne, media server and
client worker; PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set) and checks
that everyone joined and that media flowed both ways. No timing is asserted:
the figures are the benchmark's business (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_three_participants_join_and_receive_media(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load.py"),
            *("--rooms", "1", "--participants", "3", "--video-publishers", "2", "--speakers", "2"),
            *("--warm", "1", "--seconds", "3", "--client-procs", "1", "--video-size", "320x180"),
            *("--video-kbps", "200", "--json", str(out), "--logs", str(tmp_path / "logs")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "logs" / "media.log").read_text()
    result = json.loads(out.read_text())
    joins, steady = result["joins"], result["steady"]
    assert joins["measured"] == 2 and joins["ok"] == 2, joins  # both saw a complete remote keyframe
    for step in ("rest", "socket", "pub_answer", "sub_answer", "first_frame"):
        assert joins["steps"][step]["n"] == 2, (step, joins["steps"])
    assert steady["participants_receiving"] == 3  # the warm host receives the others too
    assert steady["rx_packets"] > 0 and steady["rx_kbps_min"] > 0
    assert steady["media"]["forwarded_packets_total"] > 0  # the media server's own counters agree
    assert set(result["cpu_percent"]["steady"]) >= {"media", "web0", "client0"}
    assert "| join time |" in run.stdout  # the table is printed
