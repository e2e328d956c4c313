"""Final-epoch test accuracy of S-TLLR variants, BPTT and the frozen-hidden baseline.

    python bench/accuracy_table.py                       # digits and moving-edge, 3 seeds
    python bench/accuracy_table.py --tasks digits --seeds 0 1 2 --json out.json
    python bench/accuracy_table.py --task temporal       # the temporal task's own row set

``--task temporal`` runs configs/temporal.yaml (k = T) with its rows: S-TLLR (BP, k=T),
BPTT on the same network, frozen hidden, and a logistic regression on the time-summed
counts (no network: how much label the counts alone carry).

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
    "temporal": ROOT / "configs" / "temporal.yaml",
}
#: Tasks run by default (temporal has its own row set: --task temporal).
DEFAULT_TASKS = ["digits", "moving_edge"]

# name -> overrides of the task config (section -> {key: value})
VARIANTS = {
    "S-TLLR (BP, k=5)": {},
    "S-TLLR (DFA, k=5)": {"learning": {"learning_signal": "dfa"}},
    "S-TLLR (BP, k=T)": {"learning": {"window": None}},
    "BPTT (k=5 loss)": {"learning": {"rule": "bptt"}},
    "frozen hidden (readout only)": {"learning": {"rule": "readout_only"}},
}
#: Rows of ``--task temporal``: its config already has k = T; LOGREG is not a network.
LOGREG = "logistic regression on time-summed counts"
TEMPORAL_VARIANTS = {
    "S-TLLR (BP, k=T)": {},
    "BPTT (k=T loss)": {"learning": {"rule": "bptt"}},
    "frozen hidden (readout only)": {"learning": {"rule": "readout_only"}},
    LOGREG: {},
}


def logreg_on_counts(config) -> float:
    """Test accuracy (fraction) of a logistic regression on per-channel counts summed over T."""
    from sklearn.linear_model import LogisticRegression

    from stllr.data import load_data

    train_set, test_set = load_data(config.data)
    features = [ds.x.sum(axis=1).reshape(ds.num_samples, -1).astype(float) for ds in (train_set, test_set)]
    clf = LogisticRegression(max_iter=2000).fit(features[0], train_set.y)
    return float(clf.score(features[1], test_set.y))


def run_one(task: str, variant: str, seed: int) -> dict:
    import torch

    from core.config import config_to_dict, load_config, parse_config
    from stllr.train import train

    torch.set_num_threads(1)
    data = config_to_dict(load_config(TASKS[task]))
    for section, values in {**VARIANTS, **TEMPORAL_VARIANTS}[variant].items():
        data[section].update(values)
    data["train"]["seed"] = seed
    data["data"]["seed"] = seed
    config = parse_config(data, f"{task}/{variant}")
    started = time.perf_counter()
    if variant == LOGREG:
        final = logreg_on_counts(config)
    else:
        with TemporaryDirectory() as tmp:
            final = train(config, Path(tmp) / "run")["final_test_accuracy"]
    return {"task": task, "variant": variant, "seed": seed, "final": final,
            "seconds": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # temporal only through --task: its config has k = T, so the k=5 row names would be wrong.
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=DEFAULT_TASKS)
    parser.add_argument("--task", choices=["temporal"],
                        help="the temporal task with its row set (replaces --tasks and the default variants)")
    parser.add_argument("--variants", nargs="+", choices=list({**VARIANTS, **TEMPORAL_VARIANTS}))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.task:
        args.tasks = [args.task]
    if args.variants is None:
        args.variants = list(TEMPORAL_VARIANTS) if args.task else list(VARIANTS)

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
        name = "S-TLLR (BP, k=T)" if task == "temporal" else "S-TLLR (BP, k=5)"
        base = summary.get((task, name))
        for other in ("BPTT (k=5 loss)", "BPTT (k=T loss)", "frozen hidden (readout only)"):
            if base is not None and (task, other) in summary:
                print(f"{task}: {name} - {other} = {base - summary[(task, other)]:+.2f} points")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
