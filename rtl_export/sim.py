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
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                              errors="replace")
    except subprocess.TimeoutExpired:
        raise SimError(f"{what} ran past {timeout:.0f} s: {' '.join(cmd[:3])} ...") from None
    except OSError as error:
        raise SimError(f"{what} could not start ({error.strerror or error}): {cmd[0]}") from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SimError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:3])} ...\n{out[-4000:]}")
    return out


def package_name(layer: int) -> str:
    return f"stllr_layer{layer}_pkg"


def run_icarus(golden: Path, params: Path, build: Path, layer: int = 0) -> SimResult:
    """Build stllr_layer_top with Icarus and run the cocotb replay; SimError on any mismatch.

    The replay fails when the simulator exits non-zero (the bench makes it exit 1 on a
    mismatch), when results.xml records a failure, or when the bench's summary holds an
    error or is missing: any one of them is enough."""
    from cocotb_tools.runner import get_results, get_runner

    golden, params, build = Path(golden).resolve(), Path(params).resolve(), Path(build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    runner = get_runner("icarus")
    started = time.perf_counter()
    try:
        runner.build(sources=[params / PKG_SV, LAYER_V, TOP_SV], hdl_toplevel="stllr_layer_top",
                     build_dir=build, defines={"STLLR_PKG": package_name(layer)}, timescale=("1ns", "1ps"),
                     always=True, log_file=build / "build.log")
    except (RuntimeError, SystemExit, subprocess.SubprocessError) as error:
        raise SimError(f"icarus build failed ({error}):\n{_tail(build / 'build.log')}") from None
    built = time.perf_counter()
    summary = build / "summary.json"
    summary.unlink(missing_ok=True)
    results = build / "results.xml"
    results.unlink(missing_ok=True)
    env = {"STLLR_GOLDEN": str(golden), "STLLR_LAYER": str(layer), "STLLR_SUMMARY": str(summary)}
    # the runner passes this process's sys.path on as the simulator's PYTHONPATH
    added = str(RTL) not in sys.path
    if added:
        sys.path.append(str(RTL))
    exit_status = 0
    try:
        runner.test(hdl_toplevel="stllr_layer_top", test_module="cocotb_stllr_layer", test_dir=params,
                    build_dir=build, extra_env=env, results_xml=str(results), log_file=build / "sim.log",
                    timescale=("1ns", "1ps"))
    except SystemExit as stop:  # under pytest the runner exits on a failing test
        exit_status = stop.code if isinstance(stop.code, int) else 1
    except RuntimeError:  # the simulator exited non-zero (the bench's verdict on a mismatch)
        exit_status = 1
    finally:
        if added:
            sys.path.remove(str(RTL))
    done = time.perf_counter()
    try:
        _, failures = get_results(results)
    except Exception as error:  # no results file: the simulator died
        raise SimError(f"icarus/cocotb produced no results ({error}); see {build / 'sim.log'}") from None
    try:
        data = json.loads(summary.read_text()) if summary.is_file() else {}
    except (OSError, ValueError):
        data = {}
    if failures or exit_status or not data or data.get("errors"):
        detail = "\n".join(data.get("errors", [])) or _tail(build / "sim.log")
        status = f" (simulator exit {exit_status})" if exit_status else ""
        raise SimError(f"icarus/cocotb: RTL differs from the vectors{status}:\n{detail}")
    return SimResult("icarus+cocotb", data["cycles"], data["checks"], built - started, done - built, data)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else f"({path} missing)"


def run_verilator(golden: Path, params: Path, build: Path, layer: int = 0, samples: int | None = None
                  ) -> SimResult:
    """verilator --binary of the self-checking $readmemh testbench, then run it."""
    from rtl_export.golden import read_golden_manifest

    golden, params, build = Path(golden).resolve(), Path(params).resolve(), Path(build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    samples = samples or read_golden_manifest(golden).samples
    gold_dir = f"{golden / f'layer{layer}'}/"
    cmd = ["verilator", "--binary", "-j", "2", "--Mdir", str(build / "obj"), "--top-module", "tb_stllr_layer",
           "-Wno-fatal", "-O1", "--x-assign", "unique", "--x-initial", "unique",
           f"+define+STLLR_PKG={package_name(layer)}", f"-GSAMPLES={samples}", f'-GGOLD="{gold_dir}"',
           "-CFLAGS", "-O1", str(params / PKG_SV), str(LAYER_V), str(TOP_SV), str(TB_SV)]
    started = time.perf_counter()
    _run(cmd, params, "verilator --binary")
    built = time.perf_counter()
    # a mismatch ends the bench with $fatal: _run refuses the non-zero exit; a zero exit
    # must still have printed the pass line (and no failure)
    out = _run([str(build / "obj" / "Vtb_stllr_layer")], params, "verilator testbench")
    done = time.perf_counter()
    match = re.search(r"TB PASS cycles=(\d+) checks=(\d+)", out)
    if not match or "TB FAIL" in out or "MISMATCH" in out:
        raise SimError(f"verilator testbench did not pass:\n{out[-3000:]}")
    return SimResult("verilator", int(match.group(1)), int(match.group(2)), built - started, done - built,
                     {"output": out[-2000:]})


def lint_verilator(params: Path, layer: int = 0) -> SimResult:
    """verilator --lint-only -Wall: package + layer + wrapper with this layer's values; must be silent."""
    params = Path(params).resolve()
    started = time.perf_counter()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", "stllr_layer_top",
           f"+define+STLLR_PKG={package_name(layer)}", str(params / PKG_SV), str(LAYER_V), str(TOP_SV)]
    try:
        proc = subprocess.run(cmd, cwd=params, capture_output=True, text=True, timeout=300, errors="replace")
    except (subprocess.TimeoutExpired, OSError) as error:
        raise SimError(f"verilator --lint-only could not finish ({type(error).__name__})") from None
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


def package_values(params: Path, layer: int = 0, text: str | None = None) -> dict:
    """name -> value of ``stllr_layer<layer>_pkg`` as written in DIR/stllr_params.sv (ints, strings)."""
    from core.errors import InputError

    where = Path(params) / PKG_SV
    if text is None:
        try:
            text = where.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{where}: cannot read ({getattr(error, 'strerror', None) or type(error).__name__})") \
                from None
    marker = f"package {package_name(layer)};"
    if marker not in text:
        raise InputError(f"{where}: no package {package_name(layer)}")
    body = text.split(marker, 1)[1].split("endpackage", 1)[0]
    out: dict = {}
    for name, value in re.findall(r"localparam (?:integer|logic signed \[63:0\]) (\w+) = ([^;]+);", body):
        value = value.replace("64'sd", "").strip()
        if not re.fullmatch(r"-?[0-9]{1,20}", value):
            raise InputError(f"{where}: {package_name(layer)}.{name} = {value!r:.40} is not an integer")
        out[name] = int(value)
    for name, value in re.findall(r'localparam (\w+) = "([^"]*)";', body):
        out[name] = value
    return out


def _source_of(manifest):
    from rtl_export.model import Source

    return Source(manifest.source.weights, manifest.source.seed, manifest.source.checkpoint_sha256)


@dataclass
class Pair:
    """A vector set and a parameter export checked to belong together, for one layer."""

    samples: int
    values: dict


# golden tensor of the layer -> (package format prefix, element dims after (sample, lead))
_REPLAYED = {
    "input": ("", ("N_IN",)), "pre_trace": ("PRE_TRACE", ("N_IN",)), "current": ("CURRENT", ("N_OUT",)),
    "u": ("MEMBRANE", ("N_OUT",)), "membrane": ("MEMBRANE", ("N_OUT",)), "spikes": ("", ("N_OUT",)),
    "psi": ("PSI", ("N_OUT",)), "post_trace": ("POST_TRACE", ("N_OUT",)),
    "learning_signal": ("SIGNAL", ("N_OUT",)), "causal": ("MODULATION", ("N_OUT",)),
    "noncausal": ("MODULATION", ("N_OUT",)), "acc_weight": ("UPDATE", ("N_OUT", "N_IN")),
    "acc_bias": ("UPDATE", ("N_OUT",)), "bias_trace": ("PRE_TRACE", ()),
    "weight": ("WEIGHT", ("N_OUT", "N_IN")), "weight_next": ("WEIGHT", ("N_OUT", "N_IN")),
    "weight_lanes": ("u32.0", ("N_OUT", "N_IN")), "weight_lanes_next": ("u32.0", ("N_OUT", "N_IN")),
    "bias": ("BIAS", ("N_OUT",)), "bias_next": ("BIAS", ("N_OUT",)),
    "bias_lanes": ("u32.0", ("N_OUT",)), "bias_lanes_next": ("u32.0", ("N_OUT",)),
}
# memory file of the package -> (package format prefix or a fixed format, dims)
_MEMORIES = {
    "WEIGHT": ("WEIGHT", ("N_OUT", "N_IN")), "WEIGHT_LANES": ("u32.0", ("N_OUT", "N_IN")),
    "BIAS": ("BIAS", ("N_OUT",)), "BIAS_LANES": ("u32.0", ("N_OUT",)), "PSI_LUT": ("PSI", ("PSI_LUT_ENTRIES",)),
}


def _replayed_keys(values: dict) -> list[str]:
    """The golden tensors the testbenches read for a layer with these package values."""
    keys = ["input", "pre_trace", "current", "u", "membrane", "spikes", "psi", "post_trace", "learning_signal",
            "causal", "acc_weight", "weight", "weight_next"]
    if values["ALPHA_POST"] != 0:
        keys.append("noncausal")
    if values["WEIGHT_ROUND"] == 3:
        keys += ["weight_lanes", "weight_lanes_next"]
    if values["HAS_BIAS"]:
        keys += ["bias_trace", "acc_bias", "bias", "bias_next"]
        if values["BIAS_ROUND"] == 3:
            keys += ["bias_lanes", "bias_lanes_next"]
    return keys


def _format_of(values: dict, prefix: str):
    from core.formats import FixedFormat

    if prefix in ("", "u32.0"):
        return FixedFormat.parse("u1.0" if prefix == "" else prefix)
    return FixedFormat(signed=bool(values[f"{prefix}_SIGNED"]), bits=values[f"{prefix}_BITS"],
                       frac=values[f"{prefix}_FRAC"])


def _check_path_text(path: Path, flag: str) -> None:
    """The simulators take the folder as a string parameter: no quote, backslash or control character."""
    from core.errors import InputError

    text = str(Path(path).resolve())
    bad = next((c for c in text if c in '"\\' or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise InputError(f"{flag}{path}: the path holds {bad!r}, which the simulators' string parameters cannot "
                         "carry: use another folder name")


def check_pair(golden: Path, params: Path, layer: int) -> Pair:
    """The vector set and the parameter export must describe the same layer and initial state.

    Both manifests are read through their models, every file either lists is hash-checked
    and must lie inside its folder; the layer's package must hold the values the config
    gives, its memories the shapes and formats the package declares, and the golden
    tensors the testbenches replay must be there with the package's shapes and formats."""
    from rtl_export import hexio
    from rtl_export.golden import load_vectors
    from rtl_export.manifest import (
        MANIFEST,
        MAX_MANIFEST_BYTES,
        PARAMS_SCHEMA,
        ParamsManifest,
        ParamsMemory,
        inside,
        read_listed,
        read_manifest,
    )
    from rtl_export.model import build_model
    from rtl_export.params import parameter_values
    from core.errors import InputError

    golden, params = Path(golden), Path(params)
    vs = load_vectors(golden)
    gman = vs.manifest
    pfile = params / MANIFEST
    pman = read_manifest(params, ParamsManifest, PARAMS_SCHEMA,
                         "parameter export manifest (rtl-export params --out DIR)")
    payloads: dict[str, bytes] = {}
    for n, entry in enumerate(pman.files):
        where = f"{pfile}: files[{n}] ({entry.path})"
        path = inside(params, entry.path, f"{where}.path")
        memory = isinstance(entry, ParamsMemory)
        payload = read_listed(path, entry.words * (entry.digits + 1) if memory else MAX_MANIFEST_BYTES)
        if hexio.sha256(payload) != entry.sha256:
            raise InputError(f"{path}: sha256 mismatch (file changed since the manifest was written)")
        if memory:
            hexio.decode_hex(payload, entry.format.fixed(), entry.words, str(path))
        payloads[entry.path] = payload
    if pman.config != gman.config:
        raise InputError(f"{pfile}: made from a different config than {golden / MANIFEST}")
    if (pman.steps, pman.window) != (gman.steps, gman.window):
        raise InputError(f"{pfile}: steps/window {pman.steps}/{pman.window} differ from the vectors' "
                         f"{gman.steps}/{gman.window} (rtl-export params --steps {gman.steps})")
    layers = len(gman.layers)
    if not 0 <= layer < layers:
        raise InputError(f"--layer = {layer}: the network has {layers} layers (0..{layers - 1})")
    try:
        text = payloads[PKG_SV].decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{params / PKG_SV}: not UTF-8 (byte {error.start})") from None
    values = package_values(params, layer, text)
    model, _ = build_model(pman.config)
    expected = parameter_values(model, layer, pman.steps, pman.window)
    for name, want in expected.items():
        if values.get(name) != want:
            raise InputError(f"{params / PKG_SV}: {package_name(layer)}.{name} = {values.get(name)!r:.40} but "
                             f"the config gives {want!r:.40}")
    # the listing's facts (every field but the hashes) are what the config gives
    from rtl_export.params import render_params

    if pman.source != gman.source:
        raise InputError(f"{pfile}: source = {pman.source.model_dump()} differs from the vectors' "
                         f"{gman.source.model_dump()} (made from other weights)")
    regenerated = render_params(model, pman.config.model_dump(mode="json"), _source_of(pman), pman.steps,
                                pman.window)
    wanted = {f.path: f for f in ParamsManifest.model_validate_json(regenerated[MANIFEST]).files}
    for n, entry in enumerate(pman.files):
        want = wanted.pop(entry.path, None)
        if want is None:
            raise InputError(f"{pfile}: files[{n}] ({entry.path}) is not a file the config's export has")
        for name in type(entry).model_fields:
            if name != "sha256" and getattr(entry, name) != getattr(want, name):
                raise InputError(f"{pfile}: files[{n}] ({entry.path}).{name} = {getattr(entry, name)!s:.60} but "
                                 f"the config gives {getattr(want, name)!s:.60}")
    if wanted:
        raise InputError(f"{pfile}: files: {next(iter(wanted))} is missing from the listing")
    if not values.get("RTL_SUPPORTED"):
        raise InputError(f"layer {layer}: rtl/stllr_layer.v does not implement it (see RTL_SUPPORTED in "
                         f"{params / PKG_SV})")
    if not values.get("LEARNS"):
        raise InputError(f"layer {layer}: does not learn in this config (LEARNS = 0); the testbenches replay a "
                         "learning layer")
    # the layer's memories: listed, and of the shape and format the package declares
    for tensor, (prefix, dims) in _MEMORIES.items():
        name = values.get(f"{tensor}_FILE", "")
        if not name:
            continue
        entry = pman.memory(name)
        n = next((i for i, f in enumerate(pman.files) if f.path == name), None)
        if entry is None:
            raise InputError(f"{pfile}: {name} ({package_name(layer)}.{tensor}_FILE) is not listed")
        fmt, shape = _format_of(values, prefix), [values[d] for d in dims]
        where = f"{pfile}: files[{n}] ({name})"
        if (entry.format.signed, entry.format.bits, entry.format.frac) != (fmt.signed, fmt.bits, fmt.frac):
            raise InputError(f"{where}.format = {entry.format.text} but {package_name(layer)} declares "
                             f"{fmt.describe_short()}")
        if entry.shape != shape:
            raise InputError(f"{where}.shape = {entry.shape} but {package_name(layer)} declares {shape}")
    # the golden tensors the testbenches read
    prefix_key = f"layer{layer}/"
    leads = {"step": gman.steps, "window": gman.window, "write": len(gman.write_steps)}
    by_key = {e.npz_key: e for e in vs.entries}
    for key in _replayed_keys(values):
        entry = by_key.get(prefix_key + key)
        if entry is None:
            raise InputError(f"{golden / MANIFEST}: no '{prefix_key + key}' in the vector set (the testbenches "
                             f"replay it for layer {layer})")
        pkg_prefix, dims = _REPLAYED[key]
        fmt = _format_of(values, pkg_prefix)
        lead = [gman.samples, leads[entry.phase]] if entry.phase in leads else []
        shape = lead + [values[d] for d in dims]
        if entry.shape != shape:
            raise InputError(f"{golden / MANIFEST}: {entry.path}.shape = {entry.shape} but the layer's package "
                             f"needs {shape}")
        if (entry.format.signed, entry.format.bits, entry.format.frac) != (fmt.signed, fmt.bits, fmt.frac):
            raise InputError(f"{golden / MANIFEST}: {entry.path}.format = {entry.format.text} but the layer's "
                             f"package declares {fmt.describe_short()}")
    # the initial state of the export must be the vectors' (same checkpoint for both)
    for tensor in ("WEIGHT", "WEIGHT_LANES", "BIAS", "BIAS_LANES"):
        name = values.get(f"{tensor}_FILE", "")
        key = prefix_key + tensor.lower()
        if not name or key not in vs.arrays:
            continue
        entry = pman.memory(name)
        stored = hexio.decode_hex(payloads[name], entry.format.fixed(), entry.words, str(params / name))
        first = vs.arrays[key]
        first = first[0, 0] if first.ndim == len(entry.shape) + 2 else first
        if not np.array_equal(stored.reshape(entry.shape), first):
            what = "initial weights" if tensor == "WEIGHT" else f"initial {tensor.lower().replace('_', ' ')}"
            raise InputError(f"{params / name}: {what} differ from the vectors' {key} (same checkpoint for both?)")
    return Pair(gman.samples, values)


def simulate_all(golden: Path, params: Path, build: Path, layer: int = 0,
                 tools: tuple[str, ...] = ("icarus", "verilator", "lint", "yosys"),
                 log=print) -> list[SimResult]:
    """Check the pair and the build folder, then run each requested tool that is installed
    (others are reported). Bad input: InputError (exit 2); a failing tool: SimError (exit 1)."""
    from core.atomic import check_output_dir

    check_output_dir(build, "--build ")
    for path, flag in ((golden, ""), (params, ""), (build, "--build ")):
        _check_path_text(path, flag)
    pair = check_pair(golden, params, layer)
    try:  # only now, once the pair is known to be sound
        Path(build).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        from core.errors import InputError

        raise InputError(f"--build {build}: cannot create it ({error.strerror or type(error).__name__})") from None
    results = []
    steps = {
        "icarus": (("iverilog", "cocotb"), lambda: run_icarus(golden, params, Path(build) / "icarus", layer)),
        "verilator": (("verilator",), lambda: run_verilator(golden, params, Path(build) / "verilator", layer,
                                                            pair.samples)),
        "lint": (("verilator",), lambda: lint_verilator(params, layer)),
        "yosys": (("yosys",), lambda: run_yosys(params, pair.values, Path(build) / "yosys")),
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
