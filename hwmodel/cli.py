"""``hwmodel`` command line: cost S-TLLR, BPTT and inference on the integer datapath.

    hwmodel estimate CONFIG [--hw HW.yaml] [--activity ACT.json] [--steps T]
                     [--modes inference,stllr,bptt] [--json | --csv] [--out FILE]
                     [--plot FILE.png] [--detail] [--timing]
    hwmodel compare  CONFIG [--hw ...] [--activity ...] [--steps T] [--ks 1,2,5,10]
                     [--steps-list 10,20,50,100] [--json] [--out FILE]
    hwmodel measure  CONFIG --out ACT.json [--batch B] [--steps T] [--inference]

Bad input prints one line naming the field or file to stderr and exits with code 2;
nothing is half-written (files go through a temp file and a rename). The estimate path
imports neither torch nor the data loaders' heavy dependencies; ``measure`` runs the
integer model (numba) on a float network (torch).
"""

from __future__ import annotations

import argparse
import sys
import time

from stllr.errors import InputError, Parser


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise InputError(f"{flag}: expected positive integers, got {text!r}")
    return values


def _modes(text: str) -> tuple[str, ...]:
    from hwmodel.estimate import MODES

    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"--modes: unknown mode {mode!r} (choose from {', '.join(MODES)})")
    if not modes:
        raise InputError("--modes: empty")
    return modes


def _build(args, modes):
    from hwmodel.activity import load_activity
    from hwmodel.config import load_inputs
    from hwmodel.estimate import build_layers, estimate

    inputs = load_inputs(args.config, args.hw, args.steps)
    activity = None
    if args.activity:
        layers = build_layers(inputs.config, inputs.quant)
        activity = load_activity(args.activity, inputs, layers)
        if not activity.train and set(modes) != {"inference"}:
            raise InputError(f"{args.activity}: run.mode: activity measured without training costs only "
                             "inference; measure a training run or pass --modes inference")
    return estimate(inputs, activity, modes)


def _emit(text: str, out) -> None:
    from stllr.atomic import atomic_write_text

    if out:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)


def _estimate(args) -> int:
    import json

    started = time.perf_counter()
    import hwmodel.activity  # noqa: F401  (the imports the estimate needs, timed apart)
    import stllr.config  # noqa: F401
    from hwmodel import report

    imported = time.perf_counter()
    modes = _modes(args.modes)
    est = _build(args, modes)
    computed = time.perf_counter()
    if args.json:
        _emit(json.dumps(report.to_dict(est, detail=True), indent=1) + "\n", args.out)
    elif args.csv:
        _emit(report.to_csv(est), args.out)
    else:
        from rich.console import Console

        if args.out:
            from io import StringIO

            buffer = StringIO()
            report.render(est, Console(file=buffer, width=160), detail=args.detail)
            _emit(buffer.getvalue(), args.out)
        else:
            report.render(est, Console(), detail=args.detail)
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise InputError(f"--plot: {args.plot}: expected a .png file name")
        report.plot(est, args.plot)
    if args.timing:
        done = time.perf_counter()
        print(f"hwmodel timing: imports {imported - started:.3f} s, estimate {computed - imported:.3f} s, "
              f"render {done - computed:.3f} s", file=sys.stderr)
    return 0


def _compare(args) -> int:
    import json

    from hwmodel import report

    est = _build(args, ("inference", "stllr", "bptt"))
    ks = _int_list(args.ks, "--ks")
    steps_list = _int_list(args.steps_list, "--steps-list") if args.steps_list else [est.activity.steps]
    rows = report.sweep(est, ks, steps_list)
    if args.json:
        payload = {"config": est.inputs.source, "ratios_bptt_over_stllr": report.ratios(est),
                   "summary": {m: report.mode_summary(est, m) for m in est.results}, "sweep": rows}
        _emit(json.dumps(payload, indent=1) + "\n", args.out)
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]hwmodel compare[/bold] {est.inputs.source}: {report.network_line(est)}")
    rat = report.ratios(est)
    table = Table(title="BPTT / S-TLLR at the configured T and k (> 1: S-TLLR needs less)")
    for column in ("state memory", "state + grad acc", "total memory", "MACs", "MACs dense", "energy"):
        table.add_column(column, justify="right")
    table.add_row(*(report.ratio_str(rat[k]) for k in ("state_memory", "learning_memory", "total_memory", "macs",
                                                         "macs_dense", "energy")))
    console.print(table)
    report.render_sweep(rows, console)
    return 0


