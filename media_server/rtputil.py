"""Byte-level RTP helpers for the forwarding hot path (no aiortc internals)."""

from __future__ import annotations

import struct

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

RTP_HEADER = struct.Struct("!BBHII")
"""V/P/X/CC, M/PT, sequence number, timestamp, SSRC (12 bytes)."""

U16 = struct.Struct("!H")


def codec_key(codec: RTCRtpCodecParameters) -> str:
    """Key under which two codecs are interchangeable for forwarding.

    H.264 streams are only interchangeable within one packetization mode and
    profile (profile_idc + constraint flags; the level may differ).
    """
    mime = codec.mimeType.lower()
    if mime == "video/h264":
        mode = str(codec.parameters.get("packetization-mode", "0"))
        profile = str(codec.parameters.get("profile-level-id", "42001f"))[:4].lower()
        return f"{mime};{mode};{profile}"
    return mime


def one_byte_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """Serialize RFC 8285 one-byte header extensions (0xBEDE profile), padded."""
    if not elements:
        return b""
    body = b"".join(bytes([(ext_id << 4) | (len(value) - 1)]) + value for ext_id, value in elements)
    body += b"\x00" * (-len(body) % 4)
    return b"\xbe\xde" + U16.pack(len(body) // 4) + body


_NTP_EPOCH = 2208988800


def abs_send_time(wall: float) -> int:
    """The 24-bit abs-send-time value (6.18 fixed-point seconds) of wall-clock time ``wall`` (``time.time()``)."""
    return int((wall + _NTP_EPOCH) * 262144) & 0xFFFFFF


def set_abs_send_time(packet: bytes, ext_id: int, value: int) -> bytes:
    """``packet`` (serialized RTP, no CSRCs) with its one-byte abs-send-time element ``ext_id`` set to ``value``.

    Unchanged when it carries no such element (``ext_id`` 0, no extension block, two-byte profile).
    """
    if not ext_id or not packet[0] & 0x10 or packet[0] & 0x0F or packet[12:14] != b"\xbe\xde":
        return packet
    end = min(len(packet), 16 + 4 * U16.unpack_from(packet, 14)[0])
    pos = 16
    while pos < end:
        element = packet[pos]
        if element == 0:  # padding
            pos += 1
            continue
        element_id, size = element >> 4, (element & 0x0F) + 1
        if element_id == 15:
            break
        if element_id == ext_id:
            if size != 3 or pos + 4 > end:
                break
            return packet[: pos + 1] + value.to_bytes(3, "big") + packet[pos + 4 :]
        pos += 1 + size
    return packet


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 RTP payload starts a keyframe (RFC 7741)."""
    if len(payload) < 1:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x07):  # S bit set and partition 0
        return False
    i = 1
    if b0 & 0x80:  # X: extended control bits
        if len(payload) < 2:
            return False
        x = payload[1]
        i = 2
        if x & 0x80:  # I: picture ID
            if len(payload) <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            i += 1
        if x & 0x30:  # T or K: TID/KEYIDX byte
            i += 1
    return len(payload) > i and not (payload[i] & 0x01)


def _vp8_descriptor_size(payload: bytes) -> int:
    """Length of the VP8 payload descriptor at the start of ``payload`` (RFC 7741 section 4.2)."""
    i = 1
    if payload[0] & 0x80:
        x = payload[1]
        i = 2
        if x & 0x80:
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return i


def rtp_header_len(packet: bytes) -> int:
    """Length of a serialized RTP packet's fixed header plus its header extension block (no CSRCs)."""
    return 12 + (4 + 4 * U16.unpack_from(packet, 14)[0] if packet[0] & 0x10 else 0)


def vp8_descriptor_ids(payload: bytes) -> tuple[int, int, int, int]:
    """(picture ID, its modulus, TL0PICIDX, TID) from a VP8 payload descriptor (RFC 7741 section 4.2).

    The modulus is 0x8000 (15-bit M form) or 0x80 (7-bit); the others are -1
    (modulus 0) where the descriptor does not carry them.
    """
    if len(payload) < 3 or not payload[0] & 0x80:
        return -1, 0, -1, -1
    x = payload[1]
    i = 2
    pid, modulus = -1, 0
    if x & 0x80:
        if payload[2] & 0x80:
            if len(payload) < 4:
                return -1, 0, -1, -1
            pid, modulus, i = ((payload[2] & 0x7F) << 8) | payload[3], 0x8000, 4
        else:
            pid, modulus, i = payload[2], 0x80, 3
    tl0 = -1
    if x & 0x40:
        tl0 = payload[i] if len(payload) > i else -1
        i += 1
    tid = payload[i] >> 6 if x & 0x20 and len(payload) > i else -1
    return pid, modulus, tl0, tid


def vp8_picture_ids(payload: bytes) -> tuple[int, int, int]:
    """(picture ID, its modulus, TL0PICIDX) of a VP8 payload (see :func:`vp8_descriptor_ids`)."""
    return vp8_descriptor_ids(payload)[:3]


def vp8_temporal_id(payload: bytes) -> int:
    """The VP8 payload descriptor's temporal layer index (TID), or -1 if it carries none."""
    return vp8_descriptor_ids(payload)[3]


def rewrite_vp8_picture_ids(payload: bytes, pid_delta: int, tl0_delta: int) -> bytes:
    """``payload`` with its picture ID and TL0PICIDX moved by the deltas (each wraps in its own width).

    A media server that switches a subscriber between simulcast layers must do
    this: each layer numbers its pictures on its own, and a receiver that sees
    picture IDs jump back takes the new layer's pictures for ones it already
    decoded and drops them (Chromium: "already received, dropping frame"),
    then waits for a keyframe.
    """
    pid, modulus, tl0 = vp8_picture_ids(payload)
    if pid < 0 and tl0 < 0:
        return payload
    if modulus == 0x8000:
        new_pid = (pid + pid_delta) & 0x7FFF
        head = bytes((payload[0], payload[1], 0x80 | (new_pid >> 8), new_pid & 0xFF))
    elif modulus == 0x80:
        head = bytes((payload[0], payload[1], (pid + pid_delta) & 0x7F))
    else:
        head = payload[:2]
    if tl0 >= 0:
        head += bytes(((tl0 + tl0_delta) & 0xFF,))
    return head + payload[len(head) :]


def vp8_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from the first packet of a VP8 keyframe, or None if it does not carry them.

    Reads the keyframe header after the payload descriptor (RFC 6386 9.1):
    3-byte frame tag, start code 9d 01 2a, 14-bit width and height. An
    end-to-end encrypted frame may hide them: then the start code does not match.
    """
    try:
        i = _vp8_descriptor_size(payload)
    except IndexError:
        return None
    header = payload[i : i + 10]
    if len(header) < 10 or header[0] & 0x01 or header[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(header[6:8], "little") & 0x3FFF
    height = int.from_bytes(header[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


def is_h264_keyframe_start(payload: bytes) -> bool:
    """True if this H.264 RTP payload carries an IDR slice or SPS start (RFC 6184)."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: scan aggregated NAL units
        i = 1
        while i + 2 < len(payload):
            size = U16.unpack_from(payload, i)[0]
            if size == 0 or i + 2 >= len(payload):
                break
            if payload[i + 2] & 0x1F in (5, 7):
                return True
            i += 2 + size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A start fragment
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in (5, 7)
    return False


def is_keyframe_start(codec_mime: str, payload: bytes) -> bool:
    """Dispatch on codec; audio packets are always a valid start."""
    mime = codec_mime.lower()
    if mime == "video/vp8":
        return is_vp8_keyframe_start(payload)
    if mime == "video/h264":
        return is_h264_keyframe_start(payload)
    return not mime.startswith("video/")
