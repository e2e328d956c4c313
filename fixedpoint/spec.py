"""The datapath spec: the operations of one time step of one layer, derived once from
config + quant, read by the integer model's op counters and by ``hwmodel``.

Per layer, :func:`network_spec` lists every operation the integer datapath executes, in
step order, grouped by phase (forward, traces, learning signal, eligibility, accumulate;
the weight write, once per write, by :func:`weight_write_ops`). Each :class:`Op` names

- its ``phase`` and ``kind`` (the taxonomy of :mod:`fixedpoint.counters`), operand
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

from dataclasses import dataclass

from fixedpoint.config import LayerConstants, LayerFormats
from fixedpoint.counters import KINDS, PHASES

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
            ops.append(Op(phase, "shift", z_bits, count, what="index = |u - theta| >> index_shift"))
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


def learning_signal_ops(layers: list[LayerShape], learning: Learning) -> dict[int, list[Op]]:
    """Per layer: the error (readout) and the learning signal by BP, DFA or sDFA."""
    readout = len(layers) - 1
    out = layers[readout]
    ops: dict[int, list[Op]] = {i: [] for i in range(len(layers))}
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

    def correlate(prefix: str, binary: bool, pre_tensor: str, acc_tensor: str) -> None:
        ops.append(Op("eligibility_causal", "mac", f"{fm.bits}x{f.pre_trace.bits}", f"{prefix}causal_pairs",
                      what="m_i q_j"))
        ops.append(Op("eligibility_causal", "read", str(f.pre_trace.bits), f"{prefix}causal_pairs",
                      tensor=pre_tensor))
        if binary:
            ops.append(Op("eligibility_noncausal", "add", str(fm.bits + f.pre_trace.bits), f"{prefix}noncausal_pairs",
                          what="+ n_i where x_j = 1"))
        else:
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


def weight_write_ops(ly: LayerShape, eta: int) -> list[Op]:
    """W <- round(W - eta acc), acc <- 0, for every learned parameter: each op runs once
    per parameter element and write (``count = "writes"``, ``per`` = the tensor's size).
    The eta code decides whether its product is a shift or a multiply."""
    f = ly.fmts
    ops: list[Op] = []
    for tensor, fmt, size, acc in parameter_sizes(ly):
        _const(ops, "weight_write", eta, f.learning_rate, f.update, "writes", f"eta acc_{tensor}", size)
        ops.append(Op("weight_write", "add", str(fmt.bits), "writes", size, what=f"{tensor} - eta acc"))
        ops.append(Op("weight_write", "read", str(fmt.bits), "writes", size, tensor))
        ops.append(Op("weight_write", "write", str(fmt.bits), "writes", size, tensor))
        ops.append(Op("weight_write", "read", str(f.update.bits), "writes", size, acc))
        ops.append(Op("weight_write", "write", str(f.update.bits), "writes", size, acc, what="acc = 0"))
        if fmt.rounding == "stochastic":
            ops.append(Op("weight_write", "rng", "32", "writes", size, what="xorshift32 lane step"))
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
