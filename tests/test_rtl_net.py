"""The generated whole-network core (rtl_export/netgen.py) against the integer model.

Every value the core writes (current, u, spikes, membrane, Psi, traces, error, learning
signals, grad, modulation factors, accumulators, new weights) is compared with
``IntNetwork``'s log at every step, then the final weights, the predictions and the
overflow counters per tensor. The integer model is the independent reference: no
expected value here comes from the RTL generator.

Cases (rtl/configs/): ``layer_w4_m12`` (12-8-3: hard reset, rational Psi LUT, stochastic
write from xorshift32 lanes, online update, exact bias, wrapping accumulator),
``net_3layer_u8`` (8-6-5-3, u4.0 multi-bit input, two hidden layers, BP through two
transposed weight matrices; also DFA and sDFA with the feedback matrix in ROM),
``net_overflow`` (narrow formats: a dozen tensors saturate or wrap), ``layer_w8_m16``,
``net_recurrent`` (10-7(recurrent)-6-3: W_rec o[t-1], q_rec, the recurrent accumulator and
its stochastic write; BP, and sDFA with a batch update).
Verilator for the larger builds, Icarus for quick ones; both simulators run the same
testbench. The 64-128-10 digits network for a whole training pass is behind
``STLLR_RTL_LONG=1`` (bench/rtl_digits_training.py measures it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.config import config_to_dict, load_config, parse_config
from rtl_export.model import build_model
from rtl_export.netsim import network_inputs, simulate_network, write_build, RTL_FILES
from rtl_export.sim import missing

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "rtl" / "configs"


def _config(name: str, **learning):
    config = load_config(CONFIGS / f"{name}.yaml")
    if learning:
        data = config_to_dict(config)
        data["learning"].update(learning)
        config = parse_config(data)
    return config


def _run(name: str, tool: str, tmp_path, samples: int = 3, density: float = 0.5, seed: int = 1, **learning):
    need = missing("verilator" if tool == "verilator" else "iverilog")
    if need:
        pytest.skip(need)
    config = _config(name, **learning)
    model, _ = build_model(config)
    steps = config.data.num_steps
    x, y, _ = network_inputs(config, model, samples, steps, density, seed)
    run = simulate_network(model, x, y, np.ones(samples, bool), config.learning.window, tmp_path / tool, tool=tool)
    print(f"[rtl-net] {name} {learning or ''} {tool}: {run.values} values, cycles {run.cycles}, "
          f"per step {run.step_cycles}, build {run.build_s:.1f} s, run {run.run_s:.2f} s")
    return config, model, run


@pytest.mark.parametrize("name, tool, learning", [
    ("layer_w4_m12", "verilator", {}),
    ("net_3layer_u8", "verilator", {}),
    ("net_3layer_u8", "verilator", {"learning_signal": "sdfa"}),
    ("net_3layer_u8", "icarus", {"learning_signal": "dfa"}),
    ("layer_w8_m16", "icarus", {}),
    ("net_recurrent", "icarus", {}),
    ("net_3layer_u8", "icarus", {"rule": "readout_only"}),
    ("net_recurrent", "verilator", {"learning_signal": "sdfa", "update": "batch"}),
])
def test_core_is_bit_exact(name, tool, learning, tmp_path):
    config, model, run = _run(name, tool, tmp_path, **learning)
    assert run.mismatch is None, run.mismatch.describe()
    layers = len(config.network.layers)
    steps, k = config.data.num_steps, config.learning.window
    # every written value of every step was compared: at least the forward states of every
    # neuron (current, u and, for spiking layers, spikes, membrane, Psi, post-trace) and the
    # accumulators of every synapse in the window
    neurons = [layer.size for layer in config.network.layers]
    fan_in = [config.network.input_shape[0]] + neurons[:-1]
    pairs = list(zip(fan_in, neurons))
    if config.learning.rule == "readout_only":  # only the readout's synapses learn
        pairs = pairs[-1:]
    synapses = sum(a * b for a, b in pairs)
    assert run.values > 3 * steps * (2 * sum(neurons) + 4 * sum(neurons[:-1])) + 3 * k * synapses
    assert (run.predictions >= 0).all() and np.array_equal(run.predictions, run.model_predictions)
    assert layers >= 2 and run.cycles > 0


def test_overflow_counters_match_the_model(tmp_path):
    """A config made to overflow: the counters of many tensors are non-zero and equal."""
    _, _, run = _run("net_overflow", "icarus", tmp_path, samples=3, density=0.7)
    assert run.mismatch is None, run.mismatch.describe()
    nonzero = {name for name, events in run.overflow_model.items() if events}
    assert {"layer0.current", "layer0.membrane", "layer0.pre_trace", "layer0.learning_signal", "layer0.weight",
            "layer1.error", "layer1.update"} <= nonzero, nonzero
    assert run.overflow_rtl == run.overflow_model


def test_a_different_model_is_found_and_named(tmp_path):
    """The comparison can fail: a reference whose weight (0, 1) differs by one lsb gives a
    mismatch in layer 0's current of the neuron 0 at the first step that input 1 is active."""
    if missing("iverilog"):
        pytest.skip(missing("iverilog"))
    config = _config("net_3layer_u8")
    model, _ = build_model(config)
    reference, _ = build_model(config)
    w = reference.params.layers[0].weight.copy()
    w[0, 1] += 1
    from dataclasses import replace
    layers = list(reference.params.layers)
    layers[0] = replace(layers[0], weight=w)
    reference.params = replace(reference.params, layers=tuple(layers))
    steps = config.data.num_steps
    x, y, _ = network_inputs(config, model, 2, steps, 0.5, 1)
    run = simulate_network(model, x, y, np.ones(2, bool), config.learning.window, tmp_path / "b", tool="icarus",
                           reference=reference)
    first = int(np.nonzero(x[0, :, 1])[0][0])
    assert run.mismatch is not None
    m = run.mismatch
    assert (m.sample, m.step, m.layer, m.tensor, m.index) == (0, first, 0, "current", 0), m.describe()
    assert m.rtl != m.model


