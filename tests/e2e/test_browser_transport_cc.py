"""Chromium and the server's transport-wide congestion control (issue 17 item 1): negotiated, fed back, used."""

from __future__ import annotations

import os
from typing import Any

import pytest
from e2e_helpers import create_room, join_call, log_in, new_page, participant_id, wait_media, wait_until

from media_server.config import transport_cc_enabled

pytestmark = pytest.mark.e2e

# The media server offers transport-cc unless MEDIA_TRANSPORT_CC=0 (on by default, media_server/config.py);
# .ci/run runs this file a second time with it off. Off, the answer must carry neither (REMB only).
OFFERED = transport_cc_enabled(os.environ)

SUBSCRIBE_SDP_JS = """
() => {
  const pc = window.conferenceCall && window.conferenceCall.pcs.subscribe;
  return pc && pc.currentLocalDescription ? pc.currentLocalDescription.sdp : null;
}
"""


def test_chromium_accepts_transport_cc_and_sends_feedback_the_server_uses(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Chromium's subscribe answer keeps the transport-wide-cc extension and transport-cc feedback; its
    feedback reaches the server's estimator on every subscribe connection; media flows both ways."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Transport-cc")
    join_call(host, room_id)
    guest = new_page(browser, contexts, stack)
    join_call(guest, room_id, name="Gita (guest)")
    host_id, guest_id = participant_id(host), participant_id(guest)
    wait_media(host, guest_id, timeout=20)
    wait_media(guest, host_id, timeout=20)
    for page in (host, guest):
        answer = page.evaluate(SUBSCRIBE_SDP_JS)
        assert answer is not None
        assert ("draft-holmer-rmcat-transport-wide-cc-extensions-01" in answer) is OFFERED
        assert (" transport-cc" in answer) is OFFERED  # a=rtcp-fb:<pt> transport-cc
        assert "goog-remb" in answer  # the fallback is always offered
    if not OFFERED:
        return
    wait_until(
        lambda: stack.log_tail("media", 400_000).count("transport-cc feedback flowing") >= 2,
        timeout=20,
        message="transport-cc feedback from both subscribers",
    )
    assert "transport-cc feedback handler failed" not in stack.log_tail("media", 400_000)
