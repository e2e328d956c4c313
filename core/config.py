"""The one configuration schema: network, learning rule, training and data.

A YAML file has four sections::

    network:    input shape, neuron defaults, Psi, layers (linear, conv2d, recurrent, readout)
    learning:   rule (stllr | bptt | readout_only), S-TLLR factors, window k, learning signal
    train:      epochs, batch size, optimizer, seed
    data:       which dataset (see stllr.data.config)

Every section forbids unknown keys, so a typo is an error that names the key. Per-layer
fields (``beta``, ``theta``, ``reset``, ``psi``, ``factors``) override the network-wide
defaults; :func:`resolve_layer` gives the effective values of one layer.

Units: time is counted in steps; ``beta`` and the ``lambda`` factors are per-step decay
factors in (0, 1]; ``theta`` is in the same (dimensionless) units as the membrane.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.data import DataConfig
from core.errors import InputError
from core.hardware import ActivityRates, HardwareConfig
from core.quant import QuantConfig
from core.schema import MAX_SIZE, Seed, Size, Steps, StrictModel, format_validation_error, read_yaml

__all__ = ["Config", "load_config", "parse_config", "config_to_dict", "read_yaml", "format_validation_error"]

#: Largest number of weights in one network (int64 codes + accumulators must fit in memory).
MAX_SYNAPSES = 2**28
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_SIZE)]
Decay = Annotated[float, Field(ge=0.0, le=1.0)]
Leak = Annotated[float, Field(ge=0.0, lt=1.0)]
_Strict = StrictModel


class PsiConfig(_Strict):
    """Secondary activation Psi(z), z = u - theta (STLLR.md).

    rational: 1 / (1 + gamma |z|)^2          (dense layers in the reference code)
    triangle: scale * max(0, 1 - |z| / width) (conv layers in the reference code)
    """

    kind: Literal["rational", "triangle"] = "rational"
    gamma: Annotated[float, Field(gt=0.0, le=1e6)] = 100.0
    scale: Annotated[float, Field(gt=0.0, le=1e6)] = 0.3
    width: Annotated[float, Field(gt=0.0, le=1e6)] = 1.0


class FactorsConfig(_Strict):
    """S-TLLR factors. ``lambda_pre: null`` means "equal to the layer's leak beta"."""

    lambda_post: Decay = 0.5
    lambda_pre: Decay | None = None
    alpha_post: Annotated[float, Field(ge=-16.0, le=16.0)] = -0.2
    alpha_pre: Annotated[float, Field(ge=-16.0, le=16.0)] = 1.0


class ReadoutFactorsConfig(FactorsConfig):
    """The readout's factors: it does not spike, so it has no post-trace and no non-causal
    term; lambda_post and alpha_post are 0 (a non-zero value would be silently ignored,
    so it is refused)."""

    lambda_post: Decay = 0.0
    alpha_post: Annotated[float, Field(ge=-16.0, le=16.0)] = 0.0

    @field_validator("lambda_post", "alpha_post")
    @classmethod
    def _zero(cls, value: float, info) -> float:
        if value != 0:
            raise ValueError(f"the readout has no post-synaptic trace; only lambda_pre and alpha_pre apply "
                             f"(set {info.field_name} to 0 or remove it)")
        return value


class NeuronConfig(_Strict):
    """LIF defaults: u = beta * v + I; spike when u - theta > 0; soft or hard reset."""

    beta: Leak = 0.9
    theta: Annotated[float, Field(gt=0.0, le=1e6)] = 0.6
    reset: Literal["soft", "hard"] = "soft"


class _LayerCommon(_Strict):
    bias: bool = True
    beta: Leak | None = None
    factors: FactorsConfig | None = None


class _SpikingCommon(_LayerCommon):
    theta: Annotated[float, Field(gt=0.0, le=1e6)] | None = None
    reset: Literal["soft", "hard"] | None = None
    psi: PsiConfig | None = None


class LinearLayerConfig(_SpikingCommon):
    """Dense spiking layer; a conv output feeding it is flattened (C, H, W order)."""

    kind: Literal["linear"]
    size: Size


class RecurrentLayerConfig(_SpikingCommon):
    """Dense spiking layer with W_rec o[t-1] added to the membrane input."""

    kind: Literal["recurrent"]
    size: Size


class Conv2dLayerConfig(_SpikingCommon):
    """2-D convolutional spiking layer on (C, H, W) inputs."""

    kind: Literal["conv2d"]
    channels: Size
    kernel: Annotated[int, Field(gt=0, le=1024)]
    stride: Annotated[int, Field(gt=0, le=1024)] = 1
    padding: NonNegativeInt = 0


class ReadoutLayerConfig(_LayerCommon):
    """Non-spiking leaky integrator y[t] = beta * y[t-1] + W x[t] + b (the last layer)."""

    kind: Literal["readout"]
    size: Size
    factors: ReadoutFactorsConfig | None = None


LayerConfig = Annotated[
    Union[LinearLayerConfig, RecurrentLayerConfig, Conv2dLayerConfig, ReadoutLayerConfig],
    Field(discriminator="kind"),
]


class NetworkConfig(_Strict):
    input_shape: Annotated[list[Size], Field(min_length=1, max_length=3)]
    neuron: NeuronConfig = NeuronConfig()
    psi: PsiConfig = PsiConfig()
    layers: Annotated[list[LayerConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_layers(self) -> "NetworkConfig":
        kinds = [layer.kind for layer in self.layers]
        if kinds[-1] != "readout" or kinds.count("readout") != 1:
            raise ValueError("layers: exactly one readout layer, and it must be the last")
        shape, synapses = tuple(self.input_shape), 0
        for index, layer in enumerate(self.layers):
            out = layer_output_shape(layer, shape, f"layers.{index}")
            if math.prod(out) > MAX_SIZE:
                raise ValueError(f"layers.{index}: {math.prod(out)} neurons, more than {MAX_SIZE}")
            synapses += layer_weight_count(layer, shape, out)
            shape = out
        if synapses > MAX_SYNAPSES:
            raise ValueError(f"layers: {synapses} weights in all, more than {MAX_SYNAPSES}")
        return self


class LearningConfig(_Strict):
    """How the weights learn. ``window`` is k: the loss and learning signal exist only
    in the last k steps of a sample (null means k = T). The same window defines the
    loss of BPTT, so both rules optimise the same objective."""

    rule: Literal["stllr", "bptt", "readout_only"] = "stllr"
    window: Steps | None = None
    learning_signal: Literal["bp", "dfa", "sdfa"] = "bp"
    update: Literal["batch", "online"] = "batch"
    loss: Literal["ce", "mse"] = "ce"
    bias_update: Literal["reference", "exact"] = "reference"
    factors: FactorsConfig = FactorsConfig()
    readout_factors: ReadoutFactorsConfig = ReadoutFactorsConfig()
    feedback_seed: Seed = 0


Beta = Annotated[float, Field(ge=0.0, lt=1.0)]

#: Default betas per optimizer. Lion's are 1 - 2^-3 and 1 - 2^-7 (Lion's paper uses 0.9
#: and 0.99), signum's 1 - 2^-3: each EMA is then a subtract and a shift on chip.
DEFAULT_BETAS = {"adam": (0.9, 0.999), "lion": (0.875, 0.9921875), "signum": (0.875,)}


class TrainConfig(_Strict):
    """How the optimizer writes the weights.

    ``optimizer``: ``adam``; ``sgd`` (``W -= lr g``); ``signum`` (Bernstein et al. 2018,
    "signSGD"): ``m = beta m + g``, ``W -= lr sign(m)`` -- on chip m is the update
    accumulator itself, decayed instead of cleared after each write, so it needs no memory
    beyond sgd's; or ``lion`` (Chen et al. 2023, "Symbolic Discovery of Optimization
    Algorithms"): one momentum word m per weight, ``W -= lr sign(beta1 m + (1 - beta1) g)``,
    then ``m = beta2 m + (1 - beta2) g``. Signum and lion move every weight by exactly
    ``lr`` per write whatever the size of g, so ``lr`` is a step in weight units and does
    not depend on the loss, batch or window scale (docs/int_training.md). ``betas``:
    (beta1, beta2) of adam or lion, (beta,) of signum (null: :data:`DEFAULT_BETAS`); sgd
    has none.
    """

    epochs: Annotated[int, Field(gt=0, le=100_000)] = 30
    batch_size: Annotated[int, Field(gt=0, le=65_536)] = 32
    optimizer: Literal["adam", "sgd", "signum", "lion"] = "adam"
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-3
    betas: Annotated[list[Beta], Field(min_length=1, max_length=2)] | None = None
    #: fractions of ``epochs`` at which lr halves (e.g. [0.5, 0.75]: lr/2 from epoch
    #: epochs/2 on, lr/4 from 3 epochs/4 on); on chip a halving is one shift of eta
    lr_halve_at: Annotated[list[Annotated[float, Field(gt=0.0, lt=1.0)]], Field(max_length=16)] = []
    seed: Seed = 0
    #: torch intra-op threads of the float loop (null: torch's default, one per core)
    threads: Annotated[int, Field(gt=0, le=1024)] | None = None

    @model_validator(mode="after")
    def _betas_need_momentum(self) -> "TrainConfig":
        if self.betas is not None:
            if self.optimizer == "sgd":
                raise ValueError("betas: sgd keeps no moments (betas are for adam, signum and lion)")
            wanted = len(DEFAULT_BETAS[self.optimizer])
            if len(self.betas) != wanted:
                raise ValueError(f"betas: {self.optimizer} takes {wanted} beta{'s' if wanted > 1 else ''}, "
                                 f"not {len(self.betas)}")
        return self

    @field_validator("lr_halve_at")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"must be strictly increasing, got {value}")
        return value

    def lr_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch``: lr halved once per ``lr_halve_at``
        fraction f with epoch >= f * epochs (exact: a power-of-two scaling)."""
        return math.ldexp(self.lr, -sum(epoch >= f * self.epochs for f in self.lr_halve_at))

    @property
    def learning_rates(self) -> list[float]:
        """Every learning rate the schedule uses, largest first."""
        return sorted({self.lr_at(epoch) for epoch in range(self.epochs)}, reverse=True)

    @property
    def resolved_betas(self) -> tuple[float, ...] | None:
        """(beta1, beta2) in use, or None for sgd."""
        return tuple(self.betas) if self.betas is not None else DEFAULT_BETAS.get(self.optimizer)


