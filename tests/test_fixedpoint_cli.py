"""``stllr int-train`` / ``stllr int-eval``: bad input (formats, widths, rounding names,
unknown ``quant:`` keys, constants a format cannot hold) is one line naming the field,
exit 2, no traceback, no output directory; integer checkpoints are atomic and
``--resume`` ends with the bits of an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps.stllr import main
from tests.conftest import run_cli, with_value, write_yaml
from core.config import parse_config
from core.errors import InputError

from fixedpoint.train import CHECKPOINT, METRICS, build_int_network, int_train, load_int_checkpoint, state_arrays

BASE = {
    "network": {"input_shape": [64], "layers": [{"kind": "linear", "size": 16}, {"kind": "readout", "size": 10}]},
    "learning": {"rule": "stllr", "window": 2, "loss": "mse"},
    "train": {"epochs": 2, "batch_size": 64, "seed": 3, "optimizer": "sgd", "lr": 0.125},
    "data": {"kind": "digits", "num_steps": 4, "seed": 0},
    "quant": {"input": "u1.0", "weight": "s8.7 stochastic", "bias": "s16.10 stochastic"},
}


def _write(tmp_path: Path, config: dict, name: str = "cfg.yaml") -> Path:
    return write_yaml(tmp_path, config, name)


def _with(path: tuple, value, base: dict = BASE) -> dict:
    return with_value(base, path, value)


def _run(capsys, *argv) -> tuple[int, str, str]:
    return run_cli(main, capsys, *argv)


BAD = [
    # widths: zero, negative, above 32 (text and mapping forms)
    (("quant", "weight"), "s0.4", "quant.weight.bits: bits = 0 is outside the supported range 2..32"),
    (("quant", "membrane"), {"signed": True, "bits": -3, "frac": 2}, "quant.membrane.bits: bits = -3"),
    (("quant", "weight"), "s-4.2", "quant.weight: cannot parse fixed-point format 's-4.2'"),
    (("quant", "pre_trace"), "u0.8", "quant.pre_trace.bits: bits = 0"),
    (("quant", "weight"), "s33.10", "quant.weight.bits: bits = 33 is outside the supported range 2..32"),
    (("quant", "update"), "s40.16", "quant.update.bits: bits = 40"),
    (("quant", "layers"), {0: {"membrane": "s64.10"}}, "quant.layers.0.membrane.bits: bits = 64"),
    # rounding names
    (("quant", "weight"), "s8.6 stochastc", "quant.weight: cannot parse fixed-point format 's8.6 "
                                            "stochastc': 'stochastc' is neither a rounding mode"),
    (("quant", "bias"), {"signed": True, "bits": 16, "frac": 10, "rounding": "banker"}, "quant.bias.rounding"),
    (("quant", "membrane"), "s16.10 stochastic", "quant.membrane: stochastic rounding is only supported"),
    # unknown keys
    (("quant", "wieght"), "s8.6", "quant.wieght: unknown key"),
    (("quant", "layers"), {0: {"membrne": "s16.10"}}, "quant.layers.0.membrne: unknown key"),
    (("quant", "psi_lut"), {"entrees": 3}, "quant.psi_lut.entrees: unknown key"),
    (("quant", "layers"), {5: {"membrane": "s16.10"}}, "quant.layers.5: no such layer (network has 2)"),
    # formats that cannot hold a parameter
    (("quant", "weight"), "u8.6", "quant.weight: u8.6 must be signed"),
    (("quant", "leak"), "u4.2", "network.layers.0.beta (quant.leak) = 0.9 quantizes to 1.0 >= 1 in u4.2"),
    (("quant", "membrane"), "s4.-2", "network.layers.0.theta (quant.membrane) = 0.6 quantizes to 0 in s4.-2"),
    (("network", "neuron"), {"theta": 40.0}, "network.layers.0.theta (quant.membrane) = 40.0 does not fit s16.10"),
    (("quant", "factor"), "s4.1", "network.layers.0.alpha_post (learning.factors, quant.factor) = -0.2 quantizes to 0"),
    (("quant", "decay"), "u12.0", "network.layers.0.lambda_pre (learning.factors, quant.decay) = 0.9 quantizes to 1.0"),
    (("quant", "learning_rate"), "u16.4", "train.lr / (batch * window) = 0.00215"),
    (("quant", "weight"), "s8.60", "quant (layer 0) synaptic current: intermediate needs 73 bits"),
    # what the integer trainer does not implement
    (("quant", "softmax"), "u32.30", "quant.softmax = u32.30: 1/S numerator 2^(2F) needs 62 bits"),
    (("quant", "softmax_lut"), {"entries": 48}, "quant.softmax_lut.entries: 48 is not a power of two"),
    (("train", "betas"), [0.9, 0.99], "train.betas: sgd keeps no moments (betas are for adam, signum and lion)"),
    (("learning", "rule"), "bptt", "learning.rule = 'bptt'"),
    (("train", "optimizer"), "adam", "train.optimizer = 'adam': the integer model trains with sgd, signum or lion"),
    (("network", "input_shape"), [65], "network.input_shape = [65] does not match data.train feature shape [64]"),
]


@pytest.mark.parametrize("path,value,expected", BAD, ids=[f"{'.'.join(map(str, c[0]))}={c[1]}"[:40] for c in BAD])
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, path, value, expected):
    config = _write(tmp_path, _with(path, value))
    out = tmp_path / "run"
    code, stdout, stderr = _run(capsys, "int-train", "--config", config, "--out", out)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("stllr: error: ") and expected in lines[0], lines[0]
    assert not out.exists()
    # int-eval validates the same config before it opens the checkpoint: same line
    if path not in (("quant", "learning_rate"), ("train", "optimizer")):  # training only
        code, _, stderr = _run(capsys, "int-eval", "--config", config, "--checkpoint", tmp_path / "none.npz")
        assert code == 2 and expected.replace("data.train", "data.test") in stderr
        assert len(stderr.strip().splitlines()) == 1


def test_raise_policy_overflow_is_one_line_and_leaves_no_directory(tmp_path, capsys):
    config = _write(tmp_path, _with(("quant", "membrane"), "s6.4 nearest_even raise"))
    out = tmp_path / "run"
    code, _, stderr = _run(capsys, "int-train", "--config", config, "--out", out, "--quiet")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "overflow in layer" in stderr and "membrane" in stderr and "policy 'raise'" in stderr
    assert not out.exists()


def test_train_writes_metrics_and_int_eval_reproduces(tmp_path, capsys):
    config = _write(tmp_path, BASE)
    out = tmp_path / "run"
    code, stdout, _ = _run(capsys, "int-train", "--config", config, "--out", out)
    assert code == 0
    assert "overflow summary, training" in stdout and "layer0.membrane" in stdout and "total" in stdout
    assert "epoch   2/2" in stdout
    metrics = json.loads((out / METRICS).read_text())
    assert metrics["model"] == "integer" and metrics["seed"] == 3 and metrics["window"] == 2
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert all(np.isfinite(e[key]) for e in metrics["epochs"])
    assert metrics["wall_time_s"] > 0
    tensors = metrics["overflow"]["train"]["tensors"]
    assert tensors["layer0.weight"]["format"] == "s8.7 stochastic saturate"
    assert tensors["layer1.update"]["elements"] > 0
    ops = metrics["ops"]["train"]
    assert ops["samples"] == 2 * 1437 and ops["by_phase"]["forward"]["syn_add"] > 0
    assert ops["by_phase"]["weight_write"]["rng"] > 0 and metrics["ops"]["test"]["per_sample"] > 0
    final = json.loads(stdout.strip().splitlines()[-1])
    assert final["final_test_accuracy"] == metrics["final_test_accuracy"]
    code, stdout, _ = _run(capsys, "int-eval", "--checkpoint", out / CHECKPOINT, "--config", config)
    assert code == 0 and "overflow summary" in stdout
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["test_accuracy"] == metrics["final_test_accuracy"] and result["samples"] == 360
    assert result["test_loss"] == pytest.approx(metrics["epochs"][-1]["test_loss"], rel=1e-12)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "config.yaml", "metrics.json"]
    code, _, stderr = _run(capsys, "int-train", "--config", config, "--out", out)
    assert code == 2 and "not empty" in stderr


def test_int_eval_rejects_wrong_checkpoints(tmp_path, capsys):
    config = _write(tmp_path, BASE)
    out = tmp_path / "run"
    assert _run(capsys, "int-train", "--config", config, "--out", out, "--epochs", 1, "--quiet")[0] == 0
    other = _write(tmp_path, _with(("network", "layers", 0, "size"), 17), "other.yaml")
    code, _, stderr = _run(capsys, "int-eval", "--checkpoint", out / CHECKPOINT, "--config", other)
    assert code == 2 and "checkpoint.npz" in stderr and "different network" in stderr
    refmt = _write(tmp_path, _with(("quant", "weight"), "s8.6 stochastic"), "refmt.yaml")
    code, _, stderr = _run(capsys, "int-eval", "--checkpoint", out / CHECKPOINT, "--config", refmt)
    assert code == 2 and "layer0.weight is stored as s8.7 stochastic saturate" in stderr
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04garbage")
    code, _, stderr = _run(capsys, "int-eval", "--checkpoint", tmp_path / "torn.npz", "--config", config)
    assert code == 2 and "torn.npz: not a readable integer checkpoint" in stderr
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    code, _, stderr = _run(capsys, "int-eval", "--checkpoint", tmp_path / "foreign.npz", "--config", config)
    assert code == 2 and "foreign.npz: not an integer (int-train) checkpoint" in stderr
    code, _, stderr = _run(capsys, "int-eval", "--checkpoint", tmp_path / "nope.npz", "--config", config)
    assert code == 2 and "nope.npz: checkpoint not found" in stderr
    code, _, stderr = _run(capsys, "int-train", "--config", config, "--out", tmp_path / "fresh", "--resume")
    assert code == 2 and "checkpoint.npz: checkpoint not found" in stderr and not (tmp_path / "fresh").exists()


def test_resume_gives_the_bits_of_an_uninterrupted_run(tmp_path):
    config = parse_config(_with(("train", "epochs"), 3))
    full = int_train(config, tmp_path / "full", report=lambda text: None)
    int_train(config, tmp_path / "part", stop_after_epoch=0, report=lambda text: None)
    assert load_int_checkpoint(tmp_path / "part" / CHECKPOINT)["epoch"] == 0
    resumed = int_train(config, tmp_path / "part", resume=True, report=lambda text: None)
    a = load_int_checkpoint(tmp_path / "full" / CHECKPOINT, config)
    b = load_int_checkpoint(tmp_path / "part" / CHECKPOINT, config)
    assert a["epoch"] == b["epoch"] == 2
    assert set(a["arrays"]) == set(b["arrays"]) >= {"layer0.weight", "layer1.bias", "lanes"}
    for name in a["arrays"]:
        assert np.array_equal(a["arrays"][name], b["arrays"][name]), name
    for counter_a, counter_b in zip(a["counters"], b["counters"]):  # overflow, then ops
        assert counter_a.rows() == counter_b.rows()

    def strip(metrics):
        return json.loads(json.dumps(metrics).replace(str(tmp_path / "part"), str(tmp_path / "full")),
                          object_hook=lambda d: {k: v for k, v in d.items() if k != "wall_time_s"})

    assert strip(full) == strip(resumed)
    # The weights moved: equality is not the trivial "nothing trained".
    initial = state_arrays(build_int_network(config))
    assert not np.array_equal(initial["layer0.weight"], a["arrays"]["layer0.weight"])
    assert not np.array_equal(initial["lanes"], a["arrays"]["lanes"])
    # A resume under a different quant format is refused, naming the field and both values.
    other = parse_config(_with(("quant", "membrane"), "s16.9", _with(("train", "epochs"), 4)))
    with pytest.raises(InputError, match=r"started with quant\.membrane\.frac = 10, the config now has 9"):
        int_train(other, tmp_path / "part", resume=True, report=lambda text: None)


def test_fine_tune_from_float_checkpoint(tmp_path, capsys):
    float_cfg = _with(("learning", "loss"), "mse")
    float_out = tmp_path / "float"
    assert _run(capsys, "train", "--config", _write(tmp_path, float_cfg, "f.yaml"), "--out", float_out,
                "--epochs", 1, "--quiet")[0] == 0
    plain = _with(("quant", "weight"), "s8.7", _with(("quant", "bias"), "s16.10"))
    config = parse_config(plain)
    model = build_int_network(config, float_out / "checkpoint.pt")
    import torch

    weights = torch.load(float_out / "checkpoint.pt", weights_only=False)["model"]
    for i in (0, 1):
        fmt = model.params.layers[i].fmts.weight
        expected = fmt.quantize(weights[f"layers.{i}.weight"].double().numpy())
        assert np.array_equal(model.params.layers[i].weight, expected)
    out = tmp_path / "tuned"
    code, stdout, _ = _run(capsys, "int-train", "--config", _write(tmp_path, plain, "p.yaml"), "--out", out,
                           "--from-checkpoint", float_out / "checkpoint.pt", "--epochs", 1, "--quiet")
    assert code == 0
    metrics = json.loads((out / METRICS).read_text())
    assert metrics["init"] == "float checkpoint" and metrics["init_checkpoint"].endswith("checkpoint.pt")
    # a float checkpoint of another network is refused before anything is written
    other = _write(tmp_path, _with(("network", "layers", 0, "size"), 17, plain), "o.yaml")
    code, _, stderr = _run(capsys, "int-train", "--config", other, "--out", tmp_path / "o",
                           "--from-checkpoint", float_out / "checkpoint.pt")
    assert code == 2 and "different network" in stderr and not (tmp_path / "o").exists()


def test_console_script_real_runs(tmp_path):
    """The installed entry point itself: a bad quant width exits 2 with one line and no
    traceback; a good config trains, prints the overflow summary and a JSON line."""
    stllr = Path(sys.executable).with_name("stllr")
    bad = _write(tmp_path, _with(("quant", "weight"), "s40.6 stochastic"), "bad.yaml")
    result = subprocess.run([str(stllr), "int-train", "--config", str(bad), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "quant.weight.bits" in result.stderr and not (tmp_path / "o").exists()
    good = _write(tmp_path, _with(("train", "epochs"), 1), "good.yaml")
    result = subprocess.run([str(stllr), "int-train", "--config", str(good), "--out", str(tmp_path / "g")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "overflow summary, training" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["model"] == "integer"
    assert (tmp_path / "g" / CHECKPOINT).is_file()


def test_lr_halve_at_halves_eta_from_the_named_epochs(tmp_path, capsys):
    from stllr.data import load_data

    from fixedpoint.train import run_int_epoch

    config = parse_config(_with(("train", "lr_halve_at"), [0.5, 0.75], _with(("train", "epochs"), 4)))
    assert [config.train.lr_at(epoch) for epoch in range(4)] == [0.125, 0.125, 0.0625, 0.03125]
    model = build_int_network(config)
    first = model.etas(64, 2)
    train_set, _ = load_data(config.data)
    run_int_epoch(model, train_set, config, epoch=3)
    assert model.lr == 0.03125
    assert {i: 4 * code for i, code in model.etas(64, 2).items()} == first
    # a halved lr that the learning_rate format cannot hold is refused before anything runs:
    # eta = 0.125 / (64 * 2) = 2^-10 is code 1 of u16.10, its half rounds to 0
    small = _with(("quant", "learning_rate"), "u16.10", _with(("train", "lr_halve_at"), [0.5]))
    code, _, stderr = _run(capsys, "int-train", "--config", _write(tmp_path, small), "--out", tmp_path / "run")
    assert code == 2 and "train.lr_halve_at: the halved lr 0.0625 fails" in stderr
    assert not (tmp_path / "run").exists()
    code, _, stderr = _run(capsys, "int-train", "--config",
                           _write(tmp_path, _with(("train", "lr_halve_at"), [0.5, 0.5])), "--out", tmp_path / "run")
    assert code == 2 and "train.lr_halve_at" in stderr and "strictly increasing" in stderr
