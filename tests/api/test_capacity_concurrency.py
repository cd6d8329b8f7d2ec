"""Concurrent joins can never exceed a room's capacity (row lock / BEGIN IMMEDIATE)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from conference.errors import Conflict
from rooms import services
from rooms.models import Participant


@pytest.mark.django_db(transaction=True)
def test_concurrent_joins_never_exceed_capacity():
    User = get_user_model()
    host = User.objects.create_user("host", password="x-long-password-1")
    room = services.room_create(host=host, name="race", max_participants=5)
    users = [User.objects.create_user(f"u{i}", password="x-long-password-1") for i in range(20)]
    barrier = threading.Barrier(len(users))
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(user):
        try:
            barrier.wait()
            services.participant_join(room_id=room.public_id, user=user)
            result = "ok"
        except Conflict as exc:
            result = exc.code
        except Exception as exc:  # surfaced by the assertion below
            result = f"error:{type(exc).__name__}:{exc}"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(set(outcomes)) == ["ok", "room_full"], outcomes
    assert outcomes.count("ok") == 5
    assert Participant.objects.filter(room=room, state=Participant.State.ADMITTED).count() == 5