class Config(_Strict):
    network: NetworkConfig
    learning: LearningConfig = LearningConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig
    quant: QuantConfig | None = None  # formats of the integer model (core/quant.py)
    hardware: HardwareConfig | None = None  # target hardware of the cost model (hwmodel/config.py)
    activity: ActivityRates | None = None  # expected spike rates for the cost model (hwmodel/config.py)


# ---------------------------------------------------------------------------- shapes


def layer_output_shape(layer, in_shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Output shape of one layer for a per-sample input shape; raises naming ``where``."""
    if layer.kind == "conv2d":
        if len(in_shape) != 3:
            raise ValueError(f"{where}: conv2d needs a (C, H, W) input, got shape {list(in_shape)}")
        _, height, width = in_shape
        out = []
        for size in (height, width):
            span = size + 2 * layer.padding - layer.kernel
            if span < 0:
                raise ValueError(f"{where}: kernel {layer.kernel} larger than padded input {size + 2 * layer.padding}")
            if span % layer.stride:
                raise ValueError(
                    f"{where}: output size ({size} + 2*{layer.padding} - {layer.kernel})/{layer.stride} + 1 is not an integer"
                )
            out.append(span // layer.stride + 1)
        return (layer.channels, out[0], out[1])
    return (layer.size,)


def layer_weight_count(layer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Number of weights of one layer (recurrent weights included, biases excluded)."""
    if layer.kind == "conv2d":
        return layer.channels * in_shape[0] * layer.kernel * layer.kernel
    fan_in = math.prod(in_shape) + (layer.size if layer.kind == "recurrent" else 0)
    return layer.size * fan_in


def layer_shapes(network: NetworkConfig) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, output shape) per layer, batch dimension excluded."""
    shapes, shape = [], tuple(network.input_shape)
    for index, layer in enumerate(network.layers):
        out = layer_output_shape(layer, shape, f"layers.{index}")
        shapes.append((shape, out))
        shape = out
    return shapes


# ------------------------------------------------------------------ effective values


class ResolvedLayer(BaseModel):
    """A layer's effective neuron parameters, Psi and factors after defaults apply."""

    model_config = ConfigDict(frozen=True)
    kind: str
    beta: float
    theta: float
    reset: str
    psi: PsiConfig
    lambda_pre: float
    lambda_post: float
    alpha_pre: float
    alpha_post: float


