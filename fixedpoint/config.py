"""Per-layer formats and quantized constants of the integer model (the ``quant:`` section
itself is :mod:`core.quant`; this module resolves it per layer and checks the datapath)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.formats import FixedFormat
from core.quant import EXACT_BITS, LAYER_TENSORS, LayerQuantOverride, PsiLutConfig, QuantConfig, SoftmaxLutConfig


# ------------------------------------------------------------------ resolved per layer


@dataclass(frozen=True)
class LayerFormats:
    """Effective formats of one layer (network-wide values with the layer's overrides)."""

    input: FixedFormat  # what this layer's synapses see: quant.input (layer 0) or u1.0 spikes
    weight: FixedFormat
    bias: FixedFormat
    current: FixedFormat
    membrane: FixedFormat
    leak: FixedFormat
    decay: FixedFormat
    factor: FixedFormat
    pre_trace: FixedFormat
    post_trace: FixedFormat
    psi: FixedFormat
    psi_slope: FixedFormat
    error: FixedFormat
    learning_signal: FixedFormat
    modulation: FixedFormat
    feedback: FixedFormat
    update: FixedFormat
    momentum: FixedFormat  # lion's momentum word (per learned weight)
    learning_rate: FixedFormat
    softmax: FixedFormat  # network-wide: the integer softmax of the ce error
    psi_lut: PsiLutConfig
    softmax_lut: SoftmaxLutConfig
    leak_mode: str

    @property
    def binary_input(self) -> bool:
        """Spike input (u1.0): synapses add weight columns; otherwise multiply-accumulate."""
        return (not self.input.signed) and self.input.bits == 1 and self.input.frac == 0


SPIKES = FixedFormat.parse("u1.0")


def layer_formats(quant: QuantConfig, index: int) -> LayerFormats:
    override = quant.layers.get(index, LayerQuantOverride())
    values = {}
    for name in LAYER_TENSORS:
        value = getattr(override, name)
        values[name] = value if value is not None else getattr(quant, name)
    return LayerFormats(
        input=quant.input if index == 0 else SPIKES,
        error=quant.error,
        learning_rate=quant.learning_rate,
        softmax=quant.softmax,
        softmax_lut=quant.softmax_lut,
        psi_lut=override.psi_lut or quant.psi_lut,
        leak_mode=override.leak_mode or quant.leak_mode,
        **values,
    )


@dataclass(frozen=True)
class LayerConstants:
    """Quantized constants of one layer (integer codes in the declared formats)."""

    beta: int  # leak format
    theta: int  # membrane format (0 for the readout)
    lambda_pre: int  # decay format
    lambda_post: int  # decay format
    alpha_pre: int  # factor format
    alpha_post: int  # factor format
    psi_kind: str  # "rational" (LUT), "triangle", or "" for the readout
    psi_width: int  # triangle: w in the membrane format
    psi_slope: int  # triangle: scale / w in the psi_slope format (psi per membrane unit)
    psi_lut: np.ndarray  # rational: int64 codes in the psi format, ``entries`` long
    leak_shift: int  # n with beta = 1 - 2**-n when leak_mode = shift, else 0


def psi_lut_bins(lut: PsiLutConfig) -> tuple[np.ndarray, np.ndarray]:
    """First and last ``a = |z| >> index_shift`` of each entry's bin (int64, ``entries`` long;
    the last entry's bin is its own, it also serves everything beyond)."""
    i = np.arange(lut.entries, dtype=np.int64)
    if lut.kind == "uniform":
        return i, i
    m = lut.mantissa_bits
    k = np.maximum((i >> m) - 1, 0)  # the octave's shift; k = 0 for the direct part i < 2**(m + 1)
    first = (i - (k << m)) << k
    return first, first + (np.int64(1) << k) - 1


def psi_lut_index(absz: np.ndarray, lut: PsiLutConfig) -> np.ndarray:
    """The table index of ``|z|`` (int64 membrane codes), see :class:`core.quant.PsiLutConfig`."""
    a = absz >> np.int64(lut.index_shift)
    if lut.kind == "segmented":
        msb = np.frexp(a.astype(np.float64))[1] - 1  # leading-one position (exact: a < 2**53); -1 for a = 0
        k = np.maximum(msb - lut.mantissa_bits, 0).astype(np.int64)
        a = (k << np.int64(lut.mantissa_bits)) + (a >> k)
    return np.minimum(a, lut.entries - 1)


def psi_lut_values(psi_config, membrane: FixedFormat, lut: PsiLutConfig, psi_fmt: FixedFormat) -> np.ndarray:
    """The rational-Psi table: uniform, Psi at bin centres ``(i + 0.5) * 2**index_shift`` lsb;
    segmented, the mean of Psi at the first and last ``|z|`` code of each bin."""
    def psi(z):
        return 1.0 / (1.0 + psi_config.gamma * z) ** 2

    if lut.kind == "uniform":
        values = psi(np.ldexp((np.arange(lut.entries, dtype=np.float64) + 0.5), lut.index_shift - membrane.frac))
    else:
        first, last = psi_lut_bins(lut)
        lo = np.ldexp((first << lut.index_shift).astype(np.float64), -membrane.frac)
        hi = np.ldexp((((last + 1) << lut.index_shift) - 1).astype(np.float64), -membrane.frac)
        values = (psi(lo) + psi(hi)) / 2
    return psi_fmt.replace(rounding="nearest_even", overflow="saturate").quantize(values)


def _quantize_constant(where: str, value: float, fmt: FixedFormat, *, nonzero: bool = False,
                       below_one: bool = False) -> int:
    """Check that ``value`` fits ``fmt`` and keeps its meaning; return the integer code."""
    exact_fmt = fmt.replace(rounding="nearest_even", overflow="saturate")
    try:
        exact_fmt.check_fits(where, value)
    except ValueError as error:
        raise InputError(str(error)) from None
    code = int(exact_fmt.quantize(value))
    real = math.ldexp(code, -fmt.frac)
    if nonzero and value != 0.0 and code == 0:
        raise InputError(f"{where} = {value!r} quantizes to 0 in {fmt.describe_short()} (lsb {fmt.lsb!r}): "
                         "add fraction bits")
    if value != 0.0 and code != 0 and (real > 0) != (value > 0):
        raise InputError(f"{where} = {value!r} changes sign in {fmt.describe_short()}")
    if below_one and value < 1.0 and real >= 1.0:
        raise InputError(f"{where} = {value!r} quantizes to {real!r} >= 1 in {fmt.describe_short()}: "
                         "the state would no longer decay; add fraction bits")
    return code


def layer_constants(network, learning, quant: QuantConfig, index: int, fmts: LayerFormats) -> LayerConstants:
    """Quantize beta, theta, lambdas, alphas and Psi of layer ``index``; InputError names the field."""
    from core.config import resolve_layer

    r = resolve_layer(network, learning, index)
    where = f"network.layers.{index}"
    spiking = r.kind != "readout"
    beta = _quantize_constant(f"{where}.beta (quant.leak)", r.beta, fmts.leak, nonzero=True, below_one=True)
    theta = 0
    if spiking:
        theta = _quantize_constant(f"{where}.theta (quant.membrane)", r.theta, fmts.membrane, nonzero=True)
        if theta <= 0:
            raise InputError(f"{where}.theta (quant.membrane) = {r.theta!r} must stay > 0 after quantization")
    # where the factors came from: the layer's own factors:, else the learning section's
    factors = (f"{where}.factors" if network.layers[index].factors is not None
               else "learning.readout_factors" if not spiking else "learning.factors")
    lam_pre = _quantize_constant(f"{where}.lambda_pre ({factors}, quant.decay)", r.lambda_pre, fmts.decay,
                                 nonzero=True, below_one=True)
    lam_post = _quantize_constant(f"{where}.lambda_post ({factors}, quant.decay)", r.lambda_post, fmts.decay,
                                  nonzero=True, below_one=True) if spiking else 0
    a_pre = _quantize_constant(f"{where}.alpha_pre ({factors}, quant.factor)", r.alpha_pre, fmts.factor, nonzero=True)
    a_post = _quantize_constant(f"{where}.alpha_post ({factors}, quant.factor)", r.alpha_post, fmts.factor,
                                nonzero=True) if spiking else 0
    kind, width, slope, lut = "", 0, 0, np.zeros(1, np.int64)
    if spiking:
        kind = r.psi.kind
        if kind == "triangle":
            _quantize_constant(f"{where}.psi.scale (quant.psi)", r.psi.scale, fmts.psi, nonzero=True)
            width = _quantize_constant(f"{where}.psi.width (quant.membrane)", r.psi.width, fmts.membrane, nonzero=True)
            slope = _quantize_constant(f"{where}.psi.scale / psi.width (quant.psi_slope)", r.psi.scale / r.psi.width,
                                       fmts.psi_slope, nonzero=True)
        else:
            _quantize_constant(f"{where}.psi: Psi(0) = 1 (quant.psi)", 1.0, fmts.psi, nonzero=True)
            lut = psi_lut_values(r.psi, fmts.membrane, fmts.psi_lut, fmts.psi)
    leak_shift = 0
    if fmts.leak_mode == "shift":
        real = math.ldexp(beta, -fmts.leak.frac)
        n = -math.log2(1.0 - real) if real < 1.0 else math.inf
        if not (n.is_integer() and n >= 1) or math.ldexp(1.0, -int(n)) != 1.0 - r.beta:
            raise InputError(f"{where}.beta = {r.beta!r}: leak_mode shift needs beta = 1 - 2**-n exactly "
                             f"(and representable in {fmts.leak.describe_short()})")
        leak_shift = int(n)
    return LayerConstants(beta, theta, lam_pre, lam_post, a_pre, a_post, kind, width, slope, lut, leak_shift)


def check_layer_indices(network, quant: QuantConfig) -> None:
    for index in quant.layers:
        if index >= len(network.layers):
            raise InputError(f"quant.layers.{index}: no such layer (network has {len(network.layers)})")
        if network.layers[index].kind == "readout":
            pass


def check_learning(learning) -> None:
    """The integer model trains with the rules stllr / readout_only (loss mse or ce)."""
    if learning.rule not in ("stllr", "readout_only"):
        raise InputError(f"learning.rule = {learning.rule!r}: the integer model trains with 'stllr' or 'readout_only'")


def width(ib: int, frac: int) -> int:
    """Bits of a two's complement value with ``ib`` integer bits (sign included) and ``frac``."""
    return ib + frac


def ib(fmt: FixedFormat) -> int:
    """Integer bits of a format, sign included (a product's are the sum of its operands')."""
    return fmt.bits - fmt.frac + (0 if fmt.signed else 1)


def check_exact(where: str, bits: int) -> None:
    if bits > EXACT_BITS:
        raise InputError(f"{where}: intermediate needs {bits} bits, above the {EXACT_BITS}-bit limit of the "
                         "exact datapath (int64 kernels, float64 emulation); narrow the formats")


def update_scale(learning_signal: str, readout: bool, batch: int, window: int) -> float:
    """Factor from a layer's update accumulator (real units) to the float model's grad:
    1 / (B k), because the float loss averages over the batch and the window while the
    accumulator sums; 1 for sDFA hidden layers, whose float signal sign(error) carries no
    1 / (B k). (The same rule as :func:`eta_code`'s ``unscaled`` for sgd.)"""
    if learning_signal == "sdfa" and not readout:
        return 1.0
    return 1.0 / (batch * window)


def eta_code(fmt: FixedFormat, lr: float, batch: int, window: int, unscaled: bool) -> int:
    """The eta code the weight write multiplies by, in the ``learning_rate`` format.

    eta = lr / (B k) (the float loss averages over batch and window), or lr alone
    (``unscaled``: sDFA hidden layers, whose float signal sign(error) carries no 1/(B k),
    and lion, whose step does not depend on the gradient's scale); quantized
    nearest-even. A value the format cannot hold, or one that rounds to 0, is an error.
    """
    value = lr if unscaled else lr / (batch * window)
    what = "train.lr" if unscaled else "train.lr / (batch * window)"
    plain = fmt.replace(rounding="nearest_even", overflow="saturate")
    try:
        plain.check_fits(f"{what} (quant.learning_rate)", value)
    except ValueError as error:
        raise InputError(str(error)) from None
    code = int(plain.quantize(value))
    if code == 0:
        raise InputError(f"{what} = {value!r} quantizes to 0 in quant.learning_rate {fmt.describe_short()}")
    return code
