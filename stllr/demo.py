"""The main job, end to end on bundled data (``make demo``).

Trains the digits-as-spikes network (64-128-10, T=20, k=5) with S-TLLR and with BPTT on
the same data, plus the frozen-hidden baseline, and prints what it found. Outputs go to
``runs/demo/<rule>/`` (checkpoint.pt, metrics.json), replaced on every run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from stllr.config import config_to_dict, load_config, parse_config
from stllr.train import describe_network, train

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "digits.yaml"


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stllr.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: the config's)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console()
    # Small matrices: one thread is faster, and it makes the figures match bench/accuracy_table.py.
    torch.set_num_threads(1)
    base = config_to_dict(load_config(CONFIG))
    if args.epochs is not None:
        base["train"]["epochs"] = args.epochs
    console.print(f"[bold]S-TLLR demo[/bold]: digits as spikes, {describe_network(parse_config(base))}, "
                  f"T={base['data']['num_steps']}, k={base['learning']['window']}, {base['train']['epochs']} epochs")
    results = {}
    for rule in ("stllr", "bptt", "readout_only"):
        data = {**base, "learning": {**base["learning"], "rule": rule}}
        config = parse_config(data, f"{CONFIG} (rule={rule})")
        out = args.out / rule
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        metrics = train(config, out, log=lambda line, rule=rule: console.print(f"  [{rule}] {line}"))
        results[rule] = (metrics["final_test_accuracy"], time.perf_counter() - started, out)

    table = Table(title="Digits-as-spikes, final-epoch test accuracy")
    for column in ("rule", "test accuracy", "train time", "output"):
        table.add_column(column)
    names = {"stllr": "S-TLLR (BP learning signal)", "bptt": "BPTT (same per-step loss)",
             "readout_only": "frozen hidden, readout only"}
    for rule, (accuracy, seconds, out) in results.items():
        table.add_row(names[rule], f"{100 * accuracy:.2f} %", f"{seconds:.1f} s", _short(out))
    console.print(table)
    gap = 100 * (results["stllr"][0] - results["readout_only"][0])
    console.print(f"S-TLLR vs BPTT: {100 * (results['stllr'][0] - results['bptt'][0]):+.2f} points; "
                  f"S-TLLR vs frozen hidden: {gap:+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
