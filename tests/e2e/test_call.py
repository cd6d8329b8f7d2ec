"""The web UI end to end: real Chromium (fake camera, microphone and screen), daphne and the media server.

Media is proven with getStats() on the receiving page: inbound video
framesDecoded rising with a real frame size, inbound audio packets and
samples rising. See conftest.py for the network-namespace harness.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    create_room,
    inbound,
    join_call,
    log_in,
    media_flowing,
    media_stopped,
    mids_of,
    new_page,
    participant_id,
    wait_media,
    wait_until,
)

pytestmark = pytest.mark.e2e
# The README's screenshots are refreshed with E2E_UPDATE_SCREENSHOTS=1; otherwise they go to a temp folder.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("E2E_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "conference-e2e-screenshots"
)


def _host_and_room(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], name: str, **kw: Any
) -> tuple[Any, str]:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, name, **kw)
    join_call(host, room_id)
    return host, room_id


def _member(browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], username: str, room_id: str) -> Any:
    page = new_page(browser, contexts, stack)
    log_in(page, username, users[username])
    join_call(page, room_id)
    return page


def _guest(browser: Any, contexts: list[Any], stack: Any, room_id: str, name: str) -> Any:
    page = new_page(browser, contexts, stack)
    join_call(page, room_id, name=name)
    return page


def test_three_participants_each_receive_the_other_two(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Host, a registered user and a guest: each decodes the other two's video and audio."""
    host, room_id = _host_and_room(browser, contexts, stack, users, "Weekly sync")
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    guest = _guest(browser, contexts, stack, room_id, "Gita (guest)")
    pages = {participant_id(p): p for p in (host, member, guest)}
    assert len(pages) == 3
    problems = []
    for me, page in pages.items():
        for other in pages:
            if other != me:
                try:
                    wait_media(page, other, timeout=20)
                except AssertionError as exc:
                    problems.append(f"{me} receiving {other}: {str(exc).splitlines()[0]}")
    assert not problems, "\n".join(problems)
    # Everyone's grid shows three tiles with names.
    for page in pages.values():
        page.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 3")
    assert host.locator("#grid .tile .name").all_text_contents() == ["hana (you)", "ravi", "Gita (guest)"] or set(
        host.locator("#grid .tile .name").all_text_contents()
    ) == {"hana (you)", "ravi", "Gita (guest)"}

    # A screenshot for the README: chat open, a message in it.
    guest.locator("#btn-chat").click()
    guest.get_by_label("Message").fill("Hi all, the slides are in the shared folder.")
    guest.get_by_role("button", name="Send").click()
    host.wait_for_function("() => document.querySelector('#unread').textContent === '1'")
    host.locator("#btn-chat").click()
    host.get_by_label("Message").fill("Thanks! Let's start with the roadmap.")
    host.get_by_role("button", name="Send").click()
    time.sleep(2.5)  # let the connection-quality indicator take a sample
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    host.screenshot(path=str(SCREENSHOTS / "call-3-participants.png"))
    phone = new_page(browser, contexts, stack, width=390, height=844)
    join_call(phone, room_id, name="Phone guest")
    phone.wait_for_function("() => document.querySelectorAll('#grid .tile.has-video').length >= 3")
    time.sleep(1)
    phone.screenshot(path=str(SCREENSHOTS / "call-phone.png"))


