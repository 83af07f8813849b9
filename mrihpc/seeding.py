"""The first 32-bit word of NumPy's ``SeedSequence(entropy).generate_state(1)``, in pure Python.

Point seeds have come from NumPy's SeedSequence since the first release, so they must not change;
importing NumPy only for this costs the login node 40 ms on every verb. This is the same
algorithm (O'Neill's hash-mixing of the entropy words into a pool of 4, then one output word),
tested against NumPy on random inputs in tests/test_sweep.py.
"""

from __future__ import annotations

MASK = 0xFFFFFFFF
INIT_A, MULT_A, INIT_B, MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
MIX_MULT_L, MIX_MULT_R = 0xCA01F9DD, 0x4973F715
POOL_SIZE = 4


def _words(entropy: list[int]) -> list[int]:
    """Non-negative ints as little-endian 32-bit words (0 is one word), concatenated."""
    out = []
    for n in entropy:
        if n < 0:
            raise ValueError("entropy must be non-negative")
        out.append(n & MASK)
        n >>= 32
        while n:
            out.append(n & MASK)
            n >>= 32
    return out


def seed_sequence_word(entropy: list[int]) -> int:
    """``int(numpy.random.SeedSequence(entropy).generate_state(1)[0])``."""
    words = _words(entropy)
    hash_const = INIT_A

    def hashmix(value: int) -> int:
        nonlocal hash_const
        value = (value ^ hash_const) & MASK
        hash_const = (hash_const * MULT_A) & MASK
        value = (value * hash_const) & MASK
        return value ^ (value >> 16)

    def mix(x: int, y: int) -> int:
        r = (MIX_MULT_L * x - MIX_MULT_R * y) & MASK
        return r ^ (r >> 16)

    pool = [hashmix(words[i] if i < len(words) else 0) for i in range(POOL_SIZE)]
    for src in range(POOL_SIZE):
        for dst in range(POOL_SIZE):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(POOL_SIZE, len(words)):
        for dst in range(POOL_SIZE):
            pool[dst] = mix(pool[dst], hashmix(words[src]))
    value = (pool[0] ^ INIT_B) & MASK
    value = (value * ((INIT_B * MULT_B) & MASK)) & MASK
    return value ^ (value >> 16)
