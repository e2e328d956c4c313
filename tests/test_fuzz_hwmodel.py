"""Bad-input fuzz suite of ``hwmodel estimate | compare | measure`` (harness: tests/fuzzkit.py).

Each case states its own oracle (valid or not, and what the one-line error must name)
and is classified as a clean refusal (exit 2, one line naming the field and the file,
nothing written) or a valid acceptance (exit 0, the output file exists, parses and holds
the value given); a traceback, a silent acceptance, a partial output or a hang fails it.

The world is tiny so that ``measure`` (the integer model) is cheap: 8 inputs, 6 hidden
neurons, 3 classes, T = 4, ten samples in an npz file.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hwmodel.cli import main
from core.config import config_to_dict, load_config
from stllr.network import SpikingNetwork
from core.schema import MAX_STEPS
from tests.fuzzkit import Watch, assert_accepted, assert_refused, run

PROG = "hwmodel"
T, N_IN, HIDDEN, CLASSES, SAMPLES, BATCH, WINDOW = 4, 8, 6, 3, 10, 3, 2
ROOT = Path(__file__).resolve().parents[1]


def hyp(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------ the world


def base_config(root: Path) -> dict:
    return {
        "network": {"input_shape": [N_IN], "layers": [{"kind": "linear", "size": HIDDEN},
                                                      {"kind": "readout", "size": CLASSES}]},
        "learning": {"loss": "mse", "window": WINDOW},
        "train": {"batch_size": BATCH, "lr": 0.01},
        "data": {"kind": "npz", "train": str(root / "data.npz"), "test": str(root / "data.npz"), "num_steps": T},
    }


def base_hardware() -> dict:
    return yaml.safe_load((ROOT / "configs" / "hw_default.yaml").read_text())["hardware"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """data.npz, base.yaml, hw.yaml, a measured training activity (act.json), a measured
    inference activity (act_inf.json) and a float checkpoint of the network (good.pt)."""
    root = tmp_path_factory.mktemp("fuzz_hwmodel")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=(rng.random((SAMPLES, T, N_IN)) < 0.4).astype(np.uint8),
             y=(np.arange(SAMPLES) % CLASSES).astype(np.int64))
    (root / "base.yaml").write_text(yaml.safe_dump(base_config(root)))
    (root / "hw.yaml").write_text(yaml.safe_dump({"hardware": base_hardware()}))
    assert_accepted(run(main, ["measure", root / "base.yaml", "--out", root / "act.json"]))
    assert_accepted(run(main, ["measure", root / "base.yaml", "--out", root / "act_inf.json", "--inference"]))
    config = load_config(root / "base.yaml")
    torch.manual_seed(7)
    net = SpikingNetwork(config.network, config.learning)
    torch.save({"model": net.state_dict(), "config": config_to_dict(config)}, root / "good.pt")
    return root


def case_dir(world: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=world, prefix="case"))


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


DELETE = object()  # mutation value: remove the key


def mutate(data, dotted: str, value):
    """A deep copy of ``data`` with ``dotted`` (keys, or list indices) set to ``value``."""
    data = copy.deepcopy(data)
    node, parts = data, dotted.split(".")

    def key(node, part):  # list index, an integer key (an anchor width), or ":" for a "." in a key
        return int(part) if isinstance(node, list) or (part.isdigit() and int(part) in node) \
            else part.replace(":", ".")

    for part in parts[:-1]:
        node = node[key(node, part)]
    last = key(node, parts[-1])
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


def refused(world: Path, argv, names) -> None:
    """``argv`` is refused with one line naming ``names``, and nothing in the world changes."""
    with Watch([world]) as watch:
        outcome = run(main, argv)
    assert_refused(outcome, PROG, names=names, watch=watch)


def accepted_json(argv, out: Path) -> dict:
    """``argv`` succeeds and writes ``out`` as strict JSON (no NaN / Infinity)."""
    outcome = run(main, argv)
    assert_accepted(outcome)
    assert out.is_file(), f"accepted but {out} not written"
    return json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))


# ------------------------------------------------------------- hardware section (hypothesis)


INF, NAN = math.inf, math.nan
PJ = st.floats(1e-6, 1e9)
#: hardware field -> (valid values, invalid values); the error must name hardware.<field>.
HW_FIELDS = {
    "clock_mhz": (st.floats(1e-3, 1e6), [0, -1.0, INF, NAN, True, "fast", 1e7, None, [200]]),
    "lanes": (st.integers(1, 2**20), [0, -3, True, 1.5, 2**21, "64", None]),
    "samples_in_flight": (st.integers(1, 65536), [0, False, 65537, 2.0]),
    "dram_pj_per_bit": (PJ, [0.0, -20.0, INF, NAN, True, 1e10]),
    "register_pj_per_bit": (PJ, [0, -1e-3, INF, "cheap"]),
    "memories.sram_state.size_kb": (st.floats(1e-3, 2.0**30) | st.none(), [0, -5.0, INF, True, 2.0**31]),
    "memories.sram_state.word_bits": (st.integers(1, 65536), [0, True, 1.5, 10**6]),
    "memories.sram_state.ports": (st.integers(1, 1024), [0, True, 2000]),
    "memories.sram_state.kind": (st.sampled_from(["sram", "dram", "registers"]), ["flash", 3, None]),
    "sram.anchor_bits": (st.integers(1, 65536), [0, -64, True, "64"]),
    "placement.weight": (st.sampled_from(["registers", "sram_weights", "sram_state", "dram"]),
                         ["hbm", "", "[red]x", 5, None]),
    "placement.wieght": (st.nothing(), ["dram"]),  # a typo: the tensor does not exist
    "placement.layer0:weight": (st.sampled_from(["registers", "sram_weights", "sram_updates", "dram"]),
                                ["hbm", "", 5, None]),  # one layer's tensor (":" stands for "." in a key)
    "placement.layer0:wieght": (st.nothing(), ["dram"]),
    "placement.layer1:default": (st.nothing(), ["dram"]),  # default is not a tensor of a layer
    "name": (st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), [5, "x" * 201, None]),
    "energy.ops.rng.pj": (st.floats(0.0, 1e9), [-1.0, INF, True, 1e10]),
    "energy.ops.add.anchors.8": (PJ, [0, -0.03, INF, True]),
    "energy.ops.adx": (st.nothing(), [{"rule": "fixed", "pj": 1.0}]),  # unknown compute kind
    "energy.fp32.add": (PJ, [0, INF, True]),
}


@st.composite
def hardware_case(draw):
    field = draw(st.sampled_from(sorted(HW_FIELDS)))
    good, bad = HW_FIELDS[field]
    valid = draw(st.booleans()) and not good.is_empty
    value = draw(good) if valid else draw(st.sampled_from(bad))
    return field, value, valid, draw(st.sampled_from(["--hw file", "model file"]))


@hyp(36)
@given(hardware_case())
def test_estimate_hardware_field(world, case):
    field, value, valid, where = case
    event("valid" if valid else "invalid")
    folder = case_dir(world)
    hardware = mutate(base_hardware(), field, value)
    if where == "--hw file":
        source = write_yaml(folder / "hw.yaml", {"hardware": hardware})
        argv = ["estimate", world / "base.yaml", "--hw", source]
    else:
        source = write_yaml(folder / "model.yaml", {**base_config(world), "hardware": hardware})
        argv = ["estimate", source]
    out = folder / "cost.json"
    argv += ["--json", "--out", out]
    if not valid:
        refused(world, argv, [str(source), f"hardware.{field.replace(':', '.')}"])
        return
    payload = accepted_json(argv, out)
    reported = {"clock_mhz": "clock_mhz", "lanes": "lanes", "samples_in_flight": "samples_in_flight", "name": "name"}
    if field in reported:
        assert payload["hardware"][reported[field]] == value
    if field == "placement.weight":
        weights = [t for t in payload["modes"]["stllr"]["memory"] if t["tensor"] == "weight"]
        assert weights and all(t["memory"] == value for t in weights)
    if field == "placement.layer0:weight":
        weights = {t["layer"]: t["memory"] for t in payload["modes"]["stllr"]["memory"] if t["tensor"] == "weight"}
        assert weights == {"layer0": value, "layer1": "sram_weights"}
    assert payload["modes"]["stllr"]["summary"]["energy_pj"] > 0


# ------------------------------------------------------------------ activity file (hypothesis)


LIMIT0 = BATCH * N_IN  # layer0: at most B x 8 non-zero inputs per step
LIMIT1 = BATCH * HIDDEN  # layer1 (readout): its input is layer0's 6 spikes
#: activity field -> (valid values or None, invalid values, what the error names).
ACT_FIELDS = {
    "layers.layer0.events.1": (st.integers(0, LIMIT0), [-1, LIMIT0 + 1, True, 1.5, "3", None, 2**60],
                               "layers.layer0.events"),
    "layers.layer0.spikes.2": (st.integers(0, BATCH * HIDDEN), [BATCH * HIDDEN + 1, -2, False, 0.5],
                               "layers.layer0.spikes"),
    "layers.layer1.events.0": (st.integers(0, LIMIT1), [LIMIT1 + 1, -1, [1]], "layers.layer1.events"),
    "layers.layer0.signal.0": (st.just(0), [1, 5], "layers.layer0.signal"),  # before the window
    "layers.layer1.spikes": (None, [[0] * T], "layers.layer1.spikes"),  # the readout does not spike
    "layers.layer0.photons": (None, [[0] * T], "layers.layer0.photons"),
    "layers.layer0.psi": (st.lists(st.integers(0, BATCH * HIDDEN), min_size=T, max_size=T),
                          [None, [0] * T + [0], [BATCH * HIDDEN + 1] * T], "layers.layer0.psi"),
    "layers.layer0.bptt_delta.1": (st.integers(0, BATCH * HIDDEN), [BATCH * HIDDEN + 1, -1, True, 0.5],
                                   "layers.layer0.bptt_delta"),
    "layers.layer1.bptt_delta": (None, [DELETE], "layers.layer1.bptt_delta"),  # one layer of the path without
    "layers.layer0.events": (None, [DELETE, [0] * (T - 1), [0] * (T + 1), {}], "layers.layer0.events"),
    "layers.layer2": (None, [{"events": [0] * T}], "layers.layer2"),
    "layers.layer1": (None, [DELETE], "layers.layer1"),
    "run.batch": (st.integers(BATCH, 65536), [0, -1, True, 2.5, 65537, "3", None], "run.batch"),
    "run.steps": (st.just(T), [T - 1, T + 1, 0, True, MAX_STEPS + 1], "run.steps"),
    "run.window": (st.just(WINDOW), [1, 3, 0, T + 1, True], "run.window"),
    "run.learning_signal": (st.just("bp"), ["dfa", 5, None, "x" * 300], "run.learning_signal"),
    "run.mode": (None, ["train", None, 1], "run.mode"),
    "run": (None, [DELETE, [], "stllr"], "run"),
    "run.colour": (None, ["blue"], "run.colour"),
    "version": (st.just(1), [2, True, 1.0, "1", None], "version"),
    "fingerprint": (None, ["0" * 64, "abc", 5, None, DELETE], "fingerprint"),
    "format": (st.just("hwmodel-activity"), ["neurobench", None, 1, DELETE], "format"),
    "overflow": (st.just(DELETE), [[], "none"], "overflow"),  # absent: a file from before overflow counts
    "overflow.total_events": (None, [1, -1, True], "overflow.total_events"),
    "overflow.tensors.layer0:membrane.events": (None, [10**9, -1], "overflow.tensors.layer0.membrane"),
}


@st.composite
def activity_case(draw):
    field = draw(st.sampled_from(sorted(ACT_FIELDS)))
    good, bad, name = ACT_FIELDS[field]
    valid = good is not None and draw(st.booleans())
    value = draw(good) if valid else draw(st.sampled_from(bad))
    return field, value, valid, name


@hyp(40)
@given(activity_case())
def test_estimate_activity_field(world, case):
    field, value, valid, name = case
    event("valid" if valid else "invalid")
    folder = case_dir(world)
    data = mutate(json.loads((world / "act.json").read_text()), field, value)
    act = folder / "act.json"
    act.write_text(json.dumps(data))
    out = folder / "cost.json"
    argv = ["estimate", world / "base.yaml", "--activity", act, "--json", "--out", out]
    if not valid:
        refused(world, argv, [str(act), name])
        return
    payload = accepted_json(argv, out)
    assert payload["activity"]["measured"] is True
    assert payload["setup"]["batch"] == data["run"]["batch"]
    events = data["layers"]["layer0"]["events"]
    assert payload["activity"]["input_rates"][0] == pytest.approx(sum(events) / (data["run"]["batch"] * T * N_IN))
    assert payload["activity"]["overflow_events"] == (data["overflow"]["total_events"] if "overflow" in data
                                                      else None)
    deltas = [data["layers"][name]["bptt_delta"] for name in ("layer0", "layer1")]
    assert payload["activity"]["bptt_delta_source"] == "measured"
    assert payload["activity"]["bptt_delta"] == pytest.approx(
        [sum(deltas[0]) / (data["run"]["batch"] * T * HIDDEN), sum(deltas[1]) / (data["run"]["batch"] * T * CLASSES)])


# ---------------------------------------------------------------------- flags (hypothesis)


@hyp(12)
@given(st.one_of(st.integers(-3, 6), st.integers(MAX_STEPS - 2, MAX_STEPS + 3),
                 st.sampled_from(["", "4.0", "1e3", "four", "0x10", "--json"])))
def test_estimate_steps_flag(world, steps):
    folder = case_dir(world)
    out = folder / "cost.json"
    argv = ["estimate", world / "base.yaml", "--steps", steps, "--json", "--out", out]
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        refused(world, argv, "--steps")
    elif steps < WINDOW:
        refused(world, argv, ["learning.window", f"T = {steps}"])
    else:
        event("valid")
        payload = accepted_json(argv, out)
        assert payload["setup"]["steps"] == steps and payload["setup"]["window"] == WINDOW


def _int_list_ok(values) -> bool:
    return bool(values) and all(1 <= v <= MAX_STEPS for v in values) and len(set(values)) == len(values)


@hyp(20)
@given(st.one_of(st.lists(st.integers(1, T), min_size=1, max_size=3, unique=True),  # mostly valid
                 st.lists(st.integers(-1, 12), max_size=4)),
       st.one_of(st.none(), st.lists(st.integers(T, 12), min_size=1, max_size=3, unique=True),
                 st.lists(st.integers(0, 12), max_size=3)))
def test_compare_ks_and_steps_list(world, ks, steps_list):
    folder = case_dir(world)
    out = folder / "compare.json"
    argv = ["compare", world / "base.yaml", "--ks", ",".join(map(str, ks)), "--json", "--out", out]
    if steps_list is not None:
        argv += ["--steps-list", ",".join(map(str, steps_list))]
    if not _int_list_ok(ks):
        refused(world, argv, "--ks")
        return
    if steps_list is not None and not _int_list_ok(steps_list):
        refused(world, argv, "--steps-list")
        return
    shortest = min(steps_list or [T])
    if max(ks) > shortest:
        first = next(k for k in ks if k > shortest)
        refused(world, argv, ["--ks", f"k = {first} exceeds T = {shortest}"])
        return
    event("valid")
    payload = accepted_json(argv, out)
    assert [(r["steps"], r["window"]) for r in payload["sweep"]] == [(t, k) for t in steps_list or [T] for k in ks]


@hyp(10)
@given(st.one_of(st.integers(-2, SAMPLES + 2), st.just(65537), st.sampled_from(["3.0", "three", ""])))
def test_measure_batch_flag(world, batch):
    folder = case_dir(world)
    out = folder / "act.json"
    argv = ["measure", world / "base.yaml", "--out", out, "--batch", batch]
    if not isinstance(batch, int) or not 1 <= batch <= SAMPLES:
        refused(world, argv, "--batch")
        return
    event("valid")
    payload = accepted_json(argv, out)
    assert payload["run"]["batch"] == batch and payload["run"]["steps"] == T
    assert all(0 <= e <= batch * N_IN for e in payload["layers"]["layer0"]["events"])
    assert payload["overflow"]["total_events"] == sum(t["events"] for t in payload["overflow"]["tensors"].values())


# ------------------------------------------------------------------ hand-picked classes


YAML_BOMB = "\n".join([
    'a: &a ["x","x","x","x","x","x","x","x","x"]',
    *[f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip("abcde", "bcdef")],
]) + "\n"

#: Bad model files: (file name, bytes, what the error names besides the file).
BAD_MODEL_FILES = [
    ("latin1.yaml", "network: {input_shape: [8]} # caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("binary.yaml", bytes(range(256)), "not UTF-8"),
    ("nul.yaml", b"network:\x00 1\n", "binary"),
    ("bomb.yaml", YAML_BOMB.encode(), "200000 values"),
    ("deep.yaml", ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "not valid YAML"),
    ("dupe.yaml", b"network: {}\nnetwork: {}\n", "duplicate key"),
    ("list.yaml", b"- 1\n- 2\n", "mapping"),
    ("python.yaml", b"network: !!python/object/apply:os.system ['touch MARKER']\n", "not valid YAML"),
    ("empty.yaml", b"", "mapping"),
]


@pytest.mark.parametrize("command", ["estimate", "compare", "measure"])
@pytest.mark.parametrize("name,content,what", BAD_MODEL_FILES, ids=[c[0] for c in BAD_MODEL_FILES])
def test_bad_model_file(world, command, name, content, what):
    folder = case_dir(world)
    path = folder / name
    path.write_bytes(content)
    argv = [command, path, "--out", folder / "out.json"]
    refused(world, argv, [str(path), what])
    assert not Path("MARKER").exists() and not (folder / "MARKER").exists()


def _model_with(world: Path, dotted: str, value) -> dict:
    return mutate(base_config(world), dotted, value)


#: Bad model-file fields shared by the three subcommands: (id, mutation, names).
BAD_FIELDS = [
    ("unknown layer kind", ("network.layers.0", {"kind": "lstm", "size": 4}), ["network.layers.0", "lstm"]),
    ("size true", ("network.layers.0.size", True), ["network.layers.0.size", "bool"]),
    ("negative size", ("network.layers.0.size", -6), ["network.layers.0.size"]),
    ("window beyond T", ("learning.window", 9), ["learning.window", "T = 4"]),
    ("rate above 1", ("activity", {"input": 1.5}), ["activity.input"]),
    ("rate nan", ("activity", {"input": NAN}), ["activity.input"]),
    ("rate of a missing layer", ("activity", {"layers": {-1: {"output": 0.1}}}), ["activity.layers.-1"]),
    ("unknown top-level key", ("colour", "blue"), ["colour"]),
    ("hardware not a mapping", ("hardware", [1, 2]), ["hardware"]),
    ("placement unknown memory", ("hardware", {"placement": {"weight": "hbm", "default": "dram"}}),
     ["hardware.placement.weight", "hbm"]),
    ("placement without default", ("hardware", {"placement": {"weight": "dram"}}),
     ["hardware.placement.", "no memory"]),
    ("energy entry missing", ("hardware", {"energy": {"ops": {"add": {"rule": "fixed", "pj": 1.0}}}}),
     ["hardware.energy.ops.", "missing energy entry"]),
    ("pj on a linear rule", ("hardware", {"energy": {"ops": {"add": {"rule": "linear", "pj": 1.0,
                                                                     "anchors": {8: 1.0}}}}}),
     ["hardware.energy.ops.add.pj", "not used"]),
    ("anchor width 10^8", ("hardware", {"energy": {"ops": {"add": {"rule": "linear", "anchors": {10**8: 1.0}}}}}),
     ["hardware.energy.ops.add.anchors"]),
]


@pytest.mark.parametrize("command", ["estimate", "compare", "measure"])
@pytest.mark.parametrize("what,mutation,names", BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_bad_model_field(world, command, what, mutation, names):
    folder = case_dir(world)
    path = write_yaml(folder / "model.yaml", _model_with(world, *mutation))
    out = folder / "out.json"
    argv = [command, path, "--out", out]
    if command == "measure" and what == "energy entry missing":
        # measure costs nothing: a table that lacks a kind is valid until an estimate needs it
        assert accepted_json(argv, out)["run"]["steps"] == T
        return
    refused(world, argv, [str(path), *names])


def test_estimate_out_not_written_when_plot_is_refused(world):
    """--out X --plot Y.txt: every output is checked before any work, X is not written."""
    folder = case_dir(world)
    out = folder / "cost.json"
    refused(world, ["estimate", world / "base.yaml", "--json", "--out", out, "--plot", folder / "plot.txt"],
            ["--plot", "plot.txt", ".png"])
    (folder / "plot.png").mkdir()
    refused(world, ["estimate", world / "base.yaml", "--json", "--out", out, "--plot", folder / "plot.png"],
            ["--plot", "is a folder"])
    assert not out.exists()


@pytest.mark.parametrize("command", ["estimate", "compare", "measure"])
def test_out_is_folder_under_file_or_input(world, command):
    folder = case_dir(world)
    for out, names in ((folder, ["--out", "is a folder"]),
                       (world / "base.yaml" / "x.json", ["--out", "is a file, not a folder"]),
                       (world / "base.yaml", ["--out", "is the input file"])):
        refused(world, [command, world / "base.yaml", "--out", out], names)


def test_outputs_together_in_a_new_folder(world):
    """--out and --plot in a folder that does not exist yet: both written, nothing else."""
    folder = case_dir(world)
    out, png = folder / "new" / "cost.json", folder / "new" / "cost.png"
    payload = accepted_json(["estimate", world / "base.yaml", "--json", "--out", out, "--plot", png], out)
    assert payload["setup"]["steps"] == T
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (folder / "new").iterdir()) == ["cost.json", "cost.png"]
    refused(world, ["estimate", world / "base.yaml", "--out", out, "--plot", folder / "new" / ".." / "new" /
                    "cost.json.png", "--json", "--csv"], ["--json", "--csv"])
    refused(world, ["estimate", world / "base.yaml", "--out", png, "--plot", png], ["--plot", "same file"])


@pytest.mark.parametrize("flag,value,names", [
    ("--hw", "missing.yaml", ["missing.yaml", "hardware file not found"]),
    ("--hw", ".", ["is a folder", "hardware file"]),
    ("--hw", "base.yaml", ["base.yaml", "exactly one top-level 'hardware:'"]),
    ("--activity", "missing.json", ["missing.json", "activity file not found"]),
    ("--activity", ".", ["is a folder", "activity file"]),
    ("--activity", "base.yaml", ["base.yaml", "not valid JSON"]),
    ("--activity", "data.npz", ["data.npz", "not UTF-8"]),
    ("--modes", "stllr,adam", ["--modes", "adam"]),
    ("--modes", ",", ["--modes", "empty"]),
    ("--modes", "stllr,stllr", ["--modes", "twice"]),
], ids=lambda v: str(v)[:20])
def test_estimate_bad_flag(world, flag, value, names):
    target = value if flag == "--modes" else world / value
    refused(world, ["estimate", world / "base.yaml", flag, target], names)


@pytest.mark.parametrize("name,content,what", [
    ("nan.json", None, "NaN"),
    ("dupe.json", b'{"format": "hwmodel-activity", "format": "hwmodel-activity"}', "duplicate key"),
    ("deep.json", b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ("list.json", b"[1, 2]", "JSON object"),
    ("bigint.json", b'{"format": "hwmodel-activity", "version": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ("huge.json", b" " * (64 * 2**20 + 1), "larger than"),
    ("inference.json", None, "run.mode"),
], ids=lambda v: str(v)[:12])
def test_bad_activity_file(world, tmp_path, name, content, what):
    folder = case_dir(world)
    # the 64 MiB file lives outside the watched world: hashing it for every later case is slow
    path = (tmp_path if name == "huge.json" else folder) / name
    if name == "nan.json":
        data = json.loads((world / "act.json").read_text())
        data["layers"]["layer0"]["events"][0] = NAN
        content = json.dumps(data).encode()
    elif name == "inference.json":  # an inference run cannot cost training
        content = (world / "act_inf.json").read_bytes()
    path.write_bytes(content)
    refused(world, ["estimate", world / "base.yaml", "--activity", path, "--out", folder / "out.txt"],
            [str(path), what])


def test_inference_activity_costs_inference(world):
    folder = case_dir(world)
    out = folder / "cost.json"
    payload = accepted_json(["estimate", world / "base.yaml", "--activity", world / "act_inf.json",
                             "--modes", "inference", "--json", "--out", out], out)
    assert set(payload["modes"]) == {"inference"} and payload["activity"]["measured"] is True


def test_activity_without_bptt_deltas_is_costed_with_a_warning(world, capsys):
    """A file written before bptt_delta was measured: BPTT falls back to the rates' delta
    density, and says so (stderr and JSON)."""
    folder = case_dir(world)
    data = json.loads((world / "act.json").read_text())
    for layer in data["layers"].values():
        del layer["bptt_delta"]
    act = folder / "old.json"
    act.write_text(json.dumps(data))
    out = folder / "cost.json"
    outcome = run(main, ["estimate", world / "base.yaml", "--activity", act, "--json", "--out", out])
    assert_accepted(outcome)
    payload = json.loads(out.read_text())
    assert payload["activity"]["bptt_delta_source"] == "rates" and payload["activity"]["bptt_delta"] == [1.0, 1.0]
    assert len(payload["warnings"]) == 1 and "no BPTT deltas" in payload["warnings"][0]
    assert outcome.stderr.startswith("hwmodel: warning: ") and "old.json" in outcome.stderr


def test_bptt_delta_in_an_inference_run_is_refused(world):
    folder = case_dir(world)
    data = json.loads((world / "act_inf.json").read_text())
    data["layers"]["layer0"]["bptt_delta"] = [0] * T
    act = folder / "inf.json"
    act.write_text(json.dumps(data))
    refused(world, ["estimate", world / "base.yaml", "--activity", act, "--modes", "inference"],
            [str(act), "layers.layer0.bptt_delta", "training quantity"])


@pytest.mark.parametrize("command", ["estimate", "compare", "measure"])
def test_config_given_twice_or_not_at_all(world, command):
    folder = case_dir(world)
    out = ["--out", folder / "x.json"]
    refused(world, [command, world / "base.yaml", "--net", world / "hw.yaml", *out],
            [f"hwmodel {command}", "given twice", "--net"])
    refused(world, [command, *out], [f"hwmodel {command}", "no config", "--net CONFIG"])
    refused(world, [command, "--net", world / "missing.yaml", *out], ["missing.yaml"])


def test_compare_csv_and_plot_outputs(world):
    """compare --csv --out X --plot Y: both written together, or neither when one is refused."""
    folder = case_dir(world)
    out, png = folder / "new" / "sweep.csv", folder / "new" / "sweep.png"
    assert_accepted(run(main, ["compare", "--net", world / "base.yaml", "--ks", "1,2", "--csv", "--out", out,
                               "--plot", png]))
    lines = out.read_text().splitlines()
    assert lines[0].startswith("steps,window,activity,state_memory") and len(lines) == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = folder / "other.csv"
    refused(world, ["compare", world / "base.yaml", "--csv", "--out", other, "--plot", folder / "p.svg"],
            ["--plot", ".png"])
    refused(world, ["compare", world / "base.yaml", "--csv", "--json", "--out", other], ["--json", "--csv"])
    refused(world, ["compare", world / "base.yaml", "--csv", "--out", folder / "o.png", "--plot", folder / "o.png"],
            ["--plot", "same file"])
    assert not other.exists()


# ------------------------------------------------------------------------------ measure


def test_measure_writes_overflow_counts_and_prints_summary(world):
    """Saturation is never silent: summary on stdout, a warning on stderr, counts in the file."""
    folder = case_dir(world)
    config = write_yaml(folder / "narrow.yaml", _model_with(world, "quant", {"membrane": "s4.2 saturate"}))
    out = folder / "act.json"
    outcome = run(main, ["measure", config, "--out", out])
    assert_accepted(outcome)
    payload = json.loads(out.read_text())
    overflow = payload["overflow"]
    membrane = overflow["tensors"]["layer1.membrane"]
    assert membrane["events"] > 0 and membrane["format"].startswith("s4.2")
    assert overflow["total_events"] == sum(t["events"] for t in overflow["tensors"].values())
    assert "overflow summary" in outcome.stdout and "layer1.membrane" in outcome.stdout
    assert "total" in outcome.stdout and str(overflow["total_events"]) in outcome.stdout
    assert f"{overflow['total_events']} overflow events" in outcome.stderr
    cost = folder / "cost.json"
    estimate = accepted_json(["estimate", config, "--activity", out, "--json", "--out", cost], cost)
    assert estimate["activity"]["overflow_events"] == overflow["total_events"]


def test_measure_clean_run_reports_zero_overflow(world):
    payload = json.loads((world / "act.json").read_text())
    assert payload["overflow"]["total_events"] == 0
    assert "layer0.membrane" in payload["overflow"]["tensors"]


def test_measure_overflow_raise_is_one_line(world):
    folder = case_dir(world)
    config = write_yaml(folder / "narrow.yaml", _model_with(world, "quant", {"membrane": "s4.2 raise"}))
    refused(world, ["measure", config, "--out", folder / "act.json"],
            ["overflow in layer1.membrane", "s4.2", "overflow policy 'raise'"])


@pytest.mark.parametrize("what,mutation,names", [
    ("softmax too wide", ("quant", {"softmax": "u32.30"}), ["quant.softmax", "u32.30", "62 bits"]),
    ("one beta for adam", ("train.betas", [0.5]), ["train.betas", "adam takes 2 betas, not 1"]),
    ("bptt rule", ("learning.rule", "bptt"), ["learning.rule", "bptt"]),
    ("batch beyond the data", ("train.batch_size", SAMPLES + 1), ["train.batch_size", f"{SAMPLES} training samples"]),
    ("input shape", ("network.input_shape", [9]), ["network.input_shape", "[8]"]),
    ("too few classes", ("network.layers.1.size", 2), ["label 2", "readout"]),
    ("missing data file", ("data.train", "/nonexistent/x.npz"), ["data.train", "x.npz"]),
    ("T of the data", ("data.num_steps", T + 1), ["data.num_steps", f"T = {T}"]),
    ("lr quantizes to 0", ("train.lr", 1e-30), ["train.lr", "quant.learning_rate"]),
], ids=lambda v: str(v)[:20])
def test_measure_bad_config(world, what, mutation, names):
    folder = case_dir(world)
    config = write_yaml(folder / "model.yaml", _model_with(world, *mutation))
    refused(world, ["measure", config, "--out", folder / "act.json"], names)


def test_measure_npz_without_num_steps_takes_T_from_the_data(world):
    folder = case_dir(world)
    config = write_yaml(folder / "model.yaml", mutate(base_config(world), "data.num_steps", DELETE))
    out = folder / "act.json"
    payload = accepted_json(["measure", config, "--out", out], out)
    assert payload["run"]["steps"] == T
    payload = accepted_json(["measure", config, "--out", out, "--steps", T], out)
    assert payload["run"]["steps"] == T
    refused(world, ["measure", config, "--out", out, "--steps", T + 1], ["--steps", f"T = {T}"])


def test_measure_checkpoint_weights_are_measured(world):
    folder = case_dir(world)
    out = folder / "act.json"
    outcome = run(main, ["measure", world / "base.yaml", "--out", out, "--checkpoint", world / "good.pt"])
    assert_accepted(outcome)
    assert "good.pt" in outcome.stdout
    trained = json.loads(out.read_text())
    initial = json.loads((world / "act.json").read_text())
    assert trained["layers"]["layer0"]["events"] == initial["layers"]["layer0"]["events"]  # same input
    assert trained["layers"]["layer0"]["spikes"] != initial["layers"]["layer0"]["spikes"]  # other weights


class _Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "model", "config"])
def test_measure_crafted_pickle_never_runs(world, tmp_path, where):
    marker = tmp_path / "MARKER"
    good = torch.load(world / "good.pt", weights_only=True)
    evil = world / f"evil_{where}.pt"
    torch.save(_Payload(marker) if where == "top" else {**good, where: _Payload(marker)}, evil)
    folder = case_dir(world)
    refused(world, ["measure", world / "base.yaml", "--out", folder / "act.json", "--checkpoint", evil],
            [str(evil), "refused", "nothing in it was run"])
    assert not marker.exists()


@pytest.mark.parametrize("what,make,names", [
    ("not a checkpoint", lambda root, path: path.write_bytes((root / "data.npz").read_bytes()), ["not a readable"]),
    ("missing", lambda root, path: None, ["checkpoint not found"]),
    ("another network", lambda root, path: torch.save(
        {**torch.load(root / "good.pt", weights_only=True),
         "config": mutate(config_to_dict(load_config(root / "base.yaml")), "network.layers.0.size", 7)}, path),
     ["different network"]),
    ("wrong shapes", lambda root, path: torch.save(
        {**torch.load(root / "good.pt", weights_only=True),
         "model": {k: torch.zeros(2, 2) for k in torch.load(root / "good.pt", weights_only=True)["model"]}}, path),
     ["shape"]),
], ids=lambda v: str(v)[:16])
def test_measure_bad_checkpoint(world, what, make, names):
    folder = case_dir(world)
    path = folder / "ckpt.pt"
    make(world, path)
    refused(world, ["measure", world / "base.yaml", "--out", folder / "act.json", "--checkpoint", path],
            [str(path), *names])


@pytest.mark.parametrize("content,names", [
    (b"hardware:\n", ["hardware: must be a mapping"]),
    (b"hardware: {clock_mhz: .inf}\n", ["hardware.clock_mhz", "finite"]),
    (b"hardware: {lanes: true}\n", ["hardware.lanes", "got bool True"]),
    (b"hardware: {memories: {sram_state: {kind: sram, size_kb: -1}}}\n", ["hardware.memories.sram_state.size_kb"]),
    (b"hardware: {memories: {'[red]': {kind: sram}}}\n", ["hardware.memories"]),
    (b"hardware: {}\nextra: 1\n", ["exactly one top-level 'hardware:'"]),
    (b"hardware: {lanes: 4}\nhardware: {lanes: 8}\n", ["duplicate key"]),
    ("hardware: {name: caf\xe9}\n".encode("latin-1"), ["hardware file is not UTF-8"]),
], ids=lambda v: str(v)[:24])
@pytest.mark.parametrize("command", ["estimate", "compare"])
def test_bad_hw_file(world, command, content, names):
    folder = case_dir(world)
    hw = folder / "hw.yaml"
    hw.write_bytes(content)
    refused(world, [command, world / "base.yaml", "--hw", hw, "--out", folder / "out.txt"], [str(hw), *names])


def test_rich_text_with_markup_in_names(world):
    """Names from the user (hardware name, file names) are printed as text, never as rich markup."""
    folder = case_dir(world) / "[bold]"
    folder.mkdir()
    hardware = {**base_hardware(), "name": "[/bold] [red"}
    config = write_yaml(folder / "[red]net.yaml", {**base_config(world), "hardware": hardware})
    for command in ("estimate", "compare"):
        out = folder / f"{command}.txt"
        assert_accepted(run(main, [command, config, "--out", out]))
        text = out.read_text()
        assert "[red]net.yaml" in text and "BPTT / S-TLLR" in text
    assert "[/bold] [red" in (folder / "estimate.txt").read_text()
    outcome = run(main, ["estimate", config])  # straight to the terminal
    assert_accepted(outcome)
    assert "[/bold] [red" in outcome.stdout


# ------------------------------------------------------------------- measure --batches N


def _measured_model(world: Path):
    """(inputs, model): the integer model exactly as ``hwmodel measure`` builds it (initial
    weights seeded by train.seed)."""
    from fixedpoint.network import IntNetwork
    from hwmodel.config import load_inputs

    inputs = load_inputs(world / "base.yaml", None, None)
    torch.manual_seed(inputs.config.train.seed)
    net = SpikingNetwork(inputs.config.network, inputs.config.learning).double()
    return inputs, IntNetwork.from_float(net, inputs.quant, lr=inputs.config.train.lr)


def _data_batches(world: Path, n: int, size: int = BATCH):
    """The first n batches of ``size`` samples of the world's data, in stored order."""
    data = np.load(world / "data.npz")
    x, y = data["x"].astype(np.float64), data["y"]
    return [(x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]) for i in range(n)]


