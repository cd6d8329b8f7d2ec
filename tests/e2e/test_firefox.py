"""Firefox ESR in meetings with Chromium, end to end, with Firefox's default ICE preferences.

Firefox (tests/e2e/firefox_harness.py) runs in the same network namespace as Chromium and offers only
mDNS host candidates (``<uuid>.local``); the media server learns its address from its connectivity checks.
Media is proven with getStats() on the receiving page, as in test_call.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e_helpers import (
    create_room,
    inbound,
    join_call,
    log_in,
    media_flowing,
    new_page,
    participant_id,
    wait_media,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.firefox]


def firefox_join(page: Any, room_id: str, *, name: str, expect: str = "call") -> None:
    page.goto(f"/join/{room_id}")
    page.fill("#display-name", name)
    page.click("#join-button")
    page.wait_for_selector(f"#app[data-state={expect}]")


def firefox_guest(
    firefox: Any, firefox_pages: list[Any], room_id: str, *, name: str, expect: str = "call", **size: int
) -> Any:
    """A new Firefox page (closed after the test, with its console on failure) that joined ``room_id``."""
    page = firefox.new_page(**size)
    firefox_pages.append(page)
    firefox_join(page, room_id, name=name, expect=expect)
    return page


def test_firefox_guest_and_chromium_host_receive_each_other(
    browser: Any, firefox: Any, contexts: list[Any], firefox_pages: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Firefox check")
    join_call(host, room_id)
    guest = firefox_guest(firefox, firefox_pages, room_id, name="Fox")
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
    fox = firefox_guest(firefox, firefox_pages, room_id, name="Waiting fox", expect="waiting")
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


# The camera connection's video senders as the publishing page sees them: one outbound stream per simulcast layer.
OUTBOUND_LAYERS_JS = """
async () => {
  const pc = window.conferenceCall.pcs.camera;
  if (!pc) return null;
  const layers = [];
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "outbound-rtp" && s.kind === "video")
      layers.push({rid: s.rid || "", frameHeight: s.frameHeight || 0, framesEncoded: s.framesEncoded || 0,
                   bytesSent: s.bytesSent || 0});
  }
  const offer = (pc.localDescription && pc.localDescription.sdp) || "";
  return {layers, simulcast: (offer.match(/^a=simulcast:.*$/m) || [""])[0].trim(),
          encodings: pc.getSenders().filter(s => s.track && s.track.kind === "video")
                       .map(s => s.getParameters().encodings.map(e => [e.rid, e.scaleResolutionDownBy]))};
}
"""


def camera_height(page: Any, participant: str) -> int:
    stats = _pick_camera(inbound(page), participant)
    return int(stats["frameHeight"]) if stats else 0


def _pick_camera(stats: list[dict[str, Any]], participant: str) -> dict[str, Any] | None:
    return next((s for s in stats if s["participant"] == participant and s["source"] == "camera"), None)


def test_firefox_publishes_simulcast_and_the_server_switches_its_layers_for_a_chromium_subscriber(
    browser: Any, firefox: Any, contexts: list[Any], firefox_pages: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Firefox offers and sends the camera's layers in the order they were given, lowest first (q, h, f), as
    the server expects; the server moves a Chromium subscriber between them as its tile shrinks and grows.

    Whether Firefox's top layer is sent depends on its bandwidth estimate, as in Chromium (which reports
    ``qualityLimitationReason: bandwidth``): on a loaded machine both pause ``f``. So the test asks for the
    highest layer Firefox is sending, and at least ``q`` and ``h``.
    """
    host = new_page(browser, contexts, stack, width=1280, height=800)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Firefox simulcast")
    join_call(host, room_id)
    fox = firefox_guest(firefox, firefox_pages, room_id, name="Simulcast fox")
    fox_id = participant_id(fox)
    wait_media(host, fox_id, timeout=40)
    sent: dict[str, Any] = {}

    def sending() -> dict[str, int]:
        """Firefox's layers that are being encoded now: rid -> frame height."""
        before = {x["rid"]: x["framesEncoded"] for x in (fox.evaluate(OUTBOUND_LAYERS_JS) or {}).get("layers", [])}
        time.sleep(1)
        sent.update(fox.evaluate(OUTBOUND_LAYERS_JS) or {})
        return {
            x["rid"]: x["frameHeight"]
            for x in sent.get("layers", [])
            if x["framesEncoded"] > before.get(x["rid"], 0) and x["frameHeight"] > 0
        }

    wait_until(lambda: {"q", "h"} <= set(sending()), timeout=30, message=f"Firefox sends no q+h layers: {sent}")
    assert sent["simulcast"] == "a=simulcast:send q;h;f", sent
    assert sent["encodings"] == [[["q", 4], ["h", 2], ["f", 1]]], sent
    heights = sending()
    assert heights["q"] < heights["h"] < heights.get("f", 10_000), f"Firefox's layers are not lowest first: {sent}"
    assert heights["q"] == 180, sent  # its fake camera is 1280x720, as asked; q is a quarter of it

    def host_gets_a_layer_above_q() -> bool:
        return camera_height(host, fox_id) in set(sending().values()) - {180}

    wait_until(host_gets_a_layer_above_q, timeout=40, message=f"the host's large tile never got h or f: {sent}")
    host.set_viewport_size({"width": 320, "height": 240})  # a thumbnail: the smallest layer fills it
    wait_until(
        lambda: camera_height(host, fox_id) == 180,
        timeout=40,
        message=f"the server never moved the shrunk Chromium tile to Firefox's q layer: {inbound(host)}",
    )
    wait_media(host, fox_id, timeout=20)
    host.set_viewport_size({"width": 1280, "height": 800})
    wait_until(host_gets_a_layer_above_q, timeout=40, message=f"the grown tile never got h or f again: {sent}")
    wait_media(host, fox_id, timeout=20)


