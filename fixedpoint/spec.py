"""The datapath spec: the operations of one time step of one layer, derived once from
config + quant, read by the integer model's op counters and by ``hwmodel``.

Per layer, :func:`network_spec` lists every operation the integer datapath executes, in
step order, grouped by phase (forward, traces, learning signal, eligibility, accumulate;
the weight write, once per write, by :func:`weight_write_ops`). Each :class:`Op` names

- its ``phase`` and ``kind`` (the taxonomy of :mod:`core.counters`), operand
  ``width`` (``"8x16"`` for a product, the register bits otherwise) and the stored
  ``tensor`` a memory access or table read touches;
- how many times it runs: ``per`` x the activity quantity ``count`` of a layer (its own,
  or the readout's for ``source = "readout"``) -- the quantities are :data:`QUANTITIES`,
  observed by the kernels as they run and measured or estimated by ``hwmodel``;
- ``what`` it computes, for the table a hardware engineer implements
  (``hwmodel estimate --detail``, docs/fixedpoint_model.md).

A new operation is one new entry here: the kernels report the quantity that counts it,
the executed-op counter and the cost model both multiply it out from this list. Pure
Python: no numba, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fixedpoint.config import LayerConstants, LayerFormats, check_exact, ib
from core.counters import KINDS, PHASES
from core.errors import InputError

# --------------------------------------------------------------------- quantities

#: Forward quantities (inference and training), per layer, summed over the batch.
FORWARD_QUANTITIES = ("events", "rec_events", "spikes", "neurons")
#: Traces (every step of a training run).
TRACE_QUANTITIES = ("inputs", "psi_support", "psi", "input_elements", "steps")
#: Learning quantities (window steps only).
LEARN_QUANTITIES = ("signal", "signal_psi", "bp_pairs", "causal_mod", "noncausal_mod", "causal_pairs",
                    "noncausal_pairs", "contrib", "rec_causal_pairs", "rec_noncausal_pairs", "rec_contrib",
                    "bias_causal", "bias_noncausal", "window_samples", "window_neurons", "window_channels",
                    "writes")
QUANTITIES = FORWARD_QUANTITIES + TRACE_QUANTITIES + LEARN_QUANTITIES
#: Structural quantities: counts that follow from sizes and steps alone.
STRUCTURAL = ("neurons", "input_elements", "steps", "window_samples", "window_neurons", "window_channels",
              "writes")
QUANTITY_HELP = {
    "events": "valid non-zero input operands of the synapse loop, (sample, tap, position)",
    "rec_events": "non-zero o[t-1] (recurrent synapses)",
    "spikes": "output spikes o[t]",
    "neurons": "neurons x samples, every step (B n_out per step)",
    "inputs": "non-zero inputs x[t] (pre-trace adds)",
    "psi_support": "neurons with |u - theta| < width (triangle Psi multiplies)",
    "psi": "non-zero Psi (post-trace adds)",
    "input_elements": "inputs x samples, every step (B n_in per step)",
    "steps": "time steps (the batch-shared bias trace q_b)",
    "signal": "non-zero learning signal L (readout: non-zero error)",
    "signal_psi": "non-zero L * psi",
    "bp_pairs": "MACs of W^T g from the layer above (BP), with g non-zero",
    "causal_mod": "non-zero round(alpha_pre L) * psi",
    "noncausal_mod": "non-zero round(alpha_post L) * p[t-1]",
    "causal_pairs": "non-zero (causal factor, pre-trace) pairs",
    "noncausal_pairs": "non-zero (non-causal factor, input) pairs",
    "contrib": "synapses touched per sample (one accumulator add each)",
    "rec_causal_pairs": "as causal_pairs, recurrent synapses",
    "rec_noncausal_pairs": "as noncausal_pairs, recurrent synapses",
    "rec_contrib": "as contrib, recurrent synapses",
    "bias_causal": "non-zero causal factor * q_b (exact bias update)",
    "bias_noncausal": "non-zero non-causal factor (exact bias update)",
    "window_samples": "samples, every window step (B per step)",
    "window_neurons": "neurons x samples, every window step (B n_out per step)",
    "window_channels": "output channels x samples, every window step (B C per step)",
    "writes": "weight writes (once per batch, or every window step when update: online)",
}


# --------------------------------------------------------------------------- ops


@dataclass(frozen=True)
class LayerShape:
    """What the spec needs of one layer: sizes, kind, formats and quantized constants."""

    index: int
    kind: str  # linear | recurrent | conv2d | readout
    n_in: int  # flat input elements per sample
    channels: int  # output channels (outputs of a dense layer)
    positions: int  # output positions (1 for a dense layer)
    taps: int  # weights per output channel (C_in K K, or n_in)
    bias: bool
    reset: str  # soft | hard | none (readout)
    fmts: LayerFormats
    const: LayerConstants

    @property
    def name(self) -> str:
        return f"layer{self.index}"

    @property
    def n_out(self) -> int:
        return self.channels * self.positions

    @property
    def spiking(self) -> bool:
        return self.kind != "readout"

    @property
    def recurrent(self) -> bool:
        return self.kind == "recurrent"


@dataclass(frozen=True)
class Op:
    """One operation of the datapath: runs ``per`` x quantity ``count`` times."""

    phase: str
    kind: str
    width: str
    count: str
    per: int = 1
    tensor: str = ""
    what: str = ""
    source: str = "self"  # whose quantity counts it: this layer, or the readout's

    def __post_init__(self) -> None:
        if self.phase not in PHASES or self.kind not in KINDS or self.count not in QUANTITIES:
            raise ValueError(f"bad op {self.phase}/{self.kind}/{self.count}")


@dataclass(frozen=True)
class Learning:
    """The learning options the spec depends on."""

    learning_signal: str  # bp | dfa | sdfa
    bias_update: str  # reference | exact
    learners: tuple[int, ...]
    loss: str = "mse"  # mse | ce (the integer softmax, fixedpoint/softmax.py)


@dataclass(frozen=True)
class Optimizer:
    """How a write turns the accumulator into a weight change.

    ``sgd``: W -= eta acc, acc = 0. ``signum``: W -= eta sign(acc), then acc -= acc >>
    momentum_shift (the accumulator is the momentum, beta = 1 - 2^-momentum_shift).
    ``lion`` (docs/int_training.md): g = acc in the momentum format, d = g - m,
    W -= eta sign(m + (d >> direction_shift)), m += d >> momentum_shift, acc = 0;
    beta1 = 1 - 2^-direction_shift, beta2 = 1 - 2^-momentum_shift."""

    kind: str = "sgd"  # sgd | signum | lion
    direction_shift: int = 0
    momentum_shift: int = 0


def chip_optimizer(train) -> tuple[str, tuple[float, ...] | None]:
    """(optimizer, betas) of the weight write for a ``train:`` section: signum and lion as
    configured; adam, which no chip runs, falls back to sgd's write (rtl-export and the
    cost model accept adam configs; int-train refuses them by name)."""
    if train.optimizer in ("signum", "lion"):
        return train.optimizer, train.resolved_betas
    return "sgd", None


def optimizer_spec(kind: str, betas: tuple[float, float] | None) -> Optimizer:
    """The integer optimizer of ``train.optimizer``/``train.betas``: sgd, or signum / lion
    whose betas must be 1 - 2^-n (an EMA is then a subtract and a shift); InputError
    names the field."""
    if kind == "sgd":
        return Optimizer()
    if kind not in ("signum", "lion"):
        raise InputError(f"train.optimizer = {kind!r}: the integer model trains with sgd, signum or lion "
                         "(adam needs two moments and a square root per weight)")
    from core.config import DEFAULT_BETAS

    betas = betas if betas is not None else DEFAULT_BETAS[kind]
    shifts = []
    for beta in betas:
        n = -math.log2(1.0 - beta) if 0.0 <= beta < 1.0 else math.nan
        if not (n.is_integer() and 0 <= n <= 30 and math.ldexp(1.0, -int(n)) == 1.0 - beta):
            raise InputError(f"train.betas = {list(betas)}: the integer {kind} needs beta = 1 - 2**-n, n = 0..30 "
                             "(e.g. 0.875, 0.9921875)")
        shifts.append(int(n))
    if kind == "signum":
        return Optimizer("signum", 0, shifts[0])
    return Optimizer("lion", shifts[0], shifts[1])


def const_op(code: int, const_fmt, other_fmt) -> tuple[str, str] | None:
    """How a multiply by the constant ``code`` executes: nothing (0), a shift (a power of
    two, in the other operand's width) or a multiply (``const x other`` bits)."""
    if code == 0:
        return None
    a = abs(int(code))
    if a & (a - 1) == 0:
        return "shift", str(other_fmt.bits)
    return "mul", f"{const_fmt.bits}x{other_fmt.bits}"


def _const(ops: list, phase: str, code: int, const_fmt, other_fmt, count: str, what: str, per: int = 1) -> None:
    op = const_op(code, const_fmt, other_fmt)
    if op is not None:
        ops.append(Op(phase, op[0], op[1], count, per, what=what))


def forward_ops(ly: LayerShape) -> list[Op]:
    """int_layer_step up to the spike and reset (inference and training alike)."""
    f, c = ly.fmts, ly.const
    ops = []
    if f.binary_input:
        ops.append(Op("forward", "syn_add", str(f.current.bits), "events", ly.channels,
                      what="current += W[o, j] for each active input j"))
    else:
        ops.append(Op("forward", "mac", f"{f.weight.bits}x{f.input.bits}", "events", ly.channels,
                      what="current += W[o, j] x[j] for each non-zero input j"))
    ops.append(Op("forward", "read", str(f.weight.bits), "events", ly.channels, "weight"))
    if ly.recurrent:
        ops.append(Op("forward", "syn_add", str(f.current.bits), "rec_events", ly.n_out,
                      what="current += W_rec[o, j] for each o_j[t-1] = 1"))
        ops.append(Op("forward", "read", str(f.weight.bits), "rec_events", ly.n_out, "rec_weight"))
    if ly.bias:
        ops.append(Op("forward", "add", str(f.current.bits), "neurons", what="current += b"))
        ops.append(Op("forward", "read", str(f.bias.bits), "neurons", tensor="bias"))
    if f.leak_mode == "shift":
        ops.append(Op("forward", "shift", str(f.membrane.bits), "neurons", what="v >> n (beta = 1 - 2^-n)"))
        ops.append(Op("forward", "add", str(f.membrane.bits), "neurons", what="v - (v >> n)"))
    else:
        _const(ops, "forward", c.beta, f.leak, f.membrane, "neurons", "beta v")
    ops.append(Op("forward", "add", str(f.membrane.bits), "neurons", what="u = beta v + current"))
    ops.append(Op("forward", "read", str(f.membrane.bits), "neurons", tensor="membrane"))
    ops.append(Op("forward", "write", str(f.membrane.bits), "neurons", tensor="membrane"))
    if ly.spiking:
        ops.append(Op("forward", "cmp", str(f.membrane.bits), "neurons", what="o = u - theta > 0"))
        if ly.reset == "soft":
            ops.append(Op("forward", "add", str(f.membrane.bits), "spikes", what="v = u - theta (spiking neurons)"))
    return ops


def _trace_ops(ly: LayerShape, decay: int, fmt, count_all: str, count_nonzero: str, tensor: str,
               what: str) -> list[Op]:
    ops: list[Op] = []
    _const(ops, "traces", decay, ly.fmts.decay, fmt, count_all, f"lambda {tensor}")
    ops.append(Op("traces", "add", str(fmt.bits), count_nonzero, what=what))
    ops.append(Op("traces", "read", str(fmt.bits), count_all, tensor=tensor))
    ops.append(Op("traces", "write", str(fmt.bits), count_all, tensor=tensor))
    return ops


def psi_ops(ly: LayerShape, phase: str, count: str, support: str) -> list[Op]:
    """Psi(u - theta): triangle (subtract, clamp, slope multiply) or rational (LUT)."""
    f, c = ly.fmts, ly.const
    z_bits = str(f.membrane.bits + 1)
    ops: list[Op] = []
    if c.psi_kind == "triangle":
        ops.append(Op(phase, "add", z_bits, count, what="d = width - |u - theta|"))
        ops.append(Op(phase, "cmp", z_bits, count, what="d = max(d, 0)"))
        _const(ops, phase, c.psi_slope, f.psi_slope, f.membrane, support, "psi = slope d")
    else:
        if f.psi_lut.index_shift:
            ops.append(Op(phase, "shift", z_bits, count, what="a = |u - theta| >> index_shift"))
        if f.psi_lut.kind == "segmented":  # a priority encoder and a barrel shift (the index is a concatenation)
            ops.append(Op(phase, "cmp", z_bits, count, what="k = max(leading_one(a) - mantissa_bits, 0)"))
            ops.append(Op(phase, "shift", z_bits, count, what="index = (k << mantissa_bits) + (a >> k)"))
        ops.append(Op(phase, "cmp", z_bits, count, what="index = min(index, entries - 1)"))
        ops.append(Op(phase, "lut", str(f.psi.bits), count, tensor="psi_lut", what="psi = LUT[index]"))
    return ops


def trace_ops(ly: LayerShape) -> list[Op]:
    """Psi and the traces, every step of a training run."""
    f, c = ly.fmts, ly.const
    ops: list[Op] = []
    if ly.spiking:
        ops += psi_ops(ly, "traces", "neurons", "psi_support")
        ops += _trace_ops(ly, c.lambda_post, f.post_trace, "neurons", "psi", "post_trace", "p = lambda_post p + psi")
    ops += _trace_ops(ly, c.lambda_pre, f.pre_trace, "input_elements", "inputs", "pre_trace",
                      "q = lambda_pre q + x")
    if ly.bias:  # q_b: one scalar trace of the constant input 1, shared by the batch
        ops += _trace_ops(ly, c.lambda_pre, f.pre_trace, "steps", "steps", "bias_trace", "q_b = lambda_pre q_b + 1")
    if ly.recurrent:
        rec = _trace_ops(ly, c.lambda_pre, f.pre_trace, "neurons", "rec_events", "rec_pre_trace",
                         "q_rec = lambda_pre q_rec + o[t-1]")
        ops += rec
    return ops


def softmax_ops(out: LayerShape) -> list[Op]:
    """The integer softmax error p - onehot of the readout (fixedpoint/softmax.py), per
    sample of a window step: C classes, y in the membrane format, F = softmax.frac."""
    f, classes = out.fmts, out.n_out
    fs, fm = f.softmax, f.membrane
    d_bits, sum_bits = fm.bits + 1, fs.bits + _log2(classes)
    quotient_bits = fs.frac + 2  # R = floor(2^(2F) / S) <= 2^(2F) / LUT[0] < 2^(F + 1)
    count = "window_samples"
    return [
        Op("learning_signal", "cmp", str(fm.bits), count, classes - 1, what="max over the classes of y"),
        Op("learning_signal", "add", str(d_bits), count, classes, what="d = max(y) - y"),
        Op("learning_signal", "mul", f"{fs.bits}x{d_bits}", count, classes, what="a = log2(e) d"),
        Op("learning_signal", "shift", str(fs.bits + d_bits), count, classes,
           what="t = a >> SH_SM_IDX: integer part n and table index i of d log2(e)"),
        Op("learning_signal", "cmp", str(fs.bits + d_bits), count, classes, what="n = min(n, F + 1)"),
        Op("learning_signal", "lut", str(fs.bits), count, classes, tensor="softmax_lut", what="e = LUT[i]"),
        Op("learning_signal", "shift", str(fs.bits), count, classes, what="e = e >> n"),
        Op("learning_signal", "add", str(sum_bits), count, classes - 1, what="S = sum e"),
        Op("learning_signal", "add", str(sum_bits + 1), count, quotient_bits,
           what="R = floor(2^(2F) / S): restoring division, one subtract per quotient bit"),
        Op("learning_signal", "mul", f"{quotient_bits}x{fs.bits}", count, classes, what="p = round(e R / 2^F)"),
        Op("learning_signal", "add", str(f.error.bits), count, what="err = p - onehot"),
    ]


def learning_signal_ops(layers: list[LayerShape], learning: Learning) -> dict[int, list[Op]]:
    """Per layer: the error (readout) and the learning signal by BP, DFA or sDFA."""
    readout = len(layers) - 1
    out = layers[readout]
    ops: dict[int, list[Op]] = {i: [] for i in range(len(layers))}
    if learning.loss == "ce":
        ops[readout] += softmax_ops(out)
    else:
        ops[readout].append(Op("learning_signal", "add", str(out.fmts.error.bits), "window_samples",
                               what="e = y - onehot"))
    lowest = min(learning.learners)
    if learning.learning_signal == "bp":
        grad_fmt = out.fmts.error
        for i in range(readout - 1, lowest - 1, -1):
            ly, above = layers[i], layers[i + 1]
            ops[i].append(Op("learning_signal", "mac", f"{above.fmts.weight.bits}x{grad_fmt.bits}", "bp_pairs",
                             what="L = W^T g (g of the layer above)"))
            ops[i].append(Op("learning_signal", "read", str(above.fmts.weight.bits), "bp_pairs", tensor="weight"))
            if i == lowest:
                break
            fl = ly.fmts.learning_signal
            ops[i].append(Op("learning_signal", "mul", f"{fl.bits}x{ly.fmts.psi.bits}", "signal_psi",
                             what="g = L psi (for the layer below)"))
            grad_fmt = fl
        return ops
    for i in learning.learners:
        if i == readout:
            continue
        ly = layers[i]
        fl, fb = ly.fmts.learning_signal, ly.fmts.feedback
        if learning.learning_signal == "dfa":
            ops[i].append(Op("learning_signal", "mac", f"{fb.bits}x{out.fmts.error.bits}", "signal", ly.n_out,
                             what="L = B e", source="readout"))
        else:
            ops[i].append(Op("learning_signal", "add", str(fl.bits), "signal", ly.n_out,
                             what="L = B sign(e)", source="readout"))
        ops[i].append(Op("learning_signal", "read", str(fb.bits), "signal", ly.n_out, "feedback", source="readout"))
    return ops


def eligibility_ops(ly: LayerShape, learning: Learning) -> list[Op]:
    """Per-neuron factors, eligibility products and the update accumulation (window steps)."""
    f, c = ly.fmts, ly.const
    fm, fu = f.modulation, f.update
    sig_fmt = f.learning_signal if ly.spiking else f.error
    ops: list[Op] = []
    _const(ops, "eligibility_causal", c.alpha_pre, f.factor, sig_fmt, "window_neurons", "alpha_pre L")
    if ly.spiking:
        ops.append(Op("eligibility_causal", "mul", f"{fm.bits}x{f.psi.bits}", "causal_mod",
                      what="m = (alpha_pre L) psi"))
        if c.alpha_post != 0:
            _const(ops, "eligibility_noncausal", c.alpha_post, f.factor, sig_fmt, "window_neurons", "alpha_post L")
            ops.append(Op("eligibility_noncausal", "mul", f"{fm.bits}x{f.post_trace.bits}", "noncausal_mod",
                          what="n = (alpha_post L) p[t-1]"))

    noncausal = ly.spiking and c.alpha_post != 0  # the readout and alpha_post = 0 have no n_i

    def correlate(prefix: str, binary: bool, pre_tensor: str, acc_tensor: str) -> None:
        ops.append(Op("eligibility_causal", "mac", f"{fm.bits}x{f.pre_trace.bits}", f"{prefix}causal_pairs",
                      what="m_i q_j"))
        ops.append(Op("eligibility_causal", "read", str(f.pre_trace.bits), f"{prefix}causal_pairs",
                      tensor=pre_tensor))
        if noncausal and binary:
            ops.append(Op("eligibility_noncausal", "add", str(fm.bits + f.pre_trace.bits), f"{prefix}noncausal_pairs",
                          what="+ n_i where x_j = 1"))
        elif noncausal:
            ops.append(Op("eligibility_noncausal", "mac", f"{fm.bits}x{f.input.bits}", f"{prefix}noncausal_pairs",
                          what="+ n_i x_j"))
        for kind in ("add", "read", "write"):
            ops.append(Op("accumulate", kind, str(fu.bits), f"{prefix}contrib",
                          tensor="" if kind == "add" else acc_tensor,
                          what="acc_ij += round(m_i q_j + n_i x_j)" if kind == "add" else ""))

    correlate("", f.binary_input, "pre_trace", "update")
    if ly.recurrent:
        correlate("rec_", True, "rec_pre_trace", "rec_update")
    if ly.bias:
        if learning.bias_update == "reference":
            if ly.spiking:
                ops.append(Op("eligibility_causal", "mac", f"{sig_fmt.bits}x{f.psi.bits}", "signal_psi",
                              what="db = L psi"))
            else:
                ops.append(Op("eligibility_causal", "add", str(sig_fmt.bits), "signal", what="db = L"))
        else:
            ops.append(Op("eligibility_causal", "mac", f"{fm.bits}x{f.pre_trace.bits}", "bias_causal",
                          what="m_i q_b"))
            if noncausal:
                ops.append(Op("eligibility_noncausal", "add", str(fm.bits + f.pre_trace.bits), "bias_noncausal",
                              what="+ n_i"))
        for kind in ("add", "read", "write"):
            ops.append(Op("accumulate", kind, str(fu.bits), "window_channels",
                          tensor="" if kind == "add" else "bias_update",
                          what="acc_b += round(db)" if kind == "add" else ""))
    return ops


def network_spec(layers: list[LayerShape], learning: Learning | None) -> dict[int, list[Op]]:
    """Every layer's ops of one step (``learning=None``: inference, the forward only)."""
    spec = {ly.index: forward_ops(ly) for ly in layers}
    if learning is None:
        return spec
    for ly in layers:
        spec[ly.index] += trace_ops(ly)
    for i, ops in learning_signal_ops(layers, learning).items():
        spec[i] += ops
    for i in learning.learners:
        spec[i] += eligibility_ops(layers[i], learning)
    return spec


def weight_write_ops(ly: LayerShape, eta: int, optimizer: Optimizer = Optimizer()) -> list[Op]:
    """W <- round(W - eta acc) (sgd; lion: see :class:`Optimizer`), acc <- 0, for every
    learned parameter: each op runs once per parameter element and write (``count =
    "writes"``, ``per`` = the tensor's size). The eta code decides whether the sgd product
    is a shift or a multiply; lion adds or subtracts eta (no multiply)."""
    f = ly.fmts
    ops: list[Op] = []
    for tensor, fmt, size, acc in parameter_sizes(ly):
        if optimizer.kind == "lion":
            ops += _lion_ops(ly, tensor, fmt, size)
        elif optimizer.kind == "signum":
            ops.append(Op("weight_write", "cmp", str(f.update.bits), "writes", size, what=f"u = sign(acc_{tensor})"))
            ops.append(Op("weight_write", "add", str(fmt.bits), "writes", size, what=f"{tensor} - eta u"))
        else:
            _const(ops, "weight_write", eta, f.learning_rate, f.update, "writes", f"eta acc_{tensor}", size)
            ops.append(Op("weight_write", "add", str(fmt.bits), "writes", size, what=f"{tensor} - eta acc"))
        ops.append(Op("weight_write", "read", str(fmt.bits), "writes", size, tensor))
        ops.append(Op("weight_write", "write", str(fmt.bits), "writes", size, tensor))
        ops.append(Op("weight_write", "read", str(f.update.bits), "writes", size, acc))
        if optimizer.kind == "signum":
            ops.append(Op("weight_write", "shift", str(f.update.bits), "writes", size, what="acc >> momentum_shift"))
            ops.append(Op("weight_write", "add", str(f.update.bits), "writes", size,
                          what="acc = acc - (acc >> momentum_shift)"))
        ops.append(Op("weight_write", "write", str(f.update.bits), "writes", size, acc,
                      what="acc = 0" if optimizer.kind != "signum" else ""))
        if fmt.rounding == "stochastic":
            ops.append(Op("weight_write", "rng", "32", "writes", size, what="xorshift32 lane step"))
    return ops


def _lion_ops(ly: LayerShape, tensor: str, fmt, size: int) -> list[Op]:
    """Lion's write of one parameter tensor, per element (the weight add is in the caller)."""
    f = ly.fmts
    wide = str(f.momentum.bits + 1)
    ops = []
    if f.update.frac != f.momentum.frac:
        ops.append(Op("weight_write", "shift", str(f.update.bits), "writes", size, what=f"g = acc_{tensor} -> momentum"))
    ops += [
        Op("weight_write", "add", wide, "writes", size, what="d = g - m"),
        Op("weight_write", "shift", wide, "writes", size, what="d >> direction_shift"),
        Op("weight_write", "add", wide, "writes", size, what="c = m + (d >> direction_shift)"),
        Op("weight_write", "cmp", wide, "writes", size, what="u = sign(c)"),
        Op("weight_write", "add", str(fmt.bits), "writes", size, what=f"{tensor} - eta u"),
        Op("weight_write", "shift", wide, "writes", size, what="d >> momentum_shift"),
        Op("weight_write", "add", str(f.momentum.bits), "writes", size, what="m = m + (d >> momentum_shift)"),
        Op("weight_write", "read", str(f.momentum.bits), "writes", size, f"momentum_{tensor}"),
        Op("weight_write", "write", str(f.momentum.bits), "writes", size, f"momentum_{tensor}"),
    ]
    return ops


def parameter_sizes(ly: LayerShape) -> list[tuple[str, object, int, str]]:
    """(tensor, format, elements, accumulator tensor) of every learned parameter."""
    f = ly.fmts
    out = [("weight", f.weight, ly.channels * ly.taps, "update")]
    if ly.recurrent:
        out.append(("rec_weight", f.weight, ly.n_out * ly.n_out, "rec_update"))
    if ly.bias:
        out.append(("bias", f.bias, ly.channels, "bias_update"))
    return out


# ------------------------------------------------------------------------- shifts


@dataclass(frozen=True)
class Shift:
    """One alignment of the datapath: ``value`` bits, a left shift for the terms of an
    exact sum ("aligned"), or the rounding right shift into a destination format (a
    negative value is an exact left shift)."""

    name: str  # the RTL parameter name (rtl_export params)
    value: int
    meaning: str


def layer_shifts(ly: LayerShape, above: LayerShape | None = None, readout: LayerShape | None = None,
                 learning_signal: str = "bp") -> dict[str, Shift]:
    """Every shift of one layer's step, derived from its formats (docs/fixedpoint_model.md,
    section 3). ``above`` (BP) and ``readout`` (DFA/sDFA) give the learning signal's source
    formats; without them SH_SIG is omitted."""
    f = ly.fmts
    fw, fb, fx, fc, fm = f.weight.frac, f.bias.frac, f.input.frac, f.current.frac, f.membrane.frac
    fl, fd, fq, fp, fpsi = f.leak.frac, f.decay.frac, f.pre_trace.frac, f.post_trace.frac, f.psi.frac
    fs, ff, fmod, fu, fe = f.psi_slope.frac, f.factor.frac, f.modulation.frac, f.update.frac, f.learning_rate.frac
    fsig = (f.error if not ly.spiking else f.learning_signal).frac
    frac0 = max([fw + fx] + ([fw] if ly.recurrent else []) + ([fb] if ly.bias else []))
    frac1 = max(fl + fm, fc)
    fpq = max(fd + fp, fpsi)
    fqq = max(fd + fq, fx)
    fqb = max(fd + fq, 0)
    frac_e = fmod + max(fq, fx)
    frac_rec = fmod + max(fq, 0)  # recurrent eligibility: the spikes o[t-1] have 0 fraction bits
    fwr = max(fw, fe + fu)
    fbr = max(fb, fe + fu)
    rows = [
        ("SH_W_CUR", frac0 - (fw + fx), "W x aligned to the current sum (left)"),
        ("SH_REC_CUR", frac0 - fw, "W_rec o[t-1] aligned to the current sum (left)"),
        ("SH_B_CUR", frac0 - fb, "bias aligned to the current sum (left)"),
        ("SH_CUR", frac0 - fc, "current sum -> current format"),
        ("SH_BV", frac1 - (fl + fm), "beta v aligned to the membrane sum (left)"),
        ("SH_CM", frac1 - fc, "current aligned to the membrane sum (left)"),
        ("SH_MEM", frac1 - fm, "membrane sum -> membrane format"),
        ("SH_PSI_TRI", fs + fm - fpsi, "triangle: slope * d -> psi format"),
        ("SH_P_DEC", fpq - (fd + fp), "lambda_post p aligned (left)"),
        ("SH_P_IN", fpq - fpsi, "psi aligned to the post-trace sum (left)"),
        ("SH_P", fpq - fp, "post-trace sum -> post_trace format"),
        ("SH_Q_DEC", fqq - (fd + fq), "lambda_pre q aligned (left)"),
        ("SH_Q_IN", fqq - fx, "x aligned to the pre-trace sum (left)"),
        ("SH_Q", fqq - fq, "pre-trace sum -> pre_trace format"),
        ("SH_QB_DEC", fqb - (fd + fq), "lambda_pre q_b (and q_rec) aligned (left)"),
        ("SH_QB_IN", fqb, "the constant input 1 (and o[t-1]) aligned (left)"),
        ("SH_QB", fqb - fq, "bias-trace (and recurrent pre-trace) sum -> pre_trace format"),
        ("SH_ERR", fm - f.error.frac, "readout: y - onehot -> error format"),
        ("SH_SM_IDX", fm + f.softmax.frac - f.softmax_lut.entries.bit_length() + 1,
         "softmax: d log2(e) -> integer part and table index (ce)"),
        ("SH_SM_P", f.softmax.frac, "softmax: e R -> softmax format (ce)"),
        ("SH_SM_ERR", f.softmax.frac - f.error.frac, "softmax: p - onehot -> error format (ce)"),
        ("SH_G", fpsi, "BP: L psi -> learning_signal format (g for the layer below)"),
        ("SH_A", ff + fsig - fmod, "alpha * L -> modulation format"),
        ("SH_M", fpsi if ly.spiking else 0, "a_pre * psi -> modulation format"),
        ("SH_N", fp, "a_post * p[t-1] -> modulation format"),
        ("SH_EC", frac_e - fmod - fq, "m q aligned to the eligibility sum (left)"),
        ("SH_EN", frac_e - fmod - fx, "n x aligned to the eligibility sum (left)"),
        ("SH_U", frac_e - fu, "eligibility -> update format"),
        ("SH_EC_REC", frac_rec - fmod - fq, "m q_rec aligned to the recurrent eligibility sum (left)"),
        ("SH_EN_REC", frac_rec - fmod, "n o[t-1] aligned to the recurrent eligibility sum (left)"),
        ("SH_U_REC", frac_rec - fu, "recurrent eligibility -> update format"),
        ("SH_DB", fsig + (fpsi if ly.spiking else 0) - fu, "reference bias: L psi -> update format"),
        ("SH_DBX", fmod + fq - fu, "exact bias: m q_b + n -> update format"),
        ("SH_DBN", fq, "exact bias: n aligned to m q_b (left)"),
        ("SH_MOM", fu - f.momentum.frac, "lion: acc -> momentum format"),
        ("SH_LW", max(fw, fe) - fw, "lion write: W aligned (left) and the rounding shift back"),
        ("SH_LA", max(fw, fe) - fe, "lion write: eta aligned (left)"),
        ("SH_LBW", max(fb, fe) - fb, "lion bias write: b aligned (left) and the rounding shift back"),
        ("SH_LBA", max(fb, fe) - fe, "lion bias write: eta aligned (left)"),
        ("SH_WW", fwr - fw, "weight write: W aligned (left) and the rounding shift back"),
        ("SH_WA", fwr - fe - fu, "weight write: eta * acc aligned (left)"),
        ("SH_BW", fbr - fb, "bias write: b aligned (left) and the rounding shift back"),
        ("SH_BA", fbr - fe - fu, "bias write: eta * acc_b aligned (left)"),
    ]
    if ly.spiking and learning_signal == "bp" and above is not None:
        grad_frac = (above.fmts.error if not above.spiking else above.fmts.learning_signal).frac
        rows.append(("SH_SIG", above.fmts.weight.frac + grad_frac - fsig, "BP: W^T g -> learning_signal format"))
    elif ly.spiking and learning_signal in ("dfa", "sdfa") and readout is not None:
        error_frac = readout.fmts.error.frac if learning_signal == "dfa" else 0
        rows.append(("SH_SIG", f.feedback.frac + error_frac - fsig,
                     f"{learning_signal.upper()}: B {'e' if learning_signal == 'dfa' else 'sign(e)'} "
                     "-> learning_signal format"))
    return {name: Shift(name, value, meaning) for name, value, meaning in rows}


def network_shifts(layers: list[LayerShape], learning_signal: str = "bp") -> dict[int, dict[str, Shift]]:
    """:func:`layer_shifts` of every layer, each with its learning signal's source."""
    readout = layers[-1]
    return {ly.index: layer_shifts(ly, layers[ly.index + 1] if ly.index + 1 < len(layers) else None, readout,
                                   learning_signal)
            for ly in layers}


# ------------------------------------------------------------------------- widths


def _log2(n: int) -> int:
    return max(0, math.ceil(math.log2(max(n, 1))))


def forward_widths(fmts: LayerFormats, fan_in: int) -> list[tuple[str, str, int]]:
    """(phase, intermediate, bits) of the forward's exact sums: ``fan_in`` synapses (recurrent
    ones included) plus the bias into the current, beta v plus the current into u."""
    f = fmts
    frac0 = max(f.weight.frac + f.input.frac, f.bias.frac, f.weight.frac)
    top = max(ib(f.weight) + ib(f.input), ib(f.bias))
    frac1 = max(f.leak.frac + f.membrane.frac, f.current.frac)
    return [("forward", "synaptic current", top + frac0 + _log2(fan_in + 1)),
            ("forward", "beta*v + current", max(ib(f.leak) + ib(f.membrane), ib(f.current)) + 1 + frac1)]


def datapath_widths(ly: LayerShape, classes: int) -> list[tuple[str, str, int]]:
    """(phase, intermediate, bits) of every exact intermediate of one layer's step: what
    the int64 kernels and the float64 emulation must hold (the weight write is checked
    with the actual eta and accumulator values, in ``int_weight_write``)."""
    f, c = ly.fmts, ly.const
    out = forward_widths(f, ly.taps + (ly.n_out if ly.recurrent else 0))
    for trace, value_ib, value_frac in ((f.pre_trace, ib(f.input), f.input.frac), (f.post_trace, ib(f.psi), f.psi.frac)):
        frac = max(f.decay.frac + trace.frac, value_frac)
        out.append(("traces", "trace update", max(ib(f.decay) + ib(trace), value_ib) + 1 + frac))
    if c.psi_kind == "triangle":  # slope * d with 0 <= d <= w
        out.append(("traces", "triangle Psi", f.psi_slope.bits + int(c.psi_width).bit_length()))
    sig = f.error if not ly.spiking else f.learning_signal
    out.append(("eligibility_causal", "alpha*L", f.factor.bits + sig.bits))
    out.append(("eligibility_noncausal", "modulation*post_trace", f.modulation.bits + max(f.psi.bits, f.post_trace.bits)))
    frac_e = f.modulation.frac + max(f.pre_trace.frac, f.input.frac)
    eligibility = (max(ib(f.modulation) + ib(f.pre_trace), ib(f.modulation) + ib(f.input))
                   + frac_e + 1 + _log2(ly.positions))
    out.append(("accumulate", "eligibility", eligibility))
    # a per-sample sum is aligned to the update format: a left shift when update has more
    # fraction bits than the product (e.g. update s32.63)
    out.append(("accumulate", "eligibility aligned to update", eligibility + max(0, f.update.frac - frac_e)))
    bias_frac = sig.frac + f.psi.frac
    out.append(("accumulate", "bias term aligned to update",
                sig.bits + f.psi.bits + _log2(ly.positions) + max(0, f.update.frac - bias_frac)))
    out.append(("learning_signal", "BP W^T g",
                f.weight.bits + max(f.learning_signal.bits, f.error.bits) + _log2(ly.n_out)))
    out.append(("learning_signal", "DFA B e", f.feedback.bits + f.error.bits + _log2(classes)))
    out.append(("accumulate", "update accumulator", f.update.bits + 1))
    return out


def check_widths(widths: list[tuple[str, str, int]], where: str) -> None:
    """Every intermediate within EXACT_BITS, or one InputError naming it (``where``: the
    quant section and layer)."""
    for _, what, bits in widths:
        check_exact(f"{where} {what}", bits)
