"""The ``quant:`` section of the config: every format of the integer S-TLLR model, once.

A format is a :class:`~fixedpoint.formats.FixedFormat` (``s16.10`` = signed, 16 bits
including the sign, 10 fraction bits; see the package legend). Every tensor that the
integer model stores or computes has exactly one declared format per layer; kernels
never invent a shift: every shift is the difference of two declared fraction counts.

YAML (all keys optional; the values shown are the defaults)::

    quant:
      input:           u8.0      # first-layer input (event counts); u1.0 = binary spikes
      weight:          s8.6      # W and W_rec; rounding here is the weight WRITE rounding
      bias:            s16.10
      current:         s32.10    # W x + W_rec o[t-1] + b, before it joins the membrane
      membrane:        s16.10    # u, v, theta, readout y
      leak:            u12.12    # beta
      decay:           u12.11    # lambda_pre, lambda_post (u12.11 holds 1.0)
      factor:          s12.8     # alpha_pre, alpha_post
      pre_trace:       u16.8     # q, q_rec, q_b
      post_trace:      u16.12    # p
      psi:             u8.7      # Psi(u - theta), and the Psi LUT entries
      psi_slope:       u16.12    # triangle Psi: scale / width
      error:           s16.10    # readout error y - onehot
      learning_signal: s16.10    # L of every layer, and L * psi on the way down (BP)
      modulation:      s16.10    # alpha*L, alpha*L*psi, alpha*L*p: per-neuron factors
      feedback:        s8.6      # DFA matrices B (sDFA multiplies B by sign(error))
      update:          s32.16    # dW, db accumulators over the window
      learning_rate:   u16.24    # eta / (batch * window); power of two -> a pure shift
      psi_lut: {entries: 64, index_shift: 3}
      leak_mode: multiply        # or shift: beta = 1 - 2**-n as v - v >> n (same bits)
      seed: 0                    # xorshift32 lane seed (stochastic weight write)
      layers:                    # per-layer overrides by index (or a list aligned
        1: {membrane: s16.8}     # with network.layers; null entries = no override)

``input``, ``error`` and ``learning_rate`` and ``seed`` are network-wide only.
Stochastic rounding is allowed only on ``weight`` and ``bias`` (the weight write);
every other tensor rounds deterministically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from fixedpoint.formats import FixedFormat
from stllr.errors import InputError
from stllr.schema import StrictModel

# float64 holds every integer below 2**53 exactly: the emulation (fixedpoint.emulate)
# is bit-exact only while every intermediate of the datapath fits this many bits, and
# the integer kernels (int64, with rounding headroom) need no more. Checked up front.
EXACT_BITS = 53

LAYER_TENSORS = (
    "weight", "bias", "current", "membrane", "leak", "decay", "factor", "pre_trace",
    "post_trace", "psi", "psi_slope", "learning_signal", "modulation", "feedback", "update",
)
NETWORK_TENSORS = ("input", "error", "learning_rate")
SIGNED_TENSORS = ("weight", "bias", "current", "membrane", "factor", "learning_signal",
                  "modulation", "feedback", "update", "error")
STOCHASTIC_OK = ("weight", "bias")


def per_layer_mapping(value):
    """Per-layer sections may be a mapping {index: ...} or a list aligned with network.layers
    (null entries = nothing for that layer); both become the mapping. Keys written as
    decimal text (JSON has only string keys) become integers."""
    if isinstance(value, list):
        return {i: v for i, v in enumerate(value) if v is not None}
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.lstrip("-").isdecimal() and k.isascii() else k: v
                for k, v in value.items()}
    return value


def _fmt(text: str) -> FixedFormat:
    return FixedFormat.parse(text)


_Strict = StrictModel  # strict types, finite floats, no unknown keys (stllr/schema.py)


class PsiLutConfig(_Strict):
    """Rational Psi as a table: ``index = min(|z| >> index_shift, entries - 1)``.

    ``z = u - theta`` in the membrane format; entry ``i`` is the float Psi at the centre
    of its bin, ``|z| = (i + 0.5) * 2**index_shift`` membrane lsb, rounded into ``psi``
    (nearest_even, saturate). The last entry also serves every ``|z|`` beyond the table.
    """

    entries: Annotated[int, Field(ge=2, le=1 << 20)] = 64
    index_shift: Annotated[int, Field(ge=0, le=62)] = 3


class LayerQuantOverride(_Strict):
    """Per-layer overrides; unset fields take the network-wide value."""

    weight: FixedFormat | None = None
    bias: FixedFormat | None = None
    current: FixedFormat | None = None
    membrane: FixedFormat | None = None
    leak: FixedFormat | None = None
    decay: FixedFormat | None = None
    factor: FixedFormat | None = None
    pre_trace: FixedFormat | None = None
    post_trace: FixedFormat | None = None
    psi: FixedFormat | None = None
    psi_slope: FixedFormat | None = None
    learning_signal: FixedFormat | None = None
    modulation: FixedFormat | None = None
    feedback: FixedFormat | None = None
    update: FixedFormat | None = None
    psi_lut: PsiLutConfig | None = None
    leak_mode: Literal["multiply", "shift"] | None = None

    @field_validator(*LAYER_TENSORS)
    @classmethod
    def _check_format(cls, fmt: FixedFormat | None, info: ValidationInfo) -> FixedFormat | None:
        return _check_tensor_format(info.field_name, fmt)


class QuantConfig(_Strict):
    """Formats of the integer model (see the module docstring for the YAML)."""

    input: FixedFormat = _fmt("u8.0")
    weight: FixedFormat = _fmt("s8.6")
    bias: FixedFormat = _fmt("s16.10")
    current: FixedFormat = _fmt("s32.10")
    membrane: FixedFormat = _fmt("s16.10")
    leak: FixedFormat = _fmt("u12.12")
    decay: FixedFormat = _fmt("u12.11")
    factor: FixedFormat = _fmt("s12.8")
    pre_trace: FixedFormat = _fmt("u16.8")
    post_trace: FixedFormat = _fmt("u16.12")
    psi: FixedFormat = _fmt("u8.7")
    psi_slope: FixedFormat = _fmt("u16.12")
    error: FixedFormat = _fmt("s16.10")
    learning_signal: FixedFormat = _fmt("s16.10")
    modulation: FixedFormat = _fmt("s16.10")
    feedback: FixedFormat = _fmt("s8.6")
    update: FixedFormat = _fmt("s32.16")
    learning_rate: FixedFormat = _fmt("u16.24")
    psi_lut: PsiLutConfig = PsiLutConfig()
    leak_mode: Literal["multiply", "shift"] = "multiply"
    seed: Annotated[int, Field(ge=0, lt=1 << 32)] = 0
    layers: dict[int, LayerQuantOverride] = {}

    @field_validator("layers", mode="before")
    @classmethod
    def _list_to_dict(cls, value):
        return per_layer_mapping(value)

    @field_validator(*LAYER_TENSORS, *NETWORK_TENSORS)
    @classmethod
    def _check_format(cls, fmt: FixedFormat, info: ValidationInfo) -> FixedFormat:
        return _check_tensor_format(info.field_name, fmt)

    @field_validator("layers")
    @classmethod
    def _check_indices(cls, layers: dict) -> dict:
        for index in layers:
            if index < 0:
                raise ValueError(f"layer index {index} must be >= 0")
        return layers


def _check_tensor_format(name: str, fmt: FixedFormat | None) -> FixedFormat | None:
    """Signedness and rounding rules of one tensor's format (ValueError, pydantic adds the field)."""
    if fmt is None:
        return fmt
    if name in SIGNED_TENSORS and not fmt.signed:
        raise ValueError(f"{fmt.describe_short()} must be signed (values of either sign)")
    if fmt.rounding == "stochastic" and name not in STOCHASTIC_OK:
        raise ValueError("stochastic rounding is only supported for the weight write "
                         "(weight, bias); use floor, nearest_even or nearest_away")
    return fmt


