"""Reload keeps the seat (issue 16, item 5), the page's part: it keeps the grant's ``rejoin_token`` for the tab.

The token itself is the server's (the REST join grant carries it, and a valid one seats the same participant
again without password or waiting room). Here the grant is given a token on its way to the page, so this
test pins what the page does with it, whatever the server does: kept in sessionStorage, sent with the
automatic join after a reload, forgotten on leave.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_helpers import create_room, join_call, log_in, new_page

pytestmark = pytest.mark.e2e


def test_the_grants_rejoin_token_is_sent_on_the_rejoin_after_a_reload_and_forgotten_on_leave(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    page = new_page(browser, contexts, stack)
    log_in(page, "hana", users["hana"])
    room_id = create_room(page, "Reload seat")
    bodies: list[dict[str, Any]] = []
    issued: list[str] = []

    def grant_with_token(route: Any) -> None:
        bodies.append(json.loads(route.request.post_data or "{}"))
        response = route.fetch()
        grant = response.json()
        if response.ok:
            issued.append(f"rt-{len(issued) + 1}")
            grant["rejoin_token"] = issued[-1]
        route.fulfill(response=response, json=grant)

    page.route(f"**/api/v1/rooms/{room_id}/join", grant_with_token)
    join_call(page, room_id)
    assert "rejoin_token" not in bodies[0]
    record = page.evaluate("(key) => JSON.parse(sessionStorage.getItem(key))", f"conference:{room_id}")
    assert record["rejoinToken"] == "rt-1"

    page.reload()
    page.wait_for_selector("#app[data-state=call]")
    assert bodies[-1].get("rejoin_token") == "rt-1"  # the automatic rejoin presented the kept token
    record = page.evaluate("(key) => JSON.parse(sessionStorage.getItem(key))", f"conference:{room_id}")
    assert record["rejoinToken"] == issued[-1]  # and keeps the newest one

    page.click("#btn-leave")
    page.wait_for_selector("#app[data-state=ended]")
    assert page.evaluate("(key) => sessionStorage.getItem(key)", f"conference:{room_id}") is None
