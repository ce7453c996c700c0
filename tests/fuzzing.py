"""Mutations of MQTT bytes, shared by the codec's property tests (``tests/unit/test_wire_properties.py``,
with hypothesis's ``st.randoms()``) and the live fuzz run (``tests/e2e/test_fuzz_live.py``, with a
seeded ``random.Random``), so that a failure reproduces from its seed."""

from __future__ import annotations

import random

MUTATIONS = ("flip", "cut", "insert", "delete", "length", "first", "repeat")


def remaining_length_end(data: bytes | bytearray) -> int:
    """Where the fixed header of the packet at the start of ``data`` ends (at most 5 bytes in)."""
    end = 2
    while end < len(data) and end < 5 and data[end - 1] & 0x80:
        end += 1
    return min(end, len(data))


def mutate(data: bytes, rng: random.Random, rounds: int = 0) -> bytes:
    """``data`` with ``rounds`` (default: one to four) of the mutations a broken or hostile client
    makes: a bit flipped, the end cut off, bytes inserted or deleted, a wrong remaining length (up
    to five bytes of it), a random packet type and flags, a piece repeated."""
    out = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        how = rng.choice(MUTATIONS)
        if how == "flip" and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif how == "cut" and out:
            del out[rng.randrange(len(out)):]
        elif how == "insert":
            i = rng.randint(0, len(out))
            out[i:i] = rng.randbytes(rng.randint(1, 8))
        elif how == "delete" and out:
            i = rng.randrange(len(out))
            del out[i:i + rng.randint(1, 8)]
        elif how == "length" and len(out) >= 2:
            out[1:remaining_length_end(out)] = rng.randbytes(rng.randint(1, 5))
        elif how == "first" and out:
            out[0] = rng.randrange(256)
        elif how == "repeat":
            out += out[:rng.randint(0, len(out))]
    return bytes(out)
