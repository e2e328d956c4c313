"""The integer softmax against float softmax, and the float sign optimizers step by step.

The integer softmax's bit-exactness against the float64 emulation is covered by
tests/test_fixedpoint_emulation.py (loss ce cases); here its error against the exact
float softmax: the table of 2^-r read at bin centres is off by at most 2^(0.5/N) - 1
(relative, N entries), and each e_c and p_c loses at most one lsb (2^-F) to flooring and
rounding, so |p - softmax(y)| <= 0.25 / N + 8 * 2^-F holds with margin (measured maxima:
N = 16: 1.1e-2, N = 64: 2.7e-3, N = 128: 1.3e-3).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InputError
from core.formats import FixedFormat
from core.quant import SoftmaxLutConfig
from fixedpoint.softmax import int_softmax, softmax_constants
from stllr.optim import Lion, Signum


def _probabilities(codes: np.ndarray, softmax: str, membrane: str, entries: int) -> np.ndarray:
    fs, fm = FixedFormat.parse(softmax), FixedFormat.parse(membrane)
    constants = softmax_constants(fs, fm, SoftmaxLutConfig(entries=entries))
    index_shift = fm.frac + fs.frac - (entries.bit_length() - 1)  # the spec's SH_SM_IDX
    _, products = int_softmax(codes, constants, index_shift)
    return np.round(products / 2.0 ** fs.frac) / 2.0 ** fs.frac  # nearest, as the format's rounding


@settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.integers(2, 12), st.sampled_from([16, 64, 256]), st.sampled_from([12, 15]), st.integers(0, 10_000),
       st.sampled_from([0.5, 3.0, 20.0]))
def test_integer_softmax_error_against_float(classes, entries, frac, seed, spread):
    rng = np.random.default_rng(seed)
    codes = np.round(rng.normal(0.0, spread, (64, classes)) * 2 ** 10).astype(np.int64)  # s16.10, |y| < 32
    codes = np.clip(codes, -(2 ** 15), 2 ** 15 - 1)
    p = _probabilities(codes, f"u{frac + 1}.{frac}", "s16.10", entries)
    exact = torch.softmax(torch.from_numpy(codes / 2.0 ** 10), -1).numpy()
    assert np.abs(p - exact).max() <= 0.25 / entries + 8 * 2.0 ** -frac
    assert np.all(p >= 0) and np.all(np.abs(p.sum(-1) - 1.0) <= classes * 2.0 ** -frac + 1.5 / entries)


def test_integer_softmax_corner_cases():
    # equal logits: every class gets the same p; one dominant class: p = 1 and 0 exactly
    p = _probabilities(np.zeros((1, 4), np.int64), "u16.15", "s16.10", 64)
    assert np.all(p == p[0, 0]) and abs(p[0, 0] - 0.25) < 2.0 ** -14
    p = _probabilities(np.array([[20 << 10, 0, -(5 << 10)]]), "u16.15", "s16.10", 64)
    assert p[0, 0] >= 1.0 - 2.0 ** -15 and p[0, 2] == 0.0 and p[0, 1] < 2.0 ** -14


@pytest.mark.parametrize("softmax, entries, message", [
    ("s16.15", 64, "needs an unsigned format"),
    ("u16.16", 64, "at least 1 integer bit"),
    ("u32.30", 64, "1/S numerator 2^(2F) needs 62 bits"),
    ("u4.2", 4096, "more index bits (12) than the 11 fraction bits"),
])
def test_softmax_formats_refused_by_name(softmax, entries, message):
    membrane = "s16.10" if entries < 4096 else "s12.9"
    with pytest.raises(InputError, match="quant.softmax"):
        try:
            softmax_constants(FixedFormat.parse(softmax), FixedFormat.parse(membrane), SoftmaxLutConfig(entries=entries))
        except InputError as error:
            assert message in str(error), str(error)
            raise


def test_softmax_table_entries_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="48 is not a power of two"):
        SoftmaxLutConfig(entries=48)


# ----------------------------------------------------------------------------- optimizers


def _steps(optimizer_class, grads, lr, betas):
    param = torch.nn.Parameter(torch.zeros(len(grads[0]), dtype=torch.float64))
    optimizer = optimizer_class([param], lr=lr, betas=betas)
    out = []
    for grad in grads:
        param.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
        out.append(param.detach().clone().tolist())
    return out


def test_lion_moves_every_weight_by_lr_in_the_interpolated_direction():
    # m starts at 0: step 1 direction sign(g1); m = 0.25 g1. Step 2: sign(0.5 m + 0.5 g2)
    grads = [[4.0, -1.0, 0.0], [-1.0, 3.0, 0.0]]
    out = _steps(Lion, grads, lr=0.5, betas=(0.5, 0.75))
    assert out[0] == [-0.5, 0.5, 0.0]
    # m = [1, -0.25, 0]; 0.5 m + 0.5 g2 = [0, 1.375, 0] -> sign [0, 1, 0]
    assert out[1] == [-0.5, 0.0, 0.0]


def test_signum_direction_is_the_sign_of_the_decayed_sum():
    grads = [[1.0, -2.0], [-1.5, 1.0], [-1.0, 1.0]]
    out = _steps(Signum, grads, lr=0.25, betas=(0.5,))
    # m: [1, -2] -> [-1, 0] -> [-1.5, 1]; W moves by -lr sign(m)
    assert out == [[-0.25, 0.25], [0.0, 0.25], [0.25, 0.0]]


def test_sign_optimizers_refuse_bad_arguments():
    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="lr must be > 0"):
        Lion([param], lr=0.0)
    with pytest.raises(ValueError, match=r"betas must be 1 values in \[0, 1\)"):
        Signum([param], lr=0.1, betas=(1.0,))


def test_float_loop_applies_lr_halve_at_per_epoch():
    from core.config import parse_config
    from stllr.data import load_data
    from stllr.train import build_network, build_optimizer, run_epoch

    config = parse_config({
        "network": {"input_shape": [64], "layers": [{"kind": "linear", "size": 8}, {"kind": "readout", "size": 10}]},
        "learning": {"rule": "stllr", "window": 2},
        "train": {"epochs": 8, "batch_size": 256, "optimizer": "lion", "lr": 0.01, "lr_halve_at": [0.25, 0.5]},
        "data": {"kind": "digits", "num_steps": 3, "seed": 0}})
    net = build_network(config)
    optimizer = build_optimizer(net, config)
    train_set, _ = load_data(config.data)
    seen = []
    for epoch in (0, 1, 2, 3, 7, 0):
        run_epoch(net, optimizer, train_set, config, epoch)
        seen.append(optimizer.param_groups[0]["lr"])
    assert seen == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.01]