def _per_sample(est, mode: str = "stllr") -> dict:
    result = est.results[mode]
    return {key: n / result.batch for key, n in result.counts.items() if n}


@pytest.mark.parametrize("inference", [False, True], ids=["train", "inference"])
def test_measure_batches_sums_consecutive_batches_and_costs_their_mean(world, inference):
    """--batches 3: the file's series are the sums of three consecutive batches, each
    measured here with measure_activity on one model (the weights written after each
    training batch); its first batch is the --batches 1 file; the estimate's per-sample
    counts are the mean of the three one-batch estimates, and three times its per-batch
    counts are the integer model's counters over the three batches, key by key."""
    from hwmodel.activity import measure_activity, parse_activity
    from hwmodel.estimate import build_layers, estimate

    folder = case_dir(world)
    out = folder / "act3.json"
    flags = ["--inference"] if inference else []
    outcome = run(main, ["measure", world / "base.yaml", "--out", out, "--batches", 3, *flags])
    assert_accepted(outcome)
    assert "3 consecutive batches" in outcome.stdout
    three = json.loads(out.read_text())
    assert three["run"]["batches"] == 3 and three["run"]["batch"] == BATCH

    inputs, model = _measured_model(world)
    singles = [measure_activity(model, inputs.config, inputs.quant, x, y, train=not inference)[0]
               for x, y in _data_batches(world, 3)]
    assert all("batches" not in one["run"] for one in singles)  # a one-batch file leaves it out
    assert singles[0] == json.loads((world / ("act_inf.json" if inference else "act.json")).read_text())
    for name, series in three["layers"].items():
        assert set(series) == set(singles[0]["layers"][name])
        for quantity, values in series.items():
            assert values == [sum(v) for v in zip(*(one["layers"][name][quantity] for one in singles))], \
                f"{name}.{quantity}"
    assert three["overflow"] == singles[-1]["overflow"]  # the counter after the last batch
    if not inference:  # the weights moved: the batches are not the same run thrice
        assert singles[1]["layers"]["layer1"]["signal"] != singles[0]["layers"]["layer1"]["signal"] or \
            singles[1]["layers"]["layer0"]["spikes"] != singles[0]["layers"]["layer0"]["spikes"]

    layers = build_layers(inputs.config, inputs.quant)
    modes = ("inference",) if inference else ("inference", "stllr", "bptt")
    mode = "inference" if inference else "stllr"
    act3 = parse_activity(three, str(out), inputs, layers)
    assert act3.batches == 3 and act3.batch == BATCH
    est3 = estimate(inputs, act3, modes)
    ests = [estimate(inputs, parse_activity(one, f"batch{i}", inputs, layers), modes)
            for i, one in enumerate(singles)]
    mean = {}
    for est in ests:
        for key, n in _per_sample(est, mode).items():
            mean[key] = mean.get(key, 0) + n / 3
    got = _per_sample(est3, mode)
    assert set(got) == set(mean)
    for key in got:
        assert got[key] == pytest.approx(mean[key], rel=1e-12), key
    assert est3.results[mode].energy_pj == pytest.approx(sum(e.results[mode].energy_pj for e in ests) / 3)
    ops = model.ops.as_dict()  # the three runs, as executed
    assert {key: round(n * 3) for key, n in est3.results[mode].counts.items() if n} == ops
    assert all(abs(n * 3 - round(n * 3)) < 1e-6 for n in est3.results[mode].counts.values())

    cost = folder / "cost.json"
    payload = accepted_json(["estimate", world / "base.yaml", "--activity", out, "--modes", ",".join(modes),
                             "--json", "--out", cost], cost)
    assert payload["activity"]["batches"] == 3
    text = folder / "cost.txt"
    assert_accepted(run(main, ["estimate", world / "base.yaml", "--activity", out, "--modes", ",".join(modes),
                               "--out", text]))
    assert "(mean of 3 batches)" in text.read_text()
    one = folder / "cost1.txt"
    assert_accepted(run(main, ["estimate", world / "base.yaml", "--activity", world / "act.json", "--out", one]))
    assert "mean of" not in one.read_text()


