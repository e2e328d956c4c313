"""rtl-export without simulators: hex/npz I/O, golden vectors, verify, parameter export.

Bad input must give one line naming the file or field, exit code 2 and no output
directory; vector sets are byte-identical across runs and processes; the SV package
and the C header hold the same values as the integer model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core.formats import FixedFormat
from rtl_export import hexio
from rtl_export.cli import main
from rtl_export.golden import load_vectors
from rtl_export.model import build_model
from rtl_export.params import export_params, layer_params, layer_shifts, render_params
from tests.conftest import run_cli
from core.config import config_to_dict, load_config
from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "rtl" / "configs"
W8 = CONFIGS / "layer_w8_m16.yaml"
W4 = CONFIGS / "layer_w4_m12.yaml"


def _run(capsys, *argv) -> tuple[int, str, str]:
    return run_cli(main, capsys, *argv)


def _golden(capsys, out: Path, config: Path = W4, samples: int = 2, steps: int = 6) -> Path:
    code, _, err = _run(capsys, "golden", "--net", config, "--samples", samples, "--steps", steps,
                        "--random-density", 0.5, "--seed", 1, "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """A vector set of the 4/12-bit config (stochastic online writes), read-only for the tests."""
    from rtl_export.golden import golden

    out = tmp_path_factory.mktemp("golden") / "set"
    config = load_config(W4)
    golden(config, config_to_dict(config), out, samples=2, steps=6, density=0.5, seed=1)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _reseal(root: Path, path: str, payload: bytes) -> None:
    """Replace a hex file and update the npz and manifest so every hash is valid again."""
    (root / path).write_bytes(payload)
    manifest = json.loads((root / "manifest.json").read_text())
    arrays = {}
    for entry in manifest["files"]:
        fmt = FixedFormat(signed=entry["format"]["signed"], bits=entry["format"]["bits"],
                          frac=entry["format"]["frac"])
        data = (root / entry["path"]).read_bytes()
        arrays[entry["npz_key"]] = hexio.decode_hex(data, fmt, entry["words"], entry["path"]).reshape(entry["shape"])
        entry["sha256"] = hexio.sha256(data)
    npz = hexio.encode_npz({key: arrays[key] for key in manifest["npz"]["keys"]})
    (root / "golden.npz").write_bytes(npz)
    manifest["npz"]["sha256"] = hexio.sha256(npz)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


# ----------------------------------------------------------------------------- hex I/O


@pytest.mark.parametrize("signed, bits", [(s, b) for s in (False, True) for b in (1, 2, 3, 4, 5, 7, 8, 9, 12)
                                           if b >= 1 + s])
def test_hex_round_trip_every_code(signed, bits):
    """Every representable integer of small widths survives encode -> decode, digit count exact."""
    fmt = FixedFormat(signed=signed, bits=bits, frac=0)
    codes = np.arange(fmt.min_int, fmt.max_int + 1)
    payload = hexio.encode_hex(codes, fmt, "t.hex")
    lines = payload.decode().splitlines()
    assert all(len(line) == (bits + 3) // 4 for line in lines)
    assert hexio.decode_hex(payload, fmt, codes.size, "t.hex").tolist() == codes.tolist()
    # $readmemh view: the word is the two's complement masked to the width
    assert [int(line, 16) for line in lines] == [int(c) & ((1 << bits) - 1) for c in codes]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_hex_round_trip_wide_formats(data):
    bits = data.draw(st.integers(2, 32))
    signed = data.draw(st.booleans())
    fmt = FixedFormat(signed=signed, bits=bits, frac=data.draw(st.integers(-4, 40)))
    values = data.draw(st.lists(st.integers(fmt.min_int, fmt.max_int), min_size=1, max_size=40))
    payload = hexio.encode_hex(values, fmt, "t.hex")
    assert hexio.decode_hex(payload, fmt, len(values), "t.hex").tolist() == values


def test_hex_writer_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError, match=r"layer0/u.hex: value 128 at index \(1,\) does not fit s8.4"):
        hexio.encode_hex([3, 128], FixedFormat.parse("s8.4"), "layer0/u.hex")
    with pytest.raises(ValueError, match="value -1 at index"):
        hexio.encode_hex([-1], FixedFormat.parse("u4.0"), "x.hex")


@pytest.mark.parametrize("payload, message", [
    (b"01\n02\n", "truncated: 2 words, expected 3"),
    (b"01\n02\n03\n04\n", "4 words, expected 3"),
    (b"01\n2\n03\n", "line 2: expected 2 hex digits"),
    (b"01\nzz\n03\n", "line 2: 'zz' is not a hex word"),
    (b"01\n02\n03", "line 3: expected 2 hex digits"),
])
def test_hex_reader_names_the_problem(payload, message):
    with pytest.raises(InputError, match=re.escape(message)):
        hexio.decode_hex(payload, FixedFormat.parse("s8.0"), 3, "f.hex")


def test_hex_reader_rejects_bits_above_an_odd_width():
    with pytest.raises(InputError, match="line 1: word '8' is wider than 3 bits"):
        hexio.decode_hex(b"8\n", FixedFormat.parse("s3.0"), 1, "f.hex")


def test_npz_is_deterministic_and_readable():
    arrays = {"layer0/u": np.arange(6).reshape(2, 3), "target": np.array([1, 0])}
    first, second = hexio.encode_npz(arrays), hexio.encode_npz(arrays)
    assert first == second
    back = hexio.decode_npz(first, "g.npz")
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)


# ----------------------------------------------------------------------------- golden


def test_golden_layout_and_manifest(small_set):
    manifest = json.loads((small_set / "manifest.json").read_text())
    assert manifest["schema"] == "stllr-rtl-golden/2"
    assert manifest["samples"] == 2 and manifest["steps"] == 6 and manifest["window"] == 3
    assert manifest["update"] == "online" and manifest["write_steps"] == [3, 4, 5]
    by_key = {e["npz_key"]: e for e in manifest["files"]}
    for key in ("input", "current", "u", "spikes", "membrane", "psi", "post_trace", "pre_trace", "bias_trace",
                "learning_signal", "causal", "noncausal", "acc_weight", "acc_bias", "weight", "weight_next",
                "weight_lanes", "weight_lanes_next", "bias", "bias_next", "bias_lanes", "bias_lanes_next"):
        assert f"layer0/{key}" in by_key, key
    assert "layer1/error" in by_key and "target" in by_key
    u = by_key["layer0/u"]
    assert u["dims"] == ["sample", "step", "out"] and u["shape"] == [2, 6, 8]
    assert u["format"]["text"] == "s12.6" and u["digits"] == 3
    assert by_key["layer0/acc_weight"]["dims"] == ["sample", "window_step", "out", "in"]
    assert by_key["layer0/weight_next"]["shape"] == [2, 3, 8, 12]  # online: one write per window step
    assert by_key["layer0/weight_lanes"]["format"]["text"] == "u32.0"
    for entry in manifest["files"]:  # every listed file exists with the listed hash and word count
        payload = (small_set / entry["path"]).read_bytes()
        assert hexio.sha256(payload) == entry["sha256"]
        assert payload.count(b"\n") == entry["words"] == int(np.prod(entry["shape"]))
    vs = load_vectors(small_set)
    with np.load(small_set / "golden.npz") as archive:
        assert sorted(archive.files) == sorted(vs.arrays)
        assert np.array_equal(archive["layer0/u"], vs.arrays["layer0/u"])


def test_golden_values_are_the_integer_models_log(small_set):
    """Independent of the collector: re-run IntNetwork.run(log=True) and compare a few tensors."""
    vs = load_vectors(small_set)
    config = load_config(W4)
    model, _ = build_model(config)
    x = vs.arrays["layer0/input"].astype(np.float64)
    y = vs.arrays["target"]
    assert np.array_equal(model.params.layers[0].weight, vs.arrays["layer0/weight"][0, 0])
    for s in range(2):
        result = model.run(x[s:s + 1], y[s:s + 1], train=True, log=True)
        for t in range(6):
            assert np.array_equal(result.log[(t, "layer0", "u")][0], vs.arrays["layer0/u"][s, t])
            assert np.array_equal(result.log[(t, "layer0", "membrane")][0], vs.arrays["layer0/membrane"][s, t])
        for w, t in enumerate(range(3, 6)):
            assert np.array_equal(result.log[(t, "layer0", "acc_weight")], vs.arrays["layer0/acc_weight"][s, w])
            assert np.array_equal(result.log[(t, "layer0", "new_weight")], vs.arrays["layer0/weight_next"][s, w])
    # the last lanes of the vectors are the model's lanes after the run
    from fixedpoint.network import lane_layout

    first, count = lane_layout(model.params)[(0, "weight")]
    assert np.array_equal(model.lanes[first:first + count], vs.arrays["layer0/weight_lanes_next"][-1, -1].ravel())


def test_golden_is_byte_identical_across_processes(tmp_path, capsys, small_set):
    """Same config and seed in a fresh interpreter: every file has the same bytes."""
    out = tmp_path / "again"
    code = subprocess.run([sys.executable, "-m", "rtl_export.cli", "golden", "--net", str(W4), "--samples", "2",
                           "--steps", "6", "--random-density", "0.5", "--seed", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert code.returncode == 0, code.stderr
    names = sorted(p.relative_to(small_set) for p in small_set.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for name in names:
        assert (small_set / name).read_bytes() == (out / name).read_bytes(), name


def test_golden_from_data_section(tmp_path, capsys):
    """Without --random-density the first N test samples of the config's data section are used."""
    config = yaml.safe_load(W4.read_text())
    config["network"]["input_shape"] = [64]
    config["network"]["layers"][-1]["size"] = 10
    config["quant"]["input"] = "u8.0"
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "set"
    code, stdout, err = _run(capsys, "golden", "--net", path, "--samples", 2, "--steps", 4, "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"] == {"source": "data", "split": "test", "first": 2, "kind": "digits"}
    from stllr.data import load_data

    _, test = load_data(load_config(path).data)
    vs = load_vectors(out)
    assert np.array_equal(vs.arrays["layer0/input"], test.x[:2, :4].reshape(2, 4, -1))
    assert np.array_equal(vs.arrays["target"], test.y[:2])
    code, stdout, err = _run(capsys, "verify", out)  # u8.0 counts round-trip through the re-run
    assert code == 0, err


