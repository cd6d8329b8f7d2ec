"""Poor networks, end to end: simulcast and per-subscriber layers under a real bottleneck and real loss.

The host publishes its fake 1280x720 camera as three VP8 simulcast layers
(static/js/call.js). Two guests with their cameras off receive it:

* one in the session's namespace, unconstrained;
* one in a namespace of its own whose downlink is shaped with ``tc ... tbf``
  (netem is not available here), or which drops 5 % of its UDP datagrams each
  way with ``iptables -m statistic``.

Everything is measured with the receiving page's ``getStats()``
(``framesDecoded``, ``frameHeight``, ``freezeCount``/``totalFreezesDuration``)
over a 30 s window that starts once the constrained subscriber has settled
(the media server starts every subscriber on the lowest layer and moves it up
or down from its bandwidth estimate within seconds). Two tests change the
limit mid-call (issue 17's targets): removed after 300 kbit/s, and a step
from 10 to 1 Mbit/s.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import (
    create_room,
    join_call,
    log_in,
    new_page,
    participant_id,
    second_chromium,
    wait_media,
    wait_until,
)

from media_server.config import transport_cc_enabled

pytestmark = pytest.mark.e2e

WINDOW = 30.0  # seconds measured
SAMPLE = 5.0  # seconds between two samples inside the window
SETTLE = 15.0  # seconds given to layer selection before the window

VIDEO_STATS_JS = """
async (participant) => {
  const call = window.conferenceCall;
  const pc = call && call.pcs.subscribe;
  if (!pc) return null;
  const report = await pc.getStats();
  for (const s of report.values()) {
    if (s.type !== "inbound-rtp" || s.kind !== "video") continue;
    const info = call.trackInfo.get(String(s.mid));
    if (!info || info.participant !== participant || info.source !== "camera") continue;
    return {
      framesDecoded: s.framesDecoded || 0, framesReceived: s.framesReceived || 0, frameHeight: s.frameHeight || 0, frameWidth: s.frameWidth || 0,
      framesPerSecond: s.framesPerSecond || 0, freezeCount: s.freezeCount || 0,
      totalFreezesDuration: s.totalFreezesDuration || 0, bytesReceived: s.bytesReceived || 0,
      packetsLost: s.packetsLost || 0, nackCount: s.nackCount || 0, pliCount: s.pliCount || 0,
    };
  }
  return null;
}
"""


def video_stats(page: Any, participant: str) -> dict[str, Any]:
    stats = page.evaluate(VIDEO_STATS_JS, participant)
    assert stats is not None, f"no inbound camera video from {participant}"
    return dict(stats)


def join_without_camera(
    browser: Any, contexts: list[Any], stack: Any, room_id: str, name: str, *, scale: float = 1, muted: bool = False
) -> Any:
    page = new_page(browser, contexts, stack, scale=scale)
    page.goto(f"/join/{room_id}")
    page.get_by_label("Your name").fill(name)
    page.locator("#pre-cam").click()  # camera off: the host's camera is the only video in the room
    if muted:
        page.locator("#pre-mic").click()
    join_call(page, room_id)
    return page


def host_room(browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], name: str) -> tuple[Any, str]:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, name)
    join_call(host, room_id)
    return host, room_id


def measure(pages: dict[str, Any], participant: str, *, window: float = WINDOW) -> dict[str, list[dict[str, Any]]]:
    """Samples of the participant's camera stats on each page, every SAMPLE seconds over ``window``."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in pages}
    end = time.monotonic() + window
    while True:
        for name, page in pages.items():
            samples[name].append(video_stats(page, participant))
        if time.monotonic() >= end:
            return samples
        time.sleep(min(SAMPLE, max(0.0, end - time.monotonic())))


TOP_LAYER_FRAMES_JS = """
async () => {
  const pc = window.conferenceCall && window.conferenceCall.pcs.camera;
  if (!pc) return 0;
  let best = null;
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "outbound-rtp" && s.kind === "video" && (!best || (s.frameHeight || 0) > (best.frameHeight || 0))) best = s;
  }
  return best ? best.framesEncoded || 0 : 0;
}
"""


