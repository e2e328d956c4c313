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
from typing import Annotated, Callable

import numpy as np
import torch
import yaml
from pydantic import ConfigDict, Field

from core.atomic import atomic_path, atomic_write_text, remove_stale_temps
from core.config import Config, config_to_dict, layer_shapes, learning_window, parse_config
from stllr.data import EventDataset, iterate_batches, load_data
from core.errors import InputError
from stllr.learning import bptt_batch, evaluate_batch, learning_layers, stllr_batch
from stllr.optim import Lion, Signum
from stllr.network import SpikingNetwork
from stllr.rundir import check_resume_config, plan_run
from core.schema import StrictModel, validate

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
    learning_window(dataset.num_steps, config.learning.window)


def build_network(config: Config) -> SpikingNetwork:
    torch.manual_seed(config.train.seed)
    return SpikingNetwork(config.network, config.learning)


def build_optimizer(net: SpikingNetwork, config: Config) -> torch.optim.Optimizer:
    indices = learning_layers(net, config.learning.rule)
    params = [p for i in indices for p in net.layers[i].parameters()]
    betas = config.train.resolved_betas
    if config.train.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.train.lr, betas=betas)
    if config.train.optimizer == "lion":
        return Lion(params, lr=config.train.lr, betas=betas)
    if config.train.optimizer == "signum":
        return Signum(params, lr=config.train.lr, betas=betas)
    return torch.optim.SGD(params, lr=config.train.lr)


def _to_tensor(x: np.ndarray) -> torch.Tensor:
    """Zero-copy uint8 view; the rules convert one time step at a time, so the float
    copy of the input does not grow with T."""
    return torch.from_numpy(np.ascontiguousarray(x))


@dataclass
class EpochStats:
    loss: float
    accuracy: float


def run_epoch(net: SpikingNetwork, optimizer, dataset: EventDataset, config: Config, epoch: int,
              batch_fn=None) -> EpochStats:
    """One training epoch; the batch order depends only on (seed, epoch).

    ``batch_fn(net, x, y, apply_update)`` replaces the rule's batch function (e.g. the
    QAT integer learning path, ``fixedpoint.qat.qat_stllr_batch``)."""
    rule = config.learning.rule
    for group in optimizer.param_groups:  # train.lr_halve_at: derived from the epoch, so resume needs no state
        group["lr"] = config.train.lr_at(epoch)
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in iterate_batches(dataset, config.train.batch_size, shuffle=True, seed=config.train.seed, epoch=epoch):
        x_t, y_t = _to_tensor(x), torch.from_numpy(y)
        optimizer.zero_grad(set_to_none=True)
        if batch_fn is not None:
            result = batch_fn(net, x_t, y_t, apply_update=optimizer.step)
        elif rule == "bptt":
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


class EpochRecord(StrictModel):
    epoch: Annotated[int, Field(ge=0)]
    train_loss: float
    train_accuracy: Annotated[float, Field(ge=0.0, le=1.0)]
    test_loss: float
    test_accuracy: Annotated[float, Field(ge=0.0, le=1.0)]


class TrainMetrics(StrictModel):
    """``metrics.json`` of a float run, also stored in its checkpoint (read back on resume)."""

    model_config = ConfigDict(frozen=False)
    rule: str
    learning_signal: str
    window: Annotated[int, Field(gt=0)]
    num_steps: Annotated[int, Field(gt=0)]
    seed: Annotated[int, Field(ge=0)]
    epochs: list[EpochRecord]
    wall_time_s: Annotated[float, Field(ge=0.0)]
    final_test_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


#: A float checkpoint holds ``model`` (state dict) and ``config`` (the run's config);
#: a training checkpoint, which ``--resume`` needs, also ``optimizer``, ``epoch`` and
#: ``metrics`` (:class:`TrainMetrics`). Other writers (the demo's QAT stage) may store
#: their own ``metrics`` mapping in a weights-only checkpoint.
CHECKPOINT_KEYS = ("model", "config", "optimizer", "epoch", "metrics")
RESUME_KEYS = ("optimizer", "epoch", "metrics")


