"""Calls that heal themselves (issue 16), in Chromium, with faults caused for real.

Its own stack on the session's database (so the session's accounts work): one daphne and one media
server registered in Redis under a private prefix, both started by this module so that a test can
``kill -9`` and restart them, and a second Chromium for that origin.

* The only media server is killed and restarted: the pages retry publish and subscribe with backoff on
  the same socket (no reload, nobody leaves) until video flows again.
* UDP to and from the browsers is dropped for 10 s (iptables in their namespace): the peer connections
  go disconnected and are rebuilt, with backoff, until media flows again; the socket never closes.
* The browsers' address and route change (a network change): the pages open a new socket (same
  participant, rejoin token) and new peer connections; nobody is told anyone left.
* daphne is killed while three people type chat, and restarted: every message typed is stored exactly
  once, and every page ends with the same log, ordered by ``seq``.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import (
    create_room,
    join_call,
    log_in,
    new_page,
    participant_id,
    video_back,
    wait_media,
    wait_until,
)
from topology import ServiceStack

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
OWN_MEDIA_NODES = ("heal-media",)  # conftest's own_stack starts it; a test kills and restarts it
# Generous bounds (a busy 2-core machine): the figures are printed, not asserted.
MEDIA_BACK_SECONDS = 45.0
CHAT_BACK_SECONDS = 60.0


# Installed before the page's scripts: ``window.__log`` gets [Date.now(), what] for each socket the page opens,
# each roster or media frame any of them receives, and each socket:/media: console line. Timed in the page:
# Playwright's sync API only delivers its own events while the test calls into it.
WATCH_JS = """(() => {
window.__log = [];
const note = (what) => window.__log.push([Date.now(), what]);
for (const level of ["info", "warn"]) {
  const original = console[level];
  console[level] = (...args) => {
    const text = args.map(String).join(" ");
    if (/^(socket|media):/.test(text)) note(text);
    return original.apply(console, args);
  };
}
const PageSocket = window.WebSocket;
window.WebSocket = class extends PageSocket {
  constructor(...args) {
    super(...args);
    note(`socket ${args[0]}`);
    this.addEventListener("open", () => note("socket open"));
    this.addEventListener("close", (event) => note(`socket close ${event.code}`));
    this.addEventListener("message", (event) => {
      let f;
      try { f = JSON.parse(event.data); } catch { return; }
      if (f.type === "room_snapshot") note("room_snapshot");
      if (f.type === "offer" && f.pc === "subscribe") note(`subscribe offer r${f.revision} ${f.ref ? "reply" : ""}`);
      if (["participant_joined", "participant_left", "media_reconnect", "error"].includes(f.type)) {
        note(`${f.type} ${f.participantId || f.participant?.participantId || f.reason || f.code || ""}`);
      }
    });
  }
};
// From window.__firstFrames() on: "first video frame" / "first audio packet" when the subscribe connection
// decodes a video frame / receives an audio packet beyond its baseline (sampled every 50 ms). A connection
// newer than the one at the call starts from 0; that one never counts, unless window.__frameBaseline()
// (a UDP outage's end) sets its baseline to its counts then.
window.__firstFrames = () => {
  const base = new Map([[window.conferenceCall.pcs.subscribe, {video: Infinity, audio: Infinity}]]);
  const seen = {video: false, audio: false};
  const counts = async (pc) => {
    const c = {video: 0, audio: 0};
    for (const s of (await pc.getStats()).values()) {
      if (s.type === "inbound-rtp" && s.kind === "video") c.video += s.framesDecoded || 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") c.audio += s.packetsReceived || 0;
    }
    return c;
  };
  window.__frameBaseline = async () => {
    const pc = window.conferenceCall.pcs.subscribe;
    if (pc) base.set(pc, await counts(pc));
  };
  const timer = setInterval(async () => {
    const pc = window.conferenceCall.pcs.subscribe;
    if (!pc) return;
    if (!base.has(pc)) base.set(pc, {video: 0, audio: 0});
    const now = await counts(pc);
    for (const kind of ["video", "audio"]) {
      if (!seen[kind] && now[kind] > base.get(pc)[kind]) {
        seen[kind] = true;
        note(kind === "video" ? "first video frame" : "first audio packet");
      }
    }
    if (seen.video && seen.audio) clearInterval(timer);
  }, 50);
};
// Each peer connection: created, ICE state and connection state (connected = ICE and DTLS done).
const PagePc = window.RTCPeerConnection;
let pcs = 0;
window.RTCPeerConnection = class extends PagePc {
  constructor(...args) {
    super(...args);
    const id = ++pcs;
    note(`pc${id} new`);
    this.addEventListener("iceconnectionstatechange", () => note(`pc${id} ice ${this.iceConnectionState}`));
    this.addEventListener("connectionstatechange", () => note(`pc${id} ${this.connectionState}`));
  }
};
})();
"""


def _watch(page: Any) -> Any:
    """Start ``window.__log`` (WATCH_JS) on the page's next navigation; returns the page."""
    page.add_init_script(WATCH_JS)
    return page


