"""The room socket ``/ws/rooms/<roomId>/`` (docs/protocol.md §1): transport only.

The consumer authenticates the first frame, parses frames
(``socket_protocol``), delegates (``presence``, ``socket_actions``,
``signaling``) and forwards room events. Per-socket rules on forwarded events
live here because they are about this socket: close on removal/end/denial,
follow lobby admission and role changes into groups, drop chat the client
already has. A background ticker owned by the consumer handles the join
timeout, pings, silence and the presence heartbeat; it is cancelled on
disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from breakouts import socket_actions as breakout_actions
from conference.errors import DomainError
from conference.metrics import SOCKETS_OPEN
from conference.sync_threads import SyncThreads

from . import events, groups, presence, selectors, socket_actions
from .e2ee import e2ee_relay
from .grants import Grant, grant_read
from .media_client import MediaClient, MediaError
from .open_sockets import OpenSockets
from .presence import SocketRefused, SocketSession
from .signal_lanes import Lanes
from .signaling import relay_client_frame
from .socket_protocol import (
    E2EE_TYPES,
    SIGNALING_TYPES,
    ClientFrame,
    Close,
    FrameError,
    Liveness,
    TokenBucket,
    error_frame,
    parse_frame,
    reply,
)

logger = logging.getLogger(__name__)

# Forwarded events after which this socket closes, and with which code.
CLOSING_EVENTS = {"removed": Close.REMOVED, "room_ended": Close.ROOM_ENDED, "lobby_denied": Close.DENIED}
# Closes after which the participant keeps its seat: another socket took over, or it will reconnect.
KEEP_SEAT = frozenset({Close.REPLACED, Close.SERVICE_UNAVAILABLE, *CLOSING_EVENTS.values()})
# Sent before closing 4503 when the channel layer (Redis) failed; clients reconnect after about this long.
RECONNECT_AFTER_SECONDS = 1
# Frames a socket may send before it is admitted (in the lobby).
LOBBY_FRAMES = frozenset({"ping", "pong"})
RATE_LIMITED_FRAMES = frozenset({"chat_send", "reaction"})
# Frames relayed to the media server, each in its connection's lane (rooms/signal_lanes.py): in order per
# connection, concurrently with other connections' frames and with the socket's other frames.
SUBSCRIBE_LANE_FRAMES = frozenset({"subscribe", "answer", "video_preferences"})
SIGNAL_LANE_LIMIT = 16  # frames waiting in one lane; more get `rate_limited`
R = TypeVar("R")


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    def __init__(
        self, *, media: MediaClient, threads: SyncThreads | None = None, sockets: OpenSockets | None = None
    ) -> None:
        super().__init__()
        self.media = media
        self.threads = threads  # None: Channels' one thread-sensitive thread for every hop
        self.sockets = sockets if sockets is not None else OpenSockets()
        self.session: SocketSession | None = None
        self.subscribed: set[str] = set()
        self.close_code: int | None = None
        self.used_media = False
        self.chat_high_water = 0
        self.ticker: asyncio.Task[None] | None = None
        self.wake_ticker = asyncio.Event()  # set when the schedule changes (joined)
        self.counted_open = False  # in the conference_websockets_open gauge
        self.lanes = Lanes(limit=SIGNAL_LANE_LIMIT)  # signaling frames to the media server, per connection

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run the handler for ``message`` without Channels' per-message database-thread hop.

        Channels' ``AsyncConsumer.dispatch`` first runs ``close_old_connections`` via
        ``sync_to_async`` on the one thread-sensitive database thread, for every message: each
        of a chat message's 99 deliveries queued behind other sockets' database hops
        (docs/benchmarks.md §1). This consumer uses the database only through
        ``database_sync_to_async``, which closes stale connections around each hop itself.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' consumer loop; a channel-layer failure under it closes this process's sockets with 4503.

        channels-redis raises a Redis failure out of ``channel_layer.receive`` (or a handler's group call)
        into this loop, which would end the socket with 1011 and leave its disconnect unhandled.
        """
        try:
            await super().__call__(scope, receive, send)
        except RedisError as exc:
            logger.warning("channel layer failed under a room socket: %r", exc)
            await self.sockets.layer_lost()
            await self.layer_lost()
            await self.disconnect(Close.SERVICE_UNAVAILABLE)

    # --- connection lifecycle -------------------------------------------------

    async def connect(self) -> None:
        self.room_id: str = self.scope["url_route"]["kwargs"]["room_id"]
        now = self._now()
        self.liveness = Liveness(
            join_timeout=settings.SOCKET_JOIN_TIMEOUT_SECONDS,
            ping_after=settings.SOCKET_PING_INTERVAL_SECONDS,
            drop_after=settings.SOCKET_IDLE_TIMEOUT_SECONDS,
            touch_every=settings.PRESENCE_TOUCH_INTERVAL_SECONDS,
            opened_at=now,
            last_heard=now,
        )
        self.chat_bucket = TokenBucket(rate=settings.SOCKET_CHAT_RATE_PER_SECOND, burst=settings.SOCKET_CHAT_BURST)
        self.frame_bucket = TokenBucket(rate=settings.SOCKET_FRAME_RATE_PER_SECOND, burst=settings.SOCKET_FRAME_BURST)
        await self.accept()
        SOCKETS_OPEN.inc()
        self.counted_open = True
        self.sockets.add(self)
        self.ticker = asyncio.create_task(self._tick_forever())

    async def disconnect(self, code: int) -> None:
        self.sockets.discard(self)
        if self.counted_open:
            SOCKETS_OPEN.dec()
            self.counted_open = False
        if self.ticker is not None and self.ticker is not asyncio.current_task():
            self.ticker.cancel()
        # Signaling not started yet is dropped; what runs finishes before the media server hears of a leave.
        await self.lanes.close()
        try:
            for group in list(self.subscribed):
                await self.channel_layer.group_discard(group, self.channel_name)
        except RedisError as exc:  # Redis is gone (4503): its groups went with it or expire
            logger.info("groups of a closed socket not left: %r", exc)
        self.subscribed.clear()
        session = self.session
        if session is None or self.close_code in KEEP_SEAT:
            return
        try:
            left = await self._hop(presence.socket_leave, session=session)
            if session.meeting is not None:  # gone from the breakout and from the meeting it belongs to
                await self._hop(presence.socket_leave, session=session.meeting)
        except Exception:
            logger.exception("leave failed for %s", session.participant_id)
            return
        if left and self.used_media:
            await self.media.tell_quietly(room=session.room_id, participant=session.participant_id)

    async def _close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            await self.close(code=int(code))  # daphne rejects IntEnum close codes

    async def layer_lost(self) -> None:
        """The channel layer failed: tell the client to reconnect, close 4503 keeping the seat (never raises)."""
        if self.close_code is not None:
            return
        try:
            await self._send(
                error_frame(
                    "server_unavailable",
                    "The server lost its connection to Redis; reconnecting…",
                    retry_after=RECONNECT_AFTER_SECONDS,
                )
            )
            await self._close(Close.SERVICE_UNAVAILABLE)
        except Exception:  # the client may be gone already
            logger.debug("socket already closed", exc_info=True)

    # --- client frames ------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.close_code is not None:
            return
        now = self._now()
        self.liveness.heard(now)
        try:
            if text_data is None:
                raise FrameError("invalid_frame", "Frames are JSON text, not binary.")
            if not self.frame_bucket.take(now):
                raise FrameError("rate_limited", "Too many frames; slow down.")
            frame = parse_frame(text_data)
        except FrameError as exc:
            await self._send(error_frame(exc.code, exc.message, exc.ref))
            if self.session is None:
                await self._close(Close.PROTOCOL_VIOLATION)
            return
        await self._guarded(frame, self._dispatch(frame, now))

    async def _guarded(self, frame: ClientFrame, work: Awaitable[None]) -> None:
        """Handle ``frame`` (``work``); its failure is answered, never raised."""
        try:
            await work
        except RedisError as exc:  # the channel layer is gone: every socket of this process reconnects
            logger.warning("channel layer failed during %s: %r", frame.type, exc)
            await self.sockets.layer_lost()
            await self.layer_lost()
        except Exception:  # one bad frame must never take the socket (or the room) down
            logger.exception("frame %s failed", frame.type)
            await self._send(error_frame("internal_error", "The server could not handle this frame.", frame.ref))

    async def _dispatch(self, frame: ClientFrame, now: float) -> None:
        session = self.session
        if session is None:
            if frame.type != "join":
                await self._send(error_frame("join_first", "The first frame must be join.", frame.ref))
                await self._close(Close.PROTOCOL_VIOLATION)
                return
            await self._join(frame)
            return
        kind = frame.type
        if kind == "ping":
            await self._send(reply({"type": "pong"}, frame.ref))
            return
        if kind == "pong":
            return
        if kind == "join":
            await self._send(error_frame("already_joined", "This socket has already joined.", frame.ref))
            return
        if not session.admitted and kind not in LOBBY_FRAMES:
            await self._send(error_frame("not_admitted", "Wait until a moderator admits you.", frame.ref))
            return
        if kind in RATE_LIMITED_FRAMES and not self.chat_bucket.take(now):
            await self._send(error_frame("rate_limited", "You are sending too fast; slow down.", frame.ref))
            return
        if kind == "video_preferences" or kind in SIGNALING_TYPES:
            await self._enqueue_signal(session, frame)
        elif kind == "reaction":
            event = {"type": "reaction", "participantId": session.participant_id, "emoji": frame.data["emoji"]}
            group = groups.room_group(session.room_id)
            await self.channel_layer.group_send(group, events.layer_message(group, event))
        elif kind in E2EE_TYPES:
            try:
                group, event = e2ee_relay(
                    room_id=session.room_id, sender_id=session.participant_id, room_e2ee=session.e2ee, frame=frame
                )
            except FrameError as exc:
                await self._send(error_frame(exc.code, exc.message, frame.ref))
                return
            await self.channel_layer.group_send(group, events.layer_message(group, event))
        else:
            await self._act(session, frame)

    async def _join(self, frame: ClientFrame) -> None:
        grant = grant_read(frame.data["token"])  # signature and age; the hop checks it against the database
        # Subscribe before the state change, so this socket sees every event after it: to the groups the grant
        # could give (it is signed for this participant), trimmed to what the session allows once the hop has
        # said who joined. Until then nothing is forwarded: room events wait in this socket's channel, and
        # those from a group it left are dropped (``room_event``).
        if grant is not None and grant.room_id == self.room_id:
            await self._follow(self._groups_of_grant(grant))
        try:
            session, entry = await self._hop(
                presence.socket_join,
                grant=grant,
                room_id=self.room_id,
                user=self.scope.get("user"),
                last_seq=frame.data["last_seq"],
                media_state=frame.data.get("media_state"),
            )
        except SocketRefused as exc:
            self.session = None  # nothing to leave: the participant never entered through this socket
            await self._follow(set())
            await self._send(error_frame(exc.code, exc.message, frame.ref))
            await self._close(exc.close_code)
            return
        self.session = session
        await self._follow_groups()
        self.liveness.mark_joined(self._now())
        self.wake_ticker.set()
        self.chat_high_water = entry.chat_high_water
        for out in entry.frames:
            await self._send(out)
        # Older sockets of this participant (a reload, a second tab) close with 4005.
        await self.channel_layer.group_send(
            groups.participant_group(session.room_id, session.participant_id),
            {"type": "room.session", "channel": self.channel_name},
        )

    async def _act(self, session: SocketSession, frame: ClientFrame) -> None:
        result = await self._hop(socket_actions.perform, session=session, frame=frame)
        if result.switch_to is not None:
            await self._switch(session, result.switch_to, result.chat_high_water or 0)
        elif result.chat_high_water is not None:
            self.chat_high_water = max(self.chat_high_water, result.chat_high_water)
        for out in result.frames:
            await self._send(out)
        for participant_id in result.media_leave:
            await self.media.tell_quietly(room=session.room_id, participant=participant_id)
        if result.media_close_room:
            await self.media.tell_quietly(room=session.room_id)
        if result.close_code is not None:
            await self._close(result.close_code)

    async def _enqueue_signal(self, session: SocketSession, frame: ClientFrame) -> None:
        """Relay ``frame`` in its connection's lane (``subscribe``, or its ``pc``), after that lane's earlier frames."""
        lane = "subscribe" if frame.type in SUBSCRIBE_LANE_FRAMES else str(frame.data["pc"])
        handle = self._video_preferences if frame.type == "video_preferences" else self._signal

        async def job() -> None:
            await self._guarded(frame, handle(session, frame))

        if not self.lanes.submit(lane, job):
            await self._send(error_frame("rate_limited", "Too many signaling frames waiting; slow down.", frame.ref))

    async def _signal(self, session: SocketSession, frame: ClientFrame) -> None:
        self.used_media = True
        try:
            answer = await relay_client_frame(
                self.media, room=session.room_id, participant=session.participant_id, frame=frame, last_n=session.last_n
            )
        except MediaError as exc:
            await self._send(error_frame(exc.code, exc.message, frame.ref, retry_after=exc.retry_after))
            return
        if answer is not None:
            await self._send(answer)

    async def _video_preferences(self, session: SocketSession, frame: ClientFrame) -> None:
        """Pins and visible tiles (last-N): only other admitted participants of this room; relayed to the media server."""
        named = [*frame.data["pinned"], *(t["participant"] for t in frame.data["tiles"])]
        if session.participant_id in named:
            await self._send(error_frame("invalid_frame", "Pins and tiles name other participants.", frame.ref))
            return
        unknown = await self._db(
            selectors.participants_not_admitted, room_pk=session.room_pk, participant_ids=list(dict.fromkeys(named))
        )
        if unknown:
            await self._send(
                error_frame(
                    "participant_not_found", "No such participant in this room.", frame.ref, participants=unknown
                )
            )
            return
        await self._signal(session, frame)

    async def _room_settings(self, session: SocketSession, settings_: dict[str, Any]) -> None:
        """Follow a change of the room's last-N setting; tell the media server (idempotent) if this socket uses media."""
        if "last_n" not in settings_ or settings_["last_n"] == session.last_n:
            return
        session.last_n = settings_["last_n"]
        if self.used_media:
            try:
                await self.media.room_settings(room=session.room_id, last_n=session.last_n)
            except MediaError as exc:
                if exc.status != 404:  # 404: no media for this room yet; the next subscribe carries it
                    logger.warning("media server not told last_n of %s: %s", session.room_id, exc.message)

    # --- channel-layer messages -----------------------------------------------------

    async def room_event(self, message: dict[str, Any]) -> None:
        """A room event (``rooms.events``, media events, reactions): apply this socket's rules, forward."""
        session = self.session
        if session is None or self.close_code is not None:
            return
        group = message.get("group")
        if group is not None and group not in self.subscribed:
            return  # sent to a group this socket has left since (its scope narrowed: see _join)
        text = message.get("text")
        if text is not None:  # a chat_message, encoded once for every socket (rooms.events)
            if message["sender"] == session.participant_id or message["seq"] <= self.chat_high_water:
                return  # the sender has its chat_ack; older messages came with the snapshot or a sync
            await self._send_text(text)
            return
        frame = message["event"]
        kind = frame.get("type")
        promoted = False
        if kind == "lobby_admitted":
            await self._admitted(session)
            return
        elif kind in E2EE_TYPES and frame.get("from") == session.participant_id:
            return  # a broadcast public key: the sender knows its own
        elif kind in ("participant_joined", "participant_updated"):
            participant = frame.get("participant", {})
            if participant.get("participantId") == session.participant_id:
                if kind == "participant_joined":
                    return  # the snapshot already says who I am
                was_moderator = session.is_moderator
                session.role = participant.get("role", session.role)
                await self._follow_groups()
                promoted = session.is_moderator and not was_moderator
        elif kind == "room_updated" and isinstance(frame.get("settings"), dict):
            await self._room_settings(session, frame["settings"])
        await self._send(frame)
        if promoted:  # a new moderator gets the waiting room as it is now, then its lobby events
            await self._send(await self._hop(presence.lobby_list, session=session))
        if kind == "room_ended" and self.used_media:
            # The room may have been ended over REST: make sure the media server lets go too (idempotent).
            await self.media.tell_quietly(room=session.room_id)
        if kind in CLOSING_EVENTS:
            await self._close(CLOSING_EVENTS[kind])
        elif kind == "breakouts_ended" and session.meeting is not None:
            await self._return_to_meeting(session)

    async def room_session(self, message: dict[str, Any]) -> None:
        """A newer socket of the same participant joined: this one gives way (4005), without leaving."""
        if message.get("channel") != self.channel_name and self.session is not None:
            await self._send(error_frame("session_replaced", "This participant joined from another socket."))
            await self._close(Close.REPLACED)

    async def _admitted(self, session: SocketSession) -> None:
        session.admitted = True
        await self._follow_groups()
        try:
            entry = await self._hop(presence.socket_enter, session=session)
        except SocketRefused as exc:
            await self._send(error_frame(exc.code, exc.message))
            await self._close(exc.close_code)
            return
        await self._follow_groups()
        self.chat_high_water = entry.chat_high_water
        await self._send({"type": "lobby_admitted"})
        for out in entry.frames:
            await self._send(out)

    # --- breakout rooms (breakouts/socket_actions.py) ------------------------------------

    async def _switch(self, old: SocketSession, new: SocketSession, chat_high_water: int) -> None:
        """Speak for ``new`` from now on (a breakout move): its groups, its chat; the old record's media goes."""
        await self.lanes.drain()  # the old record's signaling (sent before the move) first
        self.session = new
        await self._follow_groups()
        self.chat_high_water = chat_high_water
        if self.used_media:
            self.used_media = False
            await self.media.tell_quietly(room=old.room_id, participant=old.participant_id)

    async def _return_to_meeting(self, session: SocketSession) -> None:
        """The breakouts closed (or this breakout record is gone): back to the meeting, with a new snapshot."""
        try:
            result = await self._hop(breakout_actions.return_to_meeting, session=session)
        except DomainError as exc:
            await self._send(error_frame(exc.code, exc.message))
            return
        except SocketRefused as exc:
            await self._send(error_frame(exc.code, exc.message))
            await self._close(exc.close_code)
            return
        if self.session is not session:
            return  # a move raced this one
        await self._switch(session, result.switch_to or session, result.chat_high_water or 0)
        for out in result.frames:
            await self._send(out)

    async def _touch_in_breakout(self, session: SocketSession, meeting: SocketSession) -> None:
        """Heartbeat inside a breakout: both seats stay; a breakout record that is gone means back to the meeting."""
        main = await self._hop(presence.socket_tick, session=meeting)
        if main.close_code is not None:
            await self._close(main.close_code)
            return
        tick = await self._hop(presence.socket_tick, session=session)
        for participant_id in tick.swept:
            await self.media.tell_quietly(room=session.room_id, participant=participant_id)
        if tick.close_code is not None and self.session is session:
            await self._return_to_meeting(session)

    # --- helpers ----------------------------------------------------------------------

    async def _hop(self, fn: Callable[..., R], **kwargs: Any) -> R:
        """One database hop; the room events it committed are sent from here once it has returned."""
        result, outgoing = await self._db(events.collecting(fn), **kwargs)
        await events.publish(self.channel_layer, outgoing)
        return result

    async def _db(self, fn: Callable[..., R], **kwargs: Any) -> R:
        """``fn(**kwargs)`` on a database thread: one of the process's ``threads`` (so sockets' hops overlap)."""
        if self.threads is None:
            return await database_sync_to_async(fn)(**kwargs)  # type: ignore[no-any-return]
        return await self.threads.run(fn, **kwargs)

    async def _follow_groups(self) -> None:
        """Be in exactly the groups the session's scope allows: its own, and the room's (and moderators') once admitted."""
        session = self.session
        if session is None:
            return
        wanted = {groups.participant_group(session.room_id, session.participant_id)}
        if session.admitted:
            wanted.add(groups.room_group(session.room_id))
        if session.is_moderator:
            wanted.add(groups.moderators_group(session.room_id))
        if session.meeting is not None:  # in a breakout: still reachable as the meeting's participant (removal, 4005)
            wanted.add(groups.participant_group(session.meeting.room_id, session.meeting.participant_id))
        await self._follow(wanted)

    @staticmethod
    def _groups_of_grant(grant: Grant) -> set[str]:
        """The most a socket joining with this grant may be in: its own, the room's and (not for guests, who
        cannot moderate) the moderators'."""
        wanted = {groups.participant_group(grant.room_id, grant.participant_id), groups.room_group(grant.room_id)}
        if grant.user_id is not None:
            wanted.add(groups.moderators_group(grant.room_id))
        return wanted

    async def _follow(self, wanted: set[str]) -> None:
        """Be in exactly the groups ``wanted``."""
        for group in wanted - self.subscribed:
            await self.channel_layer.group_add(group, self.channel_name)
        for group in self.subscribed - wanted:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.subscribed = wanted

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.close_code is None:
            await self._send_text(events.encode(frame))

    async def _send_text(self, text: str) -> None:
        """Send ``text`` unless the client has closed the socket.

        A client's close reaches this consumer as a ``websocket.disconnect`` message queued behind whatever it is
        handling; a frame sent meanwhile makes daphne raise ``Disconnected``, which would end the consumer before
        that message is handled: no leave (the others keep the tile until the presence sweep) and groups left
        joined. The frame is dropped instead: its reader is gone.
        """
        try:
            await self.send(text_data=text)
        except Disconnected:
            logger.debug("frame for a socket the client closed dropped")

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _tick_forever(self) -> None:
        while self.close_code is None:
            action, delay = self.liveness.next_action(self._now())
            try:
                if action is None:
                    try:
                        await asyncio.wait_for(self.wake_ticker.wait(), delay)
                    except TimeoutError:
                        pass
                    self.wake_ticker.clear()
                elif action == "join_timeout":
                    await self._send(error_frame("join_timeout", "No join frame in time."))
                    await self._close(Close.JOIN_TIMEOUT)
                elif action == "drop":
                    await self._close(Close.HEARTBEAT_TIMEOUT)
                elif action == "ping":
                    await self._send({"type": "ping"})
                elif action == "touch" and self.session is not None:
                    await self._touch(self.session)
            except asyncio.CancelledError:
                raise
            except RedisError as exc:  # its events could not be sent: the channel layer is gone
                logger.warning("channel layer failed during a heartbeat: %r", exc)
                await self.sockets.layer_lost()
                await self.layer_lost()
            except Exception:  # a failed heartbeat (e.g. the DB blipped) is retried on the next tick
                logger.exception("room socket heartbeat failed")
                await asyncio.sleep(1.0)

    async def _touch(self, session: SocketSession) -> None:
        if session.meeting is not None:
            await self._touch_in_breakout(session, session.meeting)
            return
        tick = await self._hop(presence.socket_tick, session=session)
        for participant_id in tick.swept:
            await self.media.tell_quietly(room=session.room_id, participant=participant_id)
        if tick.close_code is not None:
            await self._close(tick.close_code)
