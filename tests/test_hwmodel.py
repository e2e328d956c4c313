"""hwmodel: the analytic cost model against the integer model, closed forms and bad input.

The key test: for the same network, formats and input, the estimate fed with the
activity the integer model's run logged (hwmodel.activity, counted from the logged
arrays with numpy) equals the integer model's executed-operation counters (OpCounter)
key by key -- layer, phase, kind, width, tensor -- for linear, recurrent, conv and readout
layers, BP / DFA / sDFA, several k, batch and online updates, both bias rules.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.quant import QuantConfig
from fixedpoint.config import SPIKES
from fixedpoint.network import IntNetwork
from hwmodel.activity import load_activity, measure_activity, parse_activity
from hwmodel.cli import main
from core.hardware import ActivityRates, HardwareConfig
from hwmodel.config import ModelInputs, load_inputs
from core.energy import linear_energy, product_energy, sram_pj_per_bit
from hwmodel.estimate import (
    EnergyModel,
    build_layers,
    estimate,
    expected_activity,
    inference_counts,
    make_setup,
    memory_tensors,
    stllr_counts,
)
from core.atomic import atomic_write_json
from core.config import parse_config
from core.errors import InputError
from stllr.network import SpikingNetwork

ROOT = Path(__file__).resolve().parents[1]
LEARN_PHASES = ("learning_signal", "eligibility_causal", "eligibility_noncausal", "accumulate")


def hyp(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ helpers


def make_config(network: dict, learning: dict, quant: dict | None = None, batch: int = 3, steps: int = 6,
                lr: float = 2.0 ** -10):
    data = {"network": network, "learning": {"loss": "mse", **learning},
            "train": {"batch_size": batch, "lr": lr}, "data": {"kind": "digits", "num_steps": steps}}
    if quant is not None:
        data["quant"] = quant
    return parse_config(data, "test")


def inputs_for(config, steps: int, hardware: HardwareConfig | None = None, rates=None) -> ModelInputs:
    return ModelInputs(config, config.quant or QuantConfig(), hardware or HardwareConfig(), rates, steps, "test")


def float_net(config, seed: int, scale: float) -> SpikingNetwork:
    torch.manual_seed(seed)
    net = SpikingNetwork(config.network, config.learning).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net


def spikes_in(shape, density: float, seed: int, binary: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random(shape) < density).astype(np.float64)
    if not binary:
        x = x * rng.integers(0, 5, shape)
    return x


def measured_vs_counted(config, x, y, tmp_path: Path, seed: int = 0, scale: float = 3.0):
    """(estimate of the training run, int model of it, estimate of inference, int model of it)."""
    steps = x.shape[1]
    inputs = inputs_for(config, steps)
    layers = build_layers(config, inputs.quant)
    out = []
    for train in (True, False):
        model = IntNetwork.from_float(float_net(config, seed, scale), inputs.quant, lr=config.train.lr)
        payload, _ = measure_activity(model, config, inputs.quant, x, y, train=train)
        path = tmp_path / f"activity_{train}.json"
        atomic_write_json(path, payload)  # through the file format, as the CLI reads it
        activity = load_activity(path, inputs, layers)
        modes = ("inference", "stllr", "bptt") if train else ("inference",)
        out += [estimate(inputs, activity, modes), model]
    return out


def assert_counts_equal(counted: dict, ops) -> None:
    got = {k: v for k, v in counted.items() if v}
    want = ops.as_dict()
    diff = [(k, got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
    assert not diff, f"{len(diff)} keys differ, first: {diff[:5]}"
    assert all(isinstance(v, int) for v in got.values())


DENSE = {"input_shape": [12], "layers": [{"kind": "linear", "size": 10}, {"kind": "recurrent", "size": 7},
                                         {"kind": "readout", "size": 4}]}
CONV = {"input_shape": [2, 7, 7], "psi": {"kind": "triangle", "scale": 0.3, "width": 1.0},
        "layers": [{"kind": "conv2d", "channels": 3, "kernel": 3, "stride": 2, "padding": 1},
                   {"kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1, "bias": False},
                   {"kind": "linear", "size": 5},
                   {"kind": "readout", "size": 3}]}


# --------------------------------------------------------------- THE key test: == OpCounter


@pytest.mark.parametrize("network", [DENSE, CONV], ids=["dense+recurrent", "conv"])
@pytest.mark.parametrize("signal", ["bp", "dfa", "sdfa"])
@pytest.mark.parametrize("window", [1, 3, 6])
def test_estimate_with_measured_activity_equals_int_model_counters(network, signal, window, tmp_path):
    config = make_config(network, {"window": window, "learning_signal": signal,
                                   "factors": {"lambda_post": 0.5, "alpha_post": -0.5, "alpha_pre": 1.0}})
    x = spikes_in((3, 6, *network["input_shape"]), 0.4, window, binary=True)
    y = np.array([0, 1, 2])
    est_train, model_train, est_infer, model_infer = measured_vs_counted(config, x, y, tmp_path)
    assert model_train.ops.get(phase="eligibility_causal") > 0  # the run really learned
    assert_counts_equal(est_train.results["stllr"].counts, model_train.ops)
    assert_counts_equal(est_infer.results["inference"].counts, model_infer.ops)


@st.composite
def case(draw):
    """A random small network the integer model accepts, its learning setup and input."""
    kind = draw(st.sampled_from(["linear", "recurrent", "conv2d", "readout"]))
    steps = draw(st.integers(1, 5))
    batch = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    psi = draw(st.sampled_from([{"kind": "rational", "gamma": 100.0}, {"kind": "rational", "gamma": 10.0},
                                {"kind": "triangle", "scale": 0.25, "width": 1.0},
                                {"kind": "triangle", "scale": 0.3, "width": 0.75}]))
    beta = draw(st.sampled_from([0.5, 0.75, 0.875, 0.9]))
    if kind == "conv2d":
        size = draw(st.sampled_from([3, 4, 5]))
        input_shape = [draw(st.integers(1, 2)), size, size]
        conv = {"kind": "conv2d", "channels": draw(st.integers(1, 3)), "kernel": draw(st.integers(1, 3)),
                "padding": draw(st.integers(0, 1)), "bias": bias}
        if draw(st.booleans()) and (size + 2 * conv["padding"] - conv["kernel"]) % 2 == 0:
            conv["stride"] = 2
        layers = [conv]
    else:
        input_shape = [draw(st.integers(1, 8))]
        layers = [] if kind == "readout" else [{"kind": kind, "size": draw(st.integers(1, 6)), "bias": bias}]
    if kind != "readout" and draw(st.booleans()):
        layers.append({"kind": draw(st.sampled_from(["linear", "recurrent"])), "size": draw(st.integers(1, 5)),
                       "bias": draw(st.booleans())})
    layers.append({"kind": "readout", "size": draw(st.integers(2, 4)), "bias": draw(st.booleans())})
    network = {"input_shape": input_shape, "psi": psi, "layers": layers,
               "neuron": {"beta": beta, "theta": draw(st.sampled_from([0.3, 0.6])),
                          "reset": draw(st.sampled_from(["soft", "hard"]))}}
    learning = {"window": draw(st.integers(1, steps)),
                "learning_signal": draw(st.sampled_from(["bp", "dfa", "sdfa"])),
                "update": draw(st.sampled_from(["batch", "online"])),
                "bias_update": draw(st.sampled_from(["reference", "exact"])),
                "rule": draw(st.sampled_from(["stllr", "stllr", "readout_only"])),
                "factors": {"lambda_post": draw(st.sampled_from([0.0, 0.25, 0.5])),
                            "lambda_pre": draw(st.sampled_from([None, 0.75, 1.0])),
                            "alpha_post": draw(st.sampled_from([0.0, -1.0, 0.5])),
                            "alpha_pre": draw(st.sampled_from([1.0, 0.75, -0.5]))}}
    binary = draw(st.booleans())
    quant = {"input": "u1.0" if binary else "u3.0",
             "weight": draw(st.sampled_from(["s8.6", "s8.6 stochastic", "s6.4"])),
             "psi_lut": draw(st.sampled_from([{"entries": 16, "index_shift": draw(st.integers(0, 4))},
                                              {"kind": "segmented", "entries": 24, "mantissa_bits": 2,
                                               "index_shift": draw(st.integers(0, 2))}]))}
    if beta != 0.9 and draw(st.booleans()):
        quant["leak_mode"] = "shift"
    x = spikes_in((batch, steps, *input_shape), draw(st.sampled_from([0.1, 0.4, 1.0])),
                  draw(st.integers(0, 99)), binary)
    y = np.random.default_rng(steps).integers(0, layers[-1]["size"], batch)
    return network, learning, quant, batch, steps, x, y, draw(st.sampled_from([1.0, 3.0])), draw(st.integers(0, 9))


@hyp(60)
@given(case())
def test_measured_estimate_equals_counters_random_networks(data):
    network, learning, quant, batch, steps, x, y, scale, seed = data
    try:
        config = make_config(network, learning, quant, batch=batch, steps=steps)
        config.network  # noqa: B018
        inputs = inputs_for(config, steps)
        layers = build_layers(config, inputs.quant)
    except InputError:
        return  # a constant does not fit its format: validation's job
    for train in (True, False):
        model = IntNetwork.from_float(float_net(config, seed, scale), inputs.quant, lr=config.train.lr)
        payload, _ = measure_activity(model, config, inputs.quant, x, y, train=train)
        activity = parse_activity(json.loads(json.dumps(payload)), "mem", inputs, layers)
        setup = make_setup(layers, config, steps, batch)
        tally = stllr_counts(layers, activity, setup) if train else inference_counts(layers, activity, setup)
        assert_counts_equal(tally.counts, model.ops)


# ------------------------------------------------------------------ memory == model arrays


STATE_FIELDS = {"membrane": "membrane", "pre_trace": "pre_trace", "post_trace": "post_trace",
                "bias_trace": "pre_trace", "prev_spikes": None, "rec_pre_trace": "pre_trace"}
ACC_NAMES = {"weight": "update", "rec_weight": "rec_update", "bias": "bias_update"}


def model_arrays(model, train: bool) -> dict[tuple[str, str], int]:
    """(layer, tensor) -> bits of the arrays the integer model holds after a run."""
    out = {}
    for lp, ls in zip(model.params.layers, model.last_state.layers):
        f = lp.fmts
        for tensor, fmt in (("weight", f.weight), ("rec_weight", f.weight), ("bias", f.bias),
                            ("feedback", f.feedback)):
            value = getattr(lp, tensor)
            if value is not None and (train or tensor != "feedback"):  # inference needs no DFA matrices
                out[(lp.name, tensor)] = value.size * fmt.bits
        if train and lp.spiking and lp.const.psi_kind == "rational":
            out[(lp.name, "psi_lut")] = lp.const.psi_lut.size * f.psi.bits
        for field, fmt_name in STATE_FIELDS.items():
            value = getattr(ls, field)
            if value is None:
                continue
            if field == "bias_trace" and lp.bias is None:
                continue  # allocated for every layer, used only with a bias (see docs/hwmodel.md)
            bits = SPIKES.bits if fmt_name is None else getattr(f, fmt_name).bits
            out[(lp.name, field)] = value.size * bits
        if train and ls.acc is not None:  # inference runs allocate unused accumulators too
            for tensor, acc in ls.acc.items():
                out[(lp.name, ACC_NAMES[tensor])] = acc.size * f.update.bits
    return out


@pytest.mark.parametrize("network", [DENSE, CONV], ids=["dense+recurrent", "conv"])
@pytest.mark.parametrize("signal", ["bp", "dfa"])
def test_memory_equals_int_model_arrays(network, signal):
    batch, steps = 3, 4
    config = make_config(network, {"window": 2, "learning_signal": signal}, batch=batch, steps=steps)
    hardware = HardwareConfig(samples_in_flight=batch)
    inputs = inputs_for(config, steps, hardware)
    layers = build_layers(config, inputs.quant)
    setup = make_setup(layers, config, steps, batch)
    x = spikes_in((batch, steps, *network["input_shape"]), 0.3, 1, binary=True)
    for mode, train in (("stllr", True), ("inference", False)):
        model = IntNetwork.from_float(float_net(config, 0, 2.0), inputs.quant, lr=config.train.lr)
        model.run(x, np.array([0, 1, 2]), train=train, apply=False)
        held = model_arrays(model, train)
        reported = {(t.layer, t.tensor): t.bits for t in memory_tensors(layers, setup, mode, batch)}
        assert reported == held
        assert all(bits > 0 for bits in held.values())


# -------------------------------------------------------- closed forms (hypothesis, rates)


@st.composite
def rate_network(draw):
    """A random valid network (dense, recurrent or conv stacks) with random rates."""
    layers, shape = [], None
    if draw(st.booleans()):
        size = draw(st.sampled_from([8, 9, 16]))
        shape = [draw(st.integers(1, 3)), size, size]
        for _ in range(draw(st.integers(1, 3))):
            conv = {"kind": "conv2d", "channels": draw(st.integers(1, 8)), "kernel": 3, "padding": 1,
                    "stride": 1}
            if size % 2 == 0 and draw(st.booleans()):
                conv.update(kernel=4, stride=2)
                size //= 2
            layers.append(conv)
    else:
        shape = [draw(st.integers(1, 50))]
    for _ in range(draw(st.integers(0, 2))):
        layers.append({"kind": draw(st.sampled_from(["linear", "recurrent"])), "size": draw(st.integers(1, 40))})
    layers.append({"kind": "readout", "size": draw(st.integers(2, 10))})
    learning = {"learning_signal": draw(st.sampled_from(["bp", "dfa", "sdfa"])),
                "alpha_post": None}
    rates = {"input": draw(st.floats(0.0, 1.0)),
             "default": {"output": draw(st.floats(0.0, 1.0)), "psi": draw(st.floats(0.0, 1.0)),
                         "signal": draw(st.floats(0.0, 1.0))}}
    return {"input_shape": shape, "layers": layers}, learning["learning_signal"], rates


def costs(network, signal, rates, steps: int, window: int):
    config = make_config(network, {"window": window, "learning_signal": signal}, steps=steps, lr=2.0 ** -12,
                         batch=4)
    inputs = inputs_for(config, steps, rates=ActivityRates.model_validate(rates))
    return estimate(inputs), config


@hyp(25)
@given(rate_network(), st.integers(2, 30))
def test_bptt_memory_linear_in_T_and_stllr_flat(net, steps):
    network, signal, rates = net
    results = [costs(network, signal, rates, t, 1)[0].results for t in (steps, 2 * steps, 3 * steps)]
    stllr = [r["stllr"].state_bits for r in results]
    bptt = [r["bptt"].state_bits for r in results]
    assert stllr[0] == stllr[1] == stllr[2]
    assert bptt[2] - bptt[1] == bptt[1] - bptt[0] > 0
    # slope: per step, every layer stores its input, membrane and (spiking) spikes (STLLR.md)
    est, config = costs(network, signal, rates, steps, 1)
    slope = 0
    for ly in est.layers:
        slope += ly.n_in * ly.fmts.input.bits + ly.n_out * ly.fmts.membrane.bits + (ly.n_out if ly.spiking else 0)
    assert bptt[1] - bptt[0] == slope * steps
    assert est.results["bptt"].state_bits > est.results["stllr"].state_bits or steps == 1


@hyp(25)
@given(rate_network(), st.integers(1, 6))
def test_learning_work_scales_with_k_and_inference_does_not(net, k):
    network, signal, rates = net
    steps = 8  # k <= 6 < T: every window step has a previous step
    one, _ = costs(network, signal, rates, steps, 1)
    many, _ = costs(network, signal, rates, steps, k)
    for key, n in many.results["stllr"].counts.items():
        if key.phase in LEARN_PHASES:
            assert n == pytest.approx(k * one.results["stllr"].counts[key], rel=1e-9, abs=1e-9), key
        elif key.phase in ("forward", "traces"):
            assert n == pytest.approx(one.results["stllr"].counts[key], rel=1e-12), key
    assert many.results["inference"].counts == one.results["inference"].counts
    # BPTT's backward runs over all T steps whatever k: only the error subtracts scale with k
    b1, bk = one.results["bptt"].counts, many.results["bptt"].counts
    assert {key for key in bk if key.phase == "accumulate"} == {key for key in b1 if key.phase == "accumulate"}
    for key in bk:
        if key.phase == "accumulate":
            assert bk[key] == pytest.approx(b1[key])


def test_weight_write_once_per_batch_or_every_window_step():
    config = make_config(DENSE, {"window": 3, "update": "online"}, steps=6)
    layers = build_layers(config, QuantConfig())
    setup = make_setup(layers, config, 6)
    act = expected_activity(layers, None, setup)
    online = stllr_counts(layers, act, setup)
    batch = stllr_counts(layers, act, setup.__class__(**{**setup.__dict__, "update": "batch"}))
    writes = online.get("layer1", "weight_write", "write", tensor="rec_weight")
    assert writes == 3 * 7 * 7
    assert batch.get("layer1", "weight_write", "write", tensor="rec_weight") == 7 * 7


# ---------------------------------------------------------------------- hand computations


def test_dense_counts_by_hand():
    """64 -> 128 -> 10 at input rate 0.25, spike rate 0.5, T = 4, k = 2, B = 1, BP."""
    network = {"input_shape": [64], "layers": [{"kind": "linear", "size": 128, "bias": False},
                                               {"kind": "readout", "size": 10, "bias": False}]}
    config = make_config(network, {"window": 2}, batch=1, steps=4)
    rates = ActivityRates.model_validate({"input": 0.25, "default": {"output": 0.5}})
    est = estimate(inputs_for(config, 4, rates=rates))
    s = est.results["stllr"]
    # forward: 16 active inputs x 128 outputs x 4 steps; input u8.0 is not binary: MACs 8x8
    assert s.counts[next(k for k in s.counts if k.layer == "layer0" and k.kind == "mac" and k.phase == "forward")] \
        == 16 * 128 * 4
    # readout: 64 spikes x 10 outputs x 4 steps of syn_add at the current width (s32)
    assert s.ops_per_sample(("syn_add",), "layer1") == 64 * 10 * 4
    # eligibility (dense traces): 128 x 64 causal MACs in each of k = 2 steps; readout 10 x 128
    assert s.ops_per_sample(("mac",), "layer0", "eligibility_causal") == 128 * 64 * 2
    assert s.ops_per_sample(("mac",), "layer1", "eligibility_causal") == 10 * 128 * 2
    # BP learning signal: W_out^T e: 10 x 128 MACs per window step
    assert s.ops_per_sample(("mac",), "layer0", "learning_signal") == 10 * 128 * 2
    # memory: S-TLLR state = membranes (s16), pre-traces q (u16.8), post-trace p (u16.12)
    assert s.state_bits == (128 * 16 + 64 * 16 + 128 * 16) + (10 * 16 + 128 * 16)
    b = est.results["bptt"]
    assert b.state_bits == (128 * 16 + 10 * 16) + 4 * (64 * 8 + 128 * 16 + 128 + 128 * 1 + 10 * 16) \
        + 128 * 16 + 10 * 16  # membranes, T x (inputs, u, spikes), deltas


def test_energy_rules_match_the_cited_anchors():
    assert linear_energy({8: 0.03, 32: 0.1}, (8,)) == pytest.approx(0.03)
    assert linear_energy({8: 0.03, 32: 0.1}, (32,)) == pytest.approx(0.1)
    assert linear_energy({8: 0.03, 32: 0.1}, (16,)) == pytest.approx(0.03 + 0.07 / 3)
    assert product_energy({8: 0.2, 32: 3.1}, (8, 8)) == pytest.approx(0.2)
    assert product_energy({8: 0.2, 32: 3.1}, (32, 32)) == pytest.approx(3.1)
    assert product_energy({8: 0.2, 32: 3.1}, (16, 16)) == pytest.approx(0.2 + 192 * 2.9 / 960)
    assert product_energy({8: 0.2, 32: 3.1}, (16, 8)) == pytest.approx(0.2 + 64 * 2.9 / 960)
    kb = 8192
    assert sram_pj_per_bit(8 * kb) == pytest.approx(10 / 64)
    assert sram_pj_per_bit(32 * kb) == pytest.approx(20 / 64)
    assert sram_pj_per_bit(1024 * kb) == pytest.approx(100 / 64)
    assert sram_pj_per_bit(16 * kb) == pytest.approx(15 / 64)  # log-midpoint of 8 and 32 KB
    assert sram_pj_per_bit(2 * kb) == pytest.approx(5 / 64)  # sqrt(size) below 8 KB
    model = EnergyModel(HardwareConfig())
    assert model.op("mac", "8x8") == pytest.approx(0.2 + linear_energy({8: 0.03, 32: 0.1}, (16,)))
    assert model.op("rng", "32") == pytest.approx(0.3)
    assert model.pj_per_bit("dram", 0) == 20.0


def test_energy_total_is_counts_times_table():
    """With every op at 1 pJ and every memory at 1 pJ/bit, energies are plain op/bit counts."""
    ops = {kind: {"rule": "fixed", "pj": 1.0} for kind in ("add", "syn_add", "shift", "cmp", "lut", "mul", "mac",
                                                            "rng")}
    hw = HardwareConfig.model_validate({"energy": {"ops": ops}, "dram_pj_per_bit": 1.0,
                                        "memories": {"dram": {"kind": "dram"}}, "placement": {"default": "dram"}})
    config = make_config(DENSE, {"window": 2}, steps=5)
    est = estimate(inputs_for(config, 5, hw))
    for r in est.results.values():
        assert r.energy_compute_pj == pytest.approx(r.compute_ops_per_sample)
        bits = sum(n * int(k.width) for k, n in r.counts.items() if k.kind in ("read", "write")) / r.batch
        assert r.energy_memory_pj == pytest.approx(bits)
        assert r.onchip_bits == 0  # everything placed in DRAM


def test_latency_from_lanes_and_clock():
    config = make_config(DENSE, {"window": 2}, steps=5)
    base = estimate(inputs_for(config, 5, HardwareConfig(lanes=1, clock_mhz=100.0)), modes=("inference",))
    r = base.results["inference"]
    cycles = max(r.compute_ops_per_sample, *(c / r.batch for c in r.bank_cycles.values()))
    assert r.latency_s == pytest.approx(cycles / 100e6)
    fast = estimate(inputs_for(config, 5, HardwareConfig(lanes=1, clock_mhz=200.0)), modes=("inference",))
    assert fast.results["inference"].latency_s == pytest.approx(r.latency_s / 2)


def test_hw_default_yaml_is_the_built_in_default():
    data = yaml.safe_load((ROOT / "configs" / "hw_default.yaml").read_text())
    assert HardwareConfig.model_validate(data["hardware"]) == HardwareConfig()


# ----------------------------------------------------------------------------- paper configs


@pytest.mark.parametrize("name,low,high,stllr_fewer_dense", [
    ("paper_dvs_gesture", 5, 50, True), ("paper_shd", 5, 50, False), ("paper_shd_k10", 5, 50, True),
    ("paper_dvs_cifar10", 3, 50, True)])
def test_paper_configs_state_memory_ratio(name, low, high, stllr_fewer_dense):
    """State memory in the paper's band; dense AC+MUL+MAC in BPTT's favour only at the code's
    SHD window (k = delay_ls = 90 of 100: S-TLLR's window work covers 90 steps)."""
    inputs = load_inputs(ROOT / "configs" / f"{name}.yaml")
    est = estimate(inputs)
    assert est.warnings == ()  # every eta fits its learning_rate format
    s, b = est.results["stllr"], est.results["bptt"]
    assert low <= b.state_bits / s.state_bits <= high
    assert (est.dense["bptt"]["ac_mul_mac"] / est.dense["stllr"]["ac_mul_mac"] > 1.0) == stllr_fewer_dense


def test_shd_state_memory_by_hand():
    """700 -> recurrent 450 -> readout 20, T = 100, default formats (membrane/traces 16 bits,
    post-trace 16, input u8.0, spikes 1 bit, deltas 16)."""
    inputs = load_inputs(ROOT / "configs" / "paper_shd.yaml")
    est = estimate(inputs)
    stllr = (450 * 16 + 450 + 700 * 16 + 450 * 16 + 16 + 450 * 16) + (20 * 16 + 450 * 16 + 16)
    assert est.results["stllr"].state_bits == stllr
    per_step = (700 * 8 + 450 * 16 + 450) + (450 * 1 + 20 * 16)
    bptt = (450 * 16 + 450) + (20 * 16) + 100 * per_step + 450 * 16 + 20 * 16
    assert est.results["bptt"].state_bits == bptt


# ---------------------------------------------------------------------------------- timing


def test_twenty_layer_estimate_is_fast(tmp_path):
    layers = ([{"kind": "conv2d", "channels": 16, "kernel": 3, "padding": 1}] * 6
              + [{"kind": "conv2d", "channels": 32, "kernel": 4, "stride": 2, "padding": 1}]
              + [{"kind": "conv2d", "channels": 32, "kernel": 3, "padding": 1}] * 5
              + [{"kind": "linear", "size": 256}] * 3 + [{"kind": "recurrent", "size": 128}] * 4
              + [{"kind": "readout", "size": 10}])
    path = tmp_path / "net20.yaml"
    path.write_text(yaml.safe_dump({"network": {"input_shape": [2, 32, 32], "layers": layers},
                                    "learning": {"window": 5}, "data": {"kind": "digits", "num_steps": 50}}))
    inputs = load_inputs(path)
    estimate(inputs)  # warm caches
    start = time.perf_counter()
    est = estimate(inputs)
    assert time.perf_counter() - start < 1.0
    assert len(est.layers) == 20


# ------------------------------------------------------------------------ CLI and outputs


def run_cli(argv, capsys):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_json_csv_plot(tmp_path, capsys):
    cfg = ROOT / "configs" / "paper_shd.yaml"
    rc, out, err = run_cli(["estimate", cfg, "--json"], capsys)
    assert rc == 0, err
    data = json.loads(out)
    assert set(data["modes"]) == {"inference", "stllr", "bptt"}
    ratios = data["ratios_bptt_over_stllr"]
    assert ratios["state_memory"] > 10
    ops = data["modes"]["stllr"]["ops"]
    assert {"layer", "phase", "kind", "width", "tensor", "per_sample", "per_step"} <= set(ops[0])
    rc, out, err = run_cli(["estimate", cfg, "--csv", "--modes", "stllr"], capsys)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("mode,record,layer,phase,kind,width,tensor")
    assert all(line.startswith("stllr,") for line in lines[1:])
    png = tmp_path / "cost.png"
    out_json = tmp_path / "cost.json"
    rc, _, err = run_cli(["estimate", cfg, "--json", "--out", out_json, "--plot", png], capsys)
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out_json.read_text())["setup"]["steps"] == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cost.json", "cost.png"]  # no temp files left


