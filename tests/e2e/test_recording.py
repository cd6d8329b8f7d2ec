"""Server-side recording (issue 6) in the web UI.

End to end (marker e2e): a host and a participant in a call (fake cameras), the
host presses Record, both pages show the "● REC" indicator, a participant who
joins during the recording sees it too (room snapshot), the host stops after
about 6 s, the Celery worker of the e2e stack composes the MP4 (processing →
ready), and the recordings page gives a signed download link whose MP4 is
decoded here with PyAV (duration, video frame size and content, audio).

Page tests (Django test client): no Record button in end-to-end encrypted
rooms, and who sees what on the recordings page.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import av
import pytest
from e2e_helpers import create_room, join_call, log_in, new_page, participant_id, wait_media

RECORD_SECONDS = 6.0
ANNOUNCEMENT = "This meeting is being recorded"


def _badge_shown(page: Any) -> None:
    page.wait_for_selector("#rec-badge", state="visible", timeout=15_000)
    assert page.locator("#rec-badge").inner_text().strip().startswith("● REC")
    page.wait_for_function(
        "text => document.getElementById('rec-live').textContent === text", arg=ANNOUNCEMENT, timeout=5_000
    )
    assert page.locator("#rec-live").get_attribute("aria-live") == "polite"


def _wait_sending(page: Any, timeout: float = 20.0) -> None:
    """Wait until the page's camera connection sends video frames and audio packets (rising).

    The camera is simulcast: one outbound-rtp per layer, summed. (Taking the last one read the top layer,
    which a publisher short of CPU or uplink stops sending: 0 frames encoded on a loaded machine while the
    lower layers flowed.)"""
    js = """async () => {
      const pc = window.conferenceCall.pcs.camera;
      if (!pc) return {};
      const out = {};
      for (const s of (await pc.getStats()).values())
        if (s.type === "outbound-rtp")
          out[s.kind] = (out[s.kind] || 0) + (s.kind === "video" ? s.framesEncoded || 0 : s.packetsSent || 0);
      return out;
    }"""
    deadline = time.monotonic() + timeout
    before = page.evaluate(js)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        after = page.evaluate(js)
        if all(after.get(kind, 0) > before.get(kind, 0) for kind in ("video", "audio")):
            return
        before = after
    raise AssertionError(f"the page does not send its camera and microphone: {before}")


def _wait_ready(page: Any, stack: Any, room_id: str, timeout: float = 180.0) -> Any:
    """Open the recordings page until the recording is ready; returns its list item."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        page.goto(f"/rooms/{room_id}/recordings")
        item = page.locator("li.recording").first
        status = item.get_attribute("data-status") if item.count() else None
        seen.append(status)
        if status == "ready":
            return item
        assert status != "failed", f"recording failed: {item.inner_text()}\nworker log:\n{stack.log_tail('worker')}"
        time.sleep(1.0)
    raise AssertionError(f"not ready in {timeout} s (statuses {seen[-5:]})\nworker log:\n{stack.log_tail('worker')}")


def _video_facts(path: Path) -> dict[str, Any]:
    """Frame count, sizes and the largest luma spread of the MP4's video; audio frames and peak."""
    facts: dict[str, Any] = {"frames": 0, "sizes": set(), "spread": 0, "audio_frames": 0, "audio_peak": 0.0}
    with av.open(str(path)) as container:
        assert container.streams.video, "no video stream"
        assert container.streams.audio, "no audio stream"
        facts["duration"] = container.duration / 1_000_000 if container.duration else 0.0
        for frame in container.decode(container.streams.video[0]):
            facts["frames"] += 1
            facts["sizes"].add((frame.width, frame.height))
            if facts["frames"] % 25 == 0:  # one frame a second: does it show a picture, not a flat tile?
                gray = bytes(frame.reformat(format="gray").planes[0])[::97]
                facts["spread"] = max(facts["spread"], max(gray) - min(gray))
    with av.open(str(path)) as container:
        for sound in container.decode(container.streams.audio[0]):
            facts["audio_frames"] += 1
            if sound.format.name == "fltp":  # AAC decodes to planar float
                samples = memoryview(bytes(sound.planes[0])).cast("f")[: sound.samples]
                facts["audio_peak"] = max(facts["audio_peak"], max((abs(v) for v in samples), default=0.0))
    return facts


