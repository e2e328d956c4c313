"""QAT with the float vs the integer learning path, then integer on-chip fine-tuning, on digits.

    python bench/qat_learning_path.py                       # seeds 0 1, ~5 min on 2 loaded cores
    python bench/qat_learning_path.py --seeds 0 --float-epochs 3 --qat-epochs 1 --json out.json
    python bench/qat_learning_path.py --quant post_trace=u8.6 update=s20.10   # narrower learning path

Per seed (train.seed = data.seed = seed), the on-chip recipe of configs/digits_int.yaml
(64-128-10, triangle Psi, readout beta 0.75, S-TLLR with BP, k = 5, mse, SGD, batch 8):

1. float: S-TLLR training of the float model with the config's SGD (``--float-epochs``);
2. QAT, twice from the same float weights, the config's SGD (fresh state), ``--qat-epochs``:
   "float LP": ``QATNetwork.from_float(net)`` trained by ``stllr.learning.stllr_batch``
   (quantized forward, float traces / Psi / error / update);
   "int LP": ``QATNetwork.from_float(net, learning_path=True)`` trained by
   ``fixedpoint.qat.qat_stllr_batch`` (the integer model's learning path);
   the QAT formats are the chip's with the weight/bias write rounding nearest_even
   (Brevitas has no stochastic rounding; the weights land on the grid either way);
3. conversion (``qat_to_int``), test accuracy of the integer model (equal to QAT: exact);
4. the first on-chip batch of the fine-tune: the integer model's update accumulator
   (``IntNetwork.run(apply=False)``) times ``update_scale`` against the QAT model's grad
   for the same weights and batch: relative error ||g - g_int|| / ||g_int|| and cosine,
   over all learned tensors;
5. on-chip fine-tune: one epoch of integer S-TLLR (``fixedpoint.train.run_int_epoch``)
   with the chip's formats (stochastic weight write) and eta = lr / (B k) = 2**-17 (as
   apps/demo.py's chip stage), test accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = ROOT / "configs" / "digits_int.yaml"
FINE_TUNE_ETA = 2.0 ** -17  # per-write step of the on-chip fine-tune (apps/demo.py)


def first_update_gap(qat, model, x, y, learning_path: bool) -> tuple[float, float]:
    """(||g - g_int|| / ||g_int||, cosine) of QAT's grad vs the integer accumulator * scale."""
    import numpy as np
    import torch

    from fixedpoint.qat import qat_stllr_batch
    from stllr.learning import stllr_batch

    for param in qat.parameters():
        param.grad = None
    (qat_stllr_batch if learning_path else stllr_batch)(qat, torch.from_numpy(x), torch.from_numpy(y))
    model.run(x, y, train=True, apply=False)
    k = model.params.window or x.shape[1]
    mine, ref = [], []
    for i in model.params.learners:
        fmt = model.params.layers[i].fmts.update
        scale = model.update_scale(i, x.shape[0], k)
        for name, codes in model.last_state.layers[i].acc.items():
            ref.append(fmt.to_float(codes).reshape(-1) * scale)
            mine.append(getattr(qat.layers[i], name).grad.detach().numpy().reshape(-1))
    g, r = np.concatenate(mine), np.concatenate(ref)
    return float(np.linalg.norm(g - r) / np.linalg.norm(r)), float(g @ r / (np.linalg.norm(g) * np.linalg.norm(r)))


def run_seed(seed: int, float_epochs: int, qat_epochs: int, overrides: dict) -> dict:
    import torch

    from core.config import config_to_dict, load_config, parse_config
    from fixedpoint.network import IntNetwork
    from fixedpoint.qat import QATNetwork, compare, fine_tune_and_convert, qat_quant
    from fixedpoint.train import evaluate_int, run_int_epoch
    from stllr.data import iterate_batches, load_data
    from stllr.train import build_network, build_optimizer, evaluate, run_epoch

    torch.set_num_threads(1)
    started = time.perf_counter()
    data = config_to_dict(load_config(CONFIG))
    data["train"]["seed"] = seed
    data["data"]["seed"] = seed
    data["quant"] = {**data["quant"], **overrides}
    chip = parse_config(data, f"digits_int seed {seed}")
    quant = qat_quant(chip.quant)
    config = parse_config({**data, "quant": quant.model_dump(mode="json")}, f"digits_int QAT seed {seed}")
    train_set, test_set = load_data(config.data)

    net = build_network(config)
    optimizer = build_optimizer(net, config)
    for epoch in range(float_epochs):
        run_epoch(net, optimizer, train_set, config, epoch)
    row = {"seed": seed, "float": evaluate(net, test_set).accuracy}
    batch, k = chip.train.batch_size, chip.learning.window
    chip_lr = FINE_TUNE_ETA * batch * k
    x0, y0 = next(iter(iterate_batches(train_set, batch, shuffle=True, seed=seed, epoch=float_epochs + qat_epochs)))
    for learning_path, key in ((False, "float_lp"), (True, "int_lp")):
        qat = QATNetwork.from_float(net, config.quant, learning_path=learning_path)
        t0 = time.perf_counter()
        qat_acc, model, agreement = fine_tune_and_convert(qat, config, train_set, test_set, float_epochs, qat_epochs)
        qat_s = time.perf_counter() - t0
        on_chip = IntNetwork.from_float(model.to_float(), chip.quant, lr=chip_lr)  # weights on the grid: exact
        check = compare(qat, on_chip, test_set.x[:64])
        rel, cos = first_update_gap(qat, on_chip, x0.astype("float64"), y0, learning_path)
        run_int_epoch(on_chip, train_set, chip, float_epochs + qat_epochs)
        _, tuned, _, _ = evaluate_int(on_chip, test_set)
        n = test_set.num_samples
        row.update({f"{key}_qat": qat_acc, f"{key}_int": agreement.int_correct / n, f"{key}_exact": agreement.exact
                    and check.exact, f"{key}_tuned": tuned, f"{key}_rel": rel, f"{key}_cos": cos,
                    f"{key}_qat_s": qat_s})
    row["total_s"] = time.perf_counter() - started
    return row


