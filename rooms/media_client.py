"""Django → media server control client (docs/protocol.md §2), protocol version 1.

One :class:`MediaClient` is created per process by ``rooms.routing`` and
handed to every room consumer. It keeps one ``aiohttp.ClientSession`` (and so
one keep-alive connection pool) for the event loop it runs on; if it finds
itself on another loop (tests run one loop per test) it opens a fresh session
there. ``close()`` closes the session. The base URL, secret and timeout are
read from settings on every call, so tests can override them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from django.conf import settings

logger = logging.getLogger(__name__)
PROTOCOL_VERSION = 1


class MediaError(Exception):
    """The media server refused a request (its error ``code``) or could not be reached (``media_unavailable``)."""

    def __init__(self, code: str, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class MediaClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{settings.MEDIA_CONTROL_URL}{path}"
        headers = {"Authorization": f"Bearer {settings.MEDIA_SECRET}"}
        json_body = {"protocol": PROTOCOL_VERSION, **body} if body is not None else None
        try:
            async with self._get_session().request(method, url, json=json_body, headers=headers) as response:
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
            raise MediaError("media_unavailable", "The media server is unavailable.", 503) from exc

    @staticmethod
    def _p(room: str, participant: str) -> str:
        return f"/v1/rooms/{room}/participants/{participant}"

    async def publish(self, *, room: str, participant: str, pc: str, sdp: str) -> str:
        """Send a publish offer; returns the media server's SDP answer."""
        result = await self._request("POST", self._p(room, participant) + "/publish", {"pc": pc, "sdp": sdp})
        if not isinstance(result.get("sdp"), str):
            raise MediaError("media_error", "The media server sent no answer.")
        return str(result["sdp"])

    async def unpublish(self, *, room: str, participant: str, pc: str) -> None:
        await self._request("DELETE", self._p(room, participant) + f"/publish/{pc}")

    async def subscribe(self, *, room: str, participant: str, last_n: int | None = None) -> dict[str, Any]:
        """Ask for the subscribe offer: ``{"sdp", "revision", "tracks"}`` (``sdp`` None: nothing to receive yet).

        ``last_n`` is the room's setting (None: by room size), so a media server learns it with the first subscriber.
        """
        result = await self._request("POST", self._p(room, participant) + "/subscribe", {"last_n": last_n})
        if "sdp" not in result or not isinstance(result["sdp"], str | None):
            raise MediaError("media_error", "The media server sent no offer.")
        return {"sdp": result["sdp"], "revision": result.get("revision"), "tracks": result.get("tracks", [])}

    async def subscribe_answer(self, *, room: str, participant: str, sdp: str, revision: int) -> None:
        await self._request(
            "POST", self._p(room, participant) + "/subscribe/answer", {"sdp": sdp, "revision": revision}
        )

    async def ice(self, *, room: str, participant: str, pc: str, candidate: dict[str, Any] | None) -> None:
        await self._request("POST", self._p(room, participant) + "/ice", {"pc": pc, "candidate": candidate})

    async def preferences(self, *, room: str, participant: str, pinned: list[str], tiles: list[dict[str, Any]]) -> None:
        """Store what the participant wants to see (last-N pins, tile sizes)."""
        await self._request("PUT", self._p(room, participant) + "/preferences", {"pinned": pinned, "tiles": tiles})

    async def room_settings(self, *, room: str, last_n: int | None) -> None:
        await self._request("PUT", f"/v1/rooms/{room}/settings", {"last_n": last_n})

    async def participant_leave(self, *, room: str, participant: str) -> None:
        await self._request("DELETE", self._p(room, participant))

    async def room_close(self, *, room: str) -> None:
        await self._request("DELETE", f"/v1/rooms/{room}")

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
