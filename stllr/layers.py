"""Layers of the float model: spiking Linear, Conv2d, recurrent Linear, and the readout.

Each layer is a thin module that owns its weights; its :meth:`step` is the STLLR.md
equations for one time step, mapping (state, input) to (state, record). The record
holds what the learning rule needs at that step (input, traces, Psi, output); the rule
itself lives in :mod:`stllr.learning`. States are immutable named tuples, rebuilt every
step, and start at zero for every sample.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from core.config import ResolvedLayer
from stllr.functional import decay_trace, lif_step, psi


class LayerState(NamedTuple):
    """State of one layer between steps. Trace fields are None when not tracked."""

    membrane: torch.Tensor  # v[t] after reset (spiking) or y[t] (readout), output shape
    pre_trace: torch.Tensor | None  # q[t], input shape
    post_trace: torch.Tensor | None  # p[t], output shape (spiking layers)
    bias_trace: torch.Tensor | None  # q_b[t], trace of the constant input 1 (scalar)
    prev_spikes: torch.Tensor | None  # o[t-1] (recurrent layers)
    rec_pre_trace: torch.Tensor | None  # q_rec[t], trace of o[t-1] (recurrent layers)


class StepRecord(NamedTuple):
    """What one layer computed at step t, for the learning rule."""

    input: torch.Tensor  # x[t] as the synapses saw it (flattened for dense layers)
    output: torch.Tensor  # o[t] spikes, or y[t] for the readout (carries the step's graph)
    psi: torch.Tensor | None  # Psi(u[t] - theta), detached (None for the readout)
    pre_trace: torch.Tensor | None  # q[t]
    post_trace_prev: torch.Tensor | None  # p[t-1]: the non-causal term uses it before psi[t] is added
    bias_trace: torch.Tensor | None  # q_b[t]
    rec_input: torch.Tensor | None  # o[t-1]
    rec_pre_trace: torch.Tensor | None  # q_rec[t]


def _uniform_(tensor: torch.Tensor, bound: float) -> None:
    nn.init.uniform_(tensor, -bound, bound)


class Layer(nn.Module):
    """Common parts: neuron parameters, factors, the weight/bias pair and its init."""

    kind: str = ""

    def __init__(self, params: ResolvedLayer, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 weight_shape: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        self.params = params
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        # PyTorch's default init (kaiming_uniform with a = sqrt(5)), as nn.Linear/Conv2d do.
        fan_in = math.prod(weight_shape[1:])
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            _uniform_(self.bias, 1.0 / math.sqrt(fan_in))

    @property
    def spiking(self) -> bool:
        return self.kind != "readout"

    # -- synapses ---------------------------------------------------------------
    def synaptic_current(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def weight_correlation(self, grad_out: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        """sum over batch of grad_out (B, N_out) outer pre (B, N_in): a weight-shaped tensor."""
        return grad_out.transpose(0, 1) @ pre

    def bias_sum(self, grad_out: torch.Tensor) -> torch.Tensor:
        return grad_out.sum(0)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)

    # -- state ------------------------------------------------------------------
    def initial_state(self, batch: int, traces: bool, like: torch.Tensor) -> LayerState:
        zeros = lambda shape: like.new_zeros((batch, *shape))  # noqa: E731
        in_shape = (math.prod(self.in_shape),) if self.kind != "conv2d" else self.in_shape
        return LayerState(
            membrane=zeros(self.out_shape),
            pre_trace=zeros(in_shape) if traces else None,
            post_trace=zeros(self.out_shape) if traces and self.spiking else None,
            bias_trace=like.new_zeros(()) if traces else None,
            prev_spikes=zeros(self.out_shape) if self.kind == "recurrent" else None,
            rec_pre_trace=zeros(self.out_shape) if traces and self.kind == "recurrent" else None,
        )

    def step(self, state: LayerState, x: torch.Tensor, traces: bool) -> tuple[LayerState, StepRecord]:
        """One time step of a spiking layer (the readout overrides this)."""
        p = self.params
        x = self.prepare_input(x)
        current = self.synaptic_current(x)
        if self.kind == "recurrent":
            current = current + F.linear(state.prev_spikes, self.rec_weight)
        u, spikes, membrane = lif_step(state.membrane, current, p.beta, p.theta, p.reset, p.psi)
        return self.advance(state, x, u, p.theta, spikes, membrane, traces)

    def advance(self, state: LayerState, x: torch.Tensor, u: torch.Tensor, theta: float, spikes: torch.Tensor,
                membrane: torch.Tensor, traces: bool) -> tuple[LayerState, StepRecord]:
        """The rest of a spiking step, after the neuron: Psi(u - theta) and the traces
        q, p, q_b (and q_rec of o[t-1]); shared by every model with this layer's record."""
        p = self.params
        recurrent = self.kind == "recurrent"
        if not traces:
            new = state._replace(membrane=membrane, prev_spikes=spikes if recurrent else None)
            return new, StepRecord(x, spikes, None, None, None, None, state.prev_spikes, None)
        x_value = x.detach()
        psi_now = psi(u.detach() - theta, p.psi)
        pre_trace = decay_trace(state.pre_trace, p.lambda_pre, x_value)
        post_trace = decay_trace(state.post_trace, p.lambda_post, psi_now)
        bias_trace = decay_trace(state.bias_trace, p.lambda_pre, torch.ones_like(state.bias_trace))
        rec_input = rec_pre_trace = None
        if recurrent:
            rec_input = state.prev_spikes.detach()
            rec_pre_trace = decay_trace(state.rec_pre_trace, p.lambda_pre, rec_input)
        new = LayerState(membrane, pre_trace, post_trace, bias_trace, spikes if recurrent else None, rec_pre_trace)
        record = StepRecord(x_value, spikes, psi_now, pre_trace, state.post_trace, bias_trace,
                            rec_input, rec_pre_trace)
        return new, record

    # -- S-TLLR update ----------------------------------------------------------
    def accumulate(self, acc: dict[str, torch.Tensor], record: StepRecord, signal: torch.Tensor,
                   bias_mode: str) -> dict[str, torch.Tensor]:
        """``acc`` + sum_b L[t] * e[t], as new weight-shaped tensors (the integer model's
        ``int_accumulate`` has the same shape: accumulators in, accumulators out).

        e_ij[t] = alpha_pre psi_i[t] q_j[t] + alpha_post p_i[t-1] x_j[t]; the outer
        product is never formed per sample: each term is one correlation over the batch.
        """
        p = self.params
        causal = p.alpha_pre * signal * record.psi
        noncausal = p.alpha_post * signal * record.post_trace_prev if p.alpha_post != 0.0 else None
        new = {"weight": acc["weight"] + self._correlate(causal, record.pre_trace, noncausal, record.input)}
        if self.kind == "recurrent":
            new["rec_weight"] = acc["rec_weight"] + self._correlate(causal, record.rec_pre_trace, noncausal,
                                                                    record.rec_input)
        if self.bias is not None:
            if bias_mode == "reference":
                new["bias"] = acc["bias"] + self.bias_sum(signal * record.psi)
            else:  # bias as a weight on a constant input 1 with its own pre-trace q_b
                exact = causal * record.bias_trace
                if noncausal is not None:
                    exact = exact + noncausal
                new["bias"] = acc["bias"] + self.bias_sum(exact)
        return new

    def _correlate(self, causal, pre, noncausal, x) -> torch.Tensor:
        if noncausal is None:
            return self.weight_correlation(causal, pre)
        return self.weight_correlation(causal, pre) + self.weight_correlation(noncausal, x)


