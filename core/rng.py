"""Deterministic random bits for stochastic rounding, specified so RTL can rebuild them.

Generator (one independent 32-bit state per lane, e.g. per neuron or per synapse row)
-------------------------------------------------------------------------------------
xorshift32 (G. Marsaglia, "Xorshift RNGs", J. Stat. Soft. 8(14), 2003), shift triple
(13, 17, 5), all arithmetic on 32-bit unsigned words (``<<`` drops bits above 31,
``>>`` is a LOGICAL shift)::

    x ^= x << 13
    x ^= x >> 17
    x ^= x << 5          # the new state is also the output word

A state is a uint32 != 0 (0 maps to itself); the period is 2**32 - 1. From state 1 the
first word is 270369 (Marsaglia's paper, the (13, 17, 5) example):

>>> import numpy as np
>>> int(next_states(np.array([1], np.uint32))[0])
270369

Seeding: lane ``i`` (0 <= i < 2**32) of seed ``S`` (0 <= S < 2**32) starts from the
upper 32 bits of one splitmix64 step (Steele, Lea, Flood 2014; Vigna's reference code)
applied to the 64-bit word ``x = S * 2**32 + i``, all arithmetic modulo 2**64::

    z = x + 0x9E3779B97F4A7C15
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z = z ^ (z >> 31)
    state = z >> 32                       # upper half
    if state == 0: state = 0x9E3779B9    # never 0 (0 is the xorshift fixed point)

Seeding is done once per run, so software (or a testbench) may compute it and load the
lane states; only the three-line xorshift recurrence has to be in hardware.

Bit selection: ``random_bits(states, n)`` first advances every lane, then takes the
TOP ``n`` bits of the new word (``word >> (32 - n)``).  Why the top bits:

* The top ``n`` bits are a prefix of the binary fraction ``u = word / 2**32``, so
  stochastic rounding with ``n`` random bits on the integer path is exactly the float
  comparison ``fraction >= 1 - u`` (see :mod:`core.rounding`), for every ``n``
  at once; the low bits have no such meaning.
* This is also the usual convention for xorshift-family outputs (Marsaglia, Vigna):
  the lowest bits are the weakest in the published statistical tests.  Plain
  xorshift32 is not a strong generator (every output bit is a linear function of the
  state and it fails parts of BigCrush); it is cheap, reproducible and amply good
  enough to dither rounding.

First outputs for seed 1, lane 0 are listed in ``docs/fixedpoint_formats.md`` (and
checked by ``tests/test_fixed_format.py`` against a separate pure-Python build).
"""

from __future__ import annotations

import numpy as np

XORSHIFT_SHIFTS = (13, 17, 5)
SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX_M1 = 0xBF58476D1CE4E5B9
SPLITMIX_M2 = 0x94D049BB133111EB
ZERO_REPLACEMENT = 0x9E3779B9  # used when a seeded state would be 0
_MASK32 = 0xFFFFFFFF






def _check_states(states: np.ndarray) -> np.ndarray:
    s = np.asarray(states)
    if s.dtype != np.uint32:
        raise ValueError(f"states must be a uint32 array (from seed_lanes), got {s.dtype}")
    if s.size and not s.all():
        raise ValueError("states contain 0, the fixed point of xorshift32 (seed with seed_lanes)")
    return s


def next_states(states: np.ndarray) -> np.ndarray:
    """One xorshift32 step for every lane; returns a new uint32 array (input untouched)."""
    x = _check_states(states).copy()
    # numpy keeps uint32 for uint32 << python int (NEP 50), so bits above 31 drop out
    x ^= x << np.uint32(13)
    x ^= x >> np.uint32(17)
    x ^= x << np.uint32(5)
    return x


def random_bits(states: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Advance every lane, return ``(new_states, bits)``.

    bits: int64 array, the top ``nbits`` (0..32) of each new state, uniform in
    ``[0, 2**nbits)``; pass them as ``random_bits`` to ``shift_right_round`` with
    ``shift == nbits``.  ``nbits == 0`` gives zeros (the lanes still advance, so the
    stream does not depend on which shifts happen to be zero).
    """
    if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)) or not 0 <= nbits <= 32:
        raise ValueError(f"nbits = {nbits!r} must be an integer in 0..32")
    new = next_states(states)
    bits = new.astype(np.int64) >> np.int64(32 - int(nbits))
    return new, bits


def _splitmix64_upper(x: np.ndarray) -> np.ndarray:
    # uint64 array arithmetic wraps modulo 2**64, as splitmix64 requires
    z = x + np.uint64(SPLITMIX_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(SPLITMIX_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(SPLITMIX_M2)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(32)).astype(np.uint32)


def _nonzero_state(states: np.ndarray) -> np.ndarray:
    return np.where(states == 0, np.uint32(ZERO_REPLACEMENT), states).astype(np.uint32)


def seed_lanes(seed: int, num_lanes: int) -> np.ndarray:
    """Initial uint32 states (never 0) of lanes ``0..num_lanes-1`` for ``seed``.

    seed: 0 <= seed < 2**32.  num_lanes: 0 <= num_lanes <= 2**32.  See the module doc
    for the splitmix64 mix of ``seed * 2**32 + lane``.
    """
    for name, value, top in (("seed", seed, (1 << 32) - 1), ("num_lanes", num_lanes, 1 << 32)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if not 0 <= int(value) <= top:
            raise ValueError(f"{name} = {value} is outside 0..{top}")
    lanes = np.arange(int(num_lanes), dtype=np.uint64)
    x = (np.uint64(int(seed)) << np.uint64(32)) | lanes
    return _nonzero_state(_splitmix64_upper(x))
