"""Integer softmax: the readout error of the cross-entropy loss on chip.

The float loss ``ce`` has the error ``softmax(y) - onehot`` at every window step. The chip
computes softmax with a max, shifts, one small table and one division per sample, all
in the ``softmax`` format (``u16.15`` by default: F = 15 fraction bits). With y in the
membrane format (Fm fraction bits) and C classes, per sample:

    d_c   = max(y) - y_c                          >= 0, membrane format      (C-1 cmp, C sub)
    a_c   = d_c * L2E                             L2E = round(log2(e) 2^F)   (C mul)
    t_c   = a_c >> (Fm + F - b)                   b = log2(entries)          (C shift)
    n_c   = t_c >> b,  i_c = t_c mod 2^b          d_c log2(e) = n_c + r, r in [i/2^b, (i+1)/2^b)
    e_c   = LUT[i_c] >> min(n_c, F + 1)           LUT[i] = round(2^-((i + 0.5) / 2^b) 2^F)
    S     = sum_c e_c                             exact                      (C-1 add)
    R     = floor(2^(2F) / S)                     1/S with F fraction bits   (1 division)
    p_c   = round(e_c R / 2^F)                    softmax format rounding    (C mul)
    err_c = round((p_c - onehot_c) / 2^(F - Fe))  error format (Fe fraction bits)

``2^-r`` is read at the centre of its bin, so the table's relative error is at most
``2^(0.5 / entries) - 1`` (0.54 % for 64 entries); the common factor of all classes
cancels in p = e / S. The shift by ``n_c`` floors (a barrel shifter); beyond F + 1 the
term is 0. Every step is an integer operation on values below 2^53, so the float64
emulation (fixedpoint.emulate) reproduces it bit for bit; docs/fixedpoint_model.md states
the error against the float softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.formats import FixedFormat
from core.quant import EXACT_BITS, SoftmaxLutConfig

LOG2_E = 1.0 / math.log(2.0)


@dataclass(frozen=True)
class SoftmaxConstants:
    """Codes of the integer softmax (see the module docstring)."""

    frac: int  # F, fraction bits of the softmax format
    membrane_frac: int  # Fm, fraction bits of y
    index_bits: int  # b = log2(entries)
    log2e: int  # L2E, softmax format
    lut: np.ndarray  # (entries,) int64, softmax format: 2^-((i + 0.5) / entries)


def softmax_lut_values(fmt: FixedFormat, lut: SoftmaxLutConfig) -> np.ndarray:
    """2^-r at the centres of the ``entries`` bins of r in [0, 1), nearest_even in ``fmt``."""
    centres = (np.arange(lut.entries, dtype=np.float64) + 0.5) / lut.entries
    return fmt.replace(rounding="nearest_even", overflow="saturate").quantize(np.exp2(-centres))


def softmax_constants(fmt: FixedFormat, membrane: FixedFormat, lut: SoftmaxLutConfig) -> SoftmaxConstants:
    """Check the formats and build the constants; InputError names the quant field."""
    frac = fmt.frac
    if fmt.signed or frac < 2 or fmt.bits - frac < 1:
        raise InputError(f"quant.softmax = {fmt.describe_short()}: needs an unsigned format with at least 1 "
                         "integer bit (p = 1.0, log2(e) = 1.44) and 2 fraction bits, e.g. u16.15")
    if membrane.frac < 0:
        raise InputError("quant.membrane: the softmax error needs frac >= 0 for the readout")
    bits = lut.entries.bit_length() - 1
    if membrane.frac + frac < bits:
        raise InputError(f"quant.softmax_lut.entries = {lut.entries}: more index bits ({bits}) than the "
                         f"{membrane.frac + frac} fraction bits of d log2(e); use fewer entries")
    # the widest intermediates: 2^(2F) / S, e R, and d * L2E (d up to 2^membrane.bits)
    for what, need in (("1/S numerator 2^(2F)", 2 * frac + 2), ("e R", 2 * frac + 3),
                       ("d log2(e)", membrane.bits + 1 + fmt.bits)):
        if need > EXACT_BITS:
            raise InputError(f"quant.softmax = {fmt.describe_short()}: {what} needs {need} bits, above the "
                             f"{EXACT_BITS}-bit limit of the exact datapath; use fewer fraction bits")
    log2e = int(np.round(LOG2_E * (1 << frac)))
    return SoftmaxConstants(frac, membrane.frac, bits, log2e, softmax_lut_values(fmt, lut))


def softmax_exponentials(y: np.ndarray, c: SoftmaxConstants, index_shift: int) -> np.ndarray:
    """e_c = 2^(-(max y - y_c) log2 e) per row of y (B, C) int64 membrane codes, F fraction
    bits; ``index_shift`` is the spec's SH_SM_IDX (Fm + F - b)."""
    d = y.max(axis=-1, keepdims=True) - y
    t = (d * np.int64(c.log2e)) >> np.int64(index_shift)
    index = t & np.int64((1 << c.index_bits) - 1)
    whole = np.minimum(t >> np.int64(c.index_bits), c.frac + 1)
    return c.lut[index] >> whole


def reciprocal(total: np.ndarray, frac: int) -> np.ndarray:
    """floor(2^(2F) / S): 1/S with F fraction bits (S > 0, int64)."""
    return np.int64(1 << (2 * frac)) // total


def int_softmax(y: np.ndarray, c: SoftmaxConstants, index_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(e, e R) for y (B, C): the exponentials and the unrounded products e_c R (2F fraction
    bits); the caller rounds e R into the softmax format (its rounding and overflow)."""
    e = softmax_exponentials(y, c, index_shift)
    total = e.sum(axis=-1, keepdims=True)
    return e, e * reciprocal(total, c.frac)
