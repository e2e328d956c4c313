"""``stllr sweep run`` and ``stllr sweep report`` (registered into ``stllr``'s parser by
:func:`add_sweep_commands`).

    stllr sweep run SPEC.yaml --out OUT [--workers N | --scheduler tcp://HOST:PORT]
                    [--timeout S] [--quiet]
    stllr sweep report OUT [--csv | --json] [--all] [--plots]

``run`` prints one progress line per finished run (points done, computed, cached, failed,
ETA) and, last, a JSON line with the counts; it writes OUT/results.parquet, OUT/runs.json
and OUT/plots/*.png. Exit status: 0 when the sweep finished (failed points included),
2 on bad input (one line naming the field, file or address; nothing written), 130 after
Ctrl-C (finished runs are kept; rerun to continue).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from core.errors import InputError


def _bounded(low: float, high: float, kind=int):
    def parse(text: str):
        pattern = r"\s*[0-9]+\s*" if kind is int else r"\s*[0-9]+(\.[0-9]*)?\s*"
        if not re.fullmatch(pattern, text):
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r:.40}")
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low:g}..{high:g}, got {value:g}")
        return value

    return parse


def _check_out(out: str) -> Path:
    from core.atomic import check_output_dir

    path = check_output_dir(out, "--out ")
    folder = next(parent for parent in [path.resolve(), *path.resolve().parents] if parent.exists())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: folder {folder} is not writable")
    return path


def _run(args) -> int:
    from sweep.engine import EXIT_INTERRUPTED, check_scheduler_address, run_sweep
    from sweep.spec import load_spec

    if args.scheduler is not None:
        check_scheduler_address(args.scheduler)
    plan = load_spec(args.spec)
    out = _check_out(args.out)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    log(f"sweep {args.spec}: {plan.spec.method}, {len(plan.spec.axes)} axes, grid of {plan.grid_size} points, "
        f"seeds {plan.spec.seeds} -> {out}")
    try:
        summary = run_sweep(plan, out, workers=args.workers, scheduler=args.scheduler, timeout_s=args.timeout,
                            log=log)
    except KeyboardInterrupt:
        print("stllr sweep: interrupted before the first run finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    plots = []
    if (out / "results.parquet").exists():
        from sweep.report import load_report, write_plots

        plots = [str(p) for p in write_plots(load_report(out))]
    print(json.dumps({"out": str(out), "points": summary.planned, "computed": summary.computed,
                      "cached": summary.cached, "failed": summary.failed, "front": summary.front,
                      "runs_computed": summary.runs_computed, "workers": summary.workers,
                      "interrupted": summary.interrupted, "wall_s": round(summary.wall_s, 2), "plots": plots}),
          flush=True)
    return EXIT_INTERRUPTED if summary.interrupted else 0


def _report(args) -> int:
    from sweep.report import load_report, render, to_csv, to_json, write_plots

    report = load_report(args.out, all_points=args.all)
    if args.plots:
        for path in write_plots(report):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        sys.stdout.write(to_json(report))
    elif args.csv:
        sys.stdout.write(to_csv(report))
    else:
        from rich.console import Console

        # a pipe or a file gets the whole table (rich would fold it to 80 columns)
        render(report, Console(width=None if sys.stdout.isatty() else 220))
    return 0


def add_sweep_commands(commands) -> None:
    """Add ``sweep run`` and ``sweep report`` to an argparse sub-parsers object."""
    sweep = commands.add_parser("sweep", help="co-design sweeps: formats, window, Psi, recipe -> Pareto front")
    sub = sweep.add_subparsers(dest="sweep_command", required=True)
    run = sub.add_parser("run", help="run a sweep spec on Dask into OUT (stored points are not recomputed)")
    run.add_argument("spec", help="sweep spec YAML (base, set, axes, seeds, method, objectives)")
    run.add_argument("--out", required=True, help="sweep folder (results.parquet, runs.json, plots/)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_bounded(1, 4096), help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", help="run on an existing Dask cluster: tcp://HOST:PORT of its scheduler")
    run.add_argument("--timeout", type=_bounded(0.1, 3600, float), default=10.0,
                     help="seconds to reach the scheduler and see its first worker (default 10)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(handler=_run)
    report = sub.add_parser("report", help="Pareto front and every point of a sweep folder")
    report.add_argument("out", help="sweep folder written by 'stllr sweep run'")
    fmt = report.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="one CSV row per point")
    fmt.add_argument("--json", action="store_true", help="JSON: points, front, runs (computed, cached, failed)")
    report.add_argument("--all", action="store_true", help="every stored point, not only the last run's")
    report.add_argument("--plots", action="store_true", help="rewrite OUT/plots/*.png")
    report.set_defaults(handler=_report)


def build_parser() -> argparse.ArgumentParser:
    """A parser with just ``sweep run`` / ``sweep report`` (``python -m sweep.cli``); the
    ``stllr`` command registers the same subcommands."""
    from core.errors import Parser

    parser = Parser(prog="stllr", description="Co-design sweeps of the integer S-TLLR model on Dask")
    add_sweep_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.errors import run_cli

    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