@pytest.mark.e2e
def test_host_records_everyone_sees_the_indicator_and_gets_a_playable_mp4(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], tmp_path: Path
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Recorded review")
    join_call(host, room_id)
    member = new_page(browser, contexts, stack)
    log_in(member, "ravi", users["ravi"])
    join_call(member, room_id)
    host_id, member_id = participant_id(host), participant_id(member)
    wait_media(host, member_id)
    # The host's camera reaches the media server (what is recorded); whether the member decodes it is
    # test_call.py's business (forwarding), not this test's.
    _wait_sending(host)
    assert member_id != host_id

    # Only hosts and moderators get the button; nobody sees the indicator yet.
    record = host.get_by_role("button", name="Record")
    assert record.is_visible()
    assert member.locator("#btn-record").is_hidden()
    assert host.locator("#rec-badge").is_hidden() and member.locator("#rec-badge").is_hidden()
    assert host.locator("#recordings-link").count() == 1

    late = new_page(browser, contexts, stack)  # signed in and on the pre-join screen before the recording
    log_in(late, "mona", users["mona"])
    late.goto(f"/join/{room_id}")
    late.get_by_role("button", name="Join now").wait_for()

    clicked = time.monotonic()
    record.click()
    host.wait_for_selector("#rec-badge", state="visible", timeout=15_000)
    started = time.monotonic()
    _badge_shown(host)
    _badge_shown(member)
    stop = host.get_by_role("button", name="Stop recording")
    assert stop.get_attribute("aria-pressed") == "true"

    # Someone joining while it records learns it from the room snapshot.
    join_call(late, room_id)
    _badge_shown(late)
    assert late.locator("#btn-record").is_hidden()

    time.sleep(max(0.0, RECORD_SECONDS - (time.monotonic() - started)))
    stopping = time.monotonic()
    stop.click()
    host.wait_for_selector("#rec-badge", state="hidden", timeout=15_000)
    stopped = time.monotonic()
    # The media server started between the click and the badge, and stopped between the click and the
    # badge going away: the recording lasted between these two, the midpoint is our estimate.
    shortest, longest = stopping - started, stopped - clicked
    recorded = (shortest + longest) / 2
    for page in (member, late):
        page.wait_for_selector("#rec-badge", state="hidden", timeout=15_000)
    host.wait_for_function("() => document.getElementById('rec-live').textContent === 'Recording stopped'")
    assert host.get_by_role("button", name="Record").is_visible()

    # The recordings page (another tab of the host): processing → ready, then a signed link to the MP4.
    page = host.context.new_page()
    page.set_default_timeout(20_000)
    item = _wait_ready(page, stack, room_id)
    assert item.locator(".rec-status").inner_text() == "Ready"
    shown = re.fullmatch(r"(\d+):(\d\d)", item.locator(".rec-duration").inner_text())
    assert shown, item.inner_text()
    assert item.locator(".rec-size").inner_text()
    thumb = item.locator("img.recording-thumb")
    thumb.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    href = item.locator("a.rec-download").get_attribute("href")
    assert href and href.startswith("/recordings/files/") and "/media/" not in href

    response = page.request.get(href)
    assert response.status == 200, response.text()[:500]
    assert response.headers["content-type"] == "video/mp4"
    body = response.body()
    assert body[4:8] == b"ftyp"
    mp4 = tmp_path / "recording.mp4"
    mp4.write_bytes(body)

    facts = _video_facts(mp4)
    print(f"recorded {shortest:.2f}..{longest:.2f} s; MP4 {facts}")
    assert abs(facts["duration"] - recorded) <= 0.1 * recorded, (facts["duration"], shortest, longest)
    assert shortest - 0.3 <= facts["duration"] <= longest + 0.3, (facts["duration"], shortest, longest)
    assert abs(int(shown[1]) * 60 + int(shown[2]) - facts["duration"]) <= 1, (shown[0], facts["duration"])
    assert facts["frames"] >= 0.9 * recorded * 25, facts
    assert facts["sizes"] == {(1280, 720)}, facts
    assert facts["spread"] > 40, f"the video looks flat (no camera picture): {facts}"
    assert facts["audio_frames"] > 0, facts
    assert facts["audio_peak"] > 0.01, f"the audio is silent: {facts}"

    # A signed link is not a key to anything else: a tampered token is refused.
    assert page.request.get(href[:-3] + "xyz").status in (403, 404)