def test_verify_ok(capsys, small_set):
    code, out, err = _run(capsys, "verify", small_set)
    assert code == 0, err
    assert out.startswith("ok:") and "integer model re-run matches" in out


def test_verify_reports_first_model_mismatch(tmp_path, capsys, small_set):
    """Sound files (valid hashes) with one different number: exit 1 naming layer, step, index."""
    root = _copy(small_set, tmp_path / "set")
    path = "layer0/acc_weight.hex"
    lines = (root / path).read_text().splitlines()
    index = (1 * 3 + 2) * 96 + 5 * 12 + 7  # sample 1, window step 2 (t = 5), out 5, in 7
    lines[index] = f"{(int(lines[index], 16) + 1) & 0xff:02x}"
    _reseal(root, path, ("\n".join(lines) + "\n").encode())
    code, out, err = _run(capsys, "verify", root)
    assert code == 1
    assert "mismatch: layer0/acc_weight.hex: sample 1 step 5 index (5, 7)" in err


def test_verify_bad_inputs_exit_2_with_one_line(tmp_path, capsys, small_set):
    cases = {}
    root = _copy(small_set, tmp_path / "hash")
    data = (root / "layer0/u.hex").read_bytes()
    (root / "layer0/u.hex").write_bytes(data[:4] + (b"0" if data[4:5] != b"0" else b"1") + data[5:])
    cases[root] = "layer0/u.hex: sha256 mismatch"
    root = _copy(small_set, tmp_path / "trunc")
    short = b"".join((root / "layer0/psi.hex").read_bytes().splitlines(True)[:-3])
    (root / "layer0/psi.hex").write_bytes(short)
    manifest = json.loads((root / "manifest.json").read_text())
    next(e for e in manifest["files"] if e["path"] == "layer0/psi.hex")["sha256"] = hexio.sha256(short)
    (root / "manifest.json").write_text(json.dumps(manifest))  # the hash is right, the file is short
    cases[root] = "layer0/psi.hex: truncated: 93 words, expected 96"
    root = _copy(small_set, tmp_path / "wide")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"][2]["format"]["bits"] = 40
    (root / "manifest.json").write_text(json.dumps(manifest))
    cases[root] = "files[2] (layer0/u.hex).format.bits = 40 is wider than the RTL supports (32 bits)"
    root = _copy(small_set, tmp_path / "frac")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"][2]["format"].update(frac=5, text="s12.5")  # consistent, but not the config's
    (root / "manifest.json").write_text(json.dumps(manifest))
    cases[root] = "layer0/u.hex.format = s12.5 but the config's model stores it as s12.6"
    root = _copy(small_set, tmp_path / "text")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"][2]["format"]["frac"] = 5  # the text still says s12.6
    (root / "manifest.json").write_text(json.dumps(manifest))
    cases[root] = "files[2] (layer0/u.hex).format: text = 's12.6' does not match signed/bits/frac (s12.5)"
    root = _copy(small_set, tmp_path / "gone")
    (root / "layer0/psi.hex").unlink()
    cases[root] = "layer0/psi.hex: file listed in the manifest is missing"
    root = _copy(small_set, tmp_path / "json")
    (root / "manifest.json").write_text("{")
    cases[root] = "manifest.json: not valid JSON"
    cases[tmp_path / "nothing"] = "nothing: not a directory"
    for root, message in cases.items():
        code, out, err = _run(capsys, "verify", root)
        assert code == 2, (root, out, err)
        assert message in err, (message, err)
        assert err.count("\n") == 1 and err.startswith("rtl-export: error: ")