PUBLISHED_LAYERS_JS = """
async () => {
  const pc = window.conferenceCall && window.conferenceCall.pcs.camera;
  if (!pc) return null;
  const out = {layers: []};
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      out.layers.push({rid: s.rid, height: s.frameHeight || 0, fps: s.framesPerSecond || 0,
        limited: s.qualityLimitationReason, target: Math.round((s.targetBitrate || 0) / 1000), active: s.active});
    } else if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate) {
      out.available_kbps = Math.round(s.availableOutgoingBitrate / 1000);
    }
  }
  out.layers.sort((a, b) => String(a.rid).localeCompare(String(b.rid)));
  return out;
}
"""


def published_layers(page: Any) -> Any:
    """What the publishing page sends now (its simulcast layers: height, fps, Chromium's limitation reason and
    target bitrate; its send-side estimate): a subscriber can get no more than this, so reports show it."""
    return page.evaluate(PUBLISHED_LAYERS_JS)


# Issue 17 item 6: "at 300 kbit/s: no audio gap > 200 ms". The page samples its inbound audio from the participant
# every 100 ms (getStats): packets received, the stats' own timestamp and the time of the last packet received.
AUDIO_GAP_START_JS = """
(participant) => {
  const call = window.conferenceCall;
  const samples = [];
  window.__audioGapSamples = samples;
  window.__audioGapTimer = setInterval(async () => {
    const pc = call && call.pcs.subscribe;
    if (!pc) return;
    let packets = 0, at = 0, last = 0, concealed = 0, total = 0, found = false;
    for (const s of (await pc.getStats()).values()) {
      if (s.type !== "inbound-rtp" || s.kind !== "audio") continue;
      const info = call.trackInfo.get(String(s.mid));
      if (!info || info.participant !== participant) continue;
      found = true;
      packets += s.packetsReceived || 0;
      at = s.timestamp;
      last = Math.max(last, s.lastPacketReceivedTimestamp || 0);
      concealed += s.concealedSamples || 0;
      total += s.totalSamplesReceived || 0;
    }
    if (found) samples.push({at, packets, last, concealed, total});
  }, 100);  // AUDIO_SAMPLE_MS
}
"""
AUDIO_SAMPLE_MS = 100

# The host's own count of audio packets sent, and of those the SFU's receiver reports say it lost: tells a gap the
# host's Chromium made (a starved fake capture sends fewer than 50 a second) from one on the way to the SFU and
# from one made in the SFU.
HOST_AUDIO_SENT_JS = """
async () => {
  const pc = window.conferenceCall && window.conferenceCall.pcs.camera;
  let sent = 0, lost = 0;
  if (pc) for (const s of (await pc.getStats()).values()) {
    if (s.type === "outbound-rtp" && s.kind === "audio") sent += s.packetsSent || 0;
    if (s.type === "remote-inbound-rtp" && s.kind === "audio") lost += s.packetsLost || 0;
  }
  return {sent, lost};
}
"""

AUDIO_GAP_STOP_JS = """
() => { clearInterval(window.__audioGapTimer); return window.__audioGapSamples || []; }
"""


