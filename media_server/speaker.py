"""Active speaker detection from RFC 6464 audio levels, with hysteresis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SILENCE_DBOV = 127


@dataclass
class _Level:
    loudness: float = 0.0  # smoothed 127 - dBov (0 = silence)
    updated: float = 0.0


class ActiveSpeakerDetector:
    """Picks the loudest participant, switching only when it is clearly so.

    A candidate becomes the active speaker once it has been the loudest (and
    above ``threshold``) continuously for ``hold`` seconds, and never sooner
    than ``min_switch_interval`` after the previous switch. Levels decay when
    a participant stops sending. ``on_change(participant)`` is called on switch.
    """

    def __init__(
        self,
        on_change: Callable[[str], None],
        *,
        threshold: float = 30.0,
        hold: float = 0.4,
        min_switch_interval: float = 1.0,
        evaluate_every: float = 0.1,
        smoothing: float = 0.1,
    ) -> None:
        self._on_change = on_change
        self._threshold = threshold
        self._hold = hold
        self._min_switch = min_switch_interval
        self._every = evaluate_every
        self._alpha = smoothing
        self._levels: dict[str, _Level] = {}
        self.current: str | None = None
        self._candidate: str | None = None
        self._candidate_since = 0.0
        self._last_switch = -1e9
        self._last_eval = -1e9

    def feed(self, participant: str, dbov: int, now: float) -> None:
        """Record one audio-level sample (0 = loudest, 127 = silence)."""
        level = self._levels.get(participant)
        if level is None:
            level = self._levels[participant] = _Level()
        level.loudness += self._alpha * ((SILENCE_DBOV - min(max(dbov, 0), SILENCE_DBOV)) - level.loudness)
        level.updated = now
        if now - self._last_eval >= self._every:
            self.evaluate(now)

    def remove(self, participant: str) -> None:
        """Forget a participant (left or stopped publishing audio)."""
        self._levels.pop(participant, None)
        if self._candidate == participant:
            self._candidate = None

    def evaluate(self, now: float) -> None:
        """Re-run the decision (called from ``feed``; callable from a timer)."""
        self._last_eval = now
        best: str | None = None
        best_loudness = self._threshold
        for participant, level in self._levels.items():
            loudness = level.loudness if now - level.updated < 1.0 else 0.0
            if loudness > best_loudness:
                best, best_loudness = participant, loudness
        if best is None or best == self.current:
            self._candidate = None
            return
        if best != self._candidate:
            self._candidate, self._candidate_since = best, now
            return
        if now - self._candidate_since >= self._hold and now - self._last_switch >= self._min_switch:
            self.current = best
            self._candidate = None
            self._last_switch = now
            self._on_change(best)
