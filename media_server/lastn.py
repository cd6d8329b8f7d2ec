"""Last-N: which video and audio tracks each subscriber of a large room is sent.

Pure selection logic (no I/O, no aiortc), used by :class:`media_server.room.Room`:

* :func:`default_last_n` — how many camera videos a subscriber gets when the
  room has no ``last_n`` setting, by room size.
* :class:`SpeakerOrder` — participants by how recently they were the active
  speaker (never-speakers in join order after them).
* :func:`select_video` — one subscriber's video set: every screen share, then
  its pinned participants' cameras, then the most recent speakers' cameras,
  up to N cameras, never its own.
* :class:`AudioSelector` — the few microphones forwarded to everyone: the
  loudest ``limit``, with a newly speaking participant admitted on its first
  loud packet (no switch latency) when a place is free or held by someone
  quieter.
* :func:`needs_offer` — whether a subscriber must be re-offered: not for a
  camera it is not shown, nor for one that has sent nothing yet (a join of
  someone nobody sees, or whose camera is off, re-offers nobody);
  :func:`lines_due` — the tracks that need an m-line now (mapped onto a spare
  line when there is one: no re-offer).
* :func:`spare_lines` — how many spare m-lines of a kind an offer negotiates
  ahead (small rooms: a join maps its tracks onto them instead of re-offering
  everyone).
* :func:`audio_pool` — in a room with more microphones than a subscriber has
  audio m-lines (``max_audio_mlines``), which microphones hold those lines:
  the audible ones always, the others kept where they are (no needless
  re-mapping), then filled in speaker order.

Why (docs/architecture.md *Large rooms*): a subscriber's downlink and decode
cost grow with every video it receives, and most tiles of a large grid are
thumbnails of people who are not talking; audio of silent participants is
noise at best.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Protocol, TypeVar

ALL_VIDEO_UP_TO = 6
"""Rooms of at most this many participants send every camera to everyone (a 3x2 grid on any screen)."""
MEDIUM_ROOM_UP_TO = 20
MEDIUM_ROOM_LAST_N = 9
"""7–20 participants: a 3x3 grid of cameras (~9 x 0.3–0.5 Mbps at 360p, a few % CPU each to decode)."""
LARGE_ROOM_LAST_N = 6
"""Above 20: 6 cameras (~2–3 Mbps down), the rest are avatars; large rooms are mostly audiences."""
MAX_PINNED = 4
AUDIO_LIMIT = 3
"""Microphones forwarded at once: more than three simultaneous talkers is unintelligible anyway."""
SILENCE_DBOV = 127
SPEECH_DBOV = 60
"""A packet louder than -60 dBov (RFC 6464 level < 60) counts as speech for admission."""


def default_last_n(room_size: int) -> int | None:
    """Cameras per subscriber for a room of ``room_size`` participants; None = all."""
    if room_size <= ALL_VIDEO_UP_TO:
        return None
    if room_size <= MEDIUM_ROOM_UP_TO:
        return MEDIUM_ROOM_LAST_N
    return LARGE_ROOM_LAST_N


def effective_last_n(setting: int | None, room_size: int) -> int | None:
    """The room's ``last_n`` setting if set, else :func:`default_last_n`; None = all."""
    return setting if setting is not None else default_last_n(room_size)


class SpeakerOrder:
    """Participants, most recent active speaker first; those who never spoke follow in join order."""

    def __init__(self) -> None:
        self._spoke: list[str] = []
        self._joined: list[str] = []

    def add(self, participant: str) -> None:
        if participant not in self._spoke and participant not in self._joined:
            self._joined.append(participant)

    def spoke(self, participant: str) -> bool:
        """``participant`` became the active speaker; True if the order changed."""
        if self._spoke and self._spoke[0] == participant:
            return False
        if participant in self._spoke:
            self._spoke.remove(participant)
        if participant in self._joined:
            self._joined.remove(participant)
        self._spoke.insert(0, participant)
        return True

    def remove(self, participant: str) -> None:
        for order in (self._spoke, self._joined):
            if participant in order:
                order.remove(participant)

    def order(self) -> list[str]:
        return [*self._spoke, *self._joined]