def longest_audio_gap(samples: list[dict[str, float]]) -> dict[str, Any]:
    """The longest stretch (ms) with no new audio packet, from the page's 100 ms getStats samples.

    When the stats' ``lastPacketReceivedTimestamp`` is on the clock of their ``timestamp`` (it is in current
    Chromium), each sample says how long ago the last packet came: the longest gap is at least the largest of
    those (it is short of the real one by at most one sampling interval). Otherwise: the longest run of samples
    whose packet count did not move. Also returns the longest interval between two samples (how coarse it was)
    and the share of samples concealed by the jitter buffer (concealedSamples / totalSamplesReceived).
    """
    assert len(samples) >= 2, f"too few audio samples: {samples}"
    # (a packet that arrives while getStats gathers can be a few ms newer than the report's timestamp)
    same_clock = all(s["last"] > 0 and -1_000 <= s["at"] - s["last"] <= 60_000 for s in samples)
    if same_clock:
        gap = max(max(0.0, s["at"] - s["last"]) for s in samples)
    else:
        gap, since = 0.0, samples[0]
        for before, after in itertools.pairwise(samples):
            if after["packets"] != before["packets"]:
                since = after
            gap = max(gap, after["at"] - since["at"])
    first, last = samples[0], samples[-1]
    received = last["total"] - first["total"]
    return {
        "gap_ms": round(gap),
        "clock": "lastPacketReceivedTimestamp" if same_clock else "packet count",
        "sample_interval_ms": round(max(b["at"] - a["at"] for a, b in itertools.pairwise(samples))),
        "samples": len(samples),
        "packets": last["packets"] - first["packets"],
        "concealed": round((last["concealed"] - first["concealed"]) / received, 4) if received else 1.0,
        "first": {"at": first["at"], "last": first["last"]},  # the two clocks, as the page reported them
    }


# Chromium's fake camera runs at 20 fps unless told otherwise; issue 17 asks for >= 25 fps at 720p.
CAMERA_30_FPS = ("--use-fake-device-for-media-stream=fps=30",)


@pytest.fixture(scope="module")
def camera_30fps(browser: Any, stack: Any) -> Iterator[Any]:
    """A Chromium whose fake camera sends 30 frames a second (the module's others: 20)."""
    with second_chromium(browser, stack.base_url, extra_args=CAMERA_30_FPS) as chromium:
        yield chromium


