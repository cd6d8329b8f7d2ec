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
        if media.kind in ("audio", "video") and media.dtls is None:
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
        result[mid] = Negotiated(
            pt_by_codec=pts,
            rtx_pt_by_pt=rtx,
            ext_ids=ExtensionIds(audio_level=ext.get(AUDIO_LEVEL_URI, 0), abs_send_time=ext.get(ABS_SEND_TIME_URI, 0)),
        )
    return result


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
