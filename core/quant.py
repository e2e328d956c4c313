"""The ``quant:`` section of the config: every format of the integer S-TLLR model, once.

A format is a :class:`~core.formats.FixedFormat` (``s16.10`` = signed, 16 bits
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
      softmax:         u16.15    # cross-entropy: exponentials, 1/sum, probabilities, log2(e)
      momentum:        s32.16    # lion: one momentum word per weight, at the accumulator's scale
      psi_lut: {kind: segmented, entries: 48, mantissa_bits: 3, index_shift: 0}
                                 # or {kind: uniform, entries: 64, index_shift: 3}
      softmax_lut: {entries: 64}  # 2^-r, r in [0, 1), at bin centres (fixedpoint/softmax.py)
      leak_mode: multiply        # or shift: beta = 1 - 2**-n as v - v >> n (same bits)
      seed: 0                    # xorshift32 lane seed (stochastic weight write)
      layers:                    # per-layer overrides by index (or a list aligned
        1: {membrane: s16.8}     # with network.layers; null entries = no override)

``input``, ``error``, ``learning_rate``, ``softmax``, ``softmax_lut`` and ``seed`` are
network-wide only.
Stochastic rounding is allowed only on ``weight`` and ``bias`` (the weight write);
every other tensor rounds deterministically.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from core.formats import FixedFormat
from core.schema import StrictModel

# float64 holds every integer below 2**53 exactly: the emulation (fixedpoint.emulate)
# is bit-exact only while every intermediate of the datapath fits this many bits, and
# the integer kernels (int64, with rounding headroom) need no more. Checked up front.
EXACT_BITS = 53

LAYER_TENSORS = (
    "weight", "bias", "current", "membrane", "leak", "decay", "factor", "pre_trace",
    "post_trace", "psi", "psi_slope", "learning_signal", "modulation", "feedback", "update", "momentum",
)
NETWORK_TENSORS = ("input", "error", "learning_rate", "softmax")
SIGNED_TENSORS = ("weight", "bias", "current", "membrane", "factor", "learning_signal",
                  "modulation", "feedback", "update", "error", "momentum")
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


_Strict = StrictModel  # strict types, finite floats, no unknown keys (core/schema.py)


class PsiLutConfig(_Strict):
    """Rational Psi as a table read at ``index(|z|)``, ``z = u - theta`` in membrane codes.

    ``a = |z| >> index_shift``, then (``kind``):

    * ``uniform`` (the meaning of a ``psi_lut`` mapping without ``kind``):
      ``index = min(a, entries - 1)``; entry ``i`` is the float Psi at the centre of its
      bin, ``|z| = (i + 0.5) * 2**index_shift`` membrane lsb;
    * ``segmented`` (the default table): a float-like index, exact near 0 and log-spaced
      beyond. ``k = max(0, msb(a) - mantissa_bits)`` (``msb`` = leading-one position: a
      priority encoder), ``index = min((k << mantissa_bits) + (a >> k), entries - 1)``:
      ``a < 2**(mantissa_bits + 1)`` indexes directly, every octave above gets
      ``2**mantissa_bits`` entries. Entry ``i`` is the mean of the float Psi at the first
      and the last ``|z|`` code of its bin (exact where a bin holds one code, so
      ``Psi(0) = 1`` with ``index_shift: 0``).

    Entries are rounded into ``psi`` (nearest_even, saturate); the last entry also serves
    every ``|z|`` beyond the table. Default ``{kind: segmented, entries: 48,
    mantissa_bits: 3, index_shift: 0}``: on s16.10 membranes exact for ``|z| < 16`` lsb,
    covers ``|z| < 256`` lsb (Psi(0.25) = 1.5e-3, under half a ``u8.7`` lsb).
    """

    kind: Literal["uniform", "segmented"] = "uniform"
    entries: Annotated[int, Field(ge=2, le=1 << 20)] = 64
    index_shift: Annotated[int, Field(ge=0, le=62)] = 3
    mantissa_bits: Annotated[int, Field(ge=0, le=20)] | None = None  # segmented only

    @model_validator(mode="after")
    def _check_kind(self):
        if self.kind == "segmented" and self.mantissa_bits is None:
            raise ValueError("mantissa_bits is required with kind: segmented")
        if self.kind == "uniform" and self.mantissa_bits is not None:
            raise ValueError("mantissa_bits applies to kind: segmented only")
        if self.kind == "segmented":  # the last bin starts at 2**(mantissa_bits + k) << index_shift
            top = self.mantissa_bits + max(0, ((self.entries - 1) >> self.mantissa_bits) - 1) + self.index_shift
            if top > 61:
                raise ValueError(f"entries {self.entries} with mantissa_bits {self.mantissa_bits} and index_shift "
                                 f"{self.index_shift} reach |z| >= 2**{top + 1}, beyond any membrane; "
                                 "use fewer entries")
        return self


DEFAULT_PSI_LUT = PsiLutConfig(kind="segmented", entries=48, index_shift=0, mantissa_bits=3)


class SoftmaxLutConfig(_Strict):
    """The table of ``2^-r``, r in [0, 1), of the integer softmax: ``entries`` (a power of
    two) bins read at their centres (fixedpoint/softmax.py)."""

    entries: Annotated[int, Field(ge=2, le=1 << 12)] = 64

    @field_validator("entries")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"{value} is not a power of two (the index is the top bits of r)")
        return value


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
    momentum: FixedFormat | None = None
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
    # the update format's: the momentum is an average of accumulators, whose scale varies
    # ~1000x between layers and tasks; narrower per-layer formats trade memory for range
    momentum: FixedFormat = _fmt("s32.16")
    softmax: FixedFormat = _fmt("u16.15")
    psi_lut: PsiLutConfig = DEFAULT_PSI_LUT
    softmax_lut: SoftmaxLutConfig = SoftmaxLutConfig()
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