def test_a_300_kbit_subscriber_gets_smooth_lower_video_while_an_unconstrained_one_keeps_720p(
    browser: Any,
    camera_30fps: Any,
    contexts: list[Any],
    stack: Any,
    users: dict[str, str],
    shaped_browser: Any,
) -> None:
    host, room_id = host_room(camera_30fps, contexts, stack, users, "Shaped downlink")
    host_id = participant_id(host)
    # A HiDPI laptop: the host's tile is ~700 device pixels tall, so 720p is what fills it (tile caps, layers.py).
    # The guests listen, muted: the e2e stack forwards at most 2 microphones (MEDIA_MAX_AUDIO_MLINES=2, the
    # last-N audio limit), and Chromium's fake microphone is a 20 ms beep every 500 ms, i.e. "gone quiet" nearly
    # always, so with three unmuted ones every beep took the place of another and the host's microphone was not
    # forwarded for 10-47 % of the time (media_server/lastn.py AudioSelector: what earlier runs took for audio lost
    # before the SFU). A muted microphone never counts as speech: the host's is forwarded whole.
    fast = join_without_camera(browser, contexts, stack, room_id, "Fiber", scale=2, muted=True)
    # The slow guest loads the page and joins before its downlink is limited: through the 300 kbit/s tbf the page's
    # modules stalled for over 90 s in 2 of 4 runs (open, see docs/architecture.md); this test is about the media.
    chromium = shaped_browser()
    slow = join_without_camera(chromium, contexts, stack, room_id, "Slow link", muted=True)
    shaped_browser.reshape(chromium, "300kbit")
    wait_media(fast, host_id, audio=True)
    wait_media(slow, host_id, audio=True, timeout=60)
    try:
        wait_until(lambda: video_stats(fast, host_id)["frameHeight"] >= 720, timeout=60)
    except AssertionError:
        raise AssertionError(
            f"the unconstrained subscriber never reached 720p: {video_stats(fast, host_id)}\n"
            f"host sends {published_layers(host)}"
        ) from None
    time.sleep(SETTLE)

    encoded_before, started = host.evaluate(TOP_LAYER_FRAMES_JS), time.monotonic()
    audio_sent_before = host.evaluate(HOST_AUDIO_SENT_JS)
    slow.evaluate(AUDIO_GAP_START_JS, host_id)
    fast.evaluate(AUDIO_GAP_START_JS, host_id)  # the same on the unconstrained page, for comparison (CPU)
    samples = measure({"fast": fast, "slow": slow}, host_id)
    audio = longest_audio_gap(slow.evaluate(AUDIO_GAP_STOP_JS))
    fast_audio = longest_audio_gap(fast.evaluate(AUDIO_GAP_STOP_JS))
    seconds = time.monotonic() - started
    audio_sent_after = host.evaluate(HOST_AUDIO_SENT_JS)
    audio_sent = {k: audio_sent_after[k] - audio_sent_before[k] for k in ("sent", "lost")}
    encoded_fps = (host.evaluate(TOP_LAYER_FRAMES_JS) - encoded_before) / seconds

    slow_s, fast_s = samples["slow"], samples["fast"]
    fast_fps = (fast_s[-1]["framesReceived"] - fast_s[0]["framesReceived"]) / seconds
    decoded_fps = (fast_s[-1]["framesDecoded"] - fast_s[0]["framesDecoded"]) / seconds
    report = (
        f"fast received {fast_fps:.1f} fps, decoded {decoded_fps:.1f}; host's 720p layer {encoded_fps:.1f} fps\n"
        f"host sends {published_layers(host)}; its audio packets {audio_sent} in {seconds:.1f} s\n"
        f"slow: {slow_s}\nfast: {fast_s}\nslow's audio: {audio}\nfast's audio: {fast_audio}"
    )
    slow_fps = (slow_s[-1]["framesDecoded"] - slow_s[0]["framesDecoded"]) / seconds
    frozen = slow_s[-1]["totalFreezesDuration"] - slow_s[0]["totalFreezesDuration"]
    fast_frozen = fast_s[-1]["totalFreezesDuration"] - fast_s[0]["totalFreezesDuration"]
    print(  # with -rA: the figures of a passing run too
        f"300 kbit: slow {sorted({s['frameHeight'] for s in slow_s})}p {slow_fps:.1f} fps, froze {frozen:.2f} s; "
        f"fast {sorted({s['frameHeight'] for s in fast_s})}p {decoded_fps:.1f} fps, froze {fast_frozen:.2f} s; "
        f"host 720p {encoded_fps:.1f} fps, audio packets {audio_sent}; slow audio {audio}; fast audio {fast_audio}"
    )
    for before, after in itertools.pairwise(slow_s):
        assert after["framesDecoded"] > before["framesDecoded"], "the 300 kbit subscriber stopped decoding\n" + report
    assert all(0 < s["frameHeight"] < 720 for s in slow_s), (
        "the 300 kbit subscriber should get a lower layer\n" + report
    )
    assert frozen < 1.0, f"the 300 kbit subscriber froze {frozen:.2f} s in {WINDOW:.0f} s\n" + report
    assert all(s["frameHeight"] >= 720 for s in fast_s), "the unconstrained subscriber dropped below 720p\n" + report
    # Issue 17 item 6: no audio gap over 200 ms at 300 kbit/s. A gap the unconstrained page has too was not made by
    # the shaped link (a host's audio delayed on its way to the SFU). Each page's measure is short of the real gap
    # by at most its longest sampling interval, which a busy page stretches past the nominal 100 ms: the
    # unconstrained page's real gap may be as long as its measure plus its own longest interval.
    upstream = fast_audio["gap_ms"] + max(AUDIO_SAMPLE_MS, fast_audio["sample_interval_ms"])
    assert audio["gap_ms"] <= 200 or audio["gap_ms"] <= upstream, (
        f"the 300 kbit subscriber's audio stopped for {audio['gap_ms']} ms "
        f"(the unconstrained page's longest gap: {fast_audio['gap_ms']} ms)\n" + report
    )
    # Issue 17: the unconstrained subscriber keeps 720p at >= 25 fps (its host's camera sends 30).
    assert decoded_fps >= 25, f"the unconstrained subscriber decoded {decoded_fps:.1f} fps\n" + report


