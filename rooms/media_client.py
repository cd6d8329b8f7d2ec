"""Django → media server control client (docs/protocol.md §2), protocol version 1.

One :class:`MediaClient` is created per process by ``rooms.routing`` and
handed to every room consumer. Each request goes to the node hosting its
room: with ``MEDIA_REDIS_URL`` the node registry places rooms
(``rooms.media_nodes``), otherwise every room is on ``MEDIA_CONTROL_URL``.
It keeps one ``aiohttp.ClientSession`` (and so one keep-alive connection
pool) for the event loop it runs on; if it finds itself on another loop (tests
run one loop per test) it opens a fresh session there. ``close()`` closes the
session. The base URL, secret and timeout are
read from settings on every call, so tests can override them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings
from redis.exceptions import RedisError

from media_server import signing

from . import media_nodes
from .media_nodes import NodeDirectory

logger = logging.getLogger(__name__)
PROTOCOL_VERSION = 1


RESTARTING = "The media server is restarting; retrying…"


class MediaError(Exception):
    """The media server refused a request (its error ``code``) or could not be reached (``media_unavailable``).

    ``retry_after`` (seconds) is set when trying again later is the remedy: ``media_unavailable`` (no media
    server is live or reachable: it is restarting or being failed over) and ``media_full`` (all are full).
    """

    def __init__(self, code: str, message: str, status: int = 502, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


def unavailable(message: str = RESTARTING) -> MediaError:
    """The retryable ``media_unavailable`` (503): no media server can be reached now; one will be soon."""
    return MediaError("media_unavailable", message, 503, retry_after=settings.MEDIA_RETRY_AFTER_SECONDS)


def no_node(exc: media_nodes.NoMediaNode) -> MediaError:
    """``media_unavailable`` when no node is live (restarting), ``media_full`` when live nodes are all full."""
    if exc.full:
        return MediaError("media_full", str(exc), 503, retry_after=settings.MEDIA_FULL_RETRY_AFTER_SECONDS)
    return unavailable()


def subscribe_connection(message: dict[str, Any]) -> dict[str, str]:
    """``{"connection": name}`` of a media server's subscribe offer or ``forwarded_tracks`` (docs/protocol.md §1
    *Spare m-lines*) when it names its subscribe connection as documented, else ``{}`` (an older server)."""
    connection = message.get("connection")
    if isinstance(connection, str) and 0 < len(connection) <= 64 and connection.isascii() and connection.isalnum():
        return {"connection": connection}
    return {}


class MediaClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.nodes = NodeDirectory()

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # A session from another (finished) loop cannot be closed from here; it is dropped.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.MEDIA_CONTROL_TIMEOUT_SECONDS)
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
        await self.nodes.close()

    async def _node(self, room: str | None, place: bool, participant: str | None = None) -> tuple[str, str | None]:
        """(control URL, node ID) of the node hosting ``room`` (or, spanning, ``participant``); placed when ``place``."""
        if room is None or not media_nodes.enabled():
            return settings.MEDIA_CONTROL_URL, None
        if participant is not None and media_nodes.spanning():
            return await self._member_node(room, participant, place)
        try:
            node = await (self.nodes.place(room) if place else self.nodes.lookup(room))
        except media_nodes.NoMediaNode as exc:
            raise no_node(exc) from exc
        except (RedisError, OSError) as exc:
            raise unavailable("The media node registry is unavailable; retrying…") from exc
        if node is None:
            raise MediaError("room_not_found", "No media server hosts this room.", 404)
        return node.control_url, node.node_id

    async def _member_node(self, room: str, participant: str, place: bool) -> tuple[str, str | None]:
        """Spanning rooms: the participant's node; after a placement, relays between it and the room's other nodes."""
        try:
            nodes = await self.nodes.place_member(room, participant, place=place)
        except media_nodes.NoMediaNode as exc:
            raise no_node(exc) from exc
        except (RedisError, OSError) as exc:
            raise unavailable("The media node registry is unavailable; retrying…") from exc
        if not nodes:
            raise MediaError("room_not_found", "No media server hosts this room.", 404)
        mine = nodes[0]
        if place:
            for other in nodes[1:]:  # idempotent: 200 when the relay already runs
                await self._relay(room, mine, other)
                await self._relay(room, other, mine)
        return mine.control_url, mine.node_id

    async def _relay(self, room: str, origin: media_nodes.MediaNode, target: media_nodes.MediaNode) -> None:
        await self._send(
            "POST",
            origin.control_url,
            origin.node_id,
            f"/v1/rooms/{room}/relays",
            {"node": target.node_id, "url": target.control_url},
        )

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        room: str | None = None,
        place: bool = False,
        participant: str | None = None,
    ) -> dict[str, Any]:
        base, node_id = await self._node(room, place, participant)
        return await self._send(method, base, node_id, path, body)

    async def _send(
        self, method: str, base: str, node_id: str | None, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        url = f"{base}{path}"
        data = json.dumps({"protocol": PROTOCOL_VERSION, **body}).encode() if body is not None else b""
        headers = {
            # Signed (method, path, body, time): a captured request cannot be replayed (docs/protocol.md §2).
            "Authorization": signing.sign(settings.MEDIA_SECRET, method, urlsplit(url).path, data),
            # The media server skips publish/subscribe/answer still waiting for their room when we have given up.
            "X-Conference-Timeout": str(settings.MEDIA_CONTROL_TIMEOUT_SECONDS),
        }
        if data:
            headers["Content-Type"] = "application/json"
        try:
            async with self._get_session().request(method, url, data=data or None, headers=headers) as response:
                try:
                    payload: Any = await response.json(content_type=None)
                except ValueError:
                    payload = None
                if response.status >= 400:
                    error = payload.get("error") if isinstance(payload, dict) else None
                    if isinstance(error, dict) and isinstance(error.get("code"), str):
                        raise MediaError(error["code"], str(error.get("message", "")), response.status)
                    raise MediaError("media_error", f"The media server answered {response.status}.", response.status)
                return payload if isinstance(payload, dict) else {}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if node_id is not None and _refused(exc):
                # Nothing listens there any more: fail the node over now rather than after its heartbeat expires.
                await self._expire_quietly(node_id)
            raise unavailable() from exc

    async def _expire_quietly(self, node_id: str) -> None:
        try:
            if await self.nodes.expire(node_id):
                logger.warning("media node %s refused a control connection: failing it over", node_id)
        except (RedisError, OSError) as exc:
            logger.warning("could not expire media node %s: %s", node_id, exc)

    @staticmethod
    def _p(room: str, participant: str) -> str:
        return f"/v1/rooms/{room}/participants/{participant}"

    async def publish(self, *, room: str, participant: str, pc: str, sdp: str) -> str:
        """Send a publish offer (placing the room on a node first); returns the media server's SDP answer."""
        result = await self._request(
            "POST",
            self._p(room, participant) + "/publish",
            {"pc": pc, "sdp": sdp},
            room=room,
            place=True,
            participant=participant,
        )
        if not isinstance(result.get("sdp"), str):
            raise MediaError("media_error", "The media server sent no answer.")
        return str(result["sdp"])

    async def unpublish(self, *, room: str, participant: str, pc: str) -> None:
        await self._request("DELETE", self._p(room, participant) + f"/publish/{pc}", room=room, participant=participant)

    async def subscribe(self, *, room: str, participant: str, last_n: int | None = None) -> dict[str, Any]:
        """Ask for the subscribe offer: ``{"sdp", "revision", "tracks", "connection"?}`` (``sdp`` None: nothing to
        receive yet; ``connection``: the connection's name, from media servers that send it).

        ``last_n`` is the room's setting (None: by room size), so a media server learns it with the first subscriber.
        """
        result = await self._request(
            "POST",
            self._p(room, participant) + "/subscribe",
            {"last_n": last_n},
            room=room,
            place=True,
            participant=participant,
        )
        if "sdp" not in result or not isinstance(result["sdp"], str | None):
            raise MediaError("media_error", "The media server sent no offer.")
        return {
            "sdp": result["sdp"],
            "revision": result.get("revision"),
            "tracks": result.get("tracks", []),
            **subscribe_connection(result),
        }

    async def subscribe_answer(self, *, room: str, participant: str, sdp: str, revision: int) -> None:
        await self._request(
            "POST",
            self._p(room, participant) + "/subscribe/answer",
            {"sdp": sdp, "revision": revision},
            room=room,
            participant=participant,
        )

    async def ice(self, *, room: str, participant: str, pc: str, candidate: dict[str, Any] | None) -> None:
        await self._request(
            "POST",
            self._p(room, participant) + "/ice",
            {"pc": pc, "candidate": candidate},
            room=room,
            participant=participant,
        )

    async def preferences(self, *, room: str, participant: str, pinned: list[str], tiles: list[dict[str, Any]]) -> None:
        """Store what the participant wants to see (last-N pins, tile sizes)."""
        await self._request(
            "PUT",
            self._p(room, participant) + "/preferences",
            {"pinned": pinned, "tiles": tiles},
            room=room,
            participant=participant,
        )

    async def room_settings(self, *, room: str, last_n: int | None) -> None:
        """The room's last-N setting, on every node that serves the room (one, unless it spans nodes)."""
        if media_nodes.spanning():
            await self._everywhere(room, "PUT", f"/v1/rooms/{room}/settings", {"last_n": last_n})
        else:
            await self._request("PUT", f"/v1/rooms/{room}/settings", {"last_n": last_n}, room=room)

    async def participant_leave(self, *, room: str, participant: str) -> None:
        try:
            await self._request("DELETE", self._p(room, participant), room=room, participant=participant)
        finally:
            if media_nodes.spanning():
                try:
                    await self.nodes.forget_member(room, participant)
                except (RedisError, OSError) as exc:
                    logger.warning("placement of %s in room %s not released: %s", participant, room, exc)

    async def room_close(self, *, room: str) -> None:
        """Close the room on its node(s), then forget its placement (the room ended)."""
        try:
            if media_nodes.spanning():
                await self._everywhere(room, "DELETE", f"/v1/rooms/{room}", None)
            else:
                await self._request("DELETE", f"/v1/rooms/{room}", room=room)
        finally:
            if media_nodes.enabled():
                try:
                    await self.nodes.release(room)
                except (RedisError, OSError) as exc:
                    logger.warning("placement of room %s not released: %s", room, exc)

    async def _everywhere(self, room: str, method: str, path: str, body: dict[str, Any] | None) -> None:
        """Spanning rooms: send the same request to every node of ``room`` (404s ignored, first other error raised)."""
        try:
            nodes = await self.nodes.room_nodes(room)
        except (RedisError, OSError) as exc:
            raise unavailable("The media node registry is unavailable; retrying…") from exc
        if not nodes:
            raise MediaError("room_not_found", "No media server hosts this room.", 404)
        errors: list[MediaError] = []
        for node in nodes:
            try:
                await self._send(method, node.control_url, node.node_id, path, body)
            except MediaError as exc:
                if exc.status != 404:
                    errors.append(exc)
        if errors:
            raise errors[0]

    async def forget_origin(self, *, room: str, node: media_nodes.MediaNode, origin: str) -> None:
        """Spanning rooms: ``origin`` died; ``node`` drops its relayed publications and its relay to it."""
        for path in (f"/v1/rooms/{room}/remote/{origin}", f"/v1/rooms/{room}/relays/{origin}"):
            try:
                await self._send("DELETE", node.control_url, node.node_id, path, None)
            except MediaError as exc:
                if exc.status != 404:
                    logger.warning("media node %s not told that %s died: %s", node.node_id, origin, exc.message)

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/health")

    async def tell_quietly(self, *, room: str, participant: str | None = None) -> None:
        """Tell the media server a participant left (or, without ``participant``, the room ended); log failures."""
        try:
            if participant is None:
                await self.room_close(room=room)
            else:
                await self.participant_leave(room=room, participant=participant)
        except MediaError as exc:
            if exc.status != 404:
                logger.warning("media server not told about %s/%s: %s", room, participant or "*", exc.message)


def _refused(exc: BaseException) -> bool:
    """Whether the connection was refused (the node's process is gone), not merely slow."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return True
        cause = cause.__cause__ or cause.__context__
    return False
