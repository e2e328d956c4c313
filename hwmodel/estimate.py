"""The analytic cost model: operations, memory, traffic, energy and latency per layer.

Three modes, all costed for one batch of B samples over T steps (the unit the integer
model counts in) and reported per sample (/ B) and per step (/ B T):

* ``inference``  the forward pass of the integer model (``IntNetwork.infer``);
* ``stllr``      the integer model's training run: forward, traces every step, and in the
                 last k steps the learning signal, eligibility and accumulation, then the
                 weight write (once per batch, or every window step when ``update: online``);
* ``bptt``       backpropagation through time with a detached reset, costed with the same
                 formats and the same event-driven conventions (see :func:`bptt_counts`).

Operations use exactly the taxonomy of :mod:`fixedpoint.counters`: ``OpKey(layer, phase,
kind, width, tensor)``. Every count is a structural factor (fan-out, sizes, steps, a
constant's cost class) times an *activity* quantity (how many operands were non-zero):
measured per step by the integer model (:mod:`hwmodel.activity`), or expected from rates.
With measured activity the S-TLLR and inference counts equal the integer model's
``OpCounter`` exactly, key by key (tests/test_hwmodel.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from fixedpoint.config import LayerConstants, LayerFormats, SPIKES, eta_code, layer_constants, layer_formats
from fixedpoint.counters import KINDS, PHASES, OpKey
from hwmodel.config import HardwareConfig, ModelInputs, window_of
from hwmodel.energy import linear_energy, parse_width, product_energy, sram_pj_per_bit
from stllr.errors import InputError

MODES = ("inference", "stllr", "bptt")
COMPUTE_KINDS = tuple(k for k in KINDS if k not in ("read", "write"))
MAC_KINDS = ("mac", "mul", "syn_add")  # every multiply or synaptic accumulate
PARAM_TENSORS = ("weight", "rec_weight", "bias", "feedback", "psi_lut")
GRADIENT_TENSORS = ("update", "rec_update", "bias_update")


# ------------------------------------------------------------------------- structure


@dataclass(frozen=True)
class LayerInfo:
    """Sizes, formats and constants of one layer; conv geometry in closed form."""

    index: int
    kind: str  # linear | recurrent | conv2d | readout
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    n_in: int  # flat input elements per sample
    channels: int  # output channels (outputs of a dense layer)
    positions: int  # output positions (1 for a dense layer)
    taps: int  # weights per output channel (C_in K K, or n_in)
    pairs: int  # valid (tap, position) pairs: sum over positions of taps not in padding
    tap_groups: tuple[tuple[int, int], ...]  # (number of taps, valid positions of each)
    bias: bool
    reset: str
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

    @property
    def weight_size(self) -> int:
        return self.channels * self.taps

    @property
    def rec_size(self) -> int:
        return self.n_out * self.n_out if self.recurrent else 0


def _valid_offsets(size: int, out: int, kernel: int, stride: int, padding: int) -> list[int]:
    """For each kernel offset, the output rows whose input row is inside the image."""
    return [sum(1 for o in range(out) if 0 <= o * stride + k - padding < size) for k in range(kernel)]


def build_layers(config, quant) -> list[LayerInfo]:
    """LayerInfo per layer; constants quantized as the integer model does (InputError names the field)."""
    from stllr.config import layer_shapes

    network, learning = config.network, config.learning
    layers = []
    for index, (cfg, (in_shape, out_shape)) in enumerate(zip(network.layers, layer_shapes(network))):
        fmts = layer_formats(quant, index)
        const = layer_constants(network, learning, quant, index, fmts)
        n_in = math.prod(in_shape)
        if cfg.kind == "conv2d":
            c_in, height, width = in_shape
            _, h_out, w_out = out_shape
            vy = _valid_offsets(height, h_out, cfg.kernel, cfg.stride, cfg.padding)
            vx = _valid_offsets(width, w_out, cfg.kernel, cfg.stride, cfg.padding)
            groups: dict[int, int] = defaultdict(int)
            for a in vy:
                for b in vx:
                    groups[a * b] += c_in
            tap_groups = tuple(sorted((count, valid) for valid, count in groups.items()))
            channels, positions, taps = cfg.channels, h_out * w_out, c_in * cfg.kernel * cfg.kernel
        else:
            channels, positions, taps = math.prod(out_shape), 1, n_in
            tap_groups = ((n_in, 1),)
        pairs = sum(count * valid for count, valid in tap_groups)
        reset = "none" if cfg.kind == "readout" else (cfg.reset or network.neuron.reset)
        layers.append(LayerInfo(index, cfg.kind, tuple(in_shape), tuple(out_shape), n_in, channels, positions,
                                taps, pairs, tap_groups, cfg.bias, reset, fmts, const))
    return layers


@dataclass(frozen=True)
class Setup:
    """The run being costed: batch, steps, window and the learning options."""

    batch: int
    steps: int
    window: int
    learning_signal: str  # bp | dfa | sdfa
    update: str  # batch | online
    bias_update: str  # reference | exact
    learners: tuple[int, ...]
    etas: dict[int, int]  # eta code per learning layer (learning_rate format)

    @property
    def start(self) -> int:
        return self.steps - self.window


def eta_codes(layers: list[LayerInfo], config, batch: int, window: int, learners) -> dict[int, int]:
    """eta code per learning layer: lr / (B k) (lr for sDFA hidden layers), nearest_even into
    quant.learning_rate -- the value the integer model's weight write multiplies by."""
    readout = len(layers) - 1
    out = {}
    for i in learners:
        unscaled = config.learning.learning_signal == "sdfa" and i != readout
        out[i] = eta_code(layers[i].fmts.learning_rate, config.train.lr, batch, window, unscaled)
    return out