def test_cli_compare_sweep(capsys):
    rc, out, err = run_cli(["compare", ROOT / "configs" / "paper_shd.yaml", "--ks", "1,10", "--steps-list",
                            "50,100", "--json"], capsys)
    assert rc == 0, err
    rows = json.loads(out)["sweep"]
    assert [(r["steps"], r["window"]) for r in rows] == [(50, 1), (50, 10), (100, 1), (100, 10)]
    by = {(r["steps"], r["window"]): r for r in rows}
    assert by[(100, 1)]["ac_mul_mac_dense"] > by[(100, 10)]["ac_mul_mac_dense"] > 1  # fewer window steps, fewer MACs
    assert by[(100, 1)]["state_memory"] > by[(50, 1)]["state_memory"]  # BPTT grows with T
    assert by[(100, 1)]["stllr_state_bits"] == by[(50, 1)]["stllr_state_bits"]


def test_cli_activity_roundtrip_and_steps_override(tmp_path, capsys):
    config_dict = {"network": DENSE, "learning": {"loss": "mse", "window": 2},
                   "train": {"batch_size": 3, "lr": 2.0 ** -10}, "data": {"kind": "digits", "num_steps": 6}}
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(config_dict))
    config = parse_config(config_dict)
    model = IntNetwork.from_float(float_net(config, 0, 3.0), QuantConfig(), lr=config.train.lr)
    x = spikes_in((3, 6, 12), 0.4, 0, True)
    payload, _ = measure_activity(model, config, QuantConfig(), x, np.array([0, 1, 2]))
    act = tmp_path / "act.json"
    atomic_write_json(act, payload)
    rc, out, err = run_cli(["estimate", cfg, "--activity", act, "--json", "--modes", "stllr"], capsys)
    assert rc == 0, err
    ops = json.loads(out)["modes"]["stllr"]["ops"]
    assert {(o["layer"], o["phase"], o["kind"], o["width"], o["tensor"]): o["per_batch"] for o in ops} == \
        {(k.layer, k.phase, k.kind, k.width, k.tensor): n for k, n in model.ops.as_dict().items()}
    rc, _, err = run_cli(["estimate", cfg, "--activity", act, "--steps", "7"], capsys)
    assert rc == 2 and "run.steps" in err


