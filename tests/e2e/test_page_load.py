"""A network change while the call page loads: the page reloads itself and the call works (static/js/boot.js).

Chromium aborts its requests in flight with ``net::ERR_NETWORK_CHANGED`` when an address of its machine
changes. During the page load that leaves the call page's module graph half-fetched: without the guard
nothing is wired and "Join now" stays disabled (seen in CI, where a test namespace's IPv6 link-local address
turned valid while a Chromium loaded the page; tests/e2e/conftest.py now keeps IPv6 out of the namespaces).

Here the fault is caused for real: a guest's Chromium in a namespace of its own loads the page over a
300 kbit/s downlink (``tc tbf``, so the ~30 modules take seconds), and once it has asked for its fifth module
its namespace gets a second IPv4 address.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import pytest
from e2e_helpers import join_call, new_page, participant_id, wait_media
from test_network import host_room

pytestmark = pytest.mark.e2e


def test_a_network_change_while_the_page_loads_reloads_it_and_the_call_still_works(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], shaped_browser: Any
) -> None:
    host, room_id = host_room(browser, contexts, stack, users, "Page load")
    host_id = participant_id(host)
    chromium = shaped_browser("300kbit")
    ns = shaped_browser.netns(chromium)
    extra_ip = ns.ns_ip.rsplit(".", 1)[0] + ".3"
    guest = new_page(chromium, contexts, stack)
    modules: list[str] = []
    loads: list[str] = []
    changed = threading.Event()

    def on_request(request: Any) -> None:
        if "/static/js/" in request.url:
            modules.append(request.url)
        if len(modules) == 5 and not changed.is_set():
            changed.set()
            subprocess.run(
                ["ip", "netns", "exec", ns.name, "ip", "addr", "add", f"{extra_ip}/24", "dev", ns.ns_if], check=True
            )

    guest.on("request", on_request)
    guest.on("load", lambda page: loads.append(page.url))
    guest.goto(f"/join/{room_id}", wait_until="commit")
    guest.wait_for_function("() => document.getElementById('join-button')?.disabled === false", timeout=90_000)

    assert changed.is_set(), "the namespace's address never changed"
    aborted = [line for line in guest.console_lines if "ERR_NETWORK_CHANGED" in line]
    assert aborted, "Chromium aborted nothing: the fault missed the page load\n" + "\n".join(guest.console_lines)
    assert len(loads) >= 2, f"the page should have reloaded itself: loads {loads}"
    assert guest.evaluate("() => sessionStorage.getItem('conference.bootRetries')") is None

    ns.unshape()
    join_call(guest, room_id, name="After a network change")
    wait_media(guest, host_id, audio=True, timeout=60)
