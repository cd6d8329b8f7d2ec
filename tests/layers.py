"""Run the test suite as two layers: everything but the browsers in parallel, then the browsers one at a time.

``make test`` calls this with ``PYTEST_ARGS``. The non-browser layer runs on ``TEST_WORKERS`` pytest-xdist
workers (default 2, one per core of the machine CI runs on: many of these tests run real-time media and
processes whose timing a third worker would squeeze); each worker gets its own test database (pytest-django adds ``_gw<N>``) and Redis
key prefix (tests/conftest.py). The browser layer (marker ``e2e``) then runs alone in one process: its
tests start real stacks and browsers whose timing must not compete with the rest of the suite.

A ``-m`` expression in the arguments narrows both layers (``-m redis`` runs the Redis tests of each);
``-m e2e`` leaves only the browser layer. A layer that selects nothing is not a failure.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

NO_TESTS_COLLECTED = 5


def split_marker(args: list[str]) -> tuple[list[str], str | None]:
    """Return ``args`` without its ``-m`` options and the last marker expression given (pytest's rule)."""
    rest: list[str] = []
    marker: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-m" and i + 1 < len(args):
            marker = args[i + 1]
            i += 2
            continue
        if arg.startswith("-m") and len(arg) > 2 and not arg.startswith("-m-"):
            marker = arg[2:]
        else:
            rest.append(arg)
        i += 1
    return rest, marker


def layer_commands(args: list[str], workers: int) -> list[list[str]]:
    """The pytest command line of each layer, in order."""
    rest, marker = split_marker(args)
    scoped = f" and ({marker})" if marker else ""
    parallel = ["-n", str(workers)] if workers > 1 else []
    base = [sys.executable, "-m", "pytest"]
    return [
        [*base, *parallel, "-m", f"not e2e{scoped}", *rest],
        [*base, "-m", f"e2e{scoped}", *rest],
    ]


def main(argv: list[str]) -> int:
    workers = int(os.environ.get("TEST_WORKERS", "2"))
    codes = []
    for command in layer_commands(argv, workers):
        print("==> python", shlex.join(command[1:]), flush=True)
        codes.append(subprocess.call(command))
    failed = [rc for rc in codes if rc not in (0, NO_TESTS_COLLECTED)]
    if failed:
        return failed[0]
    return NO_TESTS_COLLECTED if all(rc == NO_TESTS_COLLECTED for rc in codes) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
