"""Bad-input fuzz suite of ``stllr train | eval | int-train | int-eval`` (harness: fuzzkit).

Each case states its own oracle (valid or not, and what the error must name) and is
classified as a clean refusal or a valid acceptance; a traceback, a silent acceptance,
a partial output or a hang fails it. Crafted pickles are tried on every command that
reads a checkpoint: nothing in them may run.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.stllr import main
from tests.conftest import with_value, write_yaml
from tests.fuzzkit import Watch, assert_accepted, assert_refused, run

PROG = "stllr"
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
T, N_IN, CLASSES = 4, 8, 3

BASE = {
    "network": {"input_shape": [N_IN], "neuron": {"beta": 0.9, "theta": 0.5},
                "psi": {"kind": "triangle", "scale": 0.5, "width": 1.0},
                "layers": [{"kind": "linear", "size": 6}, {"kind": "readout", "size": CLASSES}]},
    "learning": {"rule": "stllr", "window": 2, "loss": "mse"},
    "train": {"epochs": 1, "batch_size": 4, "optimizer": "sgd", "lr": 0.01, "seed": 0},
    "data": {"kind": "npz", "train": "train.npz", "test": "test.npz"},
}


def _dataset(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": (rng.random((n, T, N_IN)) < 0.3).astype(np.uint8), "y": (np.arange(n) % CLASSES).astype(np.int64)}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with train.npz, test.npz and base.yaml, plus one finished float run and
    one finished integer run (for eval, resume and checkpoint cases)."""
    root = tmp_path_factory.mktemp("fuzz_stllr")
    np.savez(root / "train.npz", **_dataset(12, 0))
    np.savez(root / "test.npz", **_dataset(8, 1))
    (root / "base.yaml").write_text(yaml.safe_dump(BASE))
    assert_accepted(run(main, ["train", "--config", root / "base.yaml", "--out", root / "float_run", "--quiet"]))
    assert_accepted(run(main, ["int-train", "--config", root / "base.yaml", "--out", root / "int_run", "--quiet"]))
    return root


def _config(root: Path, data: dict, name: str) -> Path:
    return write_yaml(root, data, name)


def _set(data: dict, dotted: str, value) -> dict:
    return with_value(data, dotted, value)


# ------------------------------------------------------------------ config fields

NAN, INF = math.nan, math.inf
BAD_TYPES = [True, False, "3", [1], {"a": 1}, None]
# dotted field -> (strategy of valid values, list of invalid values); the oracle is the
# documented schema (docs/float_model.md), written here independently of the code
FIELDS = {
    "train.seed": (st.integers(0, 2**32 - 1), [-1, 2**32, 10**30, 1.5, *BAD_TYPES]),
    "train.lr": (st.floats(1e-4, 10.0), [0.0, -0.1, 10.5, INF, NAN, *BAD_TYPES]),
    "train.batch_size": (st.integers(1, 64), [0, -1, 10**6, 2.0, *BAD_TYPES]),
    "train.epochs": (st.integers(1, 2), [0, -5, 10**9, 1.0, *BAD_TYPES]),
    "train.threads": (st.integers(1, 2), [0, -1, 10**6, *BAD_TYPES[:5]]),
    "network.neuron.beta": (st.floats(0.0, 0.99), [1.0, 1.5, -0.1, INF, NAN, *BAD_TYPES]),
    "network.neuron.theta": (st.floats(0.01, 10.0), [0.0, -1.0, INF, NAN, 1e9, *BAD_TYPES]),
    "network.layers.0.size": (st.integers(1, 16), [0, -3, 10**12, 2.5, *BAD_TYPES]),
    "network.psi.scale": (st.floats(0.01, 4.0), [0.0, -1.0, INF, NAN, *BAD_TYPES]),
    "learning.window": (st.integers(1, T), [0, T + 1, 10**9, 1.5, *BAD_TYPES[:5]]),
    "learning.factors.lambda_post": (st.floats(0.0, 1.0), [1.01, -0.5, NAN, *BAD_TYPES]),
    "learning.factors.alpha_pre": (st.floats(-16.0, 16.0), [16.5, -17.0, INF, *BAD_TYPES]),
    "learning.feedback_seed": (st.integers(0, 2**32 - 1), [-1, 2**40, *BAD_TYPES]),
    "learning.rule": (st.sampled_from(["stllr", "bptt", "readout_only"]), ["STLLR", "sgd", 1, *BAD_TYPES[:1]]),
    "learning.learning_signal": (st.sampled_from(["bp", "dfa", "sdfa"]), ["BP", "", 0]),
}


