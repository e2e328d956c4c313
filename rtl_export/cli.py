"""``rtl-export`` command line: golden vectors, their verification, RTL parameters.

    rtl-export golden --net CFG.yaml [--checkpoint PATH] --samples N --steps T --out DIR
                      [--random-density P] [--seed S]
    rtl-export verify DIR [--checkpoint PATH]
    rtl-export params --net CFG.yaml [--checkpoint PATH] --out DIR [--steps T]
    rtl-export sim GOLDEN PARAMS [--layer I] [--build DIR] [--tools icarus,verilator,lint,yosys]
    rtl-export sim --net CFG.yaml [--samples N --steps T --checkpoint PATH --random-density P --seed S]
                   [--tools verilator,icarus] [--build DIR] [--no-trace]
    rtl-export synth --net CFG.yaml --out DIR [--checkpoint PATH] [--steps T] [--freq MHZ]

Bad input (config, checkpoint of another network or one that would run code, hash
mismatch, truncated or malformed hex file, an edited manifest field, a path outside the
folder, a format wider than the RTL supports, a non-empty output directory, a flag out
of its bounds, an overflow under the ``raise`` policy) prints one line naming the file
or field to stderr and exits with code 2; nothing is written (the output directory
appears only when complete). ``golden`` prints how many values saturated or wrapped
(and records it per tensor in the manifest). ``verify`` exits with 1 when the files are
sound but the integer model computes something else (the first mismatch is named by
layer, tensor, sample, step and index), 0 when everything matches, the overflow counts
included (counts that differ while every value matches: an edited manifest, exit 2). ``sim`` exits with 1 when the RTL differs from the vectors or a
simulator fails (a missing simulator is reported and skipped).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.errors import InputError, Parser, run_cli


def _load(path: str):
    from core.config import config_to_dict, load_config

    config = load_config(path)
    return config, config_to_dict(config)


def _golden(args) -> int:
    from rtl_export.golden import golden

    config, data = _load(args.net)
    started = time.perf_counter()
    vectors = golden(config, data, Path(args.out), args.samples, args.steps,
                     checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                     density=args.random_density, seed=args.seed)
    print(f"golden: {len(vectors.entries)} tensors, {vectors.samples} samples x {vectors.steps} steps "
          f"(window {vectors.window}, {vectors.update} update) -> {args.out} "
          f"[{time.perf_counter() - started:.2f} s]")
    for line in overflow_lines(vectors.overflow):
        print(line)
    return 0


def overflow_lines(counter) -> list[str]:
    """What saturated or wrapped in a run, for the screen (the manifest has every tensor)."""
    rows = [row for row in counter.rows() if row[2]]
    if not rows:
        return ["overflow: none (no value saturated or wrapped)"]
    return [f"overflow: {counter.total_events} values saturated or wrapped (per tensor in manifest.json: overflow)"] \
        + [f"  {name}: {events} of {elements} ({fmt})" for name, fmt, events, elements in rows]


def _verify(args) -> int:
    from rtl_export.golden import verify

    started = time.perf_counter()
    mismatch, vs, vectors, notes = verify(Path(args.dir), Path(args.checkpoint) if args.checkpoint else None)
    for note in notes:
        print(f"note: {note}")
    if mismatch is not None:
        print(f"rtl-export: mismatch: {mismatch.describe()}", file=sys.stderr)
        return 1
    print(f"ok: {len(vs.entries)} files + npz, sha256 and word counts verified; integer model re-run matches "
          f"({vectors.samples} samples x {vectors.steps} steps) [{time.perf_counter() - started:.2f} s]")
    print(f"overflow: {vectors.overflow.total_events} values saturated or wrapped, as the manifest records")
    return 0


def _params(args) -> int:
    from rtl_export.params import export_params

    config, data = _load(args.net)
    files = export_params(config, data, Path(args.out), checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                          steps=args.steps)
    print(f"params: {len(files)} files -> {args.out}")
    return 0


NET_TOOLS = ("verilator", "icarus")


def _sim_net(args) -> int:
    """``sim --net CONFIG``: the whole network in the generated core against the integer model."""
    import shutil
    import tempfile

    import numpy as np

    from rtl_export.model import build_model, num_steps, window_of
    from rtl_export.netgen import rtl_network_support
    from rtl_export.netsim import NetSimError, check_build_dir, network_inputs, simulate_network

    if args.golden is not None or args.params is not None:
        raise InputError("sim: give either GOLDEN PARAMS (one layer) or --net CONFIG (the whole network), not both")
    if args.layer is not None:
        raise InputError("--layer: only with GOLDEN PARAMS (--net simulates every layer)")
    tools = tuple(dict.fromkeys(t.strip() for t in (args.tools or "verilator").split(",") if t.strip()))
    unknown = [t for t in tools if t not in NET_TOOLS]
    if unknown or not tools:
        raise InputError(f"--tools: {'unknown tool ' + repr(unknown[0])[:40] if unknown else 'no tool named'} "
                         f"(with --net choose from {', '.join(NET_TOOLS)})")
    config, _ = _load(args.net)
    steps = num_steps(config, args.steps)
    window = window_of(config, steps)
    samples = 3 if args.samples is None else args.samples
    density = args.random_density
    model, _ = build_model(config, Path(args.checkpoint) if args.checkpoint else None)
    reason = rtl_network_support(model)
    if reason:
        raise InputError(f"--net {args.net}: the RTL core does not support this network: {reason}")
    x, y, _ = network_inputs(config, model, samples, steps, density, args.seed)
    keep = args.build is not None
    if keep:
        check_build_dir(Path(args.build))
    root = Path(args.build) if keep else Path(tempfile.mkdtemp(prefix="stllr-net-"))
    status = 0
    try:
        for tool in tools:
            copy, _ = build_model(config, Path(args.checkpoint) if args.checkpoint else None)
            try:
                run = simulate_network(copy, x, y, np.ones(samples, bool), window, root / tool, tool=tool,
                                       trace=not args.no_trace)
            except NetSimError as error:
                print(f"rtl-export: {error}", file=sys.stderr)
                status = 1
                continue
            cyc = ", ".join(f"{k} {v}" for k, v in sorted(run.step_cycles.items()))
            ovf = sum(run.overflow_rtl.values())
            if run.mismatch is not None:
                print(f"rtl-export: mismatch ({tool}): {run.mismatch.describe()}", file=sys.stderr)
                status = 1
                continue
            print(f"{tool}: bit-exact, {run.values} values compared ({samples} samples x {steps} steps, "
                  f"{len(model.params.layers)} layers); cycles {run.cycles} (per step: {cyc}); "
                  f"overflow events {ovf} (equal to the model's per tensor); build {run.build_s:.1f} s, "
                  f"run {run.run_s:.2f} s")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return status


def _sim(args) -> int:
    from rtl_export.sim import TOOLS, SimError, simulate_all

    if args.net is not None:
        return _sim_net(args)
    if args.golden is None or args.params is None:
        raise InputError("sim: give GOLDEN PARAMS (one layer) or --net CONFIG (the whole network)")
    for flag, value in (("--samples", args.samples), ("--steps", args.steps), ("--checkpoint", args.checkpoint),
                        ("--random-density", args.random_density)):
        if value is not None:
            raise InputError(f"{flag}: only with --net CONFIG")
    args.layer = 0 if args.layer is None else args.layer
    args.build = "build/rtl" if args.build is None else args.build
    args.tools = "icarus,verilator,lint,yosys" if args.tools is None else args.tools
    tools = tuple(dict.fromkeys(t.strip() for t in args.tools.split(",") if t.strip()))
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise InputError(f"--tools: unknown tool {unknown[0]!r:.40} (choose from {', '.join(TOOLS)})")
    if not tools:
        raise InputError(f"--tools: no tool named (choose from {', '.join(TOOLS)})")
    try:
        simulate_all(Path(args.golden), Path(args.params), Path(args.build), args.layer, tools)
    except SimError as error:
        print(f"rtl-export: {error}", file=sys.stderr)
        return 1
    return 0


def _synth(args) -> int:
    """``synth --net CONFIG --out DIR``: Yosys synth_ice40 + nextpnr-ice40 (UP5K), DIR/report.json."""
    import json
    import shutil
    import tempfile

    from rtl_export.model import build_model, check_bound, num_steps, window_of
    from rtl_export.netgen import rtl_network_support
    from rtl_export.outdir import check_target, write_tree
    from rtl_export.synth import synthesize

    out = Path(args.out)
    check_target(out)
    config, _ = _load(args.net)
    steps = num_steps(config, args.steps)
    window = window_of(config, steps)
    check_bound("--ovf-bits", args.ovf_bits, 4, 32)
    if not (isinstance(args.freq, float) and 1.0 <= args.freq <= 500.0):
        raise InputError(f"--freq = {args.freq!r:.40} must lie in [1, 500] MHz")
    model, _ = build_model(config, Path(args.checkpoint) if args.checkpoint else None)
    reason = rtl_network_support(model)
    if reason:
        raise InputError(f"--net {args.net}: the RTL core does not support this network: {reason}")
    work = Path(tempfile.mkdtemp(prefix="stllr-synth-"))
    try:
        report = synthesize(model, steps, window, work, freq=args.freq, ovf_bits=args.ovf_bits)
        report["config"] = str(args.net)
        files = {"report.json": (json.dumps(report, indent=1) + "\n").encode()}
        for name in ("stllr_net.v", "stllr_net_ice40.v", "nextpnr.log", "synth.ys"):
            if (work / name).exists():
                files[name] = (work / name).read_bytes()
        if (work / "net.asc").exists():
            files["stllr_net_ice40.asc"] = (work / "net.asc").read_bytes()
        write_tree(out, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    y, pnr = report["yosys"], report["nextpnr"]
    lc = pnr["utilisation"].get("ICESTORM_LC", {}).get("used")
    print(f"synth: LUT4 {y['lut4']}, carry {y['carry']}, FF {y['ff']}, block RAM {y['bram_blocks']} "
          f"({y['bram_bits']} bits), SPRAM {y['spram_bits']} bits, DSP {y['dsp']}; memories "
          f"{report['memory_bits']['total']} bits")
    if report["fits"]:
        print(f"place and route ({report['device']['name']} {report['device']['package']}): logic cells {lc}/5280, "
              f"Fmax {pnr['fmax_mhz']} MHz -> {out}/report.json")
        return 0
    print(f"rtl-export: does not fit the {report['device']['name']}: {report['reason']} -> {out}/report.json",
          file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rtl-export",
                                     description="Golden vectors and RTL parameters of the integer S-TLLR model")
    commands = parser.add_subparsers(dest="command", required=True)
    gold = commands.add_parser("golden", help="run the integer model and write every state as hex + npz")
    gold.add_argument("--net", required=True, help="YAML config (network, learning, train, data, quant)")
    gold.add_argument("--checkpoint", help="float weights (stllr train's checkpoint.pt); default: train.seed init")
    gold.add_argument("--samples", type=int, required=True, help="N samples (first N of the test set)")
    gold.add_argument("--steps", type=int, required=True, help="T time steps per sample")
    gold.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    gold.add_argument("--random-density", type=float, help="random binary spikes with this density instead of data")
    gold.add_argument("--seed", type=int, default=0, help="seed of the random spikes and labels (default 0)")
    gold.set_defaults(handler=_golden)
    ver = commands.add_parser("verify", help="check a vector set's files and re-run the integer model")
    ver.add_argument("dir", help="vector set directory (with manifest.json)")
    ver.add_argument("--checkpoint", help="the checkpoint the set was made from (checks the initial weights)")
    ver.set_defaults(handler=_verify)
    par = commands.add_parser("params", help="SystemVerilog package, C header and weight memories")
    par.add_argument("--net", required=True, help="YAML config")
    par.add_argument("--checkpoint", help="float weights; default: train.seed init")
    par.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    par.add_argument("--steps", type=int, help="T for the RTL's step counter (default: data.num_steps)")
    par.set_defaults(handler=_params)
    sim = commands.add_parser("sim", help="replay a vector set through rtl/stllr_layer.v (GOLDEN PARAMS), or run "
                                          "the whole network in the generated core against the model (--net)")
    sim.add_argument("golden", nargs="?", help="vector set (rtl-export golden)")
    sim.add_argument("params", nargs="?", help="parameter export of the same config (rtl-export params)")
    sim.add_argument("--net", help="YAML config: build the whole-network core and compare it with the integer model")
    sim.add_argument("--samples", type=int, help="--net: N samples, trained one at a time (default 3)")
    sim.add_argument("--steps", type=int, help="--net: T steps (default data.num_steps)")
    sim.add_argument("--checkpoint", help="--net: float weights; default train.seed init")
    sim.add_argument("--random-density", type=float,
                     help="--net: random inputs (non-zero with this probability) instead of the test set")
    sim.add_argument("--seed", type=int, default=0, help="--net: seed of the random inputs (default 0)")
    sim.add_argument("--no-trace", action="store_true",
                     help="--net: compare final weights, predictions and overflow counts only (long runs)")
    sim.add_argument("--build", help="build directory (GOLDEN PARAMS: default build/rtl; --net: a new or empty "
                                     "folder that is kept, default a temporary one)")
    sim.add_argument("--layer", type=int, help="layer index (a dense layer with binary input; default 0)")
    sim.add_argument("--tools", help="comma-separated subset (GOLDEN PARAMS: icarus,verilator,lint,yosys, the "
                                     "default; --net: verilator (default), icarus)")
    sim.set_defaults(handler=_sim)
    syn = commands.add_parser("synth", help="Yosys synth_ice40 + nextpnr-ice40 (UP5K sg48) of the whole-network "
                                            "core: DIR/report.json")
    syn.add_argument("--net", required=True, help="YAML config")
    syn.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    syn.add_argument("--checkpoint", help="float weights; default train.seed init")
    syn.add_argument("--steps", type=int, help="T (default data.num_steps)")
    syn.add_argument("--freq", type=float, default=12.0, help="target clock for nextpnr in MHz (default 12)")
    syn.add_argument("--ovf-bits", type=int, default=32,
                     help="width of the saturating overflow counters, 4..32 (default 32, as simulated)")
    syn.set_defaults(handler=_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