def bad_activity(tmp_path, mutate) -> Path:
    config = make_config(DENSE, {"window": 2})
    model = IntNetwork.from_float(float_net(config, 0, 3.0), QuantConfig(), lr=config.train.lr)
    payload, _ = measure_activity(model, config, QuantConfig(), spikes_in((3, 6, 12), 0.4, 0, True),
                                  np.array([0, 1, 2]))
    mutate(payload)
    path = tmp_path / "act.json"
    path.write_text(json.dumps(payload))
    return path


BASE = {"network": DENSE, "learning": {"loss": "mse", "window": 2}, "train": {"batch_size": 3, "lr": 2.0 ** -10},
        "data": {"kind": "digits", "num_steps": 6}}


def with_(path_keys, value):
    data = json.loads(json.dumps(BASE))
    node = data
    for key in path_keys[:-1]:
        node = node[key]
    node[path_keys[-1]] = value
    return data


BAD_CONFIGS = [
    ("unknown layer kind", with_(["network", "layers", 0], {"kind": "lstm", "size": 4}), "layers.0"),
    ("shapes do not chain", with_(["network", "layers"], [{"kind": "linear", "size": 8},
                                                          {"kind": "conv2d", "channels": 2, "kernel": 3},
                                                          {"kind": "readout", "size": 2}]), "layers.1"),
    ("conv output not integral", with_(["network"], {"input_shape": [1, 8, 8], "layers": [
        {"kind": "conv2d", "channels": 2, "kernel": 3, "stride": 2}, {"kind": "readout", "size": 2}]}), "layers.0"),
    ("missing energy entry", {**BASE, "hardware": {"energy": {"ops": {"add": {"rule": "fixed", "pj": 1.0}}}}},
     "hardware.energy.ops."),
    ("unknown memory", {**BASE, "hardware": {"placement": {"weight": "hbm"}}}, "placement.weight"),
    ("bad rate", {**BASE, "activity": {"input": 1.5}}, "activity.input"),
    ("window beyond T", with_(["learning", "window"], 9), "learning.window"),
]


