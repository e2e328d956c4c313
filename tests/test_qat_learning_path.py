"""QAT with the integer learning path (``QATNetwork(..., learning_path=True)``,
``fixedpoint.qat.qat_stllr_batch``): the gradient handed to the latent weights is the
integer model's update accumulator times ``update_scale``, bit for bit.

The reference is :class:`fixedpoint.network.IntNetwork` (the numba integer kernels, an
independent implementation from the float64 emulation the QAT path reuses):
``IntNetwork.run(x, y, train=True, apply=False)`` leaves the accumulator codes in
``last_state``; their real value times the scale must equal ``param.grad`` exactly.
Networks, formats (the learning path's own rounding modes and overflow policies too)
and factors are drawn by a seeded hypothesis strategy; the float learning path of the
same QAT network is shown NOT to match (its gap is measured).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import LearningConfig, NetworkConfig, load_config, parse_config
from core.errors import InputError
from core.quant import QuantConfig
from fixedpoint.config import update_scale
from fixedpoint.network import IntNetwork
from fixedpoint.qat import QATNetwork, fine_tune_and_convert, qat_stllr_batch, qat_to_int
from stllr.learning import stllr_batch
from stllr.network import SpikingNetwork

D = torch.float64
HYP = settings(max_examples=14, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))


def integer_accumulators(model: IntNetwork, x, y) -> dict[tuple[int, str], np.ndarray]:
    """(layer, tensor) -> the integer model's accumulator in real units (update format)
    after one training batch without the weight write."""
    model.run(x, y, train=True, apply=False)
    out = {}
    for i in model.params.learners:
        fmt = model.params.layers[i].fmts.update
        for name, codes in model.last_state.layers[i].acc.items():
            out[(i, name)] = fmt.to_float(codes)
    return out


def gap(qat: QATNetwork, model: IntNetwork, reference, batch: int, window: int):
    """(elements where param.grad != accumulator * update_scale, elements compared,
    max |grad - ref| / max |ref| over tensors with a nonzero reference)."""
    bad = total = 0
    worst = 0.0
    readout = len(qat.layers) - 1
    for (i, name), acc in reference.items():
        scale = update_scale(model.params.learning_signal, i == readout, batch, window)
        ref = torch.from_numpy(acc) * scale
        grad = getattr(qat.layers[i], name).grad.reshape(ref.shape)
        bad += int((grad != ref).sum())
        total += ref.numel()
        if ref.abs().max() > 0:
            worst = max(worst, float((grad - ref).abs().max() / ref.abs().max()))
    return bad, total, worst


# ------------------------------------------------------------------------------ strategy

FORWARD_MODES = ["nearest_even", "floor"]  # what Brevitas can express (the forward)
LEARNING_MODES = ["nearest_even", "floor", "nearest_away"]  # the learning path is the emulation


def fmt(signed: bool, frac: int, int_bits: int, mode: str, policy: str = "saturate") -> str:
    return f"{'s' if signed else 'u'}{frac + int_bits + int(signed)}.{frac} {mode} {policy}"


@st.composite
def case(draw):
    """(config, x (B, T, n_in), y (B,), weight scale, torch seed)."""
    kind = draw(st.sampled_from(["linear", "recurrent"]))
    batch, steps = draw(st.integers(2, 4)), draw(st.integers(2, 5))
    window = draw(st.integers(1, steps))
    n_in = draw(st.integers(2, 6))
    layers = [{"kind": kind, "size": draw(st.integers(2, 7)), "bias": draw(st.booleans())}]
    if draw(st.booleans()):
        layers.append({"kind": draw(st.sampled_from(["linear", "recurrent"])), "size": draw(st.integers(2, 5)),
                       "bias": draw(st.booleans()), "reset": draw(st.sampled_from(["soft", "hard"]))})
    layers.append({"kind": "readout", "size": draw(st.integers(2, 4)), "bias": draw(st.booleans())})
    psi = draw(st.sampled_from([{"kind": "rational", "gamma": 100.0}, {"kind": "rational", "gamma": 10.0},
                                {"kind": "triangle", "scale": 0.5, "width": 1.0},
                                {"kind": "triangle", "scale": 0.3, "width": 0.75}]))
    network = {"input_shape": [n_in], "psi": psi, "layers": layers,
               "neuron": {"beta": draw(st.sampled_from([0.75, 0.9])), "theta": draw(st.sampled_from([0.3, 0.6])),
                          "reset": draw(st.sampled_from(["soft", "hard"]))}}
    learning = {"loss": draw(st.sampled_from(["mse", "ce"])), "window": window,
                "learning_signal": draw(st.sampled_from(["bp", "dfa", "sdfa"])),
                "bias_update": draw(st.sampled_from(["reference", "exact"])),
                "rule": draw(st.sampled_from(["stllr", "stllr", "readout_only"])),
                "factors": {"lambda_post": draw(st.sampled_from([0.0, 0.5])),
                            "lambda_pre": draw(st.sampled_from([None, 0.75])),
                            "alpha_post": draw(st.sampled_from([0.0, -0.2, 0.5])), "alpha_pre": 1.0}}
    narrow = draw(st.booleans())  # narrow learning formats: saturation (and wrap) in the learning path
    ib = 1 if narrow else 4
    lmode = lambda: draw(st.sampled_from(LEARNING_MODES))  # noqa: E731
    lpolicy = lambda: draw(st.sampled_from(["saturate", "wrap"] if narrow else ["saturate"]))  # noqa: E731
    quant = {
        "input": "u1.0" if draw(st.booleans()) else "u3.0",
        "weight": fmt(True, draw(st.integers(3, 7)), 1, draw(st.sampled_from(FORWARD_MODES))),
        "bias": fmt(True, draw(st.integers(4, 10)), 2, draw(st.sampled_from(FORWARD_MODES))),
        "current": fmt(True, draw(st.integers(5, 10)), 4, draw(st.sampled_from(FORWARD_MODES))),
        "membrane": fmt(True, draw(st.integers(5, 10)), 3, draw(st.sampled_from(FORWARD_MODES))),
        "pre_trace": fmt(False, draw(st.integers(3, 10)), ib + 1, lmode(), lpolicy()),
        "post_trace": fmt(False, draw(st.integers(4, 12)), ib, lmode(), lpolicy()),
        "error": fmt(True, draw(st.integers(4, 10)), ib + 1, lmode(), lpolicy()),
        "learning_signal": fmt(True, draw(st.integers(4, 10)), ib, lmode(), lpolicy()),
        "modulation": fmt(True, draw(st.integers(4, 12)), ib, lmode(), lpolicy()),
        "update": fmt(True, draw(st.integers(8, 16)), ib + 3, lmode(), lpolicy()),
        "learning_rate": "u16.20",
    }
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    x = (rng.random((batch, steps, n_in)) < draw(st.sampled_from([0.3, 0.7]))).astype(np.float64)
    if quant["input"] == "u3.0":
        x = x * rng.integers(0, 8, x.shape)
    y = rng.integers(0, layers[-1]["size"], batch)
    data = {"network": network, "learning": learning, "quant": quant,
            "train": {"batch_size": batch, "optimizer": "sgd", "lr": 1e-3},
            "data": {"kind": "digits", "num_steps": steps}}
    return data, x, y, draw(st.sampled_from([1.0, 3.0])), draw(st.integers(0, 100))


def build_float(data, scale: float, seed: int):
    config = parse_config(data, "case")
    torch.manual_seed(seed)
    net = SpikingNetwork(config.network, config.learning).double()
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(scale)
    return net, config


@HYP
@given(case())
def test_quantized_learning_path_grad_equals_integer_accumulator(drawn):
    """Dense and recurrent, mse and ce, BP/DFA/sDFA, readout_only, narrow saturating or
    wrapping learning formats: param.grad == IntNetwork's accumulator * update_scale, 0
    mismatches; the accumulators' codes are equal as well."""
    data, x, y, scale, seed = drawn
    net, config = build_float(data, scale, seed)
    try:
        qat = QATNetwork.from_float(net, config.quant, learning_path=True)
    except InputError:
        return  # a drawn constant does not fit its drawn format (validation's job, tested elsewhere)
    for param in qat.parameters():
        param.grad = None
    qat_stllr_batch(qat, torch.from_numpy(x), torch.from_numpy(y))
    model = qat_to_int(qat)
    reference = integer_accumulators(model, x, y)
    scales = qat.integer_learning.etas  # the QAT path's per-layer accumulator -> grad scales
    bad, total, _ = gap(qat, model, reference, x.shape[0], config.learning.window)
    assert total > 0 and bad == 0
    for (i, name), acc in reference.items():
        assert torch.equal(qat.integer_learning.last_accumulators[i][name].reshape(acc.shape),
                           torch.from_numpy(acc))
        assert scales[i] == model.update_scale(i, x.shape[0], config.learning.window)
    learned = {i for i, _ in reference}
    for i, layer in enumerate(qat.layers):  # readout_only: hidden weights get no grad
        assert (layer.weight.grad is not None) == (i in learned)