def _invalid_cases():
    cases = [(field, value) for field, (_, bad) in FIELDS.items() for value in bad]
    cases += [("train.unknown_key", 1), ("network.neuron.tau", 2.0), ("learning.windows", 2), ("extra_section", {})]
    # the readout has no post-trace: a value for it would be silently ignored
    cases += [("learning.readout_factors.alpha_post", 0.5), ("learning.readout_factors.lambda_post", 0.3),
              ("network.layers.1.factors.alpha_post", -0.2)]
    return cases


INVALID = _invalid_cases()


@pytest.mark.parametrize("field, value", INVALID, ids=[f"{f}={v!r:.20}" for f, v in INVALID])
def test_invalid_config_field_is_refused_before_anything_is_written(world, tmp_path, field, value):
    config = _config(tmp_path, _set(BASE, field, value), "bad.yaml")
    # data paths relative to the config's folder: use absolute ones here
    data = yaml.safe_load(config.read_text())
    data["data"].update(train=str(world / "train.npz"), test=str(world / "test.npz"))
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    with Watch([tmp_path]) as watch:
        outcome = run(main, ["train", "--config", config, "--out", out, "--quiet"])
    name = field.rsplit(".", 1)[0] if field.endswith(("unknown_key", "tau", "windows")) else field
    assert_refused(outcome, PROG, names=name.replace("extra_section", "extra_section"), watch=watch)


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_valid_config_field_is_accepted(world, tmp_path_factory, data):
    field = data.draw(st.sampled_from(sorted(FIELDS)))
    value = data.draw(FIELDS[field][0])
    folder = tmp_path_factory.mktemp("valid")
    config = _set(BASE, field, value)
    config["data"].update(train=str(world / "train.npz"), test=str(world / "test.npz"))
    path = _config(folder, config, "ok.yaml")
    outcome = run(main, ["train", "--config", path, "--out", folder / "out", "--quiet"])
    assert_accepted(outcome)
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == config["train"]["epochs"]


# ------------------------------------------------------------------ data files

X_DTYPES = [np.uint8, np.uint8, np.uint8, np.int8, np.float32, np.bool_, np.uint16]
Y_DTYPES = [np.int64, np.int32, np.uint8, np.int16, np.float64, np.bool_]


@st.composite
def event_files(draw):
    """(arrays to save, oracle verdict, what the error names)."""
    n = draw(st.integers(0, 6))
    steps = draw(st.sampled_from([0, 1, T, T, 6]))
    features = draw(st.sampled_from([N_IN, N_IN, N_IN, 5]))
    extra_dim = draw(st.booleans()) and draw(st.booleans())
    x_dtype = draw(st.sampled_from(X_DTYPES))
    y_dtype = draw(st.sampled_from(Y_DTYPES))
    n_y = draw(st.sampled_from([n, n, n, n + 1]))
    labels = draw(st.lists(st.integers(-2, CLASSES + 1), min_size=n_y, max_size=n_y))
    shape = (n, steps, features) + ((2,) if extra_dim else ())
    x = (np.arange(int(np.prod(shape))) % 2).reshape(shape).astype(x_dtype)
    y = np.array(labels).astype(y_dtype) if y_dtype is not np.bool_ else np.array(labels, dtype=bool)
    valid = (x_dtype is np.uint8 and not extra_dim and features == N_IN and n > 0 and steps >= 2
             and n_y == n and y_dtype not in (np.float64, np.bool_) and all(0 <= v < CLASSES for v in labels)
             and steps == T)  # the test file has T steps: both files must agree
    return {"x": x, "y": y}, valid


