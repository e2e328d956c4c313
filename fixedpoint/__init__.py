"""Fixed-point numbers for the integer (bit-accurate) S-TLLR model.

Legend -- read this first; every format in the project means exactly this
==========================================================================

A value is stored as an integer ``m`` together with a format
``(signed, bits, frac)`` and means::

    value = m * 2**-frac

* ``bits`` is the stored width and INCLUDES the sign bit of a signed format
  (``s8.4`` is an 8-bit register, one of those bits is the sign).
* Integer range:

  - signed   ``m`` in ``[-2**(bits-1), 2**(bits-1) - 1]`` (two's complement, full
    range: no "narrow range" that drops the most negative code);
  - unsigned ``m`` in ``[0, 2**bits - 1]``.

* ``lsb = 2**-frac`` is the value of one code step; the real range is
  ``[min_int * lsb, max_int * lsb]``.

  >>> fmt = FixedFormat.parse("s8.4")  # 8 bits with the sign, 4 fraction bits
  >>> fmt.min_int, fmt.max_int, fmt.lsb, fmt.max_value
  (-128, 127, 0.0625, 7.9375)

* ``frac`` may be negative (an lsb coarser than 1: ``s8.-2`` steps by 4) or larger
  than ``bits`` (all codes are below 1 in magnitude: ``u8.10`` tops out at
  255/1024).  Supported: 1 <= bits <= 32 unsigned, 2 <= bits <= 32 signed (kernels
  accumulate in int64, so 32 is the widest stored value), -32 <= frac <= 63.
* Text form: ``s<bits>.<frac>`` or ``u<bits>.<frac>``, optionally followed by the
  rounding mode and the overflow policy: ``s16.8 nearest_even saturate``.

How other tools count the same bits (the classic off-by-one):

=====================================  =========================================
Tool / notation                        Same format as ours
=====================================  =========================================
hls4ml / Vivado HLS ``ap_fixed<W,I>``  W = bits (includes sign), I = integer bits
                                       INCLUDING the sign, so frac = W - I;
                                       ``ap_ufixed<W,I>`` is unsigned, same rule.
                                       ``s16.8`` == ``ap_fixed<16,8>``.
Brevitas ``bit_width``                 includes the sign bit for signed quantizers
                                       (bit_width = bits); a power-of-two scale
                                       ``2**-frac``; beware ``narrow_range=True``,
                                       which drops ``-2**(bits-1)``.
MATLAB ``fixdt(s, WordLength, FL)``    WordLength = bits (includes sign), FL = frac.
SystemVerilog ``logic signed [W-1:0]`` W = bits (includes sign).
Q notation ``Qm.n`` (TI / ARM usage)   COUNTS DIFFERENTLY: m excludes the sign bit,
                                       so signed bits = m + n + 1 (Q15 = ``s16.15``).
                                       Some texts let m include the sign; always
                                       check which one a datasheet means.
=====================================  =========================================

Modules
-------
``formats``   :class:`FixedFormat`, the one value that carries a format.
``rounding``  integer rounding primitives (numpy and numba) and the float64 emulation.
``overflow``  saturate / wrap / raise, and :class:`OverflowCounter` for run reports.
``rng``       xorshift32 lanes for stochastic rounding, rebuildable in RTL.

Full description with worked examples: ``docs/fixedpoint_formats.md``.
"""

from core.formats import FixedFormat, OverflowPolicy, RoundingMode
from core.overflow import FixedOverflowError, OverflowCounter, apply_overflow, overflow_code
from core.rng import next_states, random_bits, seed_lanes
from core.rounding import mode_code, requantize, round_float, shift_right_round

#: numba scalar twins, in fixedpoint.scalar: imported (and numba with them) on first use
_SCALAR = ("random_bits_int", "requantize_int", "round_float_scalar", "saturate_int", "shift_right_round_int",
           "wrap_int", "xorshift32_next")


def __getattr__(name: str):
    if name in _SCALAR:
        from fixedpoint import scalar

        return getattr(scalar, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FixedFormat",
    "FixedOverflowError",
    "OverflowCounter",
    "OverflowPolicy",
    "RoundingMode",
    "apply_overflow",
    "mode_code",
    "next_states",
    "overflow_code",
    "random_bits",
    "random_bits_int",
    "requantize",
    "requantize_int",
    "round_float",
    "round_float_scalar",
    "saturate_int",
    "seed_lanes",
    "shift_right_round",
    "shift_right_round_int",
    "wrap_int",
    "xorshift32_next",
]
