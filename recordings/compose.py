"""Pure composition: a recording manifest → the ffmpeg command that renders it.

No I/O here: :func:`layout` cuts the recording into segments in which the set
of visible tiles is constant, and :func:`compose_command` turns the segments
into one ``-filter_complex`` graph:

* every video track is shifted onto the recording's timeline
  (``setpts=PTS-STARTPTS+start``), resampled to the output frame rate, split
  into one branch per segment it appears in, trimmed to that segment, scaled
  to its cell (aspect kept) and overlaid, centred, on the segment's background;
* the segments are concatenated, so the layout follows who is present;
* a screen share is shown large with everyone's tiles in a strip below it;
  without one, everyone present is in a grid (cameras, or a grey tile for a
  participant who is only heard);
* every audio track is re-timed to start at 0 (gaps filled with silence),
  delayed by its start offset and mixed (``amix``, no normalisation);
* output: H.264 (libx264, yuv420p, ``+faststart``) and AAC in MP4.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from .spool import Manifest, Track

BACKGROUND = "0x1a1a1a"
PLACEHOLDER = "0x3a3a3a"
MAX_GRID_TILES = 25
STRIP_FRACTION = 5  # the strip under a screen share is 1/5 of the height


class ComposeError(ValueError):
    """The manifest cannot be rendered (e.g. an empty recording)."""


@dataclass(frozen=True)
class Canvas:
    width: int = 1280
    height: int = 720
    fps: int = 25
    preset: str = "veryfast"
    crf: int = 23
    audio_bitrate: str = "128k"
    threads: int = 0  # 0 = ffmpeg decides


@dataclass(frozen=True)
class Cell:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Tile:
    participant: str
    cell: Cell
    track: int | None  # index into the manifest's tracks; None = grey placeholder (audio only)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    tiles: tuple[Tile, ...]

    @property
    def duration(self) -> float:
        return self.end - self.start


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def grid_cells(n: int, area: Cell) -> list[Cell]:
    """``n`` cells in a near-square grid filling ``area``; a partial last row is centred."""
    if n <= 0:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    w, h = _even(area.w / cols), _even(area.h / rows)
    top = area.y + (area.h - rows * h) // 2
    cells = []
    for i in range(n):
        row, col = divmod(i, cols)
        in_row = min(cols, n - row * cols)
        left = area.x + (area.w - in_row * w) // 2
        cells.append(Cell(left + col * w, top + row * h, w, h))
    return cells


def strip_cells(n: int, area: Cell) -> list[Cell]:
    """Up to ``area.w // (16/9 * area.h)`` 16:9 cells side by side, centred in ``area``."""
    w = _even(area.h * 16 / 9)
    n = min(n, max(1, area.w // w))
    left = area.x + (area.w - n * w) // 2
    return [Cell(left + i * w, area.y, w, area.h) for i in range(n)]


def _snap(t: float, fps: int) -> float:
    return round(t * fps) / fps


def _active(track: Track, start: float, end: float) -> bool:
    return track.start < end and track.end > start


def layout(manifest: Manifest, canvas: Canvas) -> list[Segment]:
    """Cut the recording at every track start/end (snapped to frames) and lay out each piece."""
    duration = _snap(manifest.duration, canvas.fps)
    if duration <= 0:
        raise ComposeError("the recording is empty")
    tracks = manifest.tracks
    cuts = {0.0, duration}
    for t in tracks:
        cuts.update(x for x in (_snap(t.start, canvas.fps), _snap(t.end, canvas.fps)) if 0 < x < duration)
    bounds = sorted(cuts)
    first_seen: dict[str, float] = {}
    for t in sorted(tracks, key=lambda t: (t.start, t.participant)):
        first_seen.setdefault(t.participant, t.start)
    order = sorted(first_seen, key=lambda p: (first_seen[p], p))
    full = Cell(0, 0, canvas.width, canvas.height)
    segments: list[Segment] = []
    for start, end in itertools.pairwise(bounds):
        mid = (start + end) / 2
        live = [(i, t) for i, t in enumerate(tracks) if t.start <= mid < t.end]
        present = [p for p in order if any(t.participant == p for _, t in live)]
        cameras: dict[str, int] = {}
        for i, t in live:
            if t.source == "camera":
                cameras[t.participant] = i  # the latest camera track wins
        screens = sorted((t.start, i) for i, t in live if t.source == "screen")
        tiles: list[Tile] = []
        if screens:
            main_screen = screens[-1][1]
            others = [i for _, i in screens[:-1]]
            strip_h = _even(canvas.height / STRIP_FRACTION)
            people = [(p, cameras.get(p)) for p in present]
            strip_items: list[tuple[str, int | None]] = [(tracks[i].participant, i) for i in others] + people
            if strip_items:
                main = Cell(0, 0, canvas.width, canvas.height - strip_h)
                cells = strip_cells(len(strip_items), Cell(0, canvas.height - strip_h, canvas.width, strip_h))
                tiles.extend(Tile(p, c, i) for (p, i), c in zip(strip_items, cells, strict=False))
            else:
                main = full
            tiles.insert(0, Tile(tracks[main_screen].participant, main, main_screen))
        else:
            shown = present[:MAX_GRID_TILES]
            tiles = [Tile(p, c, cameras.get(p)) for p, c in zip(shown, grid_cells(len(shown), full), strict=True)]
        segments.append(Segment(start, end, tuple(tiles)))
    return segments


def _ts(t: float) -> str:
    return f"{t:.6f}".rstrip("0").rstrip(".") or "0"


def compose_command(
    manifest: Manifest, directory: Path, output: Path, canvas: Canvas | None = None, *, ffmpeg: str = "ffmpeg"
) -> list[str]:
    """The ffmpeg argv that renders ``manifest`` (track files in ``directory``) to ``output`` (MP4)."""
    canvas = canvas or Canvas()
    segments = layout(manifest, canvas)
    duration = segments[-1].end
    tracks = manifest.tracks
    used_video = sorted({tile.track for s in segments for tile in s.tiles if tile.track is not None})
    audio = [i for i, t in enumerate(tracks) if not t.is_video]
    inputs: list[int] = used_video + audio  # ffmpeg input index → track index
    argv = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    for i in inputs:
        if tracks[i].is_video:
            # Keep one filter graph when a sender changes resolution mid-call; scale adapts per frame.
            argv += ["-reinit_filter", "0"]
        argv += ["-i", str(directory / tracks[i].file)]
    graph: list[str] = []
    fps = canvas.fps
    uses: dict[int, list[int]] = {i: [] for i in used_video}
    for k, seg in enumerate(segments):
        for tile in seg.tiles:
            if tile.track is not None:
                uses[tile.track].append(k)
    for n, i in enumerate(inputs):
        t = tracks[i]
        if not t.is_video:
            continue
        branches = len(uses[i])
        head = f"[{n}:v]setpts=PTS-STARTPTS+{_ts(t.start)}/TB,fps={fps}"
        if branches == 1:
            graph.append(f"{head}[v{i}s{uses[i][0]}]")
        else:
            graph.append(f"{head},split={branches}" + "".join(f"[v{i}s{k}]" for k in uses[i]))
    for k, seg in enumerate(segments):
        base = f"color=c={BACKGROUND}:s={canvas.width}x{canvas.height}:r={fps}:d={_ts(seg.duration)}"
        for tile in seg.tiles:
            if tile.track is None:
                c = tile.cell
                base += f",drawbox=x={c.x + 4}:y={c.y + 4}:w={c.w - 8}:h={c.h - 8}:color={PLACEHOLDER}:t=fill"
        graph.append(f"{base}[s{k}b0]")
        label = f"s{k}b0"
        overlays = [(tile.cell, tile.track) for tile in seg.tiles if tile.track is not None]
        for j, (c, i) in enumerate(overlays):
            graph.append(
                f"[v{i}s{k}]trim=start={_ts(seg.start)}:end={_ts(seg.end)},setpts=PTS-{_ts(seg.start)}/TB,"
                f"scale=w={c.w}:h={c.h}:force_original_aspect_ratio=decrease:force_divisible_by=2"
                f":flags=bilinear[s{k}t{j}]"
            )
            graph.append(
                f"[{label}][s{k}t{j}]overlay=x={c.x}+({c.w}-w)/2:y={c.y}+({c.h}-h)/2"
                f":eval=frame:eof_action=pass:repeatlast=0[s{k}b{j + 1}]"
            )
            label = f"s{k}b{j + 1}"
        graph.append(f"[{label}]null[seg{k}]")
    if len(segments) == 1:
        graph.append("[seg0]null[vout]")
    else:
        graph.append("".join(f"[seg{k}]" for k in range(len(segments))) + f"concat=n={len(segments)}:v=1:a=0[vout]")
    if audio:
        labels = []
        for n, i in enumerate(inputs):
            t = tracks[i]
            if t.is_video:
                continue
            delay = round(t.start * 1000)
            graph.append(
                f"[{n}:a]asetpts=PTS-STARTPTS,aresample=48000:async=1:first_pts=0,"
                f"aformat=sample_fmts=fltp:channel_layouts=stereo,adelay=delays={delay}:all=1[a{i}]"
            )
            labels.append(f"[a{i}]")
        mix = f"amix=inputs={len(labels)}:duration=longest:dropout_transition=0:normalize=0," if len(labels) > 1 else ""
        graph.append("".join(labels) + f"{mix}apad=whole_dur={_ts(duration)}[aout]")
    else:
        graph.append(f"anullsrc=r=48000:cl=stereo,atrim=end={_ts(duration)}[aout]")
    argv += ["-filter_complex", ";".join(graph), "-map", "[vout]", "-map", "[aout]"]
    argv += ["-c:v", "libx264", "-preset", canvas.preset, "-crf", str(canvas.crf), "-pix_fmt", "yuv420p"]
    argv += ["-r", str(fps), "-c:a", "aac", "-b:a", canvas.audio_bitrate, "-ac", "2", "-ar", "48000"]
    if canvas.threads:
        argv += ["-threads", str(canvas.threads)]
    argv += ["-t", _ts(duration), "-movflags", "+faststart", str(output)]
    return argv


def thumbnail_command(video: Path, output: Path, *, at: float, width: int = 320, ffmpeg: str = "ffmpeg") -> list[str]:
    """Grab one frame at ``at`` seconds, scaled to ``width`` (JPEG)."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        _ts(max(0.0, at)),
        "-i",
        str(video),
        "-frames:v",
        "1",
        "-vf",
        f"scale={width}:-2",
        "-q:v",
        "4",
        str(output),
    ]


def probe_command(path: Path, *, ffprobe: str = "ffprobe") -> list[str]:
    return [
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,codec_name",
        "-of",
        "json",
        str(path),
    ]
