"""Recording transcode speed, as a multiple of real time (issue 6).

Writes synthetic spools exactly as the media server does (recordings/synthetic.py:
VP8 720p30 cameras at ~1.5 Mbps with sensor-like noise and motion, Opus mono
audio, WebM, millisecond timestamps) for N participants, then times the
worker's real composition (recordings.transcode.render: ffmpeg grid + amix →
H.264/AAC MP4, ffprobe, thumbnail) with the production defaults
(1280x720, 25 fps, libx264 veryfast, CRF 23).

    .venv/bin/python bench/transcode.py                      # 2 and 9 participants, 30 s
    .venv/bin/python bench/transcode.py --participants 2 --seconds 60 --fps 30
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recordings.compose import Canvas
from recordings.spool import manifest_load
from recordings.synthetic import COLORS, SynthTrack, write_spool
from recordings.transcode import render


def tracks_for(n: int, seconds: float) -> list[SynthTrack]:
    colors = list(COLORS)
    out: list[SynthTrack] = []
    for i in range(n):
        p = f"p{i:02d}"
        out.append(SynthTrack(p, "camera", 0.0, seconds, color=colors[i % len(colors)], pattern=True))
        out.append(SynthTrack(p, "microphone", 0.0, seconds, tone_hz=220.0 + 110 * i))
    return out


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{cpu}, {os.cpu_count()} cores, {platform.platform()}, {ffmpeg}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, nargs="+", default=[2, 9])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=int, default=25, help="output frame rate")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="directory to keep/reuse spools in")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    canvas = Canvas(fps=args.fps, preset=args.preset)
    for n in args.participants:
        spool = base / f"rec{n:02d}x{int(args.seconds)}"
        if not (spool / "manifest.json").exists():
            t = time.perf_counter()
            write_spool(
                spool, recording=spool.name, room="benchroom", duration=args.seconds, tracks=tracks_for(n, args.seconds)
            )
            print(f"  wrote {n}-participant spool in {time.perf_counter() - t:.1f} s")
        size = sum(f.stat().st_size for f in spool.glob("*.webm"))
        manifest = manifest_load(spool)
        best = None
        for run in range(args.runs):
            t = time.perf_counter()
            cpu0 = os.times()
            result = render(manifest, spool, base / f"work-{n}-{run}", canvas=canvas)
            wall = time.perf_counter() - t
            cpu1 = os.times()
            cpu = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
            best = wall if best is None else min(best, wall)
            print(
                f"{n} participants, {args.seconds:.0f} s of 720p30 VP8 input ({size * 8 / args.seconds / 1e6 / n:.2f} Mbps each)"
                f" → {canvas.width}x{canvas.height}@{canvas.fps} {canvas.preset}: {wall:.1f} s wall, {cpu:.1f} s CPU,"
                f" {args.seconds / wall:.2f}x real time, MP4 {result.size / 1e6:.1f} MB, duration {result.duration:.2f} s"
            )
        assert best is not None
        print(f"RESULT participants={n} speed={args.seconds / best:.2f}x (best of {args.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
