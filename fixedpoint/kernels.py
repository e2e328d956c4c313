"""numba kernels of the integer model: the loops over synapses, and fused element-wise
passes that the network shell uses instead of chains of numpy operations.

Every layer is seen through one geometry: the synapses of output channel ``o`` at
output position ``p`` read input element ``idx[tap, p]`` through weight ``W[o, tap]``
(``idx = -1`` for zero padding). A dense layer is the case ``P = 1``,
``idx[j, 0] = j``; a convolution has ``taps = C_in * K * K`` (the torch weight layout
``(C_out, C_in, K, K)`` flattened) and ``P = H_out * W_out``.

All arithmetic is exact int64 (the config checks that no intermediate exceeds 53 bits);
rounding uses :func:`core.rounding.shift_right_round_int` and random bits come from
:func:`core.rng.random_bits_int`. Kernels skip zero operands (event-driven) and
return how many operations they executed, so counting costs nothing per synapse.

Speed (docs/bench_int_speed.md): dense layers (input j is tap j) take
:func:`synaptic_current_dense` (W^T in a narrow dtype, built once per run by the
network) and :func:`accumulate_update_dense` (accumulator, contributions and overflow in
one pass); other ``P = 1`` maps take dedicated paths in :func:`synaptic_current` (batch
> 1) and :func:`accumulate_update`. The fused passes (:func:`round_overflow`,
:func:`trace_step`, :func:`trace_steps`, :func:`lif_forward`, :func:`psi_lookup`,
:func:`grid_codes`, :func:`grid_codes_time_major`) give the bits of the numpy path in
``fixedpoint.network`` and report when that path must run instead (an overflow under
``raise``, a value outside the rounding contract, a value off the input grid), so errors
and their messages come from one place.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fixedpoint.scalar import random_bits_int, shift_right_round_int


@numba.njit(cache=True)
def synaptic_current(weight, x, idx, out):
    """out[b, o, p] += sum_tap W[o, tap] * x[b, idx[tap, p]] over non-zero inputs only.

    weight (C_out, taps) int64; x (B, n_in) int64; idx (taps, P) int64; out (B, C_out, P).
    Returns the number of input events (non-zero (b, tap, p) operands); each event
    executes C_out accumulates (adds of a weight when x is a spike, MACs otherwise).
    Dense layers (P = 1) with B > 1 take :func:`_synaptic_current_dense` (same sums,
    exact int64, so the same bits).
    """
    batch, n_pos = out.shape[0], out.shape[2]
    n_out, taps = weight.shape
    if n_pos == 1 and batch > 1:
        return _synaptic_current_dense(weight, x, idx, out)
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
def _synaptic_current_dense(weight, x, idx, out):
    """synaptic_current for P = 1, tap-major: each weight column with at least one event
    in the batch is read once (strided) into a contiguous buffer, then added into the
    contiguous per-sample accumulator rows of every sample that has that input active."""
    batch, n_out = out.shape[0], out.shape[1]
    taps = weight.shape[1]
    col = np.empty(n_out, np.int64)
    acc = np.zeros((batch, n_out), np.int64)
    rows = np.empty(batch, np.int64)
    vals = np.empty(batch, np.int64)
    events = 0
    for t in range(taps):
        j = idx[t, 0]
        if j < 0:
            continue
        k = 0
        for b in range(batch):
            xv = x[b, j]
            if xv != 0:
                rows[k] = b
                vals[k] = xv
                k += 1
        if k == 0:
            continue
        events += k
        for o in range(n_out):
            col[o] = weight[o, t]
        for i in range(k):
            b = rows[i]
            xv = vals[i]
            if xv == 1:
                for o in range(n_out):
                    acc[b, o] += col[o]
            else:
                for o in range(n_out):
                    acc[b, o] += col[o] * xv
    for b in range(batch):
        for o in range(n_out):
            out[b, o, 0] += acc[b, o]
    return events


@numba.njit(cache=True)
def synaptic_current_dense(columns, weight_bound, x, out):
    """out[b, o] = sum_j W[o, j] * x[b, j] over the non-zero x[b, j] (a dense layer).

    columns (n_in, n_out): W transposed, C-contiguous, in any integer dtype that holds
    every weight code (column j of W is the contiguous row ``columns[j]``); weight_bound
    = max |W| (an int); x (B, n_in) int64; out (B, n_out) int64, overwritten. Each sample
    sums in the narrowest of int16, int32 and int64 whose range holds its bound
    ``weight_bound * sum_j |x[b, j]|`` (then no partial sum can leave it: the sum is
    exact). Returns the input events (non-zero x[b, j]), as :func:`synaptic_current`
    counts them.
    """
    batch, n_in = x.shape
    n_out = columns.shape[1]
    active = np.empty(n_in, np.int64)
    acc16 = np.empty(n_out, np.int16)
    acc32 = np.empty(n_out, np.int32)
    acc64 = np.empty(n_out, np.int64)
    one = np.int64(1)
    limit = one << np.int64(31)
    bound = max(np.int64(weight_bound), one)
    # the largest sum_j |x[b, j]| whose sum is exact in int16 / int32
    max16 = ((one << np.int64(15)) - one) // bound
    max32 = (limit - one) // bound
    events = 0
    for b in range(batch):
        k = 0
        size = np.int64(0)  # sum_j |x[b, j]|, saturating at 2**31
        for j in range(n_in):
            xv = x[b, j]
            if xv != 0:
                active[k] = j
                k += 1
                size = min(size + abs(xv), limit)
        events += k
        if size <= max16:
            _sum_columns(columns, x, b, active, k, acc16)
            for o in range(n_out):
                out[b, o] = acc16[o]
        elif size <= max32:
            _sum_columns(columns, x, b, active, k, acc32)
            for o in range(n_out):
                out[b, o] = acc32[o]
        else:
            _sum_columns(columns, x, b, active, k, acc64)
            for o in range(n_out):
                out[b, o] = acc64[o]
    return events


@numba.njit(cache=True, inline="always")
def _sum_columns(columns, x, b, active, k, acc):
    """acc = sum over the k inputs j = active[:k] of columns[j] * x[b, j], in acc's dtype."""
    acc[:] = 0
    n_out = acc.size
    i = 0
    # spikes four at a time: one pass over acc adds four columns (any order is exact: no
    # partial sum leaves the bound that chose acc's dtype)
    while i + 3 < k and x[b, active[i]] == 1 and x[b, active[i + 1]] == 1 and x[b, active[i + 2]] == 1 \
            and x[b, active[i + 3]] == 1:
        c0, c1, c2, c3 = columns[active[i]], columns[active[i + 1]], columns[active[i + 2]], columns[active[i + 3]]
        for o in range(n_out):
            acc[o] += c0[o] + c1[o] + c2[o] + c3[o]
        i += 4
    for i in range(i, k):
        j = active[i]
        col = columns[j]
        xv = x[b, j]
        if xv == 1:
            for o in range(n_out):
                acc[o] += col[o]
        else:
            for o in range(n_out):
                acc[o] += col[o] * xv


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
    Dense layers (P = 1) take :func:`_accumulate_update_dense` (same bits and counts).
    """
    batch, n_out, n_pos = causal.shape
    taps = idx.shape[0]
    if n_pos == 1 and 0 <= mode <= 3:  # an unknown code raises below, as it always did
        return _accumulate_update_dense(causal, pre, noncausal, x, idx, causal_shift, noncausal_shift, shift, mode,
                                        total)
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


@numba.njit(cache=True, inline="always")
def _rounding_masks(s):
    """(mask, half) of a right shift by s: the remainder bits and half an lsb of the
    result, for _round_positive_shift / _round_overflow_one; (0, 0) where s <= 0."""
    one = np.int64(1)
    if s > 0:
        return (one << s) - one, one << (s - one)
    return np.int64(0), np.int64(0)


@numba.njit(cache=True, inline="always")
def _wrap_constants(bits):
    """(2**bits, its low-bits mask, the sign bit) of a bits-wide format: what the wrap
    policy of _round_overflow_one needs."""
    one = np.int64(1)
    period = one << np.int64(bits)
    return period, period - one, one << np.int64(bits - 1)


@numba.njit(cache=True, inline="always")
def _round_positive_shift(v, s, mode, mask, half):
    """shift_right_round_int(v, s, mode, 0) for s > 0, branch-free (vectorizes).

    Stochastic with random bits 0 is floor, as in shift_right_round_int."""
    q = v >> s
    if mode == 1:  # nearest_even
        r = v & mask
        return q + ((r > half) | ((r == half) & ((q & 1) == 1)))
    if mode == 2:  # nearest_away
        r = v & mask
        return q + ((r > half) | ((r == half) & (q >= 0)))
    return q


@numba.njit(cache=True)
def _accumulate_update_dense(causal, pre, noncausal, x, idx, causal_shift, noncausal_shift, shift, mode, total):
    """accumulate_update for P = 1 without per-sample scratch matrices.

    With one position, c_b[o, tap] = (m q_j << causal_shift) + (n x_j << noncausal_shift)
    is final as formed, so it is rounded and added to total at once. A zero term adds
    round(0) = 0 in every mode, so rows with m != 0 run over all taps (vectorized) and
    rows with only n != 0 over the taps whose x_j != 0; the counts of the skipping
    kernel (products with q_j != 0, adds with x_j != 0, synapses with either) come
    from per-sample counts of non-zero q_j, x_j and both.
    """
    batch, n_out = causal.shape[0], causal.shape[1]
    taps = idx.shape[0]
    use_nc = noncausal.size > 0
    qg = np.zeros((batch, taps), np.int64)  # pre[b, idx[tap]] (0 for padding)
    xg = np.zeros((batch, taps), np.int64)
    x_taps = np.empty((batch, taps), np.int64)  # taps with x != 0, per sample
    nq = np.zeros(batch, np.int64)
    nx = np.zeros(batch, np.int64)
    nqx = np.zeros(batch, np.int64)
    for b in range(batch):
        kq = 0
        kx = 0
        kqx = 0
        for t in range(taps):
            j = idx[t, 0]
            if j < 0:
                continue
            qv = pre[b, j]
            qg[b, t] = qv
            if qv != 0:
                kq += 1
            if use_nc:
                xv = x[b, j]
                xg[b, t] = xv
                if xv != 0:
                    x_taps[b, kx] = t
                    kx += 1
                    if qv != 0:
                        kqx += 1
        nq[b] = kq
        nx[b] = kx
        nqx[b] = kqx
    n_causal = 0
    n_noncausal = 0
    n_contrib = 0
    s = np.int64(shift)
    cs = np.int64(causal_shift)
    ncs = np.int64(noncausal_shift)
    mask, half = _rounding_masks(s)
    left = -s if s < 0 else np.int64(0)
    for o in range(n_out):
        for b in range(batch):
            c = causal[b, o, 0]
            nv = noncausal[b, o, 0] if use_nc else np.int64(0)
            if c == 0 and nv == 0:
                continue
            if c != 0 and nv != 0:
                n_causal += nq[b]
                n_noncausal += nx[b]
                n_contrib += nq[b] + nx[b] - nqx[b]
                if s > 0:
                    for t in range(taps):
                        v = ((c * qg[b, t]) << cs) + ((nv * xg[b, t]) << ncs)
                        total[o, t] += _round_positive_shift(v, s, mode, mask, half)
                else:
                    for t in range(taps):
                        v = ((c * qg[b, t]) << cs) + ((nv * xg[b, t]) << ncs)
                        total[o, t] += v << left
            elif c != 0:
                n_causal += nq[b]
                n_contrib += nq[b]
                if s > 0:
                    for t in range(taps):
                        v = (c * qg[b, t]) << cs
                        total[o, t] += _round_positive_shift(v, s, mode, mask, half)
                else:
                    for t in range(taps):
                        v = (c * qg[b, t]) << cs
                        total[o, t] += v << left
            else:
                n_noncausal += nx[b]
                n_contrib += nx[b]
                for k in range(nx[b]):
                    t = x_taps[b, k]
                    v = (nv * xg[b, t]) << ncs
                    total[o, t] += shift_right_round_int(v, s, mode, 0)
    return n_causal, n_noncausal, n_contrib


@numba.njit(cache=True, inline="always")
def _round_shift(v, s, mode, mask, half):
    """shift_right_round_int(v, s, mode, 0) for any s (s <= 0: the exact left shift)."""
    if s > 0:
        return _round_positive_shift(v, s, mode, mask, half)
    return v << -s


@numba.njit(cache=True)
def accumulate_update_dense(causal, pre, noncausal, x, causal_shift, noncausal_shift, shift, mode, acc, lo, hi,
                            policy, bits, signed, out):
    """out = overflow(acc + accumulate_update's sum) for a dense layer (input j is tap j),
    in one pass over the accumulator.

    causal, noncausal (B, n_out) int64 (noncausal may have size 0: alpha_post = 0); pre,
    x (B, n_in) int64; acc, out (n_out, n_in) int64 or int32 (out is written, acc only
    read; the sums are exact int64 either way). The overflow is the accumulator format's
    (lo, hi, policy 0 saturate / 1 wrap / 2 raise: counted only, out then holds the
    exact sums, bits, signed), as round_overflow with shift 0 applies it; an int32 out
    holds every code of a format within int32, but under raise with events only an int64
    out holds the exact sums.
    Per sample b and synapse (o, j): c = (m q_j << causal_shift) + (n x_j << noncausal_shift),
    rounded by ``shift`` (mode 0..3; 3, stochastic, rounds with zero random bits, i.e.
    floor, as accumulate_update) and added exactly. A row with m != 0 runs over all
    inputs (vectorized) and corrects the inputs with x_j != 0 by round(c) - round(m q_j
    << causal_shift); a row with only n != 0 runs over the inputs with x_j != 0 (a spike
    adds the one value round(n << noncausal_shift)). A zero term adds round(0) = 0 in
    every mode. Returns accumulate_update's counts (causal products, non-causal adds,
    rounded contributions) and the overflow events."""
    batch, n_out = causal.shape
    taps = pre.shape[1]
    use_nc = noncausal.size > 0
    active = np.empty((batch, taps), np.int64)  # inputs with x != 0, per sample
    n_q = np.zeros(batch, np.int64)  # non-zero pre-traces
    n_x = np.zeros(batch, np.int64)  # non-zero inputs
    n_qx = np.zeros(batch, np.int64)  # both
    for b in range(batch):
        for t in range(taps):
            n_q[b] += pre[b, t] != 0
        if use_nc:
            k = 0
            for t in range(taps):
                if x[b, t] != 0:
                    active[b, k] = t
                    k += 1
                    n_qx[b] += pre[b, t] != 0
            n_x[b] = k
    s = np.int64(shift)
    cs = np.int64(causal_shift)
    ncs = np.int64(noncausal_shift)
    mask, half = _rounding_masks(s)
    period, low_bits, sign_bit = _wrap_constants(bits)
    zero = np.int64(0)
    n_causal = 0
    n_noncausal = 0
    n_contrib = 0
    events = 0
    row = np.empty(taps, np.int64)  # one accumulator row, exact in int64 whatever out's dtype
    for o in range(n_out):
        for t in range(taps):
            row[t] = acc[o, t]
        for b in range(batch):
            c = causal[b, o]
            nv = noncausal[b, o] if use_nc else np.int64(0)
            if c == 0 and nv == 0:
                continue
            qrow = pre[b]
            if c != 0:
                n_causal += n_q[b]
                n_contrib += n_q[b]
                if s > 0 and mode == 1:  # nearest_even, the usual update format: its own loop
                    for t in range(taps):
                        row[t] += _round_positive_shift((c * qrow[t]) << cs, s, 1, mask, half)
                elif s > 0:
                    for t in range(taps):
                        row[t] += _round_positive_shift((c * qrow[t]) << cs, s, mode, mask, half)
                else:
                    for t in range(taps):
                        row[t] += ((c * qrow[t]) << cs) << -s
                if nv != 0:
                    n_noncausal += n_x[b]
                    n_contrib += n_x[b] - n_qx[b]
                    for k in range(n_x[b]):
                        t = active[b, k]
                        cq = (c * qrow[t]) << cs
                        row[t] += (_round_shift(cq + ((nv * x[b, t]) << ncs), s, mode, mask, half)
                                   - _round_shift(cq, s, mode, mask, half))
            else:
                n_noncausal += n_x[b]
                n_contrib += n_x[b]
                spike = _round_shift(nv << ncs, s, mode, mask, half)  # x_j = 1
                for k in range(n_x[b]):
                    t = active[b, k]
                    xv = x[b, t]
                    row[t] += spike if xv == 1 else _round_shift((nv * xv) << ncs, s, mode, mask, half)
        if policy == 0:  # saturate, the usual accumulator: a loop without the other policies
            for t in range(taps):
                value = row[t]
                events += (value < lo) | (value > hi)
                out[o, t] = min(max(value, lo), hi)
        else:
            for t in range(taps):
                code, event = _round_overflow_one(row[t], zero, 0, zero, zero, lo, hi, policy, low_bits, sign_bit,
                                                  period, signed)
                events += event
                out[o, t] = code
    return n_causal, n_noncausal, n_contrib, events


@numba.njit(cache=True, inline="always")
def _write_offset(lanes, i, weight_left, mode):
    """The stochastic offset of element i's write (mode 3; 0 otherwise): the top
    ``weight_left`` bits of lane i's next word, above 32 bits the word shifted left by
    weight_left - 32. Advances lane i once per write, even when nothing is rounded."""
    if mode != 3:
        return np.int64(0)
    if weight_left <= 32:
        lanes[i], r = random_bits_int(lanes[i], weight_left)
        return r
    lanes[i], r = random_bits_int(lanes[i], 32)
    return r << (weight_left - 32)


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
        out[i] = shift_right_round_int(wide, weight_left, mode, _write_offset(lanes, i, weight_left, mode))


@numba.njit(cache=True)
def weight_write_overflow(weight, step, eta, weight_left, update_left, mode, lanes, lo, hi, policy, bits, signed,
                          out):
    """weight_write followed by the weight format's overflow, in one pass; returns
    (events, max |W|, max |step|). step may be int32 or int64 (each element is widened).
    Policies 0 (saturate) and 1 (wrap) as round_overflow with shift 0; under 2 (raise)
    the caller runs the numpy path instead. The maxima let
    the caller run its exactness check (config.check_exact) on the same operands as the
    unfused write: were it to fail, the caller raises and discards out and lanes."""
    zero = np.int64(0)
    period, low_bits, sign_bit = _wrap_constants(bits)
    events = 0
    top_weight = zero
    top_step = zero
    for i in range(weight.size):
        w = np.int64(weight[i])
        a = np.int64(step[i])  # an int32 accumulator: abs(-2**31) needs 64 bits
        top_weight = max(top_weight, abs(w))
        top_step = max(top_step, abs(a))
        wide = (w << weight_left) - ((eta * a) << update_left)
        q = shift_right_round_int(wide, weight_left, mode, _write_offset(lanes, i, weight_left, mode))
        out[i], event = _round_overflow_one(q, zero, 0, zero, zero, lo, hi, policy, low_bits, sign_bit, period,
                                            signed)
        events += event
    return events, top_weight, top_step


@numba.njit(cache=True)
def lion_direction(acc, momentum, g_shift, direction_shift, momentum_shift, mode, lo, hi, policy, bits, signed,
                   direction, new_momentum):
    """Lion's step of one tensor (spec.Optimizer), elementwise in one pass:
    g = overflow(round(acc >> g_shift)) in the momentum format, d = g - m,
    direction = sign(m + round(d >> direction_shift)), new_momentum =
    overflow(m + round(d >> momentum_shift)); every shift rounds in ``mode`` (0..2),
    overflow as round_overflow (policy 0 saturate / 1 wrap; 2 raise: the caller runs the
    numpy path). Returns (events of g, events of the new momentum, ok); ok is False where
    round_overflow would be out of its contract for acc (the caller then runs the numpy
    path, which raises)."""
    one = np.int64(1)
    zero = np.int64(0)
    s = np.int64(g_shift)
    limit = one << np.int64(62)
    left = one << (np.int64(63) + s) if s < 0 else limit
    check = s != 0
    mask, half = _rounding_masks(s)
    n1 = np.int64(direction_shift)
    n2 = np.int64(momentum_shift)
    mask1, half1 = _rounding_masks(n1)
    mask2, half2 = _rounding_masks(n2)
    period, low_bits, sign_bit = _wrap_constants(bits)
    g_events = 0
    m_events = 0
    bad = False
    for i in range(acc.size):
        v = np.int64(acc[i])  # int32 or int64 accumulators
        bad |= _out_of_contract(v, check, limit, left)
        g, event = _round_overflow_one(v, s, mode, mask, half, lo, hi, policy, low_bits, sign_bit, period, signed)
        g_events += event
        m = momentum[i]
        d = g - m
        t = m + _round_shift(d, n1, mode, mask1, half1)
        direction[i] = (t > 0) - (t < 0)
        new_momentum[i], event = _round_overflow_one(m + _round_shift(d, n2, mode, mask2, half2), zero, 0, zero,
                                                     zero, lo, hi, policy, low_bits, sign_bit, period, signed)
        m_events += event
    if bad:
        return 0, 0, False
    return g_events, m_events, True


@numba.njit(cache=True)
def grid_codes(values, scale, inv_scale, lo, hi, out):
    """out[i] = values[i] * scale (scale = 2**frac, inv_scale = 2**-frac) when every
    value lies exactly on the grid 2**-frac and its code within [lo, hi]; returns False
    (out then unusable) if any value does not (off the grid, out of range, NaN, inf).
    Such values quantize to exactly this code in every rounding mode with no overflow
    event, so the caller may skip the general quantizer; otherwise it must run it.
    Scaling by a power of two is correctly rounded like ldexp, and the round trip
    back to the value proves it exact. Branch-free, so it vectorizes."""
    ok = True
    for i in range(values.size):
        code, good = _grid_code(values[i], scale, inv_scale, lo, hi)
        ok &= good
        out[i] = code
    return ok


@numba.njit(cache=True, inline="always")
def _grid_code(v, scale, inv_scale, lo, hi):
    """(code, True) for a float64 v on the grid with its code in [lo, hi]; else (0, False)."""
    s = v * scale
    good = (s >= lo) & (s <= hi) & (math.floor(s) == s) & (s * inv_scale == v)
    return (np.int64(s) if good else np.int64(0)), good


@numba.njit(cache=True)
def grid_codes_time_major(values, scale, inv_scale, lo, hi, out):
    """grid_codes of values (B, T, n) (float32 or float64, each value taken exactly as a
    float64) written time-major into out (T, B, n) int64, so that each step's block is
    contiguous; returns False where grid_codes would (out then unusable)."""
    batch, steps, n = values.shape
    ok = True
    for b in range(batch):
        for t in range(steps):
            for i in range(n):
                code, good = _grid_code(np.float64(values[b, t, i]), scale, inv_scale, lo, hi)
                ok &= good
                out[t, b, i] = code
    return ok


@numba.njit(cache=True, inline="always")
def _round_overflow_one(v, s, mode, mask, half, lo, hi, policy, low_bits, sign_bit, period, signed):
    """One element of round_overflow: (code, 1 if out of [lo, hi] else 0), branch-light."""
    if s > 0:
        q = v >> s  # floor (and stochastic with zero random bits, never passed here)
        r = v & mask
        if mode == 1:  # nearest_even
            q += (r > half) | ((r == half) & ((q & 1) == 1))
        elif mode == 2:  # nearest_away
            q += (r > half) | ((r == half) & (q >= 0))
    elif s < 0:
        q = v << (-s)
    else:
        q = v
    event = (q < lo) | (q > hi)
    if policy == 0:  # saturate
        q = min(max(q, lo), hi)
    elif policy == 1:  # wrap: the low bits, sign-extended
        w = q & low_bits
        if signed:
            w = w - period * (w >= sign_bit)
        q = w if event else q
    return q, event


@numba.njit(cache=True, inline="always")
def _out_of_contract(v, check, limit, left):
    """True where shift_right_round would raise: |v| >= 2**62, or v << -s leaves int64."""
    return check & ((v >= limit) | (v <= -limit) | (v >= left) | (v < -left))


@numba.njit(cache=True)
def round_overflow(values, shift, mode, lo, hi, policy, bits, signed, out):
    """out = overflow(shift_right_round(values, shift, mode)) in one pass; returns
    (events, ok). Same bits as core.rounding.shift_right_round followed by
    core.overflow.apply_overflow for modes 0..2 (the caller does not pass
    stochastic) and policies 0 (saturate) and 1 (wrap); under 2 (raise) values are only
    counted. ok is False where shift_right_round would raise (a value at or beyond
    2**62 in magnitude when shift != 0, or a left shift that leaves int64); out is then
    unusable and the caller runs the numpy path, which raises. values and out may be
    the same array.
    """
    if mode == 1 and policy == 0:  # the usual formats: one loop without the other modes
        return _round_overflow_loop(values, shift, 1, lo, hi, 0, bits, signed, out)
    return _round_overflow_loop(values, shift, mode, lo, hi, policy, bits, signed, out)


@numba.njit(cache=True, inline="always")
def _round_overflow_loop(values, shift, mode, lo, hi, policy, bits, signed, out):
    """round_overflow's loop; inlined with constant mode and policy, it compiles to their case only."""
    s = np.int64(shift)
    one = np.int64(1)
    limit = one << np.int64(62)
    left = one << (np.int64(63) + s) if s < 0 else limit
    check = s != 0
    mask, half = _rounding_masks(s)
    period, low_bits, sign_bit = _wrap_constants(bits)
    events = 0
    bad = False
    for i in range(values.size):
        v = values[i]
        bad |= _out_of_contract(v, check, limit, left)
        q, event = _round_overflow_one(v, s, mode, mask, half, lo, hi, policy, low_bits, sign_bit, period, signed)
        events += event
        out[i] = q
    if bad:
        return 0, False
    return events, True


