"""numba scalar twins of the numpy primitives in rounding, overflow and rng.

The kernels (``fixedpoint.kernels``) call these inside ``@njit`` loops; the numpy
versions in :mod:`core.rounding`, :mod:`core.overflow` and
:mod:`core.rng` give identical results (tests/test_fixed_format.py checks every
pair). They live apart so that formats, configs and the cost model import without numba:
only running the integer model compiles anything. The old names stay reachable
(``core.rounding.shift_right_round_int`` ...), imported on first use.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from core.rng import _MASK32
from core.rounding import FLOOR, NEAREST_AWAY, NEAREST_EVEN, STOCHASTIC

@numba.njit(cache=True)
def shift_right_round_int(value, shift, mode, random_bits):
    """Scalar ``round(value / 2**shift)``; mode is a code (0..3), see the module doc.

    ``random_bits`` is only read in stochastic mode (pass 0 otherwise); it is masked to
    ``shift`` bits.  Contract (unchecked here): ``|value| < 2**62``, ``|shift| <= 62``.
    """
    v = np.int64(value)
    s = np.int64(shift)
    if s == 0:
        return v
    if s < 0:
        return v << (-s)
    q = v >> s  # floor: int64 >> is arithmetic
    if mode == FLOOR:
        return q
    mask = (np.int64(1) << s) - np.int64(1)
    if mode == STOCHASTIC:
        return (v + (np.int64(random_bits) & mask)) >> s
    if mode != NEAREST_EVEN and mode != NEAREST_AWAY:
        raise ValueError("unknown rounding mode code")
    r = v & mask  # remainder v - q * 2**s, always in [0, 2**s)
    half = np.int64(1) << (s - np.int64(1))
    if r > half:
        return q + np.int64(1)
    if r < half:
        return q
    # exact tie: q is the lower neighbour
    if mode == NEAREST_EVEN:
        return q + (q & np.int64(1))
    if q >= 0:  # positive tie: away from zero is up; negative tie: q is already away
        return q + np.int64(1)
    return q

@numba.njit(cache=True)
def requantize_int(value, from_frac, to_frac, mode, random_bits):
    """Scalar: integer at ``from_frac`` fraction bits -> integer at ``to_frac``."""
    return shift_right_round_int(value, from_frac - to_frac, mode, random_bits)

@numba.njit(cache=True)
def round_float_scalar(x, frac, mode, u):
    """Scalar float64 twin of :func:`round_float`; mode is a code, u in [0, 1)."""
    s = math.ldexp(x, frac)  # exact scaling by 2**frac
    f = math.floor(s)
    if mode == FLOOR:
        return math.ldexp(f, -frac)
    r = s - f  # exact: the fraction of a float is representable
    if mode == STOCHASTIC:
        up = r >= 1.0 - u  # 1 - u is exact for u with <= 52 fraction bits
    elif mode == NEAREST_EVEN:
        up = r > 0.5 or (r == 0.5 and f * 0.5 != math.floor(f * 0.5))  # f odd
    elif mode == NEAREST_AWAY:
        up = r > 0.5 or (r == 0.5 and f >= 0.0)
    else:
        raise ValueError("unknown rounding mode code")
    if up:
        f += 1.0
    return math.ldexp(f, -frac)

@numba.njit(cache=True)
def saturate_int(v, lo, hi):
    """Scalar clip of an integer to ``[lo, hi]`` (int64)."""
    if v < lo:
        return np.int64(lo)
    if v > hi:
        return np.int64(hi)
    return np.int64(v)

@numba.njit(cache=True)
def wrap_int(v, bits, signed):
    """Scalar: keep the low ``bits`` bits of ``v``; sign-extend them if ``signed``."""
    one = np.int64(1)
    r = np.int64(v) & ((one << bits) - one)  # & on two's complement = mod 2**bits
    if signed and r >= (one << (bits - one)):
        r -= one << bits
    return r

@numba.njit(cache=True)
def xorshift32_next(state):
    """One xorshift32 step (13, 17, 5) of a uint32 state != 0; returns the new uint32."""
    # int64 with explicit 32-bit masks: no dependence on numba's uint32 promotion rules
    x = np.int64(state) & np.int64(_MASK32)
    x ^= (x << 13) & np.int64(_MASK32)
    x ^= x >> 17
    x ^= (x << 5) & np.int64(_MASK32)
    return np.uint32(x)

@numba.njit(cache=True)
def random_bits_int(state, nbits):
    """Scalar: advance ``state`` and return ``(new_state, top nbits of it)``; 0 <= nbits <= 32."""
    new = xorshift32_next(state)
    if nbits <= 0:
        return new, np.int64(0)
    return new, np.int64(new) >> (32 - nbits)