def make_setup(layers: list[LayerInfo], config, steps: int, batch: int | None = None,
               learning_modes: bool = True) -> Setup:
    """The run to cost; eta codes only when a learning mode is costed (they can be invalid)."""
    learning = config.learning
    batch = batch or config.train.batch_size
    window = window_of(config, steps)
    learners = (len(layers) - 1,) if learning.rule == "readout_only" else tuple(range(len(layers)))
    etas = eta_codes(layers, config, batch, window, learners) if learning_modes else {}
    return Setup(batch, steps, window, learning.learning_signal, learning.update, learning.bias_update, learners,
                 etas)


# -------------------------------------------------------------------------- activity


#: Activity quantities, per layer, summed over the batch (and over steps for totals).
FORWARD_QUANTITIES = ("events", "rec_events", "spikes")
TRACE_QUANTITIES = ("inputs", "psi_support", "psi")
LEARN_QUANTITIES = ("signal", "signal_psi", "bp_pairs", "causal_mod", "noncausal_mod", "causal_pairs",
                    "noncausal_pairs", "contrib", "rec_causal_pairs", "rec_noncausal_pairs", "rec_contrib",
                    "bias_causal", "bias_noncausal")
QUANTITIES = FORWARD_QUANTITIES + TRACE_QUANTITIES + LEARN_QUANTITIES
QUANTITY_HELP = {
    "events": "valid non-zero input operands of the synapse loop, (sample, tap, position)",
    "rec_events": "non-zero o[t-1] (recurrent synapses)",
    "spikes": "output spikes o[t]",
    "inputs": "non-zero inputs x[t] (pre-trace adds)",
    "psi_support": "neurons with |u - theta| < width (triangle Psi multiplies)",
    "psi": "non-zero Psi (post-trace adds)",
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
}


@dataclass
class Activity:
    """Totals of the activity quantities per layer for one batch (B samples, T steps).

    ``measured``: exact counts from the integer model (ints); otherwise expected values.
    ``delta``: density of non-zero BPTT deltas per layer (not measurable on the S-TLLR model).
    ``per_step``: optional per-step series (measured files), quantity -> list of T values.
    """

    batch: int
    steps: int
    window: int
    train: bool
    measured: bool
    totals: list[dict[str, float]]
    delta: list[float]
    input_rates: list[float]  # mean non-zero fraction of each layer's input (BPTT, sweeps)
    output_rates: list[float]
    per_step: list[dict[str, list[int]]] | None = None
    source: str = "rates"
    overflow_events: int | None = None  # saturate/wrap events of the measured run (None: not recorded)

    def get(self, index: int, name: str) -> float:
        return self.totals[index].get(name, 0)


def expected_activity(layers: list[LayerInfo], rates, setup: Setup, train: bool = True) -> Activity:
    """Expected totals from rates (independent, uniformly spread non-zeros)."""
    from hwmodel.config import ActivityRates

    rates = rates or ActivityRates()
    B, T, k, start = setup.batch, setup.steps, setup.window, setup.start
    k_prev = k - (1 if start == 0 else 0)  # window steps with a previous step (p[t-1], o[t-1] exist)
    per_layer = [rates.layer(i) for i in range(len(layers))]
    readout = len(layers) - 1
    out_rate = [per_layer[i]["output"] if layers[i].spiking else 0.0 for i in range(len(layers))]
    in_rate = [rates.input] + out_rate[:-1]
    totals = []
    for i, ly in enumerate(layers):
        a, r_in, r_out = per_layer[i], in_rate[i], out_rate[i]
        psi = a["psi"] if ly.spiking else 0.0
        sig, q_dens, p_dens = a["signal"], a["pre_trace"], a["post_trace"]
        t = {"events": B * r_in * ly.pairs * T, "spikes": B * r_out * ly.n_out * T}
        if ly.recurrent:
            t["rec_events"] = B * r_out * ly.n_out * (T - 1)
        if train:
            t["inputs"] = B * r_in * ly.n_in * T
            t["psi"] = B * psi * ly.n_out * T
            if ly.const.psi_kind == "triangle":
                t["psi_support"] = t["psi"]
            c = sig * psi if ly.spiking else sig  # causal factor non-zero
            n = sig * p_dens if ly.spiking and ly.const.alpha_post != 0 else 0.0  # non-causal factor non-zero
            t["signal"] = B * sig * ly.n_out * k
            t["signal_psi"] = B * sig * psi * ly.n_out * k
            if i < readout and setup.learning_signal == "bp":
                above = layers[i + 1]
                g = per_layer[readout]["signal"] if i + 1 == readout else \
                    per_layer[i + 1]["signal"] * per_layer[i + 1]["psi"]
                t["bp_pairs"] = B * g * above.channels * above.pairs * k
            t["causal_mod"] = B * c * ly.n_out * k if ly.spiking else 0.0
            t["noncausal_mod"] = B * n * ly.n_out * k_prev
            t["causal_pairs"] = B * c * q_dens * ly.channels * ly.pairs * k
            t["noncausal_pairs"] = B * n * r_in * ly.channels * ly.pairs * k_prev
            pair = 1 - (1 - c * q_dens) * (1 - n * r_in)
            t["contrib"] = B * k * ly.channels * sum(cnt * (1 - (1 - pair) ** valid) for cnt, valid in ly.tap_groups)
            if ly.recurrent:
                t["rec_causal_pairs"] = B * c * q_dens * ly.n_out * ly.n_out * k
                t["rec_noncausal_pairs"] = B * n * r_out * ly.n_out * ly.n_out * k_prev
                rec_pair = 1 - (1 - c * q_dens) * (1 - n * r_out)
                t["rec_contrib"] = B * k * ly.n_out * ly.n_out * rec_pair
            t["bias_causal"] = B * c * ly.n_out * k
            t["bias_noncausal"] = B * n * ly.n_out * k_prev
        totals.append(t)
    return Activity(B, T, k, train, False, totals, [per_layer[i]["signal"] for i in range(len(layers))],
                    in_rate, out_rate, source="rates")