@hyp(12)
@given(st.one_of(st.integers(-2, SAMPLES + 1), st.sampled_from([10000, 10001, 2**64]),
                 st.sampled_from(["2.0", "two", "", "1e2", "0x3"])),
       st.sampled_from([None, 1, 2]))
def test_measure_batches_flag(world, batches, batch):
    """--batches in 1..10000 and N x B at most the training samples, else one line naming
    --batches, exit 2, nothing written."""
    folder = case_dir(world)
    out = folder / "act.json"
    size = batch or BATCH
    argv = ["measure", world / "base.yaml", "--out", out, "--batches", batches,
            *(["--batch", batch] if batch else [])]
    if not isinstance(batches, int) or not 1 <= batches <= 10000:
        refused(world, argv, "--batches")
        return
    if batches * size > SAMPLES:
        refused(world, argv, ["--batches", f"N = {batches}", f"B = {size}", f"{SAMPLES} training samples"])
        return
    event("valid")
    payload = accepted_json(argv, out)
    assert payload["run"]["batch"] == size
    assert payload["run"].get("batches", 1) == batches and (batches > 1) == ("batches" in payload["run"])
    assert all(0 <= e <= batches * size * N_IN for e in payload["layers"]["layer0"]["events"])


def test_measure_batches_bound_matches_the_activity_module():
    from hwmodel import activity, cli

    assert cli.MAX_BATCHES == activity.MAX_BATCHES == 10000


