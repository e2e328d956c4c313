"""On-chip training of the integer model: epochs of S-TLLR with SGD, metrics, atomic
integer checkpoints, resume with identical bits.

Output directory layout (``stllr int-train --out OUT``)::

    OUT/checkpoint.npz  integer state: every weight/bias/feedback code (int64, its format
                        beside it), the xorshift32 lanes, the epoch, the config, the
                        metrics and the counters so far (written atomically each epoch)
    OUT/metrics.json    per-epoch train/test loss and accuracy, final test accuracy,
                        overflow events per tensor, op-count summary, wall time
    OUT/config.yaml     the validated config of the run

The data pipeline is the float loop's (:func:`stllr.data.load_data`,
:func:`stllr.data.iterate_batches` with the (seed, epoch) order), the initial float
weights are the float loop's (``torch.manual_seed(train.seed)``), quantized by
:meth:`fixedpoint.network.IntNetwork.from_float`; or, with ``from_checkpoint``, the
weights of a float ``checkpoint.pt`` (fine-tuning on chip). Everything after that is
integer: :meth:`IntNetwork.train_batch` per batch (eta = lr / (B k), see
docs/int_training.md) and :meth:`IntNetwork.infer` for the test accuracy.

Resume: the integer state is the weight codes plus the lanes (accumulators are zero
between batches), and each epoch's batch order depends on (seed, epoch) only, so a run
resumed from the checkpoint of epoch e ends with the same bits as an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import yaml
from pydantic import ConfigDict, Field

from core.atomic import remove_stale_temps
from core.errors import InputError
from stllr.rundir import check_resume_config, plan_run
from stllr.train import EpochRecord
from core.schema import StrictModel, validate

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
FORMAT_VERSION = 1
_TENSORS = ("weight", "rec_weight", "bias", "feedback")


def _quiet(line: str) -> None:
    return None


# ----------------------------------------------------------------------------- set-up


def check_int_config(config) -> None:
    """What the integer trainer needs beyond the schema: sgd or lion with shift betas (the
    loss/rule checks are :func:`fixedpoint.config.check_learning`, run by
    ``IntNetwork.from_float``)."""
    from fixedpoint.spec import optimizer_spec

    optimizer_spec(config.train.optimizer, config.train.resolved_betas)


def quant_of(config):
    """The ``quant:`` section, or the defaults of :class:`QuantConfig` when absent."""
    from core.quant import QuantConfig

    return config.quant if config.quant is not None else QuantConfig()


def build_int_network(config, from_checkpoint: Path | None = None):
    """The float network of the float loop (same seed), optionally loaded from a float
    checkpoint, quantized into an :class:`IntNetwork`. Raises InputError naming fields."""
    from fixedpoint.network import IntNetwork
    from stllr.train import build_network, load_checkpoint, load_weights

    net = build_network(config).double()
    if from_checkpoint is not None:
        load_weights(net, load_checkpoint(Path(from_checkpoint), config), from_checkpoint)
    return IntNetwork.from_float(net, quant_of(config), lr=config.train.lr, optimizer=config.train.optimizer,
                                 betas=config.train.resolved_betas)


def check_learning_rates(model, config, num_samples: int, num_steps: int) -> None:
    """eta = lr / (B k) must fit quant.learning_rate for every batch size the epoch uses and
    every lr of the schedule."""
    from core.config import learning_window

    k = learning_window(num_steps, config.learning.window)
    batch = config.train.batch_size
    sizes = {min(batch, num_samples)}
    if num_samples % batch:
        sizes.add(num_samples % batch)
    for lr in config.train.learning_rates:  # every rate of train.lr_halve_at's schedule
        for size in sorted(sizes):
            try:
                model.etas(size, k, lr)
            except InputError as error:
                if lr == config.train.lr:
                    raise
                raise InputError(f"train.lr_halve_at: the halved lr {lr!r} fails: {error}") from None


# ----------------------------------------------------------------------------- state


def _float_window_loss(result, target: np.ndarray, model, num_steps: int) -> float:
    """The float loop's objective on the integer readout (reporting only): per sample the
    mean over the window of 0.5 ||y[t] - onehot||^2 (mse) or of the cross-entropy of
    softmax(y[t]) (ce, exact float softmax), summed over the batch."""
    from core.config import window_start

    start = window_start(num_steps, model.params.window)
    fmt = model.params.layers[-1].fmts.membrane
    y = fmt.to_float(result.readout[:, start:])  # (B, k, classes)
    rows = np.arange(y.shape[0])
    if model.params.loss == "ce":
        top = y.max(-1, keepdims=True)
        log_total = np.log(np.exp(y - top).sum(-1)) + top[..., 0]
        return float((log_total - y[rows, :, target]).mean(1).sum())
    onehot = np.zeros((y.shape[0], y.shape[-1]))
    onehot[rows, target] = 1.0
    return float((0.5 * ((y - onehot[:, None, :]) ** 2).sum(-1)).mean(1).sum())


def state_arrays(model) -> dict[str, np.ndarray]:
    """Every stored integer of the model: ``layer<i>.<tensor>`` codes and ``lanes``."""
    arrays = {}
    for lp in model.params.layers:
        for tensor in _TENSORS:
            value = getattr(lp, tensor)
            if value is not None:
                arrays[f"{lp.name}.{tensor}"] = np.ascontiguousarray(value, dtype=np.int64)
    for (index, tensor), value in sorted((model.momentum or {}).items()):
        arrays[f"layer{index}.momentum_{tensor}"] = np.ascontiguousarray(value, dtype=np.int64)
    arrays["lanes"] = np.ascontiguousarray(model.lanes, dtype=np.uint32)
    return arrays


def state_formats(model) -> dict[str, str]:
    out = {}
    for lp in model.params.layers:
        fmts = {"weight": lp.fmts.weight, "rec_weight": lp.fmts.weight, "bias": lp.fmts.bias,
                "feedback": lp.fmts.feedback}
        for tensor in _TENSORS:
            if getattr(lp, tensor) is not None:
                out[f"{lp.name}.{tensor}"] = fmts[tensor].describe()
    for index, tensor in sorted(model.momentum or {}):
        out[f"layer{index}.momentum_{tensor}"] = model.momentum_format(index).describe()
    return out


def _counters_to_json(overflow, ops) -> dict:
    return {"overflow": [list(row) for row in overflow.rows()], "ops": [list(row) for row in ops.rows()]}


def _counters_from_json(data: "Counters", source: str):
    from core.counters import OpCounter
    from core.formats import FixedFormat
    from core.overflow import OverflowCounter

    overflow, ops = OverflowCounter(), OpCounter()
    for name, text, events, elements in data.overflow:
        try:
            fmt = FixedFormat.parse(text)
        except ValueError:
            raise InputError(f"{source}: counters: overflow row {name!r} has a bad format {text!r:.40}") from None
        overflow.record(name, fmt, events=events, elements=elements)
    for layer, phase, kind, width, tensor, count in data.ops:
        ops.add(layer, phase, kind, width, count, tensor)
    return overflow, ops


def _json_array(value) -> np.ndarray:
    return np.array(json.dumps(value, sort_keys=True))


def save_int_checkpoint(path: Path, model, epoch: int, metrics: dict, config, counters: dict) -> None:
    """Atomic npz: integer arrays, their formats, epoch, config, metrics, counters."""
    from core.config import config_to_dict
    from core.atomic import atomic_write_bytes

    payload = dict(state_arrays(model))
    payload["epoch"] = np.array(epoch, np.int64)
    payload["version"] = np.array(FORMAT_VERSION, np.int64)
    payload["formats"] = _json_array(state_formats(model))
    payload["config"] = _json_array(config_to_dict(config))
    payload["metrics"] = _json_array(metrics)
    payload["counters"] = _json_array(counters)
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    atomic_write_bytes(Path(path), buffer.getvalue())


class IntEpochRecord(EpochRecord):
    """The float loop's epoch record plus the overflow events of the integer run."""

    train_overflow_events: Annotated[int, Field(ge=0)]
    test_overflow_events: Annotated[int, Field(ge=0)]


