"""rooms.signal_lanes.Lanes: in order within a lane, concurrently across lanes, bounded, closed cleanly."""

from __future__ import annotations

import asyncio

from rooms.signal_lanes import Lanes


def job(log: list[str], name: str, gate: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    async def run() -> None:
        log.append(f"{name} start")
        if gate is not None:
            await gate.wait()
        log.append(f"{name} end")

    return run


async def test_a_lane_runs_its_jobs_in_order_while_another_lane_runs_at_once() -> None:
    lanes, log, gate = Lanes(), [], asyncio.Event()
    assert lanes.submit("camera", job(log, "offer", gate))
    assert lanes.submit("camera", job(log, "candidate"))
    assert lanes.submit("subscribe", job(log, "subscribe"))
    await asyncio.sleep(0.01)
    assert log == ["offer start", "subscribe start", "subscribe end"]  # the candidate waits for its offer
    gate.set()
    await lanes.drain()
    assert log[3:] == ["offer end", "candidate start", "candidate end"]


async def test_a_failing_job_is_logged_and_its_lane_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    lanes, log = Lanes(), []

    async def boom() -> None:
        raise RuntimeError("boom")

    lanes.submit("camera", boom)
    lanes.submit("camera", job(log, "next"))
    await lanes.drain()
    assert log == ["next start", "next end"]
    assert "signaling job in lane camera failed" in caplog.text


async def test_a_full_lane_refuses_more_jobs() -> None:
    lanes, log, gate = Lanes(limit=2), [], asyncio.Event()
    assert lanes.submit("camera", job(log, "running", gate))
    await asyncio.sleep(0)
    assert lanes.submit("camera", job(log, "a")) and lanes.submit("camera", job(log, "b"))
    assert not lanes.submit("camera", job(log, "c"))
    assert lanes.submit("screen", job(log, "other"))  # lanes are bounded one by one
    gate.set()
    await lanes.drain()
    assert "c start" not in log


async def test_close_drops_waiting_jobs_and_waits_for_running_ones() -> None:
    lanes, log, gate = Lanes(), [], asyncio.Event()
    lanes.submit("camera", job(log, "running", gate))
    lanes.submit("camera", job(log, "waiting"))
    await asyncio.sleep(0)
    closing = asyncio.create_task(lanes.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    gate.set()
    await closing
    assert log == ["running start", "running end"]
    assert not lanes.submit("camera", job(log, "late"))
