"""Analytic hardware cost model of S-TLLR, BPTT and inference on the integer datapath.

Public API::

    load_inputs(path, hw_path=None, steps=None) -> ModelInputs   (hwmodel.config)
    estimate(inputs, activity=None, modes=MODES) -> Estimate       (hwmodel.estimate)
    load_activity(path, inputs, layers) -> Activity               (hwmodel.activity)
    measure_activity(int_model, config, quant, x, target) -> (dict, IntResult)

Counts use the taxonomy of fixedpoint.counters (OpKey(layer, phase, kind, width, tensor));
see docs/hwmodel.md. Importing this package does not import torch.
"""

from hwmodel.config import HardwareConfig, ModelInputs, load_inputs
from hwmodel.estimate import MODES, Estimate, ModeResult, estimate

__all__ = ["HardwareConfig", "MODES", "Estimate", "ModeResult", "ModelInputs", "estimate", "load_inputs"]
