"""Lockstep A/B of the web join's CPU in process: two source trees, the same joins, alternating batches.

    .venv/bin/python bench/web_join_ab.py OTHER_TREE [--rounds 60] [--batch 10]

For a busy machine, where two runs of bench/web_join_cpu.py a minute apart differ by more than the change
being measured. Starts one long-lived worker per tree (this one and ``OTHER_TREE``, e.g. main in a detached
worktree), each with its own fresh SQLite file, warmed up; then, ``--rounds`` times, each worker runs
``--batch`` guest joins (``POST /api/v1/rooms/{id}/join`` through Django's test client, then
``presence.socket_join``; 5 per room), one after the other, the order swapped every round. Prints each tree's
median of round medians (``time.thread_time`` per join) and the median of the paired per-round differences
(other minus this), with its quartiles. Nothing but the join code differs between the workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def worker(tree: str) -> None:
    """One tree's joins; reads a batch size per stdin line, answers with a JSON list of (REST, socket) ms."""
    sys.path.insert(0, tree)  # that tree's Django code; the helper below is this benchmark's own (bench/)
    sys.path.insert(1, str(ROOT / "bench"))
    os.chdir(tree)
    os.environ.pop("DATABASE_URL", None)  # each worker its own SQLite file
    from _inprocess import GuestJoins, scratch_database

    with scratch_database("conf-webjoin-ab-", root=Path(tree)):
        bench = GuestJoins()
        bench.warm_up(10)
        print("ready", flush=True)
        rooms = bench.rooms(5)
        for line in sys.stdin:
            costs = [bench.join(next(rooms)) for _ in range(int(line))]
            print(json.dumps([(c.rest_ms, c.socket_ms) for c in costs]), flush=True)


def run(other: str, rounds: int, batch: int) -> None:
    trees = {"other": str(Path(other).resolve()), "this": str(ROOT)}
    procs: dict[str, Any] = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--worker", tree], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for name, tree in trees.items()
    }
    for proc in procs.values():
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a worker did not start")
    medians: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for r in range(rounds):
        for name in ("other", "this") if r % 2 == 0 else ("this", "other"):
            procs[name].stdin.write(f"{batch}\n")
            procs[name].stdin.flush()
            rows = json.loads(procs[name].stdout.readline())
            medians[name].append((statistics.median(x[0] for x in rows), statistics.median(x[1] for x in rows)))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    for name, tree in trees.items():
        rest = statistics.median(m[0] for m in medians[name])
        sock = statistics.median(m[1] for m in medians[name])
        print(f"{name:5s} {tree}: REST join {rest:.2f} ms, socket join hop {sock:.2f} ms (median of round medians)")
    pairs = list(zip(medians["other"], medians["this"], strict=True))
    rest_d = statistics.median(o[0] - t[0] for o, t in pairs)
    sock_d = statistics.median(o[1] - t[1] for o, t in pairs)
    sums = sorted(o[0] + o[1] - t[0] - t[1] for o, t in pairs)
    q = len(sums) // 4
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"other - this, median of {rounds} paired rounds of {batch} joins: REST {rest_d:.2f} ms, socket {sock_d:.2f}"
        f" ms, both {statistics.median(sums):.2f} ms (quartiles {sums[q]:.2f} / {sums[-q - 1]:.2f}); load {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", nargs="?", help="the other source tree (its own .venv not needed)")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
    elif args.other:
        run(args.other, args.rounds, args.batch)
    else:
        parser.error("name the other tree")


if __name__ == "__main__":
    main()
