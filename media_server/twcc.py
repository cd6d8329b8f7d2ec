"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).

Pure functions, no aiortc: a subscriber's browser reports, for every packet
the server stamped with a transport-wide sequence number (``Downstream`` +
``aiortc_hooks.TransportSequence``), when it arrived in the browser's clock or
that it did not. :func:`parse_feedback` decodes one RTCP RTPFB (PT 205) FMT 15
packet into ``(sequence number, arrival time in seconds or None)`` pairs for
the send-side estimator (``media_server/bwe.py``); :func:`split_feedback`
takes those packets out of a compound RTCP packet before aiortc parses the
rest (aiortc knows no FMT 15 and would read its FCI as a NACK list).
:func:`build_feedback` writes the same format (tests; feedback to publishers).

Layout after the 12-byte RTCP feedback header::

    base sequence number (16) | packet status count (16)
    reference time (24, signed, 64 ms units) | feedback packet count (8)
    packet chunks (16 bits each) ... receive deltas (1 or 2 bytes each) ... padding

A chunk is a *run length* chunk (``0 SS LLLLLLLLLLLLL``: L packets of status
SS) or a *status vector* chunk (``1 0`` + 14 one-bit statuses, or ``1 1`` + 7
two-bit statuses). Statuses: 0 not received, 1 received with a one-byte
unsigned delta, 2 received with a two-byte signed delta, 3 reserved. Deltas
are in 250 µs units, the first relative to the reference time, each next one
relative to the previous received packet.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RTPFB = 205
FMT_TRANSPORT_CC = 15
URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
REFERENCE_UNIT = 0.064  # seconds per reference-time unit
DELTA_UNIT = 0.00025  # seconds per receive-delta unit
NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2
MAX_RUN = 0x1FFF  # packets one run-length chunk can cover

_HEAD = struct.Struct("!BBHIIHHI")


@dataclass(frozen=True)
class TransportFeedback:
    """One decoded feedback packet."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    feedback_count: int
    """The browser's 8-bit counter of feedback packets (a gap means a feedback packet was lost)."""
    reference_time: float
    """Seconds in the browser's clock (a multiple of 64 ms)."""
    results: list[tuple[int, float | None]]
    """(16-bit transport-wide sequence number, arrival time in seconds in the browser's clock or None if lost),
    one per reported packet in sequence order (wrapping from 65535 to 0)."""


def parse_feedback(packet: bytes) -> TransportFeedback:
    """Decode one transport-cc RTCP packet (header included); raises ValueError if it is malformed.

    Statuses after the announced packet status count (a last chunk may cover more) are ignored; a
    reserved status (3), a chunk list or delta list cut short, or a length that disagrees with the
    RTCP header are errors.
    """
    if len(packet) < 20:
        raise ValueError("transport-cc feedback shorter than 20 bytes")
    first, pt, words, sender_ssrc, media_ssrc, base_seq, count, ref = _HEAD.unpack_from(packet)
    if first >> 6 != 2 or pt != RTPFB or first & 0x1F != FMT_TRANSPORT_CC:
        raise ValueError("not a transport-cc feedback packet (RTPFB FMT 15)")
    end = (words + 1) * 4
    if end > len(packet):
        raise ValueError("transport-cc feedback length exceeds the packet")
    if first & 0x20:  # padding: its last byte says how much
        pad = packet[end - 1]
        if pad == 0 or pad > end - 20:
            raise ValueError("transport-cc feedback padding is invalid")
        end -= pad
    reference = ref >> 8
    if reference & 0x800000:
        reference -= 0x1000000
    statuses: list[int] = []
    pos = 20
    while len(statuses) < count:
        if pos + 2 > end:
            raise ValueError("transport-cc feedback: packet chunks cut short")
        chunk = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
        if not chunk & 0x8000:  # run length
            run = chunk & MAX_RUN
            statuses.extend([(chunk >> 13) & 3] * min(run, count - len(statuses)))
        elif not chunk & 0x4000:  # 14 one-bit statuses
            statuses.extend((chunk >> (13 - i)) & 1 for i in range(14))
        else:  # 7 two-bit statuses
            statuses.extend((chunk >> (12 - 2 * i)) & 3 for i in range(7))
    del statuses[count:]
    results: list[tuple[int, float | None]] = []
    ticks = 0
    for i, status in enumerate(statuses):
        seq = (base_seq + i) & 0xFFFF
        if status == NOT_RECEIVED:
            results.append((seq, None))
            continue
        if status == SMALL_DELTA:
            if pos + 1 > end:
                raise ValueError("transport-cc feedback: receive deltas cut short")
            ticks += packet[pos]
            pos += 1
        elif status == LARGE_DELTA:
            if pos + 2 > end:
                raise ValueError("transport-cc feedback: receive deltas cut short")
            ticks += int.from_bytes(packet[pos : pos + 2], "big", signed=True)
            pos += 2
        else:
            raise ValueError("transport-cc feedback: reserved packet status 3")
        results.append((seq, reference * REFERENCE_UNIT + ticks * DELTA_UNIT))
    return TransportFeedback(
        sender_ssrc=sender_ssrc,
        media_ssrc=media_ssrc,
        base_seq=base_seq,
        feedback_count=ref & 0xFF,
        reference_time=reference * REFERENCE_UNIT,
        results=results,
    )


