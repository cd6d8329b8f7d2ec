"""Room IDs: the documented entropy is the real one (issue 18 item 10; the docs said 60 bits, it is 59.45)."""

from __future__ import annotations

import math
from pathlib import Path

from rooms.ids import ALPHABET, ROOM_ID_LENGTH, ROOM_ID_RE, new_room_id

ROOT = Path(__file__).resolve().parents[2]


def test_room_id_entropy_matches_the_docs():
    assert len(set(ALPHABET)) == len(ALPHABET) == 31
    assert not set(ALPHABET) & set("ilo01")  # no look-alikes
    bits = ROOM_ID_LENGTH * math.log2(len(ALPHABET))
    assert round(bits, 2) == 59.45
    assert "59.45 bits" in (ROOT / "README.md").read_text()
    assert "59.45 bits" in (ROOT / "rooms" / "ids.py").read_text()


def test_new_room_ids_use_the_whole_alphabet_and_match_the_pattern():
    ids = [new_room_id() for _ in range(400)]
    assert all(ROOM_ID_RE.match(i) for i in ids)
    assert set("".join(ids)) == set(ALPHABET)