@settings(max_examples=60, **SETTINGS)
@given(case=event_files())
def test_fuzzed_training_file(world, tmp_path_factory, case):
    arrays, valid = case
    folder = tmp_path_factory.mktemp("data")
    np.savez(folder / "train.npz", **arrays)
    config = copy.deepcopy(BASE)
    config["data"].update(train=str(folder / "train.npz"), test=str(world / "test.npz"))
    path = _config(folder, config, "c.yaml")
    out = folder / "out"
    with Watch([folder]) as watch:
        outcome = run(main, ["train", "--config", path, "--out", out, "--quiet"])
    if valid:
        assert_accepted(outcome)
        assert (out / "checkpoint.pt").is_file()
    else:
        assert_refused(outcome, PROG, names="data.", watch=watch)


# ------------------------------------------------------------------ YAML and files


def _yaml_cases():
    base = yaml.safe_dump(BASE)
    deep = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    return [
        ("not_utf8", b"\xff\xfe" + base.encode("utf-16-le"), "not UTF-8"),
        ("binary", b"\x00\x01\x02network", "binary"),
        ("deep", deep.encode(), "nested"),
        ("duplicate_key", (base + "train: {epochs: 1}\n").encode(), "duplicate key 'train'"),
        ("duplicate_nested", base.replace("loss: mse", "loss: mse\n  loss: ce").encode(), "duplicate key 'loss'"),
        ("anchor_bomb", bomb.encode(), "more than"),
        ("empty", b"", "top level"),
        ("list", b"- 1\n- 2\n", "top level"),
        ("scalar", b"42\n", "top level"),
        ("tabs", b"network:\n\t- x\n", "not valid YAML"),
        ("unclosed", b"network: [1, 2\n", "not valid YAML"),
        ("python_tag", b"network: !!python/object/apply:os.system ['touch MARKER']\n", "not valid YAML"),
        ("huge", b"# " + b"x" * (5 * 2**20) + b"\n", "larger than"),
    ]


YAML_CASES = _yaml_cases()


