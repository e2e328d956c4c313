"""The exact identity of STLLR.md, and S-TLLR against an explicit per-step loop.

Identity: with detached (soft) reset, alpha_post = 0, alpha_pre = 1 and
lambda_pre = beta, S-TLLR's dW equals the BPTT gradient of the same loss with Psi as
the surrogate derivative. Checked in float64 to relative 1e-9.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import FactorsConfig, LearningConfig, NetworkConfig, PsiConfig
from stllr.learning import _learning_signals, bptt_batch, stllr_batch, step_loss
from stllr.network import SpikingNetwork

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _spikes(generator: torch.Generator, shape, density: float) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float64) < density).to(torch.float64)


def _build(network: dict, learning: dict) -> SpikingNetwork:
    net = SpikingNetwork(NetworkConfig(**network), LearningConfig(**learning)).double()
    return net


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-9) -> None:
    scale = max(float(expected.abs().max()), 1e-30)
    error = float((actual - expected).abs().max())
    assert error <= rel * scale, f"max abs error {error:.3e} vs scale {scale:.3e}"


def _layer_grads(layer, state, xs, coefficients, start, traces):
    """Run one layer over xs with loss = sum_{t>=start} <c[t], o[t]>; return the loss graph."""
    loss = 0.0
    for t in range(xs.shape[0]):
        state, record = layer.step(state, xs[t], traces=traces)
        if t >= start:
            loss = loss + (coefficients[t] * record.output).sum()
    return loss


psi_strategy = st.sampled_from([PsiConfig(kind="rational", gamma=10.0), PsiConfig(kind="rational", gamma=100.0),
                                PsiConfig(kind="triangle", scale=0.3, width=1.0),
                                PsiConfig(kind="triangle", scale=1.0, width=0.5)])


@SETTINGS
@given(
    kind=st.sampled_from(["linear", "recurrent", "conv2d"]),
    batch=st.integers(1, 3),
    size_in=st.integers(1, 6),
    size_out=st.integers(1, 5),
    steps=st.integers(1, 12),
    window_back=st.integers(0, 11),
    density=st.floats(0.05, 0.9),
    beta=st.floats(0.05, 0.99),
    theta=st.floats(0.05, 1.5),
    psi=psi_strategy,
    bias_mode=st.sampled_from(["reference", "exact"]),
    seed=st.integers(0, 2**16),
)
def test_single_spiking_layer_identity(kind, batch, size_in, size_out, steps, window_back, density, beta, theta,
                                       psi, bias_mode, seed):
    """One spiking layer, loss[t] = <c[t], o[t]>: S-TLLR dW == autograd BPTT dW."""
    window = min(steps, window_back + 1)
    start = steps - window
    if kind == "conv2d":
        input_shape, layer = [2, 5, 5], {"kind": "conv2d", "channels": size_out, "kernel": 3, "stride": 1, "padding": 1}
    else:
        input_shape, layer = [size_in], {"kind": kind, "size": size_out}
    net = _build({"input_shape": input_shape, "neuron": {"beta": beta, "theta": theta, "reset": "soft"}, "psi": psi,
                  "layers": [layer, {"kind": "readout", "size": 2}]},
                 {"factors": {"lambda_pre": None, "alpha_post": 0.0, "alpha_pre": 1.0, "lambda_post": 0.3},
                  "bias_update": bias_mode})
    spiking = net.layers[0]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Bigger weights so that layers fire; W_rec = 0 makes the identity exact for recurrence.
        spiking.weight.mul_(3.0)
        if kind == "recurrent":
            spiking.rec_weight.zero_()
    xs = _spikes(generator, (steps, batch, *input_shape), density)
    coefficients = torch.randn((steps, batch, *spiking.out_shape), generator=generator, dtype=torch.float64)

    # BPTT: autograd through time.
    state = spiking.initial_state(batch, traces=False, like=spiking.weight)
    loss = _layer_grads(spiking, state, xs, coefficients, start, traces=False)
    params = dict(spiking.named_parameters())
    expected = dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)))

    # S-TLLR: forward traces, L[t] = c[t] inside the window.
    accumulators = {name: torch.zeros_like(p) for name, p in params.items()}
    state = spiking.initial_state(batch, traces=True, like=spiking.weight)
    with torch.no_grad():
        for t in range(steps):
            state, record = spiking.step(state, xs[t], traces=True)
            if t >= start:
                accumulators = spiking.accumulate(accumulators, record, coefficients[t], bias_mode)
    _assert_close(accumulators["weight"], expected["weight"])
    if kind == "recurrent":
        _assert_close(accumulators["rec_weight"], expected["rec_weight"])
    if bias_mode == "exact":  # db is exact only when b is a weight on a constant input 1
        _assert_close(accumulators["bias"], expected["bias"])


@SETTINGS
@given(
    hidden=st.sampled_from(["linear", "recurrent", "conv2d"]),
    batch=st.integers(1, 4),
    size_in=st.integers(1, 8),
    size_hidden=st.integers(1, 8),
    classes=st.integers(2, 5),
    steps=st.integers(1, 10),
    window_back=st.integers(0, 9),
    density=st.floats(0.05, 0.9),
    beta=st.floats(0.05, 0.99),
    beta_out=st.floats(0.0, 0.99),
    loss=st.sampled_from(["ce", "mse"]),
    seed=st.integers(0, 2**16),
)
def test_network_readout_identity(hidden, batch, size_in, size_hidden, classes, steps, window_back, density, beta,
                                  beta_out, loss, seed):
    """Readout with lambda_pre = beta_out: its S-TLLR dW and db (exact variant) equal BPTT's,
    through the whole pipeline (network step, per-step loss, learning signal)."""
    window = min(steps, window_back + 1)
    if hidden == "conv2d":
        input_shape, layer = [1, 4, 4], {"kind": "conv2d", "channels": size_hidden, "kernel": 2, "stride": 2}
    else:
        input_shape, layer = [size_in], {"kind": hidden, "size": size_hidden}
    torch.manual_seed(seed)
    net = _build({"input_shape": input_shape, "neuron": {"beta": beta, "theta": 0.3},
                  "layers": [layer, {"kind": "readout", "size": classes, "beta": beta_out}]},
                 {"window": window, "loss": loss, "bias_update": "exact",
                  "readout_factors": {"lambda_pre": None, "alpha_pre": 1.0, "alpha_post": 0.0, "lambda_post": 0.0}})
    generator = torch.Generator().manual_seed(seed)
    x = _spikes(generator, (batch, steps, *input_shape), density)
    target = torch.randint(0, classes, (batch,), generator=generator)
    result = stllr_batch(net, x, target, rule="readout_only")
    stllr_grads = {name: p.grad.clone() for name, p in net.readout.named_parameters()}
    bptt_result = bptt_batch(net, x, target)
    assert result.loss == pytest.approx(bptt_result.loss, rel=1e-12)
    for name, p in net.readout.named_parameters():
        _assert_close(stllr_grads[name], p.grad)


@SETTINGS
@given(
    hidden=st.sampled_from(["linear", "conv2d"]),
    batch=st.integers(1, 4),
    size_in=st.integers(1, 8),
    size_hidden=st.integers(1, 8),
    classes=st.integers(2, 4),
    steps=st.integers(1, 10),
    window_back=st.integers(0, 9),
    density=st.floats(0.1, 0.9),
    beta=st.floats(0.05, 0.99),
    seed=st.integers(0, 2**16),
)
def test_two_layer_network_identity_memoryless_readout(hidden, batch, size_in, size_hidden, classes, steps,
                                                       window_back, density, beta, seed):
    """With a memoryless readout (beta_out = 0) the loss at t depends on o[t] only through
    the same step, so S-TLLR with the BP learning signal gives BPTT's gradient for every
    weight of the network (alpha_post = 0, lambda_pre = beta)."""
    window = min(steps, window_back + 1)
    if hidden == "conv2d":
        input_shape, layer = [2, 4, 4], {"kind": "conv2d", "channels": size_hidden, "kernel": 3, "padding": 1}
    else:
        input_shape, layer = [size_in], {"kind": hidden, "size": size_hidden}
    torch.manual_seed(seed)
    net = _build({"input_shape": input_shape, "neuron": {"beta": beta, "theta": 0.2}, "psi": {"kind": "triangle"},
                  "layers": [layer, {"kind": "readout", "size": classes, "beta": 0.0}]},
                 {"window": window, "bias_update": "exact", "learning_signal": "bp",
                  "factors": {"lambda_pre": None, "alpha_pre": 1.0, "alpha_post": 0.0, "lambda_post": 0.5},
                  "readout_factors": {"lambda_pre": None, "alpha_pre": 1.0, "alpha_post": 0.0, "lambda_post": 0.0}})
    with torch.no_grad():
        net.layers[0].weight.mul_(2.0)
    generator = torch.Generator().manual_seed(seed)
    x = _spikes(generator, (batch, steps, *input_shape), density)
    target = torch.randint(0, classes, (batch,), generator=generator)
    stllr_batch(net, x, target)
    stllr_grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    bptt_batch(net, x, target)
    for name, p in net.named_parameters():
        _assert_close(stllr_grads[name], p.grad)


def test_identity_fails_with_noncausal_term():
    """Guard against a vacuous identity: alpha_post != 0 must change dW."""
    torch.manual_seed(0)
    nets = [
        _build({"input_shape": [6], "neuron": {"theta": 0.2}, "layers": [{"kind": "linear", "size": 5},
                                                                         {"kind": "readout", "size": 3, "beta": 0.0}]},
               {"factors": {"alpha_post": alpha_post, "lambda_pre": None}})
        for alpha_post in (0.0, -0.5)
    ]
    nets[1].load_state_dict(nets[0].state_dict())
    x = _spikes(torch.Generator().manual_seed(1), (4, 8, 6), 0.5)
    target = torch.tensor([0, 1, 2, 0])
    grads = []
    for net in nets:
        stllr_batch(net, x, target)
        grads.append(net.layers[0].weight.grad.clone())
    assert float((grads[0] - grads[1]).abs().max()) > 1e-3


def test_bp_signal_is_spatial_gradient_two_hidden_layers():
    """BP: L^l = W^{l+1 T} (L^{l+1} * psi^{l+1}) at the same step, L^out = d loss / d y."""
    torch.manual_seed(3)
    net = _build({"input_shape": [7], "neuron": {"theta": 0.3}, "psi": {"kind": "triangle", "scale": 0.5},
                  "layers": [{"kind": "linear", "size": 6}, {"kind": "linear", "size": 5},
                             {"kind": "readout", "size": 3}]}, {})
    with torch.no_grad():
        for layer in net.layers[:2]:
            layer.weight.mul_(2.0)
    generator = torch.Generator().manual_seed(4)
    x = _spikes(generator, (4, 6, 7), 0.4)
    target = torch.tensor([0, 2, 1, 1])
    state = net.initial_state(4, traces=True, like=net.readout.weight)
    for t in range(6):
        with torch.enable_grad():
            state, records = net.step(state, x[:, t], traces=True)
            loss_t = step_loss(records[-1].output, target, "ce")
        signals = _learning_signals(net, records, target, loss_t, "bp", [0, 1, 2], "ce", 1.0)
        y = records[-1].output.detach()
        expected_out = (torch.softmax(y, -1) - torch.nn.functional.one_hot(target, 3)) / 4
        expected_2 = expected_out @ net.readout.weight.detach()
        expected_1 = (expected_2 * records[1].psi) @ net.layers[1].weight.detach()
        _assert_close(signals[2], expected_out, 1e-12)
        _assert_close(signals[1], expected_2, 1e-12)
        _assert_close(signals[0], expected_1, 1e-12)
        state = tuple(s._replace(**{f: getattr(s, f).detach() for f in s._fields if getattr(s, f) is not None})
                      for s in state)


# ----------------------------------------------------------------------------------------
# An explicit, slow, per-synapse loop of the STLLR.md equations (numpy, float64).


def _psi_np(z, psi: PsiConfig):
    if psi.kind == "rational":
        return 1.0 / (1.0 + psi.gamma * np.abs(z)) ** 2
    return psi.scale * np.maximum(0.0, 1.0 - np.abs(z) / psi.width)


def _reference_dense(W, b, W_rec, xs, signals, beta, theta, reset, psi, f: FactorsConfig, start, bias_mode):
    """dW, dW_rec, db for one dense (optionally recurrent) layer, one sample, loop per synapse."""
    steps, n_in = xs.shape
    n_out = W.shape[0]
    lambda_pre = beta if f.lambda_pre is None else f.lambda_pre
    v = np.zeros(n_out); q = np.zeros(n_in); p = np.zeros(n_out); o_prev = np.zeros(n_out)
    q_rec = np.zeros(n_out); q_b = 0.0
    dW = np.zeros_like(W); dW_rec = np.zeros((n_out, n_out)); db = np.zeros(n_out)
    for t in range(steps):
        x = xs[t]
        q = lambda_pre * q + x
        q_rec = lambda_pre * q_rec + o_prev
        q_b = lambda_pre * q_b + 1.0
        u = np.array([beta * v[i] + sum(W[i, j] * x[j] for j in range(n_in)) + b[i]
                      + (sum(W_rec[i, j] * o_prev[j] for j in range(n_out)) if W_rec is not None else 0.0)
                      for i in range(n_out)])
        o = (u - theta > 0).astype(float)
        v = u - theta * o if reset == "soft" else u * (1 - o)
        ps = _psi_np(u - theta, psi)
        if t >= start:
            for i in range(n_out):
                for j in range(n_in):
                    e = f.alpha_pre * ps[i] * q[j] + f.alpha_post * p[i] * x[j]
                    dW[i, j] += signals[t, i] * e
                if W_rec is not None:
                    for j in range(n_out):
                        e = f.alpha_pre * ps[i] * q_rec[j] + f.alpha_post * p[i] * o_prev[j]
                        dW_rec[i, j] += signals[t, i] * e
                if bias_mode == "reference":
                    db[i] += signals[t, i] * ps[i]
                else:
                    db[i] += signals[t, i] * (f.alpha_pre * ps[i] * q_b + f.alpha_post * p[i])
        p = f.lambda_post * p + ps  # after e: the non-causal term uses p[t-1]
        o_prev = o
    return dW, dW_rec, db


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    recurrent=st.booleans(),
    batch=st.integers(1, 3),
    n_in=st.integers(1, 5),
    n_out=st.integers(1, 4),
    steps=st.integers(1, 8),
    window_back=st.integers(0, 7),
    density=st.floats(0.1, 0.9),
    beta=st.floats(0.1, 0.95),
    theta=st.floats(0.1, 1.0),
    reset=st.sampled_from(["soft", "hard"]),
    psi=psi_strategy,
    lambda_post=st.floats(0.0, 1.0),
    lambda_pre=st.one_of(st.none(), st.floats(0.0, 1.0)),
    alpha_post=st.floats(-2.0, 2.0),
    alpha_pre=st.floats(-2.0, 2.0),
    bias_mode=st.sampled_from(["reference", "exact"]),
    seed=st.integers(0, 2**16),
)
def test_dense_matches_explicit_loop(recurrent, batch, n_in, n_out, steps, window_back, density, beta, theta,
                                     reset, psi, lambda_post, lambda_pre, alpha_post, alpha_pre, bias_mode, seed):
    window = min(steps, window_back + 1)
    start = steps - window
    factors = FactorsConfig(lambda_post=lambda_post, lambda_pre=lambda_pre, alpha_post=alpha_post,
                            alpha_pre=alpha_pre)
    net = _build({"input_shape": [n_in], "neuron": {"beta": beta, "theta": theta, "reset": reset}, "psi": psi,
                  "layers": [{"kind": "recurrent" if recurrent else "linear", "size": n_out},
                             {"kind": "readout", "size": 2}]},
                 {"factors": factors.model_dump(), "bias_update": bias_mode})
    layer = net.layers[0]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.mul_(3.0)
    xs = _spikes(generator, (steps, batch, n_in), density)
    signals = torch.randn((steps, batch, n_out), generator=generator, dtype=torch.float64)
    accumulators = {name: torch.zeros_like(p) for name, p in layer.named_parameters()}
    state = layer.initial_state(batch, traces=True, like=layer.weight)
    with torch.no_grad():
        for t in range(steps):
            state, record = layer.step(state, xs[t], traces=True)
            if t >= start:
                accumulators = layer.accumulate(accumulators, record, signals[t], bias_mode)
    W = layer.weight.detach().numpy(); b = layer.bias.detach().numpy()
    W_rec = layer.rec_weight.detach().numpy() if recurrent else None
    expected = [np.zeros_like(W), np.zeros((n_out, n_out)), np.zeros(n_out)]
    for sample in range(batch):
        parts = _reference_dense(W, b, W_rec, xs[:, sample].numpy(), signals[:, sample].numpy(), beta, theta, reset,
                                 psi, factors, start, bias_mode)
        for total, part in zip(expected, parts):
            total += part
    np.testing.assert_allclose(accumulators["weight"].numpy(), expected[0], rtol=1e-10, atol=1e-12)
    if recurrent:
        np.testing.assert_allclose(accumulators["rec_weight"].numpy(), expected[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(accumulators["bias"].numpy(), expected[2], rtol=1e-10, atol=1e-12)


def _reference_conv(W, b, xs, signals, beta, theta, reset, psi, f: FactorsConfig, start, stride, padding):
    """dW for one conv layer, one sample: explicit loops over taps and output positions."""
    steps, c_in, height, width = xs.shape
    c_out, _, kernel, _ = W.shape
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    lambda_pre = beta if f.lambda_pre is None else f.lambda_pre
    padded_shape = (c_in, height + 2 * padding, width + 2 * padding)
    v = np.zeros((c_out, out_h, out_w)); p = np.zeros_like(v); q = np.zeros(padded_shape)
    dW = np.zeros_like(W)
    for t in range(steps):
        x = np.zeros(padded_shape)
        x[:, padding:padding + height, padding:padding + width] = xs[t]
        q = lambda_pre * q + x
        u = np.zeros_like(v)
        for co in range(c_out):
            for r in range(out_h):
                for c in range(out_w):
                    patch = x[:, r * stride:r * stride + kernel, c * stride:c * stride + kernel]
                    u[co, r, c] = beta * v[co, r, c] + (W[co] * patch).sum() + b[co]
        o = (u - theta > 0).astype(float)
        v = u - theta * o if reset == "soft" else u * (1 - o)
        ps = _psi_np(u - theta, psi)
        if t >= start:
            for co in range(c_out):
                for r in range(out_h):
                    for c in range(out_w):
                        rows = slice(r * stride, r * stride + kernel)
                        cols = slice(c * stride, c * stride + kernel)
                        e = f.alpha_pre * ps[co, r, c] * q[:, rows, cols] + f.alpha_post * p[co, r, c] * x[:, rows, cols]
                        dW[co] += signals[t, co, r, c] * e
        p = f.lambda_post * p + ps
    return dW


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.integers(1, 5),
    window_back=st.integers(0, 4),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    reset=st.sampled_from(["soft", "hard"]),
    alpha_post=st.floats(-1.0, 1.0),
    lambda_pre=st.floats(0.0, 1.0),
    lambda_post=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_conv_matches_explicit_loop(steps, window_back, stride, padding, reset, alpha_post, lambda_pre, lambda_post,
                                    seed):
    window = min(steps, window_back + 1)
    start = steps - window
    factors = FactorsConfig(lambda_post=lambda_post, lambda_pre=lambda_pre, alpha_post=alpha_post, alpha_pre=0.7)
    size = 5  # (5 + 2p - 3) is even for p in {0, 1}: valid for stride 1 and 2
    net = _build({"input_shape": [2, size, size], "neuron": {"beta": 0.8, "theta": 0.4, "reset": reset},
                  "psi": {"kind": "triangle"},
                  "layers": [{"kind": "conv2d", "channels": 3, "kernel": 3, "stride": stride, "padding": padding},
                             {"kind": "readout", "size": 2}]},
                 {"factors": factors.model_dump()})
    layer = net.layers[0]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.mul_(3.0)
    batch = 2
    xs = _spikes(generator, (steps, batch, 2, size, size), 0.4)
    signals = torch.randn((steps, batch, *layer.out_shape), generator=generator, dtype=torch.float64)
    accumulators = {name: torch.zeros_like(p) for name, p in layer.named_parameters()}
    state = layer.initial_state(batch, traces=True, like=layer.weight)
    with torch.no_grad():
        for t in range(steps):
            state, record = layer.step(state, xs[t], traces=True)
            if t >= start:
                accumulators = layer.accumulate(accumulators, record, signals[t], "reference")
    expected = np.zeros(layer.weight.shape)
    for sample in range(batch):
        expected += _reference_conv(layer.weight.detach().numpy(), layer.bias.detach().numpy(), xs[:, sample].numpy(),
                                    signals[:, sample].numpy(), 0.8, 0.4, reset, PsiConfig(kind="triangle"), factors,
                                    start, stride, padding)
    np.testing.assert_allclose(accumulators["weight"].numpy(), expected, rtol=1e-10, atol=1e-12)
