"""Reference RTL (rtl/stllr_layer.v) against golden vectors, in two independent simulators.

Cases (rtl/configs/): 8-bit weights / 16-bit states (soft reset, triangle Psi, floor write,
batch update, saturating accumulator), 4-bit weights / 12-bit states (hard reset, rational
Psi LUT, stochastic write, online update, exact bias, leak shift, wrapping accumulator),
and the project's default formats (no bias, alpha_post = 0). All with k = 3 or 4 < T = 8.

* Icarus + cocotb: every record of every step compared bit for bit (rtl/cocotb_stllr_layer.py);
* Verilator: the self-checking $readmemh testbench (rtl/tb_stllr_layer.sv) built with
  ``verilator --binary``; it also has to FAIL on a changed word and on a short file;
* ``verilator --lint-only -Wall`` clean; Yosys ``synth; check -assert`` (narrowest case).

A missing tool skips its tests with the install command. Cycles simulated and wall times
go to the test output and to runs/rtl_sim/<test>.json.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtl_export import hexio
from rtl_export.golden import golden
from rtl_export.model import build_model
from rtl_export.params import export_params, parameter_values
from rtl_export.sim import (
    SimError,
    lint_verilator,
    missing,
    package_values,
    run_icarus,
    run_verilator,
    run_yosys,
)
from core.config import config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "rtl" / "configs"
SAMPLES, STEPS, DENSITY = 3, 8, 0.5
CASES = ("w8_m16", "w4_m12", "defaults")
RESULTS = ROOT / "runs" / "rtl_sim"


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """name -> (golden dir, params dir, parameter values of layer 0), built on first use."""
    built = {}

    def get(name: str):
        if name not in built:
            path = CONFIGS / f"layer_{name}.yaml"
            config = load_config(path)
            data = config_to_dict(config)
            root = tmp_path_factory.mktemp(name)
            golden(config, data, root / "golden", SAMPLES, STEPS, density=DENSITY, seed=1)
            export_params(config, data, root / "params", steps=STEPS)
            model, _ = build_model(config)
            window = config.learning.window
            built[name] = (root / "golden", root / "params", parameter_values(model, 0, STEPS, window), root)
        return built[name]

    return get


def _skip_or_fail(reason: str) -> None:
    """Skip where a simulator is missing on a developer machine; CI must run them all."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs the RTL tools through make test)")
    pytest.skip(reason)


