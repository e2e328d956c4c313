"""Training loop: epochs of S-TLLR / BPTT / readout-only, metrics, atomic checkpoints, resume.

Output directory layout::

    OUT/checkpoint.pt   weights, optimizer state, epoch, metrics so far (written atomically each epoch)
    OUT/metrics.json    per-epoch train/test loss and accuracy, final test accuracy, rule, seed, wall time
    OUT/config.yaml     the validated config of the run

Resuming (``resume=True``) continues from the last checkpoint; because each epoch's batch
order is a function of (seed, epoch) only, the result equals an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from stllr.atomic import atomic_path, atomic_write_text
from stllr.config import Config, config_to_dict, layer_shapes
from stllr.data import EventDataset, iterate_batches, load_data
from stllr.errors import InputError
from stllr.learning import bptt_batch, evaluate_batch, learning_layers, stllr_batch, window_start
from stllr.network import SpikingNetwork

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ----------------------------------------------------------------------------- set-up


def check_data_matches(config: Config, dataset: EventDataset, source: str) -> None:
    """The network's input shape and class count must match the data."""
    if tuple(dataset.feature_shape) != tuple(config.network.input_shape):
        raise InputError(f"network.input_shape = {list(config.network.input_shape)} does not match {source} "
                         f"feature shape {list(dataset.feature_shape)}")
    classes = config.network.layers[-1].size
    if dataset.num_classes > classes:
        raise InputError(f"network.layers.{len(config.network.layers) - 1}.size = {classes} is smaller than the "
                         f"{dataset.num_classes} classes of {source}")
    try:
        window_start(dataset.num_steps, config.learning.window)
    except ValueError as error:
        raise InputError(str(error)) from None


def build_network(config: Config) -> SpikingNetwork:
    torch.manual_seed(config.train.seed)
    return SpikingNetwork(config.network, config.learning)


def build_optimizer(net: SpikingNetwork, config: Config) -> torch.optim.Optimizer:
    indices = learning_layers(net, config.learning.rule)
    params = [p for i in indices for p in net.layers[i].parameters()]
    if config.train.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.train.lr)
    return torch.optim.SGD(params, lr=config.train.lr)


def _to_tensor(x: np.ndarray) -> torch.Tensor:
    """Zero-copy uint8 view; the rules convert one time step at a time, so the float
    copy of the input does not grow with T."""
    return torch.from_numpy(np.ascontiguousarray(x))


@dataclass
class EpochStats:
    loss: float
    accuracy: float


def run_epoch(net: SpikingNetwork, optimizer, dataset: EventDataset, config: Config, epoch: int) -> EpochStats:
    """One training epoch; the batch order depends only on (seed, epoch)."""
    rule = config.learning.rule
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in iterate_batches(dataset, config.train.batch_size, shuffle=True, seed=config.train.seed, epoch=epoch):
        x_t, y_t = _to_tensor(x), torch.from_numpy(y)
        optimizer.zero_grad(set_to_none=True)
        if rule == "bptt":
            result = bptt_batch(net, x_t, y_t, apply_update=optimizer.step)
        else:
            result = stllr_batch(net, x_t, y_t, apply_update=optimizer.step, rule=rule)
        total_loss += result.loss * len(y)
        correct += result.correct
        seen += len(y)
        # Drop this batch before the iterator copies the next one: otherwise two
        # (B, T, ...) input batches are alive at once and the epoch peak grows with T.
        del x, y, x_t, y_t
    return EpochStats(total_loss / seen, correct / seen)


def evaluate(net: SpikingNetwork, dataset: EventDataset, batch_size: int = 256) -> EpochStats:
    total_loss, correct = 0.0, 0
    for x, y in iterate_batches(dataset, batch_size, shuffle=False, seed=0, epoch=0):
        result = evaluate_batch(net, _to_tensor(x), torch.from_numpy(y))
        total_loss += result.loss * len(y)
        correct += result.correct
    return EpochStats(total_loss / dataset.num_samples, correct / dataset.num_samples)


# ----------------------------------------------------------------------------- driver


def load_checkpoint(path: Path, config: Config | None = None) -> dict:
    """Load a checkpoint; with ``config``, check that it belongs to the same network."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a torn or foreign file: say which file, in one line
        raise InputError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise InputError(f"{path}: not a stllr checkpoint (missing 'model' or 'config')")
    if config is not None and checkpoint["config"]["network"] != config_to_dict(config)["network"]:
        raise InputError(f"{path}: checkpoint was trained for a different network than the config's 'network'")
    return checkpoint


def train(config: Config, out_dir: Path, resume: bool = False,
          log: Callable[[str], None] = lambda line: None, stop_after_epoch: int | None = None) -> dict:
    """Train per ``config``; write checkpoint and metrics into ``out_dir``. Returns the metrics.

    All input is validated (config, data, checkpoint) before ``out_dir`` is created, so a
    bad input leaves no partial output directory. ``stop_after_epoch`` simulates an
    interrupted run (for tests of resume).
    """
    out_dir = Path(out_dir)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    train_set, test_set = load_data(config.data)
    check_data_matches(config, train_set, "data.train")
    check_data_matches(config, test_set, "data.test")
    net = build_network(config)
    optimizer = build_optimizer(net, config)
    metrics = {"rule": config.learning.rule, "learning_signal": config.learning.learning_signal,
               "window": config.learning.window or train_set.num_steps, "num_steps": train_set.num_steps,
               "seed": config.train.seed, "epochs": [], "wall_time_s": 0.0}
    first_epoch = 0
    if resume:
        checkpoint = load_checkpoint(out_dir / CHECKPOINT, config)
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        metrics = checkpoint["metrics"]
        first_epoch = checkpoint["epoch"] + 1
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir}: output directory is not empty (use --resume to continue a run)")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    for epoch in range(first_epoch, config.train.epochs):
        started = time.perf_counter()
        train_stats = run_epoch(net, optimizer, train_set, config, epoch)
        test_stats = evaluate(net, test_set)
        metrics["wall_time_s"] += time.perf_counter() - started
        metrics["epochs"].append({"epoch": epoch, "train_loss": train_stats.loss, "train_accuracy": train_stats.accuracy,
                                  "test_loss": test_stats.loss, "test_accuracy": test_stats.accuracy})
        metrics["final_test_accuracy"] = test_stats.accuracy
        atomic_torch_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                           "metrics": metrics, "config": config_to_dict(config)}, out_dir / CHECKPOINT)
        atomic_write_text(out_dir / METRICS, json.dumps(metrics, indent=2))
        log(f"epoch {epoch + 1:3d}/{config.train.epochs}  train loss {train_stats.loss:.4f} "
            f"acc {100 * train_stats.accuracy:6.2f} %  test acc {100 * test_stats.accuracy:6.2f} %")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return metrics


def describe_network(config: Config) -> str:
    parts = [str(list(config.network.input_shape))]
    for layer, (_, out) in zip(config.network.layers, layer_shapes(config.network)):
        parts.append(f"{layer.kind}{list(out)}")
    return " -> ".join(parts)