def split_feedback(compound: bytes) -> tuple[list[bytes], bytes]:
    """(transport-cc packets, the rest of the compound packet) of plaintext RTCP ``compound``.

    Walks the packets by their length fields only; if a length runs past the end, the remainder is left
    in the rest untouched (the RTCP parser reports it as it always did).
    """
    found: list[bytes] = []
    rest: list[bytes] = []
    pos, n = 0, len(compound)
    while pos + 4 <= n:
        end = pos + ((compound[pos + 2] << 8 | compound[pos + 3]) + 1) * 4
        if end > n:
            break
        if compound[pos + 1] == RTPFB and compound[pos] & 0x1F == FMT_TRANSPORT_CC:
            found.append(compound[pos:end])
        else:
            rest.append(compound[pos:end])
        pos = end
    if not found:
        return found, compound
    rest.append(compound[pos:])
    return found, b"".join(rest)


def _symbol(delta: int | None) -> int:
    if delta is None:
        return NOT_RECEIVED
    return SMALL_DELTA if 0 <= delta <= 0xFF else LARGE_DELTA


def build_feedback(
    *,
    sender_ssrc: int,
    media_ssrc: int,
    base_seq: int,
    feedback_count: int,
    reference: int,
    deltas: Sequence[int | None],
) -> bytes:
    """One transport-cc packet: ``deltas[i]`` is packet ``base_seq + i``'s receive delta in 250 µs units
    (from the previous received packet, the first from ``reference`` * 64 ms), None if not received.

    Chunks: a run-length chunk for a run of 7 or more equal statuses, else a one-bit status vector when
    the next 14 statuses are all 0/1, else a two-bit vector. Deltas outside -32768..32767 raise ValueError.
    """
    symbols = [_symbol(d) for d in deltas]
    chunks: list[int] = []
    i = 0
    while i < len(symbols):
        run = 1
        while i + run < len(symbols) and symbols[i + run] == symbols[i] and run < MAX_RUN:
            run += 1
        if run >= 7:
            chunks.append((symbols[i] << 13) | run)
            i += run
            continue
        window = symbols[i : i + 14]
        if len(window) == 14 and max(window) <= 1:
            chunks.append(0x8000 | sum(s << (13 - k) for k, s in enumerate(window)))
            i += 14
            continue
        window = symbols[i : i + 7]
        chunks.append(0xC000 | sum(s << (12 - 2 * k) for k, s in enumerate(window)))
        i += 7
    body = bytearray(
        struct.pack("!HHI", base_seq & 0xFFFF, len(deltas), ((reference & 0xFFFFFF) << 8) | feedback_count & 0xFF)
    )
    for chunk in chunks:
        body += struct.pack("!H", chunk)
    for delta, symbol in zip(deltas, symbols, strict=True):
        if symbol == SMALL_DELTA:
            body.append(delta)  # type: ignore[arg-type]
        elif symbol == LARGE_DELTA:
            if not -0x8000 <= delta <= 0x7FFF:  # type: ignore[operator]
                raise ValueError(f"receive delta {delta} does not fit in 16 bits")
            body += struct.pack("!h", delta)
    pad = -len(body) % 4
    first = 0x80 | FMT_TRANSPORT_CC
    if pad:
        body += bytes(pad - 1) + bytes([pad])
        first |= 0x20
    length = (8 + len(body)) // 4
    return struct.pack("!BBHII", first, RTPFB, length, sender_ssrc, media_ssrc) + bytes(body)


RING = 2048  # send records kept until the estimator drains them (~2 s of a busy subscriber)


class TransportSequence:
    """The transport-wide sequence numbers of one subscribe connection (``_sfu_native.TransportSequence`` is
    the C twin: same bytes, same records).

    The forwarder reserves the slot (element ``id``, two bytes, first in the extension block) when the
    subscriber negotiated transport-cc; the connection's send path calls :meth:`stamp` on every packet it
    actually sends (after the pacer: numbers follow the wire order, as libwebrtc numbers at pacer egress).
    Each stamped packet is recorded as (seq, size, send time, probe cluster or -1) for :meth:`drain`.
    """

    def __init__(self, *, id: int = 0, next_seq: int = 1, clock: Callable[[], float] | None = None) -> None:
        self._id = 0
        self.id = id
        self.next_seq = next_seq & 0xFFFF
        self.cluster = -1
        self.clock = clock
        self.dropped = 0
        self._records: deque[tuple[int, int, float, int]] = deque()

    @property
    def id(self) -> int:
        """The transport-wide-cc extension ID (1..14; 0: stamp nothing)."""
        return self._id

    @id.setter
    def id(self, value: int) -> None:
        if not 0 <= value <= 14:
            raise ValueError("id must be 0..14")
        self._id = value

    @property
    def pending(self) -> int:
        return len(self._records)

    def stamp(self, data: bytes) -> bytes:
        """``data`` with the next sequence number in its slot (recorded), or unchanged if it has no slot."""
        ident = self._id
        if (
            not ident
            or len(data) < 20
            or data[0] & 0x1F != 0x10
            or data[12] != 0xBE
            or data[13] != 0xDE
            or data[16] != (ident << 4) | 1
        ):
            return data
        seq = self.next_seq
        self.next_seq = (seq + 1) & 0xFFFF
        records = self._records
        if len(records) == RING:
            records.popleft()
            self.dropped += 1
        now = time.monotonic() if self.clock is None else self.clock()
        records.append((seq, len(data), now, self.cluster))
        return data[:17] + seq.to_bytes(2, "big") + data[19:]

    def drain(self) -> list[tuple[int, int, float, int]]:
        """The (seq, size, send time, probe cluster or -1) of every packet stamped since the last drain."""
        records = list(self._records)
        self._records.clear()
        return records