@pytest.mark.parametrize("command", ["train", "int-train", "eval", "int-eval"])
@pytest.mark.parametrize("payload, names", [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_bad_yaml_is_one_line(world, tmp_path, command, payload, names):
    config = tmp_path / "bad.yaml"
    config.write_bytes(payload)
    if command in ("train", "int-train"):
        argv = [command, "--config", config, "--out", tmp_path / "out"]
    else:
        checkpoint = world / ("float_run/checkpoint.pt" if command == "eval" else "int_run/checkpoint.npz")
        argv = [command, "--config", config, "--checkpoint", checkpoint]
    with Watch([tmp_path, world]) as watch:
        outcome = run(main, argv)
    assert_refused(outcome, PROG, names=["bad.yaml", names], watch=watch)
    assert not (tmp_path / "MARKER").exists() and not Path("MARKER").exists()


OUT_CASES = {"file": ("a_file", "is a file"), "under_file": ("a_file/out", "is a file"),
             "foreign_folder": ("foreign", "not empty")}


@pytest.mark.parametrize("command", ["train", "int-train"])
@pytest.mark.parametrize("kind", sorted(OUT_CASES))
def test_bad_out_is_refused(world, tmp_path, command, kind):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    out, message = OUT_CASES[kind]
    with Watch([tmp_path]) as watch:
        outcome = run(main, [command, "--config", world / "base.yaml", "--out", tmp_path / out, "--quiet"])
    assert_refused(outcome, PROG, names=["--out", message], watch=watch)


@pytest.mark.parametrize("command, checkpoint", [("train", "checkpoint.pt"), ("int-train", "checkpoint.npz")])
def test_resume_of_nothing_is_refused_and_abandoned_folder_restarts(world, tmp_path, command, checkpoint):
    with Watch([tmp_path]) as watch:
        outcome = run(main, [command, "--config", world / "base.yaml", "--out", tmp_path / "typo", "--resume"])
    assert_refused(outcome, PROG, names=["--out", "nothing to resume"], watch=watch)
    # a run killed before its first checkpoint: config.yaml and a torn temp file only
    out = tmp_path / "killed"
    out.mkdir()
    (out / "config.yaml").write_text("partial")
    (out / f".{checkpoint}.x1y2.tmp").write_bytes(b"torn")
    for flags in ([], ["--resume"]):
        assert_accepted(run(main, [command, "--config", world / "base.yaml", "--out", out, "--quiet", *flags]))
        assert sorted(p.name for p in out.iterdir()) == sorted([checkpoint, "config.yaml", "metrics.json"])
        (out / checkpoint).unlink()


# ------------------------------------------------------------------ float checkpoints


class _Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "model", "metrics", "config"])
@pytest.mark.parametrize("command", ["eval", "int-train --from-checkpoint", "train --resume"])
def test_crafted_pickle_never_runs(world, tmp_path, command, where):
    marker = tmp_path / "MARKER"
    good = torch.load(world / "float_run" / "checkpoint.pt", weights_only=True)
    torch.save(_Payload(marker) if where == "top" else {**good, where: _Payload(marker)}, tmp_path / "evil.pt")
    if command == "eval":
        argv = ["eval", "--checkpoint", tmp_path / "evil.pt", "--config", world / "base.yaml"]
        target = tmp_path / "evil.pt"
    elif command == "train --resume":
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (tmp_path / "evil.pt").rename(run_dir / "checkpoint.pt")
        (run_dir / "config.yaml").write_text("x")
        argv = ["train", "--config", world / "base.yaml", "--out", run_dir, "--resume"]
        target = run_dir / "checkpoint.pt"
    else:
        argv = ["int-train", "--config", world / "base.yaml", "--out", tmp_path / "out",
                "--from-checkpoint", tmp_path / "evil.pt"]
        target = tmp_path / "evil.pt"
    with Watch([tmp_path]) as watch:
        outcome = run(main, argv)
    assert_refused(outcome, PROG, names=[str(target), "refused", "nothing in it was run"], watch=watch)
    assert not marker.exists()


def _edited(world: Path, edit) -> dict:
    checkpoint = torch.load(world / "float_run" / "checkpoint.pt", weights_only=True)
    edit(checkpoint)
    return checkpoint


def _first_weight(c):
    return next(iter(c["model"]))


FLOAT_EDITS = [
    ("not_dict", lambda c: c.update(model=[1, 2]), "'model' must map names to tensors"),
    ("no_config", lambda c: c.pop("config"), "missing 'model' or 'config'"),
    ("no_model", lambda c: c.pop("model"), "missing 'model' or 'config'"),
    ("unknown_key", lambda c: c.update(evil=1), "unknown key 'evil'"),
    ("nan_weight", lambda c: c["model"][_first_weight(c)].fill_(math.nan), "NaN or infinite"),
    ("int_weight", lambda c: c["model"].update({_first_weight(c): torch.zeros(3, dtype=torch.int64)}),
     "not a floating-point tensor"),
    ("string_weight", lambda c: c["model"].update({_first_weight(c): "w"}), "not a floating-point tensor"),
    ("wrong_shape", lambda c: c["model"].update({_first_weight(c): torch.zeros(2, 2)}), "do not fit"),
    ("renamed", lambda c: c["model"].update({"ghost.weight": c["model"].pop(_first_weight(c))}), "do not fit"),
    ("config_not_dict", lambda c: c.update(config="x"), "'config' must be a mapping"),
    ("config_invalid", lambda c: c["config"]["train"].update(seed=-1), "config: train.seed"),
    ("other_network", lambda c: c["config"]["network"]["layers"][0].update(size=7), "different network"),
]