def _log(page: Any, since: float) -> list[tuple[float, str]]:
    """The page's log from ``since`` (time.monotonic()) on, in seconds after it."""
    now_ms, entries = page.evaluate("() => [Date.now(), window.__log]")
    since_ms = now_ms - (time.monotonic() - since) * 1000
    return [(round((t - since_ms) / 1000, 2), what[:70]) for t, what in entries if t >= since_ms - 1000]


def _timeline(pages: dict[str, Any], since: float) -> None:
    """Print what each page did from ``since`` on (for the record: where the recovery time goes)."""
    for name, page in pages.items():
        print(name, _log(page, since))


def _first_media(pages: dict[str, Any], since: float) -> dict[str, tuple[float | None, float | None]]:
    """Per page, seconds after ``since`` of the first video frame decoded and the first audio packet received
    after the event (window.__firstFrames in WATCH_JS; sampled in the page every 50 ms)."""
    found: dict[str, tuple[float | None, float | None]] = {}
    for name, page in pages.items():
        log = _log(page, since)
        video = next((t for t, what in log if what == "first video frame"), None)
        audio = next((t for t, what in log if what == "first audio packet"), None)
        found[name] = (video, audio)
    return found


def _join(
    browser: Any, contexts: list[Any], own_stack: ServiceStack, users: dict[str, str], who: str, room_id: str
) -> Any:
    page = _watch(new_page(browser, contexts, own_stack))
    log_in(page, who, users[who])
    join_call(page, room_id)
    page.evaluate("() => { window.__sameDocument = true; }")  # a reload would lose it
    return page


def _two_in_a_call(
    browser: Any, contexts: list[Any], own_stack: ServiceStack, users: dict[str, str], title: str
) -> tuple[Any, Any, str, str]:
    """hana creates a room and ravi joins it; returns once each decodes the other's audio and video:
    (host page, guest page, host's participantId, guest's)."""
    host = _watch(new_page(browser, contexts, own_stack))
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, title)
    join_call(host, room_id)
    host.evaluate("() => { window.__sameDocument = true; }")
    guest = _join(browser, contexts, own_stack, users, "ravi", room_id)
    host_id, guest_id = participant_id(host), participant_id(guest)
    wait_media(host, guest_id)
    wait_media(guest, host_id)
    return host, guest, host_id, guest_id


