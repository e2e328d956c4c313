"""``hwmodel`` command line: cost S-TLLR, BPTT and inference on the integer datapath.

    hwmodel estimate [--net] CONFIG [--hw HW.yaml] [--activity ACT.json] [--steps T]
                     [--modes inference,stllr,bptt] [--json | --csv] [--out FILE]
                     [--plot FILE.png] [--detail] [--timing]
    hwmodel compare  [--net] CONFIG [--hw ...] [--activity ...] [--steps T] [--ks 1,2,5,10]
                     [--steps-list 10,20,50,100] [--json | --csv] [--out FILE] [--plot FILE.png]
    hwmodel measure  [--net] CONFIG --out ACT.json [--batch B] [--batches N] [--steps T]
                     [--checkpoint CKPT] [--inference]

The config is given positionally or as ``--net CONFIG`` (not both). Bad input prints one
line naming the field or file to stderr and exits with code 2; every output is checked
before any work, and nothing is half-written (files go through a temp file and a rename,
all outputs of one command together). What the integer model would refuse but the cost
model can still cost (an eta that quantizes to 0) is a warning on stderr, in the tables
and in the JSON. Tables written to a file or a pipe are not wrapped. The estimate path
imports neither torch nor numba; ``measure`` runs the integer model (numba) on a float
network (torch).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from pathlib import Path

# The cost model does no BLAS work, but OpenBLAS starts one spinning thread per core when
# numpy is imported: about 0.1 s of CPU here, a quarter of the estimate's process time.
# One thread is enough (torch and numba keep their own pools); a user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from core.hardware import MAX_BATCH  # most samples in one measured batch
from core.errors import InputError, Parser
from core.schema import MAX_STEPS

#: Most consecutive batches ``measure --batches`` runs (hwmodel.activity.MAX_BATCHES;
#: not imported from there: the estimate path keeps the CLI's imports light).
MAX_BATCHES = 10_000
#: Most values in --ks or --steps-list (the sweep is one row per pair).
MAX_LIST = 64
#: Windows k swept by compare without --ks (those <= T).
DEFAULT_KS = (1, 2, 5, 10)


# ------------------------------------------------------------------------------ flags


def _bounded(low: int, high: int):
    """argparse type: an integer in low..high (argparse names the flag in the error)."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r:.40}")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    return parse


def _int_list(text: str, flag: str, high: int = MAX_STEPS) -> list[int]:
    """Comma-separated integers in 1..high, at most MAX_LIST, none repeated."""
    items = text.split(",")
    if not text.strip() or any(not re.fullmatch(r"\s*[0-9]+\s*", item) for item in items):
        raise InputError(f"{flag}: expected comma-separated positive integers, got {text!r:.40}")
    values = [int(item) for item in items]
    if len(values) > MAX_LIST:
        raise InputError(f"{flag}: {len(values)} values, at most {MAX_LIST}")
    for value in values:
        if not 1 <= value <= high:
            raise InputError(f"{flag}: {value} is not in 1..{high}")
    repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if repeated is not None:
        raise InputError(f"{flag}: {repeated} given twice")
    return values


def _modes(text: str) -> tuple[str, ...]:
    from hwmodel.estimate import MODES

    modes = tuple(m.strip() for m in text.split(","))
    if not any(modes):
        raise InputError("--modes: empty (choose from " + ", ".join(MODES) + ")")
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"--modes: unknown mode {mode!r:.40} (choose from {', '.join(MODES)})")
    repeated = next((m for i, m in enumerate(modes) if m in modes[:i]), None)
    if repeated is not None:
        raise InputError(f"--modes: {repeated} given twice")
    return modes


# ----------------------------------------------------------------------------- outputs