# ---------------------------------------------------------------------------- counts


class Tally:
    """Operation counts keyed by OpKey (floats for expected values, ints when measured)."""

    def __init__(self) -> None:
        self.counts: dict[OpKey, float] = defaultdict(int)

    def add(self, layer: str, phase: str, kind: str, width, n, tensor: str = "") -> None:
        if phase not in PHASES or kind not in KINDS:
            raise ValueError(f"unknown phase/kind {phase!r}/{kind!r}")
        if n:
            self.counts[OpKey(layer, phase, kind, str(width), tensor)] += n

    def const(self, layer: str, phase: str, code: int, const_fmt, other_fmt, n) -> None:
        """A multiply by a constant code: nothing (0), a shift (power of two) or a mul."""
        if code == 0:
            return
        a = abs(int(code))
        if a & (a - 1) == 0:
            self.add(layer, phase, "shift", other_fmt.bits, n)
        else:
            self.add(layer, phase, "mul", f"{const_fmt.bits}x{other_fmt.bits}", n)

    def get(self, layer=None, phase=None, kind=None, width=None, tensor=None) -> float:
        want = {"layer": layer, "phase": phase, "kind": kind, "width": width, "tensor": tensor}
        return sum(n for key, n in self.counts.items()
                   if all(v is None or getattr(key, f) == v for f, v in want.items()))


def _forward(tally: Tally, ly: LayerInfo, act: Activity, T: int, B: int) -> None:
    """int_layer_step up to the spike and reset (inference and training alike)."""
    f, c, name, i = ly.fmts, ly.const, ly.name, ly.index
    events = act.get(i, "events")
    if f.binary_input:
        tally.add(name, "forward", "syn_add", f.current.bits, events * ly.channels)
    else:
        tally.add(name, "forward", "mac", f"{f.weight.bits}x{f.input.bits}", events * ly.channels)
    tally.add(name, "forward", "read", f.weight.bits, events * ly.channels, "weight")
    if ly.recurrent:
        rec = act.get(i, "rec_events")
        tally.add(name, "forward", "syn_add", f.current.bits, rec * ly.n_out)
        tally.add(name, "forward", "read", f.weight.bits, rec * ly.n_out, "rec_weight")
    n = B * ly.n_out * T
    if ly.bias:
        tally.add(name, "forward", "add", f.current.bits, n)
        tally.add(name, "forward", "read", f.bias.bits, n, "bias")
    if f.leak_mode == "shift":
        tally.add(name, "forward", "shift", f.membrane.bits, n)
        tally.add(name, "forward", "add", f.membrane.bits, n)
    else:
        tally.const(name, "forward", c.beta, f.leak, f.membrane, n)
    tally.add(name, "forward", "add", f.membrane.bits, n)
    tally.add(name, "forward", "read", f.membrane.bits, n, "membrane")
    tally.add(name, "forward", "write", f.membrane.bits, n, "membrane")
    if ly.spiking:
        tally.add(name, "forward", "cmp", f.membrane.bits, n)
        if ly.reset == "soft":
            tally.add(name, "forward", "add", f.membrane.bits, act.get(i, "spikes"))


def _trace(tally: Tally, ly: LayerInfo, decay: int, fmt, size, nonzero, tensor: str) -> None:
    tally.const(ly.name, "traces", decay, ly.fmts.decay, fmt, size)
    tally.add(ly.name, "traces", "add", fmt.bits, nonzero)
    tally.add(ly.name, "traces", "read", fmt.bits, size, tensor)
    tally.add(ly.name, "traces", "write", fmt.bits, size, tensor)


def _psi_ops(tally: Tally, ly: LayerInfo, phase: str, n, support) -> None:
    """Psi(u - theta) for n neurons: triangle (add, cmp, slope) or rational (shift, cmp, LUT)."""
    f, c, name = ly.fmts, ly.const, ly.name
    if c.psi_kind == "triangle":
        tally.add(name, phase, "add", f.membrane.bits + 1, n)
        tally.add(name, phase, "cmp", f.membrane.bits + 1, n)
        tally.const(name, phase, c.psi_slope, f.psi_slope, f.membrane, support)
    else:
        if f.psi_lut.index_shift:
            tally.add(name, phase, "shift", f.membrane.bits + 1, n)
        tally.add(name, phase, "cmp", f.membrane.bits + 1, n)
        tally.add(name, phase, "lut", f.psi.bits, n, "psi_lut")


def _traces(tally: Tally, ly: LayerInfo, act: Activity, T: int, B: int) -> None:
    f, c, i = ly.fmts, ly.const, ly.index
    n = B * ly.n_out * T
    if ly.spiking:
        _psi_ops(tally, ly, "traces", n, act.get(i, "psi_support"))
        _trace(tally, ly, c.lambda_post, f.post_trace, n, act.get(i, "psi"), "post_trace")
    _trace(tally, ly, c.lambda_pre, f.pre_trace, B * ly.n_in * T, act.get(i, "inputs"), "pre_trace")
    if ly.bias:  # q_b: one scalar trace of the constant input 1, shared by the batch
        _trace(tally, ly, c.lambda_pre, f.pre_trace, T, T, "bias_trace")
    if ly.recurrent:
        _trace(tally, ly, c.lambda_pre, f.pre_trace, B * ly.n_out * T, act.get(i, "rec_events"), "rec_pre_trace")


