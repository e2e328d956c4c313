"""Analytic hardware cost model of S-TLLR, BPTT and inference on the integer datapath.

Public API::

    load_inputs(path, hw_path=None, steps=None) -> ModelInputs   (hwmodel.config)
    estimate(inputs, activity=None, modes=MODES) -> Estimate       (hwmodel.estimate)
    load_activity(path, inputs, layers) -> Activity               (hwmodel.activity)
    measure_activity(int_model, config, quant, x, target) -> (dict, IntResult)

Counts use the taxonomy of core.counters (OpKey(layer, phase, kind, width, tensor));
see docs/hwmodel.md. Importing this package imports nothing else (the names above load
their module on first use), and no part of the estimate imports torch or numba.
"""

from __future__ import annotations

import importlib

_WHERE = {"HardwareConfig": "hwmodel.config", "ModelInputs": "hwmodel.config", "load_inputs": "hwmodel.config",
          "MODES": "hwmodel.estimate", "Estimate": "hwmodel.estimate", "ModeResult": "hwmodel.estimate",
          "estimate": "hwmodel.estimate"}

__all__ = ["HardwareConfig", "MODES", "Estimate", "ModeResult", "ModelInputs", "estimate", "load_inputs"]


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hwmodel' has no attribute {name!r}")