def _check_outputs(outputs: list[tuple[str, str | None]], inputs: list[str | None]) -> None:
    """Every output (flag, path) may be written: a file name, not under a file, not an
    input, not another output. Checked before any work, so a refusal writes nothing."""
    from core.atomic import check_output_file

    seen: dict[str, str] = {}
    sources = {os.path.realpath(path): path for path in inputs if path}
    for flag, path in outputs:
        if path is None:
            continue
        check_output_file(path, f"{flag} ")
        real = os.path.realpath(path)
        if real in sources:
            raise InputError(f"{flag} {path}: is the input file {sources[real]} (refusing to overwrite it)")
        if real in seen:
            raise InputError(f"{flag} {path}: the same file as {seen[real]}")
        seen[real] = flag
        folder = next(parent for parent in Path(real).parents if parent.exists())
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {path}: folder {folder} is not writable")


def _write_outputs(files: list[tuple[str, str, bytes]]) -> None:
    """Write every (flag, path, content) whole, or none of them: all temp files are written
    first and renamed together; missing folders are created (and removed on failure)."""
    from core.atomic import atomic_path

    created: list[Path] = []
    flag, path = files[0][0], files[0][1]  # the output being written, for the message
    try:
        with contextlib.ExitStack() as stack:
            for flag, path, content in files:
                missing = [p for p in reversed(Path(path).parents) if not p.exists()]
                for folder in missing:
                    folder.mkdir()
                    created.append(folder)
                tmp = stack.enter_context(atomic_path(path))
                tmp.write_bytes(content)
    except OSError as error:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise InputError(f"{flag} {path}: cannot write ({error.strerror or type(error).__name__})") from None


def _emit(text: str, out: str | None, files: list | None = None) -> None:
    """``text`` to ``--out`` (with the other ``files``, all or none) or to stdout."""
    files = list(files or [])
    if out:
        files.insert(0, ("--out", out, text.encode()))
    if files:
        _write_outputs(files)
    if not out:
        sys.stdout.write(text)


# ---------------------------------------------------------------------------- commands


def _inputs(args):
    from hwmodel.config import load_inputs

    return load_inputs(args.config, args.hw, args.steps)


def _build(args, inputs, modes):
    from hwmodel.estimate import build_layers, estimate

    activity = None
    if args.activity:
        from hwmodel.activity import load_activity

        layers = build_layers(inputs.config, inputs.quant)
        activity = load_activity(args.activity, inputs, layers)
        if not activity.train and set(modes) != {"inference"}:
            raise InputError(f"{args.activity}: run.mode: activity measured without training costs only "
                             "inference; measure a training run or pass --modes inference")
    return estimate(inputs, activity, modes)


def _text(draw) -> str:
    """What ``draw(console)`` prints, as plain text (for --out): tables whole, never wrapped."""
    from io import StringIO

    from hwmodel.textout import PlainConsole

    buffer = StringIO()
    draw(PlainConsole(buffer))
    return buffer.getvalue()


def _show(draw) -> None:
    """``draw(console)`` to stdout: a terminal gets rich tables at its width; a file or a
    pipe gets the plain tables whole (no wrapping at 80 columns)."""
    from hwmodel.textout import PlainConsole, rich_console

    draw(rich_console() if sys.stdout.isatty() else PlainConsole())


def _check_plot(path: str | None) -> None:
    if path is not None and not path.lower().endswith(".png"):
        raise InputError(f"--plot {path}: expected a .png file name")


def _warn(warnings) -> None:
    for warning in warnings:
        print(f"hwmodel: warning: {warning}", file=sys.stderr)


