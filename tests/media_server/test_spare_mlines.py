"""Spare m-lines (issue 19 item 2): a subscribe offer negotiates a few m-lines of each kind ahead, and a track
that appears later (someone joins, shares a screen) is mapped onto one without a re-offer; the client learns
the mapping from ``forwarded_tracks``. A subscriber is re-offered only when its spares of a kind ran out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio
from ms_helpers import AUTH, PublisherClient, SubscriberClient, recv_frames
from room_harness import RoomHarness

from media_server import aiortc_hooks, lastn
from media_server.config import ConfigError, parse_config


@pytest_asyncio.fixture
async def harness() -> Any:
    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    made: list[RoomHarness] = []

    def make(**config: Any) -> RoomHarness:
        made.append(RoomHarness(**{"spare_mlines": 2, **config}))  # the measured setting; the default is 0
        return made[-1]

    yield make
    for h in made:
        await h.close()


async def join(h: RoomHarness, participant: str) -> None:
    """Publish a camera (on: it sends at the next look) + microphone, subscribe, let the camera send."""
    publication = await h.publish(participant)
    await h.subscribe(participant)
    publication.camera_on = True
    h.look_at_cameras()
    await h.settle()


async def leave(h: RoomHarness, participant: str) -> None:
    """``Room.leave`` of a connection-less participant (its publication has no connection to close)."""

    async def close_publisher(p: Any, publisher: Any, reason: str, renegotiate: bool = True) -> None:
        p.publishers.pop("camera", None)

    h.room._close_publisher = close_publisher  # type: ignore[method-assign]
    async with h.room.lock:
        await h.room.leave(participant)
    await h.settle()


def offered(h: RoomHarness, since: int) -> list[str]:
    return sorted(e["participant"] for e in h.offers(since))


def lines(h: RoomHarness, participant: str) -> dict[str, tuple[int, int, int]]:
    """kind -> (m-lines, carrying a track, spare) of ``participant``'s subscribe connection."""
    subscriber = h.room.participants[participant].subscriber
    assert subscriber is not None
    return {
        kind: (
            sum(1 for s in subscriber.slots if s.kind == kind),
            sum(1 for s in subscriber.slots if s.kind == kind and s.track is not None),
            subscriber.spare_lines(kind),
        )
        for kind in ("audio", "video")
    }


def last_forwarded(h: RoomHarness, participant: str) -> dict[str, Any]:
    return [e for e in h.events if e["type"] == "forwarded_tracks" and e["participant"] == participant][-1]


@pytest.mark.asyncio
async def test_joins_into_a_small_room_map_onto_spare_lines_and_re_offer_only_when_they_run_out(harness) -> None:
    """Two spares of each kind (the default): the second join gives the first participant its first offer
    (two lines + two spares a kind); the next two joins re-offer nobody (microphone and camera mapped onto
    spares, the mapping in forwarded_tracks); the fifth re-offers only the two whose spares are used up."""
    h = harness()
    await join(h, "p0")
    mark = len(h.events)
    await join(h, "p1")
    assert offered(h, mark) == ["p0"]  # its first offer (it had nothing to receive)
    assert lines(h, "p0") == {"audio": (3, 1, 2), "video": (3, 1, 2)}
    for newcomer, others in (("p2", ["p0", "p1"]), ("p3", ["p0", "p1", "p2"])):
        mark = len(h.events)
        await join(h, newcomer)
        assert offered(h, mark) == [], newcomer
        for other in others:
            event = last_forwarded(h, other)
            mapped = {(t["participant"], t["source"]) for t in event["audio"] + event["video"]}
            assert {(newcomer, "microphone"), (newcomer, "camera")} <= mapped, (newcomer, other)
    assert lines(h, "p0") == {"audio": (3, 3, 0), "video": (3, 3, 0)}
    assert lines(h, "p2") == {"audio": (4, 3, 1), "video": (4, 3, 1)}  # its own offer: 2 others + 2 spares
    mark = len(h.events)
    await join(h, "p4")
    assert offered(h, mark) == ["p0", "p1"]  # out of spares: a re-offer, which restores two of each
    assert lines(h, "p0") == {"audio": (6, 4, 2), "video": (6, 4, 2)}
    assert lines(h, "p2")["audio"] == (4, 4, 0)