class IntTrainMetrics(StrictModel):
    """``metrics.json`` of an integer run, also stored in its checkpoint (read on resume)."""

    model_config = ConfigDict(frozen=False)
    model: Literal["integer"]
    rule: str
    learning_signal: str
    window: Annotated[int, Field(gt=0)]
    num_steps: Annotated[int, Field(gt=0)]
    seed: Annotated[int, Field(ge=0)]
    lr: float
    batch_size: Annotated[int, Field(gt=0)]
    init: Literal["scratch", "float checkpoint"]
    init_checkpoint: str | None
    weight_format: str
    epochs: list[IntEpochRecord]
    wall_time_s: Annotated[float, Field(ge=0.0)]
    final_test_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    overflow: dict[str, dict] | None = None
    ops: dict[str, dict] | None = None


class Counters(StrictModel):
    """Overflow and op counters of a run: rows of :class:`OverflowCounter` / :class:`OpCounter`."""

    # JSON has no tuples: a row is a list, checked field by field (strict items)
    overflow: list[Annotated[tuple[str, str, Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]],
                             Field(strict=False)]]
    ops: list[Annotated[tuple[str, str, str, str, str, Annotated[int, Field(ge=0)]], Field(strict=False)]]


_METADATA = {"formats": None, "config": None, "metrics": IntTrainMetrics, "counters": Counters}


