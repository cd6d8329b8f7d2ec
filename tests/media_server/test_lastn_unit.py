"""Last-N selection (media_server/lastn.py) and the microphone gate of the Forwarder."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from ms_helpers import new_pc
from room_harness import Publication, RoomHarness

from media_server.forwarder import Downstream, ExtensionIds, Forwarder
from media_server.lastn import AudioSelector, SpeakerOrder, default_last_n, effective_last_n, select_video
from media_server.rtputil import codec_key

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


@dataclass(frozen=True)
class T:
    participant: str
    source: str = "camera"


def names(tracks: list[T]) -> list[str]:
    return [f"{t.participant}:{t.source}" for t in tracks]


ROOM = [T("a"), T("b"), T("c"), T("d"), T("e"), T("me")]


@pytest.mark.parametrize(("size", "expected"), [(2, None), (6, None), (7, 9), (20, 9), (21, 6), (100, 6)])
def test_default_last_n_by_room_size(size: int, expected: int | None) -> None:
    assert default_last_n(size) == expected


def test_room_setting_overrides_the_default() -> None:
    assert effective_last_n(2, 3) == 2
    assert effective_last_n(None, 50) == 6
    assert effective_last_n(0, 50) == 0


def test_all_video_without_n_but_never_your_own() -> None:
    assert names(select_video(ROOM, subscriber="me", speakers=[], last_n=None)) == [
        "a:camera",
        "b:camera",
        "c:camera",
        "d:camera",
        "e:camera",
    ]


def test_most_recent_speakers_fill_n() -> None:
    chosen = select_video(ROOM, subscriber="me", speakers=["d", "me", "b", "a"], last_n=2)
    assert names(chosen) == ["d:camera", "b:camera"]  # "me" spoke but is skipped


def test_never_speakers_follow_in_track_order() -> None:
    assert names(select_video(ROOM, subscriber="me", speakers=["c"], last_n=3)) == ["c:camera", "a:camera", "b:camera"]


def test_pinned_come_first_and_count_towards_n() -> None:
    chosen = select_video(ROOM, subscriber="me", speakers=["a", "b"], pinned=["e"], last_n=2)
    assert names(chosen) == ["e:camera", "a:camera"]


def test_more_pins_than_n_are_all_shown() -> None:
    chosen = select_video(ROOM, subscriber="me", speakers=["a"], pinned=["e", "d", "c"], last_n=1)
    assert names(chosen) == ["e:camera", "d:camera", "c:camera"]


def test_screen_shares_always_and_outside_n() -> None:
    tracks = [*ROOM, T("c", "screen"), T("me", "screen")]
    chosen = select_video(tracks, subscriber="me", speakers=["a"], last_n=0)
    assert names(chosen) == ["c:screen"]
    chosen = select_video(tracks, subscriber="me", speakers=["a"], last_n=1)
    assert names(chosen) == ["c:screen", "a:camera"]


def test_pinning_an_absent_participant_takes_no_place() -> None:
    chosen = select_video(ROOM, subscriber="me", speakers=["a", "b"], pinned=["ghost"], last_n=2)
    assert names(chosen) == ["a:camera", "b:camera"]


def test_speaker_order_recent_first_then_join_order() -> None:
    order = SpeakerOrder()
    for p in ("a", "b", "c"):
        order.add(p)
    assert order.order() == ["a", "b", "c"]
    assert order.spoke("c") is True
    assert order.spoke("c") is False  # already first: nothing changes
    assert order.spoke("b") is True
    assert order.order() == ["b", "c", "a"]
    order.add("b")  # a known participant keeps its place
    order.remove("c")
    assert order.order() == ["b", "a"]


LOUD, SILENT = 20, 127


def test_audio_admits_a_new_speaker_on_its_first_loud_packet() -> None:
    audio = AudioSelector(limit=2)
    assert audio.feed("a", SILENT, 0.0) == (None, None)  # silence never admits
    assert audio.feed("a", LOUD, 0.02) == ("a", None)
    assert audio.feed("a", LOUD, 0.04) == (None, None)  # already audible
    assert audio.feed("b", LOUD, 0.04) == ("b", None)
    assert audio.audible == {"a", "b"}


def test_audio_replaces_a_member_gone_quiet_at_once() -> None:
    audio = AudioSelector(limit=2)
    t = 0.0
    for _ in range(20):
        t += 0.02
        audio.feed("a", LOUD, t)
        audio.feed("b", LOUD, t)
    for _ in range(20):  # b stops talking (its packets carry silence)
        t += 0.02
        audio.feed("a", LOUD, t)
        audio.feed("b", SILENT, t)
    assert audio.feed("c", LOUD, t + 0.02) == ("c", "b")  # the first packet: no switch latency
    assert audio.audible == {"a", "c"}


def test_audio_keeps_the_loudest_few_when_more_talk() -> None:
    audio = AudioSelector(limit=2)
    t = 0.0
    for _ in range(50):
        t += 0.02
        audio.feed("a", 20, t)
        audio.feed("b", 30, t)
    assert audio.audible == {"a", "b"}
    for _ in range(5):  # a quieter third talker never gets in
        t += 0.02
        audio.feed("a", 20, t)
        audio.feed("b", 30, t)
        assert audio.feed("c", 50, t) == (None, None)
    admitted = []
    for _ in range(50):  # a louder third one does, replacing the quietest
        t += 0.02
        audio.feed("a", 20, t)
        audio.feed("b", 30, t)
        admitted.append(audio.feed("d", 5, t))
    assert ("d", "b") in admitted
    assert audio.audible == {"a", "d"}


def test_audio_member_without_packets_is_replaced() -> None:
    audio = AudioSelector(limit=1)
    for i in range(20):
        audio.feed("a", LOUD, i * 0.02)
    assert audio.feed("b", LOUD, 0.5) == (None, None)  # a is still talking (recently)
    assert audio.feed("b", LOUD, 2.0) == ("b", "a")  # a went away (no levels for > 1 s)
    assert audio.remove("b") is True
    assert audio.remove("b") is False


def audio_packet(seq: int, level: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=5, payload=b"\xfc\x00")
    p.extensions.audio_level = (True, level)
    return p


def test_gated_microphone_drops_packets_and_resumes_without_a_sequence_gap() -> None:
    sent: list[bytes] = []
    d = Downstream(kind="audio", ssrc=7, rtx_ssrc=8, send=lambda b: sent.append(b) or True, initial_sequence=10)
    d.configure(pt_by_codec={codec_key(OPUS): 100}, rtx_pt_by_pt={}, ext_ids=ExtensionIds(audio_level=1))
    d.ready = True
    levels: list[int] = []
    f = Forwarder(kind="audio", request_keyframe=lambda: None, on_audio_level=levels.append)
    f.attach(d)
    f.on_rtp(audio_packet(2, LOUD), OPUS)
    assert len(sent) == 1
    f.set_audible(False)
    for seq in range(3, 50):
        f.on_rtp(audio_packet(seq, SILENT), OPUS)
    assert len(sent) == 1 and len(levels) == 48  # levels are still measured while gated
    f.set_audible(True)
    f.on_rtp(audio_packet(50, LOUD), OPUS)
    seqs = [struct.unpack_from("!H", b, 2)[0] for b in sent]
    assert seqs[1] == (seqs[0] + 1) & 0xFFFF  # continuous: the subscriber sees no loss
    untagged = RtpPacket(payload_type=111, sequence_number=51, timestamp=0, ssrc=5, payload=b"\xfc")
    f.set_audible(False)
    f.on_rtp(untagged, OPUS)
    assert len(sent) == 3  # a packet without a level cannot be judged: never gated


@dataclass(frozen=True)
class M:
    participant: str
    source: str = "camera"
    kind: str = "video"


def test_needs_offer_only_for_a_camera_the_subscriber_is_shown_and_that_has_sent() -> None:
    from media_server.lastn import needs_offer

    a, b, c = M("a"), M("b"), M("c")
    mic_c, screen_c = M("c", "microphone", "audio"), M("c", "screen")
    sent = {a, b}
    shown = {a, b, c}

    def due(t: M) -> bool:
        return t in sent

    assert not needs_offer(negotiated={a, b}, desired=[a, b], shown=shown, due=due)  # nothing changed
    # a camera nobody is shown, or one that has sent nothing yet: no offer of its own
    assert not needs_offer(negotiated={a}, desired=[a, b], shown={a}, due=due)
    assert not needs_offer(negotiated={a, b}, desired=[a, b, c], shown=shown, due=due)
    assert needs_offer(negotiated={a}, desired=[a, b], shown=shown, due=due)  # shown and sending
    assert needs_offer(negotiated={a}, desired=[a, b], shown=None, due=due)  # None: every video is shown
    # anything else without an m-line, or a negotiated track no longer desired: an offer, as always
    assert needs_offer(negotiated={a, b}, desired=[a, b, mic_c], shown=shown, due=due)
    assert needs_offer(negotiated={a, b}, desired=[a, b, screen_c], shown=set(), due=due)
    assert needs_offer(negotiated={a, b}, desired=[a], shown=shown, due=due)


def test_max_video_mlines_is_configurable() -> None:
    from media_server.config import ConfigError, parse_config

    assert parse_config(["--dev"], env={}).max_video_mlines == 16
    assert parse_config(["--dev"], env={"MEDIA_MAX_VIDEO_MLINES": "4"}).max_video_mlines == 4
    assert parse_config(["--dev", "--max-video-mlines", "2"], env={}).max_video_mlines == 2
    for bad in ("0", "many"):
        with pytest.raises(ConfigError):
            parse_config(["--dev"], env={"MEDIA_MAX_VIDEO_MLINES": bad})


def test_audio_pool_gives_audible_microphones_a_line_and_otherwise_keeps_the_mapping() -> None:
    from media_server.lastn import audio_pool

    everyone = ["a", "b", "c", "d", "e", "f"]
    # first offer: nobody heard yet, speaker order
    assert audio_pool(bound=[], audible=[], candidates=everyone, size=3) == ["a", "b", "c"]
    # e is heard: it takes the line of the holder forwarded least recently (c), the others stay put
    assert audio_pool(bound=["a", "b", "c"], audible=["e"], candidates=everyone, size=3) == ["e", "a", "b"]
    # nothing changes while the audible ones already hold lines (no needless re-mapping)
    assert audio_pool(bound=["e", "a", "b"], audible=["e", "a"], candidates=everyone, size=3) == ["e", "a", "b"]
    # a holder who left is replaced from the candidates in order; audible beyond the size: the first ones
    assert audio_pool(bound=["x", "a"], audible=[], candidates=everyone, size=3) == ["a", "b", "c"]
    assert audio_pool(bound=[], audible=["f", "e", "d"], candidates=everyone, size=2) == ["f", "e"]


def test_max_audio_mlines_is_configurable() -> None:
    from media_server.config import ConfigError, parse_config

    assert parse_config(["--dev"], env={}).max_audio_mlines == 6
    assert parse_config(["--dev"], env={"MEDIA_MAX_AUDIO_MLINES": "4"}).max_audio_mlines == 4
    assert parse_config(["--dev", "--max-audio-mlines", "2"], env={}).max_audio_mlines == 2
    for bad in ("0", "x"):
        with pytest.raises(ConfigError, match="MEDIA_MAX_AUDIO_MLINES"):
            parse_config(["--dev"], env={"MEDIA_MAX_AUDIO_MLINES": bad})


@pytest.mark.asyncio
async def test_a_100_person_room_offers_pooled_lines_well_under_the_socket_sdp_limit_and_joins_reoffer_nobody() -> None:
    """Default bounds: 6 microphone and 6 camera m-lines for 99 others; the offer fits the room socket's SDP limit
    with a wide margin (Chromium's answer to it is smaller still), and a 101st participant changes no m-line."""
    from media_server import aiortc_hooks
    from rooms.socket_protocol import MAX_SDP_CHARS

    aiortc_hooks.set_ice_host_addresses(["127.0.0.1"])
    h = RoomHarness("big")
    for i in range(100):
        h.room.participant(f"p{i}", create=True).publishers["camera"] = Publication(f"p{i}")  # type: ignore[assignment]
    async with h.room.lock:
        sdp, revision, tracks, _ = await h.room.subscribe("p0")
    assert sdp is not None
    assert sum(t.kind == "audio" for t in tracks) == 6 and sum(t.kind == "video" for t in tracks) == 6
    assert len(sdp) < MAX_SDP_CHARS / 2, len(sdp)
    h.clients["p0"] = new_pc()
    await h.answer("p0", sdp, revision)  # answered: the connection is in use, as a browser's would be
    mark = len(h.events)
    await h.publish("p100")  # queues the room's renegotiation and answers whatever it offers
    assert h.offers(mark) == []
    assert len(h.video_mlines("p0")) == 6
    await h.close()
