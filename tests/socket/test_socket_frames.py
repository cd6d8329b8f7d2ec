"""Malformed frames get error frames; nothing crashes the socket or affects the others."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rooms.socket_protocol import MAX_FRAME_CHARS, Liveness, TokenBucket, parse_frame

pytestmark = pytest.mark.django_db(transaction=True)

BAD_FRAMES: list[tuple[Any, str]] = [
    ("{not json", "malformed_json"),
    ("[1, 2, 3]", "invalid_frame"),
    ('"just a string"', "invalid_frame"),
    ("null", "invalid_frame"),
    ({"no": "type"}, "invalid_frame"),
    ({"type": 5}, "invalid_frame"),
    ({"type": "teleport"}, "unknown_type"),
    ({"type": "chat_send"}, "invalid_frame"),
    ({"type": "chat_send", "text": ["x"]}, "invalid_frame"),
    ({"type": "chat_send", "text": "x", "client_id": 7}, "invalid_frame"),
    ({"type": "chat_send", "text": "x", "to": "../../etc"}, "invalid_frame"),
    ({"type": "chat_sync", "after_seq": -1}, "invalid_frame"),
    ({"type": "chat_sync", "after_seq": True}, "invalid_frame"),
    ({"type": "mute_participant", "participantId": "pzzzzzzzzzz", "kind": "smell"}, "invalid_frame"),
    ({"type": "promote", "participantId": "pzzzzzzzzzz", "role": "host"}, "invalid_frame"),
    ({"type": "join", "token": "x"}, "already_joined"),
    ({"type": "chat_send", "text": "x" * (MAX_FRAME_CHARS + 1)}, "frame_too_large"),
    ({"type": "ping", "ref": {"nested": 1}}, "invalid_frame"),
]


async def test_fuzz_bad_frames_get_error_frames_then_chat_still_works_for_everyone(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    fuzzer, _ = await world.member(room)
    await host.expect("participant_joined")
    for n, (frame, code) in enumerate(BAD_FRAMES):
        text = frame if isinstance(frame, str) else json.dumps({**frame, "ref": n} if "ref" not in frame else frame)
        await fuzzer.send(text)
        error = await fuzzer.expect("error")
        assert error["code"] == code, (frame, error)
        echoes_ref = isinstance(frame, dict) and code != "frame_too_large" and "ref" not in frame
        assert error.get("ref") == (n if echoes_ref else None), (frame, error)
    await fuzzer.comm.send_to(bytes_data=b"\x00\x01")
    assert (await fuzzer.expect("error"))["code"] == "invalid_frame"
    await fuzzer.send({"type": "chat_send", "client_id": "ok", "text": "still works"})
    await fuzzer.expect("chat_ack")
    assert (await host.expect("chat_message"))["message"]["text"] == "still works"
    await host.send({"type": "chat_send", "client_id": "h", "text": "me too"})
    await host.expect("chat_ack")
    assert (await fuzzer.expect("chat_message"))["message"]["text"] == "me too"
    await host.nothing()


async def test_client_ping_gets_pong_echoing_ref(world: Any) -> None:
    room = await world.room()
    host, _ = await world.host(room)
    await host.send({"type": "ping", "ref": "abc"})
    assert await host.expect("pong") == {"type": "pong", "ref": "abc"}


def test_parse_frame_keeps_only_known_fields() -> None:
    frame = parse_frame(json.dumps({"type": "chat_send", "text": "hi", "evil": 1, "ref": 2}))
    assert (frame.type, frame.ref, frame.data) == ("chat_send", 2, {"text": "hi", "client_id": "", "to": None})


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=5, burst=10)
    assert all(bucket.take(0.0) for _ in range(10))
    assert not bucket.take(0.0)
    assert bucket.take(0.2)  # one token back after 1/5 s
    assert not bucket.take(0.2)


def test_liveness_pings_after_idle_then_drops_after_silence() -> None:
    live = Liveness(join_timeout=10, ping_after=20, drop_after=45, touch_every=15, opened_at=0, last_heard=0)
    assert live.next_action(9.9)[0] is None
    assert live.next_action(10)[0] == "join_timeout"
    live.mark_joined(1)
    live.heard(1)
    assert live.next_action(16) == ("touch", 0.0)
    assert live.next_action(21) == ("ping", 0.0)
    assert live.next_action(22)[0] is None
    assert live.next_action(31)[0] == "touch"
    live.heard(32)  # the pong
    assert live.next_action(40)[0] is None
    assert live.next_action(77)[0] == "drop"
