"""How many microphones a subscriber is sent when its link cannot carry them all (pure policy, no I/O).

Audio is never paced and never paused for bandwidth like a video, but each forwarded microphone costs
~45 kbit/s on the wire whatever is said (Opus at ~32 kbit/s plus ~60 bytes of headers 50 times a second).
On a 100 kbit/s downlink, two microphones and the active speaker's thinnest video (~30 kbit/s) are ~120
kbit/s: the link stays overrun whatever the allocator does with the video, its queue drops a sixth of
everything, the camera forwarded never decodes a whole frame, and the room socket's TCP connection sharing
that queue was dropped by the server every 10-20 s (close 1006; tests/e2e/test_bandwidth_ui.py,
docs/benchmarks.md §2b). Such a subscriber is sent fewer microphones: its audio m-lines are pooled
(``Room._audio_pool``, lastn.audio_pool) into :attr:`AudioLines.limit` lines that carry the most recent
speakers, as in a room with more microphones than m-lines. A transport-wide estimate covers the audio and
gives the count (:func:`microphones_fit`); a REMB measures the video alone, after what the audio took, and
only says one fewer or one more (:func:`microphones_fit_remb`).
"""

from __future__ import annotations

from .layers import AUDIO_RESERVE

VIDEO_FLOOR = 30_000
"""bit/s kept for the active speaker's thinnest video when counting the microphones a link carries."""
DOWN_AFTER = 2.0
"""s the link must carry fewer microphones than are sent before the count goes down."""
UP_AFTER = 8.0
"""s it must carry more before the count goes up again (a new subscribe connection starts at the
send-side estimate's start rate: its first seconds say nothing)."""


def microphones_fit(estimate: float) -> int:
    """How many microphones a link with this transport-wide ``estimate`` (bit/s, audio included) carries beside
    the speaker's thinnest video: at least one (the speaker is always heard)."""
    return max(1, int((estimate - VIDEO_FLOOR) // AUDIO_RESERVE))


def microphones_fit_remb(estimate: float, *, sent: int, overrun: bool) -> int:
    """How many microphones a REMB subscriber's link carries, from what it is ``sent`` now: one fewer (at least
    one) while its receiver reports say it is overrun and the REMB leaves less than :data:`VIDEO_FLOOR` for the
    video (the audio took the rest: the bandwidth UI test's page had a REMB of 11-28 kbit/s and lost a seventh
    of everything); one more while the REMB has room for another microphone beside that video and nothing is
    overrun; else as many as are sent."""
    if overrun and estimate < VIDEO_FLOOR:
        return max(1, sent - 1)
    if not overrun and estimate >= VIDEO_FLOOR + AUDIO_RESERVE:
        return sent + 1
    return sent


class AudioLines:
    """The number of microphones one subscriber is sent (:attr:`limit`; None: every one), with hysteresis.

    Down once the link has carried fewer than are sent for :data:`DOWN_AFTER` s; up (or unlimited, from
    ``most`` on) once it has carried more for :data:`UP_AFTER` s, to the least it carried meanwhile.
    """

    def __init__(self) -> None:
        self.limit: int | None = None
        self._pending: tuple[int | None, float] | None = None  # (the count wanted, since when)

    def update(self, now: float, fit: int | None, *, sent: int, most: int) -> bool:
        """One estimate: ``fit`` microphones fit (None: unknown, every microphone); ``sent``: how many are sent now
        (the attached audio lines); ``most``: from this many on, no limit. True if :attr:`limit` changed."""
        want: int | None
        if fit is None or fit >= most:
            want = None
        elif self.limit is None:
            want = fit if fit < sent else None
        else:
            want = fit
        if want == self.limit:
            self._pending = None
            return False
        down = _is_down(want, self.limit)
        pending = self._pending
        if pending is None or _is_down(pending[0], self.limit) != down:
            self._pending = (want, now)
            return False
        wanted, since = pending
        least = want if wanted is None else wanted if want is None else min(want, wanted)
        self._pending = (least, since)
        if now - since < (DOWN_AFTER if down else UP_AFTER):
            return False
        self.limit = least
        self._pending = None
        return True


def _is_down(want: int | None, limit: int | None) -> bool:
    return want is not None and (limit is None or want < limit)