def _three_batch_file(world: Path) -> dict:
    path = world / "act3.json"
    if not path.exists():
        assert_accepted(run(main, ["measure", world / "base.yaml", "--out", path, "--batches", 3]))
    return json.loads(path.read_text())


@pytest.mark.parametrize("value,ok", [(3 * BATCH * HIDDEN, True), (3 * BATCH * HIDDEN + 1, False)])
def test_activity_file_bounds_scale_with_batches(world, value, ok):
    """A file of N batches may count up to N times what one batch holds per step, no more;
    the same count in a one-batch file is refused."""
    folder = case_dir(world)
    data = _three_batch_file(world)
    data["layers"]["layer0"]["spikes"][0] = value
    path = folder / "act.json"
    path.write_text(json.dumps(data))
    argv = ["estimate", world / "base.yaml", "--activity", path, "--json", "--out", folder / "cost.json"]
    if ok:
        assert_accepted(run(main, argv))
    else:
        refused(world, argv, [str(path), "layers.layer0.spikes", f"N = 3 batches of B = {BATCH}"])
    del data["run"]["batches"]  # as one batch, three batches' counts are too many
    path.write_text(json.dumps(data))
    refused(world, argv, [str(path), "more than the", f"(B = {BATCH} samples of this layer)"])


@pytest.mark.parametrize("value", [0, -1, 10001, True, 2.0, "3", None])
def test_activity_file_bad_batches(world, value):
    folder = case_dir(world)
    data = _three_batch_file(world)
    data["run"]["batches"] = value
    path = folder / "act.json"
    path.write_text(json.dumps(data))
    refused(world, ["estimate", world / "base.yaml", "--activity", path, "--out", folder / "cost.txt"],
            [str(path), "run.batches"])
