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
    # Each connection is named in its offers (a client ignores another one's: revisions restart after a rejoin).
    assert removal["connection"] == reply["connection"] != outstanding["connection"]
    assert ("alice", "screen") not in {(t["participant"], t["source"]) for t in removal["tracks"]}
    await new.answer(removal)
    await recv_frames(new.track("carol", "camera"), 3)
    await asyncio.gather(alice.close(), screen.close(), carol.close(), old.close(), new.close())


@pytest.mark.asyncio
async def test_a_leave_crossing_an_outstanding_offer_never_attaches_the_leavers_tracks_again(
    media, fake_django
) -> None:
    """Spares off (the default): carol joins, so bob is offered her tracks; she leaves before bob answers. His
    answer accepts m-lines for tracks whose publisher is closed: they must not be attached (a keyframe asked of
    a closed receiver) nor reported in a ``forwarded_tracks`` (the page, which forgot carol on
    ``participant_left``, would map her mids again); the coalesced re-offer that follows drops them."""
    alice = PublisherClient(media.http, "r1", "alice")
    await alice.start()
    bob = SubscriberClient(media.http, "r1", "bob")
    await bob.start()
    await recv_frames(bob.track("alice", "camera"), 3)
    n = len(fake_django.events)
    carol = PublisherClient(media.http, "r1", "carol")
    await carol.start()
    outstanding = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob", start=n
    )
    assert ("carol", "camera") in {(t["participant"], t["source"]) for t in outstanding["tracks"]}
    room = media.service.rooms["r1"]
    gone = [t for pub in room.participants["carol"].publishers.values() for t in pub.tracks]
    resp = await media.http.delete("/v1/rooms/r1/participants/carol", headers=AUTH)
    assert resp.status == 204
    left = len(fake_django.events)
    requests = sum(f.keyframe_requests for t in gone for f in t.all_layers)
    await bob.answer(outstanding)
    reoffer = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob", start=left
    )
    assert all(t["participant"] != "carol" for t in reoffer["tracks"])
    reported = [e for e in fake_django.events[left:] if e["type"] == "forwarded_tracks" and e["participant"] == "bob"]
    assert all(t["participant"] != "carol" for e in reported for t in e["video"] + e["audio"]), reported
    assert sum(f.keyframe_requests for t in gone for f in t.all_layers) == requests
    assert not [d for t in gone for f in t.all_layers for d in f.downstreams]
    await bob.answer(reoffer)
    await recv_frames(bob.track("alice", "camera"), 3)
    await asyncio.gather(alice.close(), bob.close(), carol.close())


@pytest.mark.asyncio
async def test_a_screen_share_stopped_while_its_offer_is_outstanding_is_not_reported_after_the_answer(
    media, fake_django
) -> None:
    """The same with an unpublish: bob's answer to the offer that added alice's screen share, sent after she
    stopped it, must not bring back a ``forwarded_tracks`` listing it (the page would show a screen tile with
    a dead track until the re-offer)."""
    alice = PublisherClient(media.http, "r1", "alice")
    await alice.start()
    bob = SubscriberClient(media.http, "r1", "bob")
    await bob.start()
    n = len(fake_django.events)
    screen = PublisherClient(media.http, "r1", "alice", "screen", audio=False)
    await screen.start()
    outstanding = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob", start=n
    )
    assert ("alice", "screen") in {(t["participant"], t["source"]) for t in outstanding["tracks"]}
    resp = await media.http.delete("/v1/rooms/r1/participants/alice/publish/screen", headers=AUTH)
    assert resp.status == 204
    stopped = len(fake_django.events)
    await bob.answer(outstanding)
    reoffer = await fake_django.wait_for(
        lambda e: e["type"] == "subscribe_offer" and e["participant"] == "bob", start=stopped
    )
    assert ("alice", "screen") not in {(t["participant"], t["source"]) for t in reoffer["tracks"]}
    reported = [
        e for e in fake_django.events[stopped:] if e["type"] == "forwarded_tracks" and e["participant"] == "bob"
    ]
    assert all(t["source"] != "screen" for e in reported for t in e["video"]), reported
    await bob.answer(reoffer)
    await recv_frames(bob.track("alice", "camera"), 3)
    await asyncio.gather(alice.close(), screen.close(), bob.close())
