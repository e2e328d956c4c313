"""Pure step functions of the float model (STLLR.md, "One spiking layer").

Everything here maps tensors to tensors with no hidden state, so the same functions
serve S-TLLR (one-step graphs), BPTT (a graph through time) and tests.

Shapes: ``(B, ...)`` with the batch first; membrane, currents and Psi share the output
shape of the layer, traces the shape of what they trace.
"""

from __future__ import annotations

import torch

from core.config import PsiConfig


def psi(z: torch.Tensor, config: PsiConfig) -> torch.Tensor:
    """Secondary activation Psi(z) for z = u - theta.

    rational: 1 / (1 + gamma |z|)^2;  triangle: scale * max(0, 1 - |z| / width).
    """
    if config.kind == "rational":
        return 1.0 / (1.0 + config.gamma * z.abs()) ** 2
    return config.scale * torch.clamp(1.0 - z.abs() / config.width, min=0.0)


class _SpikeWithSurrogate(torch.autograd.Function):
    """Heaviside(z > 0) forward; Psi(z) as its derivative backward."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, config: PsiConfig) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.psi_config = config
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (z,) = ctx.saved_tensors
        return grad_spikes * psi(z, ctx.psi_config), None


def spike(z: torch.Tensor, config: PsiConfig) -> torch.Tensor:
    """o = 1 if z > 0 else 0, differentiable with Psi as the surrogate derivative."""
    return _SpikeWithSurrogate.apply(z, config)


def lif_step(
    membrane: torch.Tensor,
    current: torch.Tensor,
    beta: float,
    theta: float,
    reset: str,
    psi_config: PsiConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LIF step. Returns (u, spikes, membrane after reset).

        u[t] = beta * v[t-1] + I[t];   o[t] = u[t] - theta > 0
        v[t] = u[t] - theta o[t]  (soft)   or   u[t] (1 - o[t])  (hard)

    The reset uses the detached spike ("detached reset"): gradients do not flow through
    it, as in S-TLLR and most BPTT codes; this is what makes the STLLR.md identity exact.
    """
    u = beta * membrane + current
    spikes = spike(u - theta, psi_config)
    fired = spikes.detach()
    if reset == "soft":
        after = u - theta * fired
    else:
        after = u * (1.0 - fired)
    return u, spikes, after


def decay_trace(trace: torch.Tensor, decay: float, value: torch.Tensor) -> torch.Tensor:
    """trace[t] = decay * trace[t-1] + value[t] (pre- and post-synaptic traces)."""
    return decay * trace + value