def test_the_call_comes_back_after_its_only_media_server_is_killed_and_restarted(
    own_browser: Any, own_stack: ServiceStack, contexts: list[Any], users: dict[str, str]
) -> None:
    """No reload, no leave/join: the pages retry with backoff until the restarted server takes the room."""
    host, guest, host_id, guest_id = _two_in_a_call(own_browser, contexts, own_stack, users, "Media restart")
    for page in (host, guest):  # record every status the pill shows from now on
        page.evaluate(
            """() => { window.__statuses = []; const node = document.getElementById("conn-status");
              new MutationObserver(() => window.__statuses.push(node.textContent))
                .observe(node, {childList: true, characterData: true, subtree: true}); }"""
        )

    own_stack.kill("heal-media")
    # Down long enough for the pages to notice (media_reconnect from the monitor, failed connections) and to
    # fail a few publish/subscribe attempts against a web tier without a media server.
    wait_until(
        lambda: all(
            page.evaluate("() => window.__statuses.some((s) => /retrying|reconnecting/i.test(s))")
            for page in (host, guest)
        ),
        timeout=30,
        message="the pages did not say media is being reconnected",
    )
    time.sleep(3)
    wait_until(lambda: own_stack.registered() == [], timeout=10, message="the killed node was not failed over")
    registered: list[float] = []

    def watch_registration() -> None:  # while start() waits for the health check
        deadline = time.monotonic() + 30
        while not registered and time.monotonic() < deadline:
            if own_stack.registered():
                registered.append(time.monotonic())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_registration)
    watcher.start()
    own_stack.start("heal-media")
    watcher.join()
    assert registered, "the restarted media server did not register"
    registered_at = registered[0]
    recovered = video_back(
        {"host": (host, guest_id), "guest": (guest, host_id)},
        since=registered_at,
        timeout=MEDIA_BACK_SECONDS,
        event="the restarted media server registering",
    )
    print(f"\nvideo decoded again {recovered} s after the restarted media server registered")
    _timeline({"host": host, "guest": guest}, registered_at)
    wait_media(host, guest_id)  # and audio too, both ways
    wait_media(guest, host_id)
    for page, other in ((host, guest_id), (guest, host_id)):
        assert page.evaluate("() => window.__sameDocument === true")  # the same page: never reloaded
        assert page.evaluate("(id) => window.conferenceCall.participants.has(id)", other)  # nobody left
        assert page.evaluate("() => window.conferenceCall.phase") == "call"
        statuses = page.evaluate("() => window.__statuses")
        assert any("Media server" in s for s in statuses), statuses  # it said what was going on
        page.wait_for_function("() => document.getElementById('conn-status').textContent === 'Connected'")
    assert participant_id(host) == host_id and participant_id(guest) == guest_id


CHAT_LOG_JS = """() => [...document.querySelectorAll('#chat-log li')].map((li) => ({
  seq: li.dataset.seq ? Number(li.dataset.seq) : null, pending: li.classList.contains('pending'),
  text: li.querySelector('.chat-text').textContent}))"""

TYPE_JS = """(text) => { const input = document.getElementById('chat-input'); input.value = text;
  document.getElementById('chat-form').requestSubmit(); }"""


def _type(page: Any, who: str, batch: str, count: int) -> list[str]:
    texts = [f"{who} {batch} {i}" for i in range(count)]
    for text in texts:
        page.evaluate(TYPE_JS, text)
    return texts


