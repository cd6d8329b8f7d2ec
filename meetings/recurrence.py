"""When a meeting happens: wall-clock times in an IANA zone, repeated by an RFC 5545 RRULE.

Pure functions (no database). Occurrences are expanded by python-dateutil's ``rrule`` from a start that
carries its ``ZoneInfo``: dateutil keeps the wall-clock time and the zone gives each date its own UTC
offset, so a weekly 09:00 Europe/Berlin meeting stays at 09:00 local across daylight-saving changes
(its UTC time moves by an hour). The RRULE text is parsed and written back by ``icalendar``'s ``vRecur``
(the same library builds the invitations), so what is stored is exactly what calendars receive.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from dateutil import rrule as dateutil_rrule
from dateutil.rrule import rrulestr
from icalendar import vRecur

from conference.errors import DomainError

# Sub-daily repetition is not a meeting schedule, and it would make expansion expensive.
ALLOWED_FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
# A finite rule (COUNT or UNTIL) may not produce more occurrences than this.
MAX_OCCURRENCES = 5000


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_names() -> list[str]:
    """Every IANA zone name this machine knows (tzdata), sorted: the forms offer these."""
    return sorted(_zone_names())


def time_zone_get(name: str) -> zoneinfo.ZoneInfo:
    """The zone for an IANA name such as ``Europe/Berlin``; anything else is ``invalid_time_zone``."""
    if name not in _zone_names():
        raise DomainError("Unknown time zone: give an IANA name such as Europe/Berlin.", code="invalid_time_zone")
    return zoneinfo.ZoneInfo(name)


def local_start(value: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """``value`` as an aware datetime in ``zone``: a naive value is a wall-clock time there, an aware one is
    converted. A wall-clock time the zone skips (the hour clocks jump forward) is ``nonexistent_time``."""
    if value.tzinfo is not None:
        return value.astimezone(zone).replace(microsecond=0)
    local = value.replace(tzinfo=zone, microsecond=0, fold=0)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise DomainError(
            f"{value:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks skip it); choose another time.",
            code="nonexistent_time",
        )
    return local


def _invalid(message: str) -> DomainError:
    return DomainError(f"Invalid recurrence rule: {message}", code="invalid_rrule")


def rrule_normalize(text: str, *, start: datetime) -> str:
    """The RRULE value (``FREQ=WEEKLY;BYDAY=MO``, an ``RRULE:`` prefix allowed) in canonical form, ``""`` for none.

    Rules, in order: it parses as an RFC 5545 RECUR value; FREQ is DAILY, WEEKLY, MONTHLY or YEARLY; an
    UNTIL without a zone (a date or a floating time) is read in the start's zone and written in UTC, as
    RFC 5545 requires beside a DTSTART with TZID; the rule's first occurrence is ``start`` itself (so
    DTSTART counts the same in every calendar); a finite rule has at most ``MAX_OCCURRENCES`` occurrences.
    """
    text = text.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:") :].strip()
    if not text:
        return ""
    try:
        recur = vRecur.from_ical(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise _invalid(str(exc) or "it does not parse.") from exc
    freq = recur.get("FREQ", [None])[0]
    if freq not in ALLOWED_FREQUENCIES:
        raise _invalid("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY.")
    if "COUNT" in recur and "UNTIL" in recur:
        raise _invalid("COUNT and UNTIL cannot both be given.")
    if "UNTIL" in recur:
        until = recur["UNTIL"][0]
        if isinstance(until, datetime) and until.tzinfo is None:
            until = until.replace(tzinfo=start.tzinfo)
        elif not isinstance(until, datetime) and isinstance(until, date):
            until = datetime.combine(until, time(23, 59, 59), tzinfo=start.tzinfo)
        recur["UNTIL"] = [until.astimezone(UTC)]
    canonical = vRecur(recur).to_ical().decode()
    rule = _rule(canonical, start)
    first = rule.after(start, inc=True)
    if first != start:
        raise _invalid("the start must be its first occurrence (e.g. BYDAY must include the start's weekday).")
    if _is_finite(canonical) and (rule.count() or 0) > MAX_OCCURRENCES:
        raise _invalid(f"at most {MAX_OCCURRENCES} occurrences.")
    return canonical


def _is_finite(canonical: str) -> bool:
    return "COUNT=" in canonical or "UNTIL=" in canonical


def _rule(canonical: str, start: datetime) -> dateutil_rrule.rrule:
    try:
        rule = rrulestr(canonical, dtstart=start)
    except (ValueError, TypeError) as exc:
        raise _invalid(str(exc)) from exc
    assert isinstance(rule, dateutil_rrule.rrule)  # one RRULE value, no RDATE/EXDATE: never an rruleset
    return rule


@dataclass(frozen=True)
class Occurrence:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Schedule:
    """A meeting's times: ``start`` is aware in the meeting's zone, ``rrule`` canonical (or empty)."""

    start: datetime
    duration: timedelta
    rrule: str = ""

    def _expand(self) -> dateutil_rrule.rrule | None:
        return _rule(self.rrule, self.start) if self.rrule else None

    def current_or_next(self, now: datetime) -> Occurrence | None:
        """The occurrence in progress at ``now``, else the next one; ``None`` once the last has ended."""
        rule = self._expand()
        if rule is None:
            start: datetime | None = self.start if self.start + self.duration > now else None
        else:
            start = rule.after((now - self.duration).astimezone(self.start.tzinfo), inc=False)
        return None if start is None else Occurrence(start=start, end=start + self.duration)

    def last_end(self) -> datetime | None:
        """When the last occurrence ends; ``None`` for a rule without COUNT or UNTIL."""
        rule = self._expand()
        if rule is None:
            return self.start + self.duration
        if not _is_finite(self.rrule):
            return None
        last = rule.before(datetime.max.replace(tzinfo=UTC) - timedelta(days=1), inc=True)
        return (last or self.start) + self.duration

    def upcoming(self, now: datetime, limit: int) -> list[Occurrence]:
        """Up to ``limit`` occurrences from the current or next one on."""
        first = self.current_or_next(now)
        if first is None:
            return []
        rule = self._expand()
        if rule is None:
            return [first]
        found = [first]
        for start in rule.xafter(first.start, count=limit - 1, inc=False):
            found.append(Occurrence(start=start, end=start + self.duration))
        return found
