"""What a subscriber is told about its bandwidth: videos paused or reduced for it, never a camera that is off."""

from __future__ import annotations

import time

import pytest
from test_layers_unit import simulcast_slot

from media_server import bandwidth_report
from media_server.bandwidth_report import LIMITED, LOW, PAUSED, REDUCED, link_state, track_reasons
from media_server.config import Config
from media_server.layers import VideoDemand
from media_server.participant import Subscriber

THREE_LAYERS = VideoDemand(costs=[100_000.0, 500_000.0, 1_500_000.0], heights=[180, 360, 720])


def test_a_video_below_its_best_is_reduced_and_one_without_a_level_is_paused() -> None:
    assert track_reasons([THREE_LAYERS, THREE_LAYERS], [2, 1]) == [None, REDUCED]
    assert track_reasons([THREE_LAYERS, THREE_LAYERS], [0, None]) == [REDUCED, PAUSED]


def test_a_camera_that_sends_nothing_has_no_reason() -> None:
    """Camera off: the publisher sends no layer; the allocator gives it none, but not for bandwidth."""
    off = VideoDemand(costs=[None, None, None])
    assert track_reasons([off], [None]) == [None]


def test_the_best_is_what_the_tile_can_use_and_what_the_publisher_sends() -> None:
    small_tile = VideoDemand(costs=THREE_LAYERS.costs, heights=THREE_LAYERS.heights, max_height=360)
    assert track_reasons([small_tile], [1]) == [None]  # 360p fills the tile: nothing reduced
    top_stopped = VideoDemand(costs=[100_000.0, 500_000.0, None], heights=[180, 360, None])
    assert track_reasons([top_stopped], [1]) == [None]  # the publisher itself dropped its top layer


def test_the_link_state_sums_the_reasons_up() -> None:
    assert link_state([]) == "good"
    assert link_state([None, REDUCED]) == LIMITED
    assert link_state([REDUCED, PAUSED, None]) == LOW


@pytest.mark.asyncio
async def test_the_subscriber_reports_a_paused_and_a_reduced_video_and_clears_them_when_the_link_recovers(
    media_config: Config,
) -> None:
    sub = Subscriber(participant="s", config=media_config, speaker=lambda: "a")
    changes: list[dict[str, object]] = []
    sub.on_forwarding_changed = lambda: changes.append(sub.bandwidth())
    try:
        simulcast_slot(sub, "a")
        simulcast_slot(sub, "b")
        off, off_layers = simulcast_slot(sub, "c")
        for f in off_layers:  # camera off: nothing arrives from it, for longer than MEASURE_AFTER
            f.bitrate = lambda now: 0.0  # type: ignore[method-assign]
            f.created -= 10
            f._heard_at -= 10  # and no packet for 10 s: a stopped layer (layers.layer_stopped), not a slow one
        now = time.monotonic()
        sub.estimate.on_remb(90_000, now)  # under LOW_VIDEO_BUDGET: only the speaker's (a) thinnest level
        sub.adapt(now)
        report = sub.bandwidth()
        assert report["state"] == LOW and report["estimate_bps"] == 90_000
        assert {(t["participant"], t["reason"]) for t in report["tracks"]} == {("a", REDUCED), ("b", PAUSED)}
        assert len(changes) == 1 and changes[0] == report
        assert off.target is None  # c is given nothing, and is not said to be paused for bandwidth
        sub.adapt(now + 0.5)
        assert len(changes) == 1  # the same reasons: no new event
        sub.estimate.on_remb(5_000_000, now + 1)  # room for both at 720p
        sub.estimate.decreased_at = -1e9
        for step in range(40):  # up one level at a time, each after the gate's hold
            sub.adapt(now + 1 + step)
        assert sub.bandwidth() == {"state": "good", "estimate_bps": 5_000_000, "tracks": []}
        assert changes[-1]["state"] == "good"
    finally:
        await sub.close()


def test_the_report_key_ignores_the_estimate() -> None:
    track = {"mid": "1", "participant": "a", "pc": "camera", "source": "camera", "kind": "video"}
    limited = [bandwidth_report.LimitedTrack(track=track, reason=PAUSED)]
    assert bandwidth_report.bandwidth_json(100_000, limited)["tracks"] == [{**track, "reason": PAUSED}]
    assert bandwidth_report.report_key(limited) == ("1:a:paused_bandwidth",)
