"""One run of a design point, as a Dask worker executes it.

    validate -> integer on-chip training (fixedpoint.train.int_train, the ``stllr
    int-train`` path) -> test accuracy -> activity measured on the trained model
    (hwmodel.activity.measure_activity, as ``hwmodel measure``) -> hwmodel estimate of
    inference, S-TLLR and BPTT -> overflow events [-> float training, float_reference]

:func:`evaluate_run` never raises for a failing run: bad input (an invalid combination,
an overflow under ``raise``, a learning rate that quantises to 0, a diverged loss)
comes back as a failed row with the one-line message and ``error_kind = "input"``
(deterministic: a rerun does not retry it); anything else as ``"crash"`` (retried).
Training is deterministic per seed, so a task Dask reschedules after a worker died
returns the same numbers.

Threads: Dask's nanny starts workers with OMP/MKL/OpenBLAS at one thread, so torch
(the float reference and the initial weights) uses the one core the worker owns.
"""

from __future__ import annotations

import math
import shutil
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from core.errors import InputError

#: Packages whose versions every row records (what produced the numbers).
VERSIONED = ("stllr-hw", "numpy", "numba", "torch", "pydantic", "dask", "distributed")


def package_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _worker_name() -> str:
    """The Dask worker's address (``host`` alone outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{socket.gethostname()}"


def _check_losses(epochs: list[dict], what: str) -> None:
    for record in epochs:
        for name in ("train_loss", "test_loss"):
            if not math.isfinite(record[name]):
                raise InputError(f"{what}: {name.replace('_', ' ')} is {record[name]} at epoch {record['epoch']} "
                                 "(diverged); lower train.lr or widen the formats")


def _measurement_batch(config):
    """The first B = train.batch_size training samples, as ``hwmodel measure`` takes them."""
    import math as _math

    import numpy as np

    from stllr.data import load_data

    train_set, _ = load_data(config.data)
    batch = min(config.train.batch_size, int(train_set.x.shape[0]))
    x = np.asarray(train_set.x[:batch], np.float64)
    y = np.asarray(train_set.y[:batch])
    shape = list(config.network.input_shape)
    if _math.prod(x.shape[2:]) != _math.prod(shape):
        raise InputError(f"data: samples of shape {list(x.shape[2:])} do not fit network.input_shape {shape}")
    return x.reshape(x.shape[0], x.shape[1], *shape), y


def cost(config, model, source: str) -> dict:
    """Activity of one training batch on ``model`` (the trained IntNetwork), costed by
    hwmodel for every mode. Returns the metric columns of a run row."""
    from fixedpoint.train import quant_of
    from hwmodel.activity import measure_activity, parse_activity
    from core.hardware import HardwareConfig
    from hwmodel.config import ModelInputs, check_steps
    from hwmodel.estimate import MAC_KINDS, build_layers, estimate
    from sweep.spec import MODES

    quant = quant_of(config)
    x, y = _measurement_batch(config)
    steps = check_steps(int(x.shape[1]), "data.num_steps")
    window = config.learning.window
    if window is not None and window > steps:
        raise InputError(f"learning.window: k = {window} exceeds the T = {steps} steps of the data")
    inputs = ModelInputs(config, quant, config.hardware or HardwareConfig(), config.activity, steps, source)
    payload, _ = measure_activity(model, config, quant, x, y, train=True)
    layers = build_layers(config, quant)
    activity = parse_activity(payload, f"{source}: measured activity", inputs, layers)
    est = estimate(inputs, activity, MODES)
    out = {"spike_rates": [round(rate, 6) for rate, ly in zip(activity.output_rates, layers) if ly.spiking]}
    for mode in MODES:
        result = est.results[mode]  # one batch of B samples; the properties are per sample
        out.update({
            f"{mode}_energy_pj": result.energy_pj,
            f"{mode}_state_bits": result.state_bits,
            f"{mode}_memory_bits": result.memory_bits,
            f"{mode}_onchip_bits": result.onchip_bits,
            f"{mode}_macs": result.ops_per_sample(MAC_KINDS),
            f"{mode}_latency_s_per_step": result.latency_s / steps,
        })
    return out


def _integer_run(config, folder: Path, source: str) -> dict:
    from fixedpoint.train import CHECKPOINT, build_int_network, int_train, load_int_checkpoint, restore_state

    quiet = lambda text: None  # noqa: E731 - the sweep reports numbers, not logs
    # The trainer stores the config in its checkpoint as JSON; a hardware: section does not
    # come back from JSON (its integer-keyed energy anchors turn into strings), and the
    # trainer does not read it anyway: train without it, cost with it.
    trained = config.model_copy(update={"hardware": None})
    metrics = int_train(trained, folder, log=quiet, report=quiet)
    _check_losses(metrics["epochs"], "integer training")
    model = build_int_network(trained)
    restore_state(model, load_int_checkpoint(folder / CHECKPOINT, trained), source)
    overflow = metrics.get("overflow") or {}
    train_events = int(overflow.get("train", {}).get("total_events", 0))
    test_events = int(overflow.get("test", {}).get("total_events", 0))
    row = {"accuracy": float(metrics["final_test_accuracy"]), "epochs": len(metrics["epochs"]),
           "overflow_train_events": train_events, "overflow_test_events": test_events,
           "overflow_events": train_events + test_events, "train_wall_s": float(metrics["wall_time_s"])}
    row.update(cost(config, model, source))
    return row


def _float_run(config, folder: Path) -> dict:
    from stllr.train import train

    metrics = train(config, folder)
    _check_losses(metrics["epochs"], "float reference training")
    return {"float_accuracy": float(metrics["final_test_accuracy"])}


def evaluate_run(config_data: dict, key: str, float_reference: bool = False) -> dict:
    """Train, measure and cost one run (one point, one seed); a row of results.parquet.

    ``config_data``: the validated config as a python-mode mapping (re-validated here,
    on the worker). Failures return ``status = "failed"`` with a one-line ``error``."""
    from core.config import parse_config

    started = time.perf_counter()
    source = f"run {key[:12]}"
    row: dict = {"key": key, "status": "ok", "error": None, "error_kind": None}
    folder = Path(tempfile.mkdtemp(prefix="stllr-sweep-"))
    try:
        config = parse_config(config_data, source)
        row["seed"] = config.train.seed
        row.update(_integer_run(config, folder / "integer", source))
        if float_reference:
            row.update(_float_run(config, folder / "float"))
    except InputError as error:
        row.update(status="failed", error=" ".join(str(error).split()), error_kind="input")
    except Exception as error:  # noqa: BLE001 - a crash is stored, the sweep goes on
        first = (str(error).strip().splitlines() or [""])[0]
        row.update(status="failed", error=f"{type(error).__name__}: {first}"[:500], error_kind="crash")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    row.update(wall_s=time.perf_counter() - started, worker=_worker_name(),
               finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               versions=package_versions())
    return row
