"""The fused weight-write kernels == the numpy path they replace, bit for bit.

``kernels.weight_write_overflow`` (the write, its rounding and the weight format's
overflow in one pass) and ``kernels.lion_direction`` (lion's g, direction and momentum
in one pass) are what every write of an online run executes, once per window step. The
reference here is written from core.rounding.shift_right_round, core.overflow.apply_overflow
and the unfused ``kernels.weight_write``: the path the network takes under ``raise``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.formats import FixedFormat
from core.overflow import apply_overflow, overflow_code
from core.rng import seed_lanes
from core.rounding import mode_code, shift_right_round
from fixedpoint import kernels

MODES = ("floor", "nearest_even", "nearest_away")


def _format(bits: int, frac: int, rounding: str, overflow: str) -> FixedFormat:
    return FixedFormat(signed=True, bits=bits, frac=frac, rounding=rounding, overflow=overflow)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(2, 16), weight_left=st.integers(0, 20),
       update_left=st.integers(0, 8), eta=st.integers(0, 2**12), rounding=st.sampled_from(MODES + ("stochastic",)),
       overflow=st.sampled_from(("saturate", "wrap")), sign_step=st.booleans())
def test_weight_write_overflow_equals_write_then_overflow(seed, bits, weight_left, update_left, eta, rounding,
                                                          overflow, sign_step):
    rng = np.random.default_rng(seed)
    fmt = _format(bits, 4, rounding, overflow)
    n = int(rng.integers(1, 200))
    weight = rng.integers(fmt.min_int, fmt.max_int + 1, n, dtype=np.int64)
    step = (rng.integers(-1, 2, n) if sign_step else rng.integers(-2**20, 2**20, n)).astype(np.int64)
    lanes = seed_lanes(int(rng.integers(0, 2**31)), n)
    ref_lanes, lanes_fused = lanes.copy(), lanes.copy()
    raw = np.empty(n, np.int64)
    kernels.weight_write(weight, step, np.int64(eta), weight_left, update_left, mode_code(rounding), ref_lanes, raw)
    expected, expected_events = apply_overflow(raw, fmt)
    out = np.empty(n, np.int64)
    events, top_weight, top_step = kernels.weight_write_overflow(
        weight, step, np.int64(eta), weight_left, update_left, mode_code(rounding), lanes_fused, fmt.min_int,
        fmt.max_int, overflow_code(overflow), fmt.bits, fmt.signed, out)
    assert np.array_equal(out, expected)
    assert events == expected_events
    assert np.array_equal(lanes_fused, ref_lanes)
    assert (top_weight, top_step) == (np.abs(weight).max(), np.abs(step).max())
    if rounding == "stochastic" and weight_left > 0:
        assert not np.array_equal(lanes_fused, lanes)  # one lane step per element and write


def _lion_reference(acc, m, g_shift, n1, n2, fmt):
    """Lion's step as spec.Optimizer states it, from the numpy primitives."""
    g, g_events = apply_overflow(shift_right_round(acc, g_shift, fmt.rounding), fmt)
    d = g - m
    direction = np.sign(m + shift_right_round(d, n1, fmt.rounding))
    new_m, m_events = apply_overflow(m + shift_right_round(d, n2, fmt.rounding), fmt)
    return direction, new_m, g_events, m_events


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(4, 32), g_shift=st.integers(-6, 12),
       n1=st.integers(0, 12), n2=st.integers(0, 16), rounding=st.sampled_from(MODES),
       overflow=st.sampled_from(("saturate", "wrap")))
def test_lion_direction_equals_numpy_path(seed, bits, g_shift, n1, n2, rounding, overflow):
    rng = np.random.default_rng(seed)
    fmt = _format(bits, bits // 2, rounding, overflow)
    n = int(rng.integers(1, 200))
    m = rng.integers(fmt.min_int, fmt.max_int + 1, n, dtype=np.int64)
    # accumulators that land inside, at and beyond the momentum format once shifted
    span = 1 << min(bits + max(g_shift, 0) + 1, 60)
    acc = rng.integers(-span, span, n, dtype=np.int64) >> max(-g_shift, 0)
    acc[: n // 4] = 0
    direction, new_m = np.empty(n, np.int64), np.empty(n, np.int64)
    g_events, m_events, ok = kernels.lion_direction(acc, m, g_shift, n1, n2, mode_code(rounding), fmt.min_int,
                                                    fmt.max_int, overflow_code(overflow), fmt.bits, fmt.signed,
                                                    direction, new_m)
    ref_direction, ref_m, ref_g_events, ref_m_events = _lion_reference(acc, m, g_shift, n1, n2, fmt)
    assert ok
    assert np.array_equal(direction, ref_direction)
    assert np.array_equal(new_m, ref_m)
    assert (g_events, m_events) == (ref_g_events, ref_m_events)


def test_lion_direction_reports_values_outside_the_rounding_contract():
    """|acc| >= 2**62 with a shift: the kernel says so and the network runs the numpy path,
    which raises with its message."""
    fmt = _format(32, 16, "nearest_even", "saturate")
    acc = np.array([0, 2**62], np.int64)
    m = np.zeros(2, np.int64)
    _, _, ok = kernels.lion_direction(acc, m, 3, 3, 7, 1, fmt.min_int, fmt.max_int, 0, 32, True,
                                      np.empty(2, np.int64), np.empty(2, np.int64))
    assert not ok


def test_int32_accumulators_are_widened_before_any_arithmetic():
    """The accumulators reach the write as int32 (network.acc_dtype): -2**31, whose abs
    and products need 64 bits, gives the results of its int64 copy."""
    fmt = _format(16, 8, "nearest_even", "saturate")
    acc32 = np.array([-2**31, 2**31 - 1, -5, 0, 7], np.int32)
    acc64 = acc32.astype(np.int64)
    weight = np.array([3, -4, 100, 0, -32768], np.int64)
    results = []
    for acc in (acc32, acc64):
        out, lanes = np.empty(5, np.int64), seed_lanes(3, 5)
        events, top_weight, top_step = kernels.weight_write_overflow(
            weight, acc, np.int64(3), 20, 0, 1, lanes, fmt.min_int, fmt.max_int, 0, fmt.bits, fmt.signed, out)
        results.append((out.tolist(), int(events), int(top_weight), int(top_step)))
    assert results[0] == results[1]
    assert results[0][3] == 2**31
    momentum = np.array([0, 5, -5, 2**20, -2**20], np.int64)
    lion = []
    for acc in (acc32, acc64):
        direction, new_m = np.empty(5, np.int64), np.empty(5, np.int64)
        events = kernels.lion_direction(acc, momentum, 4, 3, 7, 1, fmt.min_int, fmt.max_int, 0, fmt.bits,
                                        fmt.signed, direction, new_m)
        lion.append((direction.tolist(), new_m.tolist(), events))
    assert lion[0] == lion[1]
    reference = _lion_reference(acc64, momentum, 4, 3, 7, fmt)
    assert lion[1][0] == reference[0].tolist() and lion[1][1] == reference[1].tolist()
