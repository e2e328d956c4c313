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


class _SignOptimizer(torch.optim.Optimizer):
    """W -= lr * direction, one momentum tensor per parameter; subclasses give the direction
    and update the momentum in place (:meth:`_direction`)."""

    default_betas: tuple[float, ...] = ()

    def __init__(self, params, lr: float, betas: tuple[float, ...] | None = None) -> None:
        betas = tuple(self.default_betas if betas is None else betas)
        if not lr > 0.0:
            raise ValueError(f"lr must be > 0, not {lr}")
        if len(betas) != len(self.default_betas) or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be {len(self.default_betas)} values in [0, 1), not {betas}")
        super().__init__(params, {"lr": lr, "betas": betas})

    @staticmethod
    def _direction(momentum: torch.Tensor, grad: torch.Tensor, betas) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(param)
                direction = self._direction(state["momentum"], param.grad, group["betas"])
                param.add_(direction, alpha=-group["lr"])
        return loss


class Signum(_SignOptimizer):
    """Signum without weight decay: ``m = beta m + g``, ``W -= lr sign(m)``."""

    default_betas = (0.875,)

    @staticmethod
    def _direction(momentum, grad, betas):
        (beta,) = betas
        momentum.mul_(beta).add_(grad)
        return torch.sign(momentum)


class Lion(_SignOptimizer):
    """Lion without weight decay; ``betas`` = (beta1 of the direction, beta2 of the momentum)."""

    default_betas = (0.875, 0.9921875)

    @staticmethod
    def _direction(momentum, grad, betas):
        beta1, beta2 = betas
        direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))
        momentum.mul_(beta2).add_(grad, alpha=1.0 - beta2)
        return direction
