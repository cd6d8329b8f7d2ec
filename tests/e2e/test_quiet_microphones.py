"""No false alarms (issue 16, item 6): quiet microphones never make anyone rebuild their receive connection.

The media server forwards only the 3 loudest microphones and none below -60 dBov, so an unmuted microphone
that sends digital silence (a headset's mute switch) or -70 dBFS room noise has an audio m-line that gets no
packets on purpose. The page's stall check used to take that for a stuck connection and resubscribe every
~20 s (every video froze each time). Three Chromium processes, each with its own fake microphone
(``--use-file-for-fake-audio-capture``): a digitally silent one, a -70 dBFS one and Chromium's usual beep.
"""

from __future__ import annotations

import random
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    CHROMIUM,
    chromium_args,
    create_room,
    inbound,
    join_call,
    log_in,
    new_page,
    participant_id,
    wait_until,
)

pytestmark = pytest.mark.e2e
WATCH_SECONDS = 60.0
RATE = 48_000


def _wav(path: Path, peak: int, seconds: int = 5) -> Path:
    """Mono 16-bit noise of at most ``peak`` (0: digital silence)."""
    rng = random.Random(16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        samples = (rng.randint(-peak, peak) if peak else 0 for _ in range(RATE * seconds))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


@pytest.fixture(scope="module")
def quiet_browsers(browser: Any, stack: Any) -> Iterator[dict[str, Any]]:
    """Two more Chromium processes (same namespaced driver): one digitally silent microphone, one at -70 dBFS."""
    files = {
        "silent": _wav(stack.workdir / "silent.wav", 0),
        "minus70": _wav(stack.workdir / "minus70.wav", round(32767 * 10 ** (-70 / 20) * 1.7)),  # RMS ≈ -70 dBFS
    }
    launched: dict[str, Any] = {}
    try:
        for name, path in files.items():
            args = [*chromium_args(stack.base_url), f"--use-file-for-fake-audio-capture={path}"]
            launched[name] = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield launched
    finally:
        for b in launched.values():
            b.close()


def test_a_silent_and_a_minus_70_dbfs_microphone_cause_no_resubscribe_in_60_s(
    browser: Any, quiet_browsers: dict[str, Any], contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Quiet microphones")
    join_call(host, room_id)
    silent = new_page(quiet_browsers["silent"], contexts, stack)
    log_in(silent, "ravi", users["ravi"])
    join_call(silent, room_id)
    noise = new_page(quiet_browsers["minus70"], contexts, stack)
    log_in(noise, "mona", users["mona"])
    join_call(noise, room_id)
    pages = {participant_id(p): p for p in (host, silent, noise)}

    def receiving(page: Any, me: str) -> bool:
        decoded = {s["participant"] for s in inbound(page) if s["source"] == "camera" and s["framesDecoded"] > 0}
        return decoded >= set(pages) - {me}

    # Everyone's video reached everyone (whether it keeps flowing is bandwidth estimation's business, not this test's).
    for me, page in pages.items():
        wait_until(lambda page=page, me=me: receiving(page, me), timeout=45, message=f"{me} does not decode everyone")
    for page in pages.values():
        page.evaluate("() => { window.__subscribe = window.conferenceCall.pcs.subscribe; }")
        page.console_lines.clear()
    time.sleep(WATCH_SECONDS)
    for me, page in pages.items():
        warnings = [line for line in page.console_lines if "resubscribing" in line or "rebuilding" in line]
        assert not warnings, f"{me}: {warnings}"
        assert page.evaluate("() => window.conferenceCall.pcs.subscribe === window.__subscribe"), f"{me} resubscribed"
        assert not page.locator("#enable-sound").count(), f"{me} was asked to enable sound"