@numba.njit(cache=True)
def trace_step(trace, decay, trace_left, value, value_left, shift, mode, lo, hi, policy, bits, signed, out):
    """out = round_overflow((decay * trace << trace_left) + (value << value_left), ...)
    for 2-d trace and value of one shape (out: same shape); returns (events, ok,
    non-zero values), events and ok as in round_overflow."""
    if shift > 0 and mode == 1 and policy == 0:  # the usual formats: one loop without the other modes
        return _trace_loop(trace, decay, trace_left, value, value_left, shift, 1, lo, hi, 0, bits, signed, out)
    return _trace_loop(trace, decay, trace_left, value, value_left, shift, mode, lo, hi, policy, bits, signed, out)


@numba.njit(cache=True, inline="always")
def _trace_loop(trace, decay, trace_left, value, value_left, shift, mode, lo, hi, policy, bits, signed, out):
    """trace_step's loop; inlined with constant mode and policy, it compiles to their case only."""
    rows, cols = trace.shape
    s = np.int64(shift)
    one = np.int64(1)
    limit = one << np.int64(62)
    left = one << (np.int64(63) + s) if s < 0 else limit
    check = s != 0
    mask, half = _rounding_masks(s)
    period, low_bits, sign_bit = _wrap_constants(bits)
    events = 0
    nonzero = 0
    bad = False
    for b in range(rows):
        for i in range(cols):
            x = value[b, i]
            nonzero += x != 0
            v = ((decay * trace[b, i]) << trace_left) + (x << value_left)
            bad |= _out_of_contract(v, check, limit, left)
            q, event = _round_overflow_one(v, s, mode, mask, half, lo, hi, policy, low_bits, sign_bit, period, signed)
            events += event
            out[b, i] = q
    if bad:
        return 0, False, 0
    return events, True, nonzero