class VideoTrack(Protocol):
    @property
    def participant(self) -> str: ...

    @property
    def source(self) -> str: ...


class Track(VideoTrack, Protocol):
    @property
    def kind(self) -> str: ...


T = TypeVar("T", bound=VideoTrack)
H = TypeVar("H")
K = TypeVar("K", bound=Track)


def select_video(
    tracks: Iterable[T],
    *,
    subscriber: str,
    speakers: Sequence[str],
    pinned: Sequence[str] = (),
    last_n: int | None,
) -> list[T]:
    """The video tracks ``subscriber`` is sent, in priority order.

    Screen shares always (they are content, not faces, and do not count
    towards N); then cameras: pinned participants first (in pin order, at
    least all of them even beyond N), then by ``speakers`` order (most recent
    first; anyone not in it last), until N cameras. ``last_n`` None = all.
    Never the subscriber's own tracks.
    """
    screens: list[T] = []
    cameras: dict[str, T] = {}
    for track in tracks:
        if track.participant == subscriber:
            continue
        if track.source == "screen":
            screens.append(track)
        elif track.source == "camera":
            cameras.setdefault(track.participant, track)
    if last_n is None:
        return [*screens, *cameras.values()]
    chosen: list[T] = []
    for participant in [*pinned, *speakers, *cameras]:
        camera = cameras.pop(participant, None)
        if camera is None:
            continue
        if len(chosen) >= last_n and participant not in pinned:
            break
        chosen.append(camera)
    return [*screens, *chosen]


class AudioSelector:
    """The microphones forwarded to subscribers: at most ``limit`` at a time, the loudest.

    ``feed`` runs for every audio packet carrying an RFC 6464 level (before
    it is forwarded). A participant outside the audible set is admitted on a
    packet louder than ``speech_dbov`` when a place is free, or held by a
    member who went quiet (smoothed loudness below the speech level, or no
    level for ``stale_after`` seconds), or by a member quieter than the
    newcomer by ``margin``. Members stay until replaced, so the set never
    flaps while nobody new speaks.
    """

    def __init__(
        self,
        *,
        limit: int = AUDIO_LIMIT,
        speech_dbov: int = SPEECH_DBOV,
        smoothing: float = 0.2,
        margin: float = 6.0,
        stale_after: float = 1.0,
    ) -> None:
        self.limit = limit
        self._speech = float(SILENCE_DBOV - speech_dbov)
        self._alpha = smoothing
        self._margin = margin
        self._stale = stale_after
        self._loudness: dict[str, float] = {}
        self._updated: dict[str, float] = {}
        self.audible: set[str] = set()

    def loudness(self, participant: str, now: float) -> float:
        """Smoothed 127 - dBov (0 = silence); 0 once no level came for ``stale_after`` seconds."""
        if now - self._updated.get(participant, -1e9) >= self._stale:
            return 0.0
        return self._loudness.get(participant, 0.0)

    def feed(self, participant: str, dbov: int, now: float) -> tuple[str | None, str | None]:
        """One packet's level; returns (admitted, evicted) participants (None, None: no change)."""
        instant = float(SILENCE_DBOV - min(max(dbov, 0), SILENCE_DBOV))
        previous = self.loudness(participant, now)
        self._loudness[participant] = smoothed = previous + self._alpha * (instant - previous)
        self._updated[participant] = now
        if participant in self.audible or instant < self._speech:
            return None, None
        if len(self.audible) < self.limit:
            self.audible.add(participant)
            return participant, None
        weakest = min(self.audible, key=lambda p: self.loudness(p, now))
        weakest_loudness = self.loudness(weakest, now)
        # A newcomer's smoothed level starts low: against a member gone quiet the first
        # loud packet wins; against one still talking it must be clearly louder.
        if weakest_loudness < self._speech or smoothed > weakest_loudness + self._margin:
            self.audible.discard(weakest)
            self.audible.add(participant)
            return participant, weakest
        return None, None

    def remove(self, participant: str) -> bool:
        """Forget a participant (left, or stopped publishing audio); True if it was audible."""
        self._loudness.pop(participant, None)
        self._updated.pop(participant, None)
        if participant in self.audible:
            self.audible.discard(participant)
            return True
        return False