def test_checkpoint_of_another_network_is_rejected(tmp_path, capsys):
    config = load_config(W4)
    other = yaml.safe_load(W4.read_text())
    other["network"]["layers"][0]["size"] = 9
    from core.config import parse_config
    from stllr.train import build_network

    ckpt = tmp_path / "checkpoint.pt"
    other_config = parse_config(other)
    torch.save({"model": build_network(other_config).state_dict(), "config": config_to_dict(other_config)}, ckpt)
    for command in (["golden", "--samples", 1, "--steps", 4, "--random-density", 0.5],
                    ["params"]):
        out = tmp_path / command[0]
        code, _, err = _run(capsys, command[0], "--net", W4, "--checkpoint", ckpt, *command[1:], "--out", out)
        assert code == 2
        assert f"{ckpt}: checkpoint was trained for a different network" in err
        assert not out.exists()
    # the right checkpoint is used (and its hash recorded)
    good = tmp_path / "good.pt"
    net = build_network(config)
    with torch.no_grad():
        net.layers[0].weight.mul_(0.5)
    torch.save({"model": net.state_dict(), "config": config_to_dict(config)}, good)
    out = tmp_path / "from_ckpt"
    code, _, err = _run(capsys, "golden", "--net", W4, "--checkpoint", good, "--samples", 1, "--steps", 4,
                        "--random-density", 0.5, "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["weights"] == "checkpoint"
    code, stdout, _ = _run(capsys, "verify", out)
    assert code == 0 and "initial weights taken from the vectors" in stdout
    code, stdout, err = _run(capsys, "verify", out, "--checkpoint", good)
    assert code == 0, err
    # another file is refused by its hash, before it is unpickled
    code, _, err = _run(capsys, "verify", out, "--checkpoint", ckpt)
    assert code == 2 and f"{ckpt}: not the checkpoint these vectors were made from (sha256 differs)" in err


@pytest.mark.parametrize("argv, message", [
    (["--samples", 0, "--steps", 4, "--random-density", 0.5], "--samples = 0 must be > 0"),
    (["--samples", 1, "--steps", 2, "--random-density", 0.5], "learning.window = 3 exceeds the number of time steps"),
    (["--samples", 1, "--steps", 4, "--random-density", 1.5], "--random-density = 1.5 must lie in [0, 1]"),
    (["--samples", 1, "--steps", 4], "network.input_shape = [12] does not match data.test"),
])
def test_golden_bad_arguments(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code, _, err = _run(capsys, "golden", "--net", W4, *argv, "--out", out)
    assert code == 2 and message in err, err
    assert not out.exists()


def test_output_directory_rules(tmp_path, capsys, monkeypatch):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    code, _, err = _run(capsys, "params", "--net", W4, "--out", full)
    assert code == 2 and "output folder exists and is not empty" in err
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    # a failure while writing leaves neither the target nor a temporary directory
    import rtl_export.outdir as outdir

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(outdir.os, "fsync", boom)
    code, _, err = _run(capsys, "params", "--net", W4, "--out", tmp_path / "half")
    assert code == 2 and err == f"rtl-export: error: --out {tmp_path / 'half'}: cannot write it (disk full)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    # the Python API still raises an OSError (an InputError too)
    with pytest.raises(OSError, match="cannot write it"):
        export_params(load_config(W4), config_to_dict(load_config(W4)), tmp_path / "half")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def _golden_of_variant(tmp_path, capsys, samples: int, train: dict, loss: str | None = None,
                       momentum: str | None = None):
    """(folder, vector set) of ``rtl-export golden`` on the 4/12-bit config with ``train``
    updated (and the loss / momentum format set): random input, 6 steps."""
    config = yaml.safe_load(W4.read_text())
    config["train"].update(train)
    if loss is not None:
        config["learning"]["loss"] = loss
    if momentum is not None:
        config["quant"]["momentum"] = momentum
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "set"
    code, _, err = _run(capsys, "golden", "--net", path, "--out", out, "--samples", str(samples), "--steps", "6",
                        "--random-density", "0.5")
    assert code == 0, err
    return out, load_vectors(out)


def test_golden_covers_the_softmax_error_and_lion(tmp_path, capsys):
    """loss ce + optimizer lion: the set holds p = integer softmax(y) and the momentum words,
    p agrees with float softmax of the logged y to the table's error, verify re-runs it bit
    for bit, and one changed momentum word is a mismatch (exit 1) naming the file."""
    out, vs = _golden_of_variant(tmp_path, capsys, 3, loss="ce", momentum="s12.6",
                                 train={"optimizer": "lion", "betas": [0.75, 0.9375], "lr": 2.0 ** -7})
    y = vs.arrays["layer1/u"][:, 3:] / 2.0 ** 6  # the window steps of the readout (membrane s12.6)
    p = vs.arrays["layer1/softmax"] / 2.0 ** 15
    expected = np.exp(y - y.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    assert np.abs(p - expected).max() < 4e-3
    momentum = vs.arrays["layer1/momentum_weight_next"]
    assert momentum.any() and not vs.arrays["layer1/momentum_weight"][0, 0].any()
    assert np.array_equal(vs.arrays["layer1/momentum_weight"][1:, 0], momentum[:-1, -1])  # carried over
    code, stdout, err = _run(capsys, "verify", out)
    assert code == 0, err
    name = "layer1/momentum_weight_next.hex"
    lines = (out / name).read_text().splitlines()
    lines[7] = format((int(lines[7], 16) + 1) & 0xfff, "03x")
    _reseal(out, name, ("\n".join(lines) + "\n").encode())
    code, _, err = _run(capsys, "verify", out)
    assert code == 1 and f"mismatch: {name}" in err


def test_golden_covers_signum_carried_accumulator(tmp_path, capsys):
    """signum: the write decays the accumulator (acc - (acc >> 1) here) and carries it into the
    next window step; the set holds it and verify re-runs it bit for bit."""
    out, vs = _golden_of_variant(tmp_path, capsys, 2,
                                 train={"optimizer": "signum", "betas": [0.5], "lr": 2.0 ** -7})
    carried, acc = vs.arrays["layer0/acc_weight_carried"], vs.arrays["layer0/acc_weight"]
    # online: a write after every window step leaves acc - floor(acc / 2) (update s8.4 floor, beta 0.5)
    assert np.array_equal(carried, acc - (acc >> 1))
    assert carried.any()
    code, _, err = _run(capsys, "verify", out)
    assert code == 0, err


# ----------------------------------------------------------------------------- params


def _sv_values(text: str, package: str) -> dict:
    body = text.split(f"package {package};", 1)[1].split("endpackage", 1)[0]
    out = {}
    for name, value in re.findall(r"localparam (?:integer|logic signed \[63:0\]) (\w+) = ([^;]+);", body):
        value = value.replace("64'sd", "")
        out[name] = -int(value[1:]) if value.startswith("-") else int(value)
    for name, value in re.findall(r'localparam (\w+) = "([^"]*)";', body):
        out[name] = value
    return out


def _c_values(text: str, prefix: str) -> dict:
    out = {}
    for name, value in re.findall(rf"#define {prefix}(\w+) (.+?)(?:  /\*|$)", text, re.M):
        value = value.strip()
        if value.startswith('"'):
            out[name] = value.strip('"')
        else:
            number = re.sub(r"[()]|INT64_C", "", value)
            out[name] = int(number.replace("- ", "-"))
    return out


@pytest.fixture(scope="module")
def params_w8(tmp_path_factory):
    out = tmp_path_factory.mktemp("params") / "p"
    code = main(["params", "--net", str(W8), "--out", str(out), "--steps", "8"])
    assert code == 0
    return out


def test_params_sv_and_c_hold_the_models_values(params_w8):
    sv = (params_w8 / "stllr_params.sv").read_text()
    c = (params_w8 / "stllr_params.h").read_text()
    config = load_config(W8)
    model, _ = build_model(config)
    lp = model.params.layers[0]
    values = _sv_values(sv, "stllr_layer0_pkg")
    assert values == _c_values(c, "STLLR_L0_")
    assert _sv_values(sv, "stllr_net_pkg") == _c_values(c, "STLLR_NET_")
    f = lp.fmts
    assert (values["WEIGHT_BITS"], values["WEIGHT_FRAC"], values["WEIGHT_SIGNED"]) == (8, 6, 1)
    assert values["WEIGHT_ROUND"] == 0 and values["UPDATE_BITS"] == f.update.bits == 8  # per-layer override s8.8
    for tensor in ("membrane", "pre_trace", "post_trace", "psi", "learning_signal", "modulation", "update"):
        fmt = getattr(f, tensor)
        assert (values[f"{tensor.upper()}_BITS"], values[f"{tensor.upper()}_FRAC"]) == (fmt.bits, fmt.frac)
    const = lp.const
    for name in ("beta", "theta", "lambda_pre", "lambda_post", "alpha_pre", "alpha_post", "psi_width", "psi_slope"):
        assert values[name.upper()] == getattr(const, name), name
    assert values["ALPHA_POST"] < 0 and values["ETA"] == model.etas(1, 3)[0]
    assert values["RESET_HARD"] == 0 and values["PSI_TRIANGLE"] == 1 and values["RTL_SUPPORTED"] == 1
    assert _sv_values(sv, "stllr_layer1_pkg")["RTL_SUPPORTED"] == 0  # the readout
    for p in layer_shifts(lp):
        assert values[p.name] == p.value
    weights = hexio.decode_hex((params_w8 / "layer0_weight.hex").read_bytes(), f.weight, lp.weight.size, "w")
    assert np.array_equal(weights.reshape(lp.weight.shape), lp.weight)


def test_params_shifts_follow_the_format_table():
    """The shifts of the default formats are those of docs/fixedpoint_model.md section 3."""
    from core.quant import QuantConfig
    from core.config import LearningConfig, NetworkConfig
    from stllr.network import SpikingNetwork
    from fixedpoint.network import IntNetwork

    torch.manual_seed(0)
    net = SpikingNetwork(NetworkConfig(input_shape=[4], layers=[{"kind": "linear", "size": 3},
                                                                {"kind": "readout", "size": 2}]),
                         LearningConfig(loss="mse"))
    model = IntNetwork.from_float(net, QuantConfig(input="u1.0"))
    sh = {p.name: p.value for p in layer_shifts(model.params.layers[0])}
    # table rows 3 (membrane: round 12), 6a (triangle: 15), 7/8 (traces: 11), 12/12' (8; 7 / 12),
    # 13 (eligibility: 2), 15 (weight write: 34)
    assert (sh["SH_MEM"], sh["SH_PSI_TRI"], sh["SH_Q"], sh["SH_P"]) == (12, 15, 11, 11)
    assert (sh["SH_A"], sh["SH_M"], sh["SH_N"], sh["SH_U"], sh["SH_WW"]) == (8, 7, 12, 2, 34)


def test_params_export_the_segmented_psi_lut(tmp_path, capsys):
    """W4 with its uniform table (kind 0, RTL supported), then with a segmented one: kind 1,
    its mantissa bits, the table words, and RTL_SUPPORTED = 0 naming the table."""
    config = load_config(W4)
    data = config_to_dict(config)
    for lut, kind, mantissa, supported in ((None, 0, 0, 1),
                                           ({"kind": "segmented", "entries": 24, "mantissa_bits": 2}, 1, 2, 0)):
        if lut is not None:
            data["quant"]["psi_lut"] = lut
        path = tmp_path / f"net{kind}.yaml"
        path.write_text(yaml.safe_dump(data))
        out = tmp_path / f"p{kind}"
        code, _, err = _run(capsys, "params", "--net", path, "--out", out, "--steps", 8)
        assert code == 0, err
        model, _ = build_model(load_config(path))
        lp = model.params.layers[0]
        sv = (out / "stllr_params.sv").read_text()
        values = _sv_values(sv, "stllr_layer0_pkg")
        assert (values["PSI_LUT_KIND"], values["PSI_LUT_MANTISSA"]) == (kind, mantissa)
        assert (values["PSI_LUT_ENTRIES"], values["RTL_SUPPORTED"]) == (lp.fmts.psi_lut.entries, supported)
        assert values["PSI_LUT_ENTRIES"] == (16 if kind == 0 else 24)
        lut_words = hexio.decode_hex((out / "layer0_psi_lut.hex").read_bytes(), lp.fmts.psi,
                                     values["PSI_LUT_ENTRIES"], "lut")
        assert np.array_equal(lut_words, lp.const.psi_lut)
        if kind == 1:
            assert "psi_lut kind segmented" in sv


def test_params_c_header_compiles_with_the_same_values(params_w8, tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (apt-get install -y gcc)")
    names = ["N_IN", "N_OUT", "WEIGHT_BITS", "THETA", "ALPHA_POST", "ETA", "SH_WW", "DW"]
    src = tmp_path / "main.c"
    src.write_text(f'#include <stdio.h>\n#include <inttypes.h>\n#include "{params_w8}/stllr_params.h"\n'
                   "int main(void) {\n"
                   + "".join(f'  printf("%" PRId64 "\\n", (int64_t)(STLLR_L0_{n}));\n' for n in names)
                   + '  printf("%s\\n", STLLR_L0_WEIGHT_FILE);\n  return 0;\n}\n')
    subprocess.run([compiler, "-std=c99", "-Wall", "-Werror", "-o", str(tmp_path / "main"), str(src)], check=True)
    lines = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout.split()
    values = _sv_values((params_w8 / "stllr_params.sv").read_text(), "stllr_layer0_pkg")
    assert [int(v) for v in lines[:-1]] == [values[n] for n in names]
    assert lines[-1] == values["WEIGHT_FILE"] == "layer0_weight.hex"


def test_params_rational_lut_and_lanes(tmp_path, capsys):
    out = tmp_path / "p"
    code, _, err = _run(capsys, "params", "--net", W4, "--out", out, "--steps", 8)
    assert code == 0, err
    config = load_config(W4)
    model, _ = build_model(config)
    lp = model.params.layers[0]
    lut = hexio.decode_hex((out / "layer0_psi_lut.hex").read_bytes(), lp.fmts.psi, 16, "lut")
    assert np.array_equal(lut, lp.const.psi_lut)
    sv = (out / "stllr_params.sv").read_text()
    packed = re.search(r"localparam logic \[127:0\] PSI_LUT = \{([^}]*)\};", sv).group(1)
    words = [int(w.split("'h")[1], 16) for w in packed.split(",")]
    assert words[::-1] == lut.tolist()  # entry i at bits [i*8 +: 8]
    from fixedpoint.network import lane_layout

    first, count = lane_layout(model.params)[(0, "weight")]
    lanes = hexio.decode_hex((out / "layer0_weight_lanes.hex").read_bytes(), FixedFormat.parse("u32.0"), count, "l")
    assert np.array_equal(lanes, model.lanes[first:first + count].astype(np.int64))
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(hexio.sha256((out / e["path"]).read_bytes()) == e["sha256"] for e in manifest["files"])


def test_params_render_is_deterministic():
    config = load_config(W4)
    model, source = build_model(config)
    data = config_to_dict(config)
    assert render_params(model, data, source, 8, 3) == render_params(model, data, source, 8, 3)
    params, _ = layer_params(model, 0, 8, 3)
    assert len({p.name for p in params}) == len(params)


def test_every_rtl_parameter_is_in_the_package(params_w8):
    """rtl/stllr_layer_top.sv passes each stllr_layer parameter from the package by the same name."""
    src = (ROOT / "rtl" / "stllr_layer.v").read_text()
    plist = re.sub(r"//[^\n]*", "", src.split("module stllr_layer #(", 1)[1].split(") (", 1)[0])
    names = re.findall(r"(\w+)\s*=", plist)
    values = _sv_values((params_w8 / "stllr_params.sv").read_text(), "stllr_layer0_pkg")
    assert not [n for n in names if n not in values]
    top = (ROOT / "rtl" / "stllr_layer_top.sv").read_text()
    assert all(f".{n}({n})" in top for n in names)


def test_params_datapath_wider_than_the_rtl(tmp_path, capsys):
    """Formats whose exact weight write needs more than the RTL's 64-bit datapath: exit 2, no output."""
    config = yaml.safe_load(W4.read_text())
    config["quant"].update({"weight": "s32.30 stochastic", "update": "s32.0", "learning_rate": "u16.0"})
    config["train"]["lr"] = 3.0
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "p"
    code, _, err = _run(capsys, "params", "--net", path, "--out", out, "--steps", 8)
    assert code == 2
    assert "quant (layer 0): the RTL datapath would need 67 bits, wider than the RTL supports (64)" in err
    assert not out.exists()


# ----------------------------------------------------------------------------- hardened inputs


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("rtl-export") and ": error: " in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--samples", 10**12, "--steps", 4, "--random-density", 0.5],
     "--samples = 1000000000000 exceeds the limit 10000000"),
    (["--samples", 1, "--steps", 10**9, "--random-density", 0.5], "--steps = 1000000000 exceeds the limit 100000"),
    (["--samples", 1, "--steps", -4, "--random-density", 0.5], "--steps = -4 must be > 0"),
    (["--samples", 1, "--steps", 4, "--random-density", 0.5, "--seed", -1], "--seed = -1 must be >= 0"),
    (["--samples", 1, "--steps", 4, "--random-density", 0.5, "--seed", 2**40],
     "--seed = 1099511627776 exceeds the limit 4294967295"),
    (["--samples", 1, "--steps", 4, "--seed", -1], "--seed = -1 must be >= 0"),  # also without random input
    (["--samples", 1, "--steps", 4, "--random-density", "nan"], "--random-density = nan must lie in [0, 1]"),
    (["--samples", 1, "--steps", 4, "--random-density", "inf"], "--random-density = inf must lie in [0, 1]"),
    (["--samples", 1, "--steps", 4, "--random-density=-inf"], "--random-density = -inf must lie in [0, 1]"),
    (["--samples", 10**7, "--steps", 100, "--random-density", 0.5],
     "--samples 10000000 x --steps 100: the vector set would hold up to"),
    (["--samples", "1e3", "--steps", 4], "argument --samples: invalid int value: '1e3'"),
    (["--samples", 1, "--steps", 4, "--random-density", "-0.5"], "--random-density = -0.5 must lie in [0, 1]"),
])
def test_golden_bounds_are_refused_before_anything_is_built(tmp_path, capsys, monkeypatch, argv, message):
    """Huge, negative or non-finite flags: one line naming the flag; the model is never built."""
    import rtl_export.golden as golden_module

    def never(*args, **kwargs):
        raise AssertionError("the model was built for an out-of-bounds argument")

    monkeypatch.setattr(golden_module, "build_model", never)
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "golden", "--net", W4, *argv, "--out", out)
    assert code == 2 and message in _one_line(err), err
    assert stdout == "" and not out.exists()


