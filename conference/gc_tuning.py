"""Cyclic garbage collector settings for the daphne process (docs/architecture.md, GC bullet).

Full (generation 2) collections walk every tracked object and stop the event loop meanwhile:
20-100 ms with 100 room sockets, the p99 tail of chat fan-out (docs/benchmarks.md §1). Two
measures keep them out of the way:

* ``gc.freeze()`` once the application is imported: the import-time heap lives as long as the
  process, so it is moved out of the collector's generations and never walked again.
* Higher thresholds (``GC_THRESHOLDS``, ``gen0,gen1,gen2``; default ``DEFAULT_THRESHOLDS``):
  most garbage is freed by reference counting, and only cycles wait for the collector, so
  collecting young objects every 10 000 allocations instead of 700, and the whole heap after
  100 young collections of generation 1 instead of 10, makes full collections ~140 times rarer
  (at most one per 10 million net allocations) while cyclic garbage is still freed, later.
  ``GC_THRESHOLDS=700,10,10`` restores CPython's defaults.
"""

from __future__ import annotations

import gc
import os

from django.core.exceptions import ImproperlyConfigured

DEFAULT_THRESHOLDS = (10_000, 10, 100)


def parse_thresholds(value: str) -> tuple[int, int, int]:
    """``"gen0,gen1,gen2"`` → three positive integers; anything else is a configuration error."""
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = tuple(int(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 3 or min(numbers) < 1:
        raise ImproperlyConfigured(f"GC_THRESHOLDS must be three positive integers 'gen0,gen1,gen2', got {value!r}")
    return numbers[0], numbers[1], numbers[2]


def configure(environ: dict[str, str] | None = None) -> tuple[int, int, int]:
    """Freeze the heap loaded so far and set the collection thresholds; returns the thresholds."""
    value = (os.environ if environ is None else environ).get("GC_THRESHOLDS", "")
    thresholds = parse_thresholds(value) if value.strip() else DEFAULT_THRESHOLDS
    gc.freeze()
    gc.set_threshold(*thresholds)
    return thresholds
