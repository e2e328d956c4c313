"""``rtl-export`` command line: golden vectors, their verification, RTL parameters.

    rtl-export golden --net CFG.yaml [--checkpoint PATH] --samples N --steps T --out DIR
                      [--random-density P] [--seed S]
    rtl-export verify DIR [--checkpoint PATH]
    rtl-export params --net CFG.yaml [--checkpoint PATH] --out DIR [--steps T]
    rtl-export sim GOLDEN PARAMS [--layer I] [--build DIR] [--tools icarus,verilator,lint,yosys]

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


def _sim(args) -> int:
    from rtl_export.sim import TOOLS, SimError, simulate_all

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
    sim = commands.add_parser("sim", help="replay a vector set through rtl/stllr_layer.v (Icarus, Verilator, Yosys)")
    sim.add_argument("golden", help="vector set (rtl-export golden)")
    sim.add_argument("params", help="parameter export of the same config (rtl-export params)")
    sim.add_argument("--build", default="build/rtl", help="build directory (default build/rtl)")
    sim.add_argument("--layer", type=int, default=0, help="layer index (a dense layer with binary input)")
    sim.add_argument("--tools", default="icarus,verilator,lint,yosys", help="comma-separated subset")
    sim.set_defaults(handler=_sim)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
