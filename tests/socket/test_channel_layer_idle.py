"""The Redis channel layer as configured in settings: an idle consumer's receive outlasts redis-py's read timeout.

redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that
channels_redis blocks in BZPOPMIN; a socket that got no event for 5 s then
raised TimeoutError in its consumer and was closed (and the browser reconnected).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import redis_delete_prefix, redis_test_prefix, redis_test_url

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def main():
    layer = get_channel_layer()
    channel = await layer.new_channel()

    async def later():
        await asyncio.sleep(6.5)  # longer than one BZPOPMIN (5 s) and redis-py's default read timeout (5 s)
        await layer.send(channel, {"type": "late"})

    sender = asyncio.create_task(later())
    message = await asyncio.wait_for(layer.receive(channel), 20)
    await sender
    print(message["type"])
    await layer.close_pools()

asyncio.run(main())
"""


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_a_receive_idle_for_longer_than_five_seconds_still_gets_its_message() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "REDIS_URL": redis_test_url(),
        "CHANNEL_PREFIX": redis_test_prefix("idle"),
    }
    try:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=50
        )
    finally:
        redis_delete_prefix(env["CHANNEL_PREFIX"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "late"