@pytest.mark.parametrize("name, learning", [("layer_w4_m12", {}), ("net_3layer_u8", {}), ("net_recurrent", {}),
                                            ("net_3layer_u8", {"learning_signal": "dfa"}),
                                            ("net_overflow", {}), ("layer_defaults", {})])
def test_generated_core_is_lint_clean(name, learning, tmp_path):
    if missing("verilator"):
        pytest.skip(missing("verilator"))
    config = _config(name, **learning)
    model, _ = build_model(config)
    steps = config.data.num_steps
    x = np.zeros((1, steps, config.network.input_shape[0]))
    write_build(model, x, np.zeros(1, np.int64), np.ones(1, bool), steps, config.learning.window or steps,
                tmp_path)
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", "stllr_net", *RTL_FILES,
                           "stllr_net.v"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("STLLR_RTL_LONG") != "1", reason="long run: set STLLR_RTL_LONG=1")
def test_digits_full_training_pass(tmp_path):
    """configs/digits_int.yaml at batch 1: one pass over the training set in Verilator, then
    the test set; weights bit-identical, same predictions (so the same accuracy)."""
    from bench.rtl_digits_training import run_digits

    result = run_digits(tmp_path, epochs=1)
    assert result["mismatch"] is None, result["mismatch"]
    assert result["rtl_test_accuracy"] == result["model_test_accuracy"]


def test_cli_sim_net_bit_exact(tmp_path, capsys):
    from rtl_export.cli import main
    from tests.conftest import run_cli

    if missing("iverilog"):
        pytest.skip(missing("iverilog"))
    code, out, err = run_cli(main, capsys, "sim", "--net", CONFIGS / "net_3layer_u8.yaml", "--samples", 1,
                             "--random-density", 0.5, "--tools", "icarus", "--build", tmp_path / "b")
    assert code == 0, err
    assert out.startswith("icarus: bit-exact") and "cycles" in out
    assert (tmp_path / "b" / "icarus" / "stllr_net.v").is_file()


