"""On-chip training of the digits network in the generated RTL core, against the integer model.

    python bench/rtl_digits_training.py                  # one pass over the training set, then the test set
    python bench/rtl_digits_training.py --train 100      # the first 100 training samples only (smoke run)
    python bench/rtl_digits_training.py --json out.json  # also save the figures

configs/digits_int.yaml (64-128-10, T = 20, k = 5, triangle Psi, 8-bit weights with a
stochastic write, 16-bit states, batch update) at batch 1, the way the core learns: every
training sample (in the order of a permutation drawn from ``numpy.random.default_rng(train.seed)``)
is one forward pass of T steps with the learning signal, eligibilities and accumulation
in the window and one weight write at its last step; then every test sample runs in
inference. The same stream goes through Verilator (the core built by
``rtl_export.netgen``; no trace) and through ``IntNetwork`` one sample at a time. Reported:
final weights and biases bit-identical or the first difference, every prediction equal,
test accuracy of both, overflow counters of both, cycles per step (training step outside
and inside the window with the write, inference step), cycles in all, Verilator build and
run time, simulated cycles per second, the model's time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = ROOT / "configs" / "digits_int.yaml"


def run_digits(build: Path, epochs: int = 1, train_limit: int | None = None, test_limit: int | None = None) -> dict:
    from core.config import load_config
    from rtl_export.model import build_model
    from rtl_export.netsim import simulate_network
    from stllr.data import load_data

    config = load_config(CONFIG)
    model, _ = build_model(config)
    train, test = load_data(config.data)
    steps = config.data.num_steps
    order = np.concatenate([np.random.default_rng(config.train.seed + e).permutation(train.num_samples)
                            for e in range(epochs)])
    if train_limit is not None:
        order = order[:train_limit]
    n_test = test.num_samples if test_limit is None else min(test_limit, test.num_samples)
    x = np.concatenate([np.asarray(train.x, np.float64)[order, :steps],
                        np.asarray(test.x, np.float64)[:n_test, :steps]])
    y = np.concatenate([np.asarray(train.y, np.int64)[order], np.asarray(test.y, np.int64)[:n_test]])
    modes = np.concatenate([np.ones(order.size, bool), np.zeros(n_test, bool)])
    run = simulate_network(model, x, y, modes, config.learning.window, build, tool="verilator", trace=False)
    test_y = y[order.size:]
    rtl_acc = float(np.mean(run.predictions[order.size:] == test_y))
    model_acc = float(np.mean(run.model_predictions[order.size:] == test_y))
    return {
        "config": str(CONFIG.relative_to(ROOT)),
        "train_samples": int(order.size), "test_samples": int(n_test), "steps": steps,
        "window": config.learning.window, "batch": 1,
        "mismatch": None if run.mismatch is None else run.mismatch.describe(),
        "values_compared": run.values,
        "rtl_test_accuracy": rtl_acc, "model_test_accuracy": model_acc,
        "cycles": run.cycles, "cycles_per_step": run.step_cycles,
        "overflow_events_rtl": sum(run.overflow_rtl.values()),
        "overflow_events_model": sum(run.overflow_model.values()),
        "overflow_rtl": run.overflow_rtl,
        "verilator_build_s": round(run.build_s, 1), "verilator_run_s": round(run.run_s, 1),
        "cycles_per_s": round(run.cycles / max(run.run_s, 1e-9)),
        "model_s": round(run.model_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, help="first N training samples only")
    parser.add_argument("--test", type=int, help="first N test samples only")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--build", help="keep the Verilator build here (default: a temporary folder)")
    args = parser.parse_args()
    started = time.perf_counter()
    with TemporaryDirectory() as tmp:
        build = Path(args.build) if args.build else Path(tmp) / "digits"
        result = run_digits(build, train_limit=args.train, test_limit=args.test)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["mismatch"] is None and result["rtl_test_accuracy"] == result["model_test_accuracy"] else 1


if __name__ == "__main__":
    sys.exit(main())
