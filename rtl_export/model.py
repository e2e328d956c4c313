"""Build the integer model an export is rendered from: config (+ checkpoint) -> IntNetwork.

The float network is built exactly as ``stllr train`` builds it (``build_network``:
``torch.manual_seed(train.seed)`` then the layers), optionally loaded from a checkpoint
that must belong to the same ``network`` section, then quantized by
``IntNetwork.from_float(net, config.quant, lr=train.lr)``. Every exporter starts here,
so formats, constants and initial integer weights have one source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fixedpoint.config import QuantConfig
from fixedpoint.formats import FixedFormat
from stllr.config import Config
from stllr.errors import InputError

#: Widest stored word the reference RTL (rtl/stllr_layer.v) and its testbenches handle;
#: internal sums are 64-bit (the integer model keeps every exact intermediate < 2**53).
RTL_MAX_BITS = 32
LANE_FORMAT = FixedFormat(signed=False, bits=32, frac=0)  # xorshift32 state
SPIKE_FORMAT = FixedFormat(signed=False, bits=1, frac=0)


@dataclass(frozen=True)
class Source:
    """Where the float weights came from (recorded in manifests)."""

    kind: str  # "init" (train.seed) or "checkpoint"
    seed: int
    checkpoint_sha256: str | None = None

    def to_json(self) -> dict:
        out = {"weights": self.kind, "seed": self.seed}
        if self.checkpoint_sha256:
            out["checkpoint_sha256"] = self.checkpoint_sha256
        return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_model(config: Config, checkpoint: Path | None = None):
    """(IntNetwork, Source) for ``config``; InputError for a foreign or unreadable checkpoint."""
    from fixedpoint.network import IntNetwork
    from stllr.train import build_network, load_checkpoint, load_weights

    net = build_network(config)
    source = Source("init", config.train.seed)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        load_weights(net, load_checkpoint(checkpoint, config), checkpoint)
        source = Source("checkpoint", config.train.seed, file_sha256(checkpoint))
    model = IntNetwork.from_float(net, config.quant or QuantConfig(), lr=config.train.lr)
    return model, source


def num_steps(config: Config, steps: int | None) -> int:
    """T from ``--steps`` or the config's ``data.num_steps``."""
    if steps is not None:
        if steps <= 0:
            raise InputError(f"--steps = {steps} must be > 0")
        return int(steps)
    if config.data.num_steps is None:
        raise InputError("data.num_steps is not set in the config: pass --steps")
    return int(config.data.num_steps)


def window_of(config: Config, steps: int) -> int:
    """k (learning.window, or T when null); InputError when k > T."""
    k = config.learning.window or steps
    if k > steps:
        raise InputError(f"learning.window = {k} exceeds the number of time steps T = {steps}")
    return k


def load_inputs(config: Config, samples: int, steps: int, density: float | None, seed: int
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(x (N, T, *input_shape) float64, y (N,) int64, description) of the vector set.

    ``density`` None: the first N samples of the config's test set, first T steps.
    Otherwise Bernoulli(density) spikes and uniform labels from ``numpy.random.default_rng(seed)``.
    """
    if samples <= 0:
        raise InputError(f"--samples = {samples} must be > 0")
    if steps <= 0:
        raise InputError(f"--steps = {steps} must be > 0")
    shape = tuple(config.network.input_shape)
    classes = config.network.layers[-1].size
    if density is not None:
        if not 0.0 <= density <= 1.0:
            raise InputError(f"--random-density = {density} must lie in [0, 1]")
        if seed < 0:
            raise InputError(f"--seed = {seed} must be >= 0")
        rng = np.random.default_rng(seed)
        x = (rng.random((samples, steps, *shape)) < density).astype(np.float64)
        y = rng.integers(0, classes, samples).astype(np.int64)
        return x, y, {"source": "random", "density": float(density), "seed": int(seed)}
    from stllr.data import load_data
    from stllr.train import check_data_matches

    _, test = load_data(config.data)
    check_data_matches(config, test, "data.test")
    if samples > test.num_samples:
        raise InputError(f"--samples = {samples} exceeds the {test.num_samples} samples of data.test")
    if steps > test.num_steps:
        raise InputError(f"--steps = {steps} exceeds the T = {test.num_steps} steps of data.test")
    x = np.asarray(test.x[:samples, :steps], np.float64)
    y = np.asarray(test.y[:samples], np.int64)
    return x, y, {"source": "data", "split": "test", "first": int(samples), "kind": config.data.kind}