def _estimate(args) -> int:
    entered = time.process_time()  # the interpreter and the imports so far (the CLI module)
    started = time.perf_counter()
    import core.config  # noqa: F401  (the imports the estimate needs, timed apart)
    from hwmodel import report

    if args.activity:
        import hwmodel.activity  # noqa: F401

    imported = time.perf_counter()
    modes = _modes(args.modes)
    _check_plot(args.plot)
    _check_outputs([("--out", args.out), ("--plot", args.plot)], [args.config, args.hw, args.activity])
    est = _build(args, _inputs(args), modes)
    computed = time.perf_counter()
    if args.json:
        text = report.to_json(report.to_dict(est, detail=True))
    elif args.csv:
        text = report.to_csv(est)
    elif args.out:
        text = _text(lambda console: report.render(est, console, detail=args.detail, warnings=True))
    else:
        text = None
    plot = [("--plot", args.plot, report.plot_png(est))] if args.plot else []
    if text is None:  # the tables go straight to stdout
        if plot:
            _write_outputs(plot)
        _show(lambda console: report.render(est, console, detail=args.detail, warnings=False))
    else:
        _emit(text, args.out, plot)
    _warn(est.warnings)
    if args.timing:
        done = time.perf_counter()
        total = time.process_time()
        print(f"hwmodel timing: start-up {entered:.3f} s CPU (interpreter and the CLI's imports), "
              f"imports {imported - started:.3f} s, estimate {computed - imported:.3f} s, "
              f"render {done - computed:.3f} s; process CPU time {total:.3f} s", file=sys.stderr)
    return 0


def _compare(args) -> int:
    from hwmodel import report

    ks = _int_list(args.ks, "--ks") if args.ks is not None else None
    steps_list = _int_list(args.steps_list, "--steps-list") if args.steps_list is not None else None
    _check_plot(args.plot)
    _check_outputs([("--out", args.out), ("--plot", args.plot)], [args.config, args.hw, args.activity])
    inputs = _inputs(args)
    shortest = min(steps_list or [inputs.steps])
    if ks is None:  # the default windows that fit every T
        ks = [k for k in DEFAULT_KS if k <= shortest]
    for k in ks:
        if k > shortest:
            where = "of --steps-list" if steps_list else "(--steps or data.num_steps)"
            raise InputError(f"--ks: k = {k} exceeds T = {shortest} {where}; the window is at most T")
    est = _build(args, inputs, ("inference", "stllr", "bptt"))
    rows = report.sweep(est, ks, steps_list or [est.activity.steps])
    warnings = report.sweep_warnings(est, rows)
    plot = [("--plot", args.plot, report.sweep_png(rows, f"BPTT / S-TLLR, {Path(est.inputs.source).name}"))] \
        if args.plot else []
    if args.json:
        payload = {"config": est.inputs.source, "setup": {"steps": est.setup.steps, "window": est.setup.window,
                                                          "batch": est.setup.batch},
                   "activity": est.activity.source, "warnings": warnings,
                   "ratios_bptt_over_stllr": report.ratios(est),
                   "summary": {m: report.mode_summary(est, m) for m in est.results}, "sweep": rows}
        _emit(report.to_json(payload), args.out, plot)
        _warn(warnings)
        return 0
    if args.csv:
        _emit(report.sweep_csv(rows), args.out, plot)
        _warn(warnings)
        return 0

    def draw(console, with_warnings: bool) -> None:
        console.print(f"hwmodel compare {est.inputs.source}: {report.network_line(est)}")
        console.print("AC = synaptic accumulate (syn_add), MUL = multiply, MAC = multiply-accumulate; "
                      "memory in KiB (1024 bytes)")
        if with_warnings:  # a file stands alone; otherwise they go to stderr
            report.render_warnings(warnings, console)
        console.print(report.ratio_table(console, report.ratios(est), "BPTT / S-TLLR at the configured T and k "
                                                                      "(> 1: S-TLLR needs less)"))
        report.render_sweep(rows, console)

    if args.out:
        _emit(_text(lambda console: draw(console, True)), args.out, plot)
    else:
        if plot:
            _write_outputs(plot)
        _show(lambda console: draw(console, False))
    _warn(warnings)
    return 0


