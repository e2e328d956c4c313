"""The dense-layer kernels == the general kernels (and the numpy overflow), bit for bit.

``synaptic_current_dense`` (W^T in a narrow dtype, int16/int32/int64 sums chosen by a
bound), ``accumulate_update_dense`` (accumulator, contributions and the update format's
overflow in one pass, int64 or int32 accumulators) and ``grid_codes_time_major`` replace
the general kernels on dense layers. tests/test_fixedpoint_paths.py switches off the
element-wise fast paths; the overflow folded into ``accumulate_update_dense`` is not one
of them, so it is checked here against ``accumulate_update`` followed by
``core.overflow.apply_overflow``, for every policy, rounding mode and shift sign, with
bounds that reach each sum width. ``psi_lookup`` (the Psi table) and ``trace_steps``
(every trace of a layer in one call) are checked against ``psi_lut_index`` and
``trace_step``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.formats import FixedFormat
from core.overflow import FixedOverflowError, apply_overflow
from fixedpoint import kernels
from fixedpoint.config import psi_lut_index
from fixedpoint.network import acc_dtype
from tests.test_fixedpoint_emulation import hyp, psi_lut_configs

POLICY = {"saturate": 0, "wrap": 1, "raise": 2}


def _narrow(weight: np.ndarray) -> np.ndarray:
    low, high = int(weight.min()), int(weight.max())
    dtype = next(d for d in (np.int8, np.int16, np.int32, np.int64)
                 if np.iinfo(d).min <= low and high <= np.iinfo(d).max)
    return weight.T.astype(dtype, order="C")


@pytest.mark.parametrize("seed", range(4))
def test_synaptic_current_dense_equals_general_kernel(seed):
    rng = np.random.default_rng(seed)
    for _ in range(400):
        batch, n_in, n_out = (int(v) for v in rng.integers(1, 40, 3))
        w_max = int(rng.choice([0, 1, 3, 127, 128, 255, 40_000, 2**31, 2**40]))
        weight = rng.integers(-w_max, w_max + 1, (n_out, n_in), dtype=np.int64)
        x_max = int(rng.choice([1, 2, 255, 2**20]))
        x = rng.integers(-x_max if rng.random() < 0.3 else 0, x_max + 1, (batch, n_in), dtype=np.int64)
        x[rng.random((batch, n_in)) < 0.5] = 0
        if w_max > 2**20:
            x = np.clip(x, -1000, 1000)
        ref = np.zeros((batch, n_out, 1), np.int64)
        events = kernels.synaptic_current(weight, x, np.arange(n_in).reshape(n_in, 1), ref)
        out = np.full((batch, n_out), 7, np.int64)  # overwritten, not added to
        bound = int(np.abs(weight).max(initial=0))
        assert kernels.synaptic_current_dense(_narrow(weight), bound, x, out) == events
        assert np.array_equal(out, ref[:, :, 0])


def test_synaptic_current_dense_sum_width_boundaries():
    """Sums that just fit int16 / int32 and just do not."""
    for w, count in ((128, 255), (128, 256), (2**15, 2**16 - 1), (2**15, 2**16 + 1)):
        for sign in (1, -1):
            weight = np.full((3, count), sign * w, np.int64)
            weight[1] = -sign * w
            x = np.ones((2, count), np.int64)
            out = np.empty((2, 3), np.int64)
            kernels.synaptic_current_dense(_narrow(weight), w, x, out)
            assert np.array_equal(out, x @ weight.T)


@pytest.mark.parametrize("seed", range(4))
def test_accumulate_update_dense_equals_general_kernel_and_overflow(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(500):
        batch, n_in, n_out = int(rng.integers(1, 5)), int(rng.integers(1, 30)), int(rng.integers(1, 12))
        q_max, m_max = int(rng.choice([1, 100, 70_000, 2**20])), int(rng.choice([1, 3, 200, 40_000]))
        pre = rng.integers(-q_max if rng.random() < 0.3 else 0, q_max + 1, (batch, n_in), dtype=np.int64)
        pre[rng.random((batch, n_in)) < 0.3] = 0
        if rng.random() < 0.5:
            x = rng.integers(-3, 3, (batch, n_in), dtype=np.int64)
        else:
            x = (rng.random((batch, n_in)) < 0.3).astype(np.int64)
        x[rng.random((batch, n_in)) < 0.4] = 0
        causal = rng.integers(-m_max, m_max + 1, (batch, n_out), dtype=np.int64)
        causal[rng.random((batch, n_out)) < 0.4] = 0
        noncausal = rng.integers(-m_max, m_max + 1, (batch, n_out), dtype=np.int64)
        noncausal[rng.random((batch, n_out)) < 0.4] = 0
        no_noncausal = rng.random() < 0.2
        c_shift, n_shift = int(rng.integers(0, 5)), int(rng.integers(0, 9))
        shift, mode = int(rng.integers(-3, 9)), int(rng.integers(0, 4))
        fmt = FixedFormat(signed=bool(rng.random() < 0.8), bits=int(rng.integers(4, 33)), frac=0,
                          overflow=str(rng.choice(list(POLICY))))
        acc = rng.integers(max(fmt.min_int, -2**12), min(fmt.max_int, 2**12) + 1, (n_out, n_in), dtype=np.int64)

        total = acc.copy()
        counts = kernels.accumulate_update(
            causal[:, :, None], pre, np.zeros((0, 0, 0), np.int64) if no_noncausal else noncausal[:, :, None], x,
            np.arange(n_in).reshape(n_in, 1), c_shift, n_shift, shift, mode, total)
        out = np.empty_like(acc)
        *dense_counts, events = kernels.accumulate_update_dense(
            causal, pre, np.zeros((0, 0), np.int64) if no_noncausal else noncausal, x, c_shift, n_shift, shift,
            mode, acc, fmt.min_int, fmt.max_int, POLICY[fmt.overflow], fmt.bits, fmt.signed, out)
        assert tuple(dense_counts) == counts
        # the int32 accumulators of a format within int32 (acc_dtype): the same codes
        store = acc_dtype(fmt)
        narrow = np.full(acc.shape, 7, store)
        assert kernels.accumulate_update_dense(
            causal, pre, np.zeros((0, 0), np.int64) if no_noncausal else noncausal, x, c_shift, n_shift, shift,
            mode, acc.astype(store), fmt.min_int, fmt.max_int, POLICY[fmt.overflow], fmt.bits, fmt.signed,
            narrow) == (*counts, events)
        try:
            expected, expected_events = apply_overflow(total, fmt)
        except FixedOverflowError:  # raise: the kernel counts and leaves the exact sums (in int64)
            assert events > 0 and np.array_equal(out, total)
            continue
        assert events == expected_events
        assert np.array_equal(out, expected)
        assert np.array_equal(narrow, expected)


def test_acc_dtype_holds_every_code():
    assert acc_dtype(FixedFormat.parse("s32.16")) == np.int32
    assert acc_dtype(FixedFormat.parse("u31.0")) == np.int32
    assert acc_dtype(FixedFormat.parse("u32.0")) == np.int64  # 2**32 - 1 is beyond int32


@st.composite
def psi_case(draw):
    """A Psi table (uniform or segmented), theta, and membranes around theta (octave edges)."""
    lut = draw(psi_lut_configs())
    theta = draw(st.integers(-(1 << 31), (1 << 31) - 1))
    edges = [sign * ((1 << j) + d) for j in range(33) for d in (-1, 0, 1) for sign in (1, -1)]
    z = np.array(edges + draw(st.lists(st.integers(-(1 << 33), 1 << 33), max_size=60)), np.int64)
    cols = draw(st.integers(1, 7))
    z = np.resize(z, (len(z) + cols - 1) // cols * cols).reshape(-1, cols)
    return lut, theta, z + theta


@hyp(200)
@given(psi_case())
def test_psi_lookup_equals_psi_lut_index(data):
    lut, theta, u = data
    table = np.arange(lut.entries, dtype=np.int64) * 3 + 1
    out = np.empty(u.shape, np.int64)
    assert kernels.psi_lookup(u, theta, table, lut.index_shift,
                              lut.mantissa_bits if lut.kind == "segmented" else -1, out)
    assert np.array_equal(out, table[psi_lut_index(np.abs(u - theta), lut)])


@pytest.mark.parametrize("seed", range(3))
def test_trace_steps_equals_trace_step(seed):
    """Every policy, rounding mode (but stochastic) and shift sign; raise counts only; a
    value out of the rounding contract gives ok = 0 for its trace alone."""
    rng = np.random.default_rng(300 + seed)
    for _ in range(300):
        n = int(rng.integers(1, 5))
        traces, values, rows, expected = [], [], [], []
        for _ in range(n):
            shape = (int(rng.integers(1, 4)), int(rng.integers(1, 9)))
            fmt = FixedFormat(signed=bool(rng.random() < 0.7), bits=int(rng.integers(2, 33)), frac=0,
                              overflow=str(rng.choice(list(POLICY))))
            big = int(rng.choice([8, 2**16, 2**40, 2**62]))
            trace = rng.integers(-big, big, shape, dtype=np.int64)
            value = rng.integers(-3, 4, shape, dtype=np.int64)
            value[rng.random(shape) < 0.4] = 0
            row = [int(rng.integers(-5, 6)), int(rng.integers(0, 3)), int(rng.integers(0, 5)),
                   int(rng.integers(-4, 12)), int(rng.integers(0, 3)), fmt.min_int, fmt.max_int,
                   POLICY[fmt.overflow], fmt.bits, int(fmt.signed)]
            if big == 2**62:
                row[0], row[1] = 1, 0  # |trace| up to 2**62: out of the contract where shift != 0
            out = np.empty(shape, np.int64)
            result = kernels.trace_step(trace, row[0], row[1], value, row[2], row[3], row[4], row[5], row[6], row[7],
                                        row[8], bool(row[9]), out)
            traces.append(trace)
            values.append(value)
            rows.append(row)
            expected.append((result, out))
        outs = tuple(np.empty(t.shape, np.int64) for t in traces)
        results = np.zeros((n, 3), np.int64)
        kernels.trace_steps(tuple(traces), tuple(values), np.array(rows, np.int64), outs, results)
        for (events, ok, nonzero), out, ((e_events, e_ok, e_nonzero), e_out) in zip(results, outs, expected):
            assert (bool(ok), events, nonzero) == (e_ok, e_events, e_nonzero)
            if ok:
                assert np.array_equal(out, e_out)


def test_grid_codes_time_major_equals_grid_codes():
    rng = np.random.default_rng(7)
    for _ in range(600):
        batch, steps, n = (int(v) for v in rng.integers(1, 6, 3))
        frac = int(rng.integers(-2, 5))
        values = (rng.integers(-300, 300, (batch, steps, n)) * 2.0 ** -frac).astype(
            np.float32 if rng.random() < 0.5 else np.float64)
        if rng.random() < 0.3:
            values[0, 0, 0] = 0.3  # off the grid
        if rng.random() < 0.1:
            values[-1, -1, -1] = np.nan
        if rng.random() < 0.5:
            values = values[:, ::-1]  # not contiguous
        lo, hi = int(rng.integers(-300, 1)), int(rng.integers(0, 300))
        flat = np.ascontiguousarray(np.swapaxes(values, 0, 1), dtype=np.float64)
        ref = np.empty(flat.shape, np.int64)
        ok = kernels.grid_codes(flat.reshape(-1), 2.0 ** frac, 2.0 ** -frac, lo, hi, ref.reshape(-1))
        out = np.empty(flat.shape, np.int64)
        assert kernels.grid_codes_time_major(values, 2.0 ** frac, 2.0 ** -frac, lo, hi, out) == ok
        if ok:
            assert np.array_equal(out, ref)