def _record(capsys, name: str, result) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = {"tool": result.tool, "cycles": result.cycles, "checks": result.checks,
            "build_s": round(result.build_s, 2), "run_s": round(result.run_s, 2)}
    info.update({k: v for k, v in result.details.items() if k in ("cells",)})
    (RESULTS / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    with capsys.disabled():
        print(f"\n[rtl] {name}: {result.line()}")


@pytest.mark.parametrize("case", CASES)
def test_icarus_cocotb_bit_exact(case, cases, tmp_path, capsys):
    reason = missing("iverilog", "cocotb")
    if reason:
        _skip_or_fail(reason)
    gold, params, _, _ = cases(case)
    result = run_icarus(gold, params, tmp_path / "icarus")
    assert result.cycles > 0 and result.checks > 1000
    by_kind = result.details["by_kind"]
    assert by_kind["weight_write"] > 0 and by_kind["accumulator"] > 0 and by_kind["neuron"] > 0
    _record(capsys, f"icarus_{case}", result)


def test_icarus_cocotb_detects_a_changed_value(cases, tmp_path):
    """The cocotb bench compares with the vectors: one changed accumulator word must fail."""
    reason = missing("iverilog", "cocotb")
    if reason:
        _skip_or_fail(reason)
    gold, params, _, _ = cases("w4_m12")
    copy = tmp_path / "golden"
    shutil.copytree(gold, copy)
    with np.load(copy / "golden.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["layer0/acc_weight"][1, 2, 3, 4] ^= 1
    (copy / "golden.npz").write_bytes(hexio.encode_npz(arrays))
    with pytest.raises(SimError, match=r"layer0/acc_weight sample 1 step 7 index \(3, 4\): rtl") as failed:
        run_icarus(copy, params, tmp_path / "icarus")
    # the bench also makes the simulator's exit status say so, not only results.xml
    assert "RTL differs from the vectors (simulator exit 1)" in str(failed.value)


@pytest.mark.parametrize("case", CASES)
def test_verilator_testbench_bit_exact(case, cases, tmp_path, capsys):
    reason = missing("verilator")
    if reason:
        _skip_or_fail(reason)
    gold, params, _, _ = cases(case)
    copy = tmp_path / "golden"  # the testbench reads its files at run time: give it its own copy
    shutil.copytree(gold, copy)
    result = run_verilator(copy, params, tmp_path / "verilator")
    assert result.cycles > 0 and result.checks > 1000
    _record(capsys, f"verilator_{case}", result)
    if case != "w4_m12":
        return
    # the same binary must fail on a changed word and on a short file ($readmemh would not)
    binary = tmp_path / "verilator" / "obj" / "Vtb_stllr_layer"
    import subprocess

    hexfile = copy / "layer0" / "weight_next.hex"
    original = hexfile.read_bytes()
    lines = original.splitlines(True)
    lines[17] = b"%x\n" % ((int(lines[17], 16) + 1) & 0xF)
    hexfile.write_bytes(b"".join(lines))
    proc = subprocess.run([str(binary)], cwd=params, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert "MISMATCH weight_next sample 0 step 5 index 17" in out and "TB FAIL" in out
    assert proc.returncode != 0  # $fatal: a mismatch is a failing exit status, not only text
    hexfile.write_bytes(b"".join(original.splitlines(True)[:-1]))
    proc = subprocess.run([str(binary)], cwd=params, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "weight_next.hex: 863 words, expected 864" in proc.stdout + proc.stderr


@pytest.mark.parametrize("case", CASES)
def test_verilator_lint_clean(case, cases):
    reason = missing("verilator")
    if reason:
        _skip_or_fail(reason)
    _, params, _, _ = cases(case)
    lint_verilator(params)


def test_verilator_lint_clean_default_parameters(tmp_path):
    reason = missing("verilator")
    if reason:
        _skip_or_fail(reason)
    import subprocess

    proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(ROOT / "rtl" / "stllr_layer.v")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_yosys_synth_check(cases, tmp_path, capsys):
    reason = missing("yosys")
    if reason:
        _skip_or_fail(reason)
    _, params, values, _ = cases("w4_m12")
    assert package_values(params) == {k: v for k, v in values.items() if k in package_values(params)}
    result = run_yosys(params, package_values(params), tmp_path / "yosys")
    assert result.details["cells"] and result.details["cells"] > 1000
    _record(capsys, "yosys_w4_m12", result)


def test_second_hidden_layer_and_cli_sim(tmp_path, capsys):
    """Layer 1 of a 3-layer network (spike input from layer 0, hard reset), through `rtl-export sim`."""
    reason = missing("iverilog", "cocotb")
    if reason:
        _skip_or_fail(reason)
    import yaml

    from rtl_export.cli import main

    config = yaml.safe_load((CONFIGS / "layer_w8_m16.yaml").read_text())
    config["network"]["layers"] = [{"kind": "linear", "size": 10}, {"kind": "linear", "size": 7, "reset": "hard"},
                                   {"kind": "readout", "size": 3, "beta": 0.9}]
    config["quant"]["layers"] = {1: {"update": "s12.6"}}
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(config))
    gold, params = tmp_path / "golden", tmp_path / "params"
    assert main(["golden", "--net", str(path), "--samples", "2", "--steps", "8", "--random-density", "0.6",
                 "--out", str(gold)]) == 0
    assert main(["params", "--net", str(path), "--steps", "8", "--out", str(params)]) == 0
    capsys.readouterr()
    code = main(["sim", str(gold), str(params), "--layer", "1", "--build", str(tmp_path / "b"), "--tools", "icarus"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("icarus+cocotb: ") and "values checked" in out
    with capsys.disabled():
        print(f"\n[rtl] icarus_layer1: {out.strip()}")
    # a pair that does not belong together is refused before simulating
    code = main(["sim", str(gold), str(params), "--layer", "2", "--tools", "icarus"])
    assert code == 2 and "layer 2: rtl/stllr_layer.v does not implement it" in capsys.readouterr().err


def _reseal_word(root: Path, key: str, line: int) -> None:
    """Change word ``line`` of KEY.hex and write npz and manifest hashes to match: a sound set
    (verify's file checks pass) whose expected value the RTL will not produce."""
    from core.formats import FixedFormat

    manifest = json.loads((root / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["npz_key"] == key)
    path = root / entry["path"]
    words = path.read_bytes().splitlines()
    words[line] = b"%0*x" % (len(words[line]), (int(words[line], 16) + 1) % (16 ** len(words[line])))
    path.write_bytes(b"\n".join(words) + b"\n")
    fmt = FixedFormat(signed=entry["format"]["signed"], bits=entry["format"]["bits"], frac=entry["format"]["frac"])
    entry["sha256"] = hexio.sha256(path.read_bytes())
    with np.load(root / "golden.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays[key] = hexio.decode_hex(path.read_bytes(), fmt, entry["words"], str(path)).reshape(entry["shape"])
    (root / "golden.npz").write_bytes(hexio.encode_npz(arrays))
    manifest["npz"]["sha256"] = hexio.sha256((root / "golden.npz").read_bytes())
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def test_icarus_runs_the_self_checking_testbench_with_a_failing_exit(cases, tmp_path):
    """rtl/tb_stllr_layer.sv under Icarus 11: exit 0 and TB PASS, or $fatal: exit 1 and TB FAIL."""
    reason = missing("iverilog")
    if reason:
        _skip_or_fail(reason)
    import subprocess

    gold, params, _, _ = cases("w8_m16")
    copy = tmp_path / "golden"
    shutil.copytree(gold, copy)
    binary = tmp_path / "tb.vvp"
    subprocess.run(["iverilog", "-g2012", "-DSTLLR_PKG=stllr_layer0_pkg", f"-Ptb_stllr_layer.SAMPLES={SAMPLES}",
                    f'-Ptb_stllr_layer.GOLD="{copy / "layer0"}/"', "-o", str(binary), str(params / "stllr_params.sv"),
                    str(ROOT / "rtl" / "stllr_layer.v"), str(ROOT / "rtl" / "stllr_layer_top.sv"),
                    str(ROOT / "rtl" / "tb_stllr_layer.sv")], check=True, cwd=params, capture_output=True)
    proc = subprocess.run(["vvp", "-n", str(binary)], cwd=params, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "TB PASS cycles=4665 checks=3048" in proc.stdout, proc.stdout[-2000:]
    _reseal_word(copy, "layer0/weight_next", 17)
    proc = subprocess.run(["vvp", "-n", str(binary)], cwd=params, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "MISMATCH weight_next sample 0 step 7 index 17" in proc.stdout and "TB FAIL errors=1" in proc.stdout


@pytest.mark.parametrize("tool, needs", [("icarus", ("iverilog", "cocotb")), ("verilator", ("verilator",))])
def test_cli_sim_exits_1_on_one_corrupted_expected_word(cases, tmp_path, capsys, tool, needs):
    """`rtl-export sim` with one changed expected word (a sound, resealed set): exit 1, naming the value."""
    reason = missing(*needs)
    if reason:
        _skip_or_fail(reason)
    from rtl_export.cli import main

    gold, params, _, _ = cases("w4_m12")
    copy = tmp_path / "golden"
    shutil.copytree(gold, copy)
    _reseal_word(copy, "layer0/acc_weight", 5)
    capsys.readouterr()
    code = main(["sim", str(copy), str(params), "--tools", tool, "--build", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1, err
    if tool == "icarus":
        assert "RTL differs from the vectors (simulator exit 1)" in err
        assert "layer0/acc_weight sample 0 step 5 index (0, 5): rtl" in err
    else:  # $fatal: the binary's exit status fails the run, the output names the word
        assert "verilator testbench failed (exit" in err
        assert "MISMATCH acc_weight sample 0 step 5 index 5" in err and "TB FAIL errors=1" in err