def _measure_data(config, batch_flag: int | None, batches: int = 1):
    """(x, y) of the first N x B training samples in stored order (N = ``batches``),
    checked against the network; :func:`_measure` cuts them into N batches of B."""
    import math

    import numpy as np

    from stllr.data import load_data

    train_set, _ = load_data(config.data)
    available = int(train_set.x.shape[0])
    batch = batch_flag or config.train.batch_size
    if batch > available:
        flag = "--batch" if batch_flag else "train.batch_size"
        raise InputError(f"{flag}: B = {batch} exceeds the {available} training samples of the data; "
                         "give a smaller --batch")
    if batches * batch > available:
        raise InputError(f"--batches: N = {batches} batches of B = {batch} need {batches * batch} samples, "
                         f"the data has {available} training samples; give a smaller --batches (at most "
                         f"{available // batch}) or --batch")
    x = np.asarray(train_set.x[:batches * batch], np.float64)
    y = np.asarray(train_set.y[:batches * batch])
    shape = list(config.network.input_shape)
    if math.prod(x.shape[2:]) != math.prod(shape):
        raise InputError(f"data: samples of shape {list(x.shape[2:])} do not fit network.input_shape {shape}")
    classes = config.network.layers[-1].size if config.network.layers[-1].kind == "readout" else None
    if classes is not None and y.size and int(y.max()) >= classes:
        raise InputError(f"data: label {int(y.max())} is not a class of the readout (size {classes})")
    return x.reshape(x.shape[0], x.shape[1], *shape), y