def host_and_shaped_guest(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any, rate: str
) -> tuple[Any, str, Any, Any]:
    """(host's page, its participant id, the guest's Chromium, its page): a HiDPI guest without camera on a
    ``rate`` downlink, receiving the host's camera (720p fills its tile), media flowing."""
    host, room_id = host_room(browser, contexts, stack, users, f"Downlink {rate}")
    host_id = participant_id(host)
    chromium = shaped_browser(rate)
    guest = join_without_camera(chromium, contexts, stack, room_id, "Changing link", scale=2)
    wait_media(guest, host_id, audio=True, timeout=60)
    return host, host_id, chromium, guest


@pytest.mark.xfail(
    not transport_cc_enabled(os.environ),
    reason="REMB climbs at ~8 %/s once the limit is gone (~60 s to 720p, docs/architecture.md); the 10 s target "
    "needs the send-side estimate's probing (MEDIA_TRANSPORT_CC on, the default)",
    strict=False,
)
def test_when_a_300_kbit_limit_is_removed_the_subscriber_is_back_at_720p_within_10_s(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    host, host_id, chromium, slow = host_and_shaped_guest(browser, contexts, stack, users, shaped_browser, "300kbit")
    time.sleep(SETTLE)
    limited = video_stats(slow, host_id)
    assert 0 < limited["frameHeight"] < 720, limited

    shaped_browser.reshape(chromium, None)
    removed = time.monotonic()
    seen: list[tuple[float, int]] = []

    while not seen or seen[-1][1] < 720:
        assert time.monotonic() - removed < 10.0, (
            f"not back at 720p within 10 s of the limit's removal: {seen}\nhost sends {published_layers(host)}"
        )
        seen.append((round(time.monotonic() - removed, 1), video_stats(slow, host_id)["frameHeight"]))
        time.sleep(0.25)
    print(f"limit removed: {limited['frameHeight']}p before, back at 720p after {seen[-1][0]} s; heights {seen}")


def test_a_step_from_10_to_1_mbit_is_followed_within_2_s_without_a_freeze_over_1_s(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    host, host_id, chromium, sub = host_and_shaped_guest(browser, contexts, stack, users, shaped_browser, "10mbit")
    wait_until(
        lambda: video_stats(sub, host_id)["frameHeight"] >= 720,
        timeout=60,
        message=f"never reached 720p at 10 Mbit/s: {video_stats(sub, host_id)}\nhost sends {published_layers(host)}",
    )
    earlier, since = video_stats(sub, host_id), time.monotonic()
    time.sleep(SAMPLE)
    before = video_stats(sub, host_id)
    # A simple fake camera's 720p can need less than 1 Mbit/s: then there is nothing to step down from.
    needs = (before["bytesReceived"] - earlier["bytesReceived"]) * 8 / (time.monotonic() - since)

    shaped_browser.reshape(chromium, "1mbit")
    stepped = time.monotonic()
    seen: list[tuple[float, int]] = []
    while time.monotonic() - stepped < 10.0:
        seen.append((round(time.monotonic() - stepped, 1), video_stats(sub, host_id)["frameHeight"]))
        time.sleep(0.1)
    after = video_stats(sub, host_id)
    report = (
        f"720p needed {needs / 1000:.0f} kbit/s\nbefore {before}\nafter {after}\nheights {seen}\n"
        f"host sends {published_layers(host)}"
    )
    if needs > 900_000:
        assert any(h < 720 for t, h in seen if t <= 2.0), "still 720p 2 s after the step\n" + report
    assert after["framesDecoded"] > before["framesDecoded"], report
    frozen = after["totalFreezesDuration"] - before["totalFreezesDuration"]
    down = next((t for t, h in seen if h < 720), None)
    print(f"10 -> 1 Mbit: 720p needed {needs / 1000:.0f} kbit/s; below 720p after {down} s; froze {frozen:.2f} s")
    assert frozen < 1.0, f"froze {frozen:.2f} s in the 10 s after the step\n" + report


AUDIO_BYTES_JS = """
async (participant) => {
  const call = window.conferenceCall;
  const pc = call && call.pcs.subscribe;
  if (!pc) return 0;
  let total = 0;
  for (const s of (await pc.getStats()).values()) {
    if (s.type !== "inbound-rtp" || s.kind !== "audio") continue;
    const info = call.trackInfo.get(String(s.mid));
    if (info && info.participant === participant) total += s.bytesReceived || 0;
  }
  return total;
}
"""


def test_a_100_kbit_subscriber_keeps_all_its_audio_and_the_speakers_video_at_a_low_rate(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    """Under 150 kbit/s: audio first, plus the active speaker's video on its thinnest level (issue 7)."""
    host, room_id = host_room(browser, contexts, stack, users, "Very slow downlink")
    host_id = participant_id(host)
    # Joined, then limited: the call page's ~200 kB of modules take over 20 s through 100 kbit/s (Playwright's
    # load timeout); this test is about the media, as the 300 kbit/s one.
    chromium = shaped_browser()
    slow = join_without_camera(chromium, contexts, stack, room_id, "Very slow link")
    shaped_browser.reshape(chromium, "100kbit")
    wait_media(slow, host_id, audio=True, timeout=60)
    time.sleep(SETTLE)
    audio_before = slow.evaluate(AUDIO_BYTES_JS, host_id)
    samples = measure({"slow": slow}, host_id)["slow"]
    audio_kbps = (slow.evaluate(AUDIO_BYTES_JS, host_id) - audio_before) * 8 / 1000 / WINDOW
    report = f"audio {audio_kbps:.1f} kbit/s; video {samples}"
    frozen = samples[-1]["totalFreezesDuration"] - samples[0]["totalFreezesDuration"]
    fps = (samples[-1]["framesDecoded"] - samples[0]["framesDecoded"]) / WINDOW
    heights = sorted({s["frameHeight"] for s in samples})
    print(f"100 kbit: {heights}p {fps:.1f} fps, froze {frozen:.2f} s, audio {audio_kbps:.1f} kbit/s")
    for before, after in itertools.pairwise(samples):
        assert after["framesDecoded"] > before["framesDecoded"], "the 100 kbit subscriber stopped decoding\n" + report
    assert all(0 < s["frameHeight"] <= 180 for s in samples), report
    assert frozen < 3.0, f"the 100 kbit subscriber froze {frozen:.2f} s in {WINDOW:.0f} s\n" + report
    assert audio_kbps > 15, "the 100 kbit subscriber lost audio (Opus sends ~24 kbit/s of payload)\n" + report


@pytest.mark.iptables
def test_video_stays_continuous_at_5_percent_loss(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    host, room_id = host_room(browser, contexts, stack, users, "Lossy link")
    host_id = participant_id(host)
    lossy = join_without_camera(shaped_browser(loss=0.05), contexts, stack, room_id, "Lossy link")
    wait_media(lossy, host_id, audio=True, timeout=60)
    time.sleep(SETTLE / 3)

    samples = measure({"lossy": lossy}, host_id)["lossy"]

    report = str(samples)
    frozen = samples[-1]["totalFreezesDuration"] - samples[0]["totalFreezesDuration"]
    fps = (samples[-1]["framesDecoded"] - samples[0]["framesDecoded"]) / WINDOW
    print(f"5 % loss: {sorted({s['frameHeight'] for s in samples})}p {fps:.1f} fps, froze {frozen:.2f} s")
    for before, after in itertools.pairwise(samples):
        assert after["framesDecoded"] > before["framesDecoded"], "video stopped at 5 % loss\n" + report
    assert samples[-1]["nackCount"] > samples[0]["nackCount"], "losses were not NACKed\n" + report
    assert frozen < 1.0, f"froze {frozen:.2f} s in {WINDOW:.0f} s at 5 % loss\n" + report