def _conv(tmp_path):
    from tests.conftest import with_value, write_yaml

    data = config_to_dict(_config("net_3layer_u8"))
    data = with_value(data, "network.input_shape", [1, 4, 4])
    data = with_value(data, "network.layers.0", {"kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1})
    return write_yaml(tmp_path, data)


def _changed(tmp_path, dotted: str, value):
    from tests.conftest import with_value, write_yaml

    return write_yaml(tmp_path, with_value(config_to_dict(_config("net_3layer_u8")), dotted, value))


@pytest.mark.parametrize("argv, words", [
    (["--samples", "0"], ["--samples"]),
    (["--steps", "0"], ["--steps"]),
    (["--random-density", "1.5"], ["--random-density"]),
    (["--tools", "modelsim"], ["--tools", "modelsim"]),
    (["--layer", "1"], ["--layer"]),
    (["GOLDEN"], ["either", "--net"]),
    (["CONV"], ["does not support", "conv2d"]),
    (["BUILD_FULL"], ["--build"]),
    (["MISSING"], ["nope.yaml"]),
    (["CE"], ["does not support", "learning.loss = 'ce'"]),
    (["LION"], ["does not support", "train.optimizer = 'lion'"]),
])
def test_cli_sim_net_refuses_bad_input(argv, words, tmp_path, capsys):
    """One line, exit 2, nothing written (the --build folder stays as it was)."""
    from rtl_export.cli import main
    from tests.conftest import run_cli

    net = CONFIGS / "net_3layer_u8.yaml"
    build = tmp_path / "b"
    extra = list(argv)
    if extra == ["GOLDEN"]:
        extra = [str(tmp_path), str(tmp_path)]
    elif extra == ["CONV"]:
        net, extra = _conv(tmp_path), []
    elif extra == ["BUILD_FULL"]:
        build.mkdir()
        (build / "keep.txt").write_text("x")
        extra = []
    elif extra == ["MISSING"]:
        net, extra = tmp_path / "nope.yaml", []
    elif extra == ["CE"]:
        net, extra = _changed(tmp_path, "learning.loss", "ce"), []
    elif extra == ["LION"]:
        net, extra = _changed(tmp_path, "train.optimizer", "lion"), []
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = run_cli(main, capsys, "sim", "--net", net, "--random-density", 0.5, "--build", build, *extra)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and all(w in err for w in words), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("argv, words", [
    (["--ovf-bits", "2"], ["--ovf-bits"]),
    (["--freq", "0"], ["--freq"]),
    (["OUT_FULL"], ["--out"]),
    (["CONV"], ["does not support", "conv2d"]),
])
def test_cli_synth_refuses_bad_input(argv, words, tmp_path, capsys):
    from rtl_export.cli import main
    from tests.conftest import run_cli

    net, out, extra = CONFIGS / "layer_w4_m12.yaml", tmp_path / "out", list(argv)
    if extra == ["OUT_FULL"]:
        out.mkdir()
        (out / "keep.txt").write_text("x")
        extra = []
    elif extra == ["CONV"]:
        net, extra = _conv(tmp_path), []
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run_cli(main, capsys, "synth", "--net", net, "--out", out, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and all(w in err for w in words), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("STLLR_RTL_LONG") != "1", reason="long run (about 2 min): set STLLR_RTL_LONG=1")
def test_synth_places_and_routes_a_small_core(tmp_path, capsys):
    """12-32-3 in the layer_w4_m12 recipe fits the UP5K (16-bit overflow counters)."""
    import json

    import yaml

    from rtl_export.cli import main
    from tests.conftest import run_cli

    if missing("yosys") or shutil.which("nextpnr-ice40") is None:
        pytest.skip("apt-get install -y yosys nextpnr-ice40 fpga-icestorm")
    data = yaml.safe_load((CONFIGS / "layer_w4_m12.yaml").read_text())
    data["network"]["layers"][0]["size"] = 32
    net = tmp_path / "h32.yaml"
    net.write_text(yaml.safe_dump(data))
    code, out, err = run_cli(main, capsys, "synth", "--net", net, "--out", tmp_path / "s", "--ovf-bits", 16)
    assert code == 0, err
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["fits"] and report["nextpnr"]["fmax_mhz"] > 1
    lc = report["nextpnr"]["utilisation"]["ICESTORM_LC"]
    assert lc["used"] <= lc["available"] == 5280
    assert report["yosys"]["dsp"] <= 8 and report["yosys"]["bram_blocks"] <= 30


@pytest.mark.parametrize("name", ["net_recurrent", "net_overflow"])
def test_cocotb_drives_the_core_through_its_ports(name, tmp_path):
    """Icarus + cocotb: y of every class at every step, predictions and overflow counters
    equal the integer model's; and a reference with one changed weight makes it fail."""
    from rtl_export.netsim import run_cocotb

    if missing("iverilog", "cocotb"):
        pytest.skip(missing("iverilog", "cocotb"))
    config = _config(name)
    model, _ = build_model(config)
    steps, k = config.data.num_steps, config.learning.window
    x, y, _ = network_inputs(config, model, 2, steps, 0.6, 4)
    data = run_cocotb(model, x, y, np.ones(2, bool), k, tmp_path / "ok")
    classes = config.network.layers[-1].size
    assert data["failures"] == 0 and data["errors"] == [], data["errors"]
    assert data["checks"] > 2 * steps * classes + 2  # every y, both predictions, the counters
    # the same bench must fail against a model whose readout bias of class 0 differs
    from dataclasses import replace
    other, _ = build_model(config)
    layers = list(other.params.layers)
    b = layers[-1].bias.copy()
    b[0] += 4
    layers[-1] = replace(layers[-1], bias=b)
    other.params = replace(other.params, layers=tuple(layers))
    fresh, _ = build_model(config)
    bad = run_cocotb(fresh, x, y, np.ones(2, bool), k, tmp_path / "bad", reference=other)
    assert bad["failures"] == 1 and any("readout y[0]" in e for e in bad["errors"]), bad["errors"]
