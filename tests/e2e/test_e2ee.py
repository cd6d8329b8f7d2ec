"""End-to-end encrypted rooms in real Chromium: media flows, the server cannot read it, leavers lose access.

What is proven (docs/security.md lists it too):

* two participants of an e2ee room decode each other's video (rising
  framesDecoded with a real size) although every frame crosses the media
  server encrypted — decryption in the browser works;
* a browser without Encoded Transform is told it cannot join;
* a recording tap on the media server (started through its control API,
  since Django refuses to record e2ee rooms) gets frames libvpx cannot
  decode into the picture, while the same frames decrypted with the
  sender's key decode cleanly;
* after a participant leaves, every remaining sender's key id changes and
  none of the leaver's keys decrypts a frame sent after the rotation.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import string
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import join_call, log_in, new_page, participant_id, wait_media, wait_until

pytestmark = pytest.mark.e2e

NO_ENCODED_TRANSFORM = """
delete window.RTCRtpScriptTransform;
delete RTCRtpSender.prototype.createEncodedStreams;
delete RTCRtpReceiver.prototype.createEncodedStreams;
"""

# Decrypt base64 frames in the page with e2ee-crypto.js: one result per frame and key, "ok:<base64>" or "fail".
DECRYPT_JS = """
async ({frames, keys}) => {
  const c = await import("/static/js/e2ee-crypto.js");
  const out = [];
  for (const raw of keys) {
    const key = await c.importMediaKey(c.fromBase64(raw));
    const row = [];
    for (const f of frames) {
      try { row.push("ok:" + c.toBase64(await c.decryptFrame(key, c.fromBase64(f)))); }
      catch { row.push("fail"); }
    }
    out.push(row);
  }
  return out;
}
"""

SEND_KEY_JS = "() => { const e = window.conferenceCall.e2ee; return {id: e.sendKey.id, active: e.activeKeyId, raw: btoa(String.fromCharCode(...e.sendKey.raw))}; }"
RECEIVED_KEYS_JS = "() => [...window.conferenceCall.e2ee.received].map(([id, v]) => ({id, participant: v.participant, raw: btoa(String.fromCharCode(...v.raw))}))"


def _e2ee_room(page: Any, name: str) -> str:
    page.goto("/")
    page.get_by_label("Meeting name").fill(name)
    page.get_by_label("End-to-end encrypted").check()
    page.get_by_role("button", name="New meeting").click()
    page.wait_for_url("**/join/*")
    return str(page.url.rstrip("/").rsplit("/", 1)[-1])


def _member(browser: Any, contexts: list[Any], stack: Any, users: dict[str, str], username: str, room_id: str) -> Any:
    page = new_page(browser, contexts, stack)
    log_in(page, username, users[username])
    join_call(page, room_id)
    return page


def _media_control(
    stack: Any, room_id: str, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        stack.media_control_url(room_id) + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer dev-media-secret", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def _spool_dir(stack: Any) -> Path:
    from media_server.config import DEFAULT_SPOOL_DIR

    return Path(stack.env.get("RECORDINGS_SPOOL_DIR") or DEFAULT_SPOOL_DIR)


def _record(stack: Any, room_id: str, seconds: float) -> tuple[Path, dict[str, Any]]:
    """Record the room on the media server directly for ``seconds``; the spool directory and its manifest."""
    recording = "rec" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    status, _ = _media_control(
        stack, room_id, "POST", f"/v1/rooms/{room_id}/recordings", {"protocol": 1, "recording": recording}
    )
    assert status == 201
    time.sleep(seconds)
    status, _ = _media_control(stack, room_id, "DELETE", f"/v1/rooms/{room_id}/recordings/{recording}")
    assert status == 204
    directory = _spool_dir(stack) / recording
    return directory, json.loads((directory / "manifest.json").read_text())


def _vp8_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def _decode(packets: list[bytes]) -> tuple[list[tuple[int, int, bytes]], int]:
    """Decode VP8 frames with libvpx: (width, height, luma plane) per decoded frame, and the packets it refused."""
    import av

    codec = av.CodecContext.create("vp8", "r")
    planes, errors = [], 0
    for data in packets:
        try:
            for frame in codec.decode(av.Packet(data)):
                planes.append((frame.width, frame.height, bytes(frame.planes[0])))
        except av.error.FFmpegError:
            errors += 1
    return planes, errors


def _differs(a: tuple[int, int, bytes], b: tuple[int, int, bytes]) -> bool:
    """Two decoded pictures are not the same image (a different size, or luma far apart on average)."""
    if a[:2] != b[:2] or len(a[2]) != len(b[2]):
        return True
    sample = range(0, len(a[2]), 97)
    return sum(abs(a[2][i] - b[2][i]) for i in sample) / len(sample) > 10


def test_two_participants_in_an_e2ee_room_see_each_other_and_the_badge(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Video and audio decode on both sides although every frame is encrypted end to end; the UI says so."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = _e2ee_room(host, "Secret sync")
    assert host.locator(".prejoin .pill.e2ee").is_visible()
    join_call(host, room_id)
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    pages = {participant_id(p): p for p in (host, member)}
    for me, page in pages.items():
        for other in pages:
            if other != me:
                wait_media(page, other, timeout=30)
    assert not host.locator("#btn-record").is_visible()  # the host has no Record button: the server cannot record
    for page in pages.values():
        assert page.locator("#e2ee-badge").is_visible()
        assert page.locator("#e2ee-badge").inner_text() == "End-to-end encrypted"
        stats = page.evaluate("() => window.conferenceCall.e2ee.stats")
        assert stats["encrypted"] > 0 and stats["decrypted"] > 0, stats
        # Only VP8 is sent in e2ee rooms (its clear header is what the SFU relies on).
        codecs = page.evaluate(
            """async () => { const r = await window.conferenceCall.pcs.camera.getStats(); const out = [];
                 for (const s of r.values()) if (s.type === 'codec') out.push(s.mimeType); return out; }"""
        )
        assert "video/VP8" in codecs and not any("H264" in c for c in codecs), codecs


def test_a_browser_without_encoded_transform_is_told_it_cannot_join(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = _e2ee_room(host, "Secret, old browsers")
    old = new_page(browser, contexts, stack)
    old.add_init_script(NO_ENCODED_TRANSFORM)
    old.goto(f"/join/{room_id}")
    error = old.locator("#join-error")
    error.wait_for()
    wait_until(lambda: "cannot join" in error.inner_text(), message="no 'cannot join' message")
    assert "end-to-end encrypted" in error.inner_text()
    assert old.locator("#join-button").is_disabled()
    assert old.locator("#app").get_attribute("data-e2ee") == "unsupported"
    assert old.locator("#app").get_attribute("data-state") == "prejoin"


def test_server_tap_cannot_decode_and_a_leaver_cannot_decrypt_after_rotation(
    browser: Any, contexts: list[Any], stack: Any, users: dict[str, str]
) -> None:
    """Three join, one leaves: the others rotate; a recording of the room (a media-server tap) holds
    frames that libvpx cannot turn into the picture, that none of the leaver's keys decrypts, and that the
    sender's current key does decrypt into clean VP8."""
    host = new_page(browser, contexts, stack)
    log_in(host, "hana", users["hana"])
    room_id = _e2ee_room(host, "Secret, rotation")
    join_call(host, room_id)
    member = _member(browser, contexts, stack, users, "ravi", room_id)
    leaver = _member(browser, contexts, stack, users, "mona", room_id)
    host_id, member_id, leaver_id = (participant_id(p) for p in (host, member, leaver))
    wait_media(leaver, host_id, timeout=30)
    wait_media(leaver, member_id, timeout=30)
    before = {pid: page.evaluate(SEND_KEY_JS) for pid, page in ((host_id, host), (member_id, member))}
    leaver_keys = leaver.evaluate(RECEIVED_KEYS_JS)
    assert {k["id"] for k in leaver_keys} >= {before[host_id]["id"], before[member_id]["id"]}

    leaver.locator("#btn-leave").click()
    leaver.wait_for_selector("#app[data-state=ended]")
    for pid, page in ((host_id, host), (member_id, member)):
        wait_until(
            lambda page=page, pid=pid: page.evaluate(SEND_KEY_JS)["active"] not in (None, before[pid]["id"]),
            timeout=15,
            message=f"{pid} did not rotate its key after the leave",
        )
    after = {pid: page.evaluate(SEND_KEY_JS) for pid, page in ((host_id, host), (member_id, member))}
    assert all(after[pid]["active"] == after[pid]["id"] != before[pid]["id"] for pid in after)
    wait_media(member, host_id, timeout=30)  # the remaining two still hear and see each other
    wait_media(host, member_id, timeout=30)

    directory, manifest = _record(stack, room_id, seconds=5)
    try:
        track = next(t for t in manifest["tracks"] if t["participant"] == host_id and t["source"] == "camera")
        packets = _vp8_packets(directory / track["file"])[:40]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert len(packets) >= 10, f"only {len(packets)} frames recorded"
    frames = [base64.b64encode(p).decode() for p in packets]

    # The leaver's keys (every key it was ever given) decrypt none of them; the host's current key all of them.
    results = member.evaluate(DECRYPT_JS, {"frames": frames, "keys": [k["raw"] for k in leaver_keys]})
    assert all(r == "fail" for row in results for r in row)
    [current] = member.evaluate(DECRYPT_JS, {"frames": frames, "keys": [after[host_id]["raw"]]})
    assert all(r.startswith("ok:") for r in current), current.count("fail")
    clear = [base64.b64decode(r[3:]) for r in current]

    # What the server has is not the picture: libvpx refuses it or decodes garbage.
    plain, plain_errors = _decode(clear)
    assert plain_errors == 0 and len(plain) == len(clear)
    tapped, tapped_errors = _decode(packets)
    garbage = sum(1 for a, b in zip(tapped, plain, strict=False) if _differs(a, b))
    assert tapped_errors + garbage >= len(packets) * 0.9, (tapped_errors, garbage, len(packets))