def test_params_steps_bounds(tmp_path, capsys):
    for steps, message in ((10**9, "--steps = 1000000000 exceeds the limit 100000"), (0, "--steps = 0 must be > 0")):
        code, _, err = _run(capsys, "params", "--net", W4, "--out", tmp_path / "p", "--steps", steps)
        assert code == 2 and message in _one_line(err)
        assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("command", ["golden", "params"])
def test_out_that_is_a_file_under_a_file_a_full_folder_or_a_symlink(tmp_path, capsys, command):
    extra = ["--samples", 1, "--steps", 4, "--random-density", 0.5] if command == "golden" else []
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("y")
    (tmp_path / "empty").mkdir()
    os.symlink(tmp_path / "empty", tmp_path / "link")
    cases = {
        tmp_path / "file": "is a file, expected a folder",
        tmp_path / "file" / "sub": f"{tmp_path / 'file'} is a file, not a folder",
        tmp_path / "full": "output folder exists and is not empty",
        tmp_path / "link": "is a symlink, expected a folder name",
    }
    before = sorted((p.relative_to(tmp_path), p.is_file() and p.read_text()) for p in tmp_path.rglob("*"))
    for out, message in cases.items():
        code, _, err = _run(capsys, command, "--net", W4, *extra, "--out", out)
        assert code == 2 and f"--out {out}: {message}" in _one_line(err), err
    assert sorted((p.relative_to(tmp_path), p.is_file() and p.read_text()) for p in tmp_path.rglob("*")) == before
    # an existing empty folder is filled
    code, _, err = _run(capsys, command, "--net", W4, *extra, "--out", tmp_path / "empty")
    assert code == 0, err
    assert (tmp_path / "empty" / "manifest.json").is_file()


