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

from core.quant import QuantConfig
from core.formats import FixedFormat
from core.config import Config, layer_shapes, layer_weight_count, learning_window
from core.errors import InputError
from core.schema import MAX_SAMPLES, MAX_SEED, MAX_STEPS

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
    from fixedpoint.spec import chip_optimizer
    from stllr.train import build_network, load_checkpoint, load_weights

    net = build_network(config)
    source = Source("init", config.train.seed)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        load_weights(net, load_checkpoint(checkpoint, config), checkpoint)
        source = Source("checkpoint", config.train.seed, file_sha256(checkpoint))
    optimizer, betas = chip_optimizer(config.train)
    model = IntNetwork.from_float(net, config.quant or QuantConfig(), lr=config.train.lr, optimizer=optimizer,
                                  betas=betas)
    return model, source


def check_bound(flag: str, value: int, low: int, high: int) -> int:
    """``value`` is an int in ``[low, high]`` (core.schema bounds), else one line naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{flag} = {value!r:.40} must be an integer")
    if value < low:
        raise InputError(f"{flag} = {value} must be {'> 0' if low == 1 else f'>= {low}'}")
    if value > high:
        raise InputError(f"{flag} = {str(value):.40} exceeds the limit {high}")
    return int(value)


def check_run_args(samples: int, steps: int, density: float | None, seed: int) -> None:
    """Bounds of ``golden``'s arguments, checked before anything is built or allocated."""
    check_bound("--samples", samples, 1, MAX_SAMPLES)
    check_bound("--steps", steps, 1, MAX_STEPS)
    check_bound("--seed", seed, 0, MAX_SEED)
    if density is not None and not (isinstance(density, (int, float)) and 0.0 <= density <= 1.0):
        raise InputError(f"--random-density = {density!r:.40} must lie in [0, 1]")  # nan and inf too


def set_words(config: Config, samples: int, steps: int) -> int:
    """An upper bound of the words a vector set of ``config`` holds (from the config alone)."""
    k = min(config.learning.window or steps, steps)  # a bound: k > T is refused later, by name
    writes = k if config.learning.update == "online" else 1
    per_sample = 1
    for layer, (shape_in, shape_out) in zip(config.network.layers, layer_shapes(config.network)):
        n_in, n_out = int(np.prod(shape_in)), int(np.prod(shape_out))
        synapses = layer_weight_count(layer, shape_in, shape_out) + n_out  # + bias
        per_sample += steps * (2 * n_in + 12 * n_out + 1)  # step tensors (recurrent ones included)
        per_sample += k * (6 * n_out + synapses)  # window tensors and accumulators
        per_sample += writes * 4 * synapses  # weights before / after, lanes before / after
    return samples * per_sample


def check_set_size(config: Config, samples: int, steps: int) -> None:
    """Refuse a vector set larger than the reader accepts, before running anything."""
    from rtl_export.manifest import MAX_SET_WORDS

    words = set_words(config, samples, steps)
    if words > MAX_SET_WORDS:
        raise InputError(f"--samples {samples} x --steps {steps}: the vector set would hold up to {words} words, "
                         f"more than {MAX_SET_WORDS}: use fewer samples or steps")


def num_steps(config: Config, steps: int | None) -> int:
    """T from ``--steps`` or the config's ``data.num_steps``."""
    if steps is not None:
        return check_bound("--steps", steps, 1, MAX_STEPS)
    if config.data.num_steps is None:
        raise InputError("data.num_steps is not set in the config: pass --steps")
    return int(config.data.num_steps)


def window_of(config: Config, steps: int) -> int:
    """k (learning.window, or T when null); InputError when k > T."""
    return learning_window(steps, config.learning.window)


def load_inputs(config: Config, samples: int, steps: int, density: float | None, seed: int
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(x (N, T, *input_shape) float64, y (N,) int64, description) of the vector set.

    ``density`` None: the first N samples of the config's test set, first T steps.
    Otherwise Bernoulli(density) spikes and uniform labels from ``numpy.random.default_rng(seed)``.
    """
    check_run_args(samples, steps, density, seed)
    shape = tuple(config.network.input_shape)
    classes = config.network.layers[-1].size
    if density is not None:
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
