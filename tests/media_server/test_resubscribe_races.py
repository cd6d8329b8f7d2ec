"""A client `subscribe` that crosses pending renegotiations (the resubscribe call.js does when a track stays
silent): the new connection carries the current track set, later changes are offered on it, and answers for
the replaced connection are refused (docs/architecture.md, "Known issue")."""

from __future__ import annotations

import asyncio

import pytest
from ms_helpers import AUTH, PublisherClient, SubscriberClient, recv_frames


@pytest.mark.asyncio
async def test_resubscribe_with_an_offer_outstanding_and_a_change_coalesced(media, fake_django) -> None:
    alice = PublisherClient(media.http, "r1", "alice")
    await alice.start()
    old = SubscriberClient(media.http, "r1", "bob")
    await old.start()
    carol = PublisherClient(media.http, "r1", "carol")
    await carol.start()
    outstanding = await fake_django.wait_for(lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob")
    screen = PublisherClient(media.http, "r1", "alice", "screen", audio=False)
    await screen.start()  # coalesced: bob has an offer outstanding
    subscriber = media.service.rooms["r1"].participants["bob"].subscriber
    assert subscriber is not None and subscriber.dirty

    new = SubscriberClient(media.http, "r1", "bob")  # bob resubscribes without answering
    reply = await new.start()
    assert reply["revision"] > outstanding["revision"]
    assert {(t["participant"], t["source"]) for t in reply["tracks"]} == {
        ("alice", "camera"),
        ("alice", "microphone"),
        ("alice", "screen"),
        ("carol", "camera"),
        ("carol", "microphone"),
    }
    stale = await media.http.post(
        "/v1/rooms/r1/participants/bob/subscribe/answer",
        json={"protocol": 1, "sdp": "v=0\r\n", "revision": outstanding["revision"]},
        headers=AUTH,
    )
    assert stale.status == 409
    await recv_frames(new.track("carol", "camera"), 3)
    await recv_frames(new.track("alice", "screen"), 3)

    n = len(fake_django.events)
    resp = await media.http.delete("/v1/rooms/r1/participants/alice/publish/screen", headers=AUTH)
    assert resp.status == 204
    removal = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob", start=n
    )
    assert removal["revision"] == reply["revision"] + 1
    assert ("alice", "screen") not in {(t["participant"], t["source"]) for t in removal["tracks"]}
    await new.answer(removal)
    await recv_frames(new.track("carol", "camera"), 3)
    await asyncio.gather(alice.close(), screen.close(), carol.close(), old.close(), new.close())
