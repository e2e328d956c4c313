"""Integer rounding primitives shared by every kernel of the integer model.

``shift_right_round(v, s, mode, r)`` is ``round(v / 2**s)`` computed exactly on int64:

* ``floor``         arithmetic shift ``v >> s`` (toward -inf, like SystemVerilog ``>>>``
                    on a signed operand);
* ``nearest_even``  nearest integer, exact ties go to the even one;
* ``nearest_away``  nearest integer, exact ties go away from zero;
* ``stochastic``    ``(v + (r & (2**s - 1))) >> s`` with ``r`` uniform in
                    ``[0, 2**s)``: rounds up with probability ``(v mod 2**s) / 2**s``
                    exactly, so the mean over all ``2**s`` values of ``r`` is exactly
                    ``v / 2**s``.  ``r`` comes from :mod:`core.rng`
                    (``random_bits(states, s)``, the TOP ``s`` bits of a 32-bit word).

Contract: ``|v| < 2**62`` (so ``v + r`` cannot overflow int64) and ``-62 <= s <= 62``;
``s == 0`` returns ``v``; ``s < 0`` is an exact left shift (the result must fit int64).
Each function has a numba scalar twin (``*_int`` / ``*_scalar``, ``@njit(cache=True)``)
for use inside kernels; both give identical results (the tests check it).  The numba
twins do not check the contract, the numpy versions do.

Float64 emulation stays bit-exact
---------------------------------
float64 represents every integer below ``2**53`` exactly, and scaling by a power of two
(``math.ldexp``) is exact.  So a fixed-point value ``m * 2**-F`` with ``|m| < 2**53`` is
an exact float64, sums and products of such values are exact as long as the result's
integer ``m`` stays below ``2**53``, and :func:`round_float` rounds such an ``x`` to the
grid ``2**-frac`` with exactly the result of the integer path::

    round_float(m * 2**-F, frac, mode, u) == shift_right_round(m, F - frac, mode, r) * 2**-frac

with ``u = r / 2**(F - frac)`` (or ``u = w / 2**32`` for a 32-bit random word ``w``
and ``r = w >> (32 - (F - frac))``, since the top bits of ``w`` are a prefix of its
fraction).  This is how the float emulation of the fixed-point model stays bit-exact.

>>> int(shift_right_round(-5, 1, "nearest_even"))   # -2.5 -> -2
-2
>>> int(shift_right_round(-5, 1, "nearest_away"))   # -2.5 -> -3
-3
>>> float(round_float(-2.5, 0, "floor"))
-3.0
"""

from __future__ import annotations


import numpy as np

# Mode codes: the index into ROUNDING_MODES.  numba kernels take the integer code,
# the numpy functions accept either the name or the code.
FLOOR = 0
NEAREST_EVEN = 1
NEAREST_AWAY = 2
STOCHASTIC = 3
ROUNDING_MODES: tuple[str, ...] = ("floor", "nearest_even", "nearest_away", "stochastic")

MAX_SHIFT = 62
VALUE_LIMIT = 1 << 62  # |value| must be strictly below this (v + random_bits fits int64)


def mode_code(mode: str | int) -> int:
    """Integer code (0..3) of a rounding mode given by name or code."""
    if isinstance(mode, str):
        try:
            return ROUNDING_MODES.index(mode)
        except ValueError:
            raise ValueError(
                f"rounding mode {mode!r} is not one of {', '.join(ROUNDING_MODES)}"
            ) from None
    if isinstance(mode, (int, np.integer)) and not isinstance(mode, bool):
        if 0 <= int(mode) < len(ROUNDING_MODES):
            return int(mode)
    raise ValueError(
        f"rounding mode {mode!r} is neither a name in {ROUNDING_MODES} nor a code 0..3"
    )


def _check_shift(shift: int) -> int:
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)):
        raise ValueError(f"shift must be an integer, got {shift!r}")
    s = int(shift)
    if not -MAX_SHIFT <= s <= MAX_SHIFT:
        raise ValueError(f"shift = {s} is outside the supported range -62..62")
    return s


