"""Run the media server and log every event-loop step that burns more than N ms of CPU.

Used by ``bench/sfu_forward.py --asyncio-debug``: asyncio's own debug mode
(``slow_callback_duration``) measures wall time, which on a loaded machine
mostly measures the scheduler. This wraps ``asyncio.Handle._run`` (every
callback and task step) with ``time.thread_time()`` and logs the steps that
used more than ``argv[1]`` ms of *CPU* ("slow step 3.2 ms cpu <Handle ...>")
to stderr: that is what blocks forwarding during joins. Diagnosis only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from typing import Any

import _media_common  # noqa: F401 (puts the repository root on sys.path)

from media_server.__main__ import serve
from media_server.config import parse_config


def main() -> None:
    slow_ms = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_config([])

    original = asyncio.events.Handle._run
    threshold = slow_ms / 1000
    log = logging.getLogger("slow_step")

    def describe(handle: asyncio.Handle) -> str:
        task = getattr(handle._callback, "__self__", None)  # TaskStepMethWrapper -> Task
        if not isinstance(task, asyncio.Task):
            return repr(handle)[:200]
        coro: Any = task.get_coro()
        chain = []
        while coro is not None and len(chain) < 8:
            chain.append(getattr(coro, "__qualname__", type(coro).__name__))
            coro = getattr(coro, "cr_await", None)
        return " > ".join(chain)

    def timed_run(self: asyncio.Handle) -> None:
        start = time.thread_time()
        what = describe(self)  # before the step: where the task resumes
        original(self)
        used = time.thread_time() - start
        if used > threshold:
            log.warning("slow step %.1f ms cpu %s", used * 1000, what)

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
