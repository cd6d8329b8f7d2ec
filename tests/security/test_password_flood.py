"""8 parallel password guessers do not shut out legitimate joins of other rooms (issue 18 item 1).

Before: each wrong guess was hashed (0.35-0.54 s) under the room's row lock, never throttled; 8 parallel
guessers pushed a normal join from 20 ms to 2-4.7 s. Runs bench/password_flood.py (a real daphne) briefly
and asserts outcomes only: the legitimate user's joins all succeed, none is throttled, each completes
within the generous client timeout, and the guessers are throttled after the per-room limit (the figures
are in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(660)  # past the bench's own bound below (the suite's default is 300 s)
def test_legitimate_joins_complete_while_eight_guessers_run(tmp_path: Path) -> None:
    out = tmp_path / "flood.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "password_flood.py"),
            "--attackers",
            "8",
            "--seconds",
            "8",
            "--json",
            str(out),
            "--until-throttled",  # the outcome below, however slowly the guesses are hashed
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # ~15 s of scenario; the rest is migrate, daphne's start-up (up to 90 s, see the bench) and password
        # hashing, all CPU-bound: 240 s ran out in a test process that got 2-4 s of CPU a minute (load ~25).
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    during = result["during_attack"]
    assert during["latency"]["n"] >= 1
    assert set(during["statuses"]) == {"200"}, during  # never throttled, never failed
    attackers = result["attacker_statuses"]
    # 10 wrong passwords per room per minute are hashed (plus the 8 already in flight); the attack ends at its
    # first 429 (or after its 8 s), well within a minute of hashing, so it spans at most two of the room's
    # windows. The rest is refused without hashing.
    assert attackers.get("403", 0) <= 2 * (10 + 8), attackers
    assert attackers.get("429", 0) > 0 and set(attackers) <= {"403", "429"}, attackers  # refused, never failed