def _as_int64(value: object, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 1 << 63:
        raise ValueError(f"{name} has values above the int64 range")
    return arr.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- integer path




def shift_right_round(
    value: np.ndarray | int,
    shift: int,
    mode: str | int,
    random_bits: np.ndarray | int | None = None,
) -> np.ndarray:
    """Vectorised ``round(value / 2**shift)`` on int64; returns int64.

    value: integer array (any shape), ``|value| < 2**62``.  shift: int in -62..62,
    negative means an exact left shift.  mode: name or code.  random_bits: integer array
    broadcastable to ``value`` (only for ``stochastic``; masked to ``shift`` bits).
    """
    v = _as_int64(value, "value")
    s = _check_shift(shift)
    code = mode_code(mode)
    if v.size and (int(v.max()) >= VALUE_LIMIT or int(v.min()) <= -VALUE_LIMIT):
        raise ValueError("value out of the supported range |value| < 2**62")
    if s == 0:
        return v.copy()
    if s < 0:
        # the shifted value must still fit in int64
        limit = 1 << (63 + s)
        if v.size and (int(v.max()) >= limit or int(v.min()) < -limit):
            raise ValueError(f"left shift by {-s} overflows int64")
        return v << np.int64(-s)
    s64 = np.int64(s)
    q = v >> s64
    if code == FLOOR:
        return q
    mask = (np.int64(1) << s64) - np.int64(1)
    if code == STOCHASTIC:
        if random_bits is None:
            raise ValueError("stochastic rounding needs random_bits (see core.rng)")
        rb = _as_int64(random_bits, "random_bits")
        return (v + (rb & mask)) >> s64
    r = v & mask
    half = np.int64(1) << (s64 - np.int64(1))
    if code == NEAREST_EVEN:
        up = (r > half) | ((r == half) & ((q & np.int64(1)) == 1))
    else:  # NEAREST_AWAY
        up = (r > half) | ((r == half) & (q >= 0))
    return q + up.astype(np.int64)




def requantize(
    value: np.ndarray | int,
    from_frac: int,
    to_frac: int,
    mode: str | int,
    random_bits: np.ndarray | int | None = None,
) -> np.ndarray:
    """Change the number of fraction bits of integer values (no overflow handling).

    ``m * 2**-from_frac`` becomes ``round(m * 2**(to_frac - from_frac))`` at
    ``to_frac`` fraction bits; more fraction bits is an exact left shift.
    """
    return shift_right_round(value, int(from_frac) - int(to_frac), mode, random_bits)


# --------------------------------------------------------------------------- float path




def round_float(
    x: np.ndarray | float,
    frac: int,
    mode: str | int,
    u: np.ndarray | float | None = None,
) -> np.ndarray:
    """Round float64 values to the grid ``2**-frac``; returns float64 in real units.

    Bit-identical to the integer path for exact inputs (see the module doc).
    u: the stochastic offset in ``[0, 1)``, e.g. ``random_bits / 2**shift`` or a 32-bit
    word ``/ 2**32``; rounds up when ``fraction(x * 2**frac) >= 1 - u``.
    """
    if isinstance(frac, bool) or not isinstance(frac, (int, np.integer)):
        raise ValueError(f"frac must be an integer, got {frac!r}")
    code = mode_code(mode)
    with np.errstate(over="ignore"):  # beyond the float range the result is +-inf
        s = np.ldexp(np.asarray(x, dtype=np.float64), int(frac))
    f = np.floor(s)
    if code == FLOOR:
        return np.ldexp(f, -int(frac))
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, then `up` is False
        r = s - f  # exact, in [0, 1)
    if code == STOCHASTIC:
        if u is None:
            raise ValueError("stochastic rounding needs u (uniform in [0, 1))")
        uu = np.asarray(u, dtype=np.float64)
        if uu.size and not (np.all(uu >= 0.0) and np.all(uu < 1.0)):
            raise ValueError("u must lie in [0, 1)")
        up = r >= 1.0 - uu
    elif code == NEAREST_EVEN:
        up = (r > 0.5) | ((r == 0.5) & (f * 0.5 != np.floor(f * 0.5)))  # f odd
    else:  # NEAREST_AWAY: a negative tie is already away from zero at floor
        up = (r > 0.5) | ((r == 0.5) & (f >= 0.0))
    return np.ldexp(f + up, -int(frac))