def audio_pool(*, bound: Sequence[H], audible: Sequence[H], candidates: Sequence[H], size: int) -> list[H]:
    """The microphones that hold a subscriber's ``size`` pooled audio m-lines.

    ``bound``: what the lines hold now, the line to give up first last (the
    caller orders by most recently forwarded); ``audible``: microphones being
    forwarded (``AudioSelector``), most important first; ``candidates``: every
    other microphone of the room in preference order (e.g. speaker order).
    Audible ones always get a line (up to ``size``); a line keeps its
    microphone unless it is needed for an audible one; free lines are filled
    from ``candidates``. Only microphones in ``candidates`` are returned.
    """
    present = set(candidates)
    chosen = [m for m in audible if m in present][:size]
    for m in [*bound, *candidates]:
        if len(chosen) >= size:
            break
        if m in present and m not in chosen:
            chosen.append(m)
    return chosen


def lines_due(
    *,
    negotiated: Collection[K],
    desired: Iterable[K],
    shown: Collection[K] | None,
    due: Callable[[K], bool],
) -> list[K]:
    """The tracks of ``desired`` that must get an m-line now (in ``desired`` order), of a subscriber whose
    m-lines carry ``negotiated``.

    Every desired microphone, screen share or other non-camera track without an m-line. A camera without
    one only when the subscriber is shown it (``shown``: its last-N video; None: every video) and it is
    ``due`` (the caller's rule: it has sent a packet, or the subscriber pinned it): a camera nobody is
    shown, or one published just now that may well be off, waits for the next offer, which carries it
    (an offer always carries all of ``desired``). The caller maps them onto spare negotiated m-lines
    (:func:`spare_lines`) or offers. Tracks must be hashable (the SFU's compare by identity).
    """
    return [
        track
        for track in desired
        if track not in negotiated
        and (track.kind != "video" or track.source != "camera" or ((shown is None or track in shown) and due(track)))
    ]


def needs_offer(
    *,
    negotiated: Collection[K],
    desired: Iterable[K],
    shown: Collection[K] | None,
    due: Callable[[K], bool],
) -> bool:
    """Whether a subscriber whose m-lines carry ``negotiated`` must be offered ``desired`` now.

    Yes when a negotiated track is no longer desired (it left, or a pooled line is given up), or a
    desired track must get an m-line now (:func:`lines_due`).
    """
    wanted = list(desired)
    present = set(wanted)
    if any(t not in present for t in negotiated):
        return True
    return bool(lines_due(negotiated=negotiated, desired=wanted, shown=shown, due=due))


def spare_lines(*, used: int, bound: int, spare: int, pooled: bool = False) -> int:
    """How many spare m-lines of one kind a subscribe offer should carry besides its ``used`` ones.

    Spare lines are negotiated (sendonly, no track, not in the offer's ``tracks``) so that a track that
    appears later (someone joins, shares a screen) is mapped onto one without a re-offer: the client learns
    the mapping from ``forwarded_tracks``. ``spare`` per kind (``MEDIA_SPARE_MLINES``; 0: none, every new
    track re-offers), never beyond ``bound`` lines in all (``max_audio_mlines``/``max_video_mlines``: past it
    the room pools and re-maps the lines it has). A join then re-offers a subscriber only every ``spare``
    joins (when its spares are used up), each re-offer restoring ``spare`` of them. None while that kind is
    ``pooled`` (a large room: its lines are re-mapped to whoever is selected or heard, as before).
    """
    return 0 if pooled else max(0, min(spare, bound - used))
