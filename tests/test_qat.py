"""Brevitas QAT (fixedpoint/qat.py): quantizers equal FixedFormat, QAT forward == integer model.

Quantizers are checked exhaustively at small widths (every code, every tie, beyond the
range) and with derandomized hypothesis beyond; the network check runs a short S-TLLR QAT
on digits, converts with Brevitas' integer weights and requires 0 mismatches on the whole
test set; a small conv/recurrent/hard-reset network with floor rounding and saturating
formats covers the other layer kinds.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import brevitas.nn as qnn
from core.quant import QuantConfig
from core.formats import FixedFormat
from fixedpoint.network import IntNetwork
from fixedpoint.qat import QATNetwork, brevitas_quantizer, compare, qat_to_int
from core.config import load_config, parse_config
from stllr.data.digits import make_digits
from stllr.data.events import iterate_batches
from core.errors import InputError
from stllr.learning import bptt_batch, stllr_batch
from stllr.network import SpikingNetwork
from stllr.train import build_optimizer

D = torch.float64
HYP = settings(max_examples=150, derandomize=True, deadline=None)


def brevitas_act(fmt: FixedFormat, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(dequantized values, integer codes, scale) of a QuantIdentity built for fmt."""
    quant = qnn.QuantIdentity(act_quant=brevitas_quantizer(fmt, "act"), return_quant_tensor=True).to(D)
    out = quant(torch.from_numpy(np.asarray(values, np.float64)))
    real = out.value.detach().numpy()
    # Brevitas' .int() validity check reads a 1-bit tensor as binary (both codes present)
    codes = out.int().to(torch.int64).numpy() if fmt.bits >= 2 else np.ldexp(real, fmt.frac).astype(np.int64)
    return real, codes, float(out.scale)


def grid(fmt: FixedFormat) -> np.ndarray:
    """Quarter-lsb grid from 3 lsb below the range to 3 lsb above: every code, every tie."""
    quarters = np.arange(4 * (fmt.min_int - 3), 4 * (fmt.max_int + 3) + 1, dtype=np.float64)
    return np.ldexp(quarters, -fmt.frac - 2)


SMALL = [FixedFormat(signed=s, bits=b, frac=f, rounding=r)
         for s, b, f, r in itertools.product((True, False), range(1, 7), (-2, 0, 3, 7), ("nearest_even", "floor"))
         if not (s and b < 2)]


@pytest.mark.parametrize("fmt", SMALL, ids=lambda f: f.describe().replace(" ", "-"))
def test_act_quantizer_equals_fixed_format_exhaustive(fmt):
    values = grid(fmt)
    real, codes, scale = brevitas_act(fmt, values)
    expected = fmt.quantize(values)  # saturate
    assert scale == fmt.lsb
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(real, fmt.to_float(expected))


@pytest.mark.parametrize("text", ["s8.6", "s4.2 floor", "s16.10", "s5.-1 floor", "s32.10"])
def test_weight_and_bias_quantizers_equal_fixed_format(text):
    fmt = FixedFormat.parse(text)
    values = grid(fmt) if fmt.bits <= 16 else np.ldexp(np.arange(-4000, 4000, dtype=np.float64), -fmt.frac - 2)
    layer = qnn.QuantLinear(values.size, 1, bias=True, weight_quant=brevitas_quantizer(fmt, "weight"),
                            bias_quant=brevitas_quantizer(fmt, "bias"), return_quant_tensor=False).to(D)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(values).reshape(1, -1))
        layer.bias = torch.nn.Parameter(torch.from_numpy(values[:1].copy()))
    qw = layer.quant_weight()
    assert float(qw.scale) == fmt.lsb and int(qw.bit_width) == fmt.bits
    np.testing.assert_array_equal(qw.int().to(torch.int64).numpy().ravel(), fmt.quantize(values))
    np.testing.assert_array_equal(layer.quant_bias().int().to(torch.int64).numpy(), fmt.quantize(values[:1]))


def test_widest_format_saturates_at_the_exact_ends():
    fmt = FixedFormat.parse("s32.10")
    ends = np.array([fmt.max_int, fmt.max_int + 1, fmt.min_int, fmt.min_int - 1, 2.0 ** 40], np.float64)
    _, codes, _ = brevitas_act(fmt, np.ldexp(ends, -fmt.frac))
    assert codes.tolist() == [fmt.max_int, fmt.max_int, fmt.min_int, fmt.min_int, fmt.max_int]


