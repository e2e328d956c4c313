"""A network of layers stepped through time with explicit state.

:meth:`SpikingNetwork.step` advances every layer by one time step; the state is a tuple
of per-layer :class:`~stllr.layers.LayerState` and starts at zero for every sample.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.config import LearningConfig, NetworkConfig, layer_shapes, resolve_layer
from stllr.layers import Layer, LayerState, Readout, RecurrentSpikingLinear, SpikingConv2d, SpikingLinear, StepRecord


def _build_linear(cfg, params, in_shape, out_shape):
    return SpikingLinear(params, in_shape, cfg.size, cfg.bias)


def _build_recurrent(cfg, params, in_shape, out_shape):
    return RecurrentSpikingLinear(params, in_shape, cfg.size, cfg.bias)


def _build_conv2d(cfg, params, in_shape, out_shape):
    return SpikingConv2d(params, in_shape, out_shape, cfg.channels, cfg.kernel, cfg.stride, cfg.padding, cfg.bias)


def _build_readout(cfg, params, in_shape, out_shape):
    return Readout(params, in_shape, cfg.size, cfg.bias)


LAYER_BUILDERS = {
    "linear": _build_linear,
    "recurrent": _build_recurrent,
    "conv2d": _build_conv2d,
    "readout": _build_readout,
}


class SpikingNetwork(nn.Module):
    """Spiking layers followed by one readout.

    DFA/sDFA feedback matrices (one per spiking layer, shape (layer outputs, classes),
    uniform in [-1/sqrt(classes), 1/sqrt(classes)], drawn from ``feedback_seed``) are
    buffers, so they are saved with the weights and never trained.
    """

    def __init__(self, network: NetworkConfig, learning: LearningConfig) -> None:
        super().__init__()
        self.network_config = network
        self.learning_config = learning
        layers: list[Layer] = []
        for index, (layer_cfg, (in_shape, out_shape)) in enumerate(zip(network.layers, layer_shapes(network))):
            params = resolve_layer(network, learning, index)
            layers.append(LAYER_BUILDERS[layer_cfg.kind](layer_cfg, params, in_shape, out_shape))
        self.layers = nn.ModuleList(layers)
        self.num_classes = network.layers[-1].size
        generator = torch.Generator().manual_seed(learning.feedback_seed)
        bound = 1.0 / math.sqrt(self.num_classes)
        for index, layer in enumerate(self.layers[:-1]):
            feedback = (torch.rand(math.prod(layer.out_shape), self.num_classes, generator=generator) * 2 - 1) * bound
            self.register_buffer(f"feedback_{index}", feedback)

    @property
    def readout(self) -> Readout:
        return self.layers[-1]

    def feedback(self, index: int) -> torch.Tensor:
        return getattr(self, f"feedback_{index}")

    def initial_state(self, batch: int, traces: bool, like: torch.Tensor) -> tuple[LayerState, ...]:
        """All-zero state for a batch; ``like`` gives dtype and device."""
        return tuple(layer.initial_state(batch, traces, like) for layer in self.layers)

    def step(self, state: tuple[LayerState, ...], x: torch.Tensor, traces: bool = False
             ) -> tuple[tuple[LayerState, ...], tuple[StepRecord, ...]]:
        """Advance every layer by one step; x is (B, *input_shape) at time t."""
        new_state, records = [], []
        for layer, layer_state in zip(self.layers, state):
            layer_state, record = layer.step(layer_state, x, traces)
            new_state.append(layer_state)
            records.append(record)
            x = record.output
        return tuple(new_state), tuple(records)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference over a whole sample: x (B, T, *input_shape) -> readout y (B, T, classes)."""
        state = self.initial_state(x.shape[0], traces=False, like=self.readout.weight)
        outputs = []
        for t in range(x.shape[1]):
            state, records = self.step(state, x[:, t].to(self.readout.weight.dtype))
            outputs.append(records[-1].output)
        return torch.stack(outputs, 1)

    @torch.no_grad()
    def spikes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Spikes of every spiking layer over a sample: list of (B, T, *out_shape)."""
        state = self.initial_state(x.shape[0], traces=False, like=self.readout.weight)
        per_layer = [[] for _ in self.layers[:-1]]
        for t in range(x.shape[1]):
            state, records = self.step(state, x[:, t].to(self.readout.weight.dtype))
            for store, record in zip(per_layer, records[:-1]):
                store.append(record.output)
        return [torch.stack(store, 1) for store in per_layer]
