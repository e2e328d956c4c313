"""Float S-TLLR -> Brevitas QAT fine-tune -> integer inference on digits, per seed.

    python bench/qat_digits.py                              # seeds 0 1 2, ~2-3 min on 2 cores
    python bench/qat_digits.py --seeds 0 --float-epochs 5 --qat-epochs 1 --json out.json
    python bench/qat_digits.py --quant weight=s4.2             # narrow weights: where QAT matters

Per seed (train.seed = data.seed = seed, configs/digits.yaml: 64-128-10, S-TLLR with BP,
k = 5, cross-entropy, Adam 1e-3, default ``quant:`` formats):

1. float: S-TLLR training of the float model (``stllr.train.run_epoch``), test accuracy;
   "float+QAT-ep": the same float model trained for the QAT epochs too (same Adam state),
   so that QAT is compared with equally long float training;
2. PTQ int: the integer model of the float weights without QAT (``qat_to_int`` of an
   untrained ``QATNetwork.from_float``), test accuracy;
3. QAT: S-TLLR fine-tune of ``QATNetwork.from_float`` (same rule and optimizer, fresh
   Adam state, epochs continue the shuffling sequence), test accuracy of the Brevitas model;
4. int: ``qat_to_int`` (integer weights from Brevitas' ``.int()``) and ``IntNetwork.infer``,
   test accuracy, and the mismatches against the QAT model over the whole test set: spikes
   (b, t, neuron elements of the hidden layer), readout codes (b, t, class), predictions.

Acceptance: |int - QAT| <= 0.5 points for every seed (the paths are exact: 0 mismatches).
Accuracies are of the LAST epoch.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = ROOT / "configs" / "digits.yaml"


def run_seed(seed: int, float_epochs: int, qat_epochs: int, quant: dict) -> dict:
    import torch

    from fixedpoint.qat import QATNetwork, compare, fine_tune_and_convert, qat_to_int
    from core.config import config_to_dict, load_config, parse_config
    from stllr.data import load_data
    from stllr.train import build_network, build_optimizer, evaluate, run_epoch

    torch.set_num_threads(1)
    started = time.perf_counter()
    data = config_to_dict(load_config(CONFIG))
    data["train"]["seed"] = seed
    data["data"]["seed"] = seed
    data["quant"] = {**(data.get("quant") or {}), **quant}
    config = parse_config(data, f"digits seed {seed}")
    train_set, test_set = load_data(config.data)

    net = build_network(config)
    optimizer = build_optimizer(net, config)
    for epoch in range(float_epochs):
        run_epoch(net, optimizer, train_set, config, epoch)
    float_acc = evaluate(net, test_set).accuracy
    float_s = time.perf_counter() - started
    longer = copy.deepcopy(net)  # the float baseline with as many extra epochs as QAT gets
    longer_optimizer = build_optimizer(longer, config)
    longer_optimizer.load_state_dict(optimizer.state_dict())
    for epoch in range(float_epochs, float_epochs + qat_epochs):
        run_epoch(longer, longer_optimizer, train_set, config, epoch)
    longer_acc = evaluate(longer, test_set).accuracy

    qat = QATNetwork.from_float(net, config.quant)
    ptq = compare(qat, qat_to_int(qat), test_set.x, test_set.y)

    qat_acc, model, agreement = fine_tune_and_convert(qat, config, train_set, test_set, float_epochs, qat_epochs)
    n = test_set.num_samples
    return {
        "seed": seed,
        "float": float_acc,
        "float_longer": longer_acc,
        "ptq_int": ptq.int_correct / n,
        "ptq_mismatches": ptq.prediction_mismatches + sum(ptq.spike_mismatches) + ptq.readout_mismatches,
        "qat": qat_acc,
        "int": agreement.int_correct / n,
        "spike_mismatches": sum(agreement.spike_mismatches),
        "spike_elements": sum(agreement.spike_elements),
        "readout_mismatches": agreement.readout_mismatches,
        "prediction_mismatches": agreement.prediction_mismatches,
        "samples": n,
        "overflow_events": model.overflow.total_events,
        "float_s": float_s,
        "total_s": time.perf_counter() - started,
    }


def format_table(rows: list[dict]) -> str:
    head = ("seed", "float %", "float+QAT-ep %", "PTQ int %", "QAT %", "int %", "int-QAT", "spike mism.", "readout mism.",
            "pred. mism.", "s")
    lines = []
    for r in rows:
        lines.append((str(r["seed"]), f"{100 * r['float']:.2f}", f"{100 * r['float_longer']:.2f}",
                      f"{100 * r['ptq_int']:.2f}", f"{100 * r['qat']:.2f}",
                      f"{100 * r['int']:.2f}", f"{100 * (r['int'] - r['qat']):+.2f}",
                      f"{r['spike_mismatches']}/{r['spike_elements']}", str(r["readout_mismatches"]),
                      f"{r['prediction_mismatches']}/{r['samples']}", f"{r['total_s']:.0f}"))
    mean = lambda key: 100 * sum(r[key] for r in rows) / len(rows)  # noqa: E731
    lines.append(("mean", f"{mean('float'):.2f}", f"{mean('float_longer'):.2f}", f"{mean('ptq_int'):.2f}", f"{mean('qat'):.2f}",
                  f"{mean('int'):.2f}", f"{mean('int') - mean('qat'):+.2f}",
                  str(sum(r["spike_mismatches"] for r in rows)), str(sum(r["readout_mismatches"] for r in rows)),
                  str(sum(r["prediction_mismatches"] for r in rows)), ""))
    widths = [max(len(row[i]) for row in (head, *lines)) for i in range(len(head))]
    fmt = lambda row: "  ".join(cell.rjust(w) for cell, w in zip(row, widths))  # noqa: E731
    rule = "-" * len(fmt(head))
    return "\n".join([fmt(head), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--float-epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quant", nargs="*", default=[], metavar="KEY=FORMAT",
                        help="quant: overrides, e.g. weight=s4.2 (default: the config's formats)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        quant = dict(item.split("=", 1) for item in args.quant)
    except ValueError:
        parser.error("--quant takes KEY=FORMAT items, e.g. weight=s4.2")

    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        n = len(args.seeds)
        rows = list(pool.map(run_seed, args.seeds, [args.float_epochs] * n, [args.qat_epochs] * n, [quant] * n))
    formats = ", ".join(f"{k} {v}" for k, v in quant.items()) or "default"
    print(f"digits 64-128-10, S-TLLR (BP, k=5, ce, Adam 1e-3), quant formats: {formats}; "
          f"{args.float_epochs} float epochs + {args.qat_epochs} QAT epochs; test set accuracy (last epoch)")
    print(format_table(rows))
    worst = max(abs(r["int"] - r["qat"]) for r in rows)
    exact = all(r["spike_mismatches"] == r["readout_mismatches"] == r["prediction_mismatches"] == 0 for r in rows)
    ok = worst <= 0.005
    print(f"acceptance |int - QAT| <= 0.5 points: {'PASS' if ok else 'FAIL'} (worst {100 * worst:.2f}); "
          f"bit-exact: {'yes' if exact else 'NO'}; PTQ mismatches vs its Brevitas model: "
          f"{sum(r['ptq_mismatches'] for r in rows)}; wall {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