# --- page tests (Django test client) -------------------------------------------


@pytest.mark.django_db
def test_no_record_button_in_an_e2ee_room(client: Any, user_factory: Any) -> None:
    from rooms import services

    host = user_factory("host")
    client.force_login(host)
    plain = services.room_create(host=host, name="Plain")
    html = client.get(f"/join/{plain.public_id}").content.decode()
    assert 'id="btn-record"' in html and 'id="rec-badge"' in html and 'id="recordings-link"' in html
    secret = services.room_create(host=host, name="Secret", e2ee=True)
    html = client.get(f"/join/{secret.public_id}").content.decode()
    assert 'id="btn-record"' not in html and 'id="recordings-link"' not in html
    assert 'id="rec-badge"' in html  # the indicator is harmless (never shown: the server refuses to record)


def _ready_recording(room: Any, host: Any) -> Any:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from recordings.models import Recording

    video = default_storage.save(f"recordings/{room.public_id}/x.mp4", ContentFile(b"\0\0\0\x18ftypisom-fake"))
    thumb = default_storage.save(f"recordings/{room.public_id}/x.jpg", ContentFile(b"\xff\xd8\xff-fake"))
    return Recording.objects.create(
        room=room,
        started_by=host,
        status=Recording.Status.READY,
        file=video,
        thumbnail=thumb,
        duration_seconds=75.4,
        size_bytes=123456,
    )


@pytest.mark.django_db
def test_recordings_page_shows_signed_links_to_host_and_shared_users_only(
    client: Any, user_factory: Any, settings: Any, tmp_path: Path
) -> None:
    from recordings.models import Recording
    from rooms import services

    settings.MEDIA_ROOT = str(tmp_path)
    host, friend, stranger = user_factory("host"), user_factory("friend"), user_factory("stranger")
    room = services.room_create(host=host, name="Standup")
    ready = _ready_recording(room, host)
    Recording.objects.create(room=room, started_by=host, status=Recording.Status.FAILED, failure_reason="media_lost")

    client.force_login(host)
    html = client.get(f"/rooms/{room.public_id}/recordings").content.decode()
    assert "Ready" in html and "1:15" in html and "120.6" in html  # status, duration, size (KB)
    assert "Failed" in html and "media_lost" in html
    assert "/media/" not in html
    link = re.search(r'href="(/recordings/files/[^"]+)"', html)
    assert link and 'class="recording-thumb" src="/recordings/files/' in html
    download = client.get(link.group(1).replace("&amp;", "&"))
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"\0\0\0\x18ftyp")
    assert 'name="username"' in html  # the share form

    # Nobody else sees the page until a recording is shared with them.
    client.force_login(stranger)
    assert client.get(f"/rooms/{room.public_id}/recordings").status_code == 403
    client.force_login(host)
    response = client.post(
        f"/rooms/{room.public_id}/recordings", {"recording": ready.public_id, "username": "nobody-here"}
    )
    assert response.status_code == 400 and "No user has this username." in response.content.decode()
    response = client.post(f"/rooms/{room.public_id}/recordings", {"recording": ready.public_id, "username": "friend"})
    assert response.status_code == 200 and "Shared with friend." in response.content.decode()

    client.force_login(friend)
    html = client.get(f"/rooms/{room.public_id}/recordings").content.decode()
    assert ready.public_id in html and "media_lost" not in html  # only what was shared
    assert 'name="username"' not in html  # no share form for them
    assert (
        client.post(f"/rooms/{room.public_id}/recordings", {"recording": ready.public_id, "username": "x"}).status_code
        == 403
    )
