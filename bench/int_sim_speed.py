#!/usr/bin/env python3
"""Speed of the bit-accurate integer S-TLLR model against the float32 torch model and
against Rockpool's Xylo simulator core (xylosim).

    .venv/bin/python bench/int_sim_speed.py                   # all tables, 1 thread
    .venv/bin/python bench/int_sim_speed.py --threads 2 --json out.json
    .venv/bin/python bench/int_sim_speed.py --quick           # fewer repeats (smoke run)
    .venv/bin/python bench/int_sim_speed.py --profile         # + where the integer time goes

Tables:

1. One training step (forward + traces + learning signal + eligibility + update write)
   and one inference step, in ms per time step (batch time / T), on a 700-450(rec)-20
   network (SHD-like: recurrent hidden layer, leaky-integrator readout), batch 32,
   T = 50, k = 5 (the last 5 steps learn, as in the project's configs), binary inputs
   at 10 % density, BP learning signal, rational Psi, batch update. Float: float32
   ``stllr_batch`` (+ an SGD step, so both sides write weights) and ``net(x)``.
   Integer: ``IntNetwork.train_batch`` (with its weight write) and ``infer``; the
   integer time includes quantizing the float input and the exact op and overflow
   counting that the model always does.
2. The same at 1 %, 10 % and 50 % input density.
3. Inference per time step against xylosim (the C++ core behind Rockpool's XyloSim):
   1000 inputs -> 1000 LIF neurons (dense input weights, no recurrence) -> 8 readout
   neurons, batch 1, T = 100, 10 % input spikes. Both get the same 8-bit weight codes.
4. (--profile) cProfile of one integer training and inference batch: the functions
   that take the time.

Timing: warm-up runs first (numba compiles or loads its cache, torch and the allocator
warm up), then ``--repeats`` interleaved repeats (float, integer, float, ...) so that
load from other processes hits both alike; each repeat starts from the same weights.
Reported: median wall time, and median CPU time of this process (``process_time``;
it does not count time spent waiting for a core, so it is the steadier figure on a
shared machine). Ratios are integer / float (above 1: the integer model is slower).
Threads: torch and numba are both set to ``--threads``; the integer kernels are
serial numba loops, so with 2 threads only torch can use the second core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OMP_WAIT_POLICY")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads (default 1)")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per figure (median)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50, help="T")
    parser.add_argument("--window", type=int, default=5, help="k, the learning window")
    parser.add_argument("--density", type=float, default=0.1, help="input density of table 1")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.01, 0.1, 0.5])
    parser.add_argument("--xylo-steps", type=int, default=100)
    parser.add_argument("--xylo-size", type=int, default=1000, help="inputs = hidden neurons of table 3")
    parser.add_argument("--quick", action="store_true", help="3 repeats (a smoke run)")
    parser.add_argument("--profile", action="store_true", help="also profile the integer model (table 4)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["main", "sparsity", "xylo"])
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 3
    return args


# ----------------------------------------------------------------------------- models


def shd_like(batch: int, window: int, seed: int = 0):
    """700 -> recurrent 450 -> readout 20 (float32), S-TLLR with BP, mse, batch update."""
    import torch

    from core.config import LearningConfig, NetworkConfig
    from stllr.network import SpikingNetwork

    torch.manual_seed(seed)
    network = NetworkConfig(
        input_shape=[700], neuron={"beta": 0.9, "theta": 0.6, "reset": "soft"},
        psi={"kind": "rational", "gamma": 100},
        layers=[{"kind": "recurrent", "size": 450}, {"kind": "readout", "size": 20, "beta": 0.9}])
    learning = LearningConfig(rule="stllr", window=window, learning_signal="bp", update="batch", loss="mse",
                              factors={"lambda_post": 0.5, "lambda_pre": 1.0, "alpha_post": 1.0, "alpha_pre": 1.0})
    return SpikingNetwork(network, learning)


def spikes(batch: int, steps: int, n_in: int, density: float, classes: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = (rng.random((batch, steps, n_in)) < density).astype(np.float32)
    y = rng.integers(0, classes, batch)
    return x, y


# ----------------------------------------------------------------------------- timing


def clocks():
    return time.perf_counter(), time.process_time()


def timed(fn, reset=None):
    """(wall s, cpu s) of one call; ``reset`` runs before it, untimed."""
    if reset is not None:
        reset()
    w0, c0 = clocks()
    fn()
    w1, c1 = clocks()
    return w1 - w0, c1 - c0


def interleaved(cases: dict, repeats: int, warmup: int = 2) -> dict:
    """cases: name -> (fn, reset). Returns name -> {"wall": [...], "cpu": [...]} in seconds."""
    for _ in range(warmup):
        for fn, reset in cases.values():
            timed(fn, reset)
    out = {name: {"wall": [], "cpu": []} for name in cases}
    for _ in range(repeats):
        for name, (fn, reset) in cases.items():
            wall, cpu = timed(fn, reset)
            out[name]["wall"].append(wall)
            out[name]["cpu"].append(cpu)
    return out


def med(values) -> float:
    return statistics.median(values)


def step_cases(net, x, y, lr: float = 2e-4):
    """name -> (fn, reset) for float train/infer and integer train/infer on one batch."""
    import copy

    import torch

    from fixedpoint.network import IntNetwork
    from stllr.learning import stllr_batch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    fnet = copy.deepcopy(net)
    start = copy.deepcopy(fnet.state_dict())
    opt = torch.optim.SGD(fnet.parameters(), lr=lr)

    def float_reset():
        fnet.load_state_dict(start)

    model = IntNetwork.from_float(net, lr=lr)
    params0, lanes0 = model.params, model.lanes.copy()

    def int_reset():
        model.params, model.lanes = params0, lanes0.copy()

    info = {}

    def int_infer():
        info["spike_rate"] = float(model.infer(x).spikes[0].mean())

    cases = {
        "float32 torch S-TLLR training": (lambda: stllr_batch(fnet, xt, yt, apply_update=opt.step), float_reset),
        "integer S-TLLR training": (lambda: model.train_batch(x, y), int_reset),
        "float32 torch inference": (lambda: fnet(xt), float_reset),
        "integer inference": (int_infer, int_reset),
    }
    return cases, info


def bench_steps(args, density: float, repeats: int) -> dict:
    net = shd_like(args.batch, args.window)
    x, y = spikes(args.batch, args.steps, 700, density, 20)
    cases, info = step_cases(net, x, y)
    times = interleaved(cases, repeats)
    result = {name: {k: med(v) / args.steps * 1e3 for k, v in t.items()} for name, t in times.items()}
    result["hidden spike rate"] = info["spike_rate"]
    return result


# ----------------------------------------------------------------------------- xylosim


def xylo_network(size: int, outputs: int = 8, seed: int = 0):
    """size -> linear LIF size -> readout ``outputs``; weights uniform in +-0.25 so that
    the s8.6 codes are dense (few zeros) like a dense Xylo input weight matrix."""
    import torch

    from core.config import LearningConfig, NetworkConfig
    from stllr.network import SpikingNetwork

    torch.manual_seed(seed)
    network = NetworkConfig(input_shape=[size], neuron={"beta": 0.875, "theta": 2.0, "reset": "soft"},
                            layers=[{"kind": "linear", "size": size, "bias": False},
                                    {"kind": "readout", "size": outputs, "beta": 0.875, "bias": False}])
    net = SpikingNetwork(network, LearningConfig(loss="mse"))
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.uniform_(-0.25, 0.25)
    return net


def xylo_layer(module, w_in, w_out, threshold: int, threshold_out: int):
    """A xylosim XyloLayer as Rockpool's XyloSim.from_config builds it: one synapse
    object per non-zero weight (synapse 0), no recurrence, bit-shift decays."""
    n_in, n = w_in.shape
    n_out = w_out.shape[1]
    Synapse = module.XyloSynapse
    syn_in = [[Synapse(int(j), 0, int(w_in[i, j])) for j in w_in[i].nonzero()[0]] for i in range(n_in)]
    syn_rec = [[] for _ in range(n)]
    syn_out = [[Synapse(int(j), 0, int(w_out[i, j])) for j in w_out[i].nonzero()[0]] for i in range(n)]
    kwargs = dict(synapses_in=syn_in, synapses_rec=syn_rec, synapses_out=syn_out, aliases=[[] for _ in range(n)],
                  threshold=[threshold] * n, threshold_out=[threshold_out] * n_out,
                  weight_shift_inp=0, weight_shift_rec=0, weight_shift_out=0,
                  dash_mem=[3] * n, dash_mem_out=[3] * n_out, dash_syns=[[1, 1]] * n, dash_syns_out=[[1]] * n_out,
                  name="bench")
    if "has_bias" in (module.XyloLayer.__init__.__doc__ or ""):
        kwargs.update(has_bias=False, bias=[0] * n, bias_out=[0] * n_out)
    layer = module.XyloLayer(**kwargs)
    # the C++ layer keeps raw pointers to the synapse objects: keep them alive with it
    return layer, (syn_in, syn_rec, syn_out)


def bench_xylo(args, repeats: int) -> dict | None:
    import numpy as np

    from fixedpoint.network import IntNetwork

    try:
        import xylosim.v1
        import xylosim.v2
    except ImportError:
        return None
    size, steps = args.xylo_size, args.xylo_steps
    net = xylo_network(size)
    x, _ = spikes(1, steps, size, 0.1, 8, seed=1)
    model = IntNetwork.from_float(net)
    hidden, readout = model.params.layers
    w_in = hidden.weight.T.astype(np.int8)  # (inputs, neurons), the s8.6 codes
    w_out = readout.weight.T.astype(np.int8)
    theta = int(round(2.0 * 2 ** hidden.fmts.weight.frac))  # theta = 2.0 on the weight grid
    raster = x[0].astype(np.uint8)
    raster_list = raster.tolist()
    layers, keep = {}, []
    for name, module in (("xylosim.v1", xylosim.v1), ("xylosim.v2", xylosim.v2)):
        layer, refs = xylo_layer(module, w_in, w_out, theta, 1 << 14)
        layers[name] = layer
        keep.append(refs)
    info = {}

    def ours():
        info["ours spike rate"] = float(model.infer(x).spikes[0].mean())

    cases = {"integer inference (ours)": (ours, None)}
    for name, layer in layers.items():
        cases[f"{name} evolve (list input)"] = (lambda layer=layer: layer.evolve(raster_list), layer.reset_all)
        cases[f"{name} evolve (numpy input)"] = (lambda layer=layer: layer.evolve(raster), layer.reset_all)
    times = interleaved(cases, repeats)
    result = {name: {k: med(v) / steps * 1e3 for k, v in t.items()} for name, t in times.items()}
    for name, layer in layers.items():
        layer.reset_all()
        layer.evolve(raster_list)
        info[f"{name} spike rate"] = float(np.asarray(layer.rec_recurrent_spikes).astype(bool).mean())
    result["info"] = info
    result["synapses"] = int(np.count_nonzero(w_in))
    del keep
    return result


# ----------------------------------------------------------------------------- profile


def profile_int(args, top: int = 14, runs: int = 3) -> dict:
    """Self time per function of one integer batch under cProfile; each figure is the
    minimum over ``runs`` profiled batches (robust against preemption on a busy box)."""
    import cProfile
    import pstats

    net = shd_like(args.batch, args.window)
    x, y = spikes(args.batch, args.steps, 700, args.density, 20)
    from fixedpoint.network import IntNetwork

    model = IntNetwork.from_float(net, lr=2e-4)
    params0, lanes0 = model.params, model.lanes.copy()
    model.train_batch(x, y)
    model.infer(x)
    out = {}
    for what, fn in (("training", lambda: model.train_batch(x, y)), ("inference", lambda: model.infer(x))):
        best, calls, totals = {}, {}, []
        for _ in range(runs):
            model.params, model.lanes = params0, lanes0.copy()
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            stats = pstats.Stats(prof)
            totals.append(stats.total_tt)
            for key, value in stats.stats.items():
                name = f"{Path(key[0]).name}:{key[1]}({key[2]})"
                best[name] = min(best.get(name, float("inf")), value[2])
                calls[name] = value[1]
        total = min(totals)
        rows = sorted(best.items(), key=lambda kv: -kv[1])[:top]
        out[what] = {"total_ms_per_step": total / args.steps * 1e3,
                     "rows": [(name, calls[name], tt / args.steps * 1e3, 100 * tt / total) for name, tt in rows]}
    return out


# ----------------------------------------------------------------------------- report


def setup_info(args) -> dict:
    import numba
    import numpy
    import torch

    try:
        from importlib.metadata import version

        xylo = version("xylosim")
    except Exception:  # noqa: BLE001
        xylo = "not installed"
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "MKL" if torch.backends.mkl.is_available() else "?"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "threads": f"torch {torch.get_num_threads()}, numba {numba.get_num_threads()} (integer kernels are serial)",
        "versions": f"python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__} "
                    f"({blas}), numba {numba.__version__}, xylosim {xylo}",
        "blas env": ", ".join(f"{k}={os.environ[k]}" for k in BLAS_ENV if k in os.environ) or "none set",
        "load average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "network": f"700 -> recurrent 450 -> readout 20, B={args.batch}, T={args.steps}, k={args.window}, "
                   f"binary input, BP, rational Psi, batch update, default quant formats",
        "repeats": f"{args.repeats} timed (median), 2 warm-up, interleaved",
    }


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def main(argv=None) -> int:
    args = parse_args(argv)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(key, str(args.threads))
    if args.threads > 1:
        # spinning OpenMP workers collapse when another process holds the other core
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numba
    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    console = Console(width=130)
    report = {"setup": setup_info(args)}

    table = Table(title="Setup", show_header=False)
    table.add_column()
    table.add_column()
    for key, value in report["setup"].items():
        table.add_row(key, value)
    console.print(table)

    pairs = (("training", "float32 torch S-TLLR training", "integer S-TLLR training"),
             ("inference", "float32 torch inference", "integer inference"))
    if "main" not in args.skip:
        res = bench_steps(args, args.density, args.repeats)
        report["main"] = res
        table = Table(title=f"1. ms per time step, {int(args.density * 100)} % input density "
                            f"(hidden spike rate {100 * res['hidden spike rate']:.1f} %)")
        for column in ("step", "wall ms/step", "CPU ms/step", "integer / float (wall)", "integer / float (CPU)"):
            table.add_column(column, justify="right" if column != "step" else "left")
        for _, fname, iname in pairs:
            table.add_row(fname, f"{res[fname]['wall']:.3f}", f"{res[fname]['cpu']:.3f}", "", "")
            table.add_row(iname, f"{res[iname]['wall']:.3f}", f"{res[iname]['cpu']:.3f}",
                          ratio(res[iname]["wall"], res[fname]["wall"]), ratio(res[iname]["cpu"], res[fname]["cpu"]))
        console.print(table)

    if "sparsity" not in args.skip:
        table = Table(title="2. Input-sparsity scaling, ms per time step (CPU time; wall in brackets)")
        for column in ("input density", "hidden spikes", "float train", "integer train", "int/float",
                       "float infer", "integer infer", "int/float"):
            table.add_column(column, justify="right")
        report["sparsity"] = {}
        for density in args.densities:
            res = bench_steps(args, density, max(3, args.repeats // 2))
            report["sparsity"][density] = res
            cells = []
            for _, fname, iname in pairs:
                f, i = res[fname], res[iname]
                cells += [f"{f['cpu']:.3f} ({f['wall']:.3f})", f"{i['cpu']:.3f} ({i['wall']:.3f})",
                          ratio(i["cpu"], f["cpu"])]
            table.add_row(f"{100 * density:g} %", f"{100 * res['hidden spike rate']:.1f} %", *cells)
        console.print(table)

    if "xylo" not in args.skip:
        res = bench_xylo(args, args.repeats)
        if res is None:
            console.print("3. xylosim is not importable: install it with `pip install xylosim` "
                          "(Rockpool's C++ Xylo core, built from source); table 3 skipped.")
        else:
            report["xylo"] = res
            ours = res["integer inference (ours)"]
            table = Table(title=f"3. Inference vs xylosim: {args.xylo_size} inputs -> {args.xylo_size} LIF -> 8, "
                                f"batch 1, T={args.xylo_steps}, 10 % input spikes, {res['synapses']} input synapses")
            for column in ("simulator", "wall ms/step", "CPU ms/step", "xylosim / ours (wall)",
                           "xylosim / ours (CPU)", "hidden spikes"):
                table.add_column(column, justify="right" if column != "simulator" else "left")
            info = res["info"]
            for name, t in res.items():
                if name in ("info", "synapses"):
                    continue
                rate = info.get("ours spike rate") if "ours" in name else info.get(f"{name.split()[0]} spike rate")
                mine = "ours" in name
                table.add_row(name, f"{t['wall']:.3f}", f"{t['cpu']:.3f}",
                              "" if mine else ratio(t["wall"], ours["wall"]),
                              "" if mine else ratio(t["cpu"], ours["cpu"]),
                              f"{100 * rate:.1f} %" if rate is not None else "")
            console.print(table)

    if args.profile:
        prof = profile_int(args)
        report["profile"] = prof
        for what, data in prof.items():
            table = Table(title=f"4. Integer {what}: cProfile self time per function (min of 3 batches), "
                                f"{data['total_ms_per_step']:.3f} ms/step under the profiler")
            for column in ("function", "calls", "ms/step", "% of total"):
                table.add_column(column, justify="right" if column != "function" else "left")
            for name, calls, ms, pct in data["rows"]:
                table.add_row(name, str(calls), f"{ms:.3f}", f"{pct:.0f}")
            console.print(table)

    verdict = []
    if "main" in report:
        res = report["main"]
        for label, fname, iname in pairs:
            r = res[iname]["cpu"] / res[fname]["cpu"]
            verdict.append(f"integer {label} = {r:.2f}x float (CPU; target <= 1x: {'met' if r <= 1 else 'MISSED'})")
    if "xylo" in report:
        ours = report["xylo"]["integer inference (ours)"]["cpu"]
        worst = min(t["cpu"] for name, t in report["xylo"].items() if name.startswith("xylosim"))
        verdict.append(f"ours {worst / ours:.1f}x faster per step than the fastest xylosim row "
                       f"(target >= 3x: {'met' if worst / ours >= 3 else 'MISSED'})")
    for line in verdict:
        console.print(line)
    report["verdict"] = verdict
    report["setup"]["load average after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    console.print(f"load average after: {report['setup']['load average after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
