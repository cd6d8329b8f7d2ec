"""Composition: layouts (pure) and real ffmpeg renders of synthetic spools checked by pixels, duration and audio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rec_helpers import audio_rms, is_color, pixel

from recordings.compose import Canvas, Cell, ComposeError, grid_cells, layout
from recordings.spool import ManifestError, manifest_load, manifest_parse
from recordings.synthetic import SynthTrack, two_participants, write_spool
from recordings.transcode import probe, render

CANVAS = Canvas(width=640, height=360, fps=15, preset="ultrafast")


def manifest(tracks: list[dict], duration: float = 10.0) -> dict:
    return {
        "protocol": 1,
        "recording": "rectest",
        "room": "roomx",
        "started_at": 100.0,
        "stopped_at": 100.0 + duration,
        "tracks": tracks,
    }


def track(participant: str, source: str, start: float, end: float, n: int = 0) -> dict:
    kind = "video" if source in ("camera", "screen") else "audio"
    return {
        "file": f"{participant}-{source}-{n}.webm",
        "participant": participant,
        "source": source,
        "kind": kind,
        "codec": "vp8",
        "start": start,
        "end": end,
    }


def test_grid_cells_fill_the_canvas_and_centre_a_partial_last_row():
    full = Cell(0, 0, 1280, 720)
    assert grid_cells(1, full) == [Cell(0, 0, 1280, 720)]
    assert grid_cells(2, full) == [Cell(0, 0, 640, 720), Cell(640, 0, 640, 720)]
    three = grid_cells(3, full)
    assert three[:2] == [Cell(0, 0, 640, 360), Cell(640, 0, 640, 360)] and three[2] == Cell(320, 360, 640, 360)
    assert len(grid_cells(9, full)) == 9 and all(c.w == 426 and c.h == 240 for c in grid_cells(9, full))


def test_layout_follows_who_is_present_over_time():
    m = manifest_parse(
        manifest(
            [
                track("pa", "camera", 0, 10),
                track("pa", "microphone", 0, 10),
                track("pb", "camera", 2, 6),
                track("pc", "microphone", 4, 10),  # heard, never seen: a placeholder tile
            ]
        )
    )
    segments = layout(m, Canvas())
    assert [(s.start, s.end) for s in segments] == [(0, 2), (2, 4), (4, 6), (6, 10)]
    assert [[t.participant for t in s.tiles] for s in segments] == [
        ["pa"],
        ["pa", "pb"],
        ["pa", "pb", "pc"],
        ["pa", "pc"],
    ]
    assert segments[2].tiles[2].track is None and segments[1].tiles[1].track == 2


def test_screen_share_is_large_with_cameras_in_a_strip():
    m = manifest_parse(
        manifest([track("pa", "camera", 0, 10), track("pb", "camera", 0, 10), track("pb", "screen", 3, 8)])
    )
    segments = layout(m, Canvas())
    shared = next(s for s in segments if s.start == 3)
    main, *strip = shared.tiles
    assert main.track == 2 and main.cell == Cell(0, 0, 1280, 576)
    assert [t.participant for t in strip] == ["pa", "pb"] and all(t.cell.h == 144 and t.cell.y == 576 for t in strip)
    assert [len(s.tiles) for s in segments] == [2, 3, 2]


def test_manifest_contract_is_enforced():
    with pytest.raises(ManifestError):
        manifest_parse({**manifest([]), "protocol": 2})
    with pytest.raises(ManifestError):
        manifest_parse(manifest([{**track("pa", "camera", 0, 1), "file": "../etc/passwd"}]))
    with pytest.raises(ManifestError):
        manifest_parse(manifest([{**track("pa", "camera", 0, 1), "kind": "audio"}]))
    with pytest.raises(ManifestError):
        manifest_parse(manifest([]), recording_id="recother")
    clipped = manifest_parse(manifest([track("pa", "camera", -1, 99), track("pb", "camera", 5, 5)], duration=10))
    assert [(t.start, t.end) for t in clipped.tracks] == [(0.0, 10.0)]  # clipped; empty track dropped
    with pytest.raises(ComposeError):
        layout(manifest_parse(manifest([], duration=0)), Canvas())


def test_missing_track_file_is_a_manifest_error(tmp_path: Path):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest([track("pa", "camera", 0, 1)])))
    with pytest.raises(ManifestError, match="missing"):
        manifest_load(tmp_path)


@pytest.mark.ffmpeg
def test_two_participant_recording_renders_both_videos_side_by_side_with_audio(tmp_path: Path):
    """Alice (red) for 6 s, Bob (blue) from 1 s, sending 720p then dropping to 360p mid-call (a WebRTC resize):
    the MP4 lasts the call (±10 %), shows red alone first, then red | blue, and carries both tones."""
    duration = 6.0
    tracks = two_participants(duration, width=640, height=360, fps=15)
    tracks[2].resize_at = 3.5
    spool = tmp_path / "rectwo"
    write_spool(spool, recording="rectwo", room="roomx", duration=duration, tracks=tracks)
    result = render(manifest_load(spool, recording_id="rectwo"), spool, tmp_path / "work", canvas=CANVAS)

    assert abs(result.duration - duration) <= 0.1 * duration
    seconds, kinds = probe(result.video)
    assert kinds == {"video", "audio"} and result.size == result.video.stat().st_size > 0
    left, right = (160, 180), (480, 180)
    alone = pixel(result.video, 0.5, [left, right, (320, 180)])
    assert all(is_color(p, "red") for p in alone), alone  # alone: full frame
    for at in (2.0, 5.0):  # before and after Bob's resolution drop
        both = pixel(result.video, at, [left, right])
        assert is_color(both[0], "red") and is_color(both[1], "blue"), (at, both)
    assert audio_rms(result.video) > 0.05
    assert result.thumbnail.stat().st_size > 0 and result.thumbnail.read_bytes()[:2] == b"\xff\xd8"  # JPEG


@pytest.mark.ffmpeg
def test_h264_mkv_and_screen_share_render(tmp_path: Path):
    """An H.264/Matroska camera and a VP8 screen share: the screen is large, the cameras in the strip below."""
    duration = 4.0
    tracks = [
        SynthTrack("pa", "camera", 0.0, duration, color="red", width=320, height=180, fps=15, codec="h264"),
        SynthTrack("pb", "camera", 0.0, duration, color="blue", width=320, height=180, fps=15),
        SynthTrack("pb", "screen", 1.0, 3.0, color="green", width=640, height=360, fps=5),
        SynthTrack("pb", "screen_audio", 1.0, 3.0, tone_hz=880.0),
    ]
    spool = tmp_path / "recscreen"
    write_spool(spool, recording="recscreen", room="roomx", duration=duration, tracks=tracks)
    result = render(manifest_load(spool), spool, tmp_path / "work", canvas=CANVAS)
    assert abs(result.duration - duration) <= 0.1 * duration
    main, strip_a, strip_b = pixel(result.video, 2.0, [(320, 140), (256, 330), (384, 330)])
    assert is_color(main, "green") and is_color(strip_a, "red") and is_color(strip_b, "blue")
    grid = pixel(result.video, 3.5, [(160, 180), (480, 180)])
    assert is_color(grid[0], "red") and is_color(grid[1], "blue")
