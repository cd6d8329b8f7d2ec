"""Calls that heal themselves (issue 16), in Chromium, with faults caused for real.

Its own stack on the session's database (so the session's accounts work): one daphne and one media
server registered in Redis under a private prefix, both started by this module so that a test can
``kill -9`` and restart them, and a second Chromium for that origin.

* The only media server is killed and restarted: the pages retry publish and subscribe with backoff on
  the same socket (no reload, nobody leaves) until video flows again.
* UDP to and from the browsers is dropped for 10 s (iptables in their namespace): the peer connections
  go disconnected and are rebuilt, with backoff, until media flows again; the socket never closes.
* daphne is killed while three people type chat, and restarted: every message typed is stored exactly
  once, and every page ends with the same log, ordered by ``seq``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from e2e_helpers import (
    CHROMIUM,
    chromium_args,
    create_room,
    debug_state,
    join_call,
    log_in,
    media_flowing,
    new_page,
    participant_id,
    wait_media,
    wait_until,
)
from topology import free_port, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]
# Generous bounds (a busy 2-core machine): the figures are printed, not asserted.
MEDIA_BACK_SECONDS = 45.0
CHAT_BACK_SECONDS = 60.0


@dataclass
class HealStack:
    """What e2e_helpers.new_page needs (``base_url``), and processes this module may kill and restart."""

    base_url: str
    env: dict[str, str]
    workdir: Path
    commands: dict[str, tuple[list[str], dict[str, str], str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        cmd, changes, health = self.commands[name]
        log = self.workdir / f"heal-{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **changes}, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        wait_http(health, proc, log)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def registered(self) -> list[str]:
        client = redis.Redis.from_url(self.env["MEDIA_REDIS_URL"])
        try:
            keys = client.keys(f"{self.env['MEDIA_REDIS_PREFIX']}:media:node:*")
            records = [json.loads(r) for r in client.mget(keys) if r is not None] if keys else []
        finally:
            client.close()
        return sorted(r["node"] for r in records)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"heal-{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.fixture(scope="module")
def heal_stack(netns: Any, stack: Any) -> Iterator[HealStack]:
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    web_port = free_port(netns.host_ip)
    media_port = free_port("127.0.0.1")
    base_url = f"http://{netns.host_ip}:{web_port}"
    tag = f"e2eheal{os.getpid()}"
    env = {
        **stack.env,
        "DJANGO_CSRF_TRUSTED_ORIGINS": base_url,
        "PUBLIC_BASE_URL": base_url,
        "MEDIA_EVENTS_URL": f"{base_url}/internal/media/v1/events",
        "CHANNEL_PREFIX": tag,
        "MEDIA_REDIS_URL": redis_url,
        "MEDIA_REDIS_PREFIX": tag,
    }
    result = HealStack(base_url=base_url, env=env, workdir=stack.workdir)
    web = [sys.executable, "-m", "daphne", "-b", netns.host_ip, "-p", str(web_port), "conference.asgi:application"]
    result.commands["web"] = (web, {}, f"{base_url}/healthz")
    result.commands["media"] = (
        [sys.executable, "-m", "media_server"],
        {"MEDIA_CONTROL_PORT": str(media_port), "MEDIA_NODE_ID": "heal-media"},
        f"http://127.0.0.1:{media_port}/v1/health",
    )
    try:
        result.start("media")
        result.start("web")  # also starts its failover monitor
        wait_until(lambda: result.registered() == ["heal-media"], timeout=20, message="the media node did not register")
        yield result
    finally:
        for proc in result.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in result.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{tag}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def heal_browser(browser: Any, heal_stack: HealStack) -> Iterator[Any]:
    """A second Chromium from the same (namespaced) Playwright driver: this stack's origin is another port."""
    second = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True, args=chromium_args(heal_stack.base_url)
    )
    try:
        yield second
    finally:
        second.close()


def _join(
    browser: Any, contexts: list[Any], heal_stack: HealStack, users: dict[str, str], who: str, room_id: str
) -> Any:
    page = new_page(browser, contexts, heal_stack)
    log_in(page, who, users[who])
    join_call(page, room_id)
    page.evaluate("() => { window.__sameDocument = true; }")  # a reload would lose it
    return page


