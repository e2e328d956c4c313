"""Quantization-aware training (QAT) with Brevitas fixed-point quantizers, and conversion to
the integer model with an exact agreement check.

Every quantized quantity of the forward pass goes through a Brevitas quantizer built from
the SAME :class:`~fixedpoint.config.QuantConfig` format the integer model uses (never a
separately declared format; :func:`brevitas_quantizer` is the one translation):

========================  ===========================  ======================================
quantity                  format (``layer_formats``)   Brevitas module
========================  ===========================  ======================================
first-layer input x       ``input``                    ``QuantIdentity``  (``input_quant``)
W (and W_rec)             ``weight``                   ``QuantLinear`` / ``QuantConv2d``
                                                       weight quantizer (``synapse``,
                                                       ``rec_synapse``)
b                         ``bias``                     the same layer's bias quantizer
I = W x + W_rec o + b     ``current``                  ``QuantIdentity``  (``current_quant``)
u = beta v + I, v, y      ``membrane``                 ``QuantIdentity``  (``membrane_quant``)
beta                      ``leak``   (nearest, sat.)   Brevitas quantizer, applied once
theta                     ``membrane`` (nearest, sat.) Brevitas quantizer, applied once
========================  ===========================  ======================================

Format -> quantizer: ``bit_width = bits`` (sign included), ``signed``, ``narrow_range =
False``, a constant power-of-two scale ``2**-frac`` (``ScalingImplType.CONST`` +
``RestrictValueType.POWER_OF_TWO``), zero point 0, ``float_to_int_impl_type`` ROUND
(``torch.round``: ties to even = ``nearest_even``) or FLOOR (= ``floor``); Brevitas clamps,
which is the ``saturate`` overflow policy. ``nearest_away`` / ``stochastic`` rounding and
the ``wrap`` policy have no Brevitas equivalent and raise ``ValueError`` naming the field.

Exactness (why the QAT forward IS the integer forward): the network runs in float64.
Every quantizer output is ``m * 2**-frac`` with ``|m| < 2**bits``; the integer model's
datapath checks (``fixedpoint.config.check_exact``) keep every exact intermediate
(``W x + b`` at ``max(Fw + Fx, Fb)`` fraction bits; ``beta v + I`` at ``max(Fl + Fm, Fc)``)
within 53 bits, so float64 holds each sum and product exactly, in any summation order;
division and multiplication by the power-of-two scale are exact; and each Brevitas
quantizer then performs the integer model's single rounding (same mode) and saturation
of that exact value. Spikes ``u - theta > 0`` and the reset ``u - theta o`` are exact.
float32 (24-bit significand) cannot hold ``beta v`` (12 + 16 bits) exactly, so the QAT
network is float64 and refuses to step in any other dtype.

Training: the QAT network IS a :class:`~stllr.network.SpikingNetwork` (same layers,
state, ``step`` interface and parameter names), so the float rules train it unchanged:
``stllr.learning.stllr_batch`` (S-TLLR; its eligibility uses the quantized forward's
membrane, Psi is the float surrogate at ``u - theta_q``) or ``bptt_batch``; the loops of
``stllr.train`` (``run_epoch``, ``evaluate``) accept it. Gradients through quantizers are
Brevitas' straight-through estimators (round: identity; activation clamp: zero outside
the range; weight clamp: identity). S-TLLR writes ``param.grad`` of the latent float
weights directly (the STE of the weight quantizer).

Integer learning path: ``QATNetwork(..., learning_path=True)`` trains with
:func:`qat_stllr_batch` instead, which runs the integer model's learning path (the float64
emulation, :class:`QATLearningPath`) on the Brevitas forward: traces, Psi, error (or the
integer softmax error), learning signal, eligibility and the update accumulator in their
``quant:`` formats. ``param.grad = accumulator * update_scale`` is then exactly what the
integer model would accumulate for the same weights and batch (docs/qat.md section 8).

Conversion: :func:`qat_to_int` reads the integer weights from Brevitas
(``quant_weight().int()``, ``quant_bias().int()``), checks them against the integer
model's own quantization of the latent weights (``IntNetwork.from_float``), and returns
an :class:`~fixedpoint.network.IntNetwork` holding them. :func:`compare` runs both on the
same input and counts mismatches (spikes, readout codes, predictions).

The integer model trains with the stllr/readout_only rules only
(``fixedpoint.config.check_learning``; loss mse or ce); inference does not depend on the
rule, so :func:`qat_to_int` builds the integer model with ``rule: stllr`` for a
BPTT-trained net, which matters only if the integer model is trained on chip afterwards.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

import brevitas.nn as qnn
from brevitas.core.zero_point import ZeroZeroPoint
from brevitas.inject import ExtendedInjector
from brevitas.inject.enum import (
    BitWidthImplType,
    FloatToIntImplType,
    QuantType,
    RestrictValueType,
    ScalingImplType,
    ScalingPerOutputType,
)
from brevitas.quant.solver.act import ActQuantSolver
from brevitas.quant.solver.bias import BiasQuantSolver
from brevitas.quant.solver.weight import WeightQuantSolver

from core.quant import QuantConfig
from fixedpoint.config import check_layer_indices, layer_constants, layer_formats, update_scale
from fixedpoint.emulate import EmulatedNetwork
from core.overflow import OverflowCounter
from core.formats import FixedFormat
from fixedpoint.spec import check_widths, forward_widths
from core.config import LearningConfig, NetworkConfig
from stllr.functional import spike
from stllr.layers import (
    LayerState,
    Readout,
    RecurrentSpikingLinear,
    SpikingConv2d,
    SpikingLinear,
    StepRecord,
)
from stllr.network import SpikingNetwork

__all__ = [
    "BREVITAS_ROUNDING",
    "Agreement",
    "QATLearningPath",
    "QATNetwork",
    "brevitas_quantizer",
    "check_brevitas_format",
    "compare",
    "fine_tune_and_convert",
    "qat_quant",
    "qat_stllr_batch",
    "qat_to_int",
]

DTYPE = torch.float64

# ------------------------------------------------------------- format -> Brevitas quantizer

#: FixedFormat rounding -> Brevitas float_to_int_impl_type (torch.round ties to even).
BREVITAS_ROUNDING = {"nearest_even": FloatToIntImplType.ROUND, "floor": FloatToIntImplType.FLOOR}
_SOLVERS = {"weight": WeightQuantSolver, "bias": BiasQuantSolver, "act": ActQuantSolver}


class _FixedPointConst(ExtendedInjector):
    """Per-tensor integer quantizer with a constant power-of-two scale and zero point 0."""

    quant_type = QuantType.INT
    bit_width_impl_type = BitWidthImplType.CONST
    zero_point_impl = ZeroZeroPoint
    narrow_range = False
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    scaling_per_output_type = ScalingPerOutputType.TENSOR


def qat_quant(quant: QuantConfig) -> QuantConfig:
    """An on-chip ``quant:`` section as QAT takes it: the weight and bias writes round to
    nearest even (Brevitas has no stochastic rounding; QAT weights are latent floats, and
    the integer weights it hands over are on the grid whatever the write's rounding)."""
    return quant.model_copy(update={"weight": quant.weight.replace(rounding="nearest_even"),
                                    "bias": quant.bias.replace(rounding="nearest_even")})


def check_brevitas_format(fmt: FixedFormat, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``fmt`` has no exact Brevitas equivalent."""
    if fmt.rounding not in BREVITAS_ROUNDING:
        raise ValueError(f"{where}: rounding {fmt.rounding!r} of {fmt.describe_short()} has no Brevitas "
                         f"fixed-point equivalent; use {' or '.join(BREVITAS_ROUNDING)}")
    if fmt.overflow == "wrap":
        raise ValueError(f"{where}: overflow 'wrap' of {fmt.describe_short()} has no Brevitas equivalent "
                         "(Brevitas clamps); use saturate (or raise)")


def _spec_name(fmt: FixedFormat) -> str:
    frac = f"{fmt.frac}" if fmt.frac >= 0 else f"m{-fmt.frac}"
    mode = "Round" if fmt.rounding == "nearest_even" else "Floor"
    return f"{'Int' if fmt.signed else 'Uint'}{fmt.bits}Frac{frac}{mode}"


@functools.lru_cache(maxsize=None)
def brevitas_quantizer(fmt: FixedFormat, role: str = "act") -> type:
    """The Brevitas quantizer (an injector class) of one :class:`FixedFormat`.

    role: ``weight`` (for ``weight_quant=``), ``bias`` (``bias_quant=``, internal scale) or
    ``act`` (``QuantIdentity(act_quant=...)``). Named by its full spec, e.g.
    ``WeightInt8Frac6RoundFixedPoint`` for ``s8.6 nearest_even``.

    Brevitas computes ``scale = scaling_const / int_scaling`` with the power-of-two int
    scaling ``2**(bits-1)`` (signed) or ``2**bits`` (unsigned), so ``scaling_const =
    2**(bits - signed - frac)`` gives ``scale = 2**-frac`` exactly; the quantizer returns
    ``clamp(round(x / scale), min_int, max_int) * scale`` with the full two's complement
    range (no narrow range): the format's rounding, then saturation.
    """
    if role not in _SOLVERS:
        raise ValueError(f"role must be one of {', '.join(_SOLVERS)}, got {role!r}")
    check_brevitas_format(fmt, fmt.describe_short())
    threshold = math.ldexp(1.0, fmt.bits - int(fmt.signed) - fmt.frac)
    attrs = {
        "bit_width": fmt.bits,
        "signed": fmt.signed,
        "float_to_int_impl_type": BREVITAS_ROUNDING[fmt.rounding],
        "scaling_const": threshold,
    }
    if role == "act":
        attrs.update(max_val=threshold, min_val=-threshold if fmt.signed else 0.0)
    if role == "bias":
        attrs["requires_input_scale"] = False
    name = f"{role.capitalize()}{_spec_name(fmt)}FixedPoint"
    return type(name, (_FixedPointConst, _SOLVERS[role]), attrs)


def _quant_identity(fmt: FixedFormat, where: str) -> qnn.QuantIdentity:
    check_brevitas_format(fmt, where)
    return qnn.QuantIdentity(act_quant=brevitas_quantizer(fmt, "act"), return_quant_tensor=False)


def _brevitas_constant(value: float, fmt: FixedFormat) -> tuple[float, int]:
    """A constant through a Brevitas quantizer of ``fmt`` with nearest_even + saturate (as
    ``fixedpoint.config.layer_constants`` quantizes constants): (real value, integer code)."""
    quant = qnn.QuantIdentity(act_quant=brevitas_quantizer(fmt.replace(rounding="nearest_even",
                                                                       overflow="saturate"), "act"),
                              return_quant_tensor=True).to(DTYPE)
    out = quant(torch.tensor([value], dtype=DTYPE))
    return float(out.value), int(out.int().to(torch.int64))


# ---------------------------------------------------------------------------- layers


class _QuantizedForward:
    """Mixin over a float layer class: the quantized forward of STLLR.md's step.

        I = q_current(W_q x + W_rec,q o[t-1] + b_q)
        u = q_membrane(beta_q v[t-1] + I);  o = u - theta_q > 0;  v = q_membrane(u - theta_q o)

    (readout: y = q_membrane(beta_q y[t-1] + I)). The float layer's parameters stay the
    latent weights (same names, so the float learning rules find them); the Brevitas
    layers share them.
    """

    def _attach(self, index: int, quant: QuantConfig, network: NetworkConfig, learning: LearningConfig) -> None:
        fmts = layer_formats(quant, index)
        const = layer_constants(network, learning, quant, index, fmts)  # InputError names the field
        where = f"quant (layer {index})"
        for name in ("weight", "bias", "current", "membrane"):
            check_brevitas_format(getattr(fmts, name), f"{where}.{name}")
        if index == 0:
            check_brevitas_format(fmts.input, "quant.input")
        fan_in = math.prod(self.weight.shape[1:]) + (self.out_shape[0] if self.kind == "recurrent" else 0)
        # float64 is exact only while the forward's sums fit 53 bits, as the integer model's
        check_widths(forward_widths(fmts, fan_in), f"quant (layer {index}) QAT float64")
        self.index, self.fmts = index, fmts
        has_bias = self.bias is not None
        wq, bq = brevitas_quantizer(fmts.weight, "weight"), brevitas_quantizer(fmts.bias, "bias")
        if self.kind == "conv2d":
            c_out, c_in, kernel, _ = self.weight.shape
            self.synapse = qnn.QuantConv2d(c_in, c_out, kernel, self.stride, self.padding, bias=has_bias,
                                           weight_quant=wq, bias_quant=bq, return_quant_tensor=False)
        else:
            n_out, n_in = self.weight.shape
            self.synapse = qnn.QuantLinear(n_in, n_out, bias=has_bias, weight_quant=wq, bias_quant=bq,
                                           return_quant_tensor=False)
        self.rec_synapse = None
        if self.kind == "recurrent":
            size = self.rec_weight.shape[0]
            self.rec_synapse = qnn.QuantLinear(size, size, bias=False, weight_quant=wq, return_quant_tensor=False)
        self.input_quant = _quant_identity(fmts.input, "quant.input") if index == 0 else None
        self.current_quant = _quant_identity(fmts.current, f"{where}.current")
        self.membrane_quant = _quant_identity(fmts.membrane, f"{where}.membrane")
        self.beta_q, beta_code = _brevitas_constant(self.params.beta, fmts.leak)
        self.theta_q, theta_code = 0.0, 0
        if self.spiking:
            self.theta_q, theta_code = _brevitas_constant(self.params.theta, fmts.membrane)
        if (beta_code, theta_code) != (const.beta, const.theta):
            raise RuntimeError(f"layer {index}: Brevitas constants (beta {beta_code}, theta {theta_code}) differ "
                               f"from fixedpoint.config.layer_constants ({const.beta}, {const.theta})")
        self.tie()

    def tie(self) -> None:
        """Make the Brevitas layers use this layer's parameters (the latent float weights)."""
        if self.synapse.weight is not self.weight:
            self.synapse.weight = self.weight
        if self.bias is not None and self.synapse.bias is not self.bias:
            self.synapse.bias = self.bias
        if self.rec_synapse is not None and self.rec_synapse.weight is not self.rec_weight:
            self.rec_synapse.weight = self.rec_weight

    # -- quantized forward ------------------------------------------------------------
    def _quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prepare_input(x)
        return self.input_quant(x) if self.input_quant is not None else x

    def _current(self, x: torch.Tensor, prev_spikes: torch.Tensor | None) -> torch.Tensor:
        total = self.synapse(x)
        if self.rec_synapse is not None:
            total = total + self.rec_synapse(prev_spikes)
        return self.current_quant(total)

    def neuron(self, membrane: torch.Tensor, prev_spikes: torch.Tensor | None, x: torch.Tensor):
        """The quantized neuron of one step: (x as the synapses see it, current I, u,
        spikes o, membrane v after reset), all real values on their formats' grids."""
        x = self._quantized_input(x)
        current = self._current(x, prev_spikes)
        u = self.membrane_quant(self.beta_q * membrane + current)
        spikes = spike(u - self.theta_q, self.params.psi)
        fired = spikes.detach()
        after = u - self.theta_q * fired if self.params.reset == "soft" else u * (1.0 - fired)
        return x, current, u, spikes, self.membrane_quant(after)  # v on the grid already: only saturation acts

    def step(self, state: LayerState, x: torch.Tensor, traces: bool) -> tuple[LayerState, StepRecord]:
        """One time step of a spiking layer; records as the float step (Psi at u - theta_q)."""
        x, _, u, spikes, membrane = self.neuron(state.membrane, state.prev_spikes, x)
        return self.advance(state, x, u, self.theta_q, spikes, membrane, traces)


class QATSpikingLinear(_QuantizedForward, SpikingLinear):
    def __init__(self, layer: SpikingLinear, index: int, quant, network, learning) -> None:
        SpikingLinear.__init__(self, layer.params, layer.in_shape, layer.out_shape[0], layer.bias is not None)
        self._attach(index, quant, network, learning)


class QATRecurrentSpikingLinear(_QuantizedForward, RecurrentSpikingLinear):
    def __init__(self, layer: RecurrentSpikingLinear, index: int, quant, network, learning) -> None:
        RecurrentSpikingLinear.__init__(self, layer.params, layer.in_shape, layer.out_shape[0],
                                        layer.bias is not None)
        self._attach(index, quant, network, learning)


class QATSpikingConv2d(_QuantizedForward, SpikingConv2d):
    def __init__(self, layer: SpikingConv2d, index: int, quant, network, learning) -> None:
        SpikingConv2d.__init__(self, layer.params, layer.in_shape, layer.out_shape, layer.out_shape[0],
                               layer.weight.shape[-1], layer.stride, layer.padding, layer.bias is not None)
        self._attach(index, quant, network, learning)


class QATReadout(_QuantizedForward, Readout):
    def __init__(self, layer: Readout, index: int, quant, network, learning) -> None:
        Readout.__init__(self, layer.params, layer.in_shape, layer.out_shape[0], layer.bias is not None)
        self._attach(index, quant, network, learning)

    def neuron(self, membrane: torch.Tensor, prev_spikes: None, x: torch.Tensor):
        """(x as the synapses see it, current I, y, None, y): y[t] = q_membrane(beta_q y[t-1] + I[t])."""
        x = self._quantized_input(x)
        current = self._current(x, None)
        y = self.membrane_quant(self.beta_q * membrane + current)
        return x, current, y, None, y

    def step(self, state: LayerState, x: torch.Tensor, traces: bool) -> tuple[LayerState, StepRecord]:
        """y[t] = q_membrane(beta_q y[t-1] + I[t]); traces as the float readout."""
        x, _, y, _, _ = self.neuron(state.membrane, None, x)
        return self.advance_readout(state, x, y, traces)


QAT_LAYERS = {
    "linear": QATSpikingLinear,
    "recurrent": QATRecurrentSpikingLinear,
    "conv2d": QATSpikingConv2d,
    "readout": QATReadout,
}


# ---------------------------------------------------------------------------- network


class QATNetwork(SpikingNetwork):
    """A :class:`SpikingNetwork` whose forward is the integer model's, through Brevitas.

    ``QATNetwork(network, learning, quant)`` draws the same initial weights as
    ``SpikingNetwork(network, learning)`` under the same torch seed; ``from_float(net,
    quant)`` starts from a trained float network. Always float64 (see the module doc).
    """

    def __init__(self, network: NetworkConfig, learning: LearningConfig, quant: QuantConfig | None = None,
                 learning_path: bool = False) -> None:
        super().__init__(network, learning)  # float layers: the same random draws as the float model
        quant = quant or QuantConfig()
        check_layer_indices(network, quant)
        self.quant = quant
        float_layers = list(self.layers)
        with torch.random.fork_rng(devices=[]):  # building the Brevitas layers draws nothing visible
            self.layers = nn.ModuleList(
                QAT_LAYERS[layer.kind](layer, index, quant, network, learning)
                for index, layer in enumerate(float_layers))
        self.to(DTYPE)
        self.copy_weights(float_layers)
        #: True: S-TLLR trains through the integer learning path (:func:`qat_stllr_batch`);
        #: the float path (``stllr_batch``, which steps with traces) is refused.
        self.learning_path = bool(learning_path)
        self.integer_learning = QATLearningPath(self) if learning_path else None  # validates rule + formats

    @classmethod
    def from_float(cls, net: SpikingNetwork, quant: QuantConfig | None = None,
                   learning_path: bool = False) -> "QATNetwork":
        """QAT copy of a float network (its weights become the latent weights); RNG untouched."""
        with torch.random.fork_rng(devices=[]):
            qat = cls(net.network_config, net.learning_config, quant, learning_path)
        qat.copy_weights(net.layers)
        for index in range(len(qat.layers) - 1):
            qat.feedback(index).copy_(net.feedback(index))
        return qat

    @torch.no_grad()
    def copy_weights(self, layers) -> None:
        """Copy weight, bias, rec_weight of float layers into the latent weights (exact to float64)."""
        for mine, theirs in zip(self.layers, layers):
            for name in ("weight", "bias", "rec_weight"):
                target = getattr(mine, name, None)
                if target is not None:
                    target.copy_(getattr(theirs, name))
            mine.tie()

    def to_float(self) -> SpikingNetwork:
        """A float64 :class:`SpikingNetwork` holding the latent (unquantized) weights."""
        with torch.random.fork_rng(devices=[]):
            net = SpikingNetwork(self.network_config, self.learning_config).to(DTYPE)
        with torch.no_grad():
            for mine, theirs in zip(net.layers, self.layers):
                for name in ("weight", "bias", "rec_weight"):
                    target = getattr(mine, name, None)
                    if target is not None:
                        target.copy_(getattr(theirs, name))
            for index in range(len(self.layers) - 1):
                net.feedback(index).copy_(self.feedback(index))
        return net

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        for layer in self.layers:  # keep the Brevitas layers on the (possibly new) parameters
            if isinstance(layer, _QuantizedForward):
                layer.tie()
        return out

    def step(self, state, x: torch.Tensor, traces: bool = False):
        if self.readout.weight.dtype != DTYPE:
            raise TypeError(f"QATNetwork runs in float64 only (got {self.readout.weight.dtype}): float32 "
                            "cannot hold beta * v + current exactly, so it would not match the integer model")
        if traces and self.learning_path:
            raise TypeError("this QATNetwork has learning_path=True: train it with fixedpoint.qat.qat_stllr_batch "
                            "(integer traces, Psi and update), not with the float stllr_batch")
        return super().step(state, x, traces)

    @torch.no_grad()
    def int_parameters(self) -> list[dict[str, np.ndarray]]:
        """Per layer, the integer codes Brevitas holds: ``weight`` (C_out, taps), ``bias``,
        ``rec_weight`` (int64), from ``quant_weight().int()`` / ``quant_bias().int()``; the
        scale and bit width of each are checked against the layer's format."""
        out = []
        for layer in self.layers:
            codes = {}
            parts = (("weight", layer.synapse.quant_weight(), layer.fmts.weight),
                     ("bias", layer.synapse.quant_bias(), layer.fmts.bias),
                     ("rec_weight", layer.rec_synapse.quant_weight() if layer.rec_synapse is not None else None,
                      layer.fmts.weight))
            for name, qt, fmt in parts:
                if qt is None:
                    continue
                _check_quant_tensor(f"layer{layer.index}.{name}", qt, fmt)
                ints = qt.int().to(torch.int64).numpy()
                codes[name] = ints.reshape(ints.shape[0], -1) if name == "weight" else ints
            out.append(codes)
        return out


class QATLearningPath(EmulatedNetwork):
    """The integer model's S-TLLR learning path, driven by the Brevitas forward.

    It IS the float64 emulation of the integer model (:class:`fixedpoint.emulate.EmulatedNetwork`,
    bit-exact with :class:`~fixedpoint.network.IntNetwork`) with one method replaced: the
    neuron of each layer (current, u, spikes, v) comes from the QAT network's Brevitas
    layers (:meth:`_QuantizedForward.neuron`), which compute the same values. Everything
    after the neuron is the emulation's: Psi (triangle / LUT) and the pre, post, bias and
    recurrent traces in their formats, the learning signal (mse error, or the integer
    softmax error for ``loss: ce``; BP through the quantized weights, or DFA/sDFA), the
    modulation and the update accumulator in the ``update`` format.

    Instead of the integer weight write, a flush puts ``accumulator * update_scale`` into
    ``param.grad`` of the latent weights and calls the user's optimizer step (``etas`` of
    the last run hold these scales). ``em.overflow`` counts the learning path's
    saturate/wrap events (the Brevitas forward clamps silently).
    """

    def __init__(self, qat: "QATNetwork") -> None:
        super().__init__(qat, qat.quant, rule=qat.learning_config.rule)  # check_learning names the rule
        self.em.overflow = OverflowCounter()  # count the learning path only, not the build's weight quantization
        self.apply_update = None
        #: per learning layer, the accumulators (real values, update format) of the last flush
        self.last_accumulators: dict[int, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def load_weights(self) -> None:
        """The quantized weights the Brevitas forward uses now (for the BP learning signal)."""
        for s, layer in zip(self.layers, self.net.layers):
            s["weight"] = layer.synapse.quant_weight().value.detach().clone()
            if layer.rec_synapse is not None:
                s["rec_weight"] = layer.rec_synapse.quant_weight().value.detach().clone()
            if layer.bias is not None:
                s["bias"] = layer.synapse.quant_bias().value.detach().clone()

    def neuron(self, s, st: dict, x: torch.Tensor):
        layer = self.net.layers[s["index"]]
        batch = x.shape[0]
        membrane = st["membrane"].reshape(batch, *layer.out_shape)
        prev_spikes = st["prev_spikes"] if s["kind"] == "recurrent" else None
        _, current, u, spikes, v = layer.neuron(membrane, prev_spikes, x)
        flat = lambda t: None if t is None else t.reshape(batch, -1)  # noqa: E731 - the emulation is flat
        return flat(current), flat(u), flat(spikes), flat(v)

    def _eta(self, i: int, batch: int, window: int) -> float:
        # No integer write here: the user's optimizer steps on the latent weights. What
        # the flush needs per layer is the accumulator -> grad scale instead.
        readout = i == len(self.layers) - 1
        return update_scale(self.learning.learning_signal, readout, batch, window)

    def _flush(self, states, scales, log) -> None:
        self.last_accumulators = {}
        for i in self.learners:
            layer = self.net.layers[i]
            acc = states[i]["acc"]
            self.last_accumulators[i] = acc
            for name in ("weight", "rec_weight", "bias"):
                param = getattr(layer, name, None)
                if param is not None:
                    param.grad = (acc[name] * scales[i]).reshape(param.shape)
            states[i]["acc"] = {name: torch.zeros_like(value) for name, value in acc.items()}
        if self.apply_update is not None:
            self.apply_update()
            self.load_weights()  # online: the rest of the sample runs on the new weights


@torch.no_grad()
def qat_stllr_batch(qat: "QATNetwork", x: torch.Tensor, target: torch.Tensor,
                    apply_update: Callable[[], None] | None = None, rule: str | None = None):
    """One S-TLLR batch of a ``learning_path=True`` QAT network through the integer
    learning path: x (B, T, *input_shape), target (B,) class indices.

    Fills ``param.grad`` of the learning layers with the integer update accumulator's
    real value times ``fixedpoint.config.update_scale`` (1 / (B k); 1 for sDFA hidden
    layers), i.e. exactly ``IntNetwork``'s accumulator for the same weights and batch,
    in the units of the float rule's grad; calls ``apply_update`` (the user's optimizer
    step) once per batch, or after every window step with ``learning.update: online``.
    ``rule`` (stllr_batch's argument) must be None or the network's. Returns
    :class:`stllr.learning.BatchResult` (the float windowed loss on the QAT readout).
    """
    from core.config import window_start
    from stllr.learning import BatchResult, step_loss

    path = qat.integer_learning
    if path is None:
        raise ValueError("learning_path: qat_stllr_batch needs QATNetwork(..., learning_path=True)")
    cfg = qat.learning_config
    if rule not in (None, cfg.rule):
        raise ValueError(f"rule: the integer learning path was built for learning.rule {cfg.rule!r}, got {rule!r}")
    if qat.readout.weight.dtype != DTYPE:
        raise TypeError(f"QATNetwork runs in float64 only (got {qat.readout.weight.dtype})")
    path.load_weights()
    path.apply_update = apply_update
    try:
        y, _, _ = path.run(x, target, train=True)
    finally:
        path.apply_update = None
    target = torch.as_tensor(target)
    start = window_start(x.shape[1], cfg.window)
    k = x.shape[1] - start
    loss = sum(float(step_loss(y[:, t], target, cfg.loss)) for t in range(start, x.shape[1])) / k
    prediction = y[:, start:].sum(1).argmax(-1)
    return BatchResult(loss, int((prediction == target).sum()), prediction)


def _check_quant_tensor(name: str, qt, fmt: FixedFormat) -> None:
    scale, bits = float(qt.scale), int(qt.bit_width)
    if scale != fmt.lsb or bits != fmt.bits or bool(qt.signed) != fmt.signed or float(qt.zero_point) != 0.0:
        raise RuntimeError(f"{name}: Brevitas quant tensor (scale {scale!r}, bit_width {bits}, signed "
                           f"{bool(qt.signed)}) does not match {fmt.describe_short()} (lsb {fmt.lsb!r})")


# ---------------------------------------------------------------------------- conversion


def qat_to_int(qat: QATNetwork, quant: QuantConfig | None = None, lr: float = 1e-3):
    """The integer model of a QAT network, with the integer weights Brevitas computed.

    Takes W, W_rec, b from ``QATNetwork.int_parameters`` (Brevitas ``.int()``), checks that
    they equal ``IntNetwork.from_float``'s own quantization of the latent weights (a
    RuntimeError names the tensor otherwise), and puts them in the integer model.
    ``quant`` must be the QAT network's (default: it). The integer model's learning config
    uses ``rule: stllr`` when the float one is BPTT (inference is the same; the integer
    model trains with stllr and readout_only only).
    """
    from fixedpoint.network import IntNetwork

    if quant is not None and quant != qat.quant:
        raise ValueError("quant: qat_to_int needs the QuantConfig the QAT network was built with "
                         "(its formats are the ones Brevitas quantized to)")
    learning = qat.learning_config
    update = {}
    if learning.rule not in ("stllr", "readout_only"):
        update["rule"] = "stllr"
    net = qat.to_float()
    if update:
        net.learning_config = learning.model_copy(update=update)
    model = IntNetwork.from_float(net, qat.quant, lr=lr)
    layers = []
    for lp, codes, qlayer in zip(model.params.layers, qat.int_parameters(), qat.layers):
        changes = {}
        for name, ints in codes.items():
            reference = getattr(lp, name)
            if reference.shape != ints.shape or not np.array_equal(reference, ints):
                bad = int(np.count_nonzero(reference != ints)) if reference.shape == ints.shape else ints.size
                raise RuntimeError(f"{lp.name}.{name}: {bad} Brevitas integer codes differ from "
                                   "IntNetwork.from_float's quantization of the same weights")
            changes[name] = ints
        if (lp.const.beta, lp.const.theta) != (_code(qlayer.beta_q, lp.fmts.leak),
                                               _code(qlayer.theta_q, lp.fmts.membrane)):
            raise RuntimeError(f"{lp.name}: QAT constants beta/theta differ from the integer model's")
        layers.append(replace(lp, **changes))
    model.params = replace(model.params, layers=tuple(layers))
    return model


def _code(value: float, fmt: FixedFormat) -> int:
    scaled = math.ldexp(value, fmt.frac)
    if not scaled.is_integer():
        raise RuntimeError(f"{value!r} is not on the {fmt.describe_short()} grid")
    return int(scaled)


# ---------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class Agreement:
    """Mismatches between the QAT network and the integer model on the same samples."""

    samples: int
    spike_mismatches: tuple[int, ...]  # per spiking layer: (b, t, neuron) elements that differ
    spike_elements: tuple[int, ...]  # per spiking layer: elements compared
    readout_mismatches: int  # (b, t, class) readout codes that differ
    prediction_mismatches: int  # samples whose predicted class differs
    qat_correct: int  # samples the QAT network classifies correctly (when labels are given)
    int_correct: int  # same for the integer model

    @property
    def exact(self) -> bool:
        return not (sum(self.spike_mismatches) or self.readout_mismatches or self.prediction_mismatches)


@torch.no_grad()
def _qat_run(qat: QATNetwork, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    state = qat.initial_state(x.shape[0], traces=False, like=qat.readout.weight)
    ys, spikes = [], [[] for _ in qat.layers[:-1]]
    for t in range(x.shape[1]):
        state, records = qat.step(state, x[:, t].to(DTYPE))
        ys.append(records[-1].output)
        for store, record in zip(spikes, records[:-1]):
            store.append(record.output.reshape(x.shape[0], -1))
    return torch.stack(ys, 1), [torch.stack(s, 1) for s in spikes]


def compare(qat: QATNetwork, int_net, x: np.ndarray, y: np.ndarray | None = None,
            batch_size: int = 256) -> Agreement:
    """Run both models on x (N, T, *input_shape) and count mismatches (see :class:`Agreement`).

    Readout: the QAT y[t] times 2**frac(readout membrane) must be the integer code.
    Prediction: argmax of y summed over the window of the last k steps, in both.
    """
    from core.config import window_start

    frac = int_net.params.layers[-1].fmts.membrane.frac
    window = int_net.params.window
    n_spiking = len(qat.layers) - 1
    spike_bad, spike_all = [0] * n_spiking, [0] * n_spiking
    readout_bad = pred_bad = qat_ok = int_ok = 0
    for start in range(0, x.shape[0], batch_size):
        xb = np.asarray(x[start:start + batch_size])
        y_qat, s_qat = _qat_run(qat, torch.from_numpy(xb))
        result = int_net.infer(xb)
        codes = torch.ldexp(y_qat, torch.tensor(float(frac), dtype=DTYPE))
        if not torch.equal(codes, torch.round(codes)):
            raise RuntimeError("QAT readout is off the membrane grid: the Brevitas path is not fixed point")
        readout_bad += int(np.count_nonzero(codes.to(torch.int64).numpy() != result.readout))
        for i, (a, b) in enumerate(zip(s_qat, result.spikes)):
            spike_bad[i] += int(np.count_nonzero(a.to(torch.int64).numpy() != b.reshape(a.shape)))
            spike_all[i] += b.size
        win = window_start(xb.shape[1], window)
        pred_qat = y_qat[:, win:].sum(1).argmax(-1).numpy()
        pred_bad += int(np.count_nonzero(pred_qat != result.prediction))
        if y is not None:
            yb = np.asarray(y[start:start + batch_size])
            qat_ok += int(np.count_nonzero(pred_qat == yb))
            int_ok += int(np.count_nonzero(result.prediction == yb))
    return Agreement(int(x.shape[0]), tuple(spike_bad), tuple(spike_all), readout_bad, pred_bad, qat_ok, int_ok)


def fine_tune_and_convert(qat: QATNetwork, config, train_set, test_set, first_epoch: int, epochs: int):
    """S-TLLR QAT epochs ``first_epoch .. first_epoch + epochs - 1`` with the config's rule and
    optimizer (through the integer learning path, :func:`qat_stllr_batch`, when the network
    was built with ``learning_path=True``), then the integer model and its agreement on the
    test set.

    Returns (QAT test accuracy, IntNetwork, Agreement)."""
    from stllr.train import build_optimizer, evaluate, run_epoch

    optimizer = build_optimizer(qat, config)
    batch_fn = qat_stllr_batch if qat.learning_path else None
    for epoch in range(first_epoch, first_epoch + epochs):
        run_epoch(qat, optimizer, train_set, config, epoch, batch_fn=batch_fn)
    accuracy = evaluate(qat, test_set).accuracy
    model = qat_to_int(qat)
    agreement = compare(qat, model, test_set.x, test_set.y)
    if agreement.qat_correct / test_set.num_samples != accuracy:
        raise RuntimeError("compare() and stllr.train.evaluate disagree on the QAT accuracy")
    return accuracy, model, agreement
