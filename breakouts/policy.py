"""Pure rules of breakout rooms (no Django): automatic assignment and names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def auto_assign(participant_ids: Sequence[str], count: int, fixed: Mapping[str, int] | None = None) -> dict[str, int]:
    """Spread ``participant_ids`` over ``count`` breakouts as evenly as possible, keeping ``fixed`` choices.

    People already placed (``fixed``: id → breakout index) stay; each of the others, in order, goes to the
    breakout with the fewest people so far (the lowest index on a tie), so sizes differ by at most one
    when nobody was fixed. Deterministic: the same input gives the same rooms.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    fixed = dict(fixed or {})
    sizes = [0] * count
    for index in fixed.values():
        sizes[index] += 1
    out = dict(fixed)
    for pid in participant_ids:
        if pid in out:
            continue
        index = min(range(count), key=lambda i: (sizes[i], i))
        out[pid] = index
        sizes[index] += 1
    return out


def breakout_names(count: int, names: Sequence[str] | None = None) -> list[str]:
    """The breakouts' names: the given ones (blank ones filled in), else "Room 1" … "Room N"."""
    given = list(names or [])
    return [(given[i].strip() if i < len(given) and given[i].strip() else f"Room {i + 1}")[:80] for i in range(count)]