@pytest.mark.parametrize("what,data,field", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_one_line_exit_2(what, data, field, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out_file = tmp_path / "out.json"
    rc, out, err = run_cli(["estimate", cfg, "--json", "--out", out_file], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("hwmodel: error: ")
    assert field in err, err
    assert "Traceback" not in err
    assert not out_file.exists() and list(tmp_path.iterdir()) == [cfg]  # nothing written


BAD_ACTIVITY = [
    ("another network", lambda p: p.__setitem__("fingerprint", "0" * 64), "fingerprint"),
    ("other learning signal", lambda p: p["run"].__setitem__("learning_signal", "dfa"), "run.learning_signal"),
    ("other window", lambda p: p["run"].__setitem__("window", 3), "run.window"),
    ("short series", lambda p: p["layers"]["layer0"].__setitem__("events", [1, 2]), "layers.layer0.events"),
    ("unknown quantity", lambda p: p["layers"]["layer0"].__setitem__("photons", [0] * 6), "layers.layer0.photons"),
    ("unknown layer", lambda p: p["layers"].__setitem__("layer9", {}), "layers.layer9"),
    ("not ours", lambda p: p.__setitem__("format", "neurobench"), "format"),
]


@pytest.mark.parametrize("what,mutate,field", BAD_ACTIVITY, ids=[c[0] for c in BAD_ACTIVITY])
def test_bad_activity_one_line_exit_2(what, mutate, field, tmp_path, capsys):
    act = bad_activity(tmp_path, mutate)
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    rc, _, err = run_cli(["estimate", cfg, "--activity", act], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and field in err, err


def test_bad_hw_file_and_flags(tmp_path, capsys):
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    hw = tmp_path / "hw.yaml"
    hw.write_text(yaml.safe_dump({"energy": {}}))
    rc, _, err = run_cli(["estimate", cfg, "--hw", hw], capsys)
    assert rc == 2 and "hardware:" in err and err.count("\n") == 1
    hw.write_text(yaml.safe_dump({"hardware": {"energy": {"ops": {"mac": {"rule": "mac"}}}}}))
    rc, _, err = run_cli(["estimate", cfg, "--hw", hw], capsys)
    assert rc == 2 and "hardware.energy.ops." in err and "missing energy entry" in err
    rc, _, err = run_cli(["estimate", cfg, "--modes", "stllr,adam"], capsys)
    assert rc == 2 and "--modes" in err
    rc, _, err = run_cli(["estimate", cfg, "--plot", tmp_path / "x.jpg"], capsys)
    assert rc == 2 and "--plot" in err
    rc, _, err = run_cli(["estimate", tmp_path / "missing.yaml"], capsys)
    assert rc == 2 and "missing.yaml" in err


def test_real_subprocess_bad_input_and_no_torch(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(with_(["network", "layers", 0], {"kind": "lstm", "size": 4})))
    proc = subprocess.run([sys.executable, "-m", "hwmodel", "estimate", str(cfg)], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown layer kind 'lstm'" in proc.stderr
    assert proc.stdout == ""
    code = ("import sys; from hwmodel.cli import main; rc = main(['estimate', 'configs/paper_shd.yaml', '--json']);"
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert math.isfinite(json.loads(proc.stdout)["ratios_bptt_over_stllr"]["ac_mul_mac"])


def test_cli_measure_then_estimate(tmp_path, capsys):
    """hwmodel measure runs the integer model on the config's data; its file feeds estimate."""
    data = json.loads(json.dumps(BASE))
    data["network"] = {"input_shape": [64], "layers": [{"kind": "linear", "size": 16}, {"kind": "readout", "size": 10}]}
    data["data"] = {"kind": "digits", "num_steps": 5}
    cfg = tmp_path / "digits.yaml"
    cfg.write_text(yaml.safe_dump(data))
    act = tmp_path / "act.json"
    rc, out, err = run_cli(["measure", cfg, "--out", act, "--batch", 4], capsys)
    assert rc == 0, err
    payload = json.loads(act.read_text())
    assert payload["run"] == {"mode": "stllr", "batch": 4, "steps": 5, "window": 2, "rule": "stllr",
                              "learning_signal": "bp", "update": "batch", "bias_update": "reference"}
    assert sum(payload["layers"]["layer0"]["events"]) > 0
    rc, out, err = run_cli(["estimate", cfg, "--activity", act, "--json"], capsys)
    assert rc == 0, err
    assert json.loads(out)["activity"]["measured"] is True
    data["network"]["layers"][0]["size"] = 17  # another network: the file is refused
    cfg.write_text(yaml.safe_dump(data))
    rc, _, err = run_cli(["estimate", cfg, "--activity", act], capsys)
    assert rc == 2 and "fingerprint" in err


def test_compare_ks_beyond_T_is_refused_and_default_ks_fit_T(tmp_path, capsys):
    cfg = ROOT / "configs" / "paper_shd.yaml"
    rc, out, err = run_cli(["compare", cfg, "--ks", "1,200", "--json"], capsys)
    assert rc == 2 and out == ""
    assert err == "hwmodel: error: --ks: k = 200 exceeds T = 100 (--steps or data.num_steps); the window is at most T\n"
    rc, _, err = run_cli(["compare", cfg, "--ks", "1,10", "--steps-list", "5,50"], capsys)
    assert rc == 2 and "--ks: k = 10 exceeds T = 5 of --steps-list" in err
    small = tmp_path / "net.yaml"  # T = 6, k = 2
    small.write_text(yaml.safe_dump(BASE))
    rc, out, err = run_cli(["compare", small, "--json"], capsys)  # default ks: those of 1, 2, 5, 10 <= T
    assert rc == 0, err
    assert [(r["steps"], r["window"]) for r in json.loads(out)["sweep"]] == [(6, 1), (6, 2), (6, 5)]
    rc, out, err = run_cli(["compare", small, "--steps-list", "4,20", "--json"], capsys)
    assert rc == 0, err
    assert [(r["steps"], r["window"]) for r in json.loads(out)["sweep"]] == [(4, 1), (4, 2), (20, 1), (20, 2)]


def test_compare_out_writes_the_tables(tmp_path, capsys):
    out_file = tmp_path / "compare.txt"
    rc, out, err = run_cli(["compare", ROOT / "configs" / "paper_shd.yaml", "--ks", "1,10", "--out", out_file], capsys)
    assert rc == 0, err
    assert out == ""
    text = out_file.read_text()
    assert "BPTT / S-TLLR vs T and k" in text and "34.7" in text  # the SHD state-memory ratio (docs)


def test_json_output_is_strict_json(tmp_path, capsys):
    """No NaN or Infinity: fp32 energy without an fp32 table is null."""
    data = {**BASE, "hardware": {"energy": {"ops": {k: {"rule": "fixed", "pj": 1.0} for k in
                                                    ("add", "syn_add", "shift", "cmp", "lut", "mul", "mac", "rng")}}}}
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rc, out, err = run_cli(["estimate", cfg, "--json"], capsys)
    assert rc == 0, err
    payload = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    assert payload["modes"]["stllr"]["summary"]["energy_compute_fp32_pj"] is None
    assert payload["modes"]["stllr"]["summary"]["energy_compute_pj"] == pytest.approx(
        payload["modes"]["stllr"]["summary"]["ops"])  # every op at 1 pJ


def test_activity_file_schema_roundtrip(tmp_path):
    """measure_activity writes through ActivityFile; counts beyond what a layer holds are refused."""
    from hwmodel.activity import ActivityFile

    payload = json.loads(bad_activity(tmp_path, lambda p: None).read_text())
    assert ActivityFile.model_validate(payload).model_dump(mode="json", exclude_none=True) == payload
    assert payload["overflow"]["total_events"] == sum(t["events"] for t in payload["overflow"]["tensors"].values())
    config = make_config(DENSE, {"window": 2})
    inputs = inputs_for(config, 6)
    layers = build_layers(config, inputs.quant)
    payload["layers"]["layer1"]["spikes"][3] = 3 * 7 + 1  # B = 3 samples of 7 neurons
    with pytest.raises(InputError, match=r"mem: layers.layer1.spikes: 22 at step 3, more than the 21 possible"):
        parse_activity(payload, "mem", inputs, layers)
    payload["layers"]["layer1"]["spikes"][3] = True
    with pytest.raises(InputError, match=r"mem: layers.layer1.spikes.3: Input should be a valid integer, got bool"):
        parse_activity(payload, "mem", inputs, layers)


# ------------------------------------------------------- BPTT: independent checks (issue 10)


def _by_key(counts, phases) -> dict:
    return {(k.layer, k.phase, k.kind, k.width, k.tensor): n for k, n in counts.items() if k.phase in phases and n}


def test_bptt_backward_counts_by_hand():
    """3 -> linear 2 -> readout 2, no bias, T = 4, k = 1, B = 1, every operand non-zero:
    BPTT's backward and weight gradient run over all T = 4 steps (not the k = 1 window),
    counted by hand key by key. Formats: weight s8.6, input u8.0 (layer 0) / spikes u1.0,
    error and learning signal s16, membrane s16, psi u8.7 (rational, the default segmented LUT:
    a leading-one encoder (cmp), a barrel shift, a clamp (cmp), the read),
    leak u12.12 (beta 0.9: code 3686, a multiply), update s32."""
    network = {"input_shape": [3], "layers": [{"kind": "linear", "size": 2, "bias": False},
                                              {"kind": "readout", "size": 2, "bias": False}]}
    config = make_config(network, {"window": 1}, batch=1, steps=4)
    ones = {"output": 1.0, "psi": 1.0, "signal": 1.0, "pre_trace": 1.0, "post_trace": 1.0}
    rates = ActivityRates.model_validate({"input": 1.0, "default": ones})
    est = estimate(inputs_for(config, 4, rates=rates), modes=("bptt",))
    T, k = 4, 1
    n0, n1, n_in = 2, 2, 3
    want = {
        # readout: e = y - onehot in the k window steps; dy = e + beta dy[t+1] every step
        ("layer1", "learning_signal", "add", "16", ""): k + n1 * T,
        ("layer1", "learning_signal", "mul", "12x16", ""): n1 * T,
        ("layer1", "learning_signal", "read", "16", "bptt_grad"): n1 * T,
        ("layer1", "learning_signal", "write", "16", "bptt_grad"): n1 * T,
        # hidden: do = W1^T dy (n1 x n0 MACs per step), Psi from the stored u, du = psi do + beta du
        ("layer0", "learning_signal", "mac", "8x16", ""): n1 * n0 * T,
        ("layer0", "learning_signal", "read", "8", "weight"): n1 * n0 * T,
        ("layer0", "learning_signal", "read", "16", "bptt_membrane"): n0 * T,
        ("layer0", "learning_signal", "shift", "17", ""): n0 * T,
        ("layer0", "learning_signal", "cmp", "17", ""): 2 * n0 * T,
        ("layer0", "learning_signal", "lut", "8", "psi_lut"): n0 * T,
        ("layer0", "learning_signal", "mul", "16x8", ""): n0 * T,
        ("layer0", "learning_signal", "mul", "12x16", ""): n0 * T,
        ("layer0", "learning_signal", "add", "16", ""): n0 * T,
        ("layer0", "learning_signal", "read", "16", "bptt_grad"): n0 * T,
        ("layer0", "learning_signal", "write", "16", "bptt_grad"): n0 * T,
        # weight gradients dW += du x^T, every step
        ("layer0", "accumulate", "mac", "16x8", ""): n_in * n0 * T,
        ("layer0", "accumulate", "read", "8", "bptt_input"): n_in * n0 * T,
        ("layer0", "accumulate", "add", "32", ""): n_in * n0 * T,
        ("layer0", "accumulate", "read", "32", "update"): n_in * n0 * T,
        ("layer0", "accumulate", "write", "32", "update"): n_in * n0 * T,
        ("layer1", "accumulate", "mac", "16x1", ""): n0 * n1 * T,
        ("layer1", "accumulate", "read", "1", "bptt_input"): n0 * n1 * T,
        ("layer1", "accumulate", "add", "32", ""): n0 * n1 * T,
        ("layer1", "accumulate", "read", "32", "update"): n0 * n1 * T,
        ("layer1", "accumulate", "write", "32", "update"): n0 * n1 * T,
    }
    got = _by_key(est.results["bptt"].counts, ("learning_signal", "accumulate"))
    assert got == pytest.approx(want)
    # and the per-step activations BPTT stores (forward phase): T x (inputs, u, spikes)
    stores = {key: n for key, n in _by_key(est.results["bptt"].counts, ("forward",)).items() if key[2] == "write"
              and key[4].startswith("bptt_")}
    assert stores == pytest.approx({
        ("layer0", "forward", "write", "8", "bptt_input"): n_in * T,
        ("layer0", "forward", "write", "16", "bptt_membrane"): n0 * T,
        ("layer0", "forward", "write", "1", "bptt_spikes"): n0 * T,
        ("layer1", "forward", "write", "1", "bptt_input"): n0 * T,
        ("layer1", "forward", "write", "16", "bptt_membrane"): n1 * T})


def test_bptt_macs_equal_the_float_models_autograd_matmuls():
    """Dense BPTT MACs against the float model's own BPTT: the matrix products autograd runs
    in loss.backward() (torch.utils.flop_counter: 2 flops per MAC) are the transposed-weight
    pass and the weight gradients of every layer at every one of the T steps -- hwmodel's
    ``mac`` count of the learning_signal and accumulate phases with every operand non-zero."""
    from torch.utils.flop_counter import FlopCounterMode

    from hwmodel.estimate import dense_activity, mode_counts
    from core.config import window_start
    from stllr.learning import step_loss

    network = {"input_shape": [5], "layers": [{"kind": "linear", "size": 4}, {"kind": "linear", "size": 3},
                                              {"kind": "readout", "size": 2}]}
    for steps, window in ((6, 2), (9, 9), (7, 1)):
        config = make_config(network, {"window": window}, batch=1, steps=steps)
        net = float_net(config, 0, 1.0)
        x = torch.tensor(spikes_in((1, steps, 5), 0.5, 3, binary=True))
        state = net.initial_state(1, traces=False, like=net.readout.weight)
        loss = net.readout.weight.new_zeros(())
        start = window_start(steps, window)
        for t in range(steps):  # the forward of stllr.learning.bptt_batch
            state, records = net.step(state, x[:, t])
            if t >= start:
                loss = loss + step_loss(records[-1].output, torch.tensor([1]), "mse") / window
        with FlopCounterMode(display=False) as flops:
            loss.backward()
        layers = build_layers(config, QuantConfig())
        setup = make_setup(layers, config, steps, 1)
        counts = mode_counts("bptt", layers, dense_activity(layers, setup), setup).counts
        macs = sum(n for key, n in counts.items() if key.kind == "mac" and key.phase in ("learning_signal",
                                                                                          "accumulate"))
        assert flops.get_total_flops() == 2 * macs == 2 * steps * (5 * 4 + 4 * 3 + 3 * 2 + 4 * 3 + 3 * 2)


def test_bptt_with_zero_psi_has_no_backward_through_the_layer():
    """Fair BPTT: the same activity as S-TLLR. Psi = 0 everywhere: do is never needed (no
    W^T MACs into the hidden layer, no psi do multiplies) -- as S-TLLR's causal eligibility
    vanishes -- while a dense delta keeps the weight gradient (du is what it multiplies)."""
    network = {"input_shape": [6], "layers": [{"kind": "linear", "size": 5}, {"kind": "readout", "size": 3}]}
    config = make_config(network, {"window": 2}, batch=2, steps=5)
    rates = ActivityRates.model_validate({"input": 0.5, "default": {"output": 0.2, "psi": 0.0}})
    est = estimate(inputs_for(config, 5, rates=rates))
    b, s = est.results["bptt"], est.results["stllr"]
    assert b.ops_per_sample(("mac",), "layer0", "learning_signal") == 0
    assert b.ops_per_sample(("mul",), "layer0", "learning_signal") == 5 * 5  # only beta du: 5 neurons x T = 5
    assert s.ops_per_sample(("mac",), "layer0", "eligibility_causal") == 0
    # psi = 0.3: the W^T MACs are the dense count x 0.3
    half = estimate(inputs_for(config, 5, rates=ActivityRates.model_validate(
        {"input": 0.5, "default": {"output": 0.2, "psi": 0.3}})))
    assert half.results["bptt"].ops_per_sample(("mac",), "layer0", "learning_signal") == \
        pytest.approx(5 * 0.3 * 3 * 5)  # T x psi x (3 classes x 5 neurons)


def _reach_reference(params, log, batch, steps, start):
    """bptt_delta by brute force: neuron by neuron, step by step (the definition)."""
    layers = params.layers
    readout = len(layers) - 1
    out, above_du = {}, None
    top = layers[readout]
    du = np.zeros((steps, batch, top.geometry.n_out), bool)
    for b in range(batch):
        for o in range(top.geometry.n_out):
            later = False
            for t in reversed(range(steps)):
                err = t >= start and log[(t, top.name, "error")][b, o] != 0
                later = bool(err or (later and top.const.beta != 0))
                du[t, b, o] = later
    out[top.name] = [int(du[t].sum()) for t in range(steps)]
    above_du = du
    for i in range(readout - 1, min(params.learners) - 1, -1):
        lp, above = layers[i], layers[i + 1]
        ga, n = above.geometry, lp.geometry.n_out
        du = np.zeros((steps, batch, n), bool)
        for b in range(batch):
            for t in reversed(range(steps)):
                do = np.zeros(n, bool)
                d = above_du[t, b].reshape(ga.channels, ga.positions)
                for o in range(ga.channels):
                    for p in range(ga.positions):
                        if not d[o, p]:
                            continue
                        for tap in range(ga.taps):
                            j = ga.idx[tap, p]
                            if j >= 0 and above.weight[o, tap] != 0:
                                do[j] = True
                if lp.kind == "recurrent" and t + 1 < steps:
                    for o in range(n):
                        if du[t + 1, b, o]:
                            do |= lp.rec_weight[o] != 0
                psi = log[(t, lp.name, "psi")][b] != 0
                nxt = du[t + 1, b] if t + 1 < steps and lp.const.beta != 0 else np.zeros(n, bool)
                du[t, b] = (psi & do) | nxt
        out[lp.name] = [int(du[t].sum()) for t in range(steps)]
        above_du = du
    return out


@pytest.mark.parametrize("network", [DENSE, CONV], ids=["dense+recurrent", "conv"])
def test_measured_bptt_delta_equals_brute_force(network):
    from hwmodel.activity import bptt_delta_series
    from core.config import window_start

    config = make_config(network, {"window": 3}, batch=3, steps=6)
    model = IntNetwork.from_float(float_net(config, 1, 3.0), QuantConfig(), lr=config.train.lr)
    params = model.params
    x = spikes_in((3, 6, *network["input_shape"]), 0.4, 2, binary=True)
    result = model.run(x, np.array([0, 1, 2]), train=True, log=True, apply=False)
    start = window_start(6, 3)
    got = bptt_delta_series(params, result.log, 3, 6, start)
    assert got == _reach_reference(params, result.log, 3, 6, start)
    assert all(sum(v) > 0 for v in got.values())  # the reference is not vacuous
    psi_nz = sum(int((result.log[(t, "layer0", "psi")] != 0).sum()) for t in range(6))
    assert sum(got["layer0"]) >= min(psi_nz, 1)  # du reaches back from where psi do != 0


# ------------------------------------------------------------ compare: one answer per (T, k)


def test_compare_top_table_is_the_sweep_row_and_truncation_is_exact(tmp_path, capsys):
    """With a measured activity the ratios at the configured (T, k) and the sweep's row for
    that (T, k) are one computation; a smaller k at the same T (batch update) is the run's
    last k window steps, whose S-TLLR counts equal a run measured with that k, key by key."""
    from hwmodel.estimate import estimate_at

    data = {**BASE, "learning": {"loss": "mse", "window": 4}}
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(data))
    config = parse_config(data)
    x = spikes_in((3, 6, 12), 0.4, 0, True)
    y = np.array([0, 1, 2])

    def measured(window):
        conf = config.model_copy(update={"learning": config.learning.model_copy(update={"window": window})})
        model = IntNetwork.from_float(float_net(conf, 0, 3.0), QuantConfig(), lr=conf.train.lr)
        payload, _ = measure_activity(model, conf, QuantConfig(), x, y)
        return payload, model

    payload, _ = measured(4)
    act = tmp_path / "act.json"
    atomic_write_json(act, payload)
    rc, out, err = run_cli(["compare", "--net", cfg, "--activity", act, "--ks", "2,4,6", "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    rows = {r["window"]: r for r in result["sweep"]}
    assert [rows[k]["activity"] for k in (2, 4, 6)] == ["measured, last k steps", "measured", "rates from measured"]
    for key, value in result["ratios_bptt_over_stllr"].items():
        assert rows[4][key] == value, key
    # k = 2 from the k = 4 run == a run measured with k = 2 (S-TLLR counts, key by key)
    inputs = inputs_for(config, 6)
    layers = build_layers(config, inputs.quant)
    est = estimate(inputs, load_activity(act, inputs, layers))
    at2, source = estimate_at(est, 6, 2)
    payload2, model2 = measured(2)
    config2 = config.model_copy(update={"learning": config.learning.model_copy(update={"window": 2})})
    inputs2 = inputs_for(config2, 6)
    direct = estimate(inputs2, parse_activity(payload2, "mem", inputs2, layers))
    assert source == "measured, last k steps"
    assert at2.results["stllr"].counts == direct.results["stllr"].counts
    assert_counts_equal(direct.results["stllr"].counts, model2.ops)


def test_learning_rate_that_rounds_to_zero_is_a_warning(tmp_path, capsys):
    """SHD at the code's window with the default learning_rate format u16.24: eta =
    lr / (B k) = 1.7e-8 rounds to 0. The estimate warns, naming both fixes, and costs the
    write with the eta the fix gives (a multiply), instead of aborting."""
    data = yaml.safe_load((ROOT / "configs" / "paper_shd.yaml").read_text())
    del data["quant"]
    cfg = tmp_path / "shd.yaml"
    cfg.write_text(yaml.safe_dump(data))
    est = estimate(load_inputs(cfg))
    assert len(est.warnings) == 1
    warning = est.warnings[0]
    assert "quantizes to 0 in quant.learning_rate u16.24 (B = 128, k = 90)" in warning
    # 25 fraction bits make eta non-zero; u16.33 is the most the weight write allows (s8.6 weights aligned
    # by 33 + 16 - 6 = 43 bits: 8 + 43 + 2 = 53); lr above 0.5 lsb x B k = 2^-25 x 11520
    assert "at least 25 fraction bits (e.g. u16.33) or raise train.lr above 0.000343" in warning
    writes = est.results["stllr"].counts
    assert sum(n for key, n in writes.items() if key.phase == "weight_write" and key.kind == "mul") == 450 * 700 + \
        450 * 450 + 450 + 20 * 450 + 20  # one eta multiply per parameter (once per batch)
    rc, out, err = run_cli(["compare", cfg, "--ks", "10,53,90", "--json"], capsys)
    assert rc == 0
    lines = err.splitlines()
    assert all(line.startswith("hwmodel: warning: train.lr / (batch * window) = ") for line in lines)
    assert [line.split("(B = 128, k = ")[1].split(")")[0] for line in lines] == ["90", "53"]
    rows = json.loads(out)["sweep"]
    assert [len(r["warnings"]) for r in rows] == [0, 1, 1]
    rc, out, err = run_cli(["estimate", cfg, "--out", tmp_path / "cost.txt"], capsys)
    assert rc == 0 and "warning: train.lr / (batch * window)" in (tmp_path / "cost.txt").read_text()


# -------------------------------------------------------------------------- CLI (issue 10)


def test_net_flag_and_positional_config(tmp_path, capsys):
    cfg = ROOT / "configs" / "paper_shd_k10.yaml"
    rc, by_flag, err = run_cli(["estimate", "--net", cfg, "--json"], capsys)
    assert rc == 0, err
    rc, positional, err = run_cli(["estimate", cfg, "--json"], capsys)
    assert rc == 0 and by_flag == positional
    rc, _, err = run_cli(["compare", "--net", cfg, "--ks", "1", "--json"], capsys)
    assert rc == 0, err
    for command in ("estimate", "compare", "measure"):
        out_flag = ["--out", tmp_path / "a.json"] if command == "measure" else []
        rc, out, err = run_cli([command, cfg, "--net", cfg, *out_flag], capsys)
        assert rc == 2 and out == ""
        assert err == f"hwmodel {command}: error: the config is given twice ({cfg} and --net {cfg}): give it once\n"
        rc, _, err = run_cli([command, *out_flag], capsys)
        assert rc == 2 and err == f"hwmodel {command}: error: no config: give CONFIG or --net CONFIG\n"
    assert list(tmp_path.iterdir()) == []


def test_op_classes_apart_and_summed():
    est = estimate(load_inputs(ROOT / "configs" / "paper_dvs_gesture.yaml"))
    for mode, r in est.results.items():
        kinds = {kind: r.ops_per_sample((kind,)) for kind in ("syn_add", "mul", "mac")}
        assert r.class_per_sample("ac") == kinds["syn_add"] and r.class_per_sample("mul") == kinds["mul"]
        assert r.class_per_sample("mac") == kinds["mac"]
        assert r.ac_mul_mac_per_sample == pytest.approx(sum(kinds.values()))
    assert est.results["inference"].class_per_sample("mac") > 0  # layer 0 multiplies u8 event counts
    assert est.results["stllr"].class_per_sample("ac") == est.results["bptt"].class_per_sample("ac")


def test_weight_reads_cost_the_same_in_training_and_inference():
    """Weights and update accumulators in separate banks by default (DFA matrices too)."""
    for signal in ("bp", "dfa"):
        config = make_config(CONV, {"window": 2, "learning_signal": signal}, steps=4)
        est = estimate(inputs_for(config, 4))
        costs = {mode: r.banks["sram_weights"].pj_per_bit for mode, r in est.results.items()}
        assert costs["inference"] == costs["stllr"] == costs["bptt"] > 0
        stllr = est.results["stllr"]
        assert {t.memory for t in stllr.memory if t.tensor in ("update", "bias_update")} == {"sram_updates"}
        assert stllr.banks["sram_updates"].contents_bits == stllr.gradient_bits


def test_placement_per_layer(tmp_path, capsys):
    data = {**BASE, "hardware": {"placement": {**HardwareConfig().placement, "layer1.rec_weight": "dram",
                                               "layer0.pre_trace": "registers"}}}
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(data))
    est = estimate(load_inputs(cfg))
    r = est.results["stllr"]
    where = {(t.layer, t.tensor): t.memory for t in r.memory}
    assert where[("layer1", "rec_weight")] == "dram" and where[("layer0", "weight")] == "sram_weights"
    assert where[("layer0", "pre_trace")] == "registers" and where[("layer1", "pre_trace")] == "sram_state"
    reads = [row for row in r.traffic() if row["tensor"] == "rec_weight"]
    assert reads and all(row["memory"] == "dram" for row in reads)
    dram_bits = sum(n * int(k.width) for k, n in r.counts.items() if k.tensor == "rec_weight"
                    and k.kind in ("read", "write"))
    assert r.banks["dram"].accessed_bits == dram_bits > 0
    for key, what in (("layer7.weight", "no such layer (network has 3)"), ("layer0.wieght", "unknown tensor"),
                      ("layer0.default", "unknown tensor")):
        bad = {**BASE, "hardware": {"placement": {"default": "sram_state", key: "dram"}}}
        cfg.write_text(yaml.safe_dump(bad))
        rc, _, err = run_cli(["estimate", cfg], capsys)
        assert rc == 2 and f"hardware.placement.{key}" in err and what in err, err


def test_redirected_tables_are_whole_and_in_kib(tmp_path):
    """Written to a pipe, the tables are not cut to 80 columns; sizes are binary (KiB)."""
    proc = subprocess.run([sys.executable, "-m", "hwmodel", "compare", "--net", "configs/paper_dvs_cifar10.yaml",
                           "--ks", "1,5,10"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) > 150 and "…" not in proc.stdout
    header = next(line for line in lines if "AC+MUL+MAC dense" in line and "S-TLLR state" in line)
    assert "activity" in header and "energy" in header
    assert "KiB" in proc.stdout and "kB" not in proc.stdout
    assert report_bits(8 * 1024) == "1 KiB" and report_bits(8 * 1536 * 1024) == "1.5 MiB" and report_bits(8) == "1 B"


def report_bits(bits):
    from hwmodel.report import bits_str

    return bits_str(bits)


def test_compare_csv_and_plot(tmp_path, capsys):
    out, png = tmp_path / "sweep.csv", tmp_path / "sweep.png"
    rc, _, err = run_cli(["compare", "--net", ROOT / "configs" / "paper_shd.yaml", "--ks", "10,90", "--steps-list",
                          "90,100", "--csv", "--out", out, "--plot", png], capsys)
    assert rc == 0, err
    rows = list(__import__("csv").DictReader(out.read_text().splitlines()))
    assert [(r["steps"], r["window"]) for r in rows] == [("90", "10"), ("90", "90"), ("100", "10"), ("100", "90")]
    code = {(r["steps"], r["window"]): r for r in rows}[("100", "90")]
    assert float(code["ac_mul_mac"]) < 1 and float(code["energy"]) < 1  # the code's SHD window: S-TLLR loses
    assert float(code["state_memory"]) > 30
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _, err = run_cli(["compare", ROOT / "configs" / "paper_shd.yaml", "--plot", tmp_path / "x.jpg"], capsys)
    assert rc == 2 and "--plot" in err and ".png" in err
    rc, _, err = run_cli(["compare", ROOT / "configs" / "paper_shd.yaml", "--csv", "--json"], capsys)
    assert rc == 2 and "--json and --csv" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv", "sweep.png"]


def test_detail_prints_the_datapath_spec(tmp_path, capsys):
    """--detail: every op of the spec in step order, with what it computes and how often it
    runs for the costed run; the shift table and the intermediate widths of every layer."""
    from fixedpoint import spec

    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "detail.txt"
    rc, _, err = run_cli(["estimate", "--net", cfg, "--detail", "--out", out], capsys)
    assert rc == 0, err
    text = out.read_text()
    config = parse_config(BASE)
    layers = build_layers(config, QuantConfig())
    shapes = layers  # LayerInfo is the spec's LayerShape
    ops = spec.network_spec(shapes, spec.Learning("bp", "reference", (0, 1, 2)))
    est = estimate(inputs_for(config, 6))
    rows = json.loads(json.dumps(__import__("hwmodel.report", fromlist=["x"]).datapath_rows(est)))
    for ly in layers:
        assert f"{ly.name}: datapath spec, one S-TLLR training step in order" in text
        table = rows[ly.name]["ops"]
        assert [(r["phase"], r["kind"], r["width"], r["what"]) for r in table[:len(ops[ly.index])]] == \
            [(op.phase, op.kind, op.width, op.what) for op in ops[ly.index]]
        assert table[len(ops[ly.index])]["phase"] == "weight_write"
        for op in ops[ly.index]:
            if op.what:
                assert op.what in text
        first = table[0]  # the synaptic loop: events x C_out per sample
        assert first["runs_per_sample"] == pytest.approx(est.activity.get(ly.index, "events") / 3 * ly.channels)
        assert {s["name"] for s in rows[ly.name]["shifts"]} >= {"SH_W_CUR", "SH_MEM", "SH_U", "SH_WW"}
        for shift in spec.network_shifts(shapes)[ly.index].values():
            assert f"│ {shift.name:<10} │ {shift.value:>4} │" in text
        assert f"{ly.name}: exact intermediate widths" in text
    assert "W[o, j]" in text  # rich markup does not eat the brackets


def test_estimate_start_up_imports_neither_numba_nor_torch():
    code = ("import sys; from hwmodel.cli import main; rc = main(['estimate', '--net', 'configs/paper_shd.yaml', "
            "'--timing']); assert rc == 0; bad = [m for m in ('numba', 'torch', 'hwmodel.activity') "
            "if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-800:]
    timing = proc.stderr.strip().splitlines()[-1]
    assert timing.startswith("hwmodel timing: start-up ") and "process CPU time" in timing