@pytest.mark.asyncio
async def test_a_spare_line_is_not_in_the_offer_tracks_and_a_mapped_one_is_in_the_next_offer(harness) -> None:
    """Spares are sendonly m-lines no offer's ``tracks`` lists (clients ignore them); a line mapped meanwhile is
    listed under its mid in the next offer, the same mid forwarded_tracks gave."""
    h = harness()
    await join(h, "p0")
    await join(h, "p1")
    offer = h.offers(0)[-1]
    assert offer["participant"] == "p0"
    assert offer["sdp"].count("m=audio") == 3 and offer["sdp"].count("m=video") == 3
    assert offer["sdp"].count("a=sendonly") == 6 and "a=inactive" not in offer["sdp"]
    assert {(t["participant"], t["source"]) for t in offer["tracks"]} == {("p1", "microphone"), ("p1", "camera")}
    await join(h, "p2")
    mapped = {(t["participant"], t["source"]): t["mid"] for t in [*last_forwarded(h, "p0")["audio"]]}
    assert set(mapped) == {("p1", "microphone"), ("p2", "microphone")}
    mark = len(h.events)
    await join(h, "p3")
    await join(h, "p4")  # p0 is re-offered now
    reoffer = next(e for e in h.offers(mark) if e["participant"] == "p0")
    listed = {(t["participant"], t["source"]): t["mid"] for t in reoffer["tracks"]}
    assert listed[("p2", "microphone")] == mapped[("p2", "microphone")]
    assert len(listed) == 8  # four others' microphones and cameras; the two spares of each kind unlisted


@pytest.mark.asyncio
async def test_a_leave_re_offers_nobody_and_its_lines_carry_the_next_join(harness) -> None:
    """A leave frees its lines at every subscriber as spares without an offer (forwarded_tracks no longer lists
    them; the client drops the leaver on participant_left); the next join is mapped onto them, no offer."""
    h = harness()
    for i in range(4):
        await join(h, f"p{i}")
    before = {t["mid"] for t in last_forwarded(h, "p0")["audio"] + last_forwarded(h, "p0")["video"]}
    mark = len(h.events)
    await leave(h, "p2")
    assert offered(h, mark) == []
    event = last_forwarded(h, "p0")
    assert all(t["participant"] != "p2" for t in event["audio"] + event["video"])
    assert lines(h, "p0") == {"audio": (3, 2, 1), "video": (3, 2, 1)}
    mark = len(h.events)
    await join(h, "p5")
    assert offered(h, mark) == []
    after = {t["mid"] for t in last_forwarded(h, "p0")["audio"] + last_forwarded(h, "p0")["video"]}
    assert after == before  # p5 on the lines p2 had


@pytest.mark.asyncio
async def test_a_leave_tells_each_client_which_mids_are_spare_now_so_none_stays_the_leavers(harness) -> None:
    """The forwarded_tracks after a leave lists the leaver's freed mids in ``spare`` (the client forgets whom
    they carried: its mapping from the forwarded_tracks that put the leaver there would otherwise stand, and the
    leaver's silent stream stay attributed to them) and the connection's offer revision (a client ignores the
    events of an older connection)."""
    h = harness()
    for i in range(4):
        await join(h, f"p{i}")
    event = last_forwarded(h, "p0")
    had = {t["mid"] for t in event["audio"] + event["video"] if t["participant"] == "p2"}
    assert len(had) == 2
    await leave(h, "p2")
    event = last_forwarded(h, "p0")
    assert had <= set(event["spare"])
    assert not {t["mid"] for t in event["audio"] + event["video"]} & set(event["spare"])
    subscriber = h.room.participants["p0"].subscriber
    assert subscriber is not None and event["revision"] == subscriber.revision
    assert event["connection"] == subscriber.connection  # the revision alone restarts with a rejoin
    mark = len(h.events)
    await join(h, "p5")  # mapped onto those spares: listed, no longer spare
    event = last_forwarded(h, "p0")
    assert offered(h, mark) == []
    assert had == {t["mid"] for t in event["audio"] + event["video"] if t["participant"] == "p5"}
    assert not had & set(event["spare"])


