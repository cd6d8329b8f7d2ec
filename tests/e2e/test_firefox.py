"""Firefox ESR in meetings with Chromium, end to end, with Firefox's default ICE preferences.

Firefox (tests/e2e/firefox_harness.py) runs in the same network namespace as Chromium and offers only
mDNS host candidates (``<uuid>.local``); the media server learns its address from its connectivity checks.
Media is proven with getStats() on the receiving page, as in test_call.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import create_room, join_call, log_in, new_page, participant_id, wait_media

pytestmark = [pytest.mark.e2e, pytest.mark.firefox]


def firefox_join(page: Any, room_id: str, *, name: str, expect: str = "call") -> None:
    page.goto(f"/join/{room_id}")
    page.fill("#display-name", name)
    page.click("#join-button")
    page.wait_for_selector(f"#app[data-state={expect}]")


def test_firefox_guest_and_chromium_host_receive_each_other(
    browser: Any, firefox: Any, contexts: list[Any], firefox_pages: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Firefox check")
    join_call(host, room_id)
    guest = firefox.new_page()
    firefox_pages.append(guest)
    firefox_join(guest, room_id, name="Fox")
    wait_media(guest, participant_id(host), timeout=40)
    wait_media(host, participant_id(guest), timeout=40)


def _candidates(page: Any, pc: str) -> list[str]:
    """The candidate lines of the page's ``pc`` connection's local description."""
    sdp = page.evaluate(f"() => window.conferenceCall.pcs.{pc}?.localDescription?.sdp || ''")
    return [line for line in str(sdp).splitlines() if line.startswith("a=candidate:")]


def test_firefox_without_camera_permission_offers_mdns_candidates_and_still_receives(
    browser: Any,
    firefox_denied: Any,
    contexts: list[Any],
    firefox_pages: list[Any],
    stack: Any,
    users: dict[str, str],
) -> None:
    """Default Firefox ICE preferences, no capture permission: only ``.local`` host candidates; the media server
    learns the address from Firefox's connectivity checks (peer-reflexive) and the call works."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Listening from Firefox")
    join_call(host, room_id)
    guest = firefox_denied.new_page()
    firefox_pages.append(guest)
    firefox_join(guest, room_id, name="Quiet fox")
    wait_media(guest, participant_id(host), timeout=40)
    udp = [c for c in _candidates(guest, "subscribe") if " udp " in c.lower()]
    assert udp and all(c.split()[4].endswith(".local") for c in udp), udp