@pytest.mark.parametrize("edit, names", [c[1:] for c in FLOAT_EDITS], ids=[c[0] for c in FLOAT_EDITS])
@pytest.mark.parametrize("command", ["eval", "int-train --from-checkpoint"])
def test_hand_edited_float_checkpoint(world, tmp_path, command, edit, names):
    path = tmp_path / "edited.pt"
    torch.save(_edited(world, edit), path)
    if command == "eval":
        argv = ["eval", "--checkpoint", path, "--config", world / "base.yaml"]
    else:
        argv = ["int-train", "--config", world / "base.yaml", "--out", tmp_path / "out", "--from-checkpoint", path]
    with Watch([tmp_path]) as watch:
        outcome = run(main, argv)
    assert_refused(outcome, PROG, names=["edited.pt", names], watch=watch)


RESUME_EDITS = [
    ("epoch_str", lambda c: c.update(epoch="3"), "'epoch' must be an integer"),
    ("epoch_negative", lambda c: c.update(epoch=-1), "'epoch' must be an integer"),
    ("epoch_bool", lambda c: c.update(epoch=True), "'epoch' must be an integer"),
    ("no_optimizer", lambda c: c.pop("optimizer"), "cannot be resumed"),
    ("optimizer_list", lambda c: c.update(optimizer=[1]), "'optimizer' is not an optimizer state"),
    ("optimizer_groups", lambda c: c["optimizer"].update(param_groups=[]), "parameter groups"),
    ("optimizer_state_shape", lambda c: c["optimizer"]["state"].update({0: {"momentum_buffer": torch.zeros(2)}}),
     "optimizer.state.0.momentum_buffer"),
    ("optimizer_state_index", lambda c: c["optimizer"]["state"].update({99: {}}), "does not name a parameter"),
    ("metrics_missing_field", lambda c: c["metrics"].pop("epochs"), "metrics: epochs"),
    ("metrics_wrong_type", lambda c: c["metrics"].update(wall_time_s="fast"), "metrics: wall_time_s"),
    ("metrics_epochs_mismatch", lambda c: c["metrics"].update(epochs=[]), "metrics hold 0 epochs"),
    ("changed_seed", lambda c: c["config"]["train"].update(seed=5), "train.seed = 5"),
    ("changed_lr", lambda c: c["config"]["train"].update(lr=0.5), "train.lr = 0.5"),
    ("changed_batch", lambda c: c["config"]["train"].update(batch_size=2), "train.batch_size = 2"),
    ("changed_rule", lambda c: c["config"]["learning"].update(rule="bptt"), "learning.rule = 'bptt'"),
    ("changed_optimizer", lambda c: c["config"]["train"].update(optimizer="adam"), "train.optimizer = 'adam'"),
]


@pytest.mark.parametrize("edit, names", [c[1:] for c in RESUME_EDITS], ids=[c[0] for c in RESUME_EDITS])
def test_resume_refuses_edited_or_changed_run(world, tmp_path, edit, names):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(_edited(world, edit), run_dir / "checkpoint.pt")
    for name in ("config.yaml", "metrics.json"):
        (run_dir / name).write_bytes((world / "float_run" / name).read_bytes())
    (run_dir / ".checkpoint.pt.abc.tmp").write_bytes(b"stale")  # not removed by a refused resume
    config = yaml.safe_load((world / "base.yaml").read_text())
    config["train"]["epochs"] = 2  # a resume may extend the run
    path = _config(tmp_path, config, "more.yaml")
    path.write_text(path.read_text().replace("train.npz", str(world / "train.npz"))
                    .replace("test.npz", str(world / "test.npz")))
    with Watch([tmp_path]) as watch:
        outcome = run(main, ["train", "--config", path, "--out", run_dir, "--resume"])
    assert_refused(outcome, PROG, names=names, watch=watch)