@numba.njit(cache=True)
def lif_forward(syn, syn_left, rec, rec_left, bias, bias_left, cur_shift, cur_mode, cur_lo, cur_hi, cur_policy,
                cur_bits, cur_signed, beta, membrane, leak_left, join_left, mem_shift, mem_mode, mem_lo, mem_hi,
                mem_policy, mem_bits, mem_signed, theta, spiking, soft, current, u, spikes, v):
    """The element-wise part of one layer step, fused (same bits as the numpy path in
    fixedpoint.network.int_layer_step):

        current = round_overflow((syn << syn_left) + (rec << rec_left) + (bias << bias_left), cur_shift)
        u       = round_overflow((beta * membrane << leak_left) + (current << join_left), mem_shift)
        spikes  = u - theta > 0;  v = overflow(u - theta spikes) (soft) or (spikes ? 0 : u) (hard)

    syn, membrane (B, n); rec (B, n) or empty; bias (n,) or empty. spikes and v are
    written only when ``spiking``. Returns (current events, u events, v events, spikes,
    ok); ok as in round_overflow (outputs unusable when False)."""
    if cur_mode == 1 and cur_policy == 0 and mem_mode == 1 and mem_policy == 0:
        # the usual formats (nearest_even, saturate): one loop without the other cases
        return _lif_loop(syn, syn_left, rec, rec_left, bias, bias_left,
                         (cur_shift, 1, cur_lo, cur_hi, 0, cur_bits, cur_signed), beta, membrane, leak_left,
                         join_left, (mem_shift, 1, mem_lo, mem_hi, 0, mem_bits, mem_signed), theta, spiking, soft,
                         current, u, spikes, v)
    return _lif_loop(syn, syn_left, rec, rec_left, bias, bias_left,
                     (cur_shift, cur_mode, cur_lo, cur_hi, cur_policy, cur_bits, cur_signed), beta, membrane,
                     leak_left, join_left, (mem_shift, mem_mode, mem_lo, mem_hi, mem_policy, mem_bits, mem_signed),
                     theta, spiking, soft, current, u, spikes, v)