def _measure(args) -> int:
    import numpy as np

    from hwmodel.activity import measure_activity
    from hwmodel.config import load_inputs
    from stllr.atomic import atomic_write_json

    inputs = load_inputs(args.config, None, args.steps)
    config, quant = inputs.config, inputs.quant
    from fixedpoint.network import IntNetwork
    from stllr.data import load_data
    from stllr.network import SpikingNetwork

    import torch

    train_set, _ = load_data(config.data)
    batch = args.batch or config.train.batch_size
    x = np.asarray(train_set.x[:batch], np.float64)
    y = np.asarray(train_set.y[:batch])
    if x.shape[1] != inputs.steps:
        raise InputError(f"--steps: the data has T = {x.shape[1]}, not {inputs.steps}")
    torch.manual_seed(config.train.seed)
    net = SpikingNetwork(config.network, config.learning).double()
    model = IntNetwork.from_float(net, quant, lr=config.train.lr)
    payload, _ = measure_activity(model, config, quant, x.reshape(x.shape[0], x.shape[1], *config.network.input_shape),
                                  y, train=not args.inference)
    atomic_write_json(args.out, payload)
    print(f"hwmodel: wrote {args.out} ({payload['run']['mode']}, B={payload['run']['batch']}, "
          f"T={payload['run']['steps']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hwmodel", description="Hardware cost of S-TLLR vs BPTT vs inference")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub):
        sub.add_argument("config", help="YAML model file (network, learning, train, data, quant; "
                                        "optional hardware: and activity: sections)")
        sub.add_argument("--hw", help="YAML file with a top-level hardware: section (overrides the model file's)")
        sub.add_argument("--activity", help="activity JSON measured by the integer model (hwmodel measure)")
        sub.add_argument("--steps", type=int, help="T (overrides data.num_steps)")
        sub.add_argument("--out", help="write the output to this file instead of stdout")
        sub.add_argument("--json", action="store_true", help="JSON output")

    est = commands.add_parser("estimate", help="operations, memory, traffic, energy, latency per layer and mode")
    common(est)
    fmt = est.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV output (one row per operation key / stored tensor)")
    est.add_argument("--modes", default="inference,stllr,bptt", help="comma-separated subset of the modes")
    est.add_argument("--plot", help="PNG: energy breakdown and state memory vs T")
    est.add_argument("--detail", action="store_true", help="also print every operation key")
    est.add_argument("--timing", action="store_true", help="print import / estimate / render times to stderr")
    est.set_defaults(handler=_estimate)

    cmp_ = commands.add_parser("compare", help="S-TLLR vs BPTT ratios and a sweep over k and T")
    common(cmp_)
    cmp_.add_argument("--ks", default="1,2,5,10", help="windows k to sweep (default 1,2,5,10)")
    cmp_.add_argument("--steps-list", help="T values to sweep (default: the configured T)")
    cmp_.set_defaults(handler=_compare)

    meas = commands.add_parser("measure", help="run the integer model on the config's data; write activity JSON")
    meas.add_argument("config")
    meas.add_argument("--out", required=True, help="activity JSON to write")
    meas.add_argument("--batch", type=int, help="samples (default train.batch_size)")
    meas.add_argument("--steps", type=int, help="T (overrides data.num_steps)")
    meas.add_argument("--inference", action="store_true", help="measure inference only (no traces, no learning)")
    meas.set_defaults(handler=_measure)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "json", False) and getattr(args, "csv", False):
        print("hwmodel: error: --json and --csv: choose one", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except InputError as error:
        print(f"hwmodel: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
