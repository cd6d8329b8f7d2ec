"""The daphne process's garbage collector settings (``conference.gc_tuning``, ``GC_THRESHOLDS``).

Each case imports ``conference.asgi`` in a fresh interpreter, as daphne does, so the test
process's own collector is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import gc, conference.asgi; print(*gc.get_threshold(), gc.get_freeze_count() > 0)"


def import_asgi(gc_thresholds: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GC_THRESHOLDS"}
    env["DJANGO_SETTINGS_MODULE"] = "conference.settings"
    if gc_thresholds is not None:
        env["GC_THRESHOLDS"] = gc_thresholds
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_asgi_application_freezes_its_heap_and_raises_the_thresholds_by_default() -> None:
    from conference.gc_tuning import DEFAULT_THRESHOLDS

    result = import_asgi(None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [*map(str, DEFAULT_THRESHOLDS), "True"]


def test_gc_thresholds_from_the_environment() -> None:
    result = import_asgi(" 700, 10,10 ")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["700", "10", "10", "True"]


@pytest.mark.parametrize("value", ["700,10", "700,10,10,10", "a,b,c", "700,0,10", "-1,10,10"])
def test_bad_gc_thresholds_stop_start_up_with_a_clear_error(value: str) -> None:
    result = import_asgi(value)
    assert result.returncode != 0
    assert "ImproperlyConfigured: GC_THRESHOLDS must be three positive integers" in result.stderr