def _learning_signals(tally: Tally, layers: list[LayerInfo], act: Activity, setup: Setup) -> None:
    readout = len(layers) - 1
    out = layers[readout]
    B, k = setup.batch, setup.window
    tally.add(out.name, "learning_signal", "add", out.fmts.error.bits, B * k)  # y - onehot
    lowest = min(setup.learners)
    if setup.learning_signal == "bp":
        grad_fmt = out.fmts.error
        for i in range(readout - 1, lowest - 1, -1):
            ly, above = layers[i], layers[i + 1]
            pairs = act.get(i, "bp_pairs")
            tally.add(ly.name, "learning_signal", "mac", f"{above.fmts.weight.bits}x{grad_fmt.bits}", pairs)
            tally.add(ly.name, "learning_signal", "read", above.fmts.weight.bits, pairs, "weight")
            if i == lowest:
                break
            fl = ly.fmts.learning_signal
            tally.add(ly.name, "learning_signal", "mul", f"{fl.bits}x{ly.fmts.psi.bits}", act.get(i, "signal_psi"))
            grad_fmt = fl
        return
    active = act.get(readout, "signal")  # non-zero error entries (sign(error) has the same)
    for i in setup.learners:
        if i == readout:
            continue
        ly = layers[i]
        fl, fb = ly.fmts.learning_signal, ly.fmts.feedback
        if setup.learning_signal == "dfa":
            tally.add(ly.name, "learning_signal", "mac", f"{fb.bits}x{out.fmts.error.bits}", active * ly.n_out)
        else:
            tally.add(ly.name, "learning_signal", "add", fl.bits, active * ly.n_out)
        tally.add(ly.name, "learning_signal", "read", fb.bits, active * ly.n_out, "feedback")


def _accumulate(tally: Tally, ly: LayerInfo, act: Activity, setup: Setup) -> None:
    f, c, name, i = ly.fmts, ly.const, ly.name, ly.index
    fm, fu = f.modulation, f.update
    sig_fmt = f.learning_signal if ly.spiking else f.error
    size = setup.batch * ly.n_out * setup.window
    tally.const(name, "eligibility_causal", c.alpha_pre, f.factor, sig_fmt, size)
    if ly.spiking:
        tally.add(name, "eligibility_causal", "mul", f"{fm.bits}x{f.psi.bits}", act.get(i, "causal_mod"))
        if c.alpha_post != 0:
            tally.const(name, "eligibility_noncausal", c.alpha_post, f.factor, sig_fmt, size)
            tally.add(name, "eligibility_noncausal", "mul", f"{fm.bits}x{f.post_trace.bits}",
                      act.get(i, "noncausal_mod"))

    def correlate(prefix: str, binary: bool, pre_tensor: str, acc_tensor: str) -> None:
        n_c = act.get(i, f"{prefix}causal_pairs")
        tally.add(name, "eligibility_causal", "mac", f"{fm.bits}x{f.pre_trace.bits}", n_c)
        tally.add(name, "eligibility_causal", "read", f.pre_trace.bits, n_c, pre_tensor)
        n_nc = act.get(i, f"{prefix}noncausal_pairs")
        if binary:
            tally.add(name, "eligibility_noncausal", "add", fm.bits + f.pre_trace.bits, n_nc)
        else:
            tally.add(name, "eligibility_noncausal", "mac", f"{fm.bits}x{f.input.bits}", n_nc)
        contrib = act.get(i, f"{prefix}contrib")
        tally.add(name, "accumulate", "add", fu.bits, contrib)
        tally.add(name, "accumulate", "read", fu.bits, contrib, acc_tensor)
        tally.add(name, "accumulate", "write", fu.bits, contrib, acc_tensor)

    correlate("", f.binary_input, "pre_trace", "update")
    if ly.recurrent:
        correlate("rec_", True, "rec_pre_trace", "rec_update")
    if ly.bias:
        if setup.bias_update == "reference":
            if ly.spiking:  # db = L psi
                tally.add(name, "eligibility_causal", "mac", f"{sig_fmt.bits}x{f.psi.bits}", act.get(i, "signal_psi"))
            else:  # db = L
                tally.add(name, "eligibility_causal", "add", sig_fmt.bits, act.get(i, "signal"))
        else:  # b as a weight on the constant input 1, pre-trace q_b
            tally.add(name, "eligibility_causal", "mac", f"{fm.bits}x{f.pre_trace.bits}", act.get(i, "bias_causal"))
            tally.add(name, "eligibility_noncausal", "add", fm.bits + f.pre_trace.bits, act.get(i, "bias_noncausal"))
        n = setup.batch * ly.channels * setup.window
        tally.add(name, "accumulate", "add", fu.bits, n)
        tally.add(name, "accumulate", "read", fu.bits, n, "bias_update")
        tally.add(name, "accumulate", "write", fu.bits, n, "bias_update")


def _weight_write(tally: Tally, ly: LayerInfo, eta: int, writes: int) -> None:
    """W <- round(W - eta acc), acc <- 0, for every stored parameter of the layer."""
    f, name = ly.fmts, ly.name
    tensors = [("weight", f.weight, ly.weight_size, "update")]
    if ly.recurrent:
        tensors.append(("rec_weight", f.weight, ly.rec_size, "rec_update"))
    if ly.bias:
        tensors.append(("bias", f.bias, ly.channels, "bias_update"))
    for tensor, fmt, size, upd in tensors:
        n = size * writes
        tally.const(name, "weight_write", eta, f.learning_rate, f.update, n)
        tally.add(name, "weight_write", "add", fmt.bits, n)
        tally.add(name, "weight_write", "read", fmt.bits, n, tensor)
        tally.add(name, "weight_write", "write", fmt.bits, n, tensor)
        tally.add(name, "weight_write", "read", f.update.bits, n, upd)
        tally.add(name, "weight_write", "write", f.update.bits, n, upd)
        if fmt.rounding == "stochastic":
            tally.add(name, "weight_write", "rng", 32, n)


