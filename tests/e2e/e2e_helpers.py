"""Browser helpers for the end-to-end tests: sign in, create and join rooms, and prove media with getStats()."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

CHROMIUM = "/usr/bin/chromium"


def chromium_args(origin: str) -> list[str]:
    """Flags for a headless Chromium with fake camera, microphone and screen that may use media on ``origin``
    (plain HTTP on a test address, so it must be treated as a secure context)."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--auto-select-desktop-capture-source=Entire screen",
        "--autoplay-policy=no-user-gesture-required",
        f"--unsafely-treat-insecure-origin-as-secure={origin}",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        *os.environ.get("E2E_CHROMIUM_ARGS", "").split(),  # e.g. --enable-logging=stderr --vmodule=*/webrtc/*=1
    ]


# Every inbound RTP stream of the page's subscribe connection, labelled with the
# participant and source the server announced for its mid.
INBOUND_STATS_JS = """
async () => {
  const call = window.conferenceCall;
  const pc = call && call.pcs.subscribe;
  if (!pc) return [];
  const report = await pc.getStats();
  const out = [];
  for (const s of report.values()) {
    if (s.type !== "inbound-rtp") continue;
    const info = call.trackInfo.get(String(s.mid));
    if (!info) continue;
    out.push({
      participant: info.participant, source: info.source, kind: s.kind,
      framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
      packetsReceived: s.packetsReceived || 0, totalSamplesReceived: s.totalSamplesReceived || 0,
    });
  }
  return out;
}
"""


def new_page(
    browser: Any, contexts: list[Any], stack: Any, *, width: int = 1280, height: int = 800, scale: float = 1
) -> Any:
    ctx = browser.new_context(
        base_url=stack.base_url, viewport={"width": width, "height": height}, device_scale_factor=scale
    )
    contexts.append(ctx)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    page.console_lines = []  # type: ignore[attr-defined]
    page.on("console", lambda msg: page.console_lines.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: page.console_lines.append(f"pageerror: {err}"))
    return page


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


def create_room(page: Any, name: str, *, waiting_room: bool = False) -> str:
    page.goto("/")
    page.get_by_label("Meeting name").fill(name)
    if waiting_room:
        page.get_by_label("Waiting room: I admit people").check()
    page.get_by_role("button", name="New meeting").click()
    page.wait_for_url("**/join/*")
    return str(page.url.rstrip("/").rsplit("/", 1)[-1])


def join_call(page: Any, room_id: str, *, name: str = "", expect: str = "call") -> None:
    if f"/join/{room_id}" not in page.url:
        page.goto(f"/join/{room_id}")
    if name:
        page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Join now").click()
    page.wait_for_selector(f"#app[data-state={expect}]")


def participant_id(page: Any) -> str:
    page.wait_for_function("() => window.conferenceCall && window.conferenceCall.me")
    return str(page.evaluate("() => window.conferenceCall.me.participantId"))


def inbound(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate(INBOUND_STATS_JS))


# Packets received so far on each mid of the page's subscribe connection, whoever the page maps it to.
PACKETS_BY_MID_JS = """
async () => {
  const pc = window.conferenceCall && window.conferenceCall.pcs.subscribe;
  if (!pc) return {};
  const out = {};
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "inbound-rtp") out[String(s.mid)] = s.packetsReceived || 0;
  }
  return out;
}
"""


def mids_of(page: Any, participant: str) -> set[str]:
    """The subscribe mids ``page`` attributes to ``participant`` now (its track map: offers, forwarded_tracks)."""
    return set(
        page.evaluate(
            "(id) => [...window.conferenceCall.trackInfo].filter(([, i]) => i.participant === id).map(([m]) => m)",
            participant,
        )
    )


def media_stopped(page: Any, mids: set[str], *, window: float = 1.5) -> str:
    """'' if no packet arrives on ``mids`` of ``page``'s subscribe connection within ``window`` seconds (none
    of them re-mapped to someone else meanwhile), else which mids still receive."""
    before = page.evaluate(PACKETS_BY_MID_JS)
    time.sleep(window)
    after = page.evaluate(PACKETS_BY_MID_JS)
    flowing = sorted(m for m in mids if after.get(m, 0) > before.get(m, 0))
    return f"packets still arrive on mids {flowing}" if flowing else ""


def _pick(stats: list[dict[str, Any]], participant: str, source: str) -> dict[str, Any] | None:
    for s in stats:
        if s["participant"] == participant and s["source"] == source:
            return s
    return None