# ------------------------------------------------------------------ resolved per layer


@dataclass(frozen=True)
class LayerFormats:
    """Effective formats of one layer (network-wide values with the layer's overrides)."""

    input: FixedFormat  # what this layer's synapses see: quant.input (layer 0) or u1.0 spikes
    weight: FixedFormat
    bias: FixedFormat
    current: FixedFormat
    membrane: FixedFormat
    leak: FixedFormat
    decay: FixedFormat
    factor: FixedFormat
    pre_trace: FixedFormat
    post_trace: FixedFormat
    psi: FixedFormat
    psi_slope: FixedFormat
    error: FixedFormat
    learning_signal: FixedFormat
    modulation: FixedFormat
    feedback: FixedFormat
    update: FixedFormat
    learning_rate: FixedFormat
    psi_lut: PsiLutConfig
    leak_mode: str

    @property
    def binary_input(self) -> bool:
        """Spike input (u1.0): synapses add weight columns; otherwise multiply-accumulate."""
        return (not self.input.signed) and self.input.bits == 1 and self.input.frac == 0


SPIKES = FixedFormat.parse("u1.0")


def layer_formats(quant: QuantConfig, index: int) -> LayerFormats:
    override = quant.layers.get(index, LayerQuantOverride())
    values = {}
    for name in LAYER_TENSORS:
        value = getattr(override, name)
        values[name] = value if value is not None else getattr(quant, name)
    return LayerFormats(
        input=quant.input if index == 0 else SPIKES,
        error=quant.error,
        learning_rate=quant.learning_rate,
        psi_lut=override.psi_lut or quant.psi_lut,
        leak_mode=override.leak_mode or quant.leak_mode,
        **values,
    )