def _refuse_pickle(path: Path, error: Exception) -> InputError:
    text = str(error)
    # torch names a refused class/function "GLOBAL module.name"; a torn file fails on
    # an unknown opcode ("Unsupported operand") or earlier, with another exception.
    if "GLOBAL" in text or "Unsupported global" in text or "Unsupported class" in text:
        return InputError(f"{path}: refused: the file holds Python objects besides tensors and plain data "
                          "(a crafted or foreign pickle); nothing in it was run")
    return InputError(f"{path}: not a readable checkpoint ({type(error).__name__})")


def _check_tensors(mapping, path: Path, what: str) -> None:
    if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
        raise InputError(f"{path}: '{what}' must map names to tensors")
    for name, value in mapping.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise InputError(f"{path}: '{what}.{name}' is not a floating-point tensor")
        if not bool(torch.isfinite(value).all()):
            raise InputError(f"{path}: '{what}.{name}' holds NaN or infinite values")


def load_checkpoint(path: Path, config: Config | None = None, resume: bool = False) -> dict:
    """Load a float checkpoint safely and check its structure; with ``config``, check that
    it belongs to the same network; with ``resume``, that it is a training checkpoint.

    ``torch.load(weights_only=True)`` unpickles tensors and plain data only: a crafted
    file that would run code is refused with one line, and nothing in it is executed.
    Returns the checkpoint with ``config`` parsed (:class:`Config`) and, with ``resume``,
    ``metrics`` as :class:`TrainMetrics`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # crafted, torn or foreign: say which file, in one line
        raise _refuse_pickle(path, error) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise InputError(f"{path}: not a stllr checkpoint (missing 'model' or 'config')")
    extra = sorted(str(key) for key in checkpoint if key not in CHECKPOINT_KEYS)
    if extra:
        raise InputError(f"{path}: not a stllr checkpoint (unknown key {extra[0]!r:.40})")
    _check_tensors(checkpoint["model"], path, "model")
    if not isinstance(checkpoint["config"], dict):
        raise InputError(f"{path}: 'config' must be a mapping")
    parsed = dict(checkpoint)
    parsed["config"] = parse_config(checkpoint["config"], f"{path}: config")
    if config is not None and config_to_dict(parsed["config"])["network"] != config_to_dict(config)["network"]:
        raise InputError(f"{path}: checkpoint was trained for a different network than the config's 'network'")
    if "metrics" in checkpoint and not isinstance(checkpoint["metrics"], dict):
        raise InputError(f"{path}: 'metrics' must be a mapping")
    if resume:
        missing = [key for key in RESUME_KEYS if key not in checkpoint]
        if missing:
            raise InputError(f"{path}: a weights-only checkpoint (no '{missing[0]}'): it cannot be resumed")
        epoch = checkpoint["epoch"]
        if type(epoch) is not int or epoch < 0:
            raise InputError(f"{path}: 'epoch' must be an integer >= 0, got {epoch!r:.40}")
        optimizer = checkpoint["optimizer"]
        if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) \
                or not isinstance(optimizer.get("param_groups"), list):
            raise InputError(f"{path}: 'optimizer' is not an optimizer state (state, param_groups)")
        parsed["metrics"] = validate(TrainMetrics, checkpoint["metrics"], f"{path}: metrics")
    return parsed


def load_weights(net: SpikingNetwork, checkpoint: dict, source) -> None:
    """Put a checkpoint's weights into ``net``; a shape or name mismatch is one line."""
    try:
        net.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        detail = str(error).strip().splitlines()
        raise InputError(f"{source}: weights do not fit the config's network "
                         f"({detail[1].strip() if len(detail) > 1 else type(error).__name__})") from None


