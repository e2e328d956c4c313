"""Run the reference RTL against a vector set: Icarus (cocotb), Verilator, Yosys.

``golden`` is a vector set (``rtl-export golden``), ``params`` the parameter export of
the same config and weights (``rtl-export params``). Simulations run with the params
directory as working directory, so the RTL's ``$readmemh`` file names resolve there.

* :func:`run_icarus`    cocotb 2.x + Icarus: ``rtl/cocotb_stllr_layer.py`` on ``stllr_layer_top``;
* :func:`run_verilator` ``verilator --binary`` of ``rtl/tb_stllr_layer.sv`` (self-checking,
  ``$readmemh`` + line counts), then runs it;
* :func:`lint_verilator` ``verilator --lint-only -Wall`` of the package, the layer and the wrapper;
* :func:`run_yosys`     ``synth -top stllr_layer; check -assert`` with the package's values
  (:func:`package_values` reads them back from ``stllr_params.sv``).

:func:`simulate_all` (``rtl-export sim``) first checks that the two directories belong
together (same config, T, k and initial weights), then runs what is installed. Each returns a :class:`SimResult` (cycles, values checked, wall times) or raises
:class:`SimError` with the tool's output tail. :func:`missing` says which tool is absent
and how to install it (tests skip with that message).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RTL = Path(__file__).resolve().parents[1] / "rtl"
LAYER_V = RTL / "stllr_layer.v"
TOP_SV = RTL / "stllr_layer_top.sv"
TB_SV = RTL / "tb_stllr_layer.sv"
PKG_SV = "stllr_params.sv"
TOOLS = ("icarus", "verilator", "lint", "yosys")
INSTALL = {
    "iverilog": "apt-get update && apt-get install -y iverilog (Icarus Verilog >= 11)",
    "verilator": "apt-get update && apt-get install -y verilator (Verilator >= 5.0)",
    "yosys": "apt-get update && apt-get install -y yosys",
    "cocotb": "pip install cocotb==2.1.0 (or pip install -e '.[test]')",
}


class SimError(RuntimeError):
    """A simulator, linter or synthesis run failed; the message holds the output tail."""


@dataclass
class SimResult:
    tool: str
    cycles: int = 0
    checks: int = 0
    build_s: float = 0.0
    run_s: float = 0.0
    details: dict = field(default_factory=dict)

    def line(self) -> str:
        extra = f"{self.cycles} cycles, {self.checks} values checked, " if self.cycles else ""
        return f"{self.tool}: {extra}build {self.build_s:.1f} s, run {self.run_s:.1f} s"


def missing(*tools: str) -> str | None:
    """None when every tool is available, else how to install the first missing one."""
    for tool in tools:
        if tool == "cocotb":
            try:
                import cocotb_tools.runner  # noqa: F401
            except ImportError:
                return f"cocotb is not installed: {INSTALL['cocotb']}"
        elif shutil.which(tool) is None:
            return f"{tool} not found on PATH: {INSTALL[tool]}"
    return None


def _run(cmd: list[str], cwd: Path, what: str, timeout: float = 600, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SimError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:3])} ...\n{out[-4000:]}")
    return out


def package_name(layer: int) -> str:
    return f"stllr_layer{layer}_pkg"


def run_icarus(golden: Path, params: Path, build: Path, layer: int = 0) -> SimResult:
    """Build stllr_layer_top with Icarus and run the cocotb replay; SimError on any mismatch."""
    from cocotb_tools.runner import get_runner

    golden, params, build = Path(golden).resolve(), Path(params).resolve(), Path(build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    runner = get_runner("icarus")
    started = time.perf_counter()
    runner.build(sources=[params / PKG_SV, LAYER_V, TOP_SV], hdl_toplevel="stllr_layer_top",
                 build_dir=build, defines={"STLLR_PKG": package_name(layer)}, timescale=("1ns", "1ps"),
                 always=True, log_file=build / "build.log")
    built = time.perf_counter()
    summary = build / "summary.json"
    summary.unlink(missing_ok=True)
    results = build / "results.xml"
    env = {"STLLR_GOLDEN": str(golden), "STLLR_LAYER": str(layer), "STLLR_SUMMARY": str(summary)}
    # the runner passes this process's sys.path on as the simulator's PYTHONPATH
    added = str(RTL) not in sys.path
    if added:
        sys.path.append(str(RTL))
    try:
        runner.test(hdl_toplevel="stllr_layer_top", test_module="cocotb_stllr_layer", test_dir=params,
                    build_dir=build, extra_env=env, results_xml=str(results), log_file=build / "sim.log",
                    timescale=("1ns", "1ps"))
    except SystemExit:  # under pytest the runner exits on a failing test; the summary says why
        pass
    finally:
        if added:
            sys.path.remove(str(RTL))
    done = time.perf_counter()
    # outside pytest runner.test() returns normally on a failing test: read the results ourselves
    from cocotb_tools.runner import get_results

    try:
        _, failures = get_results(results)
    except Exception as error:  # no results file: the simulator died
        raise SimError(f"icarus/cocotb produced no results ({error}); see {build / 'sim.log'}") from None
    data = json.loads(summary.read_text()) if summary.is_file() else {}
    if failures or not data or data.get("errors"):
        detail = "\n".join(data.get("errors", [])) or _tail(build / "sim.log")
        raise SimError(f"icarus/cocotb: RTL differs from the vectors:\n{detail}")
    return SimResult("icarus+cocotb", data["cycles"], data["checks"], built - started, done - built, data)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else f"({path} missing)"


def run_verilator(golden: Path, params: Path, build: Path, layer: int = 0, samples: int | None = None
                  ) -> SimResult:
    """verilator --binary of the self-checking $readmemh testbench, then run it."""
    golden, params, build = Path(golden).resolve(), Path(params).resolve(), Path(build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((golden / "manifest.json").read_text())
    samples = samples or int(manifest["samples"])
    gold_dir = f"{golden / f'layer{layer}'}/"
    cmd = ["verilator", "--binary", "-j", "2", "--Mdir", str(build / "obj"), "--top-module", "tb_stllr_layer",
           "-Wno-fatal", "-O1", "--x-assign", "unique", "--x-initial", "unique",
           f"+define+STLLR_PKG={package_name(layer)}", f"-GSAMPLES={samples}", f'-GGOLD="{gold_dir}"',
           "-CFLAGS", "-O1", str(params / PKG_SV), str(LAYER_V), str(TOP_SV), str(TB_SV)]
    started = time.perf_counter()
    _run(cmd, params, "verilator --binary")
    built = time.perf_counter()
    out = _run([str(build / "obj" / "Vtb_stllr_layer")], params, "verilator testbench")
    done = time.perf_counter()
    match = re.search(r"TB PASS cycles=(\d+) checks=(\d+)", out)
    if not match:
        raise SimError(f"verilator testbench did not pass:\n{out[-3000:]}")
    return SimResult("verilator", int(match.group(1)), int(match.group(2)), built - started, done - built,
                     {"output": out[-2000:]})


def lint_verilator(params: Path, layer: int = 0) -> SimResult:
    """verilator --lint-only -Wall: package + layer + wrapper with this layer's values; must be silent."""
    params = Path(params).resolve()
    started = time.perf_counter()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", "stllr_layer_top",
           f"+define+STLLR_PKG={package_name(layer)}", str(params / PKG_SV), str(LAYER_V), str(TOP_SV)]
    proc = subprocess.run(cmd, cwd=params, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "%Warning" in out or "%Error" in out:
        raise SimError(f"verilator --lint-only -Wall is not clean:\n{out[-4000:]}")
    return SimResult("verilator lint", run_s=time.perf_counter() - started)


def yosys_script(values: dict, top: str = "stllr_layer") -> str:
    """read, chparam (every value of the package that stllr_layer takes), synth, check -assert."""
    src = LAYER_V.read_text()
    plist = re.sub(r"//[^\n]*", "", src.split(f"module {top} #(", 1)[1].split(") (", 1)[0])
    names = re.findall(r"(\w+)\s*=", plist)
    sets = []
    for name in names:
        value = values[name]
        if isinstance(value, str):
            sets.append(f'-set {name} "{value}"')
        else:  # chparam reads Verilog constants; a negative value as a sized two's complement word
            width = 64 if re.search(rf"signed \[63:0\] {name}\b", src) else 32
            sets.append(f"-set {name} {width}'sh{int(value) & ((1 << width) - 1):x}")
    return (f"read_verilog {LAYER_V}; chparam {' '.join(sets)} {top}; "
            f"synth -top {top}; check -assert; tee -o yosys_stat.txt stat")


def run_yosys(params: Path, values: dict, build: Path) -> SimResult:
    """Synthesize stllr_layer with this layer's values; `check -assert` must pass."""
    params, build = Path(params).resolve(), Path(build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    script = build / "synth.ys"
    script.write_text(yosys_script(values).replace("; ", "\n") + "\n")
    started = time.perf_counter()
    out = _run(["yosys", "-q", "-s", str(script)], params, "yosys synth")
    stat = (params / "yosys_stat.txt")
    text = stat.read_text() if stat.is_file() else out
    if stat.is_file():
        shutil.move(str(stat), build / "yosys_stat.txt")
    cells = re.search(r"Number of cells:\s+(\d+)", text)
    return SimResult("yosys", run_s=time.perf_counter() - started,
                     details={"cells": int(cells.group(1)) if cells else None})


def package_values(params: Path, layer: int = 0) -> dict:
    """name -> value of ``stllr_layer<layer>_pkg`` as written in DIR/stllr_params.sv (ints, strings)."""
    text = (Path(params) / PKG_SV).read_text()
    marker = f"package {package_name(layer)};"
    if marker not in text:
        from stllr.errors import InputError

        raise InputError(f"{Path(params) / PKG_SV}: no package {package_name(layer)}")
    body = text.split(marker, 1)[1].split("endpackage", 1)[0]
    out: dict = {}
    for name, value in re.findall(r"localparam (?:integer|logic signed \[63:0\]) (\w+) = ([^;]+);", body):
        value = value.replace("64'sd", "")
        out[name] = -int(value[1:]) if value.startswith("-") else int(value)
    for name, value in re.findall(r'localparam (\w+) = "([^"]*)";', body):
        out[name] = value
    return out


def check_pair(golden: Path, params: Path, layer: int) -> None:
    """The vector set and the parameter export must describe the same layer and initial state."""
    from rtl_export.golden import load_vectors
    from stllr.errors import InputError

    vs = load_vectors(Path(golden))
    pfile = Path(params) / "manifest.json"
    if not pfile.is_file():
        raise InputError(f"{pfile}: parameter export manifest not found (rtl-export params --out DIR)")
    pman = json.loads(pfile.read_text())
    gman = vs.manifest
    if pman.get("config") != gman.get("config"):
        raise InputError(f"{pfile}: made from a different config than {Path(golden) / 'manifest.json'}")
    if (pman.get("steps"), pman.get("window")) != (gman["steps"], gman["window"]):
        raise InputError(f"{pfile}: steps/window {pman.get('steps')}/{pman.get('window')} differ from the vectors' "
                         f"{gman['steps']}/{gman['window']} (rtl-export params --steps {gman['steps']})")
    values = package_values(params, layer)
    if not values.get("RTL_SUPPORTED"):
        raise InputError(f"layer {layer}: rtl/stllr_layer.v does not implement it (see RTL_SUPPORTED in "
                         f"{Path(params) / PKG_SV})")
    key = f"layer{layer}/weight"
    from fixedpoint.formats import FixedFormat
    from rtl_export import hexio

    first = vs.arrays[key][0, 0] if vs.arrays[key].ndim == 4 else vs.arrays[key]
    fmt = FixedFormat(signed=bool(values["WEIGHT_SIGNED"]), bits=values["WEIGHT_BITS"], frac=values["WEIGHT_FRAC"])
    path = Path(params) / values["WEIGHT_FILE"]
    stored = hexio.decode_hex(path.read_bytes(), fmt, first.size, str(path)).reshape(first.shape)
    if not np.array_equal(stored, first):
        raise InputError(f"{path}: initial weights differ from the vectors' {key} (same checkpoint for both?)")


def simulate_all(golden: Path, params: Path, build: Path, layer: int = 0,
                 tools: tuple[str, ...] = ("icarus", "verilator", "lint", "yosys"),
                 log=print) -> list[SimResult]:
    """Check the pair, then run each requested tool that is installed (others are reported)."""
    check_pair(golden, params, layer)
    results = []
    steps = {
        "icarus": (("iverilog", "cocotb"), lambda: run_icarus(golden, params, Path(build) / "icarus", layer)),
        "verilator": (("verilator",), lambda: run_verilator(golden, params, Path(build) / "verilator", layer)),
        "lint": (("verilator",), lambda: lint_verilator(params, layer)),
        "yosys": (("yosys",), lambda: run_yosys(params, package_values(params, layer), Path(build) / "yosys")),
    }
    for tool in tools:
        needs, run = steps[tool]
        reason = missing(*needs)
        if reason:
            log(f"skip {tool}: {reason}")
            continue
        result = run()
        log(result.line())
        results.append(result)
    return results