SMALL_CONV = {
    "network": {
        "input_shape": [2, 5, 5], "neuron": {"beta": 0.85, "theta": 0.6, "reset": "soft"},
        "psi": {"kind": "triangle", "scale": 0.5, "width": 1.0},
        "layers": [{"kind": "conv2d", "channels": 3, "kernel": 3, "stride": 1, "padding": 1},
                   {"kind": "recurrent", "size": 12},
                   {"kind": "readout", "size": 4, "beta": 0.75}],
    },
    "learning": {"window": 3, "learning_signal": "bp", "loss": "ce",
                 "factors": {"lambda_post": 0.5, "alpha_post": -0.2}},
    "train": {"batch_size": 4, "optimizer": "sgd", "lr": 1e-3},
    "data": {"kind": "digits", "num_steps": 6},
    "quant": {"input": "u2.0", "weight": "s6.4 floor", "current": "s12.5 floor", "membrane": "s9.5 floor",
              "update": "s24.14", "layers": {1: {"membrane": "s10.5"}}},
}


def test_conv_recurrent_bp_ce_is_exact_and_float_path_is_not():
    """BP through a conv and a recurrent layer with the integer softmax error: exact. The
    float learning path of the same network and batch differs (measured)."""
    config = parse_config(SMALL_CONV, "conv")
    torch.manual_seed(4)
    net = SpikingNetwork(config.network, config.learning)
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(3.0)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(4, 6, 2, 5, 5)).astype(np.float64)
    y = rng.integers(0, 4, size=4)
    qat = QATNetwork.from_float(net, config.quant, learning_path=True)
    qat_stllr_batch(qat, torch.from_numpy(x), torch.from_numpy(y))
    model = qat_to_int(qat)
    reference = integer_accumulators(model, x, y)
    bad, total, worst = gap(qat, model, reference, 4, 3)
    assert (bad, total) == (0, 3 * 2 * 9 + 3 + 12 * 75 + 12 * 12 + 12 + 4 * 12 + 4) and worst == 0.0
    assert all(np.abs(acc).max() > 0 for acc in reference.values())

    float_qat = QATNetwork.from_float(net, config.quant)
    stllr_batch(float_qat, torch.from_numpy(x), torch.from_numpy(y))
    bad, total, worst = gap(float_qat, model, reference, 4, 3)
    print(f"conv float path: {bad}/{total} grads differ, max rel. error {worst:.4f}")
    assert bad > total // 4 and worst > 0.01  # the float path's gap: docs/qat.md section 8