def test_resume_may_extend_epochs_and_removes_stale_temps(world, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("checkpoint.pt", "config.yaml", "metrics.json"):
        (run_dir / name).write_bytes((world / "float_run" / name).read_bytes())
    (run_dir / ".checkpoint.pt.abc.tmp").write_bytes(b"stale")
    config = yaml.safe_load((world / "base.yaml").read_text())
    config["train"].update(epochs=2, threads=1)
    config["data"].update(train=str(world / "train.npz"), test=str(world / "test.npz"))
    path = _config(tmp_path, config, "more.yaml")
    assert_accepted(run(main, ["train", "--config", path, "--out", run_dir, "--resume", "--quiet"]))
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.json"]
    assert [e["epoch"] for e in json.loads((run_dir / "metrics.json").read_text())["epochs"]] == [0, 1]


# ------------------------------------------------------------------ integer checkpoints


def _npz_edit(world: Path, path: Path, edit) -> Path:
    with np.load(world / "int_run" / "checkpoint.npz", allow_pickle=False) as data:
        contents = {key: data[key] for key in data.files}
    edit(contents)
    np.savez(path, **contents)
    return path


def _meta(key, change):
    def edit(contents):
        value = json.loads(str(contents[key]))
        change(value)
        contents[key] = np.array(json.dumps(value))
    return edit


INT_EDITS = [
    ("epoch_float", lambda c: c.update(epoch=np.array(1.5)), "'epoch' must be one integer"),
    ("epoch_negative", lambda c: c.update(epoch=np.array(-2)), "'epoch' must be >= 0"),
    ("version", lambda c: c.update(version=np.array(7)), "format version 7"),
    ("formats_not_json", lambda c: c.update(formats=np.array("{")), "unreadable 'formats'"),
    ("formats_array", lambda c: c.update(formats=np.zeros(3)), "'formats' must be one JSON string"),
    ("formats_wrong", _meta("formats", lambda v: v.update({k: "s4.2" for k in v})), "stored as s4.2"),
    ("config_invalid", _meta("config", lambda v: v["train"].update(batch_size=True)), "config: train.batch_size"),
    ("metrics_type", _meta("metrics", lambda v: v.update(epochs="many")), "metrics: epochs"),
    ("counters_row", _meta("counters", lambda v: v["overflow"].append(["x", "s8.0", -1, 0])), "counters: overflow"),
    ("counters_format", _meta("counters", lambda v: v["overflow"].append(["x", "q8", 0, 0])), "bad format 'q8'"),
    ("weight_range", lambda c: c.update({"layer0.weight": c["layer0.weight"] * 0 + 10**6}), "outside"),
    ("weight_shape", lambda c: c.update({"layer0.weight": c["layer0.weight"][:1]}), "layer0.weight has shape"),
    ("weight_missing", lambda c: c.pop("layer0.weight"), "layer0.weight missing"),
    ("lanes_zero", lambda c: c.update(lanes=c["lanes"] * 0), "lanes must be"),
    ("missing_config", lambda c: c.pop("config"), "missing config"),
]


@pytest.mark.parametrize("edit, names", [c[1:] for c in INT_EDITS], ids=[c[0] for c in INT_EDITS])
@pytest.mark.parametrize("command", ["int-eval", "int-train --resume"])
def test_hand_edited_integer_checkpoint(world, tmp_path, command, edit, names):
    if command == "int-eval":
        path = _npz_edit(world, tmp_path / "edited.npz", edit)
        argv = ["int-eval", "--checkpoint", path, "--config", world / "base.yaml"]
    else:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        path = _npz_edit(world, run_dir / "checkpoint.npz", edit)
        argv = ["int-train", "--config", world / "base.yaml", "--out", run_dir, "--resume"]
    with Watch([tmp_path]) as watch:
        outcome = run(main, argv)
    assert_refused(outcome, PROG, names=[path.name, names], watch=watch)


def test_integer_checkpoint_with_a_huge_header_is_refused_before_reading(world, tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("lanes.npy", header.getvalue() + b"\0" * 64)
    with Watch([tmp_path]) as watch:
        outcome = run(main, ["int-eval", "--checkpoint", path, "--config", world / "base.yaml"])
    assert_refused(outcome, PROG, names=["huge.npz", "'lanes' claims shape [1000000000000]"], watch=watch)


# ------------------------------------------------------------------ quant formats


@settings(max_examples=40, **SETTINGS)
@given(tensor=st.sampled_from(["weight", "membrane", "update", "pre_trace", "post_trace", "psi", "learning_signal",
                               "current", "error", "modulation", "learning_rate"]),
       signed=st.booleans(), bits=st.integers(-2, 40), frac=st.integers(-40, 70))
def test_fuzzed_quant_format(world, tmp_path_factory, tensor, signed, bits, frac):
    """The oracle here is the format grammar's documented bounds (docs/fixedpoint_formats.md:
    bits 2..32 signed, 1..32 unsigned, frac -32..63; signed tensors need signed formats);
    a format inside them may still be refused for a datapath that cannot hold it, with one
    line naming 'quant', or run: never a traceback."""
    folder = tmp_path_factory.mktemp("quant")
    text = f"{'s' if signed else 'u'}{bits}.{frac}"
    config = copy.deepcopy(BASE)
    config["quant"] = {tensor: text}
    config["data"].update(train=str(world / "train.npz"), test=str(world / "test.npz"))
    path = _config(folder, config, "q.yaml")
    with Watch([folder]) as watch:
        outcome = run(main, ["int-train", "--config", path, "--out", folder / "out", "--quiet"])
    grammar_ok = (2 if signed else 1) <= bits <= 32 and -32 <= frac <= 63
    must_sign = tensor in ("weight", "membrane", "update", "learning_signal", "current", "error", "modulation")
    if not grammar_ok or (must_sign and not signed):
        assert_refused(outcome, PROG, names=f"quant.{tensor}", watch=watch)
    elif outcome.code == 2:
        assert_refused(outcome, PROG, names="quant", watch=watch)
    else:
        assert_accepted(outcome)


# ------------------------------------------------------------------ SHD (.h5) files


def _shd(path: Path, labels=(0, 1, 2, 1), times=None, units=None, label_dtype=np.uint16,
         times_dtype=np.float32, units_dtype=np.uint16, skip=()):
    import h5py

    n = len(labels)
    times = times if times is not None else [[0.1, 0.5]] * n
    units = units if units is not None else [[0, 3]] * n
    with h5py.File(path, "w") as f:
        if "times" not in skip:
            t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(times_dtype))
            for i, row in enumerate(times):
                t[i] = np.asarray(row, dtype=times_dtype)
        if "units" not in skip:
            u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(units_dtype))
            for i, row in enumerate(units):
                u[i] = np.asarray(row, dtype=units_dtype)
        if "labels" not in skip:
            f.create_dataset("labels", data=np.asarray(labels).astype(label_dtype))
    return path


