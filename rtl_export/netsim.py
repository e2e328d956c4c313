"""Run the generated whole-network core (``rtl_export.netgen``) in Verilator or Icarus
and compare it, value by value, with the integer model (``fixedpoint.network.IntNetwork``).

``simulate_network(model, x, y, train, build, tool)`` writes the core, its memory files,
a testbench and the input stream into ``build``, runs the simulator, runs the integer
model on the same samples one at a time (batch 1, weights and lanes carried), and
returns a :class:`NetRun`: the first mismatch (sample, step, layer, tensor, index) or
None, the cycles, the predictions and the overflow counts of both.

With ``trace=True`` the core prints every value it writes (``+define+STLLR_TRACE``) and
every one is compared with the model's log; without it (long runs) the final weights,
the predictions and the overflow counters are compared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtl_export.netgen import NetGen, clog2, hex_words

RTL_DIR = Path(__file__).resolve().parent.parent / "rtl"
RTL_FILES = ("stllr_ram.v", "stllr_requant.v", "stllr_xorshift32.v")
#: Step order of the compared tensors (forward, then the learning phases).
FORWARD = ("current", "u", "spikes", "membrane", "psi", "post_trace", "pre_trace", "bias_trace", "rec_pre_trace")
LEARNING = ("error", "learning_signal", "grad", "causal", "noncausal", "acc_weight", "acc_rec_weight", "acc_bias",
            "new_weight", "new_rec_weight", "new_bias")


class NetSimError(RuntimeError):
    """A simulator failed to build or run (not a value mismatch)."""


@dataclass
class Mismatch:
    sample: int
    step: int
    layer: int
    tensor: str
    index: int | tuple
    rtl: int | None
    model: int | None

    def describe(self) -> str:
        rtl = "nothing" if self.rtl is None else self.rtl
        model = "nothing" if self.model is None else self.model
        return (f"sample {self.sample} step {self.step} layer {self.layer} {self.tensor} index {self.index}: "
                f"RTL {rtl}, integer model {model}")


@dataclass
class NetRun:
    tool: str
    samples: int
    steps: int
    mismatch: Mismatch | None
    cycles: int
    step_cycles: dict  # "train_window" / "train" / "infer" -> cycles of one step (max seen)
    values: int  # values compared
    predictions: np.ndarray
    model_predictions: np.ndarray
    overflow_rtl: dict
    overflow_model: dict
    build_s: float
    run_s: float
    model_s: float
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def testbench(gen: NetGen, samples: int) -> str:
    lp0 = gen.layers[0]
    n0, ib = lp0.geometry.n_in, lp0.fmts.input.bits
    tb_bits = gen.tgt_bits
    dumps = []
    for lp in gen.layers:
        dumps.append(f'        $writememh("out_l{lp.index}_w.hex", dut.u_l{lp.index}_w.mem);')
        if lp.bias is not None:
            dumps.append(f'        $writememh("out_l{lp.index}_b.hex", dut.u_l{lp.index}_b.mem);')
        if lp.kind == "recurrent":
            dumps.append(f'        $writememh("out_l{lp.index}_r.hex", dut.u_l{lp.index}_rw.mem);')
    n_ovf = len(gen.ovf)
    kw = clog2(n_ovf + 1)
    return f"""// tb_stllr_net: drives the generated core with inputs.hex / labels.hex / modes.hex