def _measure(args) -> int:
    """Run the integer model on N = ``--batches`` consecutive batches of B training samples
    and write their summed activity (the estimate costs their mean batch).

    The batches are the first N x B training samples in stored order, batch n being
    samples nB..(n+1)B-1 -- not the shuffled order of a training epoch
    (``iterate_batches(shuffle=True, seed=train.seed, epoch=0)``). Chosen so that
    ``--batches 1`` is exactly the one-batch measurement it always was (the first B
    samples: the same file, the same key-by-key equality with the integer model's
    counters, the documented figures unchanged), and so that the N-batch run starts with
    that batch and every N extends the shorter runs (batches 1..N of ``--batches N + 1``
    are ``--batches N``), whatever the data set's size (a permutation of all samples
    would change with it). The weights still evolve as on chip: each training batch is
    followed by its weight write, so batch n + 1 runs on the weights batch n left
    (``--inference`` writes nothing). The price: a data set stored sorted by class would
    give N unrepresentative batches; the bundled data sets are stored in mixed order.
    """
    from hwmodel.config import load_inputs

    _check_outputs([("--out", args.out)], [args.config, args.checkpoint])
    loaded = {}

    def data_steps(config) -> int:  # T of the data files when the config does not say
        loaded["data"] = _measure_data(config, args.batch, args.batches)
        return int(loaded["data"][0].shape[1])

    inputs = load_inputs(args.config, None, args.steps, data_steps=data_steps)
    config, quant = inputs.config, inputs.quant
    x, y = loaded["data"] if "data" in loaded else _measure_data(config, args.batch, args.batches)
    if x.shape[1] != inputs.steps:
        flag = "--steps" if args.steps else "data.num_steps"
        raise InputError(f"{flag}: the data has T = {x.shape[1]}, not {inputs.steps}")

    import torch

    from fixedpoint.config import check_learning
    from fixedpoint.network import IntNetwork
    from fixedpoint.spec import chip_optimizer
    from hwmodel.activity import measure_batches
    from stllr.network import SpikingNetwork

    check_learning(config.learning)
    checkpoint = None
    if args.checkpoint:
        from stllr.train import load_checkpoint

        checkpoint = load_checkpoint(Path(args.checkpoint), config)
    torch.manual_seed(config.train.seed)
    net = SpikingNetwork(config.network, config.learning).double()
    if checkpoint is not None:
        from stllr.train import load_weights

        load_weights(net, checkpoint, args.checkpoint)
    optimizer, betas = chip_optimizer(config.train)  # adam is measured with sgd's write
    model = IntNetwork.from_float(net, quant, lr=config.train.lr, optimizer=optimizer, betas=betas)
    size = x.shape[0] // args.batches  # B
    batches = [(x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]) for i in range(args.batches)]
    payload, _ = measure_batches(model, config, quant, batches, train=not args.inference)
    from hwmodel.report import to_json

    _write_outputs([("--out", args.out, to_json(payload).encode())])
    run, overflow = payload["run"], payload["overflow"]
    weights = (f"weights of {args.checkpoint}" if args.checkpoint
               else f"initial weights (train.seed {config.train.seed})")
    n = run.get("batches", 1)
    runs = f", {n} consecutive batches (summed; the estimate costs their mean)" if n > 1 else ""
    print(f"hwmodel: wrote {args.out} ({run['mode']}, B={run['batch']}, T={run['steps']}{runs}, {weights})")
    which = f"these {n} batches" if n > 1 else "this batch"
    print(f"overflow summary (saturate/wrap events per tensor: weight quantization and {which}):")
    print(model.overflow.summary())
    if overflow["total_events"]:
        print(f"hwmodel measure: warning: {overflow['total_events']} overflow events (saturate/wrap) in the "
              f"integer model; the counts are of clipped values (see the summary, and 'overflow' in {args.out})",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hwmodel", description="Hardware cost of S-TLLR vs BPTT vs inference")
    commands = parser.add_subparsers(dest="command", required=True)

    def config_argument(sub):
        sub.add_argument("config", nargs="?", help="YAML model file (network, learning, train, data, quant; "
                                                   "optional hardware: and activity: sections)")
        sub.add_argument("--net", metavar="CONFIG", help="the model file (instead of the positional CONFIG)")

    def common(sub):
        config_argument(sub)
        sub.add_argument("--hw", help="YAML file with a top-level hardware: section (overrides the model file's)")
        sub.add_argument("--activity", help="activity JSON measured by the integer model (hwmodel measure)")
        sub.add_argument("--steps", type=_bounded(1, MAX_STEPS), help="T (overrides data.num_steps)")
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
    cmp_.add_argument("--csv", action="store_true", help="CSV output: one row per (T, k) of the sweep")
    cmp_.add_argument("--ks", help="windows k to sweep, each <= every T (default: those of 1,2,5,10 <= T)")
    cmp_.add_argument("--steps-list", help="T values to sweep (default: the configured T)")
    cmp_.add_argument("--plot", help="PNG: the sweep's ratios vs k per T, and state memory vs T")
    cmp_.set_defaults(handler=_compare)

    meas = commands.add_parser("measure", help="run the integer model on the config's data; write activity JSON")
    config_argument(meas)
    meas.add_argument("--out", required=True, help="activity JSON to write")
    meas.add_argument("--batch", type=_bounded(1, MAX_BATCH), help="samples (default train.batch_size)")
    meas.add_argument("--batches", type=_bounded(1, MAX_BATCHES), default=1,
                      help=f"consecutive batches of B to run, 1..{MAX_BATCHES} (default 1): the first N x B "
                           "training samples, weights written after each training batch; the file sums "
                           "them, the estimate costs their mean")
    meas.add_argument("--steps", type=_bounded(1, MAX_STEPS), help="T (overrides data.num_steps)")
    meas.add_argument("--checkpoint", help="float checkpoint (stllr train) whose weights to measure "
                                           "(default: the initial weights, seeded by train.seed)")
    meas.add_argument("--inference", action="store_true", help="measure inference only (no traces, no learning)")
    meas.set_defaults(handler=_measure)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "json", False) and getattr(args, "csv", False):
        print("hwmodel: error: --json and --csv: choose one", file=sys.stderr)
        return 2
    if args.net is not None and args.config is not None:
        print(f"hwmodel {args.command}: error: the config is given twice ({args.config} and --net {args.net}): "
              "give it once", file=sys.stderr)
        return 2
    args.config = args.config if args.config is not None else args.net
    if args.config is None:
        print(f"hwmodel {args.command}: error: no config: give CONFIG or --net CONFIG", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except InputError as error:
        print(f"hwmodel: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except OSError as error:  # a file that vanished or cannot be read between the checks and the use
        where = f"{error.filename}: " if error.filename else ""
        print(f"hwmodel: error: {where}{error.strerror or type(error).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
