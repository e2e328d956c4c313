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

from fixedpoint.config import SPIKES, QuantConfig
from fixedpoint.network import IntNetwork
from hwmodel.activity import load_activity, measure_activity, parse_activity
from hwmodel.cli import main
from hwmodel.config import ActivityRates, HardwareConfig, ModelInputs, load_inputs
from hwmodel.energy import linear_energy, product_energy, sram_pj_per_bit
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
from stllr.atomic import atomic_write_json
from stllr.config import parse_config
from stllr.errors import InputError
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
             "psi_lut": {"entries": 16, "index_shift": draw(st.integers(0, 4))}}
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
