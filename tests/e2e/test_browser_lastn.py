"""Last-N in the browser: with last_n=1 one remote camera is decoded, the other shows its avatar; pinning switches."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import create_room, join_call, log_in, media_flowing, new_page, participant_id, wait_media, wait_until

pytestmark = pytest.mark.e2e

SET_LAST_N_JS = """
async ([roomId, lastN]) => {
  const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] || "";
  const r = await fetch(`/api/v1/rooms/${roomId}`, {
    method: "PATCH", headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
    body: JSON.stringify({last_n: lastN}), credentials: "same-origin",
  });
  return [r.status, await r.json()];
}
"""


def _join_muted(page: Any, room_id: str, name: str = "") -> None:
    """Join with the microphone off: nobody speaks, so the speaker order stays the join order."""
    if f"/join/{room_id}" not in page.url:
        page.goto(f"/join/{room_id}")
    page.locator("#pre-mic").click()
    join_call(page, room_id, name=name)


def _forwarded(page: Any) -> dict[str, str]:
    return dict(
        page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('#grid .tile[data-forwarded]')]
                 .map((t) => [t.dataset.participant, t.dataset.forwarded]))"""
        )
    )


def test_last_n_one_shows_one_video_and_an_avatar_and_pinning_switches(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Town hall")
    status, body = host.evaluate(SET_LAST_N_JS, [room_id, 1])
    assert (status, body["last_n"]) == (200, 1), body
    _join_muted(host, room_id)
    guests = [new_page(browser, contexts, stack) for _ in range(2)]
    for i, guest in enumerate(guests):
        _join_muted(guest, room_id, name=f"Guest {i + 1}")
    ids = [participant_id(g) for g in guests]

    wait_until(
        lambda: sorted(_forwarded(host).values()) == ["false", "true"] and set(_forwarded(host)) == set(ids),
        timeout=30,
        message=f"host never showed one forwarded and one paused tile: {_forwarded(host)}",
    )
    shown = next(p for p, f in _forwarded(host).items() if f == "true")
    hidden = next(p for p in ids if p != shown)
    wait_media(host, shown, audio=False, timeout=20)
    hidden_tile = host.locator(f'#grid .tile[data-participant="{hidden}"]')
    assert "video-off" in (hidden_tile.get_attribute("class") or "")
    assert hidden_tile.locator(".avatar").is_visible()
    assert "not rising" in media_flowing(host, hidden, audio=False) or "no camera" in media_flowing(
        host, hidden, audio=False
    )
    revision = host.evaluate("() => window.conferenceCall.subRevision")

    hidden_tile.locator(".pin").click()  # pin the hidden one: with N=1 it takes the only place
    wait_until(
        lambda: _forwarded(host).get(hidden) == "true" and _forwarded(host).get(shown) == "false",
        timeout=20,
        message=f"pinning did not switch the video: {_forwarded(host)}",
    )
    wait_media(host, hidden, audio=False, timeout=20)
    assert host.locator(f'#grid .tile[data-participant="{shown}"] .avatar').is_visible()
    assert host.locator(f'#grid .tile[data-participant="{hidden}"]').get_attribute("class").count("pinned") == 1
    assert host.evaluate("() => window.conferenceCall.subRevision") == revision  # switched without renegotiation
    # Last-N is per subscriber: nobody pinned anything on the guests' side, the host (first in the room) is shown.
    host_id = participant_id(host)
    for guest in guests:
        wait_until(
            lambda guest=guest: _forwarded(guest).get(host_id) == "true", timeout=10, message=str(_forwarded(guest))
        )


def test_large_room_remaps_one_video_mline_when_pinning(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Four people, last_n=1, more videos than the media server's m-line bound (2 in these tests): the host's
    subscribe connection has one video m-line; pinning someone re-maps it to them (decoded), no renegotiation."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Big town hall")
    status, body = host.evaluate(SET_LAST_N_JS, [room_id, 1])
    assert status == 200, body
    _join_muted(host, room_id)
    guests = [new_page(browser, contexts, stack) for _ in range(3)]
    for i, guest in enumerate(guests):
        _join_muted(guest, room_id, name=f"Guest {i + 1}")
    ids = [participant_id(g) for g in guests]

    def video_mids() -> list[str]:
        return list(
            host.evaluate(
                "() => [...window.conferenceCall.trackInfo.entries()].filter(([m, t]) => t.kind === 'video')"
                ".map(([m, t]) => m)"
            )
        )

    # Until the third guest publishes, two videos fit the bound (paused, not pooled); then a re-offer leaves
    # one video m-line for the three other cameras.
    wait_until(
        lambda: (
            set(_forwarded(host)) == set(ids)
            and list(_forwarded(host).values()).count("true") == 1
            and len(video_mids()) == 1
        ),
        timeout=30,
        message=f"host never showed one forwarded tile of three on one m-line: {_forwarded(host)} {video_mids()}",
    )
    shown = next(p for p, f in _forwarded(host).items() if f == "true")
    wait_media(host, shown, audio=False, timeout=20)
    target = next(p for p in ids if p != shown)
    revision = host.evaluate("() => window.conferenceCall.subRevision")
    host.locator(f'#grid .tile[data-participant="{target}"] .pin').click()
    wait_until(
        lambda: _forwarded(host).get(target) == "true" and _forwarded(host).get(shown) == "false",
        timeout=20,
        message=f"pinning did not re-map the video m-line: {_forwarded(host)}",
    )
    wait_media(host, target, audio=False, timeout=20)  # decoded on the re-mapped m-line
    assert host.locator(f'#grid .tile[data-participant="{shown}"] .avatar').is_visible()
    assert len(video_mids()) == 1
    assert host.evaluate("() => window.conferenceCall.subRevision") == revision


POOLED_AUDIO_JS = """
async () => {
  const call = window.conferenceCall;
  const pc = call.pcs.subscribe;
  const pooled = [...document.querySelectorAll("audio.pooled-audio")].map((a) => a.dataset.mid);
  let packets = 0;
  for (const s of (pc ? (await pc.getStats()).values() : [])) {
    if (s.type === "inbound-rtp" && s.kind === "audio" && pooled.includes(String(s.mid))) packets += s.packetsReceived || 0;
  }
  const tileAudio = [...document.querySelectorAll("#grid .tile video")]
    .some((v) => v.srcObject && v.srcObject.getAudioTracks().length > 0);
  return {pooled: call.audioPooled, mids: pooled, packets, tileAudio};
}
"""


def test_pooled_audio_lines_play_from_fixed_audio_elements(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Four people talking (Chromium's fake microphone), audio bound 2 in these tests: the host's subscribe
    connection has two pooled microphone m-lines, played from two hidden <audio> elements (not from tiles),
    and audio arrives on them."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Choir")
    _join_muted(host, room_id)
    guests = [new_page(browser, contexts, stack) for _ in range(3)]
    for i, guest in enumerate(guests):
        guest.goto(f"/join/{room_id}")
        join_call(guest, room_id, name=f"Singer {i + 1}")
    state: dict[str, Any] = {}

    def pooled() -> bool:
        state.update(host.evaluate(POOLED_AUDIO_JS))
        return bool(state["pooled"]) and len(state["mids"]) == 2 and not state["tileAudio"]

    wait_until(pooled, timeout=30, message=f"host never played two pooled audio lines: {state}")
    before = state["packets"]
    wait_until(
        lambda: pooled() and state["packets"] > before + 20,
        timeout=20,
        message=f"no audio arriving on the pooled lines: {state}",
    )
