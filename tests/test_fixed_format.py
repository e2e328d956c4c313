"""Tests of the fixed-point foundation: formats, rounding, overflow, RNG.

References are independent of the code under test: exact rationals (`fractions.Fraction`)
for rounding, plain Python integers for wrap/saturate, and a separate pure-Python
xorshift32/splitmix64 for the RNG.  Hypothesis runs derandomized (reproducible).
"""

from __future__ import annotations

import itertools
import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixedpoint
from fixedpoint import (
    FixedFormat,
    FixedOverflowError,
    OverflowCounter,
    apply_overflow,
    mode_code,
    next_states,
    overflow_code,
    random_bits,
    random_bits_int,
    requantize,
    requantize_int,
    round_float,
    round_float_scalar,
    saturate_int,
    seed_lanes,
    shift_right_round,
    shift_right_round_int,
    wrap_int,
    xorshift32_next,
)
from core import rng

DOC = Path(__file__).resolve().parents[1] / "docs" / "fixedpoint_formats.md"
DETERMINISTIC = ("floor", "nearest_even", "nearest_away")
ALL_MODES = (*DETERMINISTIC, "stochastic")
HYP = settings(
    max_examples=500, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- references


def ref_round(x: Fraction, mode: str) -> int:
    """Exact rational rounding, written from the definitions."""
    if mode == "floor":
        return math.floor(x)
    if mode == "nearest_even":
        return round(x)  # Fraction.__round__ rounds ties to even
    if mode == "nearest_away":
        sign = -1 if x < 0 else 1
        return sign * math.floor(abs(x) + Fraction(1, 2))
    raise AssertionError(mode)


def ref_wrap(v: int, bits: int, signed: bool) -> int:
    if signed:
        return (v + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
    return v % 2**bits


def ref_xorshift32(x: int) -> int:
    x ^= (x << 13) % 2**32
    x ^= x >> 17
    x ^= (x << 5) % 2**32
    return x


def ref_seed(seed: int, lane: int) -> int:
    m64 = 2**64
    z = (seed * 2**32 + lane + 0x9E3779B97F4A7C15) % m64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % m64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % m64
    z ^= z >> 31
    state = z >> 32
    return state if state else 0x9E3779B9


def small_formats():
    for signed, bits, frac in itertools.product((True, False), range(1, 9), (-3, 0, 3, 8, 11)):
        if signed and bits < 2:
            continue
        yield FixedFormat(signed=signed, bits=bits, frac=frac)


# --------------------------------------------------------------------------- FixedFormat


def test_derived_quantities_s8_4():
    f = FixedFormat.parse("s8.4")
    assert (f.min_int, f.max_int) == (-128, 127)
    assert (f.min_value, f.max_value, f.lsb) == (-8.0, 7.9375, 0.0625)
    assert f.describe() == "s8.4 nearest_even saturate"
    assert str(f) == f.describe()
    u = FixedFormat.parse("u8.0")
    assert (u.min_int, u.max_int, u.min_value, u.max_value) == (0, 255, 0.0, 255.0)
    coarse = FixedFormat.parse("s8.-2")
    assert (coarse.lsb, coarse.min_value, coarse.max_value) == (4.0, -512.0, 508.0)
    fine = FixedFormat.parse("u8.10")
    assert fine.max_value == 255 / 1024
    wide = FixedFormat.parse("s32.63")
    assert wide.min_int == -(2**31) and wide.lsb == 2.0**-63


def test_frozen_hashable_and_equal():
    a = FixedFormat(signed=True, bits=16, frac=8)
    b = FixedFormat.parse("s16.8 nearest_even saturate")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(ValueError):
        a.bits = 12  # type: ignore[misc]
    assert a.replace(bits=12).bits == 12 and a.bits == 16


@pytest.mark.parametrize("fmt", list(small_formats())[::7] + [FixedFormat.parse("s32.-32")])
@pytest.mark.parametrize("rounding_mode", ALL_MODES)
@pytest.mark.parametrize("policy", ("saturate", "wrap", "raise"))
def test_parse_round_trip(fmt, rounding_mode, policy):
    f = fmt.replace(rounding=rounding_mode, overflow=policy)
    assert FixedFormat.parse(f.describe()) == f
    assert FixedFormat.parse(f.describe_short(), rounding=rounding_mode, overflow=policy) == f
    assert FixedFormat.model_validate(f.describe()) == f  # bare string where a format goes
    assert FixedFormat.model_validate(f.model_dump()) == f  # YAML mapping form


def test_parse_overrides_win_and_defaults():
    f = FixedFormat.parse("u8.0 floor wrap", overflow="raise")
    assert (f.rounding, f.overflow) == ("floor", "raise")
    g = FixedFormat.parse("s4.1")
    assert (g.rounding, g.overflow) == ("nearest_even", "saturate")


@pytest.mark.parametrize(
    "text", ["x16.8", "s16", "s16.8.1", "16.8", "s16.8 up", "s16.8 floor floor", "", "s.8"]
)
def test_parse_rejects_bad_text(text):
    with pytest.raises(ValueError, match="cannot parse fixed-point format"):
        FixedFormat.parse(text)


@pytest.mark.parametrize(
    "fields, field, fragment",
    [
        (dict(signed=True, bits=33, frac=0), "bits", "2..32 for signed"),
        (dict(signed=True, bits=1, frac=0), "bits", "2..32 for signed"),
        (dict(signed=False, bits=0, frac=0), "bits", "1..32 for unsigned"),
        (dict(signed=False, bits=64, frac=0), "bits", "1..32 for unsigned"),
        (dict(signed=True, bits=8, frac=64), "frac", "-32..63"),
        (dict(signed=True, bits=8, frac=-33), "frac", "-32..63"),
        (dict(signed=True, bits=True, frac=0), "bits", "must be an integer"),
        (dict(signed=True, bits=8.0, frac=0), "bits", "must be an integer"),
        (dict(signed=True, bits=8, frac="4"), "frac", "must be an integer"),
        (dict(signed=1, bits=8, frac=0), "signed", "true or false"),
        (dict(signed=True, bits=8, frac=0, rounding="up"), "rounding", "nearest_even"),
        (dict(signed=True, bits=8, frac=0, overflow="clip"), "overflow", "saturate"),
        (dict(signed=True, bits=8, frac=0, width=8), "width", "Extra inputs"),
        (dict(bits=8, frac=0), "signed", "required"),
    ],
)
def test_validation_errors_name_the_field(fields, field, fragment):
    with pytest.raises(ValueError) as info:
        FixedFormat(**fields)
    text = str(info.value)
    assert re.search(rf"^{field}$", text, re.MULTILINE), text
    assert fragment in text


def test_numpy_integers_accepted():
    f = FixedFormat(signed=np.bool_(True), bits=np.int64(8), frac=np.int32(4))
    assert f == FixedFormat.parse("s8.4") and type(f.bits) is int


# --------------------------------------------------------------------------- quantize / to_float


@pytest.mark.parametrize("fmt", list(small_formats()), ids=FixedFormat.describe_short)
def test_exhaustive_round_trip_small_widths(fmt):
    m = np.arange(fmt.min_int, fmt.max_int + 1, dtype=np.int64)
    x = fmt.to_float(m)
    assert x.dtype == np.float64
    assert [Fraction(v) for v in x] == [Fraction(int(k), 1) * Fraction(2) ** -fmt.frac for k in m]
    for mode in ALL_MODES:
        f = fmt.replace(rounding=mode, overflow="raise")
        words = np.arange(m.size, dtype=np.uint32) * np.uint32(2654435761)  # any words
        assert np.array_equal(f.quantize(x, rng_bits=words), m), mode
        assert all(f.contains(v, exact=True) for v in x[:: max(1, m.size // 16)])
    # midpoints between codes: deterministic modes against exact rationals
    mid = (m[:-1].astype(np.float64) + 0.5) * fmt.lsb
    for mode in DETERMINISTIC:
        got = fmt.replace(rounding=mode).quantize(mid)
        want = [ref_round(Fraction(int(k)) + Fraction(1, 2), mode) for k in m[:-1]]
        want = np.clip(want, fmt.min_int, fmt.max_int)
        assert np.array_equal(got, want), mode
    # one lsb beyond each end saturates and is counted
    counter = OverflowCounter()
    beyond = np.array([fmt.min_value - fmt.lsb, fmt.max_value + fmt.lsb])
    got = fmt.quantize(beyond, tensor="t", counter=counter)
    assert got.tolist() == [fmt.min_int, fmt.max_int] and counter.events("t") == 2
    assert not fmt.contains(beyond[0]) and not fmt.contains(beyond[1])


def test_quantize_wrap_raise_and_non_finite():
    f = FixedFormat.parse("s8.0 floor wrap")
    x = np.array([127.9, 128.0, -129.0, 300.0, 2.0**70 + 2.0**8 * 3, -(2.0**64)])
    counter = OverflowCounter()
    got = f.quantize(x, tensor="w", counter=counter)
    want = [ref_wrap(math.floor(v), 8, True) for v in x]
    assert got.tolist() == want and counter.events("w") == 5
    sat = FixedFormat.parse("u4.0")
    assert sat.quantize([np.inf, -np.inf, 1e300]).tolist() == [15, 0, 15]
    with pytest.raises(ValueError, match="infinite"):
        f.quantize([np.inf])
    with pytest.raises(ValueError, match=r"NaN at index \(1,\)"):
        sat.quantize([1.0, np.nan], tensor="layer.x")
    strict = FixedFormat.parse("s8.4 nearest_even raise")
    with pytest.raises(FixedOverflowError, match=r"overflow in n.theta at step 3, index \(1,\)"):
        strict.quantize([0.0, 1e30], tensor="n.theta", step=3)
    with pytest.raises(ValueError, match="rng_bits"):
        FixedFormat.parse("s8.4 stochastic").quantize([0.1])


def test_quantize_stochastic_matches_integer_path():
    f = FixedFormat.parse("s12.3 stochastic")
    shift = 5  # inputs on the grid 2**-(3+5)
    m = np.arange(-3000, 3000, 7, dtype=np.int64)
    words = seed_lanes(9, m.size)
    got = f.quantize(np.ldexp(m.astype(np.float64), -(3 + shift)), rng_bits=words)
    top = words.astype(np.int64) >> (32 - shift)
    assert np.array_equal(got, shift_right_round(m, shift, "stochastic", top))


def test_contains_and_check_fits_messages():
    f = FixedFormat.parse("s8.4")
    with pytest.raises(ValueError) as info:
        f.check_fits("neuron.theta", 300.0)
    assert str(info.value) == "neuron.theta = 300.0 does not fit s8.4 (range -8.0 .. 7.9375)"
    # 7.96875 = 127.5 lsb: nearest_even goes to 128, out of range; floor keeps 127
    assert not f.contains(7.96875) and f.replace(rounding="floor").contains(7.96875)
    assert f.contains(7.95) and f.contains(-8.03)  # round back into range
    assert not f.replace(rounding="stochastic").contains(7.95)  # might round up
    assert not f.contains(float("nan")) and not f.contains(float("inf"))
    with pytest.raises(ValueError, match="not a finite number"):
        f.check_fits("x", float("nan"))
    neighbours = r"not a multiple of the lsb 0.0625 \(neighbours 0.0 and 0.0625\)"
    with pytest.raises(ValueError, match=neighbours):
        f.check_fits("neuron.beta", 0.03, exact=True)
    f.check_fits("neuron.beta", 0.03)  # rounds to 0.0: fits
    f.check_fits("neuron.beta", 0.5, exact=True)


def test_to_float_rejects_floats():
    with pytest.raises(ValueError, match="integers"):
        FixedFormat.parse("s8.4").to_float(np.array([1.0]))


# --------------------------------------------------------------------------- rounding


def tie_heavy_values(max_shift: int = 62):
    """(value, shift) pairs; a third of them exact ties, some at the contract edge."""
    shift = st.integers(1, max_shift)
    limit = 2**62 - 1

    @st.composite
    def tie(draw):
        s = draw(shift)
        q = draw(st.integers(-(2 ** (62 - s)), 2 ** (62 - s) - 1))  # keeps |value| < 2**62
        return q * 2**s + 2 ** (s - 1), s

    @st.composite
    def plain(draw):
        s = draw(shift)
        return draw(st.one_of(st.integers(-limit, limit), st.integers(-4096, 4096))), s

    @st.composite
    def edge(draw):
        s = draw(shift)
        return draw(st.sampled_from([limit, -limit, limit - 1, -limit + 1, 0, -1, 1])), s

    return st.one_of(tie(), plain(), edge())


@pytest.mark.parametrize("mode", DETERMINISTIC)
@HYP
@given(pair=tie_heavy_values())
def test_shift_right_round_against_fractions(mode, pair):
    value, shift = pair
    want = ref_round(Fraction(value, 2**shift), mode)
    assert int(shift_right_round(value, shift, mode)) == want
    assert shift_right_round_int(value, shift, mode_code(mode), 0) == want


@HYP
@given(pair=tie_heavy_values(), data=st.data())
def test_shift_right_round_stochastic_against_fractions(pair, data):
    value, shift = pair
    r = data.draw(st.integers(0, 2**shift - 1))
    want = math.floor(Fraction(value + r, 2**shift))
    assert int(shift_right_round(value, shift, "stochastic", r)) == want
    assert shift_right_round_int(value, shift, mode_code("stochastic"), r) == want
    # bits above `shift` are masked off
    junk = data.draw(st.integers(0, 2**62 - 1)) << shift
    assert shift_right_round_int(value, shift, 3, (junk | r) & (2**63 - 1)) == want


@pytest.mark.parametrize("mode", ALL_MODES)
def test_vectorised_equals_numba_on_arrays(mode):
    gen = np.random.default_rng(1234)
    for shift in (0, 1, 2, 7, 31, 62, -3):
        bound = 2**62 if shift >= 0 else 2**40
        v = gen.integers(-bound + 1, bound, size=300, dtype=np.int64)
        v[:4] = [0, -1, 1, -(2 ** max(shift - 1, 0))]
        r = gen.integers(0, 2**62, size=v.size, dtype=np.int64)
        got = shift_right_round(v, shift, mode, r)
        code = mode_code(mode)
        want = [shift_right_round_int(int(a), shift, code, int(b)) for a, b in zip(v, r)]
        assert got.dtype == np.int64 and got.tolist() == want
        assert requantize(v, 10 + shift, 10, mode, r).tolist() == want
        assert [requantize_int(int(a), shift, 0, code, int(b)) for a, b in zip(v, r)] == want


def test_shift_zero_and_left_shift():
    v = np.array([-5, 0, 7], dtype=np.int64)
    for mode in ALL_MODES:
        assert shift_right_round(v, 0, mode, 1).tolist() == [-5, 0, 7]
        assert shift_right_round(v, -3, mode, 1).tolist() == [-40, 0, 56]
        assert requantize(v, 2, 5, mode, 1).tolist() == [-40, 0, 56]
    assert shift_right_round_int(-5, -3, 1, 0) == -40
    with pytest.raises(ValueError, match="overflows int64"):
        shift_right_round(np.array([2**40]), -30, "floor")


def test_shift_right_round_contract_errors():
    with pytest.raises(ValueError, match="2\\*\\*62"):
        shift_right_round(np.array([2**62]), 3, "floor")
    with pytest.raises(ValueError, match="-62..62"):
        shift_right_round(1, 63, "floor")
    with pytest.raises(ValueError, match="random_bits"):
        shift_right_round(1, 3, "stochastic")
    with pytest.raises(ValueError, match="integer array"):
        shift_right_round(np.array([1.5]), 1, "floor")
    with pytest.raises(ValueError, match="not one of"):
        mode_code("truncate")


@pytest.mark.parametrize("shift", range(1, 7))
def test_stochastic_mean_is_exact(shift):
    """Over all 2**shift random values the results sum to exactly `value`."""
    r = np.arange(2**shift, dtype=np.int64)
    for value in range(-70, 71):
        out = shift_right_round(np.full(r.size, value, dtype=np.int64), shift, "stochastic", r)
        assert Fraction(int(out.sum()), r.size) == Fraction(value, 2**shift)
        scalar = sum(shift_right_round_int(value, shift, 3, int(k)) for k in r)
        assert scalar == int(out.sum())


# --------------------------------------------------------------------------- float emulation


@st.composite
def float_cases(draw):
    frac = draw(st.integers(-32, 40))
    shift = draw(st.integers(0, 30))
    m = draw(st.one_of(st.integers(-(2**53) + 1, 2**53 - 1), st.integers(-300, 300)))
    if draw(st.booleans()) and shift > 0:  # force an exact tie
        m = (m >> shift << shift) + 2 ** (shift - 1)
        m = max(min(m, 2**53 - 1), -(2**53) + 1)
    r = draw(st.integers(0, 2**shift - 1))
    return m, frac, shift, r


@pytest.mark.parametrize("mode", ALL_MODES)
@HYP
@given(case=float_cases())
def test_round_float_bit_identical_to_integer_path(mode, case):
    m, frac, shift, r = case
    x = math.ldexp(float(m), -(frac + shift))  # exact: |m| < 2**53
    u = r / 2**shift
    want = int(shift_right_round(m, shift, mode, r))
    got = round_float(x, frac, mode, u)
    assert math.ldexp(float(got), frac) == want
    assert round_float_scalar(x, frac, mode_code(mode), u) == float(got)
    if mode == "stochastic" and shift <= 32:  # the 32-bit word form of the same offset
        w = (r << (32 - shift)) | (m & ((1 << (32 - shift)) - 1))
        assert math.ldexp(float(round_float(x, frac, mode, w / 2**32)), frac) == want


def test_round_float_examples_and_errors():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    assert round_float(x, 0, "floor").tolist() == [-3, -2, -1, 0, 1, 2]
    assert round_float(x, 0, "nearest_even").tolist() == [-2, -2, 0, 0, 2, 2]
    assert round_float(x, 0, "nearest_away").tolist() == [-3, -2, -1, 1, 2, 3]
    assert round_float(x, 0, "stochastic", 0.5).tolist() == [-2, -1, 0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        round_float(x, 0, "stochastic", 1.0)
    with pytest.raises(ValueError, match="needs u"):
        round_float(x, 0, "stochastic")


def test_doc_worked_example_table():
    """The rounding table in the doc is what the code computes."""
    rows = re.findall(
        r"^\|\s*(-?\d+\.\d+)\s*" + r"\|\s*(-?\d+)\s*" * 4 + r"\|([^|]+)\|",
        DOC.read_text(), re.MULTILINE,
    )
    assert len(rows) == 8
    for value, v, *modes, stoch in rows:
        assert int(v) == Fraction(value) * 4
        for mode, want in zip(DETERMINISTIC, modes):
            assert int(shift_right_round(int(v), 2, mode)) == ref_round(Fraction(value), mode)
            assert int(want) == ref_round(Fraction(value), mode)
        want_s = [int(t) for t in stoch.split(",")]
        got_s = shift_right_round(np.full(4, int(v)), 2, "stochastic", np.arange(4))
        assert got_s.tolist() == want_s


# --------------------------------------------------------------------------- overflow


@pytest.mark.parametrize("fmt", [f for f in small_formats() if f.frac == 0])
def test_wrap_and_saturate_exhaustive(fmt):
    v = np.arange(-3 * 2**fmt.bits, 3 * 2**fmt.bits, dtype=np.int64)
    wrapped, n_wrap = apply_overflow(v, fmt.replace(overflow="wrap"))
    assert wrapped.tolist() == [ref_wrap(int(k), fmt.bits, fmt.signed) for k in v]
    sat, n_sat = apply_overflow(v, fmt)
    assert sat.tolist() == [min(max(int(k), fmt.min_int), fmt.max_int) for k in v]
    outside = sum(1 for k in v if not fmt.min_int <= k <= fmt.max_int)
    assert n_wrap == n_sat == outside
    sample = v[::5]
    assert [wrap_int(int(k), fmt.bits, fmt.signed) for k in sample] == wrapped[::5].tolist()
    assert [saturate_int(int(k), fmt.min_int, fmt.max_int) for k in sample] == sat[::5].tolist()


def test_wrap_int64_extremes():
    v = np.array([2**63 - 1, -(2**63)], dtype=np.int64)
    for bits, signed in ((32, True), (32, False), (2, True), (1, False)):
        fmt = FixedFormat(signed=signed, bits=bits, frac=0, overflow="wrap")
        want = [ref_wrap(int(k), bits, signed) for k in v]
        assert apply_overflow(v, fmt)[0].tolist() == want
        assert [wrap_int(int(k), bits, signed) for k in v] == want


def test_raise_message_names_tensor_step_index_value():
    fmt = FixedFormat.parse("s16.8", overflow="raise")
    v = np.zeros((4, 16), dtype=np.int64)
    v[3, 12] = 40000
    with pytest.raises(FixedOverflowError) as info:
        apply_overflow(v, fmt, tensor="layer1.membrane", step=7)
    assert str(info.value) == (
        "overflow in layer1.membrane at step 7, index (3, 12): "
        "value 40000 outside s16.8 [-32768, 32767] (overflow policy 'raise' in quant)"
    )
    assert isinstance(info.value, InputError)  # every CLI prints it as one line, exit 2
    v[0, 0] = -40000
    first = r"^overflow in x, index \(0, 0\): value -40000 .*2 of 64"
    with pytest.raises(FixedOverflowError, match=first):
        apply_overflow(v, fmt, tensor="x")
    ok, n = apply_overflow(np.array([1, -2]), fmt)
    assert ok.tolist() == [1, -2] and n == 0


def test_overflow_counter_summary():
    counter = OverflowCounter()
    s8 = FixedFormat.parse("s8.4")
    u3 = FixedFormat.parse("u3.0 floor wrap")
    for step in range(3):
        apply_overflow(
            np.arange(-200, 200), s8, tensor="layer1.membrane", step=step, counter=counter
        )
    apply_overflow(np.arange(10), u3, tensor="l2.q", counter=counter)
    apply_overflow(np.arange(10), u3, tensor="l2.p", counter=counter)
    assert counter.rows() == [
        ("layer1.membrane", "s8.4 nearest_even saturate", 3 * 144, 1200),
        ("l2.q", "u3.0 floor wrap", 2, 10),
        ("l2.p", "u3.0 floor wrap", 2, 10),
    ]
    assert counter.total_events == 436
    text = counter.summary()
    lines = text.splitlines()
    assert lines[0].split() == ["tensor", "format", "events", "elements"]
    assert lines[2].split() == [
        "layer1.membrane", "s8.4", "nearest_even", "saturate", "432", "1200"
    ]
    assert lines[-1].split() == ["total", "436", "1220"]
    with pytest.raises(ValueError, match="recorded as"):
        counter.record("l2.q", s8, events=0, elements=1)
    other = OverflowCounter()
    other.record("l2.q", u3, events=1, elements=5)
    counter.merge(other)
    assert counter.events("l2.q") == 3 and counter.events("missing") == 0
    assert "no tensors" in OverflowCounter().summary()


def test_policy_codes():
    assert [overflow_code(p) for p in ("saturate", "wrap", "raise")] == [0, 1, 2]
    assert [mode_code(m) for m in ALL_MODES] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not one of"):
        overflow_code("clip")


# --------------------------------------------------------------------------- RNG


def test_rng_first_outputs_against_independent_python():
    state = ref_seed(1, 0)
    ref = [state]
    for _ in range(5):
        state = ref_xorshift32(state)
        ref.append(state)
    s = seed_lanes(1, 1)
    got = [int(s[0])]
    for _ in range(5):
        s = next_states(s)
        got.append(int(s[0]))
    assert got == ref
    scalar = [int(seed_lanes(1, 1)[0])]
    for _ in range(5):
        scalar.append(int(xorshift32_next(np.uint32(scalar[-1]))))
    assert scalar == ref
    # the doc's reference table holds the same numbers
    doc = DOC.read_text()
    block = doc.split("<!-- rng-reference-begin -->")[1].split("<!-- rng-reference-end -->")[0]
    row = r"^\|\s*(\d+)[^|]*\|\s*0x([0-9A-Fa-f]{8})\s*\|\s*(\d+)\s*\|\s*(\S+)\s*\|"
    rows = re.findall(row, block, re.M)
    assert [int(h, 16) for _, h, _, _ in rows] == ref
    assert [int(d) for _, _, d, _ in rows] == ref
    assert [int(t) for _, _, _, t in rows[1:]] == [x >> 24 for x in ref[1:]]


def test_rng_outside_anchors():
    assert int(xorshift32_next(np.uint32(2463534242))) == 723471715  # Marsaglia 2003
    assert int(seed_lanes(0, 1)[0]) == 0xE220A839  # splitmix64(0) = 0xE220A8397B1DCDAF


def test_rng_lanes_vectorised_and_scalar_agree():
    seed, lanes = 0xDEADBEEF, 257
    s = seed_lanes(seed, lanes)
    assert s.dtype == np.uint32 and s.all()
    assert s.tolist() == [ref_seed(seed, i) for i in range(lanes)]
    assert len(set(s.tolist())) == lanes
    ref = s.tolist()
    for nbits in (0, 1, 5, 16, 31, 32):
        before, untouched = s, s.copy()
        s, bits = random_bits(s, nbits)
        assert np.array_equal(before, untouched)  # pure: the input is not advanced in place
        ref = [ref_xorshift32(x) for x in ref]
        assert s.tolist() == ref
        assert bits.dtype == np.int64 and bits.tolist() == [x >> (32 - nbits) for x in ref]
        for x_prev, x_new, b in zip(before[:20], s[:20], bits[:20]):
            new, scalar_bits = random_bits_int(x_prev, nbits)
            assert (int(new), int(scalar_bits)) == (int(x_new), int(b))


def test_rng_zero_replacement_and_errors():
    assert rng._nonzero_state(np.array([0, 5], dtype=np.uint32)).tolist() == [0x9E3779B9, 5]
    assert ref_seed(0, 0) == 0xE220A839
    with pytest.raises(ValueError, match="fixed point"):
        next_states(np.array([1, 0], dtype=np.uint32))
    with pytest.raises(ValueError, match="uint32"):
        next_states(np.array([1, 2]))
    with pytest.raises(ValueError, match="seed"):
        seed_lanes(2**32, 4)
    with pytest.raises(ValueError, match="num_lanes"):
        seed_lanes(1, -1)
    with pytest.raises(ValueError, match="nbits"):
        random_bits(seed_lanes(1, 2), 33)
    assert seed_lanes(3, 0).size == 0


def test_random_bits_are_uniform_enough():
    """Sanity, not a statistical test: 8-bit draws over 4096 lanes fill every bucket."""
    _, bits = random_bits(seed_lanes(5, 4096), 8)
    counts = np.bincount(bits, minlength=256)
    assert counts.min() > 0 and abs(bits.mean() - 127.5) < 4


# --------------------------------------------------------------------------- docs


def test_legend_mentions_the_sign_bit_and_other_tools():
    legend = fixedpoint.__doc__
    for fragment in ("m * 2**-frac", "INCLUDES the sign bit", "ap_fixed<W,I>", "Brevitas",
                     "[-2**(bits-1), 2**(bits-1) - 1]", "[0, 2**bits - 1]", "2**-frac"):
        assert fragment in legend, fragment