@pytest.mark.asyncio
async def test_a_leave_while_an_offer_is_outstanding_frees_the_lines_with_the_next_offer(harness) -> None:
    """p0's offer is unanswered when p2 leaves: nothing is released under it (its answer could not be matched);
    once answered, p0 is re-offered without p2, and the forwarded_tracks after that lists p2's mids as spare."""
    h = harness()
    for i in range(4):
        await join(h, f"p{i}")
    event = last_forwarded(h, "p0")
    had = {t["mid"] for t in event["audio"] + event["video"] if t["participant"] == "p2"}
    p0 = h.room.participants["p0"]
    async with h.room.lock:
        await h.room._renegotiate(p0, reoffer=True)  # e.g. a pin that needed a line
    mark = len(h.events)
    await leave(h, "p2")
    [reoffer] = h.offers(mark)
    assert reoffer["participant"] == "p0" and all(t["participant"] != "p2" for t in reoffer["tracks"])
    event = last_forwarded(h, "p0")
    assert h.events.index(event) > h.events.index(reoffer)
    assert all(t["participant"] != "p2" for t in event["audio"] + event["video"])
    assert had <= set(event["spare"]) and event["revision"] == reoffer["revision"]


@pytest.mark.asyncio
async def test_a_leave_of_someone_whose_video_was_paused_still_tells_the_client(harness) -> None:
    """Pooled microphones (re-mapped without an event) and a last-N that pauses the leaver's camera at p4 (its
    first offer carried every camera): the leave changes nothing p4 is fed with, yet the camera's line became a
    spare, and p4 must learn that its mid is no longer the leaver's."""
    h = harness(max_video_mlines=16, max_audio_mlines=2)
    h.room.last_n = 1
    for i in range(5):
        await join(h, f"p{i}")
    subscriber = h.room.participants["p4"].subscriber
    assert subscriber is not None and subscriber.audio_pooled
    paused = [s for s in subscriber.slots if s.kind == "video" and s.answered is not None and subscriber.paused(s)]
    assert paused, "a camera paused by last-N at p4"
    leaver = paused[0].answered
    assert leaver is not None
    mid = paused[0].transceiver.mid
    mark = len(h.events)
    await leave(h, leaver.participant)
    assert "p4" not in offered(h, mark)
    assert subscriber.spare_lines("video") >= 1 and paused[0].spare
    told = [e for e in h.events[mark:] if e["type"] == "forwarded_tracks" and e["participant"] == "p4"]
    assert told and mid in told[-1]["spare"]


@pytest.mark.asyncio
async def test_a_newcomer_gets_a_spare_that_never_carried_anyone_before_a_leavers_line(harness) -> None:
    """p0 has one untouched spare of each kind and the lines p2's leave freed: p3 goes on the untouched ones (the
    browser's receiver on p2's old mid still holds p2's last frame), and p2's lines wait for p2."""
    h = harness()
    for i in range(3):
        await join(h, f"p{i}")
    assert lines(h, "p0") == {"audio": (3, 2, 1), "video": (3, 2, 1)}
    event = last_forwarded(h, "p0")
    had = {t["mid"] for t in event["audio"] + event["video"] if t["participant"] == "p2"}
    await leave(h, "p2")
    untouched = set(last_forwarded(h, "p0")["spare"]) - had
    assert len(untouched) == 2
    mark = len(h.events)
    await join(h, "p3")
    assert offered(h, mark) == []
    event = last_forwarded(h, "p0")
    assert {t["mid"] for t in event["audio"] + event["video"] if t["participant"] == "p3"} == untouched
    assert had <= set(event["spare"])


@pytest.mark.asyncio
async def test_someone_who_comes_back_gets_the_lines_they_had(harness) -> None:
    """A reload: p1 leaves and publishes again under the same ID. Its new tracks go on the lines it had (the
    client may still map those mids to it), not on another spare, so no mid is mapped to it twice."""
    h = harness()
    for i in range(3):
        await join(h, f"p{i}")
    had = {(t["participant"], t["source"]): t["mid"] for t in last_forwarded(h, "p0")["audio"]}
    had |= {(t["participant"], t["source"]): t["mid"] for t in last_forwarded(h, "p0")["video"]}
    await leave(h, "p1")
    assert lines(h, "p0")["audio"][2] == 2  # its line and the spare that was left
    mark = len(h.events)
    await join(h, "p1")
    assert offered(h, mark) == []
    event = last_forwarded(h, "p0")
    now = {(t["participant"], t["source"]): t["mid"] for t in event["audio"] + event["video"]}
    assert now[("p1", "microphone")] == had[("p1", "microphone")]
    assert now[("p1", "camera")] == had[("p1", "camera")]


