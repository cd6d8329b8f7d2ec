"""Breakout rooms in real Chromium: a 4-person meeting splits into two pairs and comes back together.

Media is proven with getStats() on the receiving page (framesDecoded rising on the partner's video, audio
samples rising), and the other pair's tracks are proven absent: the subscribe connection carries no stream
of theirs. The host closes the rooms with a 10 s countdown (the "Countdown when closing" choice; 60 s by default); the Celery worker of the
stack brings everyone back when it ends.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e_helpers import create_room, inbound, join_call, log_in, new_page, participant_id, wait_media, wait_until
from test_call import SCREENSHOTS, _guest, _host_and_room, _member

pytestmark = pytest.mark.e2e


def _open_panel(page: Any) -> None:
    if page.locator("#breakouts-panel").is_hidden():
        page.locator("#btn-breakouts").click()
    page.wait_for_selector("#breakouts-panel:not([hidden])")


def _join_breakout(page: Any, name: str) -> str:
    """One click on the room's Join button; returns the page's participant ID inside the breakout."""
    _open_panel(page)
    before = participant_id(page)
    page.get_by_role("button", name=f"Join {name}").click()
    page.wait_for_function(
        "(before) => window.conferenceCall.breakout && window.conferenceCall.me.participantId !== before", arg=before
    )
    page.wait_for_selector("#breakout-banner:not([hidden])")
    return participant_id(page)


def _audio_from(page: Any, window: float = 1.0) -> set[str]:
    """Participants whose microphone samples rise on ``page`` over ``window`` seconds."""
    before = {s["participant"]: s["totalSamplesReceived"] for s in inbound(page) if s["source"] == "microphone"}
    time.sleep(window)
    after = {s["participant"]: s["totalSamplesReceived"] for s in inbound(page) if s["source"] == "microphone"}
    return {p for p, n in after.items() if n > before.get(p, n)}


def _streams_from(page: Any) -> set[str]:
    return {s["participant"] for s in inbound(page)}


@pytest.mark.timeout(900)  # four browsers on a busy 2-core machine, and the rooms' real 10 s countdown
def test_four_people_split_into_two_pairs_that_see_and_hear_only_each_other_then_all_return(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host, room_id = _host_and_room(browser, contexts, stack, users, "Workshop")
    ravi = _member(browser, contexts, stack, users, "ravi", room_id)
    gita = _guest(browser, contexts, stack, room_id, "Gita")
    sam = _guest(browser, contexts, stack, room_id, "Sam")
    pages = {"hana": host, "ravi": ravi, "gita": gita, "sam": sam}
    main_ids = {name: participant_id(p) for name, p in pages.items()}
    for page in pages.values():
        page.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 4")

    # The host opens two rooms and picks who goes where (Gita and Sam in Room 2, Ravi in Room 1).
    _open_panel(host)
    host.get_by_label("Rooms", exact=True).fill("2")
    host.get_by_label("Assign automatically").uncheck()
    host.get_by_role("button", name="Open breakout rooms").click()
    host.wait_for_selector("#breakouts-list .breakout-room >> nth=1")
    for name, room in (("ravi", "Room 1"), ("gita", "Room 2"), ("sam", "Room 2")):
        pick = host.locator(f"#breakouts-unassigned [data-participant='{main_ids[name]}'] select")
        pick.select_option(label=room)
        host.wait_for_selector(f".breakout-room [data-participant='{main_ids[name]}']")
    # A participant sees only their own room's Join button.
    _open_panel(ravi)
    ravi.get_by_role("button", name="Join Room 1").wait_for()
    assert ravi.get_by_role("button", name="Join Room 2").count() == 0
    _open_panel(host)
    host.screenshot(path=str(SCREENSHOTS / "breakout-panel.png"))

    inner = {
        "hana": _join_breakout(host, "Room 1"),  # the host visits Room 1
        "ravi": _join_breakout(ravi, "Room 1"),
        "gita": _join_breakout(gita, "Room 2"),
        "sam": _join_breakout(sam, "Room 2"),
    }
    pairs = {"hana": "ravi", "ravi": "hana", "gita": "sam", "sam": "gita"}
    problems = []
    for me, partner in pairs.items():
        try:
            wait_media(pages[me], inner[partner], timeout=40)
        except AssertionError as exc:
            problems.append(f"{me} receiving {partner}: {str(exc).splitlines()[0]}")
    assert not problems, "\n".join(problems)
    for me, partner in pairs.items():
        page = pages[me]
        assert _streams_from(page) == {inner[partner]}, f"{me} receives {_streams_from(page)}"
        page.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 2")
        others = {inner[n] for n in pages if n not in (me, partner)} | set(main_ids.values())
        assert not (set(page.evaluate("() => [...window.conferenceCall.participants.keys()]")) & others)

    # Chat inside Room 2 stays in Room 2.
    gita.locator("#btn-chat").click()
    gita.get_by_label("Message").fill("Room 2 notes")
    gita.get_by_role("button", name="Send").click()
    sam.wait_for_function("() => document.querySelector('#unread').textContent === '1'")
    # The host's message reaches every room; then the rooms close with the countdown.
    _open_panel(host)
    host.get_by_label("Announcement to all rooms").fill("Five minutes left")
    host.get_by_role("button", name="Announce").click()
    for page in (ravi, gita, sam):
        page.wait_for_function("() => document.querySelector('#toast').textContent.includes('Five minutes left')")
    host.get_by_label("Countdown when closing").select_option("10")  # the default 60 s, shortened for CI
    host.get_by_role("button", name="Close all rooms").click()
    for page in pages.values():
        page.wait_for_function(
            "() => document.querySelector('#breakout-countdown').textContent.includes('Returning to the main room')"
        )
    for page in pages.values():
        page.wait_for_function("() => window.conferenceCall.breakout === null", timeout=120_000)
        page.wait_for_selector("#app[data-state=call]")
    for name, page in pages.items():
        assert participant_id(page) == main_ids[name], "back with the meeting's seat"
    # Everyone sees the other three again. Microphones: the media server forwards the room's 3 loudest at a
    # time (media_server/lastn.py AUDIO_LIMIT), so with four fake beeps each page hears at least two others.
    problems = []
    for me, page in pages.items():
        for other, pid in main_ids.items():
            if other != me:
                try:
                    wait_media(page, pid, audio=False, timeout=40)
                except AssertionError as exc:
                    problems.append(f"{me} receiving {other}: {exc}")
        try:
            wait_until(lambda page=page: len(_audio_from(page)) >= 2, timeout=40, interval=0)
        except AssertionError:
            problems.append(f"{me} hears only {_audio_from(page)}")
    assert not problems, "\n".join(problems)
    for page in pages.values():
        page.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 4")


def test_a_password_meeting_needs_no_password_to_move_and_reconnect_goes_back_in(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Moving into a breakout of a meeting with a password and a waiting room asks for neither; a dropped socket rejoins the
    meeting and puts the page back into its breakout."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Guarded workshop", waiting_room=True)
    host.goto(f"/rooms/{room_id}/settings")
    host.get_by_label("New room password").fill("pw-breakout-9")
    host.get_by_role("button", name="Save").click()
    host.wait_for_load_state()
    join_call(host, room_id)
    guest = new_page(browser, contexts, stack)
    guest.goto(f"/join/{room_id}")
    guest.get_by_label("Your name").fill("Pat")
    guest.locator("#room-password").fill("pw-breakout-9")
    guest.get_by_role("button", name="Join now").click()
    guest.wait_for_selector("#app[data-state=waiting]")
    host.locator("#btn-people").click()
    host.wait_for_selector("#lobby-list li")
    host.get_by_role("button", name="Admit Pat").click()
    guest.wait_for_selector("#app[data-state=call]")
    _open_panel(host)
    host.get_by_role("button", name="Open breakout rooms").click()  # 2 rooms, assigned automatically
    guest_inner = _join_breakout(guest, "Room 1")
    host_inner = _join_breakout(host, "Room 1")
    wait_media(guest, host_inner, timeout=40)
    # The network blips: the socket closes; it rejoins the meeting and goes back into Room 1 by itself.
    guest.evaluate("() => { window.conferenceCall.breakout.before = true; window.conferenceCall.ws.close(4000); }")
    wait_until(
        lambda: guest.evaluate(
            "() => { const c = window.conferenceCall; return !!(c.breakout && !c.breakout.before && c.wsOpen); }"
        ),
        timeout=30,
        message="the page did not go back into its breakout after a reconnect",
    )
    back_inner = participant_id(guest)
    assert back_inner == guest_inner, "the same breakout record, no new name or password asked"
    wait_media(host, back_inner, timeout=40)
    wait_media(guest, host_inner, timeout=40)