def inference_counts(layers: list[LayerInfo], act: Activity, setup: Setup) -> Tally:
    tally = Tally()
    for ly in layers:
        _forward(tally, ly, act, setup.steps, setup.batch)
    return tally


def stllr_counts(layers: list[LayerInfo], act: Activity, setup: Setup, weight_write: bool = True) -> Tally:
    """What IntNetwork.run(train=True) executes (with the weight write when ``weight_write``)."""
    if not act.train:
        raise InputError("activity: measured without training (run.mode inference); S-TLLR needs a training "
                         "run's activity (or use --modes inference)")
    tally = inference_counts(layers, act, setup)
    for ly in layers:
        _traces(tally, ly, act, setup.steps, setup.batch)
    _learning_signals(tally, layers, act, setup)
    for i in setup.learners:
        _accumulate(tally, layers[i], act, setup)
    if weight_write:
        writes = setup.window if setup.update == "online" else 1
        for i in setup.learners:
            _weight_write(tally, layers[i], setup.etas[i], writes)
    return tally


def bptt_counts(layers: list[LayerInfo], act: Activity, setup: Setup) -> Tally:
    """BPTT with a detached reset, in the same formats and the same event-driven convention.

    Forward (T steps): the inference forward, plus storing, per step, the layer input
    (``bptt_input``, input format), the membrane u (``bptt_membrane``) and the spikes
    (``bptt_spikes``, 1 bit) of every layer on the backward path (lowest learner up).
    Backward (all T steps, t = T..1: the loss of the last k steps reaches every earlier
    step through the leak), phase ``learning_signal``:
      readout   dy[t] = e[t] + beta dy[t+1]          (e: one subtract per window step)
      hidden    do[t] = W^{l+1 T} du^{l+1}[t] (+ W_rec^T du[t+1])   transposed-weight MACs
                psi[t] = Psi(u[t] - theta) from the stored u       surrogate (as S-TLLR's)
                du[t] = psi[t] do[t] + beta du[t+1]                temporal backward
      (``bptt_grad``: the du[t+1] register per neuron, read and written every step).
    Weight gradient (phase ``accumulate``, all T steps): dW += du[t] x[t]^T as one MAC per
    non-zero input operand and output (the forward's events x outputs), one accumulator
    add per synapse touched in the step; db += du[t]. Then the weight write (once per batch).
    The deltas' density is ``activity`` ``signal`` (default 1: dense).
    Memory accesses follow the integer model's convention: the operand that differs per
    synapse is read once per operation (weights in W^T g as in BP; the stored input per
    weight-gradient MAC, as S-TLLR reads the pre-trace per causal MAC); per-neuron factors
    (du, Psi) sit in registers.
    """
    B, T, k = setup.batch, setup.steps, setup.window
    tally = inference_counts(layers, act, setup)
    readout = len(layers) - 1
    lowest = min(setup.learners)
    path = [ly for ly in layers if ly.index >= lowest]
    for ly in path:
        f, name = ly.fmts, ly.name
        tally.add(name, "forward", "write", f.input.bits, B * ly.n_in * T, "bptt_input")
        tally.add(name, "forward", "write", f.membrane.bits, B * ly.n_out * T, "bptt_membrane")
        if ly.spiking:
            tally.add(name, "forward", "write", SPIKES.bits, B * ly.n_out * T, "bptt_spikes")
    out = layers[readout]
    fe = out.fmts.error
    n = B * out.n_out * T
    tally.add(out.name, "learning_signal", "add", fe.bits, B * k)  # y - onehot in the window
    tally.const(out.name, "learning_signal", out.const.beta, out.fmts.leak, fe, n)
    tally.add(out.name, "learning_signal", "add", fe.bits, n)
    tally.add(out.name, "learning_signal", "read", fe.bits, n, "bptt_grad")
    tally.add(out.name, "learning_signal", "write", fe.bits, n, "bptt_grad")
    for ly in reversed(path[:-1]):
        above, f, name, i = layers[ly.index + 1], ly.fmts, ly.name, ly.index
        fl = f.learning_signal
        g_fmt = fe if above.index == readout else above.fmts.learning_signal
        density = act.delta[above.index]
        macs = B * T * density * above.channels * above.pairs
        tally.add(name, "learning_signal", "mac", f"{above.fmts.weight.bits}x{g_fmt.bits}", macs)
        tally.add(name, "learning_signal", "read", above.fmts.weight.bits, macs, "weight")
        n = B * ly.n_out * T
        if ly.recurrent:
            rec = B * (T - 1) * act.delta[i] * ly.n_out * ly.n_out
            tally.add(name, "learning_signal", "mac", f"{f.weight.bits}x{fl.bits}", rec)
            tally.add(name, "learning_signal", "read", f.weight.bits, rec, "rec_weight")
        tally.add(name, "learning_signal", "read", f.membrane.bits, n, "bptt_membrane")
        _psi_ops(tally, ly, "learning_signal", n, n)
        tally.add(name, "learning_signal", "mul", f"{fl.bits}x{f.psi.bits}", n * act.delta[i])
        tally.const(name, "learning_signal", ly.const.beta, f.leak, fl, n)
        tally.add(name, "learning_signal", "add", fl.bits, n)
        tally.add(name, "learning_signal", "read", fl.bits, n, "bptt_grad")
        tally.add(name, "learning_signal", "write", fl.bits, n, "bptt_grad")
    for i in setup.learners:
        ly = layers[i]
        f, name, fu = ly.fmts, ly.name, ly.fmts.update
        g_fmt = fe if i == readout else f.learning_signal
        d = act.delta[i]
        macs = act.get(i, "events") * ly.channels * d
        tally.add(name, "accumulate", "mac", f"{g_fmt.bits}x{f.input.bits}", macs)
        tally.add(name, "accumulate", "read", f.input.bits, macs, "bptt_input")
        r = act.input_rates[i]
        touched = B * T * ly.channels * sum(cnt * (1 - (1 - r * d) ** valid) for cnt, valid in ly.tap_groups)
        tally.add(name, "accumulate", "add", fu.bits, touched)
        tally.add(name, "accumulate", "read", fu.bits, touched, "update")
        tally.add(name, "accumulate", "write", fu.bits, touched, "update")
        if ly.recurrent:
            rec = act.get(i, "rec_events") * ly.n_out * d
            tally.add(name, "accumulate", "mac", f"{g_fmt.bits}x{SPIKES.bits}", rec)
            tally.add(name, "accumulate", "read", SPIKES.bits, rec, "bptt_spikes")
            tally.add(name, "accumulate", "add", fu.bits, rec)
            tally.add(name, "accumulate", "read", fu.bits, rec, "rec_update")
            tally.add(name, "accumulate", "write", fu.bits, rec, "rec_update")
        if ly.bias:
            tally.add(name, "accumulate", "add", fu.bits, B * ly.n_out * T * d)
            tally.add(name, "accumulate", "read", fu.bits, B * ly.channels * T, "bias_update")
            tally.add(name, "accumulate", "write", fu.bits, B * ly.channels * T, "bias_update")
    for i in setup.learners:
        _weight_write(tally, layers[i], setup.etas[i], 1)
    return tally