def test_screen_share_reaches_the_others_while_the_camera_continues(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host, room_id = _host_and_room(browser, contexts, stack, users, "Design review")
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    guest = _guest(browser, contexts, stack, room_id, "Sam")
    sharer = participant_id(member)
    wait_media(host, sharer)
    member.get_by_role("button", name="Share screen").click()
    member.wait_for_selector("#btn-screen[aria-pressed=true]")
    for page in (host, guest):
        wait_media(page, sharer, source="screen", audio=False)
        assert not media_flowing(page, sharer), "the camera must keep flowing during a screen share"
        page.wait_for_selector("#screen-area .tile.screen")
    host.screenshot(path=str(SCREENSHOTS / "call-screen-share.png"))
    member.get_by_role("button", name="Stop sharing").click()
    host.wait_for_selector("#screen-area .tile.screen", state="detached")


def test_stopping_a_screen_share_shows_no_error(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """The server is told first (unpublish), the connection's teardown is ignored: no red status, no toast."""
    host, room_id = _host_and_room(browser, contexts, stack, users, "Stop share")
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    for attempt in range(3):
        member.get_by_role("button", name="Share screen").click()
        member.wait_for_function("() => window.conferenceCall.pcs.screen?.connectionState === 'connected'")
        member.evaluate(
            """() => { window.__statuses = []; const node = document.getElementById("conn-status");
              new MutationObserver(() => window.__statuses.push(node.dataset.kind + ":" + node.textContent))
                .observe(node, {childList: true, characterData: true, subtree: true, attributes: true}); }"""
        )
        member.get_by_role("button", name="Stop sharing").click()
        member.wait_for_selector("#btn-screen[aria-pressed=false]")
        time.sleep(3)  # the server's view of the closed connection arrives meanwhile
        assert member.locator("#toast").is_hidden(), f"attempt {attempt}: {member.locator('#toast').text_content()}"
        assert not [s for s in member.evaluate("() => window.__statuses") if s.startswith("bad:")], attempt
        assert not [line for line in member.console_lines if "rebuilding" in line]
        assert member.evaluate("() => window.conferenceCall.pcs.screen") is None
    assert participant_id(host) != participant_id(member)


def test_chat_reaches_the_others_and_history_survives_a_reload(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host, room_id = _host_and_room(browser, contexts, stack, users, "Chat room")
    guest = _guest(browser, contexts, stack, room_id, "Lee")
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    text = "<b>bold?</b> & 'quotes' — plain text please"
    guest.locator("#btn-chat").click()
    guest.get_by_label("Message").fill(text)
    guest.get_by_role("button", name="Send").click()
    for page in (host, member):
        page.wait_for_function("() => document.querySelector('#unread').textContent === '1'")
        page.locator("#btn-chat").click()
        page.wait_for_selector("#chat-log .chat-text")
        assert page.locator("#chat-log .chat-text").first.text_content() == text
        assert page.locator("#chat-log b").count() == 0, "user text must never become markup"
        assert page.locator("#unread").is_hidden()
    member.get_by_label("Message").fill("second message")
    member.get_by_role("button", name="Send").click()
    guest.wait_for_function("() => document.querySelectorAll('#chat-log .chat-text').length === 2")

    host.reload()
    host.wait_for_selector("#app[data-state=call]")
    host.locator("#btn-chat").click()
    host.wait_for_function("() => document.querySelectorAll('#chat-log .chat-text').length === 2")
    assert host.locator("#chat-log .chat-text").all_text_contents() == [text, "second message"]


def test_host_mutes_one_participant_and_removes_another(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host, room_id = _host_and_room(browser, contexts, stack, users, "Moderated")
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    guest = _guest(browser, contexts, stack, room_id, "Noisy guest")
    member_id, guest_id = participant_id(member), participant_id(guest)
    wait_media(host, guest_id)
    wait_media(member, guest_id)

    host.locator("#btn-people").click()
    host.get_by_role("button", name="Mute ravi").click()
    member.wait_for_selector("#btn-mic[aria-pressed=true]")
    assert member.evaluate("() => window.conferenceCall.local.audioTrack.enabled") is False
    for page in (host, guest):
        page.wait_for_selector(f"#grid .tile[data-participant={member_id}] .flag-muted:not([hidden])")

    guest_mids = [(page, mids_of(page, guest_id)) for page in (host, member)]
    assert all(len(mids) == 2 for _, mids in guest_mids), guest_mids  # their camera and microphone
    host.once("dialog", lambda dialog: dialog.accept())
    host.get_by_role("button", name="Remove Noisy guest").click()
    guest.wait_for_selector("#app[data-state=ended][data-reason=removed]")
    assert "removed" in guest.locator("#ended-detail").text_content()
    assert guest.evaluate("() => window.conferenceCall.local.stream.getTracks().every(t => t.readyState === 'ended')")
    # What the others see: no tile, no stream attributed to the guest, and no more packets on the lines that
    # carried them. Those m-lines may stay negotiated (MEDIA_SPARE_MLINES: spares for the next joiner).
    for page, mids in guest_mids:
        page.wait_for_selector(f"#grid .tile[data-participant={guest_id}]", state="detached")
        wait_until(
            lambda page=page: not any(s["participant"] == guest_id for s in inbound(page)),
            timeout=15,
            message="a stream is still attributed to the removed guest",
        )
        wait_until(
            lambda page=page, mids=mids: not media_stopped(page, mids),
            timeout=10,
            interval=0,
            message="packets still arrive on the lines that carried the removed guest",
        )
    wait_media(host, member_id, audio=False)  # the rest of the call goes on


def test_waiting_room_joiner_gets_media_after_the_host_admits_them(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host, room_id = _host_and_room(browser, contexts, stack, users, "Interviews", waiting_room=True)
    joiner = new_page(browser, contexts, stack)
    log_in(joiner, "mona", users["mona"])
    join_call(joiner, room_id, expect="waiting")
    assert joiner.get_by_role("heading", name="Waiting for the host to let you in").is_visible()
    time.sleep(1)
    assert joiner.evaluate("() => window.conferenceCall.phase") == "waiting"

    host.wait_for_function("() => document.querySelector('#hands-badge').textContent === '1'")
    host.locator("#btn-people").click()
    host.get_by_role("button", name="Admit mona").click()
    joiner.wait_for_selector("#app[data-state=call]")
    wait_media(joiner, participant_id(host))
    wait_media(host, participant_id(joiner))


def test_reload_is_back_in_the_call_with_video_within_five_seconds(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host, room_id = _host_and_room(browser, contexts, stack, users, "Flaky wifi")
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    host_id, member_id = participant_id(host), participant_id(member)
    wait_media(member, host_id)
    wait_media(host, member_id)

    started = time.monotonic()
    member.reload()
    member.wait_for_selector("#app[data-state=call]", timeout=5000)
    member.wait_for_function(
        """async (hostId) => {
          const c = window.conferenceCall, pc = c.pcs.subscribe;
          if (!pc) return false;
          for (const s of (await pc.getStats()).values()) {
            const info = c.trackInfo.get(String(s.mid));
            if (s.type === 'inbound-rtp' && s.kind === 'video' && info && info.participant === hostId
                && s.framesDecoded > 0 && s.frameWidth > 0) return true;
          }
          return false;
        }""",
        arg=host_id,
        timeout=max(100, 5000 - (time.monotonic() - started) * 1000),
        polling=100,
    )
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, f"back with video after {elapsed:.1f} s"
    wait_media(member, host_id)
    wait_media(host, participant_id(member))


# getUserMedia that settles 2.5 s late: "Join now" is clicked before the camera and microphone are open.
SLOW_GET_USER_MEDIA = """(() => {
  const md = navigator.mediaDevices;
  if (!md) return;
  const getUserMedia = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => new Promise((resolve) => setTimeout(resolve, 2500)).then(() => getUserMedia(c));
})();"""


def test_joining_before_the_camera_is_open_still_sends_camera_and_microphone(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """The first page of a fresh browser opens its (fake) devices slowly; a quick "Join now" used to
    publish senders without tracks: nobody ever received that participant (1 in 4 runs of test 1)."""
    host = new_page(browser, contexts, stack)
    host.context.add_init_script(SLOW_GET_USER_MEDIA)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Slow camera")
    join_call(host, room_id)
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    wait_media(member, participant_id(host))
    kinds = host.evaluate("() => window.conferenceCall.pcs.camera.getSenders().map((s) => s.track && s.track.kind)")
    assert sorted(kinds) == ["audio", "video"]
