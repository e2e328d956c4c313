"""The main job, end to end on bundled data (``make demo``).

The task is the generated event-stream task (``stllr/data/temporal.py``: 48 channels,
T = 40, 4 classes carried by the order and timing of event pairs), where learning the
hidden layer matters: a frozen hidden layer stays near 48 %.

1. Float: the 48-128-4 network trained with S-TLLR (Adam, cross-entropy, k = T), with
   BPTT on the same data and loss, and the frozen-hidden baseline
   (``configs/temporal.yaml``).
2. QAT: the S-TLLR network fine-tuned with Brevitas fixed-point quantizers in the formats
   of the on-chip recipe ``configs/onchip_temporal.yaml`` (8-bit weights), its updates
   computed by the integer learning path (the chip's traces, Psi, softmax error and
   update accumulator), converted to the integer model, and cross-checked on the whole
   test set (spike, readout and prediction mismatches must be 0).
3. On chip: the integer model fine-tunes itself with the on-chip recipe (integer softmax
   cross-entropy, lion, stochastic weight write), starting from exactly the QAT integer
   weights; overflow report.
4. Hardware: the cost model of that network, fed with the activity the integer model
   executed on a training batch (``hwmodel estimate --activity``).

Outputs go to ``runs/demo/`` (replaced on every run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from core.config import config_to_dict, load_config, parse_config
from stllr.train import CHECKPOINT, atomic_torch_save, describe_network, train

ROOT = Path(__file__).resolve().parent.parent
FLOAT_CONFIG = ROOT / "configs" / "temporal.yaml"
INT_CONFIG = ROOT / "configs" / "onchip_temporal.yaml"
RULE_NAMES = {"stllr": "S-TLLR (BP learning signal)", "bptt": "BPTT (same per-step loss)",
              "readout_only": "frozen hidden, readout only"}


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def float_stage(console, out: Path, epochs: int | None) -> dict:
    from rich.table import Table

    base = config_to_dict(load_config(FLOAT_CONFIG))
    if epochs is not None:
        base["train"]["epochs"] = epochs
    console.rule("[bold]1. Float model: S-TLLR vs BPTT vs frozen hidden")
    window = base["learning"]["window"] or base["data"]["num_steps"]
    console.print(f"temporal event-stream task, {describe_network(parse_config(base))}, "
                  f"T={base['data']['num_steps']}, k={window}, {base['train']['epochs']} epochs, "
                  f"seed {base['train']['seed']}")
    results = {}
    for rule in RULE_NAMES:
        config = parse_config({**base, "learning": {**base["learning"], "rule": rule}}, f"{FLOAT_CONFIG} ({rule})")
        started = time.perf_counter()
        metrics = train(config, out / rule, log=lambda line, rule=rule: console.print(f"  [{rule}] {line}")
                        if line.startswith(f"epoch {config.train.epochs:3d}") else None)
        results[rule] = (metrics["final_test_accuracy"], time.perf_counter() - started)
    table = Table(title="Temporal task, final-epoch test accuracy (float)")
    for column in ("rule", "test accuracy", "train time", "output"):
        table.add_column(column)
    for rule, (accuracy, seconds) in results.items():
        table.add_row(RULE_NAMES[rule], f"{100 * accuracy:.2f} %", f"{seconds:.1f} s", _short(out / rule))
    console.print(table)
    console.print(f"S-TLLR - BPTT: {100 * (results['stllr'][0] - results['bptt'][0]):+.2f} points; "
                  f"S-TLLR - frozen hidden: {100 * (results['stllr'][0] - results['readout_only'][0]):+.2f} points")
    return {rule: accuracy for rule, (accuracy, _) in results.items()}


def qat_stage(console, out: Path, qat_epochs: int, float_epochs: int | None, learning_path: bool = True):
    """QAT fine-tune of the float S-TLLR net, conversion, cross-check. Returns (int model, ckpt).

    ``learning_path``: QAT trains through the integer learning path (integer traces, Psi,
    softmax error and update; ``fixedpoint.qat.qat_stllr_batch``), so that the on-chip
    fine-tuning of stage 3 continues the very updates QAT made; False: the float rule."""
    from fixedpoint.qat import QATNetwork, fine_tune_and_convert, qat_quant
    from stllr.data import load_data
    from stllr.train import build_network, load_checkpoint

    console.rule("[bold]2. Brevitas QAT -> integer model, cross-check")
    int_config = load_config(INT_CONFIG)
    # The chip runs the float model's loss (cross-entropy, as an integer softmax) on the
    # same network, so QAT starts from stage 1's S-TLLR model as it is.
    base = config_to_dict(load_config(FLOAT_CONFIG))
    if float_epochs is not None:
        base["train"]["epochs"] = float_epochs
    if base["network"] != config_to_dict(int_config)["network"]:
        raise RuntimeError(f"{FLOAT_CONFIG.name} and {INT_CONFIG.name} must describe the same network")
    # The QAT formats are the on-chip formats, with the weight write rounding to nearest:
    # Brevitas has no stochastic rounding, and the trained weights land on the grid anyway.
    quant = qat_quant(int_config.quant)
    config = parse_config({**base, "quant": quant.model_dump(mode="json")}, "demo QAT")
    train_set, test_set = load_data(config.data)
    net = build_network(config)
    net.load_state_dict(load_checkpoint(out / "stllr" / CHECKPOINT, config)["model"])
    qat = QATNetwork.from_float(net, config.quant, learning_path=learning_path)
    epochs = config.train.epochs
    qat_accuracy, model, agreement = fine_tune_and_convert(qat, config, train_set, test_set, epochs, qat_epochs)
    n = test_set.num_samples
    path = "integer" if learning_path else "float"
    console.print(f"QAT ({qat_epochs} S-TLLR epochs, {path} learning path, weights {quant.weight.describe_short()}, membrane "
                  f"{quant.membrane.describe_short()}): test accuracy {100 * qat_accuracy:.2f} %; "
                  f"integer model: {100 * agreement.int_correct / n:.2f} %")
    console.print(f"cross-check on {n} test samples: spike mismatches {sum(agreement.spike_mismatches)} of "
                  f"{sum(agreement.spike_elements)}, readout mismatches {agreement.readout_mismatches}, "
                  f"prediction mismatches {agreement.prediction_mismatches}; integer overflow events "
                  f"{model.overflow.total_events}")
    if not agreement.exact:
        raise RuntimeError("the integer model disagrees with its Brevitas QAT model")
    # The integer weights as a float checkpoint: every value is on its format's grid, so the
    # on-chip run quantizes them back exactly, whatever its rounding mode.
    dequantized = model.to_float()
    checkpoint = out / "qat" / CHECKPOINT
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"model": dequantized.state_dict(), "config": base, "epoch": epochs,
                       "metrics": {"qat_test_accuracy": qat_accuracy}}, checkpoint)
    return model, checkpoint, agreement


def chip_stage(console, out: Path, qat_model, checkpoint: Path, chip_epochs: int):
    """On-chip integer fine-tuning from the QAT integer weights. Returns (int model, config)."""
    import numpy as np

    from fixedpoint.train import build_int_network, int_train, load_int_checkpoint, restore_state

    console.rule("[bold]3. On-chip integer S-TLLR fine-tuning")
    data = config_to_dict(load_config(INT_CONFIG))
    data["train"]["epochs"] = chip_epochs
    # Fine-tuning a trained network takes a smaller step than training from scratch:
    # lion moves a weight by lr per write, and the recipe's 2^-13 is sized to learn from
    # a random start; 2^-16 keeps what QAT learned and refines it.
    data["train"]["lr"] = 2.0**-16
    data["train"]["lr_halve_at"] = []
    config = parse_config(data, f"{INT_CONFIG} (demo)")
    start = build_int_network(config, checkpoint)
    for mine, theirs in zip(start.params.layers, qat_model.params.layers):
        if not np.array_equal(mine.weight, theirs.weight):
            raise RuntimeError(f"layer{mine.index}: on-chip start weights differ from the QAT integer weights")
    console.print(f"starts from the QAT integer weights (bit-identical), weights {config.quant.weight.describe()}, "
                  f"{config.train.optimizer} lr {config.train.lr:g}, loss {config.learning.loss} (integer softmax), "
                  f"{chip_epochs} epochs")
    metrics = int_train(config, out / "chip", from_checkpoint=checkpoint,
                        log=lambda line: console.print(f"  [chip] {line}"), report=console.print)
    console.print(f"on-chip fine-tuned integer model: final test accuracy {100 * metrics['final_test_accuracy']:.2f} %")
    model = build_int_network(config)
    restore_state(model, load_int_checkpoint(out / "chip" / "checkpoint.npz", config), "demo")
    return model, config


def hardware_stage(console, out: Path, model, config) -> None:
    import numpy as np

    from hwmodel.activity import measure_activity
    from hwmodel.cli import main as hwmodel_main
    from core.atomic import atomic_write_json
    from stllr.data import load_data

    console.rule("[bold]4. Hardware estimate with the measured activity")
    train_set, _ = load_data(config.data)
    batch = config.train.batch_size
    x = np.asarray(train_set.x[:batch], np.float64)
    payload, _ = measure_activity(model, config, config.quant, x, np.asarray(train_set.y[:batch]), train=True,
                                  apply=False)
    activity = out / "activity.json"
    atomic_write_json(activity, payload)
    console.print(f"activity of one training batch (B={batch}) of the on-chip model: {_short(activity)}")
    code = hwmodel_main(["estimate", str(INT_CONFIG), "--activity", str(activity)])
    if code != 0:
        raise RuntimeError(f"hwmodel estimate exited with {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--epochs", type=int, default=None, help="float epochs (default: the config's)")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--chip-epochs", type=int, default=3)
    parser.add_argument("--qat-float-learning-path", action="store_true",
                        help="QAT with the float rule instead of the integer learning path (faster; the "
                             "default runs the integer traces, Psi, softmax error and update)")
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console()
    # Small matrices: one thread is faster, and it makes the figures match bench/accuracy_table.py.
    torch.set_num_threads(1)
    started = time.perf_counter()
    shutil.rmtree(args.out, ignore_errors=True)
    float_stage(console, args.out, args.epochs)
    qat_model, checkpoint, _ = qat_stage(console, args.out, args.qat_epochs, args.epochs,
                                         not args.qat_float_learning_path)
    chip_model, chip_config = chip_stage(console, args.out, qat_model, checkpoint, args.chip_epochs)
    hardware_stage(console, args.out, chip_model, chip_config)
    console.rule(f"demo done in {time.perf_counter() - started:.0f} s; outputs in {_short(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
