"""The web process's synchronous Django code runs on its fixed threads (conference/sync_threads.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator

from conference.sync_threads import SyncThreads
from rooms import apis, presence

pytestmark = pytest.mark.django_db(transaction=True)


async def test_http_requests_reuse_the_process_threads_instead_of_one_new_thread_each(
    world: Any, monkeypatch: Any
) -> None:
    """Each request used to get a new thread (and database connection); now they share the process's few."""
    from conference.asgi import application

    room = await world.room()
    threads: list[str] = []
    original = apis._room_id_or_404

    def recording(room_id: str) -> Any:
        threads.append(threading.current_thread().name)
        return original(room_id)

    monkeypatch.setattr(apis, "_room_id_or_404", recording)
    for _ in range(5):
        comm = HttpCommunicator(
            application, "GET", f"/api/v1/rooms/{room.public_id}", headers=[(b"host", b"localhost")]
        )
        response = await comm.get_response(timeout=5)
        assert response["status"] == 200
    assert len(threads) == 5
    assert all(name.startswith("django-sync-") for name in threads), threads
    assert len(set(threads)) == 1  # one after the other: always the least busy, first thread


async def test_socket_database_hops_run_on_the_process_threads(world: Any, monkeypatch: Any) -> None:
    room = await world.room()
    threads: list[str] = []
    original = presence.socket_join

    def recording(**kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(**kwargs)

    monkeypatch.setattr(presence, "socket_join", recording)
    await world.host(room)
    assert len(threads) == 1 and threads[0].startswith("django-sync-"), threads


async def test_concurrent_calls_go_to_different_threads_and_each_runs_on_one_thread() -> None:
    threads = SyncThreads(3)
    started = threading.Barrier(3, timeout=5)

    def work(tag: int) -> tuple[int, str, str]:
        before = threading.current_thread().name
        started.wait()  # all three are in flight at once: deadlocks unless they run on three threads
        return tag, before, threading.current_thread().name

    try:
        results = await asyncio.gather(*(threads.run(work, tag=i) for i in range(3)))
        assert [r[0] for r in results] == [0, 1, 2]
        assert all(before == after for _, before, after in results)
        assert len({name for _, name, _ in results}) == 3
        assert threads.in_flight() == [0, 0, 0]
        # nested thread-sensitive calls inside a hop stay on that hop's thread
        inner = await threads.run(lambda: (threading.current_thread().name, threading.current_thread().name))
        assert inner[0] == inner[1]
        outer = await sync_to_async(threading.current_thread)()
        assert not outer.name.startswith("django-sync-")  # outside a hop: Channels'/asgiref's own thread
    finally:
        threads.close()


def test_at_least_one_thread() -> None:
    with pytest.raises(ValueError):
        SyncThreads(0)
