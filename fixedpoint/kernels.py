"""numba kernels of the integer model: the loops over synapses, nothing else.

Every layer is seen through one geometry: the synapses of output channel ``o`` at
output position ``p`` read input element ``idx[tap, p]`` through weight ``W[o, tap]``
(``idx = -1`` for zero padding). A dense layer is the case ``P = 1``,
``idx[j, 0] = j``; a convolution has ``taps = C_in * K * K`` (the torch weight layout
``(C_out, C_in, K, K)`` flattened) and ``P = H_out * W_out``.

All arithmetic is exact int64 (the config checks that no intermediate exceeds 53 bits);
rounding uses :func:`fixedpoint.rounding.shift_right_round_int` and random bits come from
:func:`fixedpoint.rng.random_bits_int`. Kernels skip zero operands (event-driven) and
return how many operations they executed, so counting costs nothing per synapse.
"""

from __future__ import annotations

import numba
import numpy as np

from fixedpoint.rng import random_bits_int
from fixedpoint.rounding import shift_right_round_int


@numba.njit(cache=True)
def synaptic_current(weight, x, idx, out):
    """out[b, o, p] += sum_tap W[o, tap] * x[b, idx[tap, p]] over non-zero inputs only.

    weight (C_out, taps) int64; x (B, n_in) int64; idx (taps, P) int64; out (B, C_out, P).
    Returns the number of input events (non-zero (b, tap, p) operands); each event
    executes C_out accumulates (adds of a weight when x is a spike, MACs otherwise).
    """
    batch, n_pos = out.shape[0], out.shape[2]
    n_out, taps = weight.shape
    events = 0
    for b in range(batch):
        for p in range(n_pos):
            for t in range(taps):
                j = idx[t, p]
                if j < 0:
                    continue
                xv = x[b, j]
                if xv == 0:
                    continue
                events += 1
                for o in range(n_out):
                    out[b, o, p] += weight[o, t] * xv
    return events


@numba.njit(cache=True)
def transpose_mac(weight, grad, idx, out):
    """out[b, idx[tap, p]] += W[o, tap] * grad[b, o, p] over non-zero grad only (W^T g).

    weight (C_out, taps); grad (B, C_out, P); out (B, n_in). Returns the MACs executed.
    """
    batch, n_out, n_pos = grad.shape
    taps = weight.shape[1]
    macs = 0
    for b in range(batch):
        for p in range(n_pos):
            for o in range(n_out):
                g = grad[b, o, p]
                if g == 0:
                    continue
                for t in range(taps):
                    j = idx[t, p]
                    if j < 0:
                        continue
                    out[b, j] += weight[o, t] * g
                    macs += 1
    return macs


@numba.njit(cache=True)
def accumulate_update(causal, pre, noncausal, x, idx, causal_shift, noncausal_shift, shift, mode, total):
    """One window step of dW for a batch: total[o, tap] += sum_b round(c_b[o, tap]).

    c_b[o, tap] = sum_p (causal[b,o,p] * pre[b, j] << causal_shift
                         + noncausal[b,o,p] * x[b, j] << noncausal_shift),  j = idx[tap, p]

    computed exactly, then rounded by ``shift`` (mode code) once per sample and synapse.
    ``noncausal`` may have size 0 (alpha_post = 0). Zero factors and zero pre-synaptic
    values are skipped. Returns (causal products, non-causal adds, rounded contributions).
    """
    batch, n_out, n_pos = causal.shape
    taps = idx.shape[0]
    use_nc = noncausal.size > 0
    n_causal = 0
    n_noncausal = 0
    n_contrib = 0
    tmp = np.zeros((n_out, taps), dtype=np.int64)
    touched = np.zeros((n_out, taps), dtype=np.bool_)
    for b in range(batch):
        tmp[:, :] = 0
        touched[:, :] = False
        for p in range(n_pos):
            for o in range(n_out):
                c = causal[b, o, p]
                if c != 0:
                    for t in range(taps):
                        j = idx[t, p]
                        if j < 0:
                            continue
                        qv = pre[b, j]
                        if qv == 0:
                            continue
                        tmp[o, t] += (c * qv) << causal_shift
                        touched[o, t] = True
                        n_causal += 1
                if use_nc:
                    nv = noncausal[b, o, p]
                    if nv != 0:
                        for t in range(taps):
                            j = idx[t, p]
                            if j < 0:
                                continue
                            xv = x[b, j]
                            if xv == 0:
                                continue
                            tmp[o, t] += (nv * xv) << noncausal_shift
                            touched[o, t] = True
                            n_noncausal += 1
        for o in range(n_out):
            for t in range(taps):
                if touched[o, t]:
                    total[o, t] += shift_right_round_int(tmp[o, t], shift, mode, 0)
                    n_contrib += 1
    return n_causal, n_noncausal, n_contrib


@numba.njit(cache=True)
def weight_write(weight, acc, eta, weight_left, update_left, mode, lanes, out):
    """out = round((W << weight_left) - (eta * acc << update_left), weight_left) elementwise.

    The exact new value is formed at F = max(frac(weight), frac(eta) + frac(update))
    fraction bits (the two left shifts align both terms to F, one of them is 0) and
    rounded back to the weight's fraction bits by ``weight_left`` (0: nothing to round).
    Stochastic (mode 3): one xorshift32 lane per element, advanced once per write even
    when nothing is rounded; the offset is the top ``weight_left`` bits of the new word
    (above 32: the word shifted left by weight_left - 32, i.e. u = word / 2**32 of the
    weight lsb). Overflow is applied by the caller.
    """
    n = weight.size
    for i in range(n):
        wide = (weight[i] << weight_left) - ((eta * acc[i]) << update_left)
        r = np.int64(0)
        if mode == 3:
            if weight_left <= 32:
                lanes[i], r = random_bits_int(lanes[i], weight_left)
            else:
                lanes[i], r = random_bits_int(lanes[i], 32)
                r = r << (weight_left - 32)
        out[i] = shift_right_round_int(wide, weight_left, mode, r)
