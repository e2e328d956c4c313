"""The dense-layer kernels == the general kernels (and the numpy overflow), bit for bit.

``synaptic_current_dense`` (W^T in a narrow dtype, int16/int32/int64 sums chosen by a
bound), ``accumulate_update_dense`` (accumulator, contributions and the update format's
overflow in one pass) and ``grid_codes_time_major`` replace the general kernels on dense
layers. tests/test_fixedpoint_paths.py switches off the element-wise fast paths; the
overflow folded into ``accumulate_update_dense`` is not one of them, so it is checked here
against ``accumulate_update`` followed by ``core.overflow.apply_overflow``, for every
policy, rounding mode and shift sign, with bounds that reach each sum width.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.formats import FixedFormat
from core.overflow import FixedOverflowError, apply_overflow
from fixedpoint import kernels

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
        try:
            expected, expected_events = apply_overflow(total, fmt)
        except FixedOverflowError:  # raise: the kernel counts and leaves the exact sums
            assert events > 0 and np.array_equal(out, total)
            continue
        assert events == expected_events
        assert np.array_equal(out, expected)


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