# ---------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class TensorMemory:
    layer: str
    tensor: str
    elements: int  # stored elements (for the samples in flight; x T for BPTT activations)
    bits_per_element: int
    per_step: bool  # BPTT activations: one copy per time step
    memory: str = ""

    @property
    def bits(self) -> int:
        return self.elements * self.bits_per_element

    @property
    def category(self) -> str:
        """parameters (weights, feedback, tables), gradients (update accumulators), or
        state (membranes, spikes, traces, BPTT activations and deltas: what grows with T)."""
        if self.tensor in PARAM_TENSORS:
            return "parameters"
        return "gradients" if self.tensor in GRADIENT_TENSORS else "state"

    @property
    def state(self) -> bool:
        return self.category == "state"


def memory_tensors(layers: list[LayerInfo], setup: Setup, mode: str, samples: int = 1) -> list[TensorMemory]:
    """Every array the mode keeps for ``samples`` samples in flight, with its format bits.

    Matches the integer model's arrays (IntLayerParams and IntLayerState; S-TLLR: with
    ``samples = B`` they are the arrays of IntNetwork.run(train=True)); BPTT adds its
    per-step activations, which grow with T.
    """
    S, T = samples, setup.steps
    readout = len(layers) - 1
    lowest = min(setup.learners)
    out = []
    for ly in layers:
        f, name = ly.fmts, ly.name

        def put(tensor, elements, bits, per_step=False):
            out.append(TensorMemory(name, tensor, int(elements), int(bits), per_step))

        put("weight", ly.weight_size, f.weight.bits)
        if ly.recurrent:
            put("rec_weight", ly.rec_size, f.weight.bits)
        if ly.bias:
            put("bias", ly.channels, f.bias.bits)
        put("membrane", S * ly.n_out, f.membrane.bits)
        if ly.recurrent:
            put("prev_spikes", S * ly.n_out, SPIKES.bits)
        learner = ly.index in setup.learners
        if mode == "stllr":
            if ly.spiking and setup.learning_signal in ("dfa", "sdfa"):
                put("feedback", ly.n_out * layers[readout].n_out, f.feedback.bits)
            if ly.spiking and ly.const.psi_kind == "rational":
                put("psi_lut", f.psi_lut.entries, f.psi.bits)
            put("pre_trace", S * ly.n_in, f.pre_trace.bits)
            if ly.spiking:
                put("post_trace", S * ly.n_out, f.post_trace.bits)
            if ly.bias:
                put("bias_trace", 1, f.pre_trace.bits)
            if ly.recurrent:
                put("rec_pre_trace", S * ly.n_out, f.pre_trace.bits)
        if mode == "bptt" and ly.index >= lowest:
            if ly.spiking and ly.const.psi_kind == "rational":
                put("psi_lut", f.psi_lut.entries, f.psi.bits)
            put("bptt_input", T * S * ly.n_in, f.input.bits, True)
            put("bptt_membrane", T * S * ly.n_out, f.membrane.bits, True)
            if ly.spiking:
                put("bptt_spikes", T * S * ly.n_out, SPIKES.bits, True)
            grad_bits = f.error.bits if ly.index == readout else f.learning_signal.bits
            put("bptt_grad", S * ly.n_out, grad_bits)
        if mode in ("stllr", "bptt") and learner:
            put("update", ly.weight_size, f.update.bits)
            if ly.recurrent:
                put("rec_update", ly.rec_size, f.update.bits)
            if ly.bias:
                put("bias_update", ly.channels, f.update.bits)
    return out


# ---------------------------------------------------------------------------- energy