// (one sample after another), prints PRED / STEP / OVF lines and dumps the final weights.
`timescale 1ns / 1ps

module tb_stllr_net;
    localparam integer SAMPLES = {samples};
    localparam integer T = {gen.T};
    localparam integer N0 = {n0};
    reg clk = 1'b0;
    reg rst = 1'b1;
    reg in_we = 1'b0;
    reg [{clog2(n0) - 1}:0] in_addr = 0;
    reg [{ib - 1}:0] in_data = 0;
    reg step_start = 1'b0;
    reg train = 1'b0;
    reg [{tb_bits - 1}:0] target = 0;
    reg [{kw - 1}:0] ovf_sel = 0;
    wire busy, step_done, y_valid, pred_valid;
    wire [{clog2(gen.T + 1) - 1}:0] t_now;
    wire [{clog2(gen.p.num_classes) - 1}:0] y_idx;
    wire [{gen.layers[-1].fmts.membrane.bits - 1}:0] y_val;
    wire [{tb_bits - 1}:0] pred;
    wire [31:0] ovf_count;
    reg [{ib - 1}:0] xin [0:SAMPLES*T*N0-1];
    reg [{tb_bits - 1}:0] labels [0:SAMPLES-1];
    reg [0:0] modes [0:SAMPLES-1];
    integer s, t, j, k, n;
    reg [63:0] total;

    {gen.top} dut (.clk(clk), .rst(rst), .in_we(in_we), .in_addr(in_addr), .in_data(in_data),
        .step_start(step_start), .train(train), .target(target), .busy(busy), .step_done(step_done),
        .t_now(t_now), .y_valid(y_valid), .y_idx(y_idx), .y_val(y_val), .pred_valid(pred_valid), .pred(pred),
        .ovf_sel(ovf_sel), .ovf_count(ovf_count));

    always #5 clk = ~clk;

    initial begin
        $readmemh("inputs.hex", xin);
        $readmemh("labels.hex", labels);
        $readmemh("modes.hex", modes);
        total = 0;
        repeat (3) @(posedge clk);
        #1 rst = 1'b0;
        for (s = 0; s < SAMPLES; s = s + 1) begin
            for (t = 0; t < T; t = t + 1) begin
                for (j = 0; j < N0; j = j + 1) begin
                    @(negedge clk);
                    in_we = 1'b1; in_addr = j[{clog2(n0) - 1}:0]; in_data = xin[(s * T + t) * N0 + j];
                end
                @(negedge clk);
                in_we = 1'b0; step_start = 1'b1; train = modes[s][0]; target = labels[s];
                @(negedge clk);
                step_start = 1'b0;
                n = 1;
                while (!step_done) begin
                    @(negedge clk);
                    n = n + 1;
                end
                total = total + n;
                $display("STEP %0d %0d %0d %0d", s, t, modes[s][0], n);
                if (t == T - 1) $display("PRED %0d %0d %0d", s, pred, pred_valid);
            end
        end
        @(negedge clk);
        for (k = 0; k < {n_ovf}; k = k + 1) begin
            ovf_sel = k[{kw - 1}:0];
            #1 $display("OVF %0d %0d", k, ovf_count);
        end
{chr(10).join(dumps)}
        $display("CYCLES %0d", total);
        $display("TB DONE");
        $finish;
    end
endmodule
"""


def write_build(model, x_codes: np.ndarray, labels: np.ndarray, modes: np.ndarray, steps: int, window: int,
                build: Path) -> NetGen:
    """The core, its memory files, the testbench and the input stream, into ``build``."""
    gen = NetGen(model, steps, window)
    text, files = gen.build()
    build.mkdir(parents=True, exist_ok=True)
    (build / "stllr_net.v").write_text(text)
    for name, payload in files.items():
        (build / name).write_text(payload)
    samples = x_codes.shape[0]
    (build / "tb_stllr_net.sv").write_text(testbench(gen, samples))
    (build / "inputs.hex").write_text(hex_words(x_codes.reshape(-1), model.params.layers[0].fmts.input.bits))
    (build / "labels.hex").write_text(hex_words(labels, gen.tgt_bits))
    (build / "modes.hex").write_text(hex_words(modes.astype(np.int64), 1))
    for name in RTL_FILES:
        shutil.copy(RTL_DIR / name, build / name)
    return gen


def sources(build: Path) -> list[str]:
    return [*RTL_FILES, "stllr_net.v", "tb_stllr_net.sv"]


def _run(cmd, cwd, timeout, what):
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise NetSimError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise NetSimError(f"{what}: timed out after {timeout} s") from None
    if proc.returncode != 0:
        tail = (proc.stdout[-1500:] + proc.stderr[-1500:]).strip()
        raise NetSimError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def run_simulator(build: Path, tool: str, trace: bool, timeout: float = 3600) -> tuple[str, float, float]:
    started = time.perf_counter()
    if tool == "verilator":
        cmd = ["verilator", "--binary", "-O3", "--top-module", "tb_stllr_net", "-Wno-fatal", "-j",
               str(min(2, os.cpu_count() or 1)), "--Mdir", "obj_dir"]
        if trace:
            cmd.append("+define+STLLR_TRACE")
        _run(cmd + sources(build), build, timeout, "verilator build")
        built = time.perf_counter()
        out = _run(["./obj_dir/Vtb_stllr_net"], build, timeout, "verilator run")
    elif tool == "icarus":
        cmd = ["iverilog", "-g2012", "-o", "tb.vvp", "-s", "tb_stllr_net"]
        if trace:
            cmd.append("-DSTLLR_TRACE")
        _run(cmd + sources(build), build, timeout, "iverilog build")
        built = time.perf_counter()
        out = _run(["vvp", "-n", "tb.vvp"], build, timeout, "vvp run")
    else:
        raise ValueError(f"unknown tool {tool}")
    if "TB DONE" not in out:
        raise NetSimError(f"{tool}: the testbench did not finish: {out[-800:]}")
    return out, built - started, time.perf_counter() - built


_TR = re.compile(r"^TR (\d+) (\d+) (\d+) (\w+) (\d+) (-?\d+)$", re.M)


def parse_trace(out: str) -> dict:
    """(sample, t, layer, tensor) -> {index: value}."""
    table: dict = {}
    for s, t, layer, tensor, idx, val in _TR.findall(out):
        table.setdefault((int(s), int(t), int(layer), tensor), {})[int(idx)] = int(val)
    return table


def compare(expected: dict, actual: dict, samples: int, steps: int, layers: int) -> tuple[Mismatch | None, int]:
    """First difference in step order (forward tensors layer by layer, then learning)."""
    checked = 0
    for s in range(samples):
        for t in range(steps):
            order = [(layer, tensor) for layer in range(layers) for tensor in FORWARD]
            order += [(layer, tensor) for tensor in LEARNING for layer in range(layers)]
            for layer, tensor in order:
                key = (s, t, layer, tensor)
                want = expected.get(key)
                got = actual.get(key)
                if want is None and got is None:
                    continue
                if want is None:
                    idx = min(got)
                    return Mismatch(s, t, layer, tensor, idx, got[idx], None), checked
                for idx, value in enumerate(want):
                    value = int(value)
                    have = None if got is None else got.get(idx)
                    if have != value:
                        return Mismatch(s, t, layer, tensor, idx, have, value), checked
                    checked += 1
                if got is not None and len(got) > len(want):
                    idx = max(got)
                    return Mismatch(s, t, layer, tensor, idx, got[idx], None), checked
    return None, checked


def simulate_network(model, x: np.ndarray, labels: np.ndarray, train: np.ndarray, window: int, build: Path,
                     tool: str = "verilator", trace: bool = True, timeout: float = 3600,
                     reference=None) -> NetRun:
    """Run ``x`` (N, T, n_in floats on the input grid) through the core and the model.

    The core is generated from ``model`` (its weights and lanes as they are now); the
    values are compared with ``reference`` run on the same samples (default: ``model``
    itself; a different model is how the tests prove that a difference is found)."""
    samples, steps = x.shape[0], x.shape[1]
    x = x.reshape(samples, steps, -1)
    codes = model.quantize_input(x)
    train = np.asarray(train, bool)
    if build.exists():
        shutil.rmtree(build)
    gen = write_build(model, codes, np.asarray(labels, np.int64), train, steps, window, build)
    names = list(gen.ovf)
    out, build_s, run_s = run_simulator(build, tool, trace, timeout)
    model = model if reference is None else reference
    # the integer model, one sample at a time (the model's own counter, before -> after)
    started = time.perf_counter()
    before = {name: model.overflow.events(name) for name in names}
    expected: dict = {}
    preds = np.zeros(samples, np.int64)
    for s in range(samples):
        result = model.run(x[s:s + 1], labels[s:s + 1], train=bool(train[s]), log=trace)
        preds[s] = int(result.prediction[0])
        if trace:
            for (t, layer, tensor), value in result.log.items():
                if tensor in FORWARD or tensor in LEARNING:
                    arr = np.asarray(value).reshape(-1)
                    expected[(s, t, int(layer[len("layer"):]), tensor)] = arr
    model_s = time.perf_counter() - started
    overflow_model = {name: model.overflow.events(name) - before[name] for name in names}
    overflow_rtl = {names[int(k)]: int(v) for k, v in re.findall(r"^OVF (\d+) (\d+)$", out, re.M)}
    rtl_preds = np.full(samples, -1, np.int64)
    for s, p in re.findall(r"^PRED (\d+) (\d+) 1$", out, re.M):
        rtl_preds[int(s)] = int(p)
    step_cycles: dict = {}
    for s, t, mode, n in re.findall(r"^STEP (\d+) (\d+) (\d) (\d+)$", out, re.M):
        kind = "infer" if mode == "0" else ("train_window" if int(t) >= steps - window else "train")
        step_cycles[kind] = max(step_cycles.get(kind, 0), int(n))
    cycles = int(re.search(r"^CYCLES (\d+)$", out, re.M).group(1))
    mismatch, checked = (None, 0)
    if trace:
        mismatch, checked = compare(expected, parse_trace(out), samples, steps, len(model.params.layers))
    if mismatch is None:
        mismatch, n = _compare_final(model, build, gen)
        checked += n
    if mismatch is None:
        for s in range(samples):
            checked += 1
            if rtl_preds[s] != preds[s]:
                mismatch = Mismatch(s, steps - 1, gen.R, "prediction", 0, int(rtl_preds[s]), int(preds[s]))
                break
    if mismatch is None:
        for name in names:
            checked += 1
            if overflow_rtl.get(name) != overflow_model[name]:
                layer = int(name.split(".")[0][len("layer"):])
                mismatch = Mismatch(samples - 1, steps - 1, layer, f"overflow count {name}", 0,
                                    overflow_rtl.get(name), overflow_model[name])
                break
    return NetRun(tool, samples, steps, mismatch, cycles, step_cycles, checked, rtl_preds, preds, overflow_rtl,
                  overflow_model, build_s, run_s, model_s)


def _read_hex(path: Path, bits: int, signed: bool) -> np.ndarray:
    words = []
    for line in path.read_text().splitlines():
        line = line.split("//")[0].strip()  # Icarus and Verilator add address comments
        if line and not line.startswith("@"):
            words.append(int(line, 16))
    arr = np.array(words, np.int64)
    if signed:
        arr = np.where(arr >= 1 << (bits - 1), arr - (1 << bits), arr)
    return arr


def _compare_final(model, build: Path, gen: NetGen) -> tuple[Mismatch | None, int]:
    """Weights and biases after the run, read back from the core's memories."""
    checked = 0
    for lp in model.params.layers:
        for tensor, fmt, value in (("weight", lp.fmts.weight, lp.weight), ("bias", lp.fmts.bias, lp.bias),
                                   ("rec_weight", lp.fmts.weight, lp.rec_weight)):
            if value is None:
                continue
            got = _read_hex(build / f"out_l{lp.index}_{'r' if tensor == 'rec_weight' else tensor[0]}.hex",
                            fmt.bits, fmt.signed)
            want = np.asarray(value).reshape(-1)
            got = got[:want.size]
            bad = np.nonzero(got != want)[0]
            checked += want.size
            if bad.size:
                i = int(bad[0])
                return Mismatch(-1, -1, lp.index, f"final {tensor}", i, int(got[i]), int(want[i])), checked
    return None, checked


def network_inputs(config, model, samples: int, steps: int, density: float | None, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Inputs of ``rtl-export sim --net``: the first N test samples, or with ``density``
    random vectors from ``numpy.random.default_rng(seed)``: each input is non-zero with
    probability ``density``, then 1 (binary input) or uniform in 1 .. the input format's
    largest code (multi-bit input, e.g. u8.0 event counts); labels uniform."""
    from rtl_export.model import check_run_args, load_inputs

    if density is None:
        return load_inputs(config, samples, steps, None, seed)
    check_run_args(samples, steps, density, seed)
    fmt = model.params.layers[0].fmts.input
    shape = (samples, steps, *config.network.input_shape)
    rng = np.random.default_rng(seed)
    active = rng.random(shape) < density
    top = int(fmt.max_int)
    counts = rng.integers(1, top + 1, shape) if top > 1 else np.ones(shape, np.int64)
    x = np.where(active, counts, 0).astype(np.float64) * 2.0 ** -fmt.frac
    y = rng.integers(0, config.network.layers[-1].size, samples).astype(np.int64)
    return x, y, {"source": "random", "density": float(density), "seed": int(seed)}


def check_build_dir(build: Path) -> None:
    """``--build`` must be a new or empty folder (the simulation workspace), checked first."""
    from rtl_export.outdir import check_target

    check_target(build, "--build ")
    text = str(build)
    if any(ch in text for ch in '"\\') or any(ord(ch) < 32 for ch in text):
        from core.errors import InputError
        raise InputError(f"--build {text!r:.60}: a quote, backslash or control character in the path")


def run_cocotb(model, x: np.ndarray, labels: np.ndarray, train: np.ndarray, window: int, build: Path,
               reference=None) -> dict:
    """Icarus + cocotb (rtl/cocotb_stllr_net.py): the core driven through its ports from
    Python, every readout value y of every step, the predictions and the overflow
    counters compared with the integer model run on the same samples (``reference``, by
    default ``model``, whose weights the core is built from). Returns the
    bench's summary (cycles, checks, errors); NetSimError when the bench did not run."""
    import json
    import sys

    from cocotb_tools.runner import get_results, get_runner

    samples, steps = x.shape[0], x.shape[1]
    x = x.reshape(samples, steps, -1)
    codes = model.quantize_input(x)
    train = np.asarray(train, bool)
    build = Path(build).resolve()
    if build.exists():
        shutil.rmtree(build)
    gen = write_build(model, codes, np.asarray(labels, np.int64), train, steps, window, build)
    names = list(gen.ovf)
    model = model if reference is None else reference
    before = {name: model.overflow.events(name) for name in names}
    ys, preds = [], []
    for s in range(samples):
        result = model.run(x[s:s + 1], labels[s:s + 1], train=bool(train[s]))
        ys.append(result.readout[0].tolist())
        preds.append(int(result.prediction[0]))
    spec = {"samples": samples, "steps": steps, "n_in": codes.shape[-1], "classes": gen.p.num_classes,
            "y_bits": gen.layers[-1].fmts.membrane.bits, "inputs": codes.tolist(),
            "labels": [int(v) for v in labels], "modes": [int(v) for v in train], "y": ys, "predictions": preds,
            "overflow": [[name, model.overflow.events(name) - before[name]] for name in names]}
    (build / "expected.json").write_text(json.dumps(spec))
    runner = get_runner("icarus")
    try:
        runner.build(sources=[build / n for n in (*RTL_FILES, "stllr_net.v")], hdl_toplevel=gen.top,
                     build_dir=build / "sim", timescale=("1ns", "1ps"), always=True, log_file=build / "build.log")
    except (RuntimeError, SystemExit, subprocess.SubprocessError) as error:
        raise NetSimError(f"icarus build failed ({error})") from None
    summary, results = build / "summary.json", build / "results.xml"
    env = {"STLLR_NET_EXPECTED": str(build / "expected.json"), "STLLR_SUMMARY": str(summary)}
    added = str(RTL_DIR) not in sys.path
    if added:
        sys.path.append(str(RTL_DIR))
    try:
        runner.test(hdl_toplevel=gen.top, test_module="cocotb_stllr_net", test_dir=build, build_dir=build / "sim",
                    extra_env=env, results_xml=str(results), log_file=build / "sim.log", timescale=("1ns", "1ps"))
    except (SystemExit, RuntimeError):
        pass  # the verdict is in results.xml and the summary
    finally:
        if added:
            sys.path.remove(str(RTL_DIR))
    try:
        _, failures = get_results(results)
        data = json.loads(summary.read_text())
    except Exception as error:  # noqa: BLE001 - no results: the simulator died
        raise NetSimError(f"icarus/cocotb produced no results ({error}); see {build / 'sim.log'}") from None
    data["failures"] = failures
    return data