@dataclass(frozen=True)
class LayerConstants:
    """Quantized constants of one layer (integer codes in the declared formats)."""

    beta: int  # leak format
    theta: int  # membrane format (0 for the readout)
    lambda_pre: int  # decay format
    lambda_post: int  # decay format
    alpha_pre: int  # factor format
    alpha_post: int  # factor format
    psi_kind: str  # "rational" (LUT), "triangle", or "" for the readout
    psi_width: int  # triangle: w in the membrane format
    psi_slope: int  # triangle: scale / w in the psi_slope format (psi per membrane unit)
    psi_lut: np.ndarray  # rational: int64 codes in the psi format, ``entries`` long
    leak_shift: int  # n with beta = 1 - 2**-n when leak_mode = shift, else 0


def psi_lut_values(psi_config, membrane: FixedFormat, lut: PsiLutConfig, psi_fmt: FixedFormat) -> np.ndarray:
    """The rational-Psi table: Psi at bin centres ``(i + 0.5) * 2**index_shift`` lsb."""
    centres = np.ldexp((np.arange(lut.entries, dtype=np.float64) + 0.5), lut.index_shift - membrane.frac)
    values = 1.0 / (1.0 + psi_config.gamma * centres) ** 2
    return psi_fmt.replace(rounding="nearest_even", overflow="saturate").quantize(values)


def _quantize_constant(where: str, value: float, fmt: FixedFormat, *, nonzero: bool = False,
                       below_one: bool = False) -> int:
    """Check that ``value`` fits ``fmt`` and keeps its meaning; return the integer code."""
    exact_fmt = fmt.replace(rounding="nearest_even", overflow="saturate")
    try:
        exact_fmt.check_fits(where, value)
    except ValueError as error:
        raise InputError(str(error)) from None
    code = int(exact_fmt.quantize(value))
    real = math.ldexp(code, -fmt.frac)
    if nonzero and value != 0.0 and code == 0:
        raise InputError(f"{where} = {value!r} quantizes to 0 in {fmt.describe_short()} (lsb {fmt.lsb!r}): "
                         "add fraction bits")
    if value != 0.0 and code != 0 and (real > 0) != (value > 0):
        raise InputError(f"{where} = {value!r} changes sign in {fmt.describe_short()}")
    if below_one and value < 1.0 and real >= 1.0:
        raise InputError(f"{where} = {value!r} quantizes to {real!r} >= 1 in {fmt.describe_short()}: "
                         "the state would no longer decay; add fraction bits")
    return code


