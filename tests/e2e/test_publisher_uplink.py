"""Publishers adapt too: a throttled uplink makes Chrome's simulcast drop its top layer (issue 17, item 5).

The publishing browser sits in a namespace of its own; once it sends all three
layers, its uplink (what leaves it: ``tc tbf`` on the egress of its end of the
veth) is limited to 500 kbit/s.
The media server answers the publisher's packets with receiver reports and REMB
from the receive-side estimate of each publish connection (docs/protocol.md
*Media behaviour*), so Chrome's bandwidth estimate falls under what its three
layers (≤ 64 kbit/s, ≤ 500 kbit/s, ≤ 1.5 Mbit/s) need and its simulcast
allocator stops the full-resolution layer. Proven with the publisher's own
``getStats()`` (outbound-rtp per ``rid``) and, on an unconstrained subscriber,
with decoded frames from a lower layer.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e_helpers import join_call, new_page, participant_id, wait_media
from test_network import host_room, video_stats

pytestmark = pytest.mark.e2e

OUTBOUND_JS = """
async () => {
  const pc = window.conferenceCall && window.conferenceCall.pcs.camera;
  if (!pc) return {};
  const out = {};
  for (const s of (await pc.getStats()).values()) {
    if (s.type !== "outbound-rtp" || s.kind !== "video" || !s.rid) continue;
    out[s.rid] = {bytesSent: s.bytesSent || 0, framesEncoded: s.framesEncoded || 0, frameHeight: s.frameHeight || 0,
                  qualityLimitationReason: s.qualityLimitationReason || "", active: s.active !== false,
                  targetBitrate: s.targetBitrate || 0};
  }
  return out;
}
"""


def outbound(page: Any) -> dict[str, dict[str, Any]]:
    return dict(page.evaluate(OUTBOUND_JS))


def test_a_throttled_uplink_makes_the_publisher_drop_its_top_simulcast_layer_and_subscribers_keep_video(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    host, room_id = host_room(browser, contexts, stack, users, "Throttled uplink")
    chromium = shaped_browser()  # its own namespace, not shaped yet
    publisher = new_page(chromium, contexts, stack)
    join_call(publisher, room_id, name="Slow uplink")
    publisher_id = participant_id(publisher)
    wait_media(host, publisher_id, audio=True, timeout=60)

    samples: list[dict[str, dict[str, Any]]] = []

    def top_layer(sending: bool) -> bool:
        """Whether the full-resolution layer encodes frames over 4 s (``sending``), or stopped (not ``sending``:
        no frame in 4 s). Chrome's ``qualityLimitationReason`` alone would not do: it is "bandwidth" for every
        layer while its estimate ramps up, throttled or not."""
        before = outbound(publisher)
        time.sleep(4.0)
        after = outbound(publisher)
        samples.append(after)
        if "f" not in before or "f" not in after:
            return False
        grew = after["f"]["framesEncoded"] > before["f"]["framesEncoded"]
        return grew == sending

    def wait_top_layer(sending: bool, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if top_layer(sending):
                return
        raise AssertionError(f"{what}; the publisher's outbound video per rid, last samples: {samples[-3:]}")

    # Unthrottled, Chrome's estimate climbs until it sends all three layers (the server's REMB lets it).
    wait_top_layer(True, 120, "the publisher never sent its full-resolution layer unthrottled")
    shaped_browser.netns(chromium).shape_uplink("500kbit")
    wait_top_layer(False, 60, "the publisher kept sending its top layer on a 500 kbit/s uplink")
    print(f"publisher's outbound video per rid once limited: {samples[-1]}")  # with -s: what Chrome did
    # Subscribers still get video from it, from a lower layer.
    wait_media(host, publisher_id, audio=True, timeout=30)
    stats = video_stats(host, publisher_id)
    assert 0 < stats["frameHeight"] < 720, f"subscriber got {stats}; publisher {samples[-1]}"