@numba.njit(cache=True, inline="always")
def _lif_loop(syn, syn_left, rec, rec_left, bias, bias_left, cur_format, beta, membrane, leak_left, join_left,
              mem_format, theta, spiking, soft, current, u, spikes, v):
    """lif_forward's loop; inlined with constant modes and policies, it compiles to their case
    only. The formats travel as tuples (shift, mode, lo, hi, policy, bits, signed): Python
    passes more than 30 arguments as *args, which numba does not inline."""
    cur_shift, cur_mode, cur_lo, cur_hi, cur_policy, cur_bits, cur_signed = cur_format
    mem_shift, mem_mode, mem_lo, mem_hi, mem_policy, mem_bits, mem_signed = mem_format
    rows, cols = syn.shape
    use_rec = rec.size > 0
    use_bias = bias.size > 0
    one = np.int64(1)
    limit = one << np.int64(62)
    cs = np.int64(cur_shift)
    c_left = one << (np.int64(63) + cs) if cs < 0 else limit
    c_check = cs != 0
    c_mask, c_half = _rounding_masks(cs)
    c_period, c_low, c_sign = _wrap_constants(cur_bits)
    ms = np.int64(mem_shift)
    m_left = one << (np.int64(63) + ms) if ms < 0 else limit
    m_check = ms != 0
    m_mask, m_half = _rounding_masks(ms)
    m_period, m_low, m_sign = _wrap_constants(mem_bits)
    zero = np.int64(0)
    cur_events = 0
    u_events = 0
    v_events = 0
    n_spikes = 0
    bad = False
    for b in range(rows):
        for i in range(cols):
            w = syn[b, i] << syn_left
            if use_rec:
                w += rec[b, i] << rec_left
            if use_bias:
                w += bias[i] << bias_left
            bad |= _out_of_contract(w, c_check, limit, c_left)
            cur, event = _round_overflow_one(w, cs, cur_mode, c_mask, c_half, cur_lo, cur_hi, cur_policy, c_low,
                                             c_sign, c_period, cur_signed)
            cur_events += event
            current[b, i] = cur
            w = ((beta * membrane[b, i]) << leak_left) + (cur << join_left)
            bad |= _out_of_contract(w, m_check, limit, m_left)
            uu, event = _round_overflow_one(w, ms, mem_mode, m_mask, m_half, mem_lo, mem_hi, mem_policy, m_low,
                                            m_sign, m_period, mem_signed)
            u_events += event
            u[b, i] = uu
            if spiking:
                spike = np.int64(uu - theta > 0)
                n_spikes += spike
                spikes[b, i] = spike
                vv = uu - theta * spike if soft else (zero if spike == 1 else uu)
                vv, event = _round_overflow_one(vv, zero, mem_mode, zero, zero, mem_lo, mem_hi, mem_policy, m_low,
                                                m_sign, m_period, mem_signed)
                v_events += event
                v[b, i] = vv
    if bad:
        return 0, 0, 0, 0, False
    return cur_events, u_events, v_events, n_spikes, True