def media_flowing(
    page: Any, participant: str, *, source: str = "camera", audio: bool = True, window: float = 2.0
) -> str:
    """'' if video (and audio) from ``participant`` is arriving and being decoded now, else what is missing."""
    before = inbound(page)
    time.sleep(window)
    after = inbound(page)
    problems = []
    v0, v1 = _pick(before, participant, source), _pick(after, participant, source)
    if v0 is None or v1 is None:
        problems.append(f"no {source} video stream")
    else:
        if v1["framesDecoded"] <= v0["framesDecoded"]:
            problems.append(f"{source} framesDecoded not rising ({v0['framesDecoded']}→{v1['framesDecoded']})")
        if v1["frameWidth"] <= 0 or v1["frameHeight"] <= 0:
            problems.append(f"{source} frame size {v1['frameWidth']}x{v1['frameHeight']}")
    if audio:
        a0, a1 = _pick(before, participant, "microphone"), _pick(after, participant, "microphone")
        if a0 is None or a1 is None:
            problems.append("no microphone stream")
        else:
            if a1["packetsReceived"] <= a0["packetsReceived"]:
                problems.append("audio packetsReceived not rising")
            if a1["totalSamplesReceived"] <= a0["totalSamplesReceived"]:
                problems.append("audio totalSamplesReceived not rising")
    return "; ".join(problems)


def wait_media(
    page: Any, participant: str, *, source: str = "camera", audio: bool = True, timeout: float = 30.0
) -> None:
    """Wait until ``page`` decodes rising video (and audio) from ``participant``; fail with the reason."""
    deadline = time.monotonic() + timeout
    problem = "not checked"
    while time.monotonic() < deadline:
        problem = media_flowing(page, participant, source=source, audio=audio)
        if not problem:
            return
    console = "\n".join(page.console_lines[-30:])
    raise AssertionError(
        f"media from {participant} ({source}) not received: {problem}\nreceiver state: {debug_state(page)}\n"
        f"inbound: {inbound(page)}\nconsole:\n{console}"
    )


def debug_state(page: Any) -> Any:
    """What the page's call thinks is going on (for failure messages)."""
    return page.evaluate(
        """() => {
          const c = window.conferenceCall;
          if (!c) return null;
          const pcs = {};
          for (const [name, pc] of Object.entries(c.pcs)) pcs[name] = [pc.connectionState, pc.signalingState,
            pc.getTransceivers().map(t => `${t.mid}:${t.currentDirection}`).join(",")];
          // What the server forwards and why it holds a video back (paused or reduced for bandwidth, at which
          // estimate): a video missing for that reason is adaptive quality's choice, not a lost packet.
          const bw = c.bandwidth && {state: c.bandwidth.state, estimateBps: c.bandwidth.estimateBps,
                                     tiles: Object.fromEntries(c.bandwidth.tiles || [])};
          return {me: c.me && c.me.participantId, phase: c.phase, ws: c.wsOpen, subRevision: c.subRevision,
                  subscribeEmpty: c.subscribeEmpty, tracks: [...c.trackInfo.values()], pcs,
                  participants: [...c.participants.keys()],
                  forwardedVideo: c.forwardedVideo && [...c.forwardedVideo], bandwidth: bw};
        }"""
    )


def wait_until(predicate: Any, *, timeout: float = 15.0, interval: float = 0.25, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or "condition not met in time")


def video_back(
    pending: dict[str, tuple[Any, str]], *, since: float, timeout: float, event: str, ready: Any = None
) -> dict[str, float]:
    """Seconds after ``since`` (time.monotonic()) at which each page decodes rising video again.

    ``pending``: name -> (page, the participant whose video it should get); ``ready(page)``: an extra
    condition checked first (e.g. a new subscribe connection). Each figure is the end of a 0.5 s sampling
    window, so it may be up to about 0.6 s late. Fails, saying ``event``, when a page is not back in time.
    """
    pending = dict(pending)
    recovered: dict[str, float] = {}
    while pending and time.monotonic() - since < timeout:
        for name, (page, other) in list(pending.items()):
            if (ready is None or ready(page)) and not media_flowing(page, other, audio=False, window=0.5):
                recovered[name] = round(time.monotonic() - since, 2)
                del pending[name]
    for name, (page, other) in pending.items():
        raise AssertionError(
            f"{name}: no video from {other} within {timeout} s of {event}; state {debug_state(page)}; "
            f"console: {page.console_lines[-30:]}"
        )
    return recovered


@contextlib.contextmanager
def second_chromium(browser: Any, origin: str, *, extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """Another Chromium from the same (namespaced) Playwright driver, for a stack of its own on ``origin`` or
    other flags (``extra_args`` come last: a repeated switch takes its last value)."""
    second = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True, args=[*chromium_args(origin), *extra_args]
    )
    try:
        yield second
    finally:
        second.close()
