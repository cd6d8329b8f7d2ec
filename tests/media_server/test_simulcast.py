"""Simulcast reception: SDP (offer parsing, answer munging), RID/SSRC routing into per-layer forwarders.

Browsers offer simulcast as ``a=rid``/``a=simulcast`` plus the RID header
extensions (RFC 8851/8852/8853) and no ``a=ssrc`` lines for the layers; aiortc
knows none of it. The offers here are real aiortc offers with those lines
added the way Chromium writes them.
"""

from __future__ import annotations

import struct

import pytest
from aiortc import RTCSessionDescription
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from ms_helpers import PatternVideoTrack, ToneAudioTrack, new_pc

from media_server.config import Config
from media_server.participant import Publisher
from media_server.sdp import (
    REPAIRED_RTP_STREAM_ID_URI,
    RTP_STREAM_ID_URI,
    SimulcastOffer,
    accept_simulcast,
    parse_sdp,
    simulcast_offers,
)

KEY = b"\x10" + b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", 320, 180) + b"\x00" * 8
SIMULCAST_LINES = [
    f"a=extmap:10 {RTP_STREAM_ID_URI}",
    f"a=extmap:11 {REPAIRED_RTP_STREAM_ID_URI}",
    "a=rid:q send",
    "a=rid:h send",
    "a=rid:f send",
    "a=simulcast:send q;h;f",
]


def add_to_video(sdp: str, lines: list[str], *, drop_ssrc: bool = True) -> str:
    """``sdp`` with ``lines`` appended to its video section (and its a=ssrc lines removed, as Chromium does)."""
    out: list[str] = []
    video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            if video:
                out.extend(lines)
            video = line.startswith("m=video")
        if video and drop_ssrc and line.startswith(("a=ssrc:", "a=ssrc-group:")):
            continue
        out.append(line)
    if video:
        if out and out[-1] == "":
            out.pop()
            out.extend([*lines, ""])
        else:
            out.extend(lines)
    return "\r\n".join(out)


async def client_offer() -> tuple[str, object]:
    pc = new_pc()
    pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
    pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp, pc


@pytest.mark.asyncio
async def test_simulcast_offer_is_parsed_lowest_first() -> None:
    sdp, pc = await client_offer()
    try:
        offers = simulcast_offers(add_to_video(sdp, SIMULCAST_LINES))
        assert offers == {"0": SimulcastOffer(rids=("q", "h", "f"), rid_ext_id=10, rrid_ext_id=11)}
        assert simulcast_offers(sdp) == {}
        # without the RID extension, a single stream, or paused/alternative entries
        assert simulcast_offers(add_to_video(sdp, SIMULCAST_LINES[2:])) == {}
        one = [*SIMULCAST_LINES[:3], "a=simulcast:send q"]
        assert simulcast_offers(add_to_video(sdp, one)) == {}
        paused = [*SIMULCAST_LINES[:5], "a=simulcast:send q,x;~h;f"]
        assert simulcast_offers(add_to_video(sdp, paused))["0"].rids == ("q", "f")
    finally:
        await pc.close()  # type: ignore[attr-defined]


def test_accept_simulcast_adds_rid_lines_to_the_answer_video_section() -> None:
    answer = "v=0\r\ns=-\r\nm=audio 9 x 111\r\na=mid:1\r\nm=video 9 x 96\r\na=mid:0\r\na=sendrecv\r\n"
    munged = accept_simulcast(answer, {"0": SimulcastOffer(rids=("q", "f"), rid_ext_id=10, rrid_ext_id=11)})
    video = munged.split("m=video")[1]
    assert f"a=extmap:10 {RTP_STREAM_ID_URI}\r\n" in video
    assert f"a=extmap:11 {REPAIRED_RTP_STREAM_ID_URI}\r\n" in video
    assert "a=rid:q recv\r\na=rid:f recv\r\na=simulcast:recv q;f\r\n" in video
    assert "rid" not in munged.split("m=video")[0]
    assert munged.endswith("\r\n")
    assert accept_simulcast(answer, {}) == answer


