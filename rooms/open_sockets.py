"""The room sockets open in this process, so that a channel-layer (Redis) failure seen by one closes them all.

Why all of them: a Redis that went away loses (or, restarted empty, forgets) every socket's group
memberships and every message in flight, and channels-redis hands the failure to one receiving socket at a
time. A socket that stayed open across the outage would look fine but miss every room event after it. So
the first socket to see the failure closes every socket of the process with 4503 (docs/protocol.md §1
"Close codes"); clients reconnect with backoff and a rejoin gives them a fresh snapshot (and, with
``last_seq``, the chat they missed), without a leave/join seen by others.
"""

from __future__ import annotations

import logging
import weakref
from typing import Protocol

logger = logging.getLogger(__name__)


class LayerClient(Protocol):
    async def layer_lost(self) -> None:
        """Close with 4503 (idempotent; must not raise)."""


class OpenSockets:
    """Owned by ``rooms.routing`` (one per process); consumers add and discard themselves."""

    def __init__(self) -> None:
        self._sockets: weakref.WeakSet[LayerClient] = weakref.WeakSet()

    def add(self, socket: LayerClient) -> None:
        self._sockets.add(socket)

    def discard(self, socket: LayerClient) -> None:
        self._sockets.discard(socket)

    def __len__(self) -> int:
        return len(self._sockets)

    async def layer_lost(self) -> int:
        """Close every open socket (4503); returns how many were open."""
        sockets = list(self._sockets)
        self._sockets.clear()
        if sockets:
            logger.warning("channel layer lost: closing %d room sockets (4503, clients reconnect)", len(sockets))
        for socket in sockets:
            await socket.layer_lost()
        return len(sockets)
