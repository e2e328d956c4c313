"""Optimizers of the float loop beyond torch's: Signum and Lion, the float twins of the
integer model's sign optimizers (fixedpoint/network.py).

Signum (J. Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex Problems",
ICML 2018), in the accumulator form a chip runs: ``m = beta m + g``, ``W = W - lr
sign(m)`` (the same direction as beta m + (1 - beta) g). On chip m is the update
accumulator, decayed by beta after the write instead of cleared.

Lion (X. Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023),
without weight decay, per parameter element:

    u = sign(beta1 m + (1 - beta1) g)        the direction: -1, 0 or +1
    W = W - lr u                             every weight moves by exactly lr (or 0)
    m = beta2 m + (1 - beta2) g              one momentum word per weight

The step does not depend on the scale of g: the loss (mse or cross-entropy), the batch
size and the window length leave ``lr`` unchanged. On chip (fixedpoint/network.py) the
two EMAs are a subtract and a shift each (beta = 1 - 2^-n), the sign is a compare and the
write adds or subtracts ``lr`` with stochastic rounding.
"""

from __future__ import annotations

import torch


def _check(lr: float, betas) -> None:
    if not lr > 0.0:
        raise ValueError(f"lr must be > 0, not {lr}")
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must lie in [0, 1), not {betas}")


class Signum(torch.optim.Optimizer):
    """Signum without weight decay: ``m = beta m + g``, ``W -= lr sign(m)``."""

    def __init__(self, params, lr: float, betas: tuple[float] = (0.875,)) -> None:
        _check(lr, betas)
        super().__init__(params, {"lr": lr, "betas": tuple(betas)})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (beta,) = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(param)
                momentum = state["momentum"]
                momentum.mul_(beta).add_(param.grad)
                param.add_(torch.sign(momentum), alpha=-group["lr"])
        return loss


class Lion(torch.optim.Optimizer):
    """Lion without weight decay; ``betas`` = (beta1 of the direction, beta2 of the momentum)."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.875, 0.9921875)) -> None:
        _check(lr, betas)
        super().__init__(params, {"lr": lr, "betas": tuple(betas)})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(param)
                momentum = state["momentum"]
                direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))
                param.add_(direction, alpha=-group["lr"])
                momentum.mul_(beta2).add_(grad, alpha=1.0 - beta2)
        return loss