def load_int_checkpoint(path: Path, config=None) -> dict:
    """Read an integer checkpoint and check its structure; with ``config``, check it is
    for the same network. Returns {"arrays", "formats", "epoch", "config" (dict),
    "metrics" (:class:`IntTrainMetrics`), "counters" (overflow and op counters)}."""
    from core.config import config_to_dict, parse_config
    from stllr.data.events import check_npz_member

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a readable integer checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in data.zip.namelist():
                check_npz_member(data.zip, name, str(path))
            contents = {key: data[key] for key in data.files}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: not a readable integer checkpoint ({type(error).__name__})") from None
    required = ("epoch", "version", "formats", "config", "metrics", "counters", "lanes")
    missing = [key for key in required if key not in contents]
    if missing:
        raise InputError(f"{path}: not an integer (int-train) checkpoint (missing {', '.join(missing)})")
    for key in ("epoch", "version"):
        if contents[key].shape != () or contents[key].dtype.kind not in "iu":
            raise InputError(f"{path}: '{key}' must be one integer, got {contents[key].dtype} {list(contents[key].shape)}")
    if int(contents["version"]) != FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format version {int(contents['version'])}, expected {FORMAT_VERSION}")
    if int(contents["epoch"]) < 0:
        raise InputError(f"{path}: 'epoch' must be >= 0")
    loaded = {}
    for key, model in _METADATA.items():
        value = contents[key]
        if value.shape != () or value.dtype.kind != "U":
            raise InputError(f"{path}: '{key}' must be one JSON string, got {value.dtype} {list(value.shape)}")
        try:
            loaded[key] = json.loads(str(value))
        except json.JSONDecodeError:
            raise InputError(f"{path}: damaged integer checkpoint (unreadable '{key}')") from None
        if model is not None:
            loaded[key] = validate(model, loaded[key], f"{path}: {key}")
    formats = loaded["formats"]
    if not isinstance(formats, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in formats.items()):
        raise InputError(f"{path}: 'formats' must map tensor names to format strings")
    if not isinstance(loaded["config"], dict):
        raise InputError(f"{path}: 'config' must be a mapping")
    parse_config(loaded["config"], f"{path}: config")
    if config is not None:
        if loaded["config"]["network"] != config_to_dict(config)["network"]:
            raise InputError(f"{path}: checkpoint was trained for a different network than the config's 'network'")
    arrays = {key: value for key, value in contents.items() if key not in required or key == "lanes"}
    return {"arrays": arrays, "formats": formats, "epoch": int(contents["epoch"]),
            "config": loaded["config"], "metrics": loaded["metrics"],
            "counters": _counters_from_json(loaded["counters"], str(path))}


