"""Count hand-overs from the event loop to a thread (``asgiref.sync.SyncToAsync``, which Channels'
``database_sync_to_async`` is), for tests that pin how often a request or a socket crosses over.

Each hand-over costs CPU on both sides (context copies, futures, a thread switch), so the web tier's hot
paths are counted, never timed (tests/api/test_middleware_chain.py, tests/socket/test_socket_auth_hops.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from asgiref import sync


@dataclass
class HandOvers:
    count: int = 0


@contextmanager
def count_hand_overs() -> Iterator[HandOvers]:
    """Count every ``SyncToAsync`` call made inside the block, in any task; ``.count`` after it."""
    counter = HandOvers()
    real_call = sync.SyncToAsync.__call__

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter.count += 1
        return await real_call(self, *args, **kwargs)

    sync.SyncToAsync.__call__ = counted  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        sync.SyncToAsync.__call__ = real_call  # type: ignore[method-assign]