@pytest.mark.asyncio
async def test_without_spares_every_join_re_offers_everyone_and_freed_lines_go_inactive(harness) -> None:
    """MEDIA_SPARE_MLINES=0: the behaviour before spares."""
    h = harness(spare_mlines=0)
    for i in range(3):
        await join(h, f"p{i}")
    mark = len(h.events)
    await join(h, "p3")
    assert offered(h, mark) == ["p0", "p1", "p2"]
    assert lines(h, "p0") == {"audio": (3, 3, 0), "video": (3, 3, 0)}
    mark = len(h.events)
    await leave(h, "p3")
    offers = h.offers(mark)
    assert offers and all("a=inactive" in e["sdp"] for e in offers)


@pytest.mark.asyncio
async def test_a_camera_that_is_off_keeps_its_spare_until_its_first_packet(harness) -> None:
    """A joining camera that sends nothing takes no spare (as it forced no offer before); its first packet
    maps it, with no offer."""
    h = harness()
    await join(h, "p0")
    await join(h, "p1")
    publication = await h.publish("p2")  # camera off
    await h.subscribe("p2")
    h.look_at_cameras()
    await h.settle()
    assert lines(h, "p0")["video"] == (3, 1, 2)
    assert lines(h, "p0")["audio"] == (3, 2, 1)
    mark = len(h.events)
    publication.camera_on = True
    h.look_at_cameras()
    await h.settle()
    assert offered(h, mark) == []
    assert lines(h, "p0")["video"] == (3, 2, 1)
    assert ("p2", "camera") in {(t["participant"], t["source"]) for t in last_forwarded(h, "p0")["video"]}


@pytest.mark.asyncio
async def test_spares_never_exceed_the_m_line_bounds(harness) -> None:
    """With MEDIA_MAX_VIDEO_MLINES / MEDIA_MAX_AUDIO_MLINES 2 (the browser tests' stack) an offer has at most
    two lines of a kind besides those it must carry."""
    h = harness(max_video_mlines=2, max_audio_mlines=2)
    await join(h, "p0")
    await join(h, "p1")
    assert lines(h, "p0") == {"audio": (2, 1, 1), "video": (2, 1, 1)}
    mark = len(h.events)
    await join(h, "p2")
    assert offered(h, mark) == []  # mapped onto the one spare of each kind
    assert lines(h, "p0") == {"audio": (2, 2, 0), "video": (2, 2, 0)}


def test_spare_lines_policy() -> None:
    assert lastn.spare_lines(used=1, bound=16, spare=2) == 2
    assert lastn.spare_lines(used=15, bound=16, spare=2) == 1
    assert lastn.spare_lines(used=16, bound=16, spare=2) == 0
    assert lastn.spare_lines(used=20, bound=16, spare=2) == 0
    assert lastn.spare_lines(used=1, bound=16, spare=0) == 0
    assert lastn.spare_lines(used=6, bound=16, spare=2, pooled=True) == 0  # large rooms re-map, as before


def test_lines_due_is_what_needs_offer_would_offer_for() -> None:
    class T:
        def __init__(self, participant: str, source: str, kind: str) -> None:
            self.participant, self.source, self.kind = participant, source, kind

    mic, cam, off, screen = (
        T("a", "microphone", "audio"),
        T("a", "camera", "video"),
        T("b", "camera", "video"),
        T("c", "screen", "video"),
    )
    due = lambda t: t is cam  # noqa: E731
    assert lastn.lines_due(negotiated=set(), desired=[mic, cam, off, screen], shown=None, due=due) == [mic, cam, screen]
    assert lastn.lines_due(negotiated={mic}, desired=[mic, cam], shown=set(), due=due) == []
    assert not lastn.needs_offer(negotiated={mic}, desired=[mic, cam], shown=set(), due=due)
    assert lastn.needs_offer(negotiated={mic, off}, desired=[mic], shown=None, due=due)  # a track went


def test_spare_mlines_is_configurable() -> None:
    assert parse_config(["--dev"], env={}).spare_mlines == 0  # off until the browser suite passes with it
    assert parse_config(["--dev"], env={"MEDIA_SPARE_MLINES": "2"}).spare_mlines == 2
    assert parse_config(["--dev"], env={"MEDIA_SPARE_MLINES": "0"}).spare_mlines == 0
    assert parse_config(["--dev", "--spare-mlines", "4"], env={}).spare_mlines == 4
    for bad in ("-1", "x"):
        with pytest.raises(ConfigError, match="MEDIA_SPARE_MLINES"):
            parse_config(["--dev"], env={"MEDIA_SPARE_MLINES": bad})


