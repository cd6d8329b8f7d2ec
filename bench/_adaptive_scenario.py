"""The scenario behind bench/adaptive.py (run by it through pytest with the e2e fixtures; not a test).

One host publishes its fake 1280x720 camera (three VP8 simulcast layers); one
guest per bandwidth joins with camera and microphone off, each in its own
network namespace whose downlink is shaped with ``tc tbf`` to that rate, all
in the same room at the same time. After SETTLE seconds, each guest's
``getStats()`` is sampled every 5 s for WINDOW seconds; one JSON line per
bandwidth goes to ``$ADAPTIVE_OUT``.

With ``$ADAPTIVE_DROP`` (a tc rate) the drop-and-recover scenario runs instead
(``test_drop_and_recover``): one guest on an unshaped link until it receives
720p, then its downlink is limited to that rate for ``$ADAPTIVE_HOLD`` seconds
and the limit removed; its ``getStats()`` is sampled every 0.5 s throughout.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from e2e_helpers import create_room, join_call, log_in, new_page, participant_id, wait_media

RATES = os.environ.get("ADAPTIVE_RATES", "100kbit,300kbit,1mbit,3mbit,10mbit").split(",")
SETTLE = float(os.environ.get("ADAPTIVE_SETTLE", "15"))
WINDOW = float(os.environ.get("ADAPTIVE_WINDOW", "30"))

STATS_JS = """
async (participant) => {
  const call = window.conferenceCall;
  const pc = call && call.pcs.subscribe;
  if (!pc) return null;
  const out = {video: null, audioBytes: 0};
  for (const s of (await pc.getStats()).values()) {
    if (s.type !== "inbound-rtp") continue;
    const info = call.trackInfo.get(String(s.mid));
    if (!info || info.participant !== participant) continue;
    if (s.kind === "audio") out.audioBytes += s.bytesReceived || 0;
    else if (info.source === "camera" && (!out.video || (s.bytesReceived || 0) > out.video.bytes)) out.video = {
      frames: s.framesDecoded || 0, height: s.frameHeight || 0, width: s.frameWidth || 0,
      freezes: s.totalFreezesDuration || 0, freezeCount: s.freezeCount || 0, bytes: s.bytesReceived || 0,
      lost: s.packetsLost || 0, received: s.packetsReceived || 0,
    };
  }
  return out;
}
"""


DROP = os.environ.get("ADAPTIVE_DROP", "")
HOLD = float(os.environ.get("ADAPTIVE_HOLD", "30"))
RECOVER_LIMIT = 120.0  # seconds waited for 720p after the limit is removed
TOP_HEIGHT = 720


def test_adaptive_table(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    if DROP:
        return  # the drop-and-recover scenario runs instead
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Adaptive quality bench")
    join_call(host, room_id)
    host_id = participant_id(host)
    samples: dict[str, list[tuple[float, Any]]] = {}
    # Sequentially by default (one guest at a time: this 2-core machine cannot run six Chromiums
    # without the CPU itself looking like congestion); ADAPTIVE_TOGETHER=1 puts them all in the room at once.
    groups = [RATES] if os.environ.get("ADAPTIVE_TOGETHER") == "1" else [[rate] for rate in RATES]
    for group in groups:
        guests: dict[str, Any] = {}
        for rate in group:
            # HiDPI (2x): the host's tile is ~700 device pixels tall, so only bandwidth limits the layer,
            # not the tile-size cap (media_server/layers.py).
            page = new_page(shaped_browser(rate), contexts, stack, scale=2)
            page.goto(f"/join/{room_id}")
            page.get_by_label("Your name").fill(f"guest {rate}")
            page.locator("#pre-cam").click()
            page.locator("#pre-mic").click()
            join_call(page, room_id)
            guests[rate] = page
        for rate, page in guests.items():
            try:
                wait_media(page, host_id, audio=False, timeout=45)
            except AssertionError as exc:
                print(f"{rate}: no video yet ({str(exc)[:200]})")
        time.sleep(SETTLE)
        for rate in guests:
            samples[rate] = []
        end = time.monotonic() + WINDOW
        while True:
            for rate, page in guests.items():
                samples[rate].append((time.monotonic(), page.evaluate(STATS_JS, host_id)))
            if time.monotonic() >= end:
                break
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        for page in guests.values():
            page.context.close()
    with open(os.environ["ADAPTIVE_OUT"], "a") as out:
        for rate, series in samples.items():
            (t0, first), (t1, last) = series[0], series[-1]
            dt = t1 - t0
            v0, v1 = (first or {}).get("video"), (last or {}).get("video")
            row: dict[str, Any] = {"rate": rate, "seconds": round(dt, 1)}
            if v0 and v1:
                heights = [s["video"]["height"] for _, s in series if s and s["video"]]
                row.update(
                    width=v1["width"],
                    height=v1["height"],
                    min_height=min(heights),
                    max_height=max(heights),
                    fps=round((v1["frames"] - v0["frames"]) / dt, 1),
                    freeze_s=round(v1["freezes"] - v0["freezes"], 2),
                    freezes=v1["freezeCount"] - v0["freezeCount"],
                    video_kbps=round((v1["bytes"] - v0["bytes"]) * 8 / dt / 1000),
                    audio_kbps=round((last["audioBytes"] - first["audioBytes"]) * 8 / dt / 1000),
                    lost=v1["lost"] - v0["lost"],
                )
            out.write(json.dumps(row) + "\n")


def _sample(page: Any, host_id: str, t0: float) -> dict[str, Any]:
    stats = page.evaluate(STATS_JS, host_id) or {}
    video = stats.get("video") or {}
    return {
        "t": round(time.monotonic() - t0, 2),
        "height": video.get("height", 0),
        "frames": video.get("frames", 0),
        "freezes": video.get("freezes", 0.0),
        "freezeCount": video.get("freezeCount", 0),
    }


def _phase(series: list[dict[str, Any]]) -> dict[str, Any]:
    """Resolution range, fps and freezes over one phase's samples."""
    if len(series) < 2:
        return {}
    first, last = series[0], series[-1]
    dt = max(0.001, last["t"] - first["t"])
    return {
        "min_height": min(s["height"] for s in series),
        "max_height": max(s["height"] for s in series),
        "fps": round((last["frames"] - first["frames"]) / dt, 1),
        "freeze_s": round(last["freezes"] - first["freezes"], 2),
        "freezes": last["freezeCount"] - first["freezeCount"],
    }


