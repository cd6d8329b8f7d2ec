"""Firefox ESR in meetings with Chromium, end to end, with Firefox's default ICE preferences.

Firefox (tests/e2e/firefox_harness.py) runs in the same network namespace as Chromium and offers only
mDNS host candidates (``<uuid>.local``); the media server learns its address from its connectivity checks.
Media is proven with getStats() on the receiving page, as in test_call.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import create_room, join_call, log_in, media_flowing, new_page, participant_id, wait_media

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

    guest.reload()  # a reload puts a Firefox guest straight back into the call, media flowing again
    guest.wait_for_selector("#app[data-state=call], #app[data-state=waiting], #app[data-state=ended]", timeout=30)
    state = guest.evaluate("() => document.querySelector('#app').dataset.state")
    assert state == "call", f"after a reload the Firefox page is in {state!r}"
    wait_media(guest, participant_id(host), timeout=40)
    wait_media(host, participant_id(guest), timeout=40)


def test_firefox_waits_is_admitted_chats_and_leaves(
    browser: Any, firefox: Any, contexts: list[Any], firefox_pages: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """The waiting room, chat (both ways) and leaving, all from Firefox."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Firefox lobby", waiting_room=True)
    join_call(host, room_id)
    fox = firefox.new_page()
    firefox_pages.append(fox)
    firefox_join(fox, room_id, name="Waiting fox", expect="waiting")
    host.wait_for_function("() => document.querySelector('#hands-badge').textContent === '1'")
    host.locator("#btn-people").click()
    host.get_by_role("button", name="Admit Waiting fox").click()
    fox.wait_for_selector("#app[data-state=call]")
    fox_id = participant_id(fox)
    wait_media(fox, participant_id(host), timeout=40)
    wait_media(host, fox_id, timeout=40)

    text = "Hello from Firefox <i>not markup</i>"
    fox.click("#btn-chat")
    fox.fill("#chat-input", text)
    fox.click("#chat-form button[type=submit]")
    host.wait_for_function("() => document.querySelector('#unread').textContent === '1'")
    host.locator("#btn-chat").click()
    host.wait_for_selector("#chat-log .chat-text")
    assert host.locator("#chat-log .chat-text").first.text_content() == text
    host.get_by_label("Message").fill("Welcome, fox")
    host.get_by_role("button", name="Send").click()
    fox.wait_for_function("() => document.querySelectorAll('#chat-log .chat-text').length === 2")

    fox.click("#btn-leave")
    fox.wait_for_selector("#app[data-state=ended][data-reason=left]")
    assert fox.evaluate("() => window.conferenceCall.local.stream.getTracks().every(t => t.readyState === 'ended')")
    host.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 1", timeout=20_000)


def test_screen_share_from_firefox_reaches_chromium_while_its_camera_continues(
    browser: Any, firefox_on_screen: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Firefox (on an X display: headless it has no screen) shares its screen; the Chromium host decodes the
    share and the Firefox camera and audio at the same time, and the share's tile goes when it stops."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Firefox shares")
    join_call(host, room_id)
    fox = firefox_on_screen.new_page()
    firefox_join(fox, room_id, name="Sharing fox")
    sharer = participant_id(fox)
    wait_media(host, sharer, timeout=40)
    fox.click("#btn-screen")
    fox.wait_for_selector("#btn-screen[aria-pressed=true]")
    wait_media(host, sharer, source="screen", audio=False, timeout=40)
    assert not media_flowing(host, sharer), "the Firefox camera must keep flowing during its screen share"
    host.wait_for_selector("#screen-area .tile.screen")
    fox.click("#btn-screen")
    fox.wait_for_selector("#btn-screen[aria-pressed=false]")
    host.wait_for_selector("#screen-area .tile.screen", state="detached")
    wait_media(host, sharer, timeout=20)  # ... and the camera after it
