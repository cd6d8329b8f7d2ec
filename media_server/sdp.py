"""SDP helpers: validation, negotiated parameters, NAT address announcement."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiortc.codecs import is_rtx
from aiortc.sdp import SessionDescription

from .forwarder import ExtensionIds
from .protocol import InvalidSdp
from .rtputil import codec_key

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TRANSPORT_CC_ID = 5
"""The extension ID we offer transport-wide-cc with, on every m-line (BUNDLE shares one ID space: aiortc uses
1 mid, 2 audio level, 3 abs-send-time on subscribe connections)."""


def parse_sdp(sdp: str) -> SessionDescription:
    """Parse ``sdp`` or raise InvalidSdp if it does not parse or has no audio/video."""
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidSdp("SDP must start with v=0")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises assorted ValueError/KeyError/IndexError
        raise InvalidSdp(f"SDP does not parse: {exc}") from exc
    if not any(m.kind in ("audio", "video") for m in description.media):
        raise InvalidSdp("SDP has no audio or video media section")
    for media in description.media:
        if media.kind in ("audio", "video") and (media.dtls is None or not media.dtls.fingerprints):
            raise InvalidSdp("SDP media section lacks a DTLS fingerprint", {"mid": media.rtp.muxId})
    return description


@dataclass(frozen=True)
class Negotiated:
    """What one m-line of a subscriber's answer accepted."""

    pt_by_codec: dict[str, int]
    rtx_pt_by_pt: dict[int, int]
    ext_ids: ExtensionIds


def negotiated_by_mid(description: SessionDescription) -> dict[str, Negotiated]:
    """Payload types by codec key, RTX mapping and extension IDs for each mid."""
    result: dict[str, Negotiated] = {}
    for media in description.media:
        mid = media.rtp.muxId
        if mid is None or media.kind not in ("audio", "video"):
            continue
        pts: dict[str, int] = {}
        rtx: dict[int, int] = {}
        for codec in media.rtp.codecs:
            if codec.payloadType is None:
                continue
            if is_rtx(codec):
                apt = codec.parameters.get("apt")
                if isinstance(apt, int):
                    rtx[apt] = codec.payloadType
            else:
                pts.setdefault(codec_key(codec), codec.payloadType)
        ext = {e.uri: e.id for e in media.rtp.headerExtensions}
        # transport-cc needs both the extension and the feedback accepted; without them the browser keeps
        # sending REMB (its receive-side estimate), which stays the fallback.
        feedback = any(fb.type == "transport-cc" for codec in media.rtp.codecs for fb in codec.rtcpFeedback)
        result[mid] = Negotiated(
            pt_by_codec=pts,
            rtx_pt_by_pt=rtx,
            ext_ids=ExtensionIds(
                audio_level=ext.get(AUDIO_LEVEL_URI, 0),
                abs_send_time=ext.get(ABS_SEND_TIME_URI, 0),
                transport_cc=ext.get(TRANSPORT_CC_URI, 0) if feedback else 0,
            ),
        )
    return result


def offer_transport_cc(sdp: str, ext_id: int = TRANSPORT_CC_ID) -> str:
    """Add transport-wide congestion control to a subscribe offer: the header extension and, for every
    codec but RTX, ``a=rtcp-fb:<pt> transport-cc`` (next to its ``a=rtpmap``), on each active audio/video m-line.

    aiortc offers neither (and keeps offering ``goog-remb``: a browser that does not accept transport-cc
    answers without them and goes on sending REMB). An m-line that already has the extension is left alone.
    """
    eol, sections = _sections(sdp)
    out = list(sections[0])
    for section in sections[1:]:
        words = section[0].split()
        if not section[0].startswith(("m=audio", "m=video")) or len(words) < 4 or words[1] == "0":
            out.extend(section)
            continue
        if any(line.startswith("a=extmap:") and line.split(" ", 1)[-1].strip() == TRANSPORT_CC_URI for line in section):
            out.extend(section)
            continue
        rtx = {
            line[9:].split()[0]
            for line in section
            if line.startswith("a=rtpmap:") and line[9:].split()[-1].lower().startswith("rtx/")
        }
        lines: list[str] = []
        extmap_at = -1
        for line in section:
            lines.append(line)
            if line.startswith("a=extmap:"):
                extmap_at = len(lines)
            elif line.startswith("a=rtpmap:"):
                pt = line[9:].split()[0]
                if pt not in rtx:
                    lines.append(f"a=rtcp-fb:{pt} transport-cc")
        ext_line = f"a=extmap:{ext_id} {TRANSPORT_CC_URI}"
        if extmap_at < 0:  # no extension yet: before the first rtpmap (after the m-line's own lines)
            extmap_at = next((i for i, line in enumerate(lines) if line.startswith("a=rtpmap:")), len(lines))
        lines.insert(extmap_at, ext_line)
        out.extend(lines)
    return eol.join(out)