@pytest.fixture(scope="module")
def w8_set(tmp_path_factory) -> tuple[Path, str]:
    """The 8/16-bit RTL case, 3 samples x 8 steps (it saturates), and what golden printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("w8") / "set"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["golden", "--net", str(W8), "--samples", "3", "--steps", "8", "--random-density", "0.5",
                     "--seed", "1", "--out", str(out)])
    assert code == 0
    return out, stdout.getvalue()


def test_golden_overflow_is_recorded_and_printed(w8_set):
    """The w8_m16 case saturates its s8.8 layer-0 accumulator: counted in the manifest and on screen."""
    from core.overflow import OverflowCounter

    out, stdout = w8_set
    assert "overflow: 70 values saturated or wrapped" in stdout
    assert "  layer0.update: 59 of 864 (s8.8 nearest_even saturate)" in stdout
    assert "  layer1.update: 11 of 216 (s12.8 nearest_even saturate)" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    rows = {r["tensor"]: r for r in manifest["overflow"]["tensors"]}
    assert manifest["overflow"]["total"] == 70
    assert rows["layer0.update"] == {"tensor": "layer0.update", "format": "s8.8 nearest_even saturate",
                                     "events": 59, "elements": 864}
    # independent count: the integer model's own counter over the same samples, one at a time
    vs = load_vectors(out)
    model, _ = build_model(load_config(W8))
    model.overflow = OverflowCounter()
    x, y = vs.arrays["layer0/input"].astype(np.float64), vs.arrays["target"]
    for s in range(3):
        model.run(x[s:s + 1], y[s:s + 1], train=True)
    assert [[r["tensor"], r["format"], r["events"], r["elements"]] for r in manifest["overflow"]["tensors"]] \
        == [list(row) for row in model.overflow.rows()]


def test_verify_compares_the_overflow_counts(w8_set, tmp_path, capsys):
    out, _ = w8_set
    code, stdout, err = _run(capsys, "verify", out)
    assert code == 0, err
    assert "overflow: 70 values saturated or wrapped, as the manifest records" in stdout
    # the per-tensor count edited (and the total with it): every value still matches, the count does not
    root = _copy(out, tmp_path / "events")
    manifest = json.loads((root / "manifest.json").read_text())
    n = next(i for i, r in enumerate(manifest["overflow"]["tensors"]) if r["tensor"] == "layer0.update")
    manifest["overflow"]["tensors"][n]["events"] = 58
    manifest["overflow"]["total"] = 69
    (root / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _run(capsys, "verify", root)
    assert code == 2
    assert f"manifest.json: overflow.tensors[{n}] (layer0.update).events = 58 but the integer model re-run gives 59" \
        in _one_line(err)
    # the total alone: the manifest contradicts itself
    root = _copy(out, tmp_path / "total")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["overflow"]["total"] = 0
    (root / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _run(capsys, "verify", root)
    assert code == 2 and "overflow: total = 0 is not the sum of the tensors' events (70)" in _one_line(err)


def test_raise_policy_is_one_line_in_golden_and_verify(w8_set, tmp_path, capsys):
    config = yaml.safe_load(W8.read_text())
    config["quant"]["layers"] = {0: {"update": "s8.8 raise"}}
    path = tmp_path / "raise.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "g"
    code, stdout, err = _run(capsys, "golden", "--net", path, "--samples", 3, "--steps", 8, "--random-density", 0.5,
                             "--seed", 1, "--out", out)
    assert code == 2 and not out.exists() and stdout == ""
    assert re.search(r"overflow in layer0\.update at step \d+, index \(\d+, \d+\): value -?\d+ outside s8\.8",
                     _one_line(err)) and "(overflow policy 'raise' in quant)" in err
    # a set whose manifest now says 'raise': the re-run stops with the same line
    root = _copy(w8_set[0], tmp_path / "set")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["config"]["quant"]["layers"]["0"]["update"]["overflow"] = "raise"
    (root / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in root.rglob("*"))
    code, _, err = _run(capsys, "verify", root)
    assert code == 2 and "overflow in layer0.update" in _one_line(err) and "'raise'" in err
    assert sorted(p.name for p in root.rglob("*")) == before


class _Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model": _Payload(marker), "config": {}}, path)
    return path


def test_crafted_checkpoint_is_refused_by_every_command(tmp_path, capsys, small_set):
    """golden, params and verify --checkpoint: a .pt whose pickle would run code is refused
    with one line, the command never runs and nothing is written."""
    marker = tmp_path / "MARKER"
    evil = _crafted_checkpoint(tmp_path / "evil.pt", marker)
    for command, extra in (("golden", ["--samples", 1, "--steps", 4, "--random-density", 0.5]), ("params", [])):
        out = tmp_path / command
        code, stdout, err = _run(capsys, command, "--net", W4, "--checkpoint", evil, *extra, "--out", out)
        assert code == 2 and f"{evil}:" in _one_line(err), err
        assert not out.exists() and not marker.exists() and stdout == ""
    # verify compares the hash first: a set that claims this very file must still not run it
    root = _copy(small_set, tmp_path / "set")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["source"] = {"weights": "checkpoint", "seed": manifest["source"]["seed"],
                          "checkpoint_sha256": hexio.sha256(evil.read_bytes())}
    (root / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in root.rglob("*"))
    code, _, err = _run(capsys, "verify", root, "--checkpoint", evil)
    assert code == 2 and f"{evil}:" in _one_line(err), err
    assert not marker.exists() and sorted(p.name for p in root.rglob("*")) == before


@pytest.mark.parametrize("field, change, message", [
    ("digits", 1, ").digits = 2 does not match 1 bits"), ("words", -1, ").words = "),
    ("shape", None, ").words = ")])
def test_manifest_entry_consistency_checks(tmp_path, capsys, field, change, message):
    """digits vs the format's bits, words vs the shape: each edit alone is refused by name."""
    out = tmp_path / "set"
    assert _run(capsys, "golden", "--net", W4, "--samples", 1, "--steps", 4, "--random-density", 0.5,
                "--out", out)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["files"][0]
    if field == "shape":
        entry["shape"][0] += 1
    else:
        entry[field] += change
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _run(capsys, "verify", out)
    assert code == 2 and message in err, err