@numba.njit(cache=True, inline="always")
def _leading_one(a):
    """Position of the leading one of a >= 0 (0 for a = 0 and a = 1): a priority encoder
    as a branch-free binary search (a data-dependent loop mispredicts)."""
    msb = np.int64(0)
    for width in (32, 16, 8, 4, 2):  # a fixed count: the same five steps for every a
        step = np.int64(width) * ((a >> np.int64(width)) != 0)
        msb += step
        a >>= step
    return msb + ((a >> np.int64(1)) != 0)


@numba.njit(cache=True)
def psi_lookup(u, theta, lut, index_shift, mantissa_bits, out):
    """out = lut[index(|u - theta|)], the rational Psi of a spiking layer from its table
    (fixedpoint.config.psi_lut_index, same indices; u, out (B, n) int64 membrane codes,
    lut int64 psi codes). ``a = |z| >> index_shift``; uniform (``mantissa_bits`` < 0):
    index = min(a, entries - 1); segmented: k = max(0, msb(a) - mantissa_bits),
    index = min((k << mantissa_bits) + (a >> k), entries - 1). Returns True (a caller
    whose stand-in returns False runs the numpy path)."""
    rows, cols = u.shape
    last = np.int64(lut.size - 1)
    s = np.int64(index_shift)
    m = np.int64(mantissa_bits)
    index = np.empty(cols, np.int64)
    for b in range(rows):
        # the indices first, then the reads: a loop without the table read vectorizes
        if m >= 0:
            for i in range(cols):
                a = abs(u[b, i] - theta) >> s
                k = max(_leading_one(a) - m, np.int64(0))
                index[i] = min((k << m) + (a >> k), last)
        else:
            for i in range(cols):
                index[i] = min(abs(u[b, i] - theta) >> s, last)
        for i in range(cols):
            out[b, i] = lut[index[i]]
    return True