@pytest.mark.asyncio
async def test_publisher_accepts_simulcast_and_routes_each_rid_to_its_layer(media_config: Config) -> None:
    sdp, client = await client_offer()
    publisher = Publisher(participant="p1", name="camera", config=media_config)
    try:
        answer = await publisher.accept(add_to_video(sdp, SIMULCAST_LINES), None)
        parse_sdp(answer)
        assert "a=simulcast:recv q;h;f" in answer and "a=rid:h recv" in answer
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))  # type: ignore[attr-defined]
        video = next(t for t in publisher.tracks if t.kind == "video")
        audio = next(t for t in publisher.tracks if t.kind == "audio")
        assert len(video.layers) == 3 and video.forwarder is video.layers[-1] and video.all_layers == video.layers
        assert audio.layers == () and audio.all_layers == (audio.forwarder,)

        hook = video.receiver
        vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
        rtx = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})
        await hook._receive(RTCRtpReceiveParameters(codecs=[vp8, rtx], muxId="0"))

        # The transport now parses the RID extensions the answer accepted.
        sender_map = HeaderExtensionsMap()
        sender_map.configure(
            RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=10, uri=RTP_STREAM_ID_URI)])
        )
        wire = RtpPacket(payload_type=96, sequence_number=1, timestamp=1, ssrc=111, payload=KEY)
        wire.extensions.rtp_stream_id = "h"
        parsed = RtpPacket.parse(wire.serialize(sender_map), hook.receiver.transport._rtp_header_extensions_map)
        assert parsed.extensions.rtp_stream_id == "h"

        def rtp(ssrc: int, seq: int, rid: str | None = None) -> RtpPacket:
            p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=ssrc, payload=KEY)
            p.extensions.rtp_stream_id = rid
            return p

        hook.handle_rtp(rtp(111, 1, "q"), 0)
        hook.handle_rtp(rtp(333, 1, "f"), 0)
        hook.handle_rtp(rtp(111, 2), 0)  # the RID is only on a stream's first packets: the SSRC is known now
        hook.handle_rtp(rtp(999, 1), 0)  # unknown SSRC without a RID: cannot be placed, dropped
        assert [f.packets_in for f in video.layers] == [2, 0, 1]
        assert hook.layer_ssrcs == {111: 0, 333: 2}

        repair = RtpPacket(payload_type=97, sequence_number=7, timestamp=3000, ssrc=444, payload=b"\x00\x02" + KEY)
        repair.extensions.repaired_rtp_stream_id = "f"
        hook.handle_rtp(repair, 0)  # RTX of layer f: unwrapped to its media SSRC
        assert [f.packets_in for f in video.layers] == [2, 0, 2] and hook.rtx_ssrc[444] == 333
        hook.handle_rtp(repair, 0)  # the same again (a padding probe): repairs nothing, not forwarded
        assert [f.packets_in for f in video.layers] == [2, 0, 2] and hook.rtx_duplicates == 1

        hook.handle_rtp(rtp(555, 9, "q"), 0)  # the publisher restarted layer q with a new SSRC
        assert hook.layer_ssrcs == {333: 2, 555: 0}
        assert hook.request_keyframe(1) is False  # layer h never arrived: nothing to ask
    finally:
        await publisher.close()
        await client.close()  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_publisher_without_simulcast_is_answered_and_forwarded_as_before(media_config: Config) -> None:
    sdp, client = await client_offer()
    publisher = Publisher(participant="p1", name="camera", config=media_config)
    try:
        answer = await publisher.accept(sdp, None)
        assert "a=simulcast" not in answer and "a=rid:" not in answer
        assert all(t.layers == () and t.receiver.simulcast is None for t in publisher.tracks)
    finally:
        await publisher.close()
        await client.close()  # type: ignore[attr-defined]