class EnergyModel:
    """pJ per compute operation (hardware.energy) and per bit accessed in each memory."""

    def __init__(self, hw: HardwareConfig, source: str = "") -> None:
        self.hw = hw
        self.where = f"{source}: " if source else ""  # the file the hardware section came from
        self._cache: dict[tuple[str, str], float] = {}

    def op(self, kind: str, width: str) -> float:
        key = (kind, width)
        if key not in self._cache:
            self._cache[key] = self._op(kind, width)
        return self._cache[key]

    def _entry(self, kind: str, width: str):
        entry = self.hw.energy.ops.get(kind)
        if entry is None:
            raise InputError(f"{self.where}hardware.energy.ops.{kind}: missing energy entry "
                             f"(needed for a {kind} at width {width})")
        return entry

    def _op(self, kind: str, width: str) -> float:
        entry = self._entry(kind, width)
        if width in entry.table:
            return entry.table[width]
        w = parse_width(width)
        if entry.rule == "fixed":
            return entry.pj
        if entry.rule == "linear":
            return linear_energy(entry.anchors, w)
        if entry.rule == "product":
            return product_energy(entry.anchors, w)
        a, b = (w[0], w[0]) if len(w) == 1 else w  # mac = mul(a x b) + add(a + b bits)
        return self.op("mul", f"{a}x{b}") + self.op("add", str(a + b))

    def pj_per_bit(self, memory: str, size_bits: float) -> float:
        m = self.hw.memories[memory]
        if m.kind == "dram":
            return self.hw.dram_pj_per_bit
        if m.kind == "registers":
            return self.hw.register_pj_per_bit
        size = m.size_kb * 8192 if m.size_kb is not None else size_bits
        return sram_pj_per_bit(size, dict(self.hw.sram.anchors_kb), self.hw.sram.anchor_bits)


@dataclass
class Bank:
    name: str
    kind: str
    contents_bits: int
    size_bits: float | None  # declared size (None: sized to contents)
    pj_per_bit: float
    accessed_bits: float = 0.0  # per batch

    @property
    def fits(self) -> bool:
        return self.size_bits is None or self.contents_bits <= self.size_bits


@dataclass
class ModeResult:
    """One mode's costs for one batch (B samples, T steps); per-sample views divide by B."""

    mode: str
    setup: Setup
    counts: dict[OpKey, float]
    memory: list[TensorMemory]
    banks: dict[str, Bank]
    compute_pj: dict[OpKey, float]  # compute keys only
    memory_pj: dict[OpKey, float]  # read/write keys only
    cycles: float  # per batch
    compute_cycles: float
    bank_cycles: dict[str, float]
    clock_mhz: float

    # -- per-sample views --------------------------------------------------------------
    @property
    def batch(self) -> int:
        return self.setup.batch

    def ops_per_sample(self, kinds=None, layer=None, phase=None) -> float:
        return sum(n for key, n in self.counts.items() if (kinds is None or key.kind in kinds)
                   and (layer is None or key.layer == layer) and (phase is None or key.phase == phase)) / self.batch

    @property
    def macs_per_sample(self) -> float:
        return self.ops_per_sample(MAC_KINDS)

    @property
    def compute_ops_per_sample(self) -> float:
        return self.ops_per_sample(COMPUTE_KINDS)

    @property
    def energy_compute_pj(self) -> float:
        return sum(self.compute_pj.values()) / self.batch

    @property
    def energy_memory_pj(self) -> float:
        return sum(self.memory_pj.values()) / self.batch

    @property
    def energy_pj(self) -> float:
        return self.energy_compute_pj + self.energy_memory_pj

    def fp32_compute_pj(self, fp32: dict[str, float]) -> float:
        """Compute energy per sample if every operation ran in fp32 (mul/mac: a mul and an
        add; everything else: an add) -- a reference for float training; nan without a table."""
        if not {"add", "mul"} <= set(fp32):
            return math.nan
        total = 0.0
        for key, n in self.counts.items():
            if key.kind in ("mul", "mac"):
                total += n * (fp32["mul"] + (fp32["add"] if key.kind == "mac" else 0.0))
            elif key.kind in COMPUTE_KINDS and key.kind != "rng":
                total += n * fp32["add"]
        return total / self.batch

    @property
    def memory_bits(self) -> int:
        return sum(t.bits for t in self.memory)

    @property
    def state_bits(self) -> int:
        """Neuron and learning state (membranes, traces, BPTT activations): the paper's memory."""
        return sum(t.bits for t in self.memory if t.category == "state")

    @property
    def gradient_bits(self) -> int:
        return sum(t.bits for t in self.memory if t.category == "gradients")

    @property
    def parameter_bits(self) -> int:
        return sum(t.bits for t in self.memory if t.category == "parameters")

    @property
    def onchip_bits(self) -> int:
        return sum(t.bits for t in self.memory if self.banks[t.memory].kind != "dram")

    @property
    def latency_s(self) -> float:
        return self.cycles / self.batch / (self.clock_mhz * 1e6)

    def per_layer(self) -> dict[str, dict[str, float]]:
        """Per-sample ops, MACs, energy and memory bits of each layer."""
        rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for key, n in self.counts.items():
            row = rows[key.layer]
            if key.kind in COMPUTE_KINDS:
                row["ops"] += n / self.batch
            if key.kind in MAC_KINDS:
                row["macs"] += n / self.batch
        for key, e in self.compute_pj.items():
            rows[key.layer]["compute_pj"] += e / self.batch
        for key, e in self.memory_pj.items():
            rows[key.layer]["memory_pj"] += e / self.batch
        for t in self.memory:
            rows[t.layer]["memory_bits"] += t.bits
            if t.state:
                rows[t.layer]["state_bits"] += t.bits
        return {k: dict(v) for k, v in sorted(rows.items(), key=lambda kv: int(kv[0][5:]))}

    def energy_by_phase(self) -> dict[str, dict[str, float]]:
        out = {p: {"compute_pj": 0.0, "memory_pj": 0.0} for p in PHASES}
        for key, e in self.compute_pj.items():
            out[key.phase]["compute_pj"] += e / self.batch
        for key, e in self.memory_pj.items():
            out[key.phase]["memory_pj"] += e / self.batch
        return {p: v for p, v in out.items() if v["compute_pj"] or v["memory_pj"]}

    def traffic(self) -> list[dict]:
        """Reads and writes per stored tensor: elements and bits per sample and per step."""
        rows: dict[tuple[str, str, str], dict] = {}
        for key, n in self.counts.items():
            if key.kind not in ("read", "write"):
                continue
            row = rows.setdefault((key.layer, key.tensor, key.kind), {
                "layer": key.layer, "tensor": key.tensor, "access": key.kind, "elements": 0.0, "bits": 0.0,
                "memory": self.banks_of.get(key.tensor, "")})
            row["elements"] += n / self.batch
            row["bits"] += n * int(key.width) / self.batch
        out = []
        for row in sorted(rows.values(), key=lambda r: (int(r["layer"][5:]), r["tensor"], r["access"])):
            row["elements_per_step"] = row["elements"] / self.setup.steps
            row["bits_per_step"] = row["bits"] / self.setup.steps
            out.append(row)
        return out

    banks_of: dict[str, str] = field(default_factory=dict)


