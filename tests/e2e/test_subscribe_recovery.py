"""The subscribe chain of call.js survives a failed step (docs/architecture.md, "Known issue").

call.js applies subscribe offers one after another on a promise chain. A `subscribe()` step that threw
(here: the browser refusing the offer once) used to leave the chain rejected, so the next offer was
skipped without an answer: the server's first re-offer was lost too and the subscriber waited for the
second one (or, with more bad luck, never got its renegotiation), which is how a stuck screen tile looked.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import join_call, log_in, new_page, participant_id, wait_media
from test_call import _host_and_room

pytestmark = pytest.mark.e2e

# The first remote offer any connection of the page gets is refused, as a browser may refuse one.
REFUSE_FIRST_OFFER = """(() => {
  const original = RTCPeerConnection.prototype.setRemoteDescription;
  let armed = true;
  RTCPeerConnection.prototype.setRemoteDescription = function (description, ...rest) {
    if (armed && description && description.type === "offer") {
      armed = false;
      window.refusedOffer = true;
      return Promise.reject(new DOMException("refused by the test", "OperationError"));
    }
    return original.call(this, description, ...rest);
  };
})();"""


def test_a_refused_subscribe_offer_is_recovered_by_the_first_re_offer(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host, room_id = _host_and_room(browser, contexts, stack, users, "Refused offer")
    host.wait_for_function("() => window.conferenceCall.pcs.camera?.connectionState === 'connected'")
    member = new_page(browser, contexts, stack)
    member.context.add_init_script(REFUSE_FIRST_OFFER)
    log_in(member, "ravi", users["ravi"])
    join_call(member, room_id)
    # The refused offer is the reply to the member's own `subscribe` (the host's tracks were there).
    member.wait_for_function("() => window.refusedOffer === true")
    refused = member.evaluate("() => window.conferenceCall.subRevision")
    wait_media(member, participant_id(host))
    # Answered the server's first re-offer (refused + 1), not a later one.
    assert member.evaluate("() => window.conferenceCall.subRevision") == refused + 1
    assert not [line for line in member.console_lines if "subscribe offer failed" in line]
    wait_media(host, participant_id(member))


# getUserMedia with video fails (a camera that is busy, denied or, on a loaded machine, too slow to start).
NO_CAMERA = """(() => {
  const md = navigator.mediaDevices;
  if (!md) return;
  const getUserMedia = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => (c && c.video ? Promise.reject(new DOMException("no camera (test)", "NotReadableError")) : getUserMedia(c));
})();"""


def test_a_participant_without_a_camera_joins_with_the_camera_off(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Joining audio-only used to announce a camera that was on: everyone else then waited for camera packets
    that never came, warned `no packets on subscribe mid … camera - resubscribing` and tore down their subscribe
    connection every 20 s (the warnings of the known stall)."""
    host, room_id = _host_and_room(browser, contexts, stack, users, "No camera")
    guest = new_page(browser, contexts, stack)
    guest.context.add_init_script(NO_CAMERA)
    join_call(guest, room_id, name="Audio only")
    guest.wait_for_selector("#btn-cam[aria-pressed=true]")
    guest_id = participant_id(guest)
    host.wait_for_function("(id) => window.conferenceCall.participants.get(id)?.video_muted === true", arg=guest_id)
    wait_media(guest, participant_id(host))
    # The host still hears the guest; its camera m-line is not expected to carry packets.
    host.wait_for_function(
        """async (id) => {
          const c = window.conferenceCall, pc = c.pcs.subscribe;
          if (!pc) return false;
          for (const s of (await pc.getStats()).values()) {
            const info = c.trackInfo.get(String(s.mid));
            if (s.type === 'inbound-rtp' && s.kind === 'audio' && info && info.participant === id && s.packetsReceived > 0) return true;
          }
          return false;
        }""",
        arg=guest_id,
    )
    assert not [line for line in host.console_lines if "no packets on subscribe" in line]
