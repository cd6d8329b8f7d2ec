"""Firefox for the end-to-end tests: Debian's firefox-esr, headless, driven over WebDriver BiDi.

``tests/e2e/firefox/driver.mjs`` (puppeteer-core, pinned in ``package.json`` and
``package-lock.json`` next to it, installed with ``npm ci``) owns one Firefox and
speaks JSON lines on stdin/stdout; :class:`FirefoxDriver` starts it with
``ip netns exec`` so the Node process and the Firefox it launches live in the
test's network namespace, exactly like the Chromium the Playwright driver
starts there. Why a Node driver rather than WebDriver BiDi spoken from Python:
puppeteer-core is the maintained BiDi client (Firefox's own CI runs it), it
knows how to launch Firefox with a profile and prefs and how to wait for
selectors and functions; a hand-written Python BiDi client would repeat all of
that. :class:`FirefoxPage` offers the few page methods the shared helpers in
``e2e_helpers.py`` use (``evaluate``, ``wait_for_function``, ``console_lines``),
so ``wait_media``/``inbound``/``participant_id`` work on both browsers.

Screen sharing: headless Firefox has no screen, so ``getDisplayMedia`` fails with
``NotFoundError`` whatever the preferences (``media.navigator.streams.fake`` fakes
cameras and microphones only). :class:`VirtualDisplay` starts an ``Xvfb`` (Debian
package ``xvfb``) in the namespace and a Firefox launched on it (``display=``)
captures that X screen for real ("Primary Monitor"), as Mozilla's own Linux test
runs do; with ``media.navigator.permission.disabled`` there is no picker.

Preferences: fake camera/microphone without a permission prompt, the test
origin (plain HTTP) treated as a secure context, autoplay allowed. ICE
preferences stay at Firefox's defaults: host candidates are mDNS names
(``media.peerconnection.ice.obfuscate_host_addresses`` is never turned off).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FIREFOX = "/usr/bin/firefox-esr"
XVFB = "/usr/bin/Xvfb"
DRIVER_DIR = Path(__file__).resolve().parent / "firefox"
DRIVER = DRIVER_DIR / "driver.mjs"


def firefox_missing() -> str | None:
    """Why Firefox tests cannot run here, or None."""
    if not Path(FIREFOX).exists():
        return f"needs {FIREFOX} (Debian package firefox-esr)"
    if shutil.which("node") is None:
        return "needs node (Debian package nodejs)"
    if not (DRIVER_DIR / "node_modules" / "puppeteer-core").exists():
        return f"needs puppeteer-core: cd {DRIVER_DIR} && PUPPETEER_SKIP_DOWNLOAD=1 npm ci"
    return None


def xvfb_missing() -> str | None:
    """Why a Firefox cannot be given a screen to share here, or None."""
    return None if Path(XVFB).exists() else f"needs {XVFB} (Debian package xvfb)"


class VirtualDisplay:
    """An ``Xvfb`` X server in ``netns_name`` on a free display number (it picks one: ``-displayfd``)."""

    def __init__(self, netns_name: str, *, width: int = 1280, height: int = 800) -> None:
        read_end, write_end = os.pipe()
        screen = f"{width}x{height}x24"
        self._proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns_name,
                XVFB,
                "-displayfd",
                str(write_end),
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                screen,
            ],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        with os.fdopen(read_end) as announced:
            number = announced.readline().strip()  # written once the server accepts clients; '' if it died
        if not number:
            self.close()
            raise DriverError(f"Xvfb did not start ({self._proc.poll()})")
        self.name = f":{number}"

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


# A user who refused the camera/microphone prompt: getUserMedia fails with NotAllowedError (the fake devices exist).
DENY_DEVICES = {
    "media.navigator.permission.disabled": False,
    "permissions.default.camera": 2,
    "permissions.default.microphone": 2,
}


def firefox_prefs(origin: str) -> dict[str, Any]:
    """Firefox preferences for the tests on ``origin`` (default ICE behaviour: mDNS host candidates)."""
    host = urlsplit(origin).hostname or ""
    return {
        "media.navigator.streams.fake": True,
        "media.navigator.permission.disabled": True,
        # getUserMedia, crypto.subtle and RTCRtpScriptTransform need a secure context; the test origin is plain HTTP.
        "dom.securecontext.allowlist": host,
        "media.devices.insecure.enabled": True,
        "media.getusermedia.insecure.enabled": True,
        "media.autoplay.default": 0,
        "media.autoplay.blocking_policy": 0,
        # Screen sharing without a picker (a Firefox on a VirtualDisplay captures that screen).
        "media.getdisplaymedia.enabled": True,
        "media.navigator.permission.fake": True,
        # Quiet: no first-run pages, updates or telemetry reaching out of the namespace.
        "browser.shell.checkDefaultBrowser": False,
        "app.update.enabled": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.enabled": False,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
    }


class DriverError(RuntimeError):
    pass


class FirefoxDriver:
    """One Node driver process (and its Firefox) inside ``netns_name``; requests are serialised."""

    def __init__(
        self,
        netns_name: str,
        origin: str,
        *,
        log_dir: Path,
        prefs: dict[str, Any] | None = None,
        display: str | None = None,
    ) -> None:
        """``display``: an X display (:class:`VirtualDisplay`) to run Firefox on, not headless (screen sharing)."""
        self.origin = origin
        self._stderr = (log_dir / f"firefox-driver-{netns_name}-{time.monotonic_ns()}.log").open("wb")
        env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"}
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", netns_name, "node", str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=DRIVER_DIR,
            text=True,
            bufsize=1,
        )
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._consoles: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, name="firefox-driver", daemon=True)
        self._reader.start()
        self.version = str(
            self.request(
                "launch",
                executablePath=FIREFOX,
                prefs={**firefox_prefs(origin), **(prefs or {})},
                display=display,
                timeout=90,
            )
        )

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "console":
                self._consoles.setdefault(int(message["page"]), []).append(str(message["text"]))
            else:
                self._replies.put(message)
        self._replies.put(None)

    def request(self, op: str, *, timeout: float = 60.0, **fields: Any) -> Any:
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"id": request_id, "op": op, **fields}) + "\n")
            self._proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                try:
                    reply = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise DriverError(f"{op}: no reply from the Firefox driver in {timeout} s") from None
                if reply is None:
                    raise DriverError(f"{op}: the Firefox driver exited ({self._proc.poll()})")
                if reply.get("id") != request_id:
                    continue  # the reply to a request that timed out earlier
                if not reply.get("ok"):
                    raise DriverError(f"{op}: {reply.get('error')}")
                return reply.get("value")

    def console(self, page_id: int) -> list[str]:
        return self._consoles.setdefault(page_id, [])

    def consoles(self) -> dict[int, list[str]]:
        """Every page's console lines so far, by page id."""
        return dict(self._consoles)

    def new_page(self, *, width: int = 1280, height: int = 800) -> FirefoxPage:
        page_id = int(self.request("newPage", width=width, height=height))
        return FirefoxPage(self, page_id)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.request("close", timeout=20)
        with contextlib.suppress(Exception):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._stderr.close()


