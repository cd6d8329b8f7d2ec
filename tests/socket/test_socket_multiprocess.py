"""Presence across two real daphne processes sharing Redis and one database.

Black-box: REST over HTTP, WebSockets with aiohttp's client. The database is
a fresh PostgreSQL database when DATABASE_URL is set, else a SQLite file.
Needs a real Redis (marked ``redis``: deselected outside CI when none is reachable).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import redis_delete_prefix, redis_test_url
from tests.procs import Daphne, WsClient, drop_database, post_json, web_env

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

# Presence settings of both daphnes, short so that a dead process's participant is swept within seconds.
PRESENCE_TIMEOUT_SECONDS = 2
PRESENCE_TOUCH_INTERVAL_SECONDS = 0.3
# docs/protocol.md "Heartbeat and presence": a participant nobody sees any more is marked left by the next tick of a
# live socket of its room once it is PRESENCE_TIMEOUT_SECONDS old, i.e. within this long of its last touch (which
# was before its process died). Measured here: 2.0-2.2 s from the kill, also beside another test worker and a CPU hog.
SWEPT_WITHIN_SECONDS = PRESENCE_TIMEOUT_SECONDS + PRESENCE_TOUCH_INTERVAL_SECONDS
# On top of that, what every other frame in this test may take (WsClient.expect's default): a starved process.
FRAME_WAIT_SECONDS = 10.0


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    redis_url = redis_test_url()
    env = web_env(
        redis_url=redis_url,
        tmp_path=tmp_path,
        PRESENCE_TIMEOUT_SECONDS=str(PRESENCE_TIMEOUT_SECONDS),
        PRESENCE_TOUCH_INTERVAL_SECONDS=str(PRESENCE_TOUCH_INTERVAL_SECONDS),
    )
    yield env
    drop_database(env)
    redis_delete_prefix(env["CHANNEL_PREFIX"])


@pytest.fixture
async def cluster(cluster_env: dict[str, str]) -> AsyncIterator[tuple[Daphne, Daphne, aiohttp.ClientSession]]:
    a, b = Daphne(cluster_env), Daphne(cluster_env)
    http = aiohttp.ClientSession()
    try:
        await asyncio.gather(a.ready(http), b.ready(http))
        yield a, b, http
    finally:
        await http.close()
        a.stop()
        b.stop()
        # Shown by pytest only when the test failed (captured output): what each process logged.
        for name, node in (("A", a), ("B", b)):
            print(f"--- daphne {name} log (last 60 lines) ---\n" + "\n".join(node.log_text().splitlines()[-60:]))


_post = post_json


async def _open(http: aiohttp.ClientSession, node: Daphne, room_id: str, token: str) -> tuple[WsClient, dict[str, Any]]:
    client = await WsClient.open(http, node, room_id)
    return client, await client.join(token)


async def test_presence_and_chat_cross_processes_and_a_killed_process_is_swept(cluster: Any) -> None:
    a, b, http = cluster
    me = await _post(http, a.base + "/api/v1/auth/register", {"username": "mphost", "password": "a-long-pass-987"})
    room = await _post(http, a.base + "/api/v1/rooms", {"name": "Two processes"}, me["access"])
    room_id = room["roomId"]
    host_grant = await _post(http, a.base + f"/api/v1/rooms/{room_id}/join", {}, me["access"])
    host, _ = await _open(http, a, room_id, host_grant["token"])

    guest_grant = await _post(http, b.base + f"/api/v1/rooms/{room_id}/join", {"display_name": "On B"})
    guest, snap = await _open(http, b, room_id, guest_grant["token"])
    assert {p["participantId"] for p in snap["participants"]} == {
        host_grant["participantId"],
        guest_grant["participantId"],
    }
    joined = await host.expect("participant_joined")
    assert joined["participant"]["participantId"] == guest_grant["participantId"]

    await guest.send({"type": "chat_send", "client_id": "x", "text": "hello from B"})
    assert (await guest.expect("chat_ack"))["seq"] == 1
    assert (await host.expect("chat_message"))["message"]["text"] == "hello from B"

    await guest.ws.close()
    left = await host.expect("participant_left")
    assert (left["participantId"], left["reason"]) == (guest_grant["participantId"], "left")

    # A participant on B, then B dies without closing anything: A's live socket sweeps them out.
    doomed_grant = await _post(http, b.base + f"/api/v1/rooms/{room_id}/join", {"display_name": "Doomed"})
    doomed, _ = await _open(http, b, room_id, doomed_grant["token"])
    await host.expect("participant_joined")
    b.stop(signal.SIGKILL)
    left = await host.expect("participant_left", timeout=SWEPT_WITHIN_SECONDS + FRAME_WAIT_SECONDS)
    assert (left["participantId"], left["reason"]) == (doomed_grant["participantId"], "timeout")
    await host.ws.close()
    await doomed.ws.close()