def cost_mode(mode: str, layers: list[LayerInfo], tally: Tally, setup: Setup, hw: HardwareConfig,
              energy: EnergyModel | None = None) -> ModeResult:
    """Memory, banks, energy and latency of one mode from its counts."""
    energy = energy or EnergyModel(hw)
    memory = memory_tensors(layers, setup, mode, hw.samples_in_flight)
    placed = []
    contents: dict[str, int] = defaultdict(int)
    for t in memory:
        name = hw.memory_of(t.tensor)
        placed.append(TensorMemory(t.layer, t.tensor, t.elements, t.bits_per_element, t.per_step, name))
        contents[name] += t.bits
    counts = dict(tally.counts)
    tensors = {key.tensor for key in counts if key.kind in ("read", "write")}
    banks_of = {tensor: hw.memory_of(tensor) for tensor in tensors}
    banks = {}
    for name, m in hw.memories.items():
        size = m.size_kb * 8192 if m.size_kb is not None else None
        banks[name] = Bank(name, m.kind, contents.get(name, 0), size, energy.pj_per_bit(name, contents.get(name, 0)))
    compute_pj, memory_pj = {}, {}
    for key, n in counts.items():
        if key.kind in ("read", "write"):
            bank = banks[banks_of[key.tensor]]
            bits = n * int(key.width)
            bank.accessed_bits += bits
            memory_pj[key] = bits * bank.pj_per_bit
        else:
            compute_pj[key] = n * energy.op(key.kind, key.width)
    compute_cycles = sum(n for key, n in counts.items() if key.kind in COMPUTE_KINDS) / hw.lanes
    bank_cycles = {name: bank.accessed_bits / (hw.memories[name].word_bits * hw.memories[name].ports)
                   for name, bank in banks.items() if bank.kind != "registers" and bank.accessed_bits}
    cycles = max([compute_cycles, *bank_cycles.values()])
    return ModeResult(mode, setup, counts, placed, banks, compute_pj, memory_pj, cycles, compute_cycles, bank_cycles,
                      hw.clock_mhz, banks_of)


# -------------------------------------------------------------------------- top level


def dense_activity(layers: list[LayerInfo], setup: Setup) -> Activity:
    """Every operand non-zero (NeuroBench's Dense convention: fan-in x fan-out x steps)."""
    from hwmodel.config import ActivityRates

    ones = {"output": 1.0, "psi": 1.0, "signal": 1.0, "pre_trace": 1.0, "post_trace": 1.0}
    return expected_activity(layers, ActivityRates(input=1.0, default=ones), setup, train=True)


def mode_counts(mode: str, layers: list[LayerInfo], act: Activity, setup: Setup) -> Tally:
    if mode == "inference":
        return inference_counts(layers, act, setup)
    if mode == "stllr":
        return stllr_counts(layers, act, setup)
    if mode == "bptt":
        return bptt_counts(layers, act, setup)
    raise InputError(f"--modes: unknown mode {mode!r} (choose from {', '.join(MODES)})")


@dataclass
class Estimate:
    inputs: ModelInputs
    layers: list[LayerInfo]
    activity: Activity
    results: dict[str, ModeResult]
    dense_macs: dict[str, float]  # per sample, every operand non-zero

    def ratio(self, metric: str, a: str = "bptt", b: str = "stllr") -> float:
        x, y = getattr(self.results[a], metric), getattr(self.results[b], metric)
        return x / y if y else math.inf


def estimate(inputs: ModelInputs, activity=None, modes=MODES, batch: int | None = None) -> Estimate:
    """Cost every requested mode. ``activity``: a measured :class:`Activity` (from
    :func:`hwmodel.activity.load_activity`) or None for the rates of the model file."""
    layers = build_layers(inputs.config, inputs.quant)
    if activity is not None:
        batch = activity.batch
    setup = make_setup(layers, inputs.config, inputs.steps, batch, learning_modes=set(modes) != {"inference"})
    if activity is None:
        activity = expected_activity(layers, inputs.rates, setup, train=True)
    energy = EnergyModel(inputs.hardware, inputs.hardware_source)
    results, dense = {}, {}
    dense_act = dense_activity(layers, setup)
    for mode in modes:
        tally = mode_counts(mode, layers, activity, setup)
        results[mode] = cost_mode(mode, layers, tally, setup, inputs.hardware, energy)
        dense_tally = mode_counts(mode, layers, dense_act, setup)
        dense[mode] = sum(dense_tally.get(kind=kind) for kind in MAC_KINDS) / setup.batch
    return Estimate(inputs, layers, activity, results, dense)