@pytest.mark.asyncio
@pytest.mark.parametrize("media", [{"spare_mlines": 2}], indirect=True)
async def test_a_joiner_mapped_onto_spare_lines_is_received_and_decodes_without_a_re_offer(media, fake_django) -> None:
    """aiortc end to end: bob subscribed with alice's tracks (and spares); carol joins: bob gets no offer,
    forwarded_tracks maps carol's camera and microphone onto spare mids, and both decode there (the spare's
    SSRC was announced; the first picture is a keyframe); carol leaves: no offer either."""
    alice = PublisherClient(media.http, "r1", "alice")
    await alice.start()
    bob = SubscriberClient(media.http, "r1", "bob")
    first = await bob.start()
    assert {(t["participant"], t["source"]) for t in first["tracks"]} == {("alice", "camera"), ("alice", "microphone")}
    await recv_frames(bob.track("alice", "camera"), 3)
    n = len(fake_django.events)
    carol = PublisherClient(media.http, "r1", "carol")
    await carol.start()

    def maps_carol(e: dict[str, Any]) -> bool:
        return (
            e["type"] == "forwarded_tracks"
            and e["participant"] == "bob"
            and {("carol", "camera"), ("carol", "microphone")}
            <= {(t["participant"], t["source"]) for t in e["video"] + e["audio"]}
        )

    event = await fake_django.wait_for(maps_carol, start=n)
    mids = {t["mid"] for t in event["video"] + event["audio"] if t["participant"] == "carol"}
    assert not mids & {t["mid"] for t in first["tracks"]}  # spare lines, not listed in the offer
    bob.apply_forwarded(event)
    await recv_frames(bob.track("carol", "camera"), 3)
    await recv_frames(bob.track("carol", "microphone"), 3)
    await asyncio.sleep(0.2)
    assert not [e for e in fake_django.events[n:] if e["type"] == "subscribe_offer" and e["participant"] == "bob"]
    # carol leaves: bob is told by forwarded_tracks (no carol; her mids spare), not re-offered; alice keeps flowing
    n = len(fake_django.events)
    resp = await media.http.delete("/v1/rooms/r1/participants/carol", headers=AUTH)
    assert resp.status == 204
    left = await fake_django.wait_for(
        lambda e: (
            e["type"] == "forwarded_tracks"
            and e["participant"] == "bob"
            and all(t["participant"] != "carol" for t in e["video"] + e["audio"])
        ),
        start=n,
    )
    assert mids <= set(left["spare"])
    bob.apply_forwarded(left)
    assert all(t["participant"] != "carol" for t in bob.tracks)  # nothing attributed to her any more
    await recv_frames(bob.track("alice", "camera"), 3)
    assert not [e for e in fake_django.events[n:] if e["type"] == "subscribe_offer" and e["participant"] == "bob"]
    await asyncio.gather(alice.close(), bob.close(), carol.close())


@pytest.mark.asyncio
async def test_a_pooled_room_gets_no_spare_lines(harness) -> None:
    """Above the bounds (pooled microphones and, with a last-N, pooled video) an offer carries no spare line of
    the pooled kind: a large room's offers are what they were."""
    h = harness(max_video_mlines=2, max_audio_mlines=2)
    h.room.last_n = 1
    for i in range(5):
        await join(h, f"p{i}")
    await join(h, "p5")  # five others: both kinds pooled for its first offer
    subscriber = h.room.participants["p5"].subscriber
    assert subscriber is not None and subscriber.audio_pooled
    assert subscriber.spare_lines("audio") == 0 and subscriber.spare_lines("video") == 0
    assert lines(h, "p5")["audio"] == (2, 2, 0)


@pytest.mark.asyncio
async def test_a_leave_in_a_pooled_room_re_maps_its_pooled_line_as_before(harness) -> None:
    """Pooled microphones (more others than audio lines): the leaver's pooled line is not freed but re-mapped to
    another microphone (rebind_audio), with no offer, as before spares; no microphone goes onto a spare there."""
    h = harness(max_video_mlines=16, max_audio_mlines=2)
    for i in range(5):
        await join(h, f"p{i}")
    subscriber = h.room.participants["p0"].subscriber
    assert subscriber is not None and subscriber.audio_pooled
    mark = len(h.events)
    await leave(h, "p2")
    pool = [t.participant for t in subscriber.pooled_microphones()]
    assert len(pool) == 2 and "p2" not in pool
    assert "p0" not in offered(h, mark)
