"""On-chip (integer) S-TLLR training against the float model, and against weight width.

    python bench/int_accuracy.py                    # full run: about 5 min on 2 cores
    python bench/int_accuracy.py --quick            # smoke run: 2 epochs, seed 0, widths 4 and 8
    python bench/int_accuracy.py --json out.json    # also save every run

(a) Digits-as-spikes, 64-128-10, T = 20, k = 5 (configs/digits_int.yaml): the integer
    model trained from scratch on chip (8-bit weights, 16-bit states, stochastic weight
    write) against its float twin: the float S-TLLR model with the same config, i.e. the
    same on-chip recipe (network with triangle Psi and readout beta 0.75, loss mse, SGD,
    batch 8, lr), for seeds 0, 1, 2; and the float model with its usual Adam /
    cross-entropy config (configs/digits.yaml: rational Psi, readout beta 0.9, batch 32)
    for reference, at the same number of epochs. Reported: the accuracy of the LAST
    epoch, never the best one.
(b) Integer on-chip training against the weight width (4, 6, 8, 12, 16 bits), floor
    against stochastic rounding of the weight write (weights and biases), seed 0.
    Rule for the fraction bits: the weight RANGE stays [-0.25, 0.25) and every added bit
    is a fraction bit: s<b>.<b+1> (s4.5, s6.7, s8.9, s12.13, s16.17). Biases stay s16.12.

The seed sets the weight init, the spike encoding (data.seed), the batch order and the
stochastic-rounding lanes (quant.seed). Epochs: 30 (configs/digits_int.yaml and
configs/digits.yaml), for every run; ``--epochs`` overrides all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INT_CONFIG = ROOT / "configs" / "digits_int.yaml"
FLOAT_CONFIG = ROOT / "configs" / "digits.yaml"
BITS = (4, 6, 8, 12, 16)
ROUNDINGS = ("floor", "stochastic")
RANGE_BITS = -1  # bits - frac: integer bits incl. sign; -1 -> range [-0.25, 0.25)
TARGET_POINTS = 2.0

LABELS = {
    "int": "integer S-TLLR, on chip (SGD, mse; digits_int.yaml)",
    "float_sgd": "float S-TLLR, same recipe (SGD, mse; digits_int.yaml)",
    "float_adam": "float S-TLLR (Adam, CE; digits.yaml)",
}


def weight_format(bits: int, rounding: str) -> str:
    return f"s{bits}.{bits - RANGE_BITS} {rounding} saturate"


def run_one(job: dict) -> dict:
    """One training run in a worker (one torch thread); returns the final accuracy."""
    import torch

    from core.config import config_to_dict, load_config, parse_config
    from stllr.train import train

    from fixedpoint.train import int_train

    torch.set_num_threads(1)
    kind, seed, epochs = job["kind"], job["seed"], job["epochs"]
    data = config_to_dict(load_config(FLOAT_CONFIG if kind == "float_adam" else INT_CONFIG))
    data["train"].update(seed=seed, epochs=epochs)
    data["data"]["seed"] = seed
    if kind == "int":
        data["quant"].update(seed=seed, weight=weight_format(job["bits"], job["rounding"]),
                             bias=f"s16.12 {job['rounding']} saturate")
    else:
        data["quant"] = None  # the float loop never reads it; dropped to make that plain
    config = parse_config(data, f"{kind}/seed {seed}")
    with TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if kind == "int":
            metrics = int_train(config, Path(tmp) / "run", report=lambda text: None)
        else:
            metrics = train(config, Path(tmp) / "run")
        seconds = time.perf_counter() - started
    out = dict(job, final=metrics["final_test_accuracy"], seconds=seconds,
               per_epoch=[e["test_accuracy"] for e in metrics["epochs"]])
    if kind == "int":
        tensors = metrics["overflow"]["train"]["tensors"]
        out["weight_format"] = metrics["weight_format"]
        out["weight_saturations"] = sum(v["events"] for k, v in tensors.items() if k.endswith((".weight", ".bias")))
        out["overflow_events"] = metrics["overflow"]["train"]["total_events"]
        out["overflow_by_tensor"] = {k: v["events"] for k, v in tensors.items() if v["events"]}
        out["train_ops_per_sample"] = metrics["ops"]["train"]["per_sample"]
    return out


def _pct(values) -> str:
    return " ".join(f"{100 * v:.2f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of table (a)")
    parser.add_argument("--sweep-seeds", nargs="+", type=int, default=[0], help="seeds of table (b)")
    parser.add_argument("--bits", nargs="+", type=int, default=list(BITS), help="weight widths of table (b)")
    parser.add_argument("--epochs", type=int, help="override the configs' epochs (30)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, seed 0, widths 4 and 8")
    parser.add_argument("--json", type=Path, help="save every run's result here")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.sweep_seeds, args.bits = [0], [0], [4, 8]
        args.epochs = args.epochs or 2
    from core.config import load_config

    epochs = args.epochs or load_config(INT_CONFIG).train.epochs

    jobs = [{"kind": "int", "seed": s, "bits": 8, "rounding": "stochastic"} for s in args.seeds]
    jobs += [{"kind": "int", "seed": s, "bits": b, "rounding": r} for s in args.sweep_seeds for b in args.bits
             for r in ROUNDINGS if not (b == 8 and r == "stochastic" and s in args.seeds)]  # reuse (a)'s runs
    jobs += [{"kind": k, "seed": s} for k in ("float_sgd", "float_adam") for s in args.seeds]
    for job in jobs:
        job["epochs"] = epochs
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:  # integer runs (the longest) first
        results = list(pool.map(run_one, jobs))
    wall = time.perf_counter() - started

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    # ------------------------------------------------------------------ table (a)
    main_runs = {k: [r for r in results if r["kind"] == k and r["seed"] in args.seeds
                     and (k != "int" or (r["bits"] == 8 and r["rounding"] == "stochastic"))]
                 for k in LABELS}
    table = Table(title=f"(a) digits-as-spikes 64-128-10, T=20, k=5, {epochs} epochs: final-epoch test accuracy (%)")
    for column in ("model", "weights", "per seed", "mean", "std", "mean of last 5 epochs", "s/run"):
        table.add_column(column)
    means = {}
    for kind, label in LABELS.items():
        rows = sorted(main_runs[kind], key=lambda r: r["seed"])
        accs = [r["final"] for r in rows]
        means[kind] = 100 * statistics.mean(accs)
        std = 100 * statistics.stdev(accs) if len(accs) > 1 else 0.0
        weights = rows[0]["weight_format"].split()[0] + " " + rows[0]["weight_format"].split()[1] \
            if kind == "int" else "float32"
        tail = statistics.mean(a for r in rows for a in r["per_epoch"][-5:])
        table.add_row(label, weights, _pct(accs), f"{means[kind]:.2f}", f"{std:.2f}", f"{100 * tail:.2f}",
                      f"{statistics.mean(r['seconds'] for r in rows):.1f}")
    console.print(table)
    gap = means["float_sgd"] - means["int"]
    verdict = "reached" if gap <= TARGET_POINTS else "NOT reached"
    console.print(f"seeds {args.seeds}: float S-TLLR (SGD) - integer = {gap:+.2f} points "
                  f"(target: integer within {TARGET_POINTS:.0f} points): {verdict}")
    adam_gap = means["float_adam"] - means["float_sgd"]
    console.print(f"float S-TLLR (Adam, CE; digits.yaml) - float S-TLLR (SGD, mse; digits_int.yaml) = "
                  f"{adam_gap:+.2f} points (optimizer, loss and recipe, not the integer model)")
    overflow = {r["seed"]: r["overflow_by_tensor"] for r in main_runs["int"]}
    console.print(f"integer runs, saturate events per tensor (training, all epochs): {overflow}")
    # ------------------------------------------------------------------ table (b)
    sweep = Table(title=f"(b) integer on-chip training vs weight bits, range [-0.25, 0.25): s<b>.<b+1>; "
                        f"seed(s) {args.sweep_seeds}, {epochs} epochs: final-epoch test accuracy (%)")
    for column in ("weight bits", "format", "lsb", "floor write", "stochastic write",
                   "weight/bias saturations (floor / stochastic)"):
        sweep.add_column(column)
    for bits in args.bits:
        cells, sats = [], []
        for rounding in ROUNDINGS:
            rows = [r for r in results if r["kind"] == "int" and r["bits"] == bits and r["rounding"] == rounding
                    and r["seed"] in args.sweep_seeds]
            accs = [r["final"] for r in sorted(rows, key=lambda r: r["seed"])]
            cells.append(_pct(accs) + (f" (mean {100 * statistics.mean(accs):.2f})" if len(accs) > 1 else ""))
            sats.append(str(sum(r["weight_saturations"] for r in rows)))
        sweep.add_row(str(bits), f"s{bits}.{bits - RANGE_BITS}", f"2^-{bits - RANGE_BITS}", *cells, " / ".join(sats))
    console.print(sweep)
    console.print(f"{len(jobs)} runs, {args.workers} workers, wall {wall:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"epochs": epochs, "seeds": args.seeds, "sweep_seeds": args.sweep_seeds,
                                         "wall_s": wall, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