_CANDIDATE_RE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( .*)$", re.MULTILINE)


def announce_addresses(sdp: str, mapping: Mapping[str, str]) -> str:
    """Rewrite host candidates (and c= lines) bound to a private address to its public one."""
    if not mapping:
        return sdp

    def candidate(match: re.Match[str]) -> str:
        return match.group(1) + mapping.get(match.group(2), match.group(2)) + match.group(3)

    sdp = _CANDIDATE_RE.sub(candidate, sdp)
    for bind, public in mapping.items():
        sdp = sdp.replace(f"c=IN IP4 {bind}\r\n", f"c=IN IP4 {public}\r\n")
    return sdp


RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RTP_STREAM_ID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MAX_LAYERS = 3


@dataclass(frozen=True)
class SimulcastOffer:
    """The simulcast a publisher offered on one video m-line (RFC 8853)."""

    rids: tuple[str, ...]
    """Layers in the publisher's order (the clients list them lowest quality first)."""
    rid_ext_id: int
    rrid_ext_id: int = 0


def _sections(sdp: str) -> tuple[str, list[list[str]]]:
    eol = "\r\n" if "\r\n" in sdp else "\n"
    sections: list[list[str]] = [[]]
    for line in sdp.split(eol):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return eol, sections


def simulcast_offers(sdp: str) -> dict[str, SimulcastOffer]:
    """Video m-lines of ``sdp`` (by mid) that offer simulcast we can receive.

    Needs ``a=simulcast:send`` with 2..:data:`MAX_LAYERS` streams, their
    ``a=rid:<id> send`` lines and the rtp-stream-id header extension. Paused
    (``~``) streams and alternatives after the first are ignored; RID
    restrictions (``pt=``, ``max-width=``...) are not enforced. Anything else
    is answered as a single stream (the publisher then sends one layer).
    """
    _, sections = _sections(sdp)
    result: dict[str, SimulcastOffer] = {}
    for section in sections[1:]:
        if not section[0].startswith("m=video"):
            continue
        mid = rid_ext = rrid_ext = None
        send_rids: set[str] = set()
        order: list[str] = []
        for line in section:
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=extmap:"):
                ident, _, uri = line[9:].partition(" ")
                ext_id = ident.split("/")[0]
                if uri.strip() == RTP_STREAM_ID_URI and ext_id.isdigit():
                    rid_ext = int(ext_id)
                elif uri.strip() == REPAIRED_RTP_STREAM_ID_URI and ext_id.isdigit():
                    rrid_ext = int(ext_id)
            elif line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) >= 2 and parts[1] == "send":
                    send_rids.add(parts[0])
            elif line.startswith("a=simulcast:"):
                words = line[12:].split()
                if len(words) >= 2 and words[0] == "send":
                    for stream in words[1].split(";"):
                        first = stream.split(",")[0]
                        if first and not first.startswith("~"):
                            order.append(first)
        rids = tuple(r for r in order if r in send_rids)
        if mid is not None and rid_ext is not None and 2 <= len(rids) <= MAX_LAYERS and len(set(rids)) == len(rids):
            result[mid] = SimulcastOffer(rids=rids, rid_ext_id=rid_ext, rrid_ext_id=rrid_ext or 0)
    return result


def accept_simulcast(answer_sdp: str, offers: Mapping[str, SimulcastOffer]) -> str:
    """Add to our answer what accepts ``offers``: RID extensions, ``a=rid:<id> recv``, ``a=simulcast:recv``.

    aiortc knows neither; without them a browser sends only one layer.
    """
    if not offers:
        return answer_sdp
    eol, sections = _sections(answer_sdp)
    out = list(sections[0])
    for section in sections[1:]:
        mid = next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)
        offer = offers.get(mid or "")
        if offer is None or not section[0].startswith("m=video") or section[0].split()[1] == "0":
            out.extend(section)
            continue
        trailing = []
        while section and section[-1] == "":
            trailing.append(section.pop())
        extra = [f"a=extmap:{offer.rid_ext_id} {RTP_STREAM_ID_URI}"]
        if offer.rrid_ext_id:
            extra.append(f"a=extmap:{offer.rrid_ext_id} {REPAIRED_RTP_STREAM_ID_URI}")
        extra += [f"a=rid:{rid} recv" for rid in offer.rids]
        extra.append("a=simulcast:recv " + ";".join(offer.rids))
        out.extend(section + extra + trailing)
    return eol.join(out)
