"""Scheduled meetings in the browser: schedule one on the form, see it on "My meetings", the invitation
mailed by the real Celery worker (console e-mail backend, the worker's log), and the friendly "not open yet"
page for an invitee who comes too early. Also takes the README's "My meetings" screenshot."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import log_in, new_page, wait_until

pytestmark = pytest.mark.e2e
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("E2E_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "conference-e2e-screenshots"
)


def _schedule(page: Any, title: str, start: datetime, *, zone: str, repeats: str, invitees: str) -> None:
    page.goto("/meetings/new")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Start").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Time zone").select_option(zone)
    page.get_by_label("Duration (minutes)").fill("45")
    page.get_by_label("Repeats").select_option(repeats)
    page.get_by_label("Invitees").fill(invitees)
    page.get_by_role("button", name="Schedule and invite").click()
    page.wait_for_url("**/meetings/")


def test_schedule_a_meeting_mail_goes_out_and_early_joiners_are_told_when(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    soon = datetime.now(UTC) + timedelta(days=1)
    _schedule(host, "Design review", soon, zone="UTC", repeats="none", invitees="ravi@example.org")
    _schedule(
        host,
        "Weekly sync",
        soon + timedelta(days=1),
        zone="Europe/Berlin",
        repeats="weekly",
        invitees="ravi@example.org, mona@example.org",
    )
    rows = host.locator("ul.rooms li")
    assert rows.count() == 2
    assert "Design review" in rows.nth(0).inner_text() and "Weekly sync" in rows.nth(1).inner_text()
    assert "FREQ=WEEKLY" in rows.nth(1).inner_text()
    # Each shows the wall-clock time typed, in its own zone (not converted to the server's UTC).
    assert f"{soon:%H:%M} (UTC)" in rows.nth(0).inner_text()
    assert f"{soon + timedelta(days=1):%H:%M} (Europe/Berlin)" in rows.nth(1).inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    host.screenshot(path=str(SCREENSHOTS / "my-meetings.png"))

    # The real worker sends the invitations (console backend: printed in its log), .ics attached.
    wait_until(
        lambda: "Subject: Invitation: Weekly sync" in stack.log_tail("worker", 200_000),
        timeout=60,
        message="the worker never mailed the invitation",
    )
    log = stack.log_tail("worker", 200_000)
    assert "To: mona@example.org" in log and 'Content-Type: text/calendar; charset="utf-8"; method="REQUEST"' in log

    join_url = rows.nth(0).get_by_role("link", name="Design review").get_attribute("href")
    invitee = new_page(browser, contexts, stack)
    log_in(invitee, "ravi", users["ravi"])
    invitee.goto(join_url)
    assert "not open yet" in invitee.locator("main").inner_text()
    assert invitee.get_by_role("button", name="Join now").count() == 0
