"""Reading a model file for the cost model: config, hardware and activity sections, T.

The ``hardware:`` and ``activity:`` schemas are :mod:`core.hardware` (part of the one
config schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import InputError
from core.hardware import ActivityRates, HardwareConfig, parse_activity_rates, parse_hardware, split_placement_key
from core.schema import MAX_STEPS


def read_yaml(path: str | Path, what: str = "model file") -> dict:
    from core.schema import read_yaml as parse_yaml_file

    if Path(path).is_dir():
        raise InputError(f"{path}: is a folder, expected a {what}")
    data = parse_yaml_file(path, what)
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be a mapping")
    return data


@dataclass(frozen=True)
class ModelInputs:
    """Everything one estimate reads: the validated config, hardware and activity rates."""

    config: object  # core.config.Config
    quant: object  # fixedpoint.config.QuantConfig (config.quant or the defaults)
    hardware: HardwareConfig
    rates: ActivityRates | None
    steps: int
    source: str
    hardware_source: str = ""  # the file the hardware section came from ("" = built-in default)


def check_steps(steps: int, flag: str = "--steps") -> int:
    """T in 1..MAX_STEPS (a type error or bound names ``flag``)."""
    if type(steps) is not int or not 0 < steps <= MAX_STEPS:
        raise InputError(f"{flag}: T must be an integer in 1..{MAX_STEPS}, got {steps!r:.40}")
    return steps


def load_inputs(path: str | Path, hw_path: str | Path | None = None, steps: int | None = None,
                data_steps: Callable[[object], int] | None = None) -> ModelInputs:
    """Read a model file (plus an optional hardware file); one-line InputError on bad input.

    T is ``steps``, else ``data.num_steps``, else ``data_steps(config)`` (the T of the data
    files, for ``measure``)."""
    from fixedpoint.config import QuantConfig, check_layer_indices
    from core.config import parse_config

    path = Path(path)
    data = dict(read_yaml(path))
    hardware_data = data.pop("hardware", None)
    rates_data = data.pop("activity", None)
    config = parse_config(data, str(path), base_dir=path.parent)
    source = str(path)
    if hw_path is not None:
        hw = read_yaml(hw_path, "hardware file")
        if "hardware" not in hw or set(hw) != {"hardware"}:
            raise InputError(f"{hw_path}: expected exactly one top-level 'hardware:' section")
        if not isinstance(hw["hardware"], dict):  # an empty section would silently cost the default design
            raise InputError(f"{hw_path}: hardware: must be a mapping of hardware figures")
        hardware_data, source_hw = hw["hardware"], str(hw_path)
    else:
        source_hw = source
    hardware = parse_hardware(hardware_data, source_hw)
    rates = parse_activity_rates(rates_data, source)
    quant = config.quant or QuantConfig()
    check_layer_indices(config.network, quant)
    for index in hardware.placed_layers():
        if index >= len(config.network.layers):
            key = next(k for k in hardware.placement if split_placement_key(k)[0] == index)
            raise InputError(f"{source_hw}: hardware.placement.{key}: no such layer "
                             f"(network has {len(config.network.layers)})")
    if rates is not None:
        for index in rates.layers:
            if not 0 <= index < len(config.network.layers):
                raise InputError(f"{source}: activity.layers.{index}: no such layer "
                                 f"(network has {len(config.network.layers)})")
            if config.network.layers[index].kind == "readout" and rates.layers[index].output is not None:
                raise InputError(f"{source}: activity.layers.{index}.output: the readout does not spike")
    if steps is None:
        steps = config.data.num_steps
        if steps is None and data_steps is not None:
            steps = data_steps(config)
        if steps is None:
            raise InputError(f"{source}: data.num_steps: not set; give the number of steps with --steps T")
    check_steps(steps)
    window = config.learning.window
    if window is not None and window > steps:
        raise InputError(f"{source}: learning.window: k = {window} exceeds the number of steps T = {steps}")
    hardware_source = source_hw if hardware_data is not None else ""
    return ModelInputs(config, quant, hardware, rates, steps, source, hardware_source)


def fingerprint(config, quant) -> str:
    """sha256 of the canonical JSON of the network and quant sections (activity files carry it)."""
    import hashlib
    import json

    payload = {"network": config.network.model_dump(mode="json"), "quant": quant.model_dump(mode="json")}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def window_of(config, steps: int) -> int:
    """k: the learning window (learning.window, or T when null), resolved where every part
    resolves it (core.config.window_start)."""
    from core.config import window_start

    return steps - window_start(steps, config.learning.window)