def restore_state(model, checkpoint: dict, source: str) -> None:
    """Put the checkpoint's codes, lanes and optimizer state into ``model`` (built from the
    same config).

    Every tensor must exist with the same shape and format and lie inside its format's
    range; otherwise InputError names the tensor."""
    arrays, formats = checkpoint["arrays"], checkpoint["formats"]
    wanted = state_formats(model)
    extra = sorted(set(formats) - set(wanted))
    if extra:
        raise InputError(f"{source}: tensor {extra[0]} is not in the config's network")

    def checked(name: str, current: np.ndarray, fmt) -> np.ndarray:
        if name not in arrays or name not in formats:
            raise InputError(f"{source}: tensor {name} missing")
        if formats[name] != wanted[name]:
            raise InputError(f"{source}: {name} is stored as {formats[name]} but the config's quant gives "
                             f"{wanted[name]}")
        value = arrays[name]
        if value.dtype != np.int64 or value.shape != current.shape:
            raise InputError(f"{source}: {name} has shape {list(value.shape)} ({value.dtype}), "
                             f"expected {list(current.shape)} (int64)")
        if value.size and (int(value.min()) < fmt.min_int or int(value.max()) > fmt.max_int):
            raise InputError(f"{source}: {name} holds codes outside {fmt.describe_short()}")
        return value.copy()

    layers = []
    for lp in model.params.layers:
        fmts = {"weight": lp.fmts.weight, "rec_weight": lp.fmts.weight, "bias": lp.fmts.bias,
                "feedback": lp.fmts.feedback}
        changes = {tensor: checked(f"{lp.name}.{tensor}", getattr(lp, tensor), fmts[tensor])
                   for tensor in _TENSORS if getattr(lp, tensor) is not None}
        layers.append(replace(lp, **changes))
    momentum = None
    if model.momentum is not None:
        momentum = {(index, tensor): checked(f"layer{index}.momentum_{tensor}", current,
                                             model.momentum_format(index))
                    for (index, tensor), current in model.momentum.items()}
    lanes = arrays["lanes"]
    if lanes.dtype != np.uint32 or lanes.shape != model.lanes.shape or (lanes.size and not lanes.all()):
        raise InputError(f"{source}: lanes must be {model.lanes.size} non-zero uint32 states")
    model.params = replace(model.params, layers=tuple(layers))
    model.lanes = lanes.copy()
    model.momentum = momentum


# ----------------------------------------------------------------------------- loops


def run_int_epoch(model, dataset, config, epoch: int) -> tuple[float, float]:
    """One epoch of on-chip training in the float loop's (seed, epoch) batch order.
    Returns (mean loss, accuracy) over the epoch (the readout before each write)."""
    from stllr.data import iterate_batches

    model.lr = config.train.lr_at(epoch)  # train.lr_halve_at: a shift of eta
    total_loss, correct = 0.0, 0
    for x, y in iterate_batches(dataset, config.train.batch_size, shuffle=True, seed=config.train.seed,
                                epoch=epoch):
        result = model.train_batch(x, y)
        correct += int((result.prediction == y).sum())
        total_loss += _float_window_loss(result, y, model, dataset.num_steps)
    return total_loss / dataset.num_samples, correct / dataset.num_samples


