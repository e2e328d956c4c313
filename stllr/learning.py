"""Learning rules on the same network: S-TLLR (forward in time) and BPTT (the baseline).

Both optimise the same objective: the per-step loss on the readout y[t], averaged over
the batch and over the window of the last k steps (t > T - k):

    loss = (1/k) sum_{t in window} mean_b loss(y_b[t], target_b)

S-TLLR never keeps a graph across time steps: outside the window it runs without
autograd; inside, it builds a one-step graph only to carry the learning signal
L[t] = d loss[t] / d o[t] spatially (BP), or uses fixed random feedback (DFA/sDFA).
The weight gradient accumulates sum_t L[t] e[t] into weight-shaped tensors, so memory
does not grow with T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from core.config import window_start
from stllr.network import SpikingNetwork


@dataclass(frozen=True)
class BatchResult:
    loss: float  # the objective above, for this batch
    correct: int  # samples whose window-summed readout argmax equals the target
    prediction: torch.Tensor  # (B,) predicted classes


def step_loss(y: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss at one step, mean over the batch: cross-entropy on y, or 0.5 ||y - onehot||^2."""
    if kind == "ce":
        return F.cross_entropy(y, target)
    onehot = F.one_hot(target, y.shape[-1]).to(y.dtype)
    return 0.5 * ((y - onehot) ** 2).sum(-1).mean()


def output_error(y: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """d step_loss / d y without autograd: (softmax(y) - onehot) / B, or (y - onehot) / B."""
    onehot = F.one_hot(target, y.shape[-1]).to(y.dtype)
    base = torch.softmax(y, -1) if kind == "ce" else y
    return (base - onehot) / y.shape[0]


def learning_layers(net: SpikingNetwork, rule: str) -> list[int]:
    """Indices of layers whose weights learn: all, or the readout alone."""
    return [len(net.layers) - 1] if rule == "readout_only" else list(range(len(net.layers)))


def zero_accumulators(net: SpikingNetwork, indices: list[int]) -> dict[int, dict[str, torch.Tensor]]:
    return {i: {name: torch.zeros_like(param) for name, param in net.layers[i].named_parameters()} for i in indices}


def write_grads(net: SpikingNetwork, accumulators: dict[int, dict[str, torch.Tensor]]) -> None:
    """Put accumulated updates where an optimizer reads them (param.grad)."""
    for index, grads in accumulators.items():
        for name, param in net.layers[index].named_parameters():
            param.grad = grads[name].clone()


def _learning_signals(net: SpikingNetwork, records, target, loss_t: torch.Tensor, mode: str,
                      indices: list[int], kind: str, scale: float) -> dict[int, torch.Tensor]:
    """L[t] per learning layer: d loss[t] / d o[t] (spiking) or d loss[t] / d y[t] (readout)."""
    readout_index = len(net.layers) - 1
    y = records[-1].output
    if mode == "bp":
        grads = torch.autograd.grad(loss_t, [records[i].output for i in indices])
        return dict(zip(indices, grads))
    error = output_error(y.detach(), target, kind) * scale
    feedback_error = error.sign() if mode == "sdfa" else error
    signals = {}
    for i in indices:
        if i == readout_index:
            signals[i] = error
        else:
            layer = net.layers[i]
            signals[i] = (feedback_error @ net.feedback(i).T).reshape(-1, *layer.out_shape)
    return signals


def stllr_batch(net: SpikingNetwork, x: torch.Tensor, target: torch.Tensor,
                apply_update: Callable[[], None] | None = None, rule: str = "stllr") -> BatchResult:
    """One batch of S-TLLR: x (B, T, *input_shape), target (B,) class indices.

    Fills ``param.grad`` of the learning layers with sum_{t in window} L[t] e[t]; with
    ``learning.update == 'online'`` it calls ``apply_update`` after every window step
    (the weights change within the sample), else once at the end (or never, if None).
    """
    cfg = net.learning_config
    num_steps = x.shape[1]
    start = window_start(num_steps, cfg.window)
    k = num_steps - start
    indices = learning_layers(net, rule)
    accumulators = zero_accumulators(net, indices)
    like = net.readout.weight
    state = net.initial_state(x.shape[0], traces=True, like=like)
    summed = torch.zeros(x.shape[0], net.num_classes, dtype=like.dtype)
    total_loss = 0.0
    for t in range(num_steps):
        x_t = x[:, t].to(like.dtype)
        if t < start:
            with torch.no_grad():
                state, _ = net.step(state, x_t, traces=True)
            continue
        bp = cfg.learning_signal == "bp"
        with torch.set_grad_enabled(bp):
            state, records = net.step(state, x_t, traces=True)
            y = records[-1].output
            loss_t = step_loss(y, target, cfg.loss) / k
        signals = _learning_signals(net, records, target, loss_t, cfg.learning_signal, indices, cfg.loss, 1.0 / k)
        state = _detach(state)
        with torch.no_grad():
            for i in indices:
                accumulators[i] = net.layers[i].accumulate(accumulators[i], records[i], signals[i].detach(),
                                                           cfg.bias_update)
        total_loss += float(loss_t.detach())
        summed += y.detach()
        if cfg.update == "online":
            write_grads(net, accumulators)
            if apply_update is not None:
                apply_update()
            accumulators = zero_accumulators(net, indices)
    if cfg.update == "batch":
        write_grads(net, accumulators)
        if apply_update is not None:
            apply_update()
    prediction = summed.argmax(-1)
    return BatchResult(total_loss, int((prediction == target).sum()), prediction)


def _detach(state):
    return tuple(s._replace(**{f: getattr(s, f).detach() for f in s._fields if getattr(s, f) is not None}) for s in state)


def bptt_batch(net: SpikingNetwork, x: torch.Tensor, target: torch.Tensor,
               apply_update: Callable[[], None] | None = None) -> BatchResult:
    """One batch of BPTT with Psi as the surrogate derivative and detached reset.

    Keeps the graph of all T steps (activation memory grows with T) and fills
    ``param.grad`` with the gradient of the same windowed loss as :func:`stllr_batch`.
    """
    cfg = net.learning_config
    num_steps = x.shape[1]
    start = window_start(num_steps, cfg.window)
    k = num_steps - start
    like = net.readout.weight
    state = net.initial_state(x.shape[0], traces=False, like=like)
    loss = like.new_zeros(())
    summed = torch.zeros(x.shape[0], net.num_classes, dtype=like.dtype)
    for t in range(num_steps):
        state, records = net.step(state, x[:, t].to(like.dtype))
        if t >= start:
            y = records[-1].output
            loss = loss + step_loss(y, target, cfg.loss) / k
            summed += y.detach()
    for param in net.parameters():
        param.grad = None
    loss.backward()
    if apply_update is not None:
        apply_update()
    prediction = summed.argmax(-1)
    return BatchResult(float(loss.detach()), int((prediction == target).sum()), prediction)


@torch.no_grad()
def evaluate_batch(net: SpikingNetwork, x: torch.Tensor, target: torch.Tensor) -> BatchResult:
    """Inference only: the windowed loss and the window-summed readout prediction."""
    cfg = net.learning_config
    y = net(x)
    start = window_start(x.shape[1], cfg.window)
    k = x.shape[1] - start
    loss = sum(float(step_loss(y[:, t], target, cfg.loss)) for t in range(start, x.shape[1])) / k
    prediction = y[:, start:].sum(1).argmax(-1)
    return BatchResult(loss, int((prediction == target).sum()), prediction)