def test_a_firefox_subscriber_is_moved_between_simulcast_layers_by_the_server(
    browser: Any, firefox: Any, contexts: list[Any], firefox_pages: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """The Chromium host's 1280x720 camera in three layers; Firefox's tile decides which one the server forwards
    it: a thumbnail gets 180 lines, a large tile more, and decoding goes on across each switch."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Firefox subscriber layers")
    join_call(host, room_id)
    host_id = participant_id(host)
    fox = firefox_guest(firefox, firefox_pages, room_id, name="Watching fox", width=320, height=240)
    wait_media(fox, host_id, timeout=40)
    wait_until(
        lambda: camera_height(fox, host_id) == 180,
        timeout=40,
        message=f"a Firefox thumbnail should get the 180-line layer: {inbound(fox)}",
    )
    fox.set_viewport_size({"width": 1280, "height": 800})
    wait_until(
        lambda: camera_height(fox, host_id) >= 360,
        timeout=40,
        message=f"the server never moved the grown Firefox tile up from 180 lines: {inbound(fox)}",
    )
    wait_media(fox, host_id, timeout=20)
    fox.set_viewport_size({"width": 320, "height": 240})
    wait_until(
        lambda: camera_height(fox, host_id) == 180,
        timeout=40,
        message=f"the server never moved the shrunk Firefox tile back down to 180 lines: {inbound(fox)}",
    )
    wait_media(fox, host_id, timeout=20)


RECORD_JS = """
async (roomId) => {
  const api = await import("/static/js/call/api.js");
  try { await api.apiPost(`/api/v1/rooms/${roomId}/record`, {duration_minutes: 5}); return {ok: true}; }
  catch (err) { return {ok: false, status: err.status, code: err.code}; }
}
"""


def test_an_e2ee_room_with_a_firefox_member_decrypts_both_ways_and_refuses_recording(
    browser: Any, firefox: Any, contexts: list[Any], firefox_pages: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Firefox encrypts and decrypts with RTCRtpScriptTransform, Chromium with its own encoded transform; each
    decodes the other's video and audio, every frame crossing the server encrypted; recording is refused."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    host.goto("/")
    host.get_by_label("Meeting name").fill("Secret with a fox")
    host.get_by_label("End-to-end encrypted").check()
    host.get_by_role("button", name="New meeting").click()
    host.wait_for_url("**/join/*")
    room_id = host.url.rstrip("/").rsplit("/", 1)[-1]
    join_call(host, room_id)
    fox = firefox_guest(firefox, firefox_pages, room_id, name="Secret fox")
    host_id, fox_id = participant_id(host), participant_id(fox)
    assert fox.evaluate("() => window.conferenceCall.e2ee.mode") == "script"
    wait_media(fox, host_id, timeout=40)
    wait_media(host, fox_id, timeout=40)
    for page in (host, fox):
        assert page.evaluate("() => document.querySelector('#e2ee-badge').textContent") == "End-to-end encrypted"
        stats = page.evaluate("() => window.conferenceCall.e2ee.stats")
        assert stats["encrypted"] > 0 and stats["decrypted"] > 0, stats
        assert stats["failed"] == 0, stats
    assert not host.locator("#btn-record").is_visible()
    refused = host.evaluate(RECORD_JS, room_id)
    assert refused == {"ok": False, "status": 409, "code": "recording_e2ee"}, refused


def _receive_all(pages: dict[str, Any], *, timeout: float = 40) -> list[str]:
    """Every page decodes every other page's camera video and audio; returns the problems."""
    problems = []
    for me, page in pages.items():
        for other, other_page in pages.items():
            if other == me:
                continue
            try:
                wait_media(page, other, timeout=timeout)
            except AssertionError as exc:
                problems.append(f"{me} ({page.browser_name}) receiving {other} ({other_page.browser_name}): {exc}")
    return problems


def test_chromium_host_firefox_guest_and_chromium_guest_each_receive_the_other_two(
    browser: Any, firefox: Any, contexts: list[Any], firefox_pages: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """A mixed meeting: each page decodes the other two's video (rising frames, real size) and audio."""
    host = new_page(browser, contexts, stack)
    host.browser_name = "chromium"
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Mixed browsers")
    join_call(host, room_id)
    fox = firefox_guest(firefox, firefox_pages, room_id, name="Fox")
    chrome_guest = new_page(browser, contexts, stack)
    chrome_guest.browser_name = "chromium"
    join_call(chrome_guest, room_id, name="Chris")
    pages = {participant_id(p): p for p in (host, fox, chrome_guest)}
    assert len(pages) == 3
    problems = _receive_all(pages)
    assert not problems, "\n".join(problems)
    fox.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 3")