def test_digits_float_learning_path_gap_is_measured():
    """configs/digits.yaml (rational Psi, ce, BP), default formats, one batch of 16: the
    float path misses the integer update by a few percent; the integer path by nothing."""
    from stllr.data.digits import make_digits

    train, _ = make_digits(20, 0)
    config = load_config("configs/digits.yaml")
    x, y = train.x[:16].astype(np.float64), train.y[:16]
    torch.manual_seed(0)
    net = SpikingNetwork(config.network, config.learning)
    results = {}
    for learning_path in (False, True):
        qat = QATNetwork.from_float(net, config.quant, learning_path=learning_path)
        run = qat_stllr_batch if learning_path else stllr_batch
        run(qat, torch.from_numpy(x), torch.from_numpy(y))
        model = qat_to_int(qat)
        results[learning_path] = gap(qat, model, integer_accumulators(model, x, y), 16, 5)
    assert results[True][0] == 0 and results[True][2] == 0.0
    bad, total, worst = results[False]
    print(f"digits float path: {bad}/{total} grads differ, max rel. error {worst:.4f}")
    assert total == 128 * 64 + 128 + 10 * 128 + 10
    assert bad > total // 2 and 0.01 < worst < 0.2


def test_online_update_steps_the_optimizer_every_window_step():
    config = load_config("configs/digits.yaml")
    learning = config.learning.model_copy(update={"update": "online", "window": 3})
    torch.manual_seed(0)
    qat = QATNetwork(config.network, learning, config.quant, learning_path=True)
    before = [p.detach().clone() for p in qat.parameters()]
    steps = []
    optimizer = torch.optim.SGD(qat.parameters(), lr=0.5)

    def apply():
        steps.append(float(qat.readout.weight.grad.abs().sum()))
        optimizer.step()

    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.random((4, 6, 64)) < 0.3).astype(np.float64))
    result = qat_stllr_batch(qat, x, torch.tensor([0, 1, 2, 3]), apply_update=apply)
    assert len(steps) == 3 and all(s > 0 for s in steps)
    assert any(not torch.equal(a, b) for a, b in zip(before, qat.parameters()))
    assert result.prediction.shape == (4,) and np.isfinite(result.loss)


