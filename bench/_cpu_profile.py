"""Run a Python module or script under cProfile with a CPU-time clock (bench/load.py ``--profile``).

    python bench/_cpu_profile.py OUT.prof -m media_server
    python bench/_cpu_profile.py OUT.prof /path/to/daphne -b 127.0.0.1 ...

``python -m cProfile`` times with the wall clock, which on a busy machine mostly
measures the scheduler; this uses ``time.thread_time``: the CPU of the thread it
profiles (the main thread, where the event loop runs; the media server's native
receive thread and daphne's sync-code threads are not in it).
The stats are written when the program exits (SIGTERM included: both the media
server and daphne stop cleanly on it); SIGUSR1 starts them over (after a warm-up).
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time


def main() -> None:
    out, *rest = sys.argv[1:]
    module = rest[0] == "-m"
    target = rest[1] if module else rest[0]
    sys.argv = [target, *rest[2 if module else 1 :]]
    # As ``python -m`` / ``python script`` would: the working directory, or the script's directory, first.
    sys.path.insert(0, "" if module else str(__import__("pathlib").Path(target).resolve().parent))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # replaced by the program's own handler, if any
    profiles = [cProfile.Profile(time.thread_time)]

    def start_over(*_: object) -> None:  # SIGUSR1 (bench/web_join_steps.py after its warm-up round)
        profiles[-1].disable()
        profiles.append(cProfile.Profile(time.thread_time))
        profiles[-1].enable()

    signal.signal(signal.SIGUSR1, start_over)  # without it SIGUSR1 ended the program
    profiles[-1].enable()
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    finally:
        profiles[-1].disable()
        profiles[-1].dump_stats(out)


if __name__ == "__main__":
    main()