def test_chat_typed_while_daphne_is_killed_is_delivered_exactly_once_in_the_same_order_everywhere(
    own_browser: Any, own_stack: ServiceStack, contexts: list[Any], users: dict[str, str]
) -> None:
    host = new_page(own_browser, contexts, own_stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Chat outage")
    join_call(host, room_id)
    pages = {"hana": host, "ravi": _join(own_browser, contexts, own_stack, users, "ravi", room_id)}
    pages["mona"] = _join(own_browser, contexts, own_stack, users, "mona", room_id)
    for page in pages.values():
        page.click("#btn-chat")
    typed: list[str] = []
    for who, page in pages.items():
        typed += _type(page, who, "before", 3)

    own_stack.kill("web")
    for who, page in pages.items():  # while the web process is gone: the outbox holds them
        typed += _type(page, who, "during", 8)
    time.sleep(2)
    for who, page in pages.items():
        typed += _type(page, who, "still down", 4)
    own_stack.start("web")
    for who, page in pages.items():  # while the pages are reconnecting
        typed += _type(page, who, "after", 3)

    deadline = time.monotonic() + CHAT_BACK_SECONDS
    while True:
        logs = {who: page.evaluate(CHAT_LOG_JS) for who, page in pages.items()}
        waiting = {
            who: [m["text"] for m in log if m["pending"] or m["seq"] is None] or len(typed) - len(log)
            for who, log in logs.items()
            if len(log) < len(typed) or any(m["pending"] or m["seq"] is None for m in log)
        }
        if not waiting:
            break
        assert time.monotonic() < deadline, f"not settled after the restart: {waiting}"
        time.sleep(0.5)
    reference = logs["hana"]
    texts = [m["text"] for m in reference]
    assert sorted(texts) == sorted(typed), "lost or duplicated messages"
    assert len(set(texts)) == len(texts)
    seqs = [m["seq"] for m in reference]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # shown in seq order, each once
    for who, log in logs.items():
        assert log == reference, f"{who}'s log differs"
    # Each person's messages were stored in the order they were typed.
    for who in pages:
        mine = [m["text"] for m in reference if m["text"].startswith(f"{who} ")]
        assert mine == [t for t in typed if t.startswith(f"{who} ")]
    for page in pages.values():
        assert page.evaluate("() => window.conferenceCall.outbox.size") == 0
        assert page.evaluate("() => window.conferenceCall.phase") == "call"


def _udp(netns: Any, action: str) -> None:
    """``-I``: drop every UDP datagram entering or leaving the browsers' namespace; ``-D``: stop dropping."""
    for chain in ("INPUT", "OUTPUT"):
        subprocess.run(
            ["ip", "netns", "exec", netns.name, "iptables", action, chain, "-p", "udp", "-j", "DROP"],
            check=True,
            capture_output=True,
        )


def test_media_comes_back_after_udp_is_dropped_for_10_s_without_a_rejoin(
    own_browser: Any, own_stack: ServiceStack, netns: Any, contexts: list[Any], users: dict[str, str]
) -> None:
    """The socket (TCP) stays up; the peer connections go disconnected and are rebuilt until UDP works again."""
    host, guest, host_id, guest_id = _two_in_a_call(own_browser, contexts, own_stack, users, "UDP outage")
    pages = {"host": host, "guest": guest}
    for page in pages.values():
        page.evaluate("() => { window.__oldSocket = window.conferenceCall.ws; window.__firstFrames(); }")
    _udp(netns, "-I")
    try:
        time.sleep(10)
    finally:
        _udp(netns, "-D")
    restored_at = time.monotonic()
    for page in pages.values():  # frames from now on count, on the old connection too (ICE may resume it)
        page.evaluate("() => window.__frameBaseline()")
    recovered = video_back(
        {"host": (host, guest_id), "guest": (guest, host_id)},
        since=restored_at,
        timeout=MEDIA_BACK_SECONDS,
        event="UDP coming back",
    )
    print(f"\nvideo decoded again {recovered} s after UDP was restored")
    print(f"first (video frame, audio packet), s after UDP was back: {_first_media(pages, restored_at)}")
    _timeline(pages, restored_at - 10)
    for page, other in ((host, guest_id), (guest, host_id)):
        wait_media(page, other)  # audio too
        assert page.evaluate("() => window.__sameDocument === true")
        assert page.evaluate("(id) => window.conferenceCall.participants.has(id)", other)
        # The same socket all along (its pong answered every check): connections are rebuilt on it, or
        # resumed by ICE itself when UDP came back before they were given up.
        assert page.evaluate("() => window.conferenceCall.ws === window.__oldSocket")
    assert participant_id(host) == host_id and participant_id(guest) == guest_id


def _ip(netns: Any, *args: str, inside: bool = True) -> None:
    prefix = ["ip", "netns", "exec", netns.name] if inside else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def _renumbered(netns: Any) -> Iterator[str]:
    """Move the browsers to another address on another subnet, as a network change does (a new Wi-Fi).

    The namespace's address and its default route change; the host end of the veth gets an address on the
    new subnet (its gateway), so the servers, still on ``netns.host_ip``, reach the browsers there. Every
    socket and peer connection bound to the old address is left dangling. Undone afterwards.
    """
    old_prefix = netns.ns_ip.rsplit(".", 2)[0]  # 10.231
    index = netns.ns_ip.split(".")[2]
    new_net = f"10.{int(old_prefix.split('.')[1]) + 1}.{index}"
    new_ip, gateway = f"{new_net}.2", f"{new_net}.1"
    _ip(netns, "addr", "add", f"{gateway}/24", "dev", netns.host_if, inside=False)
    _ip(netns, "addr", "del", f"{netns.ns_ip}/24", "dev", netns.ns_if)  # takes the default route with it
    _ip(netns, "addr", "add", f"{new_ip}/24", "dev", netns.ns_if)
    _ip(netns, "route", "replace", "default", "via", gateway)
    try:
        yield new_ip
    finally:
        subprocess.run(["ip", "netns", "exec", netns.name, "ip", "addr", "del", f"{new_ip}/24", "dev", netns.ns_if])
        subprocess.run(["ip", "addr", "del", f"{gateway}/24", "dev", netns.host_if])
        _ip(netns, "addr", "add", f"{netns.ns_ip}/24", "dev", netns.ns_if)
        _ip(netns, "route", "replace", "default", "via", netns.host_ip)


def test_media_comes_back_after_the_browsers_address_and_route_change_with_nobody_leaving(
    own_browser: Any, own_stack: ServiceStack, netns: Any, contexts: list[Any], users: dict[str, str]
) -> None:
    """A network change mid-call: the pages' old address disappears and a new one on another subnet takes
    its place. Their sockets and peer connections are dead; each page notices, opens a new socket with its
    rejoin token and new peer connections, and audio and video flow again; same participants, same
    documents, and neither page is ever told the other left."""
    host, guest, host_id, guest_id = _two_in_a_call(own_browser, contexts, own_stack, users, "Network change")

    pages = {"host": host, "guest": guest}
    for page in pages.values():
        page.evaluate("() => { window.__oldSubscribe = window.conferenceCall.pcs.subscribe; window.__firstFrames(); }")
    with _renumbered(netns) as new_ip:
        usable_at = time.monotonic()
        recovered = video_back(
            {"host": (host, guest_id), "guest": (guest, host_id)},
            since=usable_at,
            timeout=MEDIA_BACK_SECONDS,
            event=f"the move to {new_ip}",
            # Frames already buffered are still decoded for a moment over the dead path: only a new one counts.
            ready=lambda page: page.evaluate("() => window.conferenceCall.pcs.subscribe !== window.__oldSubscribe"),
        )
        print(f"\nvideo decoded again {recovered} s after the new address {new_ip} was usable")
        for page, other in ((host, guest_id), (guest, host_id)):
            wait_media(page, other)  # audio too, both ways
        audio_at = round(time.monotonic() - usable_at, 2)
        print(f"audio and video both ways (2 s windows) by {audio_at} s")
        for page, other in ((host, guest_id), (guest, host_id)):
            assert page.evaluate("() => window.__sameDocument === true")  # never reloaded
            assert page.evaluate("(id) => window.conferenceCall.participants.has(id)", other)
            assert page.evaluate("() => window.conferenceCall.phase") == "call"
    assert participant_id(host) == host_id and participant_id(guest) == guest_id  # the same participants
    left = {name: [e for e in _log(page, 0) if e[1].startswith("participant_left")] for name, page in pages.items()}
    assert left == {"host": [], "guest": []}, f"a page was told someone left: {left}"
    print(
        f"first (video frame, audio packet) on the new connections, s after the move: {_first_media(pages, usable_at)}"
    )
    _timeline(pages, usable_at)