SHD_CASES = [
    ("valid", {}, None),
    ("missing_labels", {"skip": ("labels",)}, "missing dataset 'labels'"),
    ("missing_units", {"skip": ("units",)}, "missing dataset 'spikes/units'"),
    ("float_labels", {"label_dtype": np.float32, "labels": (0.5, 1, 2, 1)}, "'labels' must be integers"),
    ("string_labels", {"label_dtype": "S3"}, "'labels' must be integers"),
    ("label_range", {"labels": (0, 1, 25, 1)}, "'labels' must be in 0..19"),
    ("float_units", {"units_dtype": np.float32}, "'spikes/units' integers"),
    ("unit_range", {"units": [[0, 900]] * 4}, "unit 900 >= num_channels"),
    ("negative_time", {"times": [[-0.5, 0.1]] * 4}, "finite and >= 0"),
    ("nan_time", {"times": [[math.nan, 0.1]] * 4}, "finite and >= 0"),
    ("length_mismatch", {"times": [[0.1, 0.2]] * 3}, "must be 1-D of equal length"),
    ("ragged_sample", {"times": [[0.1]] * 4}, "'spikes/times' has 1 entries"),
    ("empty", {"labels": ()}, "'labels' is empty"),
]


@pytest.mark.parametrize("kwargs, names", [c[1:] for c in SHD_CASES], ids=[c[0] for c in SHD_CASES])
def test_shd_file(tmp_path, kwargs, names):
    train = _shd(tmp_path / "train.h5", **kwargs)
    test = _shd(tmp_path / "test.h5")
    config = copy.deepcopy(BASE)
    config["network"]["input_shape"] = [700]
    config["network"]["layers"][-1]["size"] = 20
    config["data"] = {"kind": "shd", "train": str(train), "test": str(test), "num_steps": T}
    path = _config(tmp_path, config, "shd.yaml")
    out = tmp_path / "out"
    with Watch([tmp_path]) as watch:
        outcome = run(main, ["train", "--config", path, "--out", out, "--quiet"])
    if names is None:
        assert_accepted(outcome)
    else:
        assert_refused(outcome, PROG, names=["data.train", "train.h5", names], watch=watch)