def evaluate_int(model, dataset, batch_size: int = 256):
    """Integer inference over ``dataset`` with fresh counters (the model's are restored).

    Returns (loss, accuracy, overflow counter, op counter) of this evaluation alone."""
    from core.counters import OpCounter
    from core.overflow import OverflowCounter
    from stllr.data import iterate_batches

    saved = model.overflow, model.ops
    model.overflow, model.ops = OverflowCounter(), OpCounter()
    total_loss, correct = 0.0, 0
    try:
        for x, y in iterate_batches(dataset, batch_size, shuffle=False, seed=0, epoch=0):
            result = model.infer(x)
            correct += int((result.prediction == y).sum())
            total_loss += _float_window_loss(result, y, model, dataset.num_steps)
        return total_loss / dataset.num_samples, correct / dataset.num_samples, model.overflow, model.ops
    finally:
        model.overflow, model.ops = saved


def overflow_dict(counter) -> dict:
    """{tensor: {"format", "events", "elements"}} plus the total."""
    rows = {name: {"format": fmt, "events": events, "elements": elements}
            for name, fmt, events, elements in counter.rows()}
    return {"tensors": rows, "total_events": counter.total_events}


def ops_summary(ops, samples: int) -> dict:
    """Op counts summed by phase and kind (all layers and widths), total and per sample."""
    by_phase: dict[str, dict[str, int]] = {}
    for layer, phase, kind, width, tensor, count in ops.rows():
        by_phase.setdefault(phase, {}).setdefault(kind, 0)
        by_phase[phase][kind] += count
    total = sum(sum(kinds.values()) for kinds in by_phase.values())
    return {"samples": samples, "total": total, "per_sample": total / samples if samples else 0.0,
            "by_phase": by_phase}


def int_train(config, out_dir: Path, resume: bool = False, from_checkpoint: Path | None = None,
              log: Callable[[str], None] = _quiet, report: Callable[[str], None] = print,
              stop_after_epoch: int | None = None) -> dict:
    """Train the integer model per ``config`` into ``out_dir``; returns the metrics.

    All input (config, quant formats and constants, data, float checkpoint, the learning
    rate in its format, the integer checkpoint on resume) is validated before ``out_dir``
    is created. ``report`` receives the overflow summary at the end of every run;
    ``stop_after_epoch`` simulates an interruption (tests of resume).
    """
    from core.atomic import atomic_write_text
    from core.config import config_to_dict, learning_window
    from stllr.data import load_data
    from stllr.train import check_data_matches

    out_dir = Path(out_dir)
    check_int_config(config)
    resuming = plan_run(out_dir, CHECKPOINT, resume)
    train_set, test_set = load_data(config.data)
    check_data_matches(config, train_set, "data.train")
    check_data_matches(config, test_set, "data.test")
    model = build_int_network(config, None if resuming else from_checkpoint)
    check_learning_rates(model, config, train_set.num_samples, train_set.num_steps)
    quant = quant_of(config)
    metrics = IntTrainMetrics(
        model="integer", rule=config.learning.rule, learning_signal=config.learning.learning_signal,
        window=learning_window(train_set.num_steps, config.learning.window), num_steps=train_set.num_steps,
        seed=config.train.seed, lr=config.train.lr, batch_size=config.train.batch_size,
        init="float checkpoint" if from_checkpoint is not None else "scratch",
        init_checkpoint=str(from_checkpoint) if from_checkpoint is not None else None,
        weight_format=quant.weight.describe(), epochs=[], wall_time_s=0.0)
    first_epoch = 0
    if resuming:
        source = str(out_dir / CHECKPOINT)
        checkpoint = load_int_checkpoint(out_dir / CHECKPOINT, config)
        check_resume_config(checkpoint["config"], config_to_dict(config), source)
        restore_state(model, checkpoint, source)
        model.overflow, model.ops = checkpoint["counters"]
        metrics = checkpoint["metrics"]
        if from_checkpoint is not None and metrics.init_checkpoint != str(from_checkpoint):
            raise InputError(f"--from-checkpoint {from_checkpoint}: the run in {out_dir} was started from "
                             f"{metrics.init_checkpoint or 'scratch'}")
        first_epoch = checkpoint["epoch"] + 1
        if len(metrics.epochs) != first_epoch:
            raise InputError(f"{source}: metrics hold {len(metrics.epochs)} epochs, the checkpoint is of epoch "
                             f"{checkpoint['epoch']}")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    try:
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
        eval_overflow = _epochs(model, config, train_set, test_set, metrics, first_epoch, out_dir, log,
                                stop_after_epoch)
    except BaseException:
        # a fresh run that stops before its first checkpoint (an overflow under the
        # 'raise' policy, Ctrl-C) leaves no partial output directory behind
        if created and not (out_dir / CHECKPOINT).exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    report("overflow summary, training (all epochs, incl. the initial quantization):")
    report(model.overflow.summary())
    if eval_overflow is not None:
        report("overflow summary, test inference (last epoch):")
        report(eval_overflow.summary())
    return metrics.model_dump(mode="json")