# ----------------------------------------------------------------------------- bad input


def test_bad_combinations_give_one_line_errors_naming_the_field():
    config = load_config("configs/digits.yaml")
    bptt = config.learning.model_copy(update={"rule": "bptt"})
    with pytest.raises(InputError, match=r"^learning\.rule = 'bptt'") as error:
        QATNetwork(config.network, bptt, config.quant, learning_path=True)
    assert "\n" not in str(error.value)
    QATNetwork(config.network, bptt, config.quant)  # the float path trains BPTT QAT as before
    plain = QATNetwork(config.network, config.learning, config.quant)
    x, y = torch.zeros(2, 6, 64, dtype=D), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="^learning_path: "):
        qat_stllr_batch(plain, x, y)
    quantized = QATNetwork(config.network, config.learning, config.quant, learning_path=True)
    with pytest.raises(TypeError, match="learning_path=True"):
        stllr_batch(quantized, x, y)  # would silently train the float path
    with pytest.raises(ValueError, match="^rule: "):
        qat_stllr_batch(quantized, x, y, rule="readout_only")
    with pytest.raises(ValueError, match=r"quant \(layer 0\)\.weight"):  # no Brevitas stochastic rounding
        QATNetwork(config.network, config.learning, QuantConfig(weight="s8.6 stochastic"), learning_path=True)


@pytest.mark.parametrize("signal", ["bp", "dfa", "sdfa"])
def test_update_scale_is_the_integer_models(signal):
    learning = LearningConfig(learning_signal=signal)
    network = NetworkConfig(input_shape=[4], layers=[{"kind": "linear", "size": 3}, {"kind": "readout", "size": 2}])
    model = IntNetwork.from_float(SpikingNetwork(network, learning))
    for batch, window in ((1, 1), (8, 5), (32, 20)):
        for index in (0, 1):
            assert update_scale(signal, index == 1, batch, window) == model.update_scale(index, batch, window)
    assert update_scale("sdfa", False, 8, 5) == 1.0 and update_scale("bp", False, 8, 5) == 1 / 40


def test_fine_tune_and_convert_uses_the_integer_learning_path(monkeypatch):
    """The QAT entry point (demo, bench) trains through qat_stllr_batch when asked, and
    the converted model is still exact."""
    import fixedpoint.qat as qat_module
    from stllr.data.digits import make_digits
    from stllr.data.events import EventDataset

    train, test = make_digits(20, 0)
    small = EventDataset(train.x[:24], train.y[:24], train.classes, "digits-train-24")
    probe = EventDataset(test.x[:40], test.y[:40], test.classes, "digits-test-40")
    data = load_config("configs/digits.yaml").model_dump(mode="json")
    data["train"]["batch_size"] = 12
    config = parse_config(data, "digits")
    torch.manual_seed(0)
    qat = QATNetwork(config.network, config.learning, config.quant, learning_path=True)
    calls = []
    original = qat_module.qat_stllr_batch
    monkeypatch.setattr(qat_module, "qat_stllr_batch", lambda *a, **k: calls.append(1) or original(*a, **k))
    accuracy, model, agreement = fine_tune_and_convert(qat, config, small, probe, 0, 1)
    assert len(calls) == 2 and agreement.exact and agreement.qat_correct == round(accuracy * 40)
