"""A room: its participants, their connections, renegotiation and watchdog."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection

from . import aiortc_hooks as hooks
from . import bandwidth_report, lastn, protocol
from .cascade import Address, RelayEndpoint, RelayTarget, RemoteOrigin
from .config import Config, ice_policy
from .metrics import Totals
from .participant import PublishedTrack, Publisher, Subscriber, peer_dtls
from .protocol import PeerNotFound, Preferences, TrackInfo
from .recorder import Recorder
from .speaker import ActiveSpeakerDetector

logger = logging.getLogger(__name__)

MAX_REOFFERS = 2  # unanswered re-offers before the subscribe connection is failed
STALL_REPORT_AFTER = 5.0  # seconds a subscriber stream forwards nothing (its source sending) before it is logged
CAMERA_CHECK_INTERVAL = 0.5  # seconds between two looks at which cameras send (last-N skips silent ones)
CAMERA_IDLE = 2.0  # a camera with no packet for this long is off (browsers keep the m-line and send nothing)

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RoomView:
    """The room as the last-N selection of each subscriber reads it, computed once per pass over them.

    Every subscriber's selection used to rebuild the list of all publications and sort the microphones by
    speaker: O(N²) per pass at N people, two passes per join (~20 ms of the media loop per join at 100).
    Valid until the next ``await``: publications and speaker order change only between event-loop steps.
    """

    tracks: list[PublishedTrack]  # every publication: local, then relayed
    microphones: list[PublishedTrack]  # the microphones among them, most recent speaker first
    speakers: list[str]
    last_n: int | None


@dataclass(eq=False)
class Participant:
    id: str
    publishers: dict[str, Publisher] = field(default_factory=dict)
    subscriber: Subscriber | None = None
    revisions: int = 0
    preferences: Preferences = field(default_factory=Preferences)


@dataclass
class _Watch:
    counter: int = -1
    since: float = 0.0


class Room:
    """Owns every connection and task of one room; ``close()`` ends them all.

    Control operations are serialized by ``lock`` (held by the service);
    background reactions (peer failure, silence) take the same lock.
    """

    def __init__(self, room_id: str, *, config: Config, emit: Emit, relay: RelayEndpoint | None = None) -> None:
        self.id = room_id
        self.config = config
        self._emit = emit
        self.lock = asyncio.Lock()
        self.participants: dict[str, Participant] = {}
        self.speaker = ActiveSpeakerDetector(self._speaker_changed)
        # Last-N (media_server/lastn.py): who is seen and heard in a large room.
        self.last_n: int | None = None  # the room's setting (Django); None = by room size
        self.order = lastn.SpeakerOrder()
        # Never more audible microphones than a pooled subscriber has audio m-lines.
        self.audio = lastn.AudioSelector(limit=min(lastn.AUDIO_LIMIT, config.max_audio_mlines))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renegotiation_queued = False  # a renegotiate_all waits for the lock (renegotiate_later)
        self._watch: dict[int, _Watch] = {}
        self.closed = False
        self.forwarded_retired = 0
        self.retired = Totals()  # counters of closed connections (media_server/metrics.py)
        self.recorder: Recorder | None = None
        # Cascading (media_server/cascade.py): nodes we relay our publications to, nodes that relay theirs to us.
        self.relay = relay
        self.targets: dict[str, RelayTarget] = {}
        self.origins: dict[str, RemoteOrigin] = {}
        self._watchdog = asyncio.create_task(self._run_watchdog(), name=f"room-{room_id}-watchdog")
        # Cameras sending now (last-N skips the others): id(track) -> (packets seen, when that count last grew).
        self._camera_activity: dict[int, tuple[int, float]] = {}
        self._sending_cameras: frozenset[int] = frozenset()
        self._camera_check = asyncio.create_task(self._run_camera_check(), name=f"room-{room_id}-cameras")

    # -- helpers -----------------------------------------------------------

    def participant(self, participant_id: str, create: bool = False) -> Participant:
        p = self.participants.get(participant_id)
        if p is None:
            if not create:
                raise protocol.ParticipantNotFound(f"participant {participant_id!r} is not in room {self.id!r}")
            p = self.participants[participant_id] = Participant(participant_id)
            self.order.add(participant_id)
        return p

    def local_tracks(self) -> list[PublishedTrack]:
        """Every publication of this node's participants (what relay targets get)."""
        return [track for p in self.participants.values() for pub in p.publishers.values() for track in pub.tracks]

    def remote_tracks(self) -> list[PublishedTrack]:
        """Every publication relayed to us by other nodes of the room."""
        return [r.track for origin in self.origins.values() for r in origin.tracks.values()]

    def tracks_for(self, participant_id: str) -> list[PublishedTrack]:
        """Every publication of the other participants (local, then relayed), in a stable order."""
        return [t for t in self.local_tracks() + self.remote_tracks() if t.participant != participant_id]

    def peer_count(self) -> int:
        return sum(len(p.publishers) + (1 if p.subscriber else 0) for p in self.participants.values())

    def forwarded_packets(self) -> int:
        return self.forwarded_retired + sum(
            p.subscriber.forwarded_packets() for p in self.participants.values() if p.subscriber
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch_state(self, participant_id: str, pc_name: str, pc: RTCPeerConnection) -> None:
        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                self._emit(protocol.peer_state_event(self.id, participant_id, pc_name, "connected"))
            elif state == "failed" and not self.closed:
                self._spawn(self._fail(participant_id, pc_name, pc, "ice_or_dtls_failed"))
            elif state == "closed" and not self.closed:
                # Not by our close() (that makes the connection not current first, so _fail ignores it):
                # aiortc closes a connection by itself when ICE consent expires (no answer to consent
                # checks for ~30 s) or the peer closed DTLS. Left alone, its m-lines would be fed into a
                # dead transport (dropped packets) and its client never told to connect again.
                self._spawn(self._fail(participant_id, pc_name, pc, "connection_closed"))

    # -- operations (caller holds self.lock) -------------------------------

    async def publish(self, participant_id: str, pc_name: str, sdp: str) -> str:
        """Accept a publish offer (replacing an older one with the same name)."""
        p = self.participant(participant_id, create=True)
        old = p.publishers.pop(pc_name, None)
        if old is not None:
            await self._close_publisher(p, old, "replaced", renegotiate=False)
        publisher = Publisher(participant=participant_id, name=pc_name, config=self.config)
        try:
            answer = await publisher.accept(sdp, lambda level: self._audio_level(participant_id, level))
        except BaseException:
            await publisher.pc.close()
            if old is not None:
                await self.renegotiate_all()
            raise
        p.publishers[pc_name] = publisher
        for track in publisher.tracks:
            if track.source == "microphone":  # heard once it speaks (lastn.AudioSelector)
                track.forwarder.audible = participant_id in self.audio.audible
            self._watch_first_packet(track)
        if self.recorder is not None:
            self.recorder.add_tracks(publisher.tracks)
        self._relays_changed()
        self._watch_state(participant_id, pc_name, publisher.pc)
        self._emit(protocol.publication_event(self.id, participant_id, pc_name, "started", publisher.sources))
        self.renegotiate_later()  # the publisher's answer does not wait for everyone else's offers
        return answer

    async def unpublish(self, participant_id: str, pc_name: str) -> None:
        p = self.participant(participant_id)
        publisher = p.publishers.pop(pc_name, None)
        if publisher is None:
            raise PeerNotFound(f"no publish connection {pc_name!r}")
        await self._close_publisher(p, publisher, "unpublished")

    async def subscribe(self, participant_id: str) -> tuple[str | None, int, list[TrackInfo], str]:
        """(Re)create the participant's subscribe connection with all current tracks.

        Returns (offer SDP, revision, tracks, the connection's name: ``Subscriber.connection``).

        With nothing to receive yet the SDP is None and no offer is outstanding
        (an offer without m-lines cannot be answered by browsers): the first
        real offer is pushed as a ``subscribe_offer`` event when a track appears.
        """
        p = self.participant(participant_id, create=True)
        if p.subscriber is not None:
            await self._close_subscriber(p, "replaced")
        subscriber = Subscriber(
            participant=participant_id,
            config=self.config,
            revision_base=p.revisions,
            speaker=lambda: self.speaker.current,
        )
        p.subscriber = subscriber
        subscriber.on_forwarding_changed = lambda: self._report(p)
        subscriber.on_audio_lines_changed = lambda: self._audio_lines_changed(p, subscriber)
        self._apply_tiles(p)
        self._watch_state(participant_id, "subscribe", subscriber.pc)
        view = self._view()
        self.select_all(view, offering=p)  # the room may have grown past a last-N size step
        desired = self.desired_for(p, view)
        if not desired:
            subscriber.revision += 1  # a new baseline: offers of a replaced connection are stale
            p.revisions = subscriber.revision
            return None, subscriber.revision, [], subscriber.connection
        sdp, revision, tracks = await subscriber.offer(desired, self._spares(subscriber, desired))
        p.revisions = revision
        self._arm_offer_timeout(p, subscriber, revision)
        return sdp, revision, tracks, subscriber.connection

    async def subscribe_answer(self, participant_id: str, sdp: str, revision: int) -> None:
        p = self.participant(participant_id)
        if p.subscriber is None:
            raise PeerNotFound("no subscribe connection")
        missing = await p.subscriber.apply_answer(sdp, revision)
        for info, codec in missing:
            logger.warning("room %s: %s cannot receive %s (%s): no common codec", self.id, participant_id, info, codec)
            self._emit(protocol.track_unavailable_event(self.id, participant_id, info, "no_common_codec", codec))
        self._report(p)
        if p.subscriber.dirty:
            p.subscriber.dirty = False
            await self._renegotiate(p)

    async def add_ice(self, participant_id: str, pc_name: str, candidate: dict[str, Any] | None) -> None:
        from aiortc.sdp import candidate_from_sdp

        p = self.participant(participant_id)
        pc = p.subscriber.pc if pc_name == "subscribe" and p.subscriber else None
        if pc_name != "subscribe" and pc_name in p.publishers:
            pc = p.publishers[pc_name].pc
        if pc is None:
            raise PeerNotFound(f"no connection {pc_name!r}")
        if candidate is None:
            await pc.addIceCandidate(None)  # type: ignore[arg-type]
            return
        text = str(candidate["candidate"])
        text = text[len("candidate:") :] if text.startswith("candidate:") else text
        if not text:
            await pc.addIceCandidate(None)  # type: ignore[arg-type]
            return
        try:
            ice = candidate_from_sdp(text)
        except (ValueError, IndexError) as exc:
            raise protocol.BadRequest(f"candidate does not parse: {exc}") from exc
        if not ice_policy(self.config).allows(ice.ip):
            logger.info("room %s: ignored %s's ICE candidate %s (ice_policy)", self.id, participant_id, ice.ip)
            return
        ice.sdpMid = candidate.get("sdpMid")
        ice.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if ice.sdpMid is None and ice.sdpMLineIndex is None:
            ice.sdpMLineIndex = 0
        await pc.addIceCandidate(ice)

    async def leave(self, participant_id: str) -> None:
        """Close the participant's connections; its lines at the others become spares (no re-offer for that).

        With spare m-lines on (``config.spare_mlines``), each subscriber without an offer outstanding frees
        the leaver's negotiated lines at once (``Subscriber.release``): the ``forwarded_tracks`` that follows no
        longer lists them and lists their mids in ``spare`` (the client forgets whom they carried); a later
        track is mapped onto them (the leaver's own first, should it come back: ``map_spares``). A re-offer is
        then made only if something else needs one.
        """
        p = self.participant(participant_id)
        gone = [track for publisher in p.publishers.values() for track in publisher.tracks]
        for publisher in list(p.publishers.values()):
            await self._close_publisher(p, publisher, "left", renegotiate=False)
        p.publishers.clear()
        if p.subscriber is not None:
            await self._close_subscriber(p, "left")
        self.participants.pop(participant_id, None)
        self.speaker.remove(participant_id)
        self.audio.remove(participant_id)
        self.order.remove(participant_id)
        if self.config.spare_mlines and gone:
            view = self._view()
            for q in self.participants.values():
                if q.subscriber is not None and q.subscriber.outstanding is None:
                    # Pooled lines are re-mapped to someone else (rebind, rebind_audio), as before: not freed.
                    pooled = {"audio": q.subscriber.audio_pooled, "video": self._selection(q, view)[2]}
                    q.subscriber.release([t for t in gone if not pooled.get(t.kind, False)])
        await self.renegotiate_all()

    async def start_recording(self, recording_id: str) -> bool:
        """Record every present and future publication; False if ``recording_id`` already runs here.

        Raises RecordingInProgress (another recording runs), RecordingExists
        (its spool directory exists) or SpoolUnwritable.
        """
        if self.recorder is not None:
            if self.recorder.failed is None:
                if self.recorder.id == recording_id:
                    return False
                raise protocol.RecordingInProgress(
                    f"room {self.id!r} is already being recorded", {"recording": self.recorder.id}
                )
            await self.recorder.stop()  # a failed recording is forgotten (it emitted recording_failed)
            self.recorder = None
        spool = Path(self.config.recordings_spool_dir)
        if (spool / recording_id).exists():
            raise protocol.RecordingExists(f"recording {recording_id!r} already exists in the spool")
        try:
            recorder = Recorder.start(recording_id=recording_id, room_id=self.id, spool_dir=spool, emit=self._emit)
        except OSError as exc:
            raise protocol.SpoolUnwritable(f"cannot create the recording directory: {exc}") from exc
        recorder.add_tracks(self.local_tracks() + self.remote_tracks())
        self.recorder = recorder
        return True

    async def stop_recording(self, recording_id: str) -> bool:
        """Stop ``recording_id`` (manifest + event). False if it is not this room's live recording."""
        recorder = self.recorder
        if recorder is None or recorder.id != recording_id:
            return False
        self.recorder = None
        return await recorder.stop() is None

    async def set_preferences(self, participant_id: str, preferences: Preferences) -> None:
        """Store what the participant wants to see (pins, tiles) and apply it at once.

        Only a selection needing more m-lines than are negotiated renegotiates.
        """
        p = self.participant(participant_id, create=True)
        p.preferences = preferences
        self._apply_tiles(p)
        await self._renegotiate(p)

    def _audio_lines_changed(self, p: Participant, subscriber: Subscriber) -> None:
        """``subscriber``'s link carries another number of microphones (audio_lines.py): re-pool its audio lines
        now, under the lock; an offer only if a microphone it is sent lacks a line (fewer lines: none)."""

        async def run() -> None:
            async with self.lock:
                if self.closed or p.subscriber is not subscriber:
                    return
                selection = self._select(p)
                if selection is None or not self._needs_offer(p, subscriber, *selection, dropping=False):
                    return
                await self._renegotiate(p)

        self._spawn(run())

    @staticmethod
    def _apply_tiles(p: Participant) -> None:
        """Cap each shown video's simulcast layer at the height its tile is displayed at (layers.allocate)."""
        if p.subscriber is not None:
            p.subscriber.max_heights = {(t.participant, t.source): t.height for t in p.preferences.tiles}

    async def set_last_n(self, last_n: int | None) -> None:
        """The room's last-N setting (None: by room size, lastn.default_last_n); applied at once."""
        if last_n != self.last_n:
            self.last_n = last_n
            await self.renegotiate_all()

    def effective_last_n(self) -> int | None:
        return lastn.effective_last_n(self.last_n, len(self.participants))

    def _view(self) -> RoomView:
        speakers = self.order.order()
        tracks = self.local_tracks() + self.remote_tracks()
        return RoomView(
            tracks=tracks, microphones=self._by_speaker(tracks), speakers=speakers, last_n=self.effective_last_n()
        )

    def select_all(self, view: RoomView | None = None, *, offering: Participant | None = None) -> None:
        """Apply last-N to every subscriber; queue a renegotiation if one now needs an m-line (``_needs_offer``).

        ``offering``: a participant whose offer the caller makes next (not checked). A subscriber with an
        offer outstanding is marked ``dirty`` instead: re-checked when it answers.
        """
        view = view or self._view()
        needed = False
        for p in list(self.participants.values()):
            selection = self._select(p, view)
            subscriber = p.subscriber
            if selection is None or subscriber is None or p is offering or subscriber.dirty:
                continue
            if (subscriber.outstanding is None and needed) or not self._needs_offer(
                p, subscriber, *selection, dropping=False
            ):
                continue
            if subscriber.outstanding is not None:
                subscriber.dirty = True
            else:
                needed = True
        if needed:
            self.renegotiate_later()

    def _needs_offer(
        self,
        p: Participant,
        subscriber: Subscriber,
        desired: list[PublishedTrack],
        shown: list[PublishedTrack] | None,
        *,
        dropping: bool = True,
    ) -> bool:
        """True if ``subscriber`` must be offered ``desired`` now (lastn.needs_offer).

        ``dropping`` False: an m-line whose track is no longer desired is no reason (a selection change
        alone: in a pooled room a deselected video keeps its line, paused, as before; publications that
        end renegotiate through ``renegotiate_all``).

        A camera that has no m-line there yet waits for the subscriber's next offer unless the subscriber is
        shown it and it has sent a packet (or is pinned): a join of someone the others are not shown, or whose
        camera is off, re-offers nobody (issue 19). A camera published just now counts as sending for last-N
        (``check_cameras``) but not here, until its first packet (``_watch_first_packet``).
        """
        pinned = p.preferences.pinned
        negotiated = {s.track for s in subscriber.slots if s.track is not None}
        if not dropping:
            negotiated &= set(desired)
        return lastn.needs_offer(
            negotiated=negotiated,
            desired=desired,
            shown=None if shown is None else set(shown),
            due=lambda t: t.participant in pinned or any(f.packets_in for f in t.all_layers),
        )

    def _spares(self, subscriber: Subscriber, desired: list[PublishedTrack]) -> dict[str, int]:
        """Spare m-lines per kind for an offer of ``desired`` (lastn.spare_lines); none of a pooled kind."""
        pooled_video = sum(1 for t in self.tracks_for(subscriber.participant) if t.kind == "video") > (
            self.config.max_video_mlines
        )
        bounds = {
            "audio": (self.config.max_audio_mlines, subscriber.audio_pooled),
            "video": (self.config.max_video_mlines, pooled_video and self.effective_last_n() is not None),
        }
        return {
            kind: lastn.spare_lines(
                used=sum(1 for t in desired if t.kind == kind),
                bound=bound,
                spare=self.config.spare_mlines,
                pooled=pooled,
            )
            for kind, (bound, pooled) in bounds.items()
        }

    def _map_spares(
        self, p: Participant, subscriber: Subscriber, desired: list[PublishedTrack], shown: list[PublishedTrack] | None
    ) -> None:
        """Put the tracks that need an m-line now (lastn.lines_due) on ``subscriber``'s spare lines: no re-offer.

        The rest (no spare of their kind left) are offered by the caller (``_needs_offer`` still sees them).
        """
        if not any(s.spare for s in subscriber.slots):
            return
        if subscriber.audio_pooled:  # a pooled microphone line is re-mapped without an event: not onto a spare
            desired = [t for t in desired if t.source != "microphone"]
        pinned = p.preferences.pinned
        due = lastn.lines_due(
            negotiated={s.track for s in subscriber.slots if s.track is not None},
            desired=desired,
            shown=None if shown is None else set(shown),
            due=lambda t: t.participant in pinned or any(f.packets_in for f in t.all_layers),
        )
        if not due:
            return
        _, missing = subscriber.map_spares(due)
        for info, codec in missing:
            logger.warning("room %s: %s cannot receive %s (%s): no common codec", self.id, p.id, info, codec)
            self._emit(protocol.track_unavailable_event(self.id, p.id, info, "no_common_codec", codec))

    def _selection(
        self, p: Participant, view: RoomView
    ) -> tuple[list[PublishedTrack], list[PublishedTrack] | None, bool]:
        """(every track of the others, the video ``p`` is sent (None: all), whether m-lines are pooled).

        Pooled (more than ``config.max_video_mlines`` videos and a last-N): only
        the selected videos have m-lines, re-mapped as the selection changes.
        """
        tracks = [t for t in view.tracks if t.participant != p.id]  # tracks_for(p.id)
        last_n = view.last_n
        if last_n is None:
            return tracks, None, False
        video = [t for t in tracks if t.kind == "video"]
        # A camera that sends nothing (turned off: the browser keeps its m-line and sends no packets) takes no
        # place among the N; pinned ones stay (their tile shows the avatar either way).
        pinned = p.preferences.pinned
        candidates = [
            t
            for t in video
            if t.source != "camera"
            or id(t) in self._sending_cameras
            or id(t) not in self._camera_activity  # not looked at yet: published just now
            or t.participant in pinned
        ]
        selected = lastn.select_video(candidates, subscriber=p.id, speakers=view.speakers, pinned=pinned, last_n=last_n)
        return tracks, selected, len(video) > self.config.max_video_mlines

    def desired_for(self, p: Participant, view: RoomView | None = None) -> list[PublishedTrack]:
        """The tracks ``p``'s subscribe connection negotiates m-lines for."""
        view = view or self._view()
        tracks, selected, pooled = self._selection(p, view)
        return self._desired(tracks, selected, pooled, self._audio_pool(p, self._microphones_for(p, view)))

    @staticmethod
    def _microphones_for(p: Participant, view: RoomView) -> list[PublishedTrack]:
        """The others' microphones, most recent speaker first (``_by_speaker`` of ``p``'s tracks: a stable sort)."""
        return [t for t in view.microphones if t.participant != p.id]

    @staticmethod
    def _desired(
        tracks: list[PublishedTrack],
        selected: list[PublishedTrack] | None,
        pooled: bool,
        microphones: list[PublishedTrack] | None,
    ) -> list[PublishedTrack]:
        if microphones is not None:
            pool = {id(t) for t in microphones}
            tracks = [t for t in tracks if t.source != "microphone" or id(t) in pool]
        if not pooled or selected is None:
            return tracks
        return [*(t for t in tracks if t.kind != "video"), *selected]

    def _audio_pool(self, p: Participant, microphones: list[PublishedTrack]) -> list[PublishedTrack] | None:
        """The microphones holding ``p``'s audio m-lines when they are pooled; None: one m-line each.

        ``microphones``: the others' (``_by_speaker``). Pooled above ``config.max_audio_mlines``
        of them (lastn.audio_pool): the audible ones, then the lines' current holders, then by speaker order;
        pooled into fewer lines while ``p``'s link carries fewer microphones (audio_lines.py).
        """
        size = self.config.max_audio_mlines
        limit = p.subscriber.audio_lines.limit if p.subscriber is not None else None
        if limit is not None:
            size = min(size, limit)
        if len(microphones) <= size:
            return None
        audible = [t for t in microphones if t.participant in self.audio.audible]
        bound = p.subscriber.pooled_microphones() if p.subscriber is not None else []
        return lastn.audio_pool(bound=bound, audible=audible, candidates=microphones, size=size)

    def _by_speaker(self, tracks: list[PublishedTrack]) -> list[PublishedTrack]:
        """The microphones among ``tracks``, most recent speaker first (lastn.SpeakerOrder)."""
        rank = {participant: i for i, participant in enumerate(self.order.order())}
        microphones = [t for t in tracks if t.source == "microphone"]
        microphones.sort(key=lambda t: rank.get(t.participant, len(rank)))
        return microphones

    def _select(
        self, p: Participant, view: RoomView | None = None
    ) -> tuple[list[PublishedTrack], list[PublishedTrack] | None] | None:
        """Apply last-N to ``p``'s subscribe connection: re-map pooled m-lines, attach/detach video.

        Never renegotiates (``_renegotiate`` does when the selection needs more m-lines).
        Returns (what ``desired_for(p)`` would after it, the video ``p`` is shown: None = all), or None
        without a subscribe connection; computed once: at 100 participants a pass over everyone is O(N²).
        """
        if p.subscriber is None:
            return None
        view = view or self._view()
        tracks, selected, pooled = self._selection(p, view)
        if pooled and selected is not None:
            p.subscriber.rebind(selected)
        p.subscriber.select(selected)
        microphones = self._audio_pool(p, self._microphones_for(p, view))
        p.subscriber.audio_pooled = microphones is not None
        if microphones is not None:
            p.subscriber.rebind_audio(microphones)
        # Fewer microphones than lines (the link's count, audio_lines.py): the lines left over go quiet.
        p.subscriber.select_audio(microphones if p.subscriber.audio_lines.limit is not None else None)
        desired = self._desired(tracks, selected, pooled, microphones)
        self._map_spares(p, p.subscriber, desired, selected)
        self._report(p)
        return desired, selected

    def _report(self, p: Participant) -> None:
        """Tell ``p`` (``forwarded_tracks``) when what its connection is fed with changed."""
        subscriber = p.subscriber
        if subscriber is None:
            return
        forwarded = subscriber.forwarded()
        spare = subscriber.spare_mids()
        # A pooled microphone line re-mapped to a new talker is not news for the client (it plays pooled
        # lines as they come; who talks comes from active_speaker): no event per talker per subscriber.
        # A line that became a spare is (a leave released it, even one not forwarded now: a paused video).
        key = (
            *sorted(
                f"{t.mid}:{t.participant}:{t.source}"
                for t in forwarded
                if not (subscriber.audio_pooled and t.source == "microphone")
            ),
            "pooled" if subscriber.audio_pooled else "",
            *bandwidth_report.report_key(subscriber.limited()),
            *(f"spare:{mid}" for mid in sorted(spare)),
        )
        if key == subscriber.reported or (subscriber.reported is None and not forwarded):
            return  # unchanged, or nothing forwarded yet (nothing answered)
        subscriber.reported = key
        video = [t for t in forwarded if t.kind == "video"]
        audio = [t for t in forwarded if t.kind == "audio"]
        self._emit(
            protocol.forwarded_tracks_event(
                self.id,
                p.id,
                self.effective_last_n(),
                video,
                audio,
                audio_pooled=subscriber.audio_pooled,
                bandwidth=subscriber.bandwidth(),
                spare=spare,
                revision=subscriber.revision,
                connection=subscriber.connection,
            )
        )

    def _watch_first_packet(self, track: PublishedTrack) -> None:
        """Re-select everyone once a camera's first packet arrived: subscribers shown it then get its m-line.

        Until then it has none where it had none (``_needs_offer``): a camera that is off sends nothing, and
        a join of someone whose camera is off then re-offers nobody.
        """
        if track.source != "camera":
            return
        fired = False

        def first_packet() -> None:
            nonlocal fired
            if not fired:
                fired = True
                # Not inside the publisher's packet handling (select_all attaches downstreams).
                asyncio.get_running_loop().call_soon(self._camera_started)

        for forwarder in track.all_layers:
            forwarder.notify_first_packet(first_packet)

    def _camera_started(self) -> None:
        if not self.closed:
            self.select_all()

    def _speaker_changed(self, participant_id: str) -> None:
        self._emit(protocol.active_speaker_event(self.id, participant_id))
        if self.order.spoke(participant_id) and not self.closed:
            self.select_all()

    def _audio_level(self, participant_id: str, level: int) -> None:
        """Every microphone packet's RFC 6464 level, before it is forwarded (hot path)."""
        now = time.monotonic()
        self.speaker.feed(participant_id, level, now)
        admitted, evicted = self.audio.feed(participant_id, level, now)
        if evicted is not None:  # first: its pooled m-lines become free for the newcomer
            self._set_audible(evicted, False)
        if admitted is not None:
            self._set_audible(admitted, True)
            self._map_pooled_audio()

    def _map_pooled_audio(self) -> None:
        """Give a newly audible microphone a pooled audio m-line at every subscriber, before its packet is forwarded."""
        if len(self.participants) <= self.config.max_audio_mlines + 1:
            return  # nobody can have more other microphones than audio m-lines
        everyone = self._by_speaker(
            [t for q in self.participants.values() for pub in q.publishers.values() for t in pub.tracks]
        )
        for p in list(self.participants.values()):
            if p.subscriber is None:
                continue
            microphones = self._audio_pool(p, [t for t in everyone if t.participant != p.id])
            if microphones is not None:
                p.subscriber.rebind_audio(microphones)

    def _set_audible(self, participant_id: str, audible: bool) -> None:
        p = self.participants.get(participant_id)
        if p is None:
            return
        for publisher in p.publishers.values():
            for track in publisher.tracks:
                if track.source == "microphone":
                    track.forwarder.set_audible(audible)

    # -- cascading (caller holds self.lock) ----------------------------------

    def _relays_changed(self) -> None:
        local = self.local_tracks()
        for target in self.targets.values():
            target.set_tracks(local)

    def add_relay(self, node: str, url: str) -> bool:
        """Relay every local publication (now and later) to ``node``; False if already relaying there.

        Raises RelayDisabled when this process has no relay endpoint.
        """
        if self.relay is None:
            raise protocol.RelayDisabled("this media node has no relay endpoint")
        if node == self.config.node_id:
            raise protocol.BadRequest("a node cannot relay to itself", {"field": "node"})
        existing = self.targets.get(node)
        if existing is not None and existing.url == url.rstrip("/"):
            return False
        if existing is not None:
            self._spawn(existing.close(notify=False))
        target = RelayTarget(
            room=self.id, origin=self.config.node_id, node=node, url=url, secret=self.config.secret, endpoint=self.relay
        )
        self.targets[node] = target
        target.set_tracks(self.local_tracks())
        return True

    async def remove_relay(self, node: str) -> None:
        target = self.targets.pop(node, None)
        if target is None:
            raise protocol.RelayNotFound(f"room {self.id!r} is not relayed to {node!r}")
        await target.close()

    async def update_origin(self, origin: str, feedback: Address, described: list[dict[str, Any]]) -> None:
        """Reconcile the publications ``origin`` relays to us; subscribers are renegotiated."""
        if self.relay is None:
            raise protocol.RelayDisabled("this media node has no relay endpoint")
        remote = self.origins.get(origin)
        if remote is None:
            remote = self.origins[origin] = RemoteOrigin(origin, self.relay)

        def feed(participant: str) -> Callable[[int], None]:
            return lambda level: self.speaker.feed(participant, level, time.monotonic())

        added, removed = remote.update(feedback, described, feed)
        self._remote_changed(added, removed)
        await self.renegotiate_all()

    async def remove_origin(self, origin: str) -> bool:
        """Drop every publication relayed by ``origin`` (it stopped, or died); False if none."""
        remote = self.origins.pop(origin, None)
        if remote is None:
            return False
        self._remote_changed([], remote.close())
        await self.renegotiate_all()
        return True

    def _remote_changed(self, added: list[PublishedTrack], removed: list[PublishedTrack]) -> None:
        for track in added:
            self._watch_first_packet(track)
        if self.recorder is not None:
            self.recorder.add_tracks(added)
            self.recorder.remove_tracks(removed)
        for track in removed:
            if track.source == "microphone":
                self.speaker.remove(track.participant)

    def relay_status(self) -> dict[str, Any]:
        return {
            "targets": [t.status() for t in self.targets.values()],
            "origins": [{"node": o.node, "tracks": len(o.tracks)} for o in self.origins.values()],
        }

    def renegotiate_later(self) -> None:
        """Queue one ``renegotiate_all`` for when the current operation has released the lock.

        Coalesced: however many publications arrive before it gets the lock (a
        burst of joins), it runs once. The lock is FIFO, so operations already
        waiting (other newcomers' publish/subscribe) are answered first.
        """
        if self._renegotiation_queued or self.closed:
            return
        self._renegotiation_queued = True

        async def run() -> None:
            async with self.lock:
                self._renegotiation_queued = False
                if self.closed:
                    return
                try:
                    await self.renegotiate_all()
                except Exception:  # no request to report it to: the next change renegotiates again
                    logger.exception("room %s: renegotiation failed", self.id)

        self._spawn(run())

    async def renegotiate_all(self) -> None:
        """Offer every subscriber its new track set (serialized per subscriber)."""
        view: RoomView | None = None
        for p in list(self.participants.values()):
            if p.subscriber is not None:
                view = view or self._view()
                if await self._renegotiate(p, view=view):
                    view = None  # an offer was awaited: the room may have changed meanwhile

    async def _renegotiate(self, p: Participant, *, reoffer: bool = False, view: RoomView | None = None) -> bool:
        """Offer ``p`` its current selection if its m-lines must change now (``_needs_offer``; or ``reoffer``).

        True if it offered."""
        subscriber = p.subscriber
        if subscriber is None or subscriber.pc.connectionState == "closed":
            return False  # a connection aiortc closed by itself is failed by _fail (queued on the lock), not offered
        desired, shown = self._select(p, view) or ([], None)
        if not reoffer and not self._needs_offer(p, subscriber, desired, shown):
            return False
        if subscriber.outstanding is not None and not reoffer:
            subscriber.dirty = True  # coalesced: offered once the current offer is answered
            return False
        sdp, revision, tracks = await subscriber.offer(desired, self._spares(subscriber, desired))
        p.revisions = revision
        self._emit(protocol.subscribe_offer_event(self.id, p.id, sdp, revision, tracks, subscriber.connection))
        self._arm_offer_timeout(p, subscriber, revision)
        return True

    def _arm_offer_timeout(self, p: Participant, subscriber: Subscriber, revision: int) -> None:
        """Unblock a subscriber whose client never answers offer ``revision``.

        After ``config.subscribe_offer_timeout`` the offer is replaced by a new
        one (new revision, current track set); after MAX_REOFFERS unanswered
        re-offers the subscribe connection fails (``peer_state failed
        offer_timeout``, then ``closed``) so the client subscribes again.
        """

        async def expire() -> None:
            await asyncio.sleep(self.config.subscribe_offer_timeout)
            async with self.lock:
                if self.closed or p.subscriber is not subscriber or subscriber.outstanding != revision:
                    return  # answered, replaced or gone meanwhile
                if subscriber.reoffers < MAX_REOFFERS:
                    subscriber.reoffers += 1
                    logger.info("room %s: %s did not answer offer %d; re-offering", self.id, p.id, revision)
                    await self._renegotiate(p, reoffer=True)
                    return
                self._emit(protocol.peer_state_event(self.id, p.id, "subscribe", "failed", "offer_timeout"))
                await self._close_subscriber(p, "offer_timeout")

        self._spawn(expire())

    async def _close_publisher(
        self, p: Participant, publisher: Publisher, reason: str, renegotiate: bool = True
    ) -> None:
        if p.publishers.get(publisher.name) is publisher:
            del p.publishers[publisher.name]
        self._watch.pop(id(publisher.pc), None)
        if self.recorder is not None:
            self.recorder.remove_tracks(publisher.tracks)
        self.retired.add_publisher(publisher)
        await publisher.close()
        self._relays_changed()
        if any(t.source == "microphone" for t in publisher.tracks):
            self.speaker.remove(p.id)
            self.audio.remove(p.id)
        self._emit(protocol.publication_event(self.id, p.id, publisher.name, "stopped", publisher.sources))
        self._emit(protocol.peer_state_event(self.id, p.id, publisher.name, "closed", reason))
        if renegotiate:
            await self.renegotiate_all()

    async def _close_subscriber(self, p: Participant, reason: str) -> None:
        subscriber = p.subscriber
        if subscriber is None:
            return
        p.subscriber = None
        self._watch.pop(id(subscriber.pc), None)
        self.forwarded_retired += subscriber.forwarded_packets()
        try:
            await self.retired.add_subscriber(subscriber)
        except Exception:  # statistics must never break a close
            logger.exception("room %s: could not read the subscriber's statistics", self.id)
        await subscriber.close()
        self._emit(protocol.peer_state_event(self.id, p.id, "subscribe", "closed", reason))

    async def _fail(self, participant_id: str, pc_name: str, pc: RTCPeerConnection, reason: str) -> None:
        """Report ``pc`` failed and close it, if it is still the participant's current ``pc_name`` connection."""
        async with self.lock:
            p = self.participants.get(participant_id)
            if p is None or self.closed:
                return
            if pc_name == "subscribe":
                if p.subscriber is None or p.subscriber.pc is not pc:
                    return  # replaced or closed meanwhile (or by us): nothing to report
                self._emit(protocol.peer_state_event(self.id, participant_id, pc_name, "failed", reason))
                await self._close_subscriber(p, reason)
            else:
                publisher = p.publishers.get(pc_name)
                if publisher is None or publisher.pc is not pc:
                    return
                self._emit(protocol.peer_state_event(self.id, participant_id, pc_name, "failed", reason))
                await self._close_publisher(p, publisher, reason)

    # -- watchdog -----------------------------------------------------------

    def check_silence(self, now: float) -> None:
        """Fail peers that received nothing (RTP/RTCP/DTLS) for the silence timeout.

        Subscribe connections with no forwarded track are exempt: a client
        sends no RTCP for a connection that carries nothing.
        """
        timeout = self.config.peer_silence_timeout
        seen: set[int] = set()
        for p in list(self.participants.values()):
            peers: list[tuple[str, RTCPeerConnection]] = [(name, pub.pc) for name, pub in p.publishers.items()]
            if p.subscriber is not None and p.subscriber.active:
                peers.append(("subscribe", p.subscriber.pc))
            for name, pc in peers:
                seen.add(id(pc))
                dtls = peer_dtls(pc)
                counter = hooks.dtls_last_receive_counter(dtls) if dtls is not None else 0
                watch = self._watch.setdefault(id(pc), _Watch(counter, now))
                if counter != watch.counter:
                    watch.counter, watch.since = counter, now
                elif now - watch.since >= timeout:
                    self._watch.pop(id(pc), None)
                    self._spawn(self._fail(p.id, name, pc, "silent"))
        for key in list(self._watch):
            if key not in seen:
                del self._watch[key]
        for p in self.participants.values():
            if p.subscriber is not None:
                for stall in p.subscriber.stalls(now, STALL_REPORT_AFTER):
                    logger.warning("room %s: %s receives nothing on %s", self.id, p.id, stall)

    def check_cameras(self, now: float) -> None:
        """Re-select every subscriber's last-N video when a camera starts or stops sending.

        A camera is sending while any of its layers received a packet within
        :data:`CAMERA_IDLE` seconds, or for that long after it was published
        (its first packets may still be on their way). Only rooms with a
        last-N care: without one nothing is tracked (an unknown camera counts as sending).
        """
        if self.effective_last_n() is None:
            self._camera_activity, self._sending_cameras = {}, frozenset()
            return
        activity: dict[int, tuple[int, float]] = {}
        sending: set[int] = set()
        for track in [*self.local_tracks(), *self.remote_tracks()]:
            if track.source != "camera":
                continue
            count = sum(f.packets_in for f in track.all_layers)
            seen, since = self._camera_activity.get(id(track), (0, min(f.created for f in track.all_layers)))
            if count != seen:
                since = now
            activity[id(track)] = (count, since)
            if now - since < CAMERA_IDLE:
                sending.add(id(track))
        self._camera_activity = activity
        if sending != self._sending_cameras:
            self._sending_cameras = frozenset(sending)
            if not self.closed:
                self.select_all()

    async def _run_camera_check(self) -> None:
        while True:
            await asyncio.sleep(CAMERA_CHECK_INTERVAL)
            self.check_cameras(time.monotonic())

    async def _run_watchdog(self) -> None:
        interval = max(0.05, min(5.0, self.config.peer_silence_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.check_silence(time.monotonic())

    async def close(self) -> None:
        """Close every connection and cancel/await every task of the room."""
        self.closed = True
        if self.recorder is not None:  # the room ended: the recording stops (manifest, recording_stopped)
            await self.stop_recording(self.recorder.id)
        for target in list(self.targets.values()):
            await target.close()
        self.targets.clear()
        for remote in self.origins.values():
            remote.close()
        self.origins.clear()
        self._watchdog.cancel()
        self._camera_check.cancel()
        tasks = [self._watchdog, self._camera_check, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in list(self.participants.values()):
            for publisher in list(p.publishers.values()):
                await self._close_publisher(p, publisher, "room_closed", renegotiate=False)
            await self._close_subscriber(p, "room_closed")
        self.participants.clear()