# ------------------------------------------------------------------ usability


def test_eval_reads_only_the_test_file(world, tmp_path):
    config = yaml.safe_load((world / "base.yaml").read_text())
    config["data"].update(train=str(tmp_path / "gone.npz"), test=str(world / "test.npz"))
    path = _config(tmp_path, config, "eval.yaml")
    outcome = run(main, ["eval", "--checkpoint", world / "float_run" / "checkpoint.pt", "--config", path])
    assert_accepted(outcome)
    expected = json.loads((world / "float_run" / "metrics.json").read_text())["final_test_accuracy"]
    assert json.loads(outcome.stdout)["test_accuracy"] == expected


def test_saved_config_of_a_run_is_reusable_from_another_folder(world, tmp_path, monkeypatch):
    saved = world / "float_run" / "config.yaml"
    data = yaml.safe_load(saved.read_text())
    assert Path(data["data"]["train"]).is_absolute() and Path(data["data"]["train"]).is_file()
    monkeypatch.chdir(tmp_path)
    outcome = run(main, ["eval", "--checkpoint", world / "float_run" / "checkpoint.pt", "--config", saved])
    assert_accepted(outcome)
    assert_accepted(run(main, ["train", "--config", saved, "--out", "again", "--quiet"]))
    # same config, same seed: the same weights as the original run
    a = torch.load(world / "float_run" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "again" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_output_files_follow_the_umask(world, tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert_accepted(run(main, ["train", "--config", world / "base.yaml", "--out", tmp_path / "out", "--quiet"]))
    finally:
        os.umask(previous)
    for name in ("checkpoint.pt", "config.yaml", "metrics.json"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


GENERATED = [
    ({"kind": "digits", "num_steps": 40_000}, [64], 10, "num_steps: the generated set would hold"),
    ({"kind": "moving_edge", "num_steps": 4, "num_train": 10**7, "num_test": 10}, [2, 16, 16], 4,
     "num_steps: the generated set would hold"),
    ({"kind": "moving_edge", "num_steps": 4, "num_train": 10**8, "num_test": 10}, [2, 16, 16], 4,
     "data.num_train"),
    ({"kind": "digits", "num_steps": 4, "train": "x.npz"}, [64], 10, "'train' does not apply to kind 'digits'"),
    ({"kind": "digits"}, [64], 10, "'num_steps' is required"),
]


@pytest.mark.parametrize("data, shape, classes, names", GENERATED, ids=[str(i) for i in range(len(GENERATED))])
def test_generated_data_is_bounded(tmp_path, data, shape, classes, names):
    config = {"network": {"input_shape": shape, "layers": [{"kind": "readout", "size": classes}]}, "data": data}
    path = _config(tmp_path, config, "gen.yaml")
    with Watch([tmp_path]) as watch:
        outcome = run(main, ["train", "--config", path, "--out", tmp_path / "out"])
    assert_refused(outcome, PROG, names=names, watch=watch)


@pytest.mark.parametrize("command", ["train", "int-train", "eval", "int-eval"])
def test_config_that_is_a_folder_or_missing(world, tmp_path, command):
    for config, message in ((tmp_path, "is a folder"), (tmp_path / "nope.yaml", "config file not found")):
        argv = [command, "--config", config] + (["--out", tmp_path / "out"] if "train" in command
                                                else ["--checkpoint", world / "float_run" / "checkpoint.pt"])
        with Watch([tmp_path]) as watch:
            outcome = run(main, argv)
        assert_refused(outcome, PROG, names=[str(config), message], watch=watch)
