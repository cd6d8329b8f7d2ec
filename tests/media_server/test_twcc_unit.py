"""Transport-cc feedback parsing (media_server/twcc.py) against hand-built packets."""

from __future__ import annotations

import struct

import pytest

from media_server.twcc import build_feedback, parse_feedback, split_feedback


def _packet(base: int, count: int, reference: int, fb_count: int, chunks: list[int], deltas: bytes) -> bytes:
    """A transport-cc packet written byte by byte (not with build_feedback), padded with the P bit."""
    body = struct.pack("!HH", base, count) + ((reference & 0xFFFFFF) << 8 | fb_count).to_bytes(4, "big")
    body += b"".join(c.to_bytes(2, "big") for c in chunks) + deltas
    pad = -len(body) % 4
    first = 0x8F
    if pad:
        body += bytes(pad - 1) + bytes([pad])
        first |= 0x20
    return bytes([first, 205]) + ((8 + len(body)) // 4).to_bytes(2, "big") + struct.pack("!II", 1, 2) + body


def test_run_length_chunks_with_small_deltas_and_losses() -> None:
    """Run-length chunks: 3 received (1-byte deltas), 2 lost, 1 received; arrival = reference*64ms + deltas*250us."""
    packet = _packet(100, 6, 10, 7, [(1 << 13) | 3, (0 << 13) | 2, (1 << 13) | 1], bytes([4, 0, 255, 8]))
    fb = parse_feedback(packet)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.feedback_count) == (1, 2, 100, 7)
    assert fb.reference_time == pytest.approx(0.64)
    seqs = [s for s, _ in fb.results]
    times = [t for _, t in fb.results]
    assert seqs == [100, 101, 102, 103, 104, 105]
    assert times[3] is None and times[4] is None
    assert times[0] == pytest.approx(0.64 + 0.001)
    assert times[1] == pytest.approx(0.64 + 0.001)
    assert times[2] == pytest.approx(0.64 + 0.001 + 255 * 0.00025)
    assert times[5] == pytest.approx(0.64 + 0.001 + 263 * 0.00025)


def test_one_bit_status_vector() -> None:
    """A 1-bit vector of 14 statuses; the count (10) cuts the symbols the chunk carries beyond it."""
    bits = [1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # the last four are beyond the count
    chunk = 0x8000 | sum(b << (13 - i) for i, b in enumerate(bits))
    fb = parse_feedback(_packet(7, 10, 0, 0, [chunk], bytes([1, 2, 3, 4])))
    got = [(s, None if t is None else round(t / 0.00025)) for s, t in fb.results]
    assert got == [
        (7, 1),
        (8, None),
        (9, 3),
        (10, 6),
        (11, None),
        (12, None),
        (13, None),
        (14, None),
        (15, None),
        (16, 10),
    ]


def test_two_bit_status_vector_with_large_and_negative_deltas() -> None:
    """A 2-bit vector: small, large (2 bytes), negative large, lost; deltas accumulate across them."""
    symbols = [1, 2, 2, 0, 1, 0, 0]
    chunk = 0xC000 | sum(s << (12 - 2 * i) for i, s in enumerate(symbols))
    deltas = bytes([10]) + (4000).to_bytes(2, "big") + (-1000).to_bytes(2, "big", signed=True) + bytes([5])
    fb = parse_feedback(_packet(500, 5, 1, 0, [chunk], deltas))
    ticks = [None if t is None else round((t - 0.064) / 0.00025) for _, t in fb.results]
    assert ticks == [10, 4010, 3010, None, 3015]


def test_sequence_numbers_wrap_and_reference_time_is_signed() -> None:
    packet = _packet(65534, 4, -2, 255, [(1 << 13) | 4], bytes([0, 4, 4, 4]))
    fb = parse_feedback(packet)
    assert [s for s, _ in fb.results] == [65534, 65535, 0, 1]
    assert fb.reference_time == pytest.approx(-0.128)
    assert fb.results[-1][1] == pytest.approx(-0.128 + 12 * 0.00025)
    assert fb.feedback_count == 255


def test_large_run_of_losses_needs_no_deltas() -> None:
    fb = parse_feedback(_packet(0, 8000, 0, 0, [8000], b""))
    assert len(fb.results) == 8000 and all(t is None for _, t in fb.results)


@pytest.mark.parametrize(
    "packet, message",
    [
        (b"\x8f\xcd\x00\x04" + bytes(12), "shorter than 20"),
        (
            _packet(0, 1, 0, 0, [(1 << 13) | 1], b"\x01")[:1] + b"\xc8" + _packet(0, 1, 0, 0, [0x2001], b"\x01")[2:],
            "not a transport-cc",
        ),
        (_packet(0, 3, 0, 0, [(1 << 13) | 3], b"\x01"), "deltas cut short"),
        (_packet(0, 20, 0, 0, [(1 << 13) | 3], b""), "chunks cut short"),
        (_packet(0, 1, 0, 0, [(3 << 13) | 1], b"\x01"), "reserved"),
        (_packet(0, 2, 0, 0, [(2 << 13) | 2], b"\x00\x01\x00"), "deltas cut short"),
    ],
)
def test_malformed_feedback_raises_value_error(packet: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_feedback(packet)


def test_a_length_beyond_the_datagram_is_rejected() -> None:
    packet = _packet(0, 1, 0, 0, [(1 << 13) | 1], b"\x01")
    with pytest.raises(ValueError, match="length exceeds"):
        parse_feedback(packet[:-4])


@pytest.mark.parametrize(
    "deltas",
    [
        [1, 2, None, 300, -5, 0, 255],
        [None] * 20 + [7] * 30,
        [1, None] * 20,
        [4] * 9000,
        [-32768, 32767, None, 0],
    ],
)
def test_build_and_parse_round_trip(deltas: list[int | None]) -> None:
    packet = build_feedback(
        sender_ssrc=9, media_ssrc=8, base_seq=65000, feedback_count=3, reference=1234, deltas=deltas
    )
    assert len(packet) % 4 == 0
    fb = parse_feedback(packet)
    assert [s for s, _ in fb.results] == [(65000 + i) & 0xFFFF for i in range(len(deltas))]
    ticks = 0
    for (_, t), d in zip(fb.results, deltas, strict=True):
        if d is None:
            assert t is None
        else:
            ticks += d
            assert t == pytest.approx(1234 * 0.064 + ticks * 0.00025)


def test_build_rejects_a_delta_beyond_16_bits() -> None:
    with pytest.raises(ValueError):
        build_feedback(sender_ssrc=1, media_ssrc=2, base_seq=0, feedback_count=0, reference=0, deltas=[40000])


def test_split_takes_transport_cc_out_of_a_compound_packet() -> None:
    rr = bytes([0x80, 201, 0, 1]) + (5).to_bytes(4, "big")
    fb1 = build_feedback(sender_ssrc=5, media_ssrc=6, base_seq=1, feedback_count=0, reference=0, deltas=[1, 2])
    remb = bytes([0x8F, 206, 0, 2]) + bytes(8)
    fb2 = build_feedback(sender_ssrc=5, media_ssrc=6, base_seq=3, feedback_count=1, reference=0, deltas=[None])
    found, rest = split_feedback(rr + fb1 + remb + fb2)
    assert found == [fb1, fb2] and rest == rr + remb
    assert split_feedback(rr + remb) == ([], rr + remb)
    truncated = rr + fb1[:-4]
    assert split_feedback(truncated) == ([], truncated)