def resolve_layer(network: NetworkConfig, learning: LearningConfig, index: int) -> ResolvedLayer:
    layer = network.layers[index]
    neuron = network.neuron
    readout = layer.kind == "readout"
    factors = layer.factors or (learning.readout_factors if readout else learning.factors)
    beta = layer.beta if layer.beta is not None else neuron.beta
    return ResolvedLayer(
        kind=layer.kind,
        beta=beta,
        theta=math.nan if readout else (layer.theta if layer.theta is not None else neuron.theta),
        reset="none" if readout else (layer.reset or neuron.reset),
        psi=network.psi if readout else (layer.psi or network.psi),
        lambda_pre=beta if factors.lambda_pre is None else factors.lambda_pre,
        lambda_post=factors.lambda_post,
        alpha_pre=factors.alpha_pre,
        alpha_post=factors.alpha_post,
    )


# ------------------------------------------------------------------------- window


def learning_window(num_steps: int, window: int | None) -> int:
    """k, the number of last steps that carry a loss and a learning signal:
    ``learning.window``, or T when null. The one place k is resolved."""
    k = num_steps if window is None else window
    if k > num_steps:
        raise InputError(f"learning.window = {k} exceeds the number of time steps T = {num_steps}")
    return k


def window_start(num_steps: int, window: int | None) -> int:
    """First time index (0-based) inside the learning window: T - k."""
    return num_steps - learning_window(num_steps, window)