#: layout of one row of ``trace_steps``' spec: the constants of one trace update
TRACE_DECAY, TRACE_LEFT, VALUE_LEFT, TRACE_SHIFT, TRACE_MODE, TRACE_LO, TRACE_HI, TRACE_POLICY, TRACE_BITS, \
    TRACE_SIGNED = range(10)


@numba.njit(cache=True)
def trace_steps(traces, values, spec, outs, results):
    """Several :func:`trace_step` updates in one call (the traces of one layer and step).

    traces, values, outs: tuples of 2-d int64 arrays (trace i, its value and its output
    share one shape); spec (n, 10) int64, row i = decay, trace_left, value_left, shift,
    mode, lo, hi, policy, bits, signed of trace i (the TRACE_* columns); results (n, 3)
    int64, row i = trace_step's (events, ok, non-zero values) of trace i."""
    for i in range(len(traces)):
        r = spec[i]
        events, ok, nonzero = trace_step(traces[i], r[TRACE_DECAY], r[TRACE_LEFT], values[i], r[VALUE_LEFT],
                                         r[TRACE_SHIFT], r[TRACE_MODE], r[TRACE_LO], r[TRACE_HI], r[TRACE_POLICY],
                                         r[TRACE_BITS], r[TRACE_SIGNED] != 0, outs[i])
        results[i, 0] = events
        results[i, 1] = ok
        results[i, 2] = nonzero