def format_table(rows: list[dict]) -> str:
    head = ("seed", "float %", "path", "QAT %", "int %", "exact", "+1 int ep %", "rel.err 1st upd.",
            "cos 1st upd.", "QAT s")
    lines = []
    for r in rows:
        for key, label in (("float_lp", "float LP"), ("int_lp", "int LP")):
            lines.append((str(r["seed"]), f"{100 * r['float']:.2f}", label, f"{100 * r[key + '_qat']:.2f}",
                          f"{100 * r[key + '_int']:.2f}", "yes" if r[key + "_exact"] else "NO",
                          f"{100 * r[key + '_tuned']:.2f}", f"{r[key + '_rel']:.2e}", f"{r[key + '_cos']:.6f}",
                          f"{r[key + '_qat_s']:.0f}"))
    for key, label in (("float_lp", "float LP"), ("int_lp", "int LP")):
        mean = lambda name: sum(r[f"{key}_{name}"] for r in rows) / len(rows)  # noqa: E731
        lines.append(("mean", f"{100 * sum(r['float'] for r in rows) / len(rows):.2f}", label,
                      f"{100 * mean('qat'):.2f}", f"{100 * mean('int'):.2f}", "", f"{100 * mean('tuned'):.2f}",
                      f"{mean('rel'):.2e}", f"{mean('cos'):.6f}", ""))
    widths = [max(len(row[i]) for row in (head, *lines)) for i in range(len(head))]
    fmt = lambda row: "  ".join(cell.rjust(w) for cell, w in zip(row, widths))  # noqa: E731
    rule = "-" * len(fmt(head))
    body = len(lines) - 2
    return "\n".join([fmt(head), rule, *map(fmt, lines[:body]), rule, *map(fmt, lines[body:])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--float-epochs", type=int, default=10)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quant", nargs="*", default=[], metavar="KEY=FORMAT",
                        help="quant: overrides of the chip formats, e.g. post_trace=u8.6 update=s24.12")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        overrides = dict(item.split("=", 1) for item in args.quant)
    except ValueError:
        parser.error("--quant takes KEY=FORMAT items, e.g. post_trace=u8.6")
    started = time.perf_counter()
    n = len(args.seeds)
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_seed, args.seeds, [args.float_epochs] * n, [args.qat_epochs] * n,
                             [overrides] * n))
    formats = ", ".join(f"{k} {v}" for k, v in overrides.items()) or "the config's"
    print(f"digits 64-128-10, configs/digits_int.yaml (S-TLLR BP, k=5, mse, SGD, batch 8, triangle Psi), formats: "
          f"{formats}; "
          f"{args.float_epochs} float epochs + {args.qat_epochs} QAT epochs (SGD, lr of the config) + 1 on-chip "
          f"epoch (eta 2^{int(math.log2(FINE_TUNE_ETA))}, stochastic s8.9 write); test accuracy; 1st upd.: QAT grad "
          "vs the integer model's first on-chip update on the same batch")
    print(format_table(rows))
    exact = all(r["float_lp_exact"] and r["int_lp_exact"] for r in rows)
    matched = all(r["int_lp_rel"] == 0.0 for r in rows)
    print(f"conversion bit-exact: {'yes' if exact else 'NO'}; int LP first update equals the integer model's: "
          f"{'yes' if matched else 'NO'}; wall {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if exact and matched else 1


if __name__ == "__main__":
    raise SystemExit(main())
