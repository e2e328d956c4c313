"""Final-epoch test accuracy of S-TLLR variants, BPTT and the frozen-hidden baseline.

    python bench/accuracy_table.py                       # digits and moving-edge, 3 seeds
    python bench/accuracy_table.py --tasks digits --seeds 0 1 2 --json out.json

Every variant trains the same network on the same data with the same epochs and
optimizer; only the rule differs. The seed sets both the weight init and the spike
encoding (data.seed). Reported: the accuracy of the LAST epoch, never the best one.
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

TASKS = {
    "digits": ROOT / "configs" / "digits.yaml",
    "moving_edge": ROOT / "configs" / "moving_edge.yaml",
}

# name -> overrides of the task config (section -> {key: value})
VARIANTS = {
    "S-TLLR (BP, k=5)": {},
    "S-TLLR (DFA, k=5)": {"learning": {"learning_signal": "dfa"}},
    "S-TLLR (BP, k=T)": {"learning": {"window": None}},
    "BPTT (k=5 loss)": {"learning": {"rule": "bptt"}},
    "frozen hidden (readout only)": {"learning": {"rule": "readout_only"}},
}


def run_one(task: str, variant: str, seed: int) -> dict:
    import torch

    from core.config import config_to_dict, load_config, parse_config
    from stllr.train import train

    torch.set_num_threads(1)
    data = config_to_dict(load_config(TASKS[task]))
    for section, values in VARIANTS[variant].items():
        data[section].update(values)
    data["train"]["seed"] = seed
    data["data"]["seed"] = seed
    config = parse_config(data, f"{task}/{variant}")
    with TemporaryDirectory() as tmp:
        started = time.perf_counter()
        metrics = train(config, Path(tmp) / "run")
    return {"task": task, "variant": variant, "seed": seed, "final": metrics["final_test_accuracy"],
            "seconds": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    jobs = [(t, v, s) for t in args.tasks for v in args.variants for s in args.seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, *zip(*jobs)))

    from rich.console import Console
    from rich.table import Table

    table = Table(title="Final-epoch test accuracy (%)")
    for column in ("task", "rule", "per seed", "mean", "std", "s/run"):
        table.add_column(column)
    summary = {}
    for task in args.tasks:
        for variant in args.variants:
            rows = [r for r in results if r["task"] == task and r["variant"] == variant]
            accs = [100 * r["final"] for r in rows]
            mean = statistics.mean(accs)
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            summary[(task, variant)] = mean
            table.add_row(task, variant, " ".join(f"{a:.2f}" for a in accs), f"{mean:.2f}", f"{std:.2f}",
                          f"{statistics.mean(r['seconds'] for r in rows):.1f}")
    Console().print(table)
    for task in args.tasks:
        base = summary.get((task, "S-TLLR (BP, k=5)"))
        for other in ("BPTT (k=5 loss)", "frozen hidden (readout only)"):
            if base is not None and (task, other) in summary:
                print(f"{task}: S-TLLR (BP, k=5) - {other} = {base - summary[(task, other)]:+.2f} points")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
