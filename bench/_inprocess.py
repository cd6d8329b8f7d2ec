"""What the in-process web benchmarks share: a scratch database around the run, and alternating CPU rounds.

``bench/web_middleware_cpu.py`` and ``bench/web_socket_auth_cpu.py`` build two
variants of the web application in one process and compare them. Both measure the
process's CPU (all threads, ``time.process_time``) per operation in rounds that
alternate the variants, so that a change of machine load during the run falls on
both alike, and print the median over rounds with their ratio.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from chat_fanout import drop_database, prepare_database  # noqa: E402

# figures[label][variant] = one figure (ms per operation) per round
Figures = dict[str, dict[str, list[float]]]


def run_with_scratch_database(prefix: str, run: Callable[[], Coroutine[Any, Any, None]], **env: str) -> None:
    """Run ``run()`` in an event loop against a freshly migrated database, then drop it.

    SQLite in a temporary folder, or with ``DATABASE_URL`` a fresh PostgreSQL database named after it
    (bench/chat_fanout.py). Sets the benchmark environment first: test settings, throttles off (many joins
    from one address), warnings only, and ``env`` on top.
    """
    environ = os.environ
    environ.setdefault("DJANGO_SETTINGS_MODULE", "conference.settings")
    environ.update({"CONFERENCE_ENV": "test", "THROTTLES_ENABLED": "0", "LOG_LEVEL": "WARNING", **env})
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        scratch = dict(environ)
        dbname = prepare_database(scratch, tmp)
        environ.update({k: v for k, v in scratch.items() if k in ("DATABASE_URL", "SQLITE_PATH")})
        environ.setdefault("RECORDINGS_SPOOL_DIR", str(Path(tmp) / "spool"))
        try:
            asyncio.run(run())
        finally:
            drop_database(dbname)


class CpuClock:
    """The process's CPU (all threads) since the clock was made, in ms per operation: ``per(n)``."""

    def __init__(self) -> None:
        self.start = time.process_time()

    def per(self, n: int) -> float:
        return (time.process_time() - self.start) / n * 1000


async def alternating_rounds(
    rounds: int, variants: list[str], measure: Callable[[str], Awaitable[dict[str, float]]]
) -> Figures:
    """Call ``measure(variant)`` for every variant in turn, ``rounds`` times; collect what each returns.

    ``measure`` returns ``{label: ms per operation}`` for one round of one variant (it times itself with
    ``CpuClock``, leaving its untimed set-up out).
    """
    figures: Figures = {}
    for _ in range(rounds):
        for variant in variants:
            for label, value in (await measure(variant)).items():
                figures.setdefault(label, {}).setdefault(variant, []).append(value)
    return figures


def print_medians(title: str, figures: Figures, *, new: str, old: str) -> None:
    """Print ``title`` with the load, then per label each variant's median (and its rounds) and new/old."""
    print(f"{title}; load {os.getloadavg()[0]:.1f}")
    for label, table in figures.items():
        medians = {variant: statistics.median(values) for variant, values in table.items()}
        print(f"  {label}:")
        for variant, values in table.items():
            rounds = ", ".join(f"{v:.2f}" for v in values)
            print(f"    {variant:17s} {medians[variant]:6.2f}   (rounds: {rounds})")
        print(f"    ratio {medians[new] / medians[old]:.2f}")