class FirefoxPage:
    """A page in its own browser context (cookies, storage) of a :class:`FirefoxDriver`'s Firefox."""

    def __init__(self, driver: FirefoxDriver, page_id: int) -> None:
        self.driver = driver
        self.id = page_id
        self.browser_name = "firefox"

    @property
    def console_lines(self) -> list[str]:
        return self.driver.console(self.id)

    @property
    def url(self) -> str:
        return str(self.driver.request("url", page=self.id))

    def goto(self, path: str) -> None:
        url = path if path.startswith("http") else self.driver.origin + path
        self.driver.request("goto", page=self.id, url=url)

    def set_viewport_size(self, viewport: dict[str, int]) -> None:
        """Resize the page (Playwright's signature): its tiles, and the sizes it reports to the server, follow."""
        self.driver.request("setViewport", page=self.id, width=viewport["width"], height=viewport["height"])

    def reload(self) -> None:
        self.driver.request("reload", page=self.id)

    def evaluate(self, source: str, *args: Any) -> Any:
        """Run a JavaScript function given as source (``"() => ..."``) with JSON arguments; await its result."""
        return self.driver.request("evaluate", page=self.id, source=source, args=list(args))

    def wait_for_function(self, source: str, *args: Any, timeout: float = 20.0) -> None:
        """Until the function (source, JSON arguments) returns a truthy value; DriverError after ``timeout`` s."""
        self.driver.request(
            "waitForFunction", timeout=timeout + 10, page=self.id, source=source, args=list(args), ms=timeout * 1000
        )

    def wait_for_selector(self, selector: str, *, timeout: float = 20.0, hidden: bool = False) -> None:
        self.driver.request(
            "waitForSelector", timeout=timeout + 10, page=self.id, selector=selector, hidden=hidden, ms=timeout * 1000
        )

    def click(self, selector: str) -> None:
        self.driver.request("click", page=self.id, selector=selector)

    def fill(self, selector: str, text: str) -> None:
        self.driver.request("fill", page=self.id, selector=selector, text=text)

    def screenshot(self, path: str) -> None:
        self.driver.request("screenshot", page=self.id, path=path)

    def close(self) -> None:
        self.driver.request("closePage", page=self.id)