# ---------------------------------------------------------------------------- loading


def parse_config(data: dict, source: str = "", base_dir: Path | None = None) -> Config:
    """Validate a config mapping; relative data paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: top level must be a mapping with network/learning/train/data")
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise InputError(format_validation_error(error, source, data)) from None
    if base_dir is not None:
        config = config.model_copy(update={"data": _resolve_data_paths(config.data, base_dir)})
    return config


def _resolve_data_paths(data: DataConfig, base_dir: Path) -> DataConfig:
    """Relative file paths in ``data`` are relative to the config file's folder; they are
    made absolute, so the ``config.yaml`` a run saves can be used from any folder."""
    update = {}
    for name in ("train", "test", "root"):
        value = getattr(data, name, None)
        if isinstance(value, Path) and not value.is_absolute():
            update[name] = Path(os.path.abspath(base_dir / value))
    return data.model_copy(update=update)


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; raises :class:`InputError` with one line."""
    path = Path(path)
    return parse_config(read_yaml(path, "config file"), str(path), base_dir=path.parent)


def with_overrides(config: Config, values: dict[str, object], source: str = "command line") -> Config:
    """``config`` with dotted fields replaced (``{"train.seed": 3}``; None values are left
    out), validated again by the schema; errors name ``source``."""
    values = {path: value for path, value in values.items() if value is not None}
    if not values:
        return config
    data = config_to_dict(config)
    for path, value in values.items():
        *parents, name = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[name] = value
    return parse_config(data, source)


def config_to_dict(config: Config) -> dict:
    return config.model_dump(mode="json")