def test_the_call_comes_back_after_its_only_media_server_is_killed_and_restarted(
    heal_browser: Any, heal_stack: HealStack, contexts: list[Any], users: dict[str, str]
) -> None:
    """No reload, no leave/join: the pages retry with backoff until the restarted server takes the room."""
    host = new_page(heal_browser, contexts, heal_stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Media restart")
    join_call(host, room_id)
    host.evaluate("() => { window.__sameDocument = true; }")
    guest = _join(heal_browser, contexts, heal_stack, users, "ravi", room_id)
    host_id, guest_id = participant_id(host), participant_id(guest)
    wait_media(host, guest_id)
    wait_media(guest, host_id)
    for page in (host, guest):  # record every status the pill shows from now on
        page.evaluate(
            """() => { window.__statuses = []; const node = document.getElementById("conn-status");
              new MutationObserver(() => window.__statuses.push(node.textContent))
                .observe(node, {childList: true, characterData: true, subtree: true}); }"""
        )

    heal_stack.kill("media")
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
    heal_stack.start("media")
    wait_until(lambda: heal_stack.registered() == ["heal-media"], timeout=20, message="the media node did not register")
    registered_at = time.monotonic()

    recovered: dict[str, float] = {}
    pending = {"host": (host, guest_id), "guest": (guest, host_id)}
    while pending and time.monotonic() - registered_at < MEDIA_BACK_SECONDS:
        for name, (page, other) in list(pending.items()):
            if not media_flowing(page, other, audio=False, window=0.5):
                recovered[name] = time.monotonic() - registered_at
                del pending[name]
    for name, (page, other) in pending.items():
        raise AssertionError(
            f"{name}: no video from {other} within {MEDIA_BACK_SECONDS} s of the restart; state {debug_state(page)}; "
            f"console: {page.console_lines[-30:]}; web log: {heal_stack.log_tail('web')}"
        )
    print(f"\nvideo decoded again {recovered} s after the restarted media server registered")
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
    heal_browser: Any, heal_stack: HealStack, contexts: list[Any], users: dict[str, str]
) -> None:
    host = new_page(heal_browser, contexts, heal_stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "Chat outage")
    join_call(host, room_id)
    pages = {"hana": host, "ravi": _join(heal_browser, contexts, heal_stack, users, "ravi", room_id)}
    pages["mona"] = _join(heal_browser, contexts, heal_stack, users, "mona", room_id)
    for page in pages.values():
        page.click("#btn-chat")
    typed: list[str] = []
    for who, page in pages.items():
        typed += _type(page, who, "before", 3)

    heal_stack.kill("web")
    for who, page in pages.items():  # while the web process is gone: the outbox holds them
        typed += _type(page, who, "during", 8)
    time.sleep(2)
    for who, page in pages.items():
        typed += _type(page, who, "still down", 4)
    heal_stack.start("web")
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
    heal_browser: Any, heal_stack: HealStack, netns: Any, contexts: list[Any], users: dict[str, str]
) -> None:
    """The socket (TCP) stays up; the peer connections go disconnected and are rebuilt until UDP works again."""
    host = new_page(heal_browser, contexts, heal_stack)
    log_in(host, "hana", users["hana"])
    room_id = create_room(host, "UDP outage")
    join_call(host, room_id)
    host.evaluate("() => { window.__sameDocument = true; }")
    guest = _join(heal_browser, contexts, heal_stack, users, "ravi", room_id)
    host_id, guest_id = participant_id(host), participant_id(guest)
    wait_media(host, guest_id)
    wait_media(guest, host_id)
    for page in (host, guest):
        page.evaluate("() => { window.__oldSubscribe = window.conferenceCall.pcs.subscribe; }")
    _udp(netns, "-I")
    try:
        time.sleep(10)
    finally:
        _udp(netns, "-D")
    restored_at = time.monotonic()
    recovered: dict[str, float] = {}
    pending = {"host": (host, guest_id), "guest": (guest, host_id)}
    while pending and time.monotonic() - restored_at < MEDIA_BACK_SECONDS:
        for name, (page, other) in list(pending.items()):
            if not media_flowing(page, other, audio=False, window=0.5):
                recovered[name] = time.monotonic() - restored_at
                del pending[name]
    for name, (page, other) in pending.items():
        raise AssertionError(
            f"{name}: no video from {other} within {MEDIA_BACK_SECONDS} s of UDP coming back; state "
            f"{debug_state(page)}; console: {page.console_lines[-30:]}"
        )
    print(f"\nvideo decoded again {recovered} s after UDP was restored")
    for page, other in ((host, guest_id), (guest, host_id)):
        wait_media(page, other)  # audio too
        assert page.evaluate("() => window.__sameDocument === true")
        assert page.evaluate("(id) => window.conferenceCall.participants.has(id)", other)
        # Rebuilt: a new subscribe connection, on the same socket.
        assert page.evaluate("() => window.conferenceCall.pcs.subscribe !== window.__oldSubscribe")
    assert participant_id(host) == host_id and participant_id(guest) == guest_id