def _restore_optimizer(optimizer: torch.optim.Optimizer, state: dict, source: Path) -> None:
    """Load optimizer state after checking every tensor against its parameter's shape
    (a hand-edited state would otherwise load and fail in the middle of an epoch)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = state["param_groups"]
    if len(groups) != len(optimizer.param_groups) or not all(isinstance(g, dict) for g in groups):
        raise InputError(f"{source}: optimizer state has {len(groups)} parameter groups, expected "
                         f"{len(optimizer.param_groups)}")
    for index, entry in state["state"].items():
        if type(index) is not int or not 0 <= index < len(params) or not isinstance(entry, dict):
            raise InputError(f"{source}: optimizer state entry {index!r:.20} does not name a parameter")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[index].shape:
                raise InputError(f"{source}: optimizer.state.{index}.{name} has shape {list(value.shape)}, "
                                 f"expected {list(params[index].shape)}")
            if isinstance(value, torch.Tensor) and (not value.is_floating_point() or not bool(torch.isfinite(value).all())):
                raise InputError(f"{source}: optimizer.state.{index}.{name} is not a finite float tensor")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise InputError(f"{source}: optimizer state does not fit ({str(error).splitlines()[0][:80]})") from None


def train(config: Config, out_dir: Path, resume: bool = False,
          log: Callable[[str], None] = lambda line: None, stop_after_epoch: int | None = None) -> dict:
    """Train per ``config``; write checkpoint and metrics into ``out_dir``. Returns the metrics.

    All input is validated (config, output folder, data, checkpoint and its agreement
    with the config) before anything is written, so a bad input leaves ``out_dir`` as it
    was (see :mod:`stllr.rundir` for what may be resumed or restarted).
    ``stop_after_epoch`` simulates an interrupted run (for tests of resume).
    """
    out_dir = Path(out_dir)
    resuming = plan_run(out_dir, CHECKPOINT, resume)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    train_set, test_set = load_data(config.data)
    check_data_matches(config, train_set, "data.train")
    check_data_matches(config, test_set, "data.test")
    net = build_network(config)
    optimizer = build_optimizer(net, config)
    metrics = TrainMetrics(rule=config.learning.rule, learning_signal=config.learning.learning_signal,
                           window=learning_window(train_set.num_steps, config.learning.window), num_steps=train_set.num_steps,
                           seed=config.train.seed, epochs=[], wall_time_s=0.0)
    first_epoch = 0
    if resuming:
        source = out_dir / CHECKPOINT
        checkpoint = load_checkpoint(source, config, resume=True)
        check_resume_config(config_to_dict(checkpoint["config"]), config_to_dict(config), str(source))
        load_weights(net, checkpoint, source)
        _restore_optimizer(optimizer, checkpoint["optimizer"], source)
        metrics = checkpoint["metrics"]
        first_epoch = checkpoint["epoch"] + 1
        if len(metrics.epochs) != first_epoch:
            raise InputError(f"{source}: metrics hold {len(metrics.epochs)} epochs, the checkpoint is of epoch "
                             f"{checkpoint['epoch']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    for epoch in range(first_epoch, config.train.epochs):
        started = time.perf_counter()
        train_stats = run_epoch(net, optimizer, train_set, config, epoch)
        test_stats = evaluate(net, test_set)
        metrics.wall_time_s += time.perf_counter() - started
        metrics.epochs.append(EpochRecord(epoch=epoch, train_loss=train_stats.loss,
                                          train_accuracy=train_stats.accuracy, test_loss=test_stats.loss,
                                          test_accuracy=test_stats.accuracy))
        metrics.final_test_accuracy = test_stats.accuracy
        payload = metrics.model_dump(mode="json")
        atomic_torch_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                           "metrics": payload, "config": config_to_dict(config)}, out_dir / CHECKPOINT)
        atomic_write_text(out_dir / METRICS, json.dumps(payload, indent=2))
        log(f"epoch {epoch + 1:3d}/{config.train.epochs}  train loss {train_stats.loss:.4f} "
            f"acc {100 * train_stats.accuracy:6.2f} %  test acc {100 * test_stats.accuracy:6.2f} %")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return metrics.model_dump(mode="json")


def describe_network(config: Config) -> str:
    parts = [str(list(config.network.input_shape))]
    for layer, (_, out) in zip(config.network.layers, layer_shapes(config.network)):
        parts.append(f"{layer.kind}{list(out)}")
    return " -> ".join(parts)