class SpikingLinear(Layer):
    kind = "linear"

    def __init__(self, params: ResolvedLayer, in_shape, size: int, bias: bool = True) -> None:
        super().__init__(params, in_shape, (size,), (size, math.prod(in_shape)), bias)


class RecurrentSpikingLinear(Layer):
    """Dense spiking layer with recurrent weights: u[t] += W_rec o[t-1]."""

    kind = "recurrent"

    def __init__(self, params: ResolvedLayer, in_shape, size: int, bias: bool = True) -> None:
        super().__init__(params, in_shape, (size,), (size, math.prod(in_shape)), bias)
        self.rec_weight = nn.Parameter(torch.empty(size, size))
        nn.init.kaiming_uniform_(self.rec_weight, a=math.sqrt(5))


class SpikingConv2d(Layer):
    """Convolutional spiking layer; each kernel tap sums e over output positions."""

    kind = "conv2d"

    def __init__(self, params: ResolvedLayer, in_shape, out_shape, channels: int, kernel: int,
                 stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__(params, in_shape, out_shape, (channels, in_shape[0], kernel, kernel), bias)
        self.stride = stride
        self.padding = padding

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.in_shape)

    def synaptic_current(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def weight_correlation(self, grad_out: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        return torch.nn.grad.conv2d_weight(pre, self.weight.shape, grad_out, self.stride, self.padding)

    def bias_sum(self, grad_out: torch.Tensor) -> torch.Tensor:
        return grad_out.sum((0, 2, 3))


class Readout(Layer):
    """Leaky integrator y[t] = beta * y[t-1] + W x[t] + b, no threshold.

    Its eligibility is the pre-trace alone, scaled by alpha_pre: e_ij[t] = alpha_pre q_j[t]
    (lambda_post and alpha_post do not apply: there is no post-synaptic spike).
    """

    kind = "readout"

    def __init__(self, params: ResolvedLayer, in_shape, size: int, bias: bool = True) -> None:
        super().__init__(params, in_shape, (size,), (size, math.prod(in_shape)), bias)

    def step(self, state: LayerState, x: torch.Tensor, traces: bool) -> tuple[LayerState, StepRecord]:
        x = self.prepare_input(x)
        y = self.params.beta * state.membrane + self.synaptic_current(x)
        return self.advance_readout(state, x, y, traces)

    def advance_readout(self, state: LayerState, x: torch.Tensor, y: torch.Tensor,
                        traces: bool) -> tuple[LayerState, StepRecord]:
        """The rest of a readout step, after y[t]: the pre-trace q and the bias trace q_b."""
        if not traces:
            return state._replace(membrane=y), StepRecord(x, y, None, None, None, None, None, None)
        x_value = x.detach()
        pre_trace = decay_trace(state.pre_trace, self.params.lambda_pre, x_value)
        bias_trace = decay_trace(state.bias_trace, self.params.lambda_pre, torch.ones_like(state.bias_trace))
        new = state._replace(membrane=y, pre_trace=pre_trace, bias_trace=bias_trace)
        return new, StepRecord(x_value, y, None, pre_trace, None, bias_trace, None, None)

    def accumulate(self, acc: dict[str, torch.Tensor], record: StepRecord, signal: torch.Tensor,
                   bias_mode: str) -> dict[str, torch.Tensor]:
        """``acc`` + sum_b L[t] alpha_pre q[t] (the readout's eligibility is its pre-trace)."""
        scaled = self.params.alpha_pre * signal
        new = {"weight": acc["weight"] + self.weight_correlation(scaled, record.pre_trace)}
        if self.bias is not None:
            new["bias"] = acc["bias"] + self.bias_sum(signal if bias_mode == "reference" else scaled * record.bias_trace)
        return new