def test_drop_and_recover(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    if not DROP:
        return
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Drop and recover bench")
    join_call(host, room_id)
    host_id = participant_id(host)
    chromium = shaped_browser()  # its own namespace, unshaped for now
    page = new_page(chromium, contexts, stack, scale=2)  # HiDPI: the tile is ~700 device pixels tall
    page.goto(f"/join/{room_id}")
    page.get_by_label("Your name").fill("guest drop")
    page.locator("#pre-cam").click()
    page.locator("#pre-mic").click()
    join_call(page, room_id)
    wait_media(page, host_id, audio=False, timeout=45)
    t0 = time.monotonic()
    row: dict[str, Any] = {"scenario": "drop", "rate": DROP, "hold": HOLD}
    before: list[dict[str, Any]] = []
    while time.monotonic() - t0 < 90 and not (before and before[-1]["height"] >= TOP_HEIGHT):
        before.append(_sample(page, host_id, t0))
        time.sleep(0.5)
    row["reached_720_s"] = before[-1]["t"] if before[-1]["height"] >= TOP_HEIGHT else None
    for _ in range(20):  # 10 s at 720p: the unlimited baseline
        before.append(_sample(page, host_id, t0))
        time.sleep(0.5)
    netns = shaped_browser.netns(chromium)
    netns.shape(DROP)
    dropped_at = time.monotonic() - t0
    held: list[dict[str, Any]] = []
    while time.monotonic() - t0 - dropped_at < HOLD:
        held.append(_sample(page, host_id, t0))
        time.sleep(0.5)
    down = next((s["t"] for s in held if 0 < s["height"] < TOP_HEIGHT), None)
    netns.unshape()
    lifted_at = time.monotonic() - t0
    after: list[dict[str, Any]] = []
    while time.monotonic() - t0 - lifted_at < RECOVER_LIMIT:
        after.append(_sample(page, host_id, t0))
        if after[-1]["height"] >= TOP_HEIGHT and len(after) > 1:
            break
        time.sleep(0.5)
    up = after[-1]["t"] if after and after[-1]["height"] >= TOP_HEIGHT else None
    row.update(
        before=_phase(before[-20:]),
        held=_phase(held),
        after=_phase(after),
        step_down_s=None if down is None else round(down - dropped_at, 1),
        recover_s=None if up is None else round(up - lifted_at, 1),
    )
    with open(os.environ["ADAPTIVE_OUT"], "a") as out:
        out.write(json.dumps(row) + "\n")