def _epochs(model, config, train_set, test_set, metrics, first_epoch, out_dir, log, stop_after_epoch):
    """The epoch loop of :func:`int_train`: train, evaluate, checkpoint, metrics."""
    from core.atomic import atomic_write_text

    eval_overflow = None
    for epoch in range(first_epoch, config.train.epochs):
        started = time.perf_counter()
        train_loss, train_acc = run_int_epoch(model, train_set, config, epoch)
        test_loss, test_acc, eval_overflow, eval_ops = evaluate_int(model, test_set)
        metrics.wall_time_s += time.perf_counter() - started
        metrics.epochs.append(IntEpochRecord(epoch=epoch, train_loss=train_loss, train_accuracy=train_acc,
                                             test_loss=test_loss, test_accuracy=test_acc,
                                             train_overflow_events=model.overflow.total_events,
                                             test_overflow_events=eval_overflow.total_events))
        metrics.final_test_accuracy = test_acc
        trained = train_set.num_samples * (epoch + 1)
        metrics.overflow = {"train": overflow_dict(model.overflow), "test": overflow_dict(eval_overflow)}
        metrics.ops = {"train": ops_summary(model.ops, trained), "test": ops_summary(eval_ops, test_set.num_samples)}
        payload = metrics.model_dump(mode="json")
        save_int_checkpoint(out_dir / CHECKPOINT, model, epoch, payload, config,
                            _counters_to_json(model.overflow, model.ops))
        atomic_write_text(out_dir / METRICS, json.dumps(payload, indent=2))
        log(f"epoch {epoch + 1:3d}/{config.train.epochs}  train loss {train_loss:.4f} acc {100 * train_acc:6.2f} %  "
            f"test acc {100 * test_acc:6.2f} %  overflow events {model.overflow.total_events}")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return eval_overflow


def int_eval(config, checkpoint_path: Path) -> tuple[dict, object]:
    """Integer inference accuracy of an int-train checkpoint on ``data.test``.

    Returns ({"test_accuracy", "test_loss", "samples", "overflow_events", ...}, overflow counter)."""
    from stllr.data import load_data
    from stllr.train import check_data_matches

    _, test_set = load_data(config.data)
    check_data_matches(config, test_set, "data.test")
    model = build_int_network(config)
    checkpoint = load_int_checkpoint(Path(checkpoint_path), config)
    restore_state(model, checkpoint, str(checkpoint_path))
    loss, accuracy, overflow, ops = evaluate_int(model, test_set)
    result = {"test_accuracy": accuracy, "test_loss": loss, "samples": test_set.num_samples,
              "epoch": checkpoint["epoch"], "overflow_events": overflow.total_events,
              "ops_per_sample": ops_summary(ops, test_set.num_samples)["per_sample"]}
    return result, overflow
