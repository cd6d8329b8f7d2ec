"""Click "Join now" → first remote video frame, in Chromium (issue 19 item 4): printed, never asserted.

A host publishes its fake camera; a guest (camera and microphone on, as most people join) loads the join page
and clicks "Join now" JOINS times, leaving between joins. The page itself timestamps the click (the form's
``submit``, ``performance.now()``) and the first video frame its subscribe connection decodes (``getStats``
``framesDecoded`` polled every 10 ms, so the figure is at most ~10 ms late), and the steps between (REST
join answered, socket open, ``room_snapshot``, the page's ``subscribe`` sent, subscribe offer, subscribe
answer sent, publish offer sent, publish answer, each peer connection connected). The test prints every join
with its steps and the median; docs/benchmarks.md §4 records them with the machine's load. Benchmarks are not
tests: the only assertion is that every join shows the host's video.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import pytest
from e2e_helpers import create_room, join_call, log_in, new_page, participant_id, wait_media

pytestmark = pytest.mark.e2e

JOINS = 5

# Installed before the page's own scripts: the click time and the first decoded remote frame after it.
CLOCK_JS = """
(() => {
  const join = window.__join = { clicked: null, firstFrame: null, marks: {} };
  const mark = (what) => { if (join.clicked !== null && !(what in join.marks)) join.marks[what] = performance.now() - join.clicked; };
  const pageFetch = window.fetch;
  window.fetch = async (...args) => {
    const response = await pageFetch(...args);
    if (String(args[0]).endsWith("/join")) mark("REST join");
    return response;
  };
  const PageSocket = window.WebSocket;
  window.WebSocket = class extends PageSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => mark("socket open"));
      const socketSend = this.send.bind(this);
      this.send = (data) => {
        const type = (String(data).match(/"type": ?"([a-z_]+)"/) || [])[1];
        const sent = { subscribe: "subscribe sent", offer: "publish offer sent", answer: "subscribe answer sent" }[type];
        if (sent) mark(sent);
        return socketSend(data);
      };
      this.addEventListener("message", (event) => {
        const type = (event.data.match(/"type": ?"([a-z_]+)"/) || [])[1];
        if (type === "room_snapshot") mark("snapshot");
        if (type === "answer") mark("publish answer");
        if (type === "offer") mark("subscribe offer");
      });
    }
  };
  const PagePc = window.RTCPeerConnection;
  let n = 0;
  window.RTCPeerConnection = class extends PagePc {
    constructor(...args) {
      super(...args);
      const id = ++n;
      this.addEventListener("connectionstatechange", () => {
        if (this.connectionState === "connected") mark(`pc${id} connected`);
      });
    }
  };
  document.addEventListener("submit", () => {
    join.clicked = performance.now();
    const poll = setInterval(async () => {
      const pc = window.conferenceCall && window.conferenceCall.pcs.subscribe;
      if (!pc) return;
      for (const s of (await pc.getStats()).values()) {
        if (s.type === "inbound-rtp" && s.kind === "video" && (s.framesDecoded || 0) > 0) {
          if (join.firstFrame === null) join.firstFrame = performance.now();
          clearInterval(poll);
        }
      }
    }, 10);
  }, true);
})();
"""


def test_click_join_to_first_remote_frame_is_printed(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Join time")
    join_call(host, room_id)
    host_id = participant_id(host)

    times_ms: list[float] = []
    for n in range(JOINS):
        guest = new_page(browser, contexts, stack)
        guest.add_init_script(CLOCK_JS)
        join_call(guest, room_id, name=f"Joiner {n + 1}")
        wait_media(guest, host_id, audio=False, timeout=60)
        guest.wait_for_function("() => window.__join.firstFrame !== null", timeout=30_000)
        clicked, first, marks = guest.evaluate(
            "() => [window.__join.clicked, window.__join.firstFrame, window.__join.marks]"
        )
        times_ms.append(first - clicked)
        steps = sorted(marks.items(), key=lambda item: item[1])
        print(
            f"\njoin {n + 1}: "
            + ", ".join(f"{what} {ms:.0f}" for what, ms in steps)
            + f", first frame {first - clicked:.0f} ms"
        )
        guest.context.close()
        contexts.remove(guest.context)

    load = os.getloadavg()[0]
    print(
        f"\nclick 'Join now' -> first remote video frame, {JOINS} joins (load {load:.1f}): "
        + ", ".join(f"{t:.0f}" for t in times_ms)
        + f" ms; median {statistics.median(times_ms):.0f} ms"
    )
