"""The ``stllr`` CLI: bad input gives one line naming the field or file and exit code 2;
checkpoints are atomic and ``--resume`` ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from apps.stllr import main
from tests.conftest import run_cli, with_value, write_yaml
from core.config import parse_config
from stllr.data import EventDataset, save_npz
from stllr.train import CHECKPOINT, METRICS, load_checkpoint, train

BASE = {
    "network": {"input_shape": [64], "layers": [{"kind": "linear", "size": 16}, {"kind": "readout", "size": 10}]},
    "learning": {"rule": "stllr", "window": 2},
    "train": {"epochs": 2, "batch_size": 64, "seed": 3},
    "data": {"kind": "digits", "num_steps": 4, "seed": 0},
}


def _write(tmp_path: Path, config: dict, name: str = "cfg.yaml") -> Path:
    return write_yaml(tmp_path, config, name)


def _with(path: tuple, value, base: dict = BASE) -> dict:
    return with_value(base, path, value)


def _run(capsys, *argv) -> tuple[int, str, str]:
    return run_cli(main, capsys, *argv)


BAD_CONFIGS = [
    (("network", "neuron"), {"bta": 0.9}, "network.neuron.bta: unknown key"),
    (("network", "layers", 0, "size"), 0, "network.layers.0.size: Input should be greater than 0"),
    (("network", "layers", 0, "size"), -4, "network.layers.0.size: Input should be greater than 0"),
    (("network", "layers", 0, "kind"), "dense", "unknown layer kind 'dense'"),
    (("learning", "factors"), {"lambda_post": 1.5}, "learning.factors.lambda_post"),
    (("learning", "factors"), {"alpha_pre": float("nan")}, "learning.factors.alpha_pre"),
    (("network", "neuron"), {"beta": 1.0}, "network.neuron.beta"),
    (("learning", "rule"), "hebb", "learning.rule"),
    (("train", "batch_size"), 0, "train.batch_size"),
    (("data", "num_steps"), -1, "data.num_steps"),
    (("data", "colour"), "red", "data.colour: unknown key"),
    (("learning", "window"), 9, "learning.window = 9 exceeds the number of time steps T = 4"),
    (("network", "input_shape"), [65], "network.input_shape = [65] does not match data.train feature shape [64]"),
]


@pytest.mark.parametrize("path,value,expected", BAD_CONFIGS, ids=[c[2][:40] for c in BAD_CONFIGS])
def test_bad_config_is_one_line_exit_2_and_no_output(tmp_path, capsys, path, value, expected):
    config = _write(tmp_path, _with(path, value))
    out = tmp_path / "run"
    code, stdout, stderr = _run(capsys, "train", "--config", config, "--out", out)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert expected in lines[0]
    assert not out.exists()


def test_conv_shapes_that_do_not_chain(tmp_path, capsys):
    config = _with(("network",), {"input_shape": [2, 8, 8], "layers": [
        {"kind": "conv2d", "channels": 4, "kernel": 3, "stride": 2}, {"kind": "readout", "size": 4}]})
    code, _, stderr = _run(capsys, "train", "--config", _write(tmp_path, config), "--out", tmp_path / "o")
    assert code == 2 and "layers.0: output size (8 + 2*0 - 3)/2 + 1 is not an integer" in stderr


def test_missing_files_are_named(tmp_path, capsys):
    code, _, stderr = _run(capsys, "train", "--config", tmp_path / "nope.yaml", "--out", tmp_path / "o")
    assert code == 2 and "nope.yaml: config file not found" in stderr
    config = _with(("data",), {"kind": "npz", "train": "missing.npz", "test": "missing.npz"})
    code, _, stderr = _run(capsys, "train", "--config", _write(tmp_path, config), "--out", tmp_path / "o")
    assert code == 2 and "missing.npz" in stderr and "data.train" in stderr
    assert not (tmp_path / "o").exists()


def test_bad_npz_contents_named(tmp_path, capsys):
    np.savez(tmp_path / "train.npz", x=np.zeros((4, 3, 64), np.float32), y=np.zeros(4, np.int64))
    config = _with(("data",), {"kind": "npz", "train": "train.npz", "test": "train.npz"})
    code, _, stderr = _run(capsys, "train", "--config", _write(tmp_path, config), "--out", tmp_path / "o")
    assert code == 2 and "train.npz" in stderr and "'x' must be uint8" in stderr
    np.savez(tmp_path / "train.npz", inputs=np.zeros((4, 3, 64), np.uint8), y=np.zeros(4, np.int64))
    code, _, stderr = _run(capsys, "train", "--config", _write(tmp_path, config), "--out", tmp_path / "o")
    assert code == 2 and "train.npz" in stderr and "'x'" in stderr


def test_invalid_yaml_and_non_mapping(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("network: [unclosed\n")
    code, _, stderr = _run(capsys, "train", "--config", path, "--out", tmp_path / "o")
    assert code == 2 and "bad.yaml" in stderr and "not valid YAML" in stderr
    path.write_text("- a\n- b\n")
    code, _, stderr = _run(capsys, "train", "--config", path, "--out", tmp_path / "o")
    assert code == 2 and "top level must be a mapping" in stderr


def test_console_script_prints_no_traceback(tmp_path):
    """The installed entry point itself: exit status 2, one stderr line, no traceback."""
    config = _write(tmp_path, _with(("learning", "factors"), {"lambda_pre": -0.1}))
    stllr = Path(sys.executable).with_name("stllr")
    result = subprocess.run([str(stllr), "train", "--config", str(config), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "learning.factors.lambda_pre" in result.stderr


def test_train_writes_metrics_and_eval_reproduces(tmp_path, capsys):
    config = _write(tmp_path, BASE)
    out = tmp_path / "run"
    code, stdout, _ = _run(capsys, "train", "--config", config, "--out", out, "--quiet")
    assert code == 0
    metrics = json.loads((out / METRICS).read_text())
    assert metrics["rule"] == "stllr" and metrics["seed"] == 3 and metrics["window"] == 2
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert all(np.isfinite(e[key]) for e in metrics["epochs"])
    assert metrics["wall_time_s"] > 0
    assert json.loads(stdout.strip().splitlines()[-1])["final_test_accuracy"] == metrics["final_test_accuracy"]
    code, stdout, _ = _run(capsys, "eval", "--checkpoint", out / CHECKPOINT, "--config", config)
    assert code == 0
    assert json.loads(stdout)["test_accuracy"] == metrics["final_test_accuracy"]
    # No temp files are left beside the outputs.
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.json"]
    # A second run into the same folder without --resume is refused, not overwritten.
    code, _, stderr = _run(capsys, "train", "--config", config, "--out", out)
    assert code == 2 and "not empty" in stderr


def test_eval_rejects_checkpoint_of_another_network(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, "train", "--config", _write(tmp_path, BASE), "--out", out, "--quiet")[0] == 0
    other = _write(tmp_path, _with(("network", "layers", 0, "size"), 17), "other.yaml")
    code, _, stderr = _run(capsys, "eval", "--checkpoint", out / CHECKPOINT, "--config", other)
    assert code == 2 and "checkpoint.pt" in stderr and "different network" in stderr
    (tmp_path / "torn.pt").write_bytes(b"\x80\x02garbage")
    code, _, stderr = _run(capsys, "eval", "--checkpoint", tmp_path / "torn.pt", "--config", other)
    assert code == 2 and "torn.pt: not a readable checkpoint" in stderr


@pytest.mark.parametrize("rule,signal,update", [("stllr", "bp", "batch"), ("stllr", "dfa", "online"),
                                                ("bptt", "bp", "batch")])
def test_resume_equals_uninterrupted(tmp_path, rule, signal, update):
    config = parse_config(_with(("learning",), {"rule": rule, "window": 2, "learning_signal": signal,
                                                "update": update}) | {"train": {"epochs": 3, "batch_size": 64,
                                                                                "seed": 5}})
    full = train(config, tmp_path / "full")
    train(config, tmp_path / "part", stop_after_epoch=0)
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT)["epoch"] == 0
    resumed = train(config, tmp_path / "part", resume=True)
    a = load_checkpoint(tmp_path / "full" / CHECKPOINT)["model"]
    b = load_checkpoint(tmp_path / "part" / CHECKPOINT)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [e["test_accuracy"] for e in full["epochs"]] == [e["test_accuracy"] for e in resumed["epochs"]]
    # The weights moved: resume equality is not the trivial "nothing trained".
    torch.manual_seed(5)
    initial = train.__globals__["build_network"](config).state_dict()
    assert not torch.equal(initial["layers.0.weight"], a["layers.0.weight"])


def test_readout_only_leaves_hidden_weights(tmp_path):
    config = parse_config(_with(("learning", "rule"), "readout_only"))
    train(config, tmp_path / "o")
    weights = load_checkpoint(tmp_path / "o" / CHECKPOINT)["model"]
    initial = train.__globals__["build_network"](config).state_dict()
    assert torch.equal(weights["layers.0.weight"], initial["layers.0.weight"])
    assert not torch.equal(weights["layers.1.weight"], initial["layers.1.weight"])


def test_dataset_classes_must_fit_readout(tmp_path, capsys):
    x = np.zeros((6, 3, 64), np.uint8)
    save_npz(tmp_path / "d.npz", EventDataset(x, np.arange(6, dtype=np.int64) % 12 + 6, (), "d"))
    config = _with(("data",), {"kind": "npz", "train": "d.npz", "test": "d.npz"})
    code, _, stderr = _run(capsys, "train", "--config", _write(tmp_path, config), "--out", tmp_path / "o")
    assert code == 2 and "network.layers.1.size = 10 is smaller than the 12 classes of data.train" in stderr


def test_a_config_with_every_section_round_trips_through_json(tmp_path, capsys):
    """Checkpoints and run folders store the config as JSON, whose keys are text: numeric
    keys (energy anchors by width, SRAM anchors by size, per-layer quant and activity)
    must come back as the same config."""
    from core.config import config_to_dict, parse_config

    config = dict(BASE, quant={"layers": {0: {"membrane": "s16.8"}}}, activity={"layers": {0: {"output": 0.2}}},
                  hardware={"energy": {"ops": {"add": {"rule": "linear", "anchors": {8: 0.03, 32: 0.1}}}},
                            "sram": {"anchors_kb": {8: 10.0, 32: 20.0}}})
    parsed = parse_config(config, "cfg")
    via_json = parse_config(json.loads(json.dumps(config_to_dict(parsed))), "json")
    assert via_json == parsed
    out = tmp_path / "run"
    assert _run(capsys, "train", "--config", _write(tmp_path, config), "--out", out, "--epochs", 1, "--quiet")[0] == 0
    code, _, err = _run(capsys, "eval", "--checkpoint", out / CHECKPOINT, "--config", out / "config.yaml")
    assert code == 0, err
