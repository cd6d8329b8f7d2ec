"""Browsers that hide their host addresses behind mDNS names (``<uuid>.local``) connect to the media server.

Firefox and Chromium offer only mDNS host candidates while the page has no camera/microphone permission
(Firefox's and Chromium's defaults; no STUN/TURN here). The media server cannot resolve those names (it is
never on the browser's link) and learns the browser's address from its connectivity checks instead
(peer-reflexive candidates, media_server/aiortc_hooks.py ``set_mdns_candidates_learned``). Default ICE
preferences in both browsers: obfuscation is never switched off.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import CHROMIUM, create_room, join_call, log_in, new_page, participant_id, wait_media, wait_until
from test_firefox import firefox_join

pytestmark = pytest.mark.e2e


def _candidates(page: Any, pc: str) -> list[str]:
    """The UDP candidate addresses in the page's ``pc`` connection's local description."""
    sdp = page.evaluate(f"() => window.conferenceCall.pcs.{pc}?.localDescription?.sdp || ''")
    lines = [line.split() for line in str(sdp).splitlines() if line.startswith("a=candidate:")]
    return [fields[4] for fields in lines if fields[2].lower() == "udp"]


def _connected(page: Any) -> dict[str, str]:
    return dict(
        page.evaluate(
            "() => Object.fromEntries(Object.entries(window.conferenceCall.pcs).map(([n, pc]) => [n, pc.connectionState]))"
        )
    )


def _host_room(browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], name: str) -> tuple[Any, str]:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, name)
    join_call(host, room_id)
    return host, room_id


def _listener_connects(page: Any, host: Any) -> None:
    """``page`` (no camera/microphone) receives the host and both of its connections are up, on mDNS candidates."""
    wait_media(page, participant_id(host), timeout=40)
    for pc in ("camera", "subscribe"):
        addresses = _candidates(page, pc)
        assert addresses and all(a.endswith(".local") for a in addresses), f"{pc}: {addresses}"
    wait_until(
        lambda: set(_connected(page).values()) == {"connected"},
        timeout=30,
        message=f"not every connection is up: {_connected(page)}",
    )


@pytest.mark.firefox
def test_firefox_without_camera_permission_offers_mdns_candidates_and_still_connects(
    browser: Any,
    firefox_denied: Any,
    contexts: list[Any],
    firefox_pages: list[Any],
    stack: Any,
    users: dict[str, str],
) -> None:
    host, room_id = _host_room(browser, contexts, stack, users, "Listening from Firefox")
    guest = firefox_denied.new_page()
    firefox_pages.append(guest)
    firefox_join(guest, room_id, name="Quiet fox")
    _listener_connects(guest, host)


def test_chromium_without_camera_permission_offers_mdns_candidates_and_still_connects(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """A Chromium whose user never granted camera/microphone: no fake-UI auto-grant, Chromium's default
    mDNS obfuscation left on (the shared test Chromium turns it off with --disable-features)."""
    host, room_id = _host_room(browser, contexts, stack, users, "Listening from Chromium")
    args = [
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        f"--unsafely-treat-insecure-origin-as-secure={stack.base_url}",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
    ]
    # The session's Playwright driver runs inside the namespace, so this Chromium does too.
    plain = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=args)
    try:
        ctx = plain.new_context(base_url=stack.base_url)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        page.console_lines = []  # type: ignore[attr-defined]
        page.on("console", lambda msg: page.console_lines.append(f"{msg.type}: {msg.text}"))
        join_call(page, room_id, name="Quiet chrome")
        assert page.evaluate("() => window.conferenceCall.local.stream.getTracks().length") == 0
        _listener_connects(page, host)
    finally:
        plain.close()