def layer_constants(network, learning, quant: QuantConfig, index: int, fmts: LayerFormats) -> LayerConstants:
    """Quantize beta, theta, lambdas, alphas and Psi of layer ``index``; InputError names the field."""
    from stllr.config import resolve_layer

    r = resolve_layer(network, learning, index)
    where = f"network.layers.{index}"
    spiking = r.kind != "readout"
    beta = _quantize_constant(f"{where}.beta (quant.leak)", r.beta, fmts.leak, nonzero=True, below_one=True)
    theta = 0
    if spiking:
        theta = _quantize_constant(f"{where}.theta (quant.membrane)", r.theta, fmts.membrane, nonzero=True)
        if theta <= 0:
            raise InputError(f"{where}.theta (quant.membrane) = {r.theta!r} must stay > 0 after quantization")
    # where the factors came from: the layer's own factors:, else the learning section's
    factors = (f"{where}.factors" if network.layers[index].factors is not None
               else "learning.readout_factors" if not spiking else "learning.factors")
    lam_pre = _quantize_constant(f"{where}.lambda_pre ({factors}, quant.decay)", r.lambda_pre, fmts.decay,
                                 nonzero=True, below_one=True)
    lam_post = _quantize_constant(f"{where}.lambda_post ({factors}, quant.decay)", r.lambda_post, fmts.decay,
                                  nonzero=True, below_one=True) if spiking else 0
    a_pre = _quantize_constant(f"{where}.alpha_pre ({factors}, quant.factor)", r.alpha_pre, fmts.factor, nonzero=True)
    a_post = _quantize_constant(f"{where}.alpha_post ({factors}, quant.factor)", r.alpha_post, fmts.factor,
                                nonzero=True) if spiking else 0
    kind, width, slope, lut = "", 0, 0, np.zeros(1, np.int64)
    if spiking:
        kind = r.psi.kind
        if kind == "triangle":
            _quantize_constant(f"{where}.psi.scale (quant.psi)", r.psi.scale, fmts.psi, nonzero=True)
            width = _quantize_constant(f"{where}.psi.width (quant.membrane)", r.psi.width, fmts.membrane, nonzero=True)
            slope = _quantize_constant(f"{where}.psi.scale / psi.width (quant.psi_slope)", r.psi.scale / r.psi.width,
                                       fmts.psi_slope, nonzero=True)
        else:
            _quantize_constant(f"{where}.psi: Psi(0) = 1 (quant.psi)", 1.0, fmts.psi, nonzero=True)
            lut = psi_lut_values(r.psi, fmts.membrane, fmts.psi_lut, fmts.psi)
    leak_shift = 0
    if fmts.leak_mode == "shift":
        real = math.ldexp(beta, -fmts.leak.frac)
        n = -math.log2(1.0 - real) if real < 1.0 else math.inf
        if not (n.is_integer() and n >= 1) or math.ldexp(1.0, -int(n)) != 1.0 - r.beta:
            raise InputError(f"{where}.beta = {r.beta!r}: leak_mode shift needs beta = 1 - 2**-n exactly "
                             f"(and representable in {fmts.leak.describe_short()})")
        leak_shift = int(n)
    return LayerConstants(beta, theta, lam_pre, lam_post, a_pre, a_post, kind, width, slope, lut, leak_shift)


def check_layer_indices(network, quant: QuantConfig) -> None:
    for index in quant.layers:
        if index >= len(network.layers):
            raise InputError(f"quant.layers.{index}: no such layer (network has {len(network.layers)})")
        if network.layers[index].kind == "readout":
            pass


def check_learning(learning) -> None:
    """The integer model trains with SGD on the 'mse' loss, rules stllr / readout_only."""
    if learning.loss != "mse":
        raise InputError("learning.loss: the integer model implements 'mse' only (softmax is not "
                         "hardware friendly); set learning.loss: mse")
    if learning.rule not in ("stllr", "readout_only"):
        raise InputError(f"learning.rule = {learning.rule!r}: the integer model trains with 'stllr' or 'readout_only'")


def width(ib: int, frac: int) -> int:
    """Bits of a two's complement value with ``ib`` integer bits (sign included) and ``frac``."""
    return ib + frac


def ib(fmt: FixedFormat) -> int:
    """Integer bits of a format, sign included (a product's are the sum of its operands')."""
    return fmt.bits - fmt.frac + (0 if fmt.signed else 1)


def check_exact(where: str, bits: int) -> None:
    if bits > EXACT_BITS:
        raise InputError(f"{where}: intermediate needs {bits} bits, above the {EXACT_BITS}-bit limit of the "
                         "exact datapath (int64 kernels, float64 emulation); narrow the formats")


def eta_code(fmt: FixedFormat, lr: float, batch: int, window: int, unscaled: bool) -> int:
    """The eta code the weight write multiplies by, in the ``learning_rate`` format.

    eta = lr / (B k) (the float loss averages over batch and window), or lr alone for sDFA
    hidden layers (the float sDFA signal sign(error) carries no 1/(B k)); quantized
    nearest-even. A value the format cannot hold, or one that rounds to 0, is an error.
    """
    value = lr if unscaled else lr / (batch * window)
    plain = fmt.replace(rounding="nearest_even", overflow="saturate")
    try:
        plain.check_fits("train.lr / (batch * window) (quant.learning_rate)", value)
    except ValueError as error:
        raise InputError(str(error)) from None
    code = int(plain.quantize(value))
    if code == 0:
        raise InputError(f"train.lr / (batch * window) = {value!r} quantizes to 0 in "
                         f"quant.learning_rate {fmt.describe_short()}")
    return code
