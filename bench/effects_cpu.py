"""CPU cost of the background effects in Chromium with the fake camera (issue 21 item 3).

    .venv/bin/python bench/effects_cpu.py [--seconds 20] [--modes off,blur,bg:studio]

Serves static/ on a loopback port (after `make vendor`), opens one headless Chromium page (Debian's
/usr/bin/chromium, fake 1280x720 camera, --disable-gpu as in the tests) and, for each mode in turn, runs the
call page's own effect code (static/js/call/effects/video.js) on the camera track and plays the result in a
<video>, as the pre-join preview does. ``off`` plays the camera track itself. Over ``--seconds`` per mode it
prints the frames the page output per second (the <video>'s presented frames), the masks computed per second
(segmentations), and the CPU time of every Chromium process under this one, by type (browser, renderer,
gpu, utility), as a percentage of one core, and that CPU per output frame. The modes run one after another in the same browser: compare
their ratios, not the absolute figures (which depend on the machine's load).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TICK = os.sysconf("SC_CLK_TCK")

PAGE = """<!doctype html><html><body><video id="v" autoplay muted playsinline></video>
<script type="module">
import { startVideoEffect } from "/static/js/call/effects/video.js";
window.bench = {
  async start(mode) {
    window.bench.stop?.();
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 } });
    const camera = stream.getVideoTracks()[0];
    const effect = mode === "off" ? null : await startVideoEffect(camera, mode);
    const v = document.getElementById("v");
    v.srcObject = new MediaStream([effect ? effect.track : camera]);
    await v.play();
    window.bench.effect = effect;
    window.bench.stop = () => { effect?.stop(); camera.stop(); };
  },
  counters() {
    const q = document.getElementById("v").getVideoPlaybackQuality();
    const c = window.bench.effect?.compositor;
    return { presented: q.totalVideoFrames, masks: c ? c.masks : 0, composed: c ? c.frames : 0 };
  },
};
</script></body></html>"""


class Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/bench.html":
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        return super().translate_path(path.removeprefix("/static")) if path.startswith("/static/") else "/nonexistent"

    def log_message(self, *args: object) -> None:
        pass


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def chromium_cpu() -> dict[str, float]:
    """CPU seconds so far of each Chromium process type under this process."""
    totals: dict[str, float] = {}
    for pid in descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if not cmdline or b"chrom" not in cmdline[0]:
            continue
        # Child processes rewrite their command line into one string (setproctitle): search it whole.
        match = re.search(rb"--type=([\w-]+)", b" ".join(cmdline))
        kind = match.group(1).decode() if match else "browser"
        totals[kind] = totals.get(kind, 0.0) + (int(stat[11]) + int(stat[12])) / TICK
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--modes", default="off,blur,bg:studio")
    parser.add_argument("--gpu", action="store_true", help="leave out --disable-gpu (this VM has no GPU either way)")
    args = parser.parse_args()
    if not (ROOT / "static" / "vendor" / ".copied").exists():
        raise SystemExit("static/vendor/ is missing: run `make vendor` first")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(ROOT / "static")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from playwright.sync_api import sync_playwright

    flags = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox"]
    if not args.gpu:
        flags.append("--disable-gpu")  # as the browser tests run it
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.seconds:.0f} s per mode")
    print(
        f"{'mode':<10} {'out fps':>8} {'masks/s':>8} {'renderer %':>11} {'gpu %':>7} {'other %':>8} {'total %':>8}"
        f" {'CPU ms/frame':>13}"
    )
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/bench.html")
            page.wait_for_function("() => window.bench")
            for mode in args.modes.split(","):
                page.evaluate("(m) => window.bench.start(m)", mode)
                time.sleep(3)  # warm-up: model load, first frames
                c0, cpu0, t0 = page.evaluate("() => window.bench.counters()"), chromium_cpu(), time.monotonic()
                time.sleep(args.seconds)
                c1, cpu1, t1 = page.evaluate("() => window.bench.counters()"), chromium_cpu(), time.monotonic()
                wall = t1 - t0
                pct = {k: 100 * (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) / wall for k in cpu1}
                other = sum(v for k, v in pct.items() if k not in ("renderer", "gpu-process"))
                fps = (c1["presented"] - c0["presented"]) / wall
                # CPU per output frame: what the machine's load distorts least (a starved browser makes fewer
                # frames, each costing about the same).
                per_frame = 10 * sum(pct.values()) / fps if fps else float("nan")
                print(
                    f"{mode:<10} {fps:8.1f} {(c1['masks'] - c0['masks']) / wall:8.1f}"
                    f" {pct.get('renderer', 0):11.0f} {pct.get('gpu-process', 0):7.0f} {other:8.0f}"
                    f" {sum(pct.values()):8.0f} {per_frame:13.0f}"
                )
            page.evaluate("() => window.bench.stop?.()")
            browser.close()
    finally:
        server.shutdown()
    print(f"load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