@st.composite
def formats_and_values(draw):
    signed = draw(st.booleans())
    bits = draw(st.integers(2 if signed else 1, 32))
    fmt = FixedFormat(signed=signed, bits=bits, frac=draw(st.integers(-8, 40)),
                      rounding=draw(st.sampled_from(("nearest_even", "floor"))))
    span = fmt.max_int - fmt.min_int + 8
    codes = draw(st.lists(st.integers(fmt.min_int - span // 4 - 4, fmt.max_int + span // 4 + 4), min_size=1,
                          max_size=20))
    eighths = draw(st.lists(st.integers(0, 7), min_size=len(codes), max_size=len(codes)))
    values = np.ldexp(np.array(codes, np.float64) + np.array(eighths) / 8.0, -fmt.frac)
    return fmt, values


@HYP
@given(case=formats_and_values())
def test_act_quantizer_equals_fixed_format_random(case):
    fmt, values = case
    real, codes, scale = brevitas_act(fmt, values)
    assert scale == fmt.lsb
    np.testing.assert_array_equal(codes, fmt.quantize(values))
    np.testing.assert_array_equal(real, fmt.to_float(fmt.quantize(values)))


def test_quantizer_is_named_by_its_spec_and_ste_passes_gradients_in_range():
    fmt = FixedFormat.parse("s8.4")
    assert brevitas_quantizer(fmt, "weight").__name__ == "WeightInt8Frac4RoundFixedPoint"
    assert brevitas_quantizer(FixedFormat.parse("u12.12 floor"), "act").__name__ == "ActUint12Frac12FloorFixedPoint"
    quant = qnn.QuantIdentity(act_quant=brevitas_quantizer(fmt, "act"), return_quant_tensor=False).to(D)
    x = torch.tensor([0.3, -1.07, 100.0, -100.0], dtype=D, requires_grad=True)
    quant(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]  # round: identity; clamp: zero outside


# ------------------------------------------------------------------------ configuration


def digits_config(**learning):
    config = load_config("configs/digits.yaml")
    data = config.model_dump(mode="json")
    data["learning"].update(learning)
    return parse_config(data, "digits")


@pytest.mark.parametrize("field, text, where", [
    ("weight", "s8.6 stochastic", "quant (layer 0).weight"),
    ("membrane", "s16.10 nearest_away", "quant (layer 0).membrane"),
    ("current", "s32.10 nearest_even wrap", "quant (layer 0).current"),
])
def test_formats_without_brevitas_equivalent_are_rejected(field, text, where):
    config = digits_config()
    with pytest.raises(ValueError, match=rf"{where.replace('(', '[(]').replace(')', '[)]')}"):
        QATNetwork(config.network, config.learning, QuantConfig(**{field: text}))


def test_constants_are_validated_like_the_integer_model():
    config = digits_config()
    with pytest.raises(InputError, match="theta"):
        QATNetwork(config.network, config.learning, QuantConfig(membrane="s16.-2"))  # theta 0.6 -> 0
    with pytest.raises(InputError, match="quant.layers.5"):
        QATNetwork(config.network, config.learning, QuantConfig(layers={5: {"membrane": "s16.8"}}))


def test_same_initial_weights_and_rng_as_the_float_model_and_float64_only():
    config = digits_config()
    torch.manual_seed(3)
    net = SpikingNetwork(config.network, config.learning)
    after_float = torch.rand(1)
    torch.manual_seed(3)
    qat = QATNetwork(config.network, config.learning)
    assert torch.rand(1) == after_float
    assert [n for n, _ in qat.named_parameters()] == [n for n, _ in net.named_parameters()]
    for a, b in zip(qat.parameters(), net.parameters()):
        assert a.dtype == D and torch.equal(a, b.to(D))
    assert qat.layers[0].synapse.weight is qat.layers[0].weight
    with pytest.raises(TypeError, match="float64"):
        qat.float()(torch.zeros(1, 2, 64))


# ------------------------------------------------------------------------ digits, exact


@pytest.fixture(scope="module")
def digits():
    return make_digits(20, 0)


def test_digits_qat_then_integer_inference_is_exact(digits):
    """Short S-TLLR QAT (ce loss, Adam) on a subset, then the whole test set: 0 mismatches."""
    train, test = digits
    config = digits_config()
    torch.manual_seed(0)
    qat = QATNetwork.from_float(SpikingNetwork(config.network, config.learning))
    before = qat.int_parameters()
    optimizer = build_optimizer(qat, config)
    for step, (x, y) in enumerate(iterate_batches(train, 32, shuffle=True, seed=0, epoch=0)):
        if step == 4:
            break
        optimizer.zero_grad(set_to_none=True)
        stllr_batch(qat, torch.from_numpy(x), torch.from_numpy(y), apply_update=optimizer.step)
    after = qat.int_parameters()
    assert any(not np.array_equal(before[i][k], after[i][k]) for i in range(2) for k in after[i])
    model = qat_to_int(qat)
    for lp, codes in zip(model.params.layers, after):
        np.testing.assert_array_equal(lp.weight, codes["weight"])
        np.testing.assert_array_equal(lp.bias, codes["bias"])
    agreement = compare(qat, model, test.x, test.y)
    assert agreement.samples == 360 and agreement.spike_elements == (360 * 20 * 128,)
    assert agreement.exact, agreement
    assert agreement.qat_correct == agreement.int_correct
    assert model.summary().startswith("tensor")  # overflow table (no events needed here)


def test_conversion_uses_brevitas_codes_and_checks_them(digits, monkeypatch):
    config = digits_config()
    torch.manual_seed(1)
    qat = QATNetwork.from_float(SpikingNetwork(config.network, config.learning))
    reference = IntNetwork.from_float(qat_to_int(qat).net, qat.quant)  # independent quantization
    model = qat_to_int(qat)
    for a, b in zip(model.params.layers, reference.params.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
    original = QATNetwork.int_parameters

    def tampered(self):
        codes = original(self)
        codes[1]["weight"] = codes[1]["weight"].copy()
        codes[1]["weight"][0, 0] += 1
        return codes

    monkeypatch.setattr(QATNetwork, "int_parameters", tampered)
    with pytest.raises(RuntimeError, match="layer1.weight: 1 Brevitas integer codes differ"):
        qat_to_int(qat)
    with pytest.raises(ValueError, match="quant"):
        qat_to_int(qat, QuantConfig(membrane="s16.8"))


# ------------------------------------------------------- other layer kinds, floor, saturation


SMALL_NET = {
    "network": {
        "input_shape": [2, 5, 5],
        "neuron": {"beta": 0.85, "theta": 0.6, "reset": "soft"},
        "layers": [
            {"kind": "conv2d", "channels": 3, "kernel": 3, "stride": 1, "padding": 1},
            {"kind": "recurrent", "size": 12},
            {"kind": "linear", "size": 8, "reset": "hard", "bias": False},
            {"kind": "readout", "size": 4, "beta": 0.75},
        ],
    },
    "learning": {"window": 4, "learning_signal": "dfa", "loss": "mse"},
    "train": {"batch_size": 8, "optimizer": "sgd", "lr": 0.05},
    "data": {"kind": "digits", "num_steps": 8},
    "quant": {
        "input": "u2.0",
        "weight": "s6.4 floor",
        "bias": "s10.6",
        "current": "s12.5 floor",
        "membrane": "s9.5 floor",
        "leak": "u8.8",
        "layers": {1: {"membrane": "s8.3", "current": "s10.4"}, 3: {"membrane": "s12.6 floor raise"}},
    },
}


def test_conv_recurrent_hard_reset_floor_and_saturation_are_exact():
    config = parse_config(SMALL_NET, "small")
    torch.manual_seed(5)
    net = SpikingNetwork(config.network, config.learning)
    with torch.no_grad():  # large weights: weight, current and membrane saturate
        for param in net.parameters():
            param.mul_(10.0)
    qat = QATNetwork.from_float(net, config.quant)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(24, 8, 2, 5, 5)).astype(np.uint8) * (rng.random((24, 8, 2, 5, 5)) < 0.5)
    target = torch.from_numpy(rng.integers(0, 4, size=24))
    optimizer = torch.optim.SGD(qat.parameters(), lr=0.05)
    optimizer.zero_grad()
    stllr_batch(qat, torch.from_numpy(x[:8]), target[:8], apply_update=optimizer.step)
    model = qat_to_int(qat)
    agreement = compare(qat, model, x, batch_size=10)
    assert agreement.exact, agreement
    assert sum(agreement.spike_elements) == 24 * 8 * (75 + 12 + 8)
    events = {name: n for name, _, n, _ in model.overflow.rows()}
    assert events["layer0.weight"] > 0 and events["layer1.current"] + events["layer1.membrane"] > 0


def test_bptt_and_stllr_gradients_reach_the_latent_weights(digits):
    train, _ = digits
    x, y = torch.from_numpy(train.x[:8]), torch.from_numpy(train.y[:8])
    for rule, run in (("bptt", bptt_batch), ("stllr", stllr_batch)):
        config = digits_config(rule=rule)
        torch.manual_seed(2)
        qat = QATNetwork(config.network, config.learning)
        for param in qat.parameters():
            param.grad = None
        run(qat, x, y)
        for name, param in qat.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), (rule, name)
            assert param.grad.abs().sum() > 0, (rule, name)


def test_qat_quant_rounds_only_the_writes_to_nearest():
    from core.config import load_config
    from fixedpoint.qat import qat_quant

    from pathlib import Path

    chip = load_config(Path(__file__).resolve().parent.parent / "configs" / "onchip_temporal.yaml").quant
    qat = qat_quant(chip)
    assert (qat.weight.rounding, qat.bias.rounding) == ("nearest_even", "nearest_even")
    assert (chip.weight.rounding, chip.bias.rounding) == ("stochastic", "stochastic")  # not edited in place
    assert qat.weight.replace(rounding="stochastic") == chip.weight
    assert qat.model_dump(exclude={"weight", "bias"}) == chip.model_dump(exclude={"weight", "bias"})
