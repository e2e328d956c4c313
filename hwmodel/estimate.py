"""The analytic cost model: operations, memory, traffic, energy and latency per layer.

Three modes, all costed for one batch of B samples over T steps (the unit the integer
model counts in) and reported per sample (/ B) and per step (/ B T):

* ``inference``  the forward pass of the integer model (``IntNetwork.infer``);
* ``stllr``      the integer model's training run: forward, traces every step, and in the
                 last k steps the learning signal, eligibility and accumulation, then the
                 weight write (once per batch, or every window step when ``update: online``);
* ``bptt``       backpropagation through time with a detached reset, costed with the same
                 formats, the same event-driven conventions and the same activity (the
                 measured Psi; see :func:`bptt_counts`).

Operations use exactly the taxonomy of :mod:`core.counters`: ``OpKey(layer, phase,
kind, width, tensor)``. Every count is a structural factor (fan-out, sizes, steps, a
constant's cost class) times an *activity* quantity (how many operands were non-zero):
measured per step by the integer model (:mod:`hwmodel.activity`), or expected from rates.
With measured activity the S-TLLR and inference counts equal the integer model's
``OpCounter`` exactly, key by key (tests/test_hwmodel.py), for a file of one batch; a file
of N consecutive batches (``hwmodel measure --batches N``) is costed as their mean batch,
the expected cost of one batch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from fixedpoint import spec
from fixedpoint.config import LayerFormats, SPIKES, eta_code, layer_constants, layer_formats
from core.counters import KINDS, PHASES, OpKey
from core.hardware import HardwareConfig
from hwmodel.config import ModelInputs, window_of
from core.energy import linear_energy, parse_width, product_energy, sram_pj_per_bit
from core.errors import InputError

MODES = ("inference", "stllr", "bptt")
COMPUTE_KINDS = tuple(k for k in KINDS if k not in ("read", "write"))
MAC_KINDS = ("mac", "mul", "syn_add")  # every multiply or synaptic accumulate
#: The multiply-class operations, apart and summed: synaptic accumulates (a weight added
#: into a current: ``syn_add``), multiplies (``mul``), multiply-accumulates (``mac``).
OP_CLASSES = {"ac": ("syn_add",), "mul": ("mul",), "mac": ("mac",), "ac_mul_mac": MAC_KINDS}
OP_CLASS_NAMES = {"ac": "AC", "mul": "MUL", "mac": "MAC", "ac_mul_mac": "AC+MUL+MAC"}
PARAM_TENSORS = ("weight", "rec_weight", "bias", "feedback", "psi_lut", "softmax_lut")
#: memory only learning needs: the update accumulators and the optimizer's state (lion)
GRADIENT_TENSORS = ("update", "rec_update", "bias_update", "momentum_weight", "momentum_rec_weight", "momentum_bias")


# ------------------------------------------------------------------------- structure


@dataclass(frozen=True)
class LayerInfo(spec.LayerShape):
    """A layer as the datapath spec sees it (sizes, kind, formats, constants), plus the
    shapes and the conv geometry in closed form that the cost model needs."""

    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    pairs: int = 0  # valid (tap, position) pairs: sum over positions of taps not in padding
    tap_groups: tuple[tuple[int, int], ...] = ()  # (number of taps, valid positions of each)

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
    from core.config import layer_shapes, resolve_layer

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
        reset = resolve_layer(network, learning, index).reset
        layers.append(LayerInfo(index, cfg.kind, n_in, channels, positions, taps, cfg.bias, reset, fmts, const,
                                in_shape=tuple(in_shape), out_shape=tuple(out_shape), pairs=pairs,
                                tap_groups=tap_groups))
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
    warnings: tuple[str, ...] = ()  # e.g. an eta that quantizes to 0 (costed anyway)
    loss: str = "mse"  # mse | ce: the readout error (ce: the integer softmax)
    optimizer: spec.Optimizer = spec.Optimizer()  # the weight write: sgd or lion

    @property
    def learning(self) -> "spec.Learning":
        """The spec's learning options of this run."""
        return spec.Learning(self.learning_signal, self.bias_update, self.learners, self.loss)

    @property
    def start(self) -> int:
        return self.steps - self.window


def eta_codes(layers: list[LayerInfo], config, batch: int, window: int, learners) -> tuple[dict[int, int], list[str]]:
    """eta code per learning layer: lr / (B k) (lr for sDFA hidden layers), nearest_even into
    quant.learning_rate -- the value the integer model's weight write multiplies by.

    An eta the format cannot hold (it quantizes to 0, or saturates) would make the integer
    model refuse the run; the cost model warns, naming the fix, and costs the write with the
    eta the fix gives (the same value in a format with enough fraction bits)."""
    readout = len(layers) - 1
    out, warnings = {}, []
    for i in learners:
        # signum and lion step by lr whatever the gradient's scale; the sDFA hidden signal
        # carries no 1/(B k)
        unscaled = config.train.optimizer in ("signum", "lion") or (config.learning.learning_signal == "sdfa" and i != readout)
        fmt = layers[i].fmts.learning_rate
        try:
            out[i] = eta_code(fmt, config.train.lr, batch, window, unscaled)
        except InputError:
            if not config.train.lr > 0:
                raise
            out[i], warning = _eta_fallback(layers[i].fmts, config.train.lr, batch, window, unscaled)
            if warning not in warnings:
                warnings.append(warning)
    return out, warnings


def _eta_fallback(fmts: LayerFormats, lr: float, batch: int, window: int, unscaled: bool) -> tuple[int, str]:
    """(code, warning) for an eta that quant.learning_rate cannot hold: the code of the same
    value in the format the warning proposes, and a warning naming the fix.

    The proposed format keeps the width and takes as many fraction bits as give eta its full
    precision, but no more than keep the weight write exact (W aligned by frac + update frac
    - weight frac bits, within EXACT_BITS)."""
    from core.quant import EXACT_BITS

    fmt = fmts.learning_rate
    value = lr if unscaled else lr / (batch * window)
    what = "train.lr" if unscaled else "train.lr / (batch * window)"
    where = f"(B = {batch}, k = {window})" if not unscaled else "(unscaled: signum, lion, or an sDFA hidden layer)"
    value_bits = fmt.bits - (1 if fmt.signed else 0)
    precise = value_bits - 1 - math.floor(math.log2(value))  # the value's top bit in the format's top bit
    exact = EXACT_BITS - 2 - fmts.weight.bits - fmts.update.frac + fmts.weight.frac
    frac = max(0, min(precise, exact))
    good = f"{'s' if fmt.signed else 'u'}{fmt.bits}.{frac}"
    code = min(max(1, round(value * 2.0 ** frac)), 2 ** value_bits - 1)
    if value * 2.0 ** fmt.frac <= 0.5:  # rounds to 0 (ties to even)
        least = math.floor(math.log2(0.5 / value)) + 1
        scale = 1.0 if unscaled else batch * window
        lowest_lr = 0.5 * 2.0 ** -fmt.frac * scale
        fix = (f"give quant.learning_rate at least {least} fraction bits (e.g. {good}) or raise train.lr above "
               f"{lowest_lr:.3g}" if least <= exact else f"raise train.lr above {lowest_lr:.3g} (a format with the "
               f"{least} fraction bits eta needs would overflow the exact weight write)")
        warning = (f"{what} = {value:.3g} quantizes to 0 in quant.learning_rate {fmt.describe_short()} {where}: "
                   f"the integer model would refuse this run; {fix}; the weight write is costed with eta in {good}")
    else:
        warning = (f"{what} = {value:.3g} does not fit quant.learning_rate {fmt.describe_short()} {where}: "
                   f"the integer model would refuse this run; give quant.learning_rate fewer fraction bits "
                   f"(e.g. {good}) or lower train.lr; the weight write is costed with eta in {good}")
    return code, warning


def make_setup(layers: list[LayerInfo], config, steps: int, batch: int | None = None,
               learning_modes: bool = True) -> Setup:
    """The run to cost; eta codes only when a learning mode is costed (they can be invalid)."""
    learning = config.learning
    batch = batch or config.train.batch_size
    window = window_of(config, steps)
    learners = (len(layers) - 1,) if learning.rule == "readout_only" else tuple(range(len(layers)))
    etas, warnings = eta_codes(layers, config, batch, window, learners) if learning_modes else ({}, [])
    return Setup(batch, steps, window, learning.learning_signal, learning.update, learning.bias_update, learners,
                 etas, tuple(warnings), learning.loss, integer_optimizer(config))


def integer_optimizer(config) -> "spec.Optimizer":
    """The weight write the integer model runs for ``train.optimizer`` (adam is costed as
    sgd: spec.chip_optimizer)."""
    return spec.optimizer_spec(*spec.chip_optimizer(config.train))


# -------------------------------------------------------------------------- activity


#: Measured activity quantities (the datapath spec's, less the structural ones, which
#: follow from sizes and steps), per layer, summed over the batch (and over steps for totals).
FORWARD_QUANTITIES = tuple(q for q in spec.FORWARD_QUANTITIES if q not in spec.STRUCTURAL)
TRACE_QUANTITIES = tuple(q for q in spec.TRACE_QUANTITIES if q not in spec.STRUCTURAL)
LEARN_QUANTITIES = tuple(q for q in spec.LEARN_QUANTITIES if q not in spec.STRUCTURAL)
QUANTITIES = FORWARD_QUANTITIES + TRACE_QUANTITIES + LEARN_QUANTITIES
QUANTITY_HELP = {q: spec.QUANTITY_HELP[q] for q in QUANTITIES}


@dataclass
class Activity:
    """Totals of the activity quantities per layer for one batch (B samples, T steps).

    ``measured``: counts from the integer model (ints for one batch; for a file of
    ``batches`` = N > 1 consecutive batches, the mean per batch: their sums / N, floats);
    otherwise expected values.
    ``delta``: density of non-zero BPTT membrane gradients du per layer over all T steps
    (measured files: propagated from the run's Psi and errors, see
    :func:`hwmodel.activity.bptt_delta_series`; rates: ``delta``, else ``signal``).
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
    delta_source: str = "rates"  # where ``delta`` comes from: measured | rates
    batches: int = 1  # measured: batches the totals are the mean of

    @property
    def described(self) -> str:
        """``source``, with "(mean of N batches)" for a measurement of N > 1 batches."""
        return f"{self.source} (mean of {self.batches} batches)" if self.batches > 1 else self.source

    def get(self, index: int, name: str) -> float:
        return self.totals[index].get(name, 0)

    def psi_density(self, index: int, n_out: int) -> float:
        """Fraction of (sample, neuron, step) with Psi != 0 over all T steps (training runs)."""
        return self.get(index, "psi") / (self.batch * n_out * self.steps) if n_out else 0.0


def expected_activity(layers: list[LayerInfo], rates, setup: Setup, train: bool = True) -> Activity:
    """Expected totals from rates (independent, uniformly spread non-zeros)."""
    from core.hardware import ActivityRates

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
        if ly.const.lambda_pre == 0:  # no memory: the pre-trace is the input itself
            q_dens = r_in
        if ly.spiking and ly.const.lambda_post == 0:  # the post-trace is the previous step's Psi
            p_dens = psi
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
    delta = [per_layer[i]["delta"] for i in range(len(layers))]
    if layers[readout].const.beta == 0 and layers[readout].fmts.leak_mode != "shift":
        delta[readout] *= k / T  # no leak: the readout's BPTT delta is its error, in the window steps only
    return Activity(B, T, k, train, False, totals, delta,
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
        op = spec.const_op(code, const_fmt, other_fmt)
        if op is not None:
            self.add(layer, phase, op[0], op[1], n)

    def add_ops(self, layer: str, ops, quantities: dict[str, float]) -> None:
        """Ops of the datapath spec, each run ``per`` x its quantity."""
        for op in ops:
            self.add(layer, op.phase, op.kind, op.width, quantities.get(op.count, 0) * op.per, op.tensor)

    def get(self, layer=None, phase=None, kind=None, width=None, tensor=None) -> float:
        want = {"layer": layer, "phase": phase, "kind": kind, "width": width, "tensor": tensor}
        return sum(n for key, n in self.counts.items()
                   if all(v is None or getattr(key, f) == v for f, v in want.items()))


def structural(ly: LayerInfo, setup: Setup, readout: bool) -> dict[str, float]:
    """The spec's structural quantities of one layer for one batch (B samples, T steps)."""
    B, T, k = setup.batch, setup.steps, setup.window
    return {"neurons": B * ly.n_out * T, "input_elements": B * ly.n_in * T, "steps": T,
            "window_samples": B * k if readout else 0, "window_neurons": B * ly.n_out * k,
            "window_channels": B * ly.channels * k,
            "writes": (k if setup.update == "online" else 1) if ly.index in setup.learners else 0}


def spec_counts(layers: list[LayerInfo], act: Activity, setup: Setup, train: bool, weight_write: bool = True) -> Tally:
    """The datapath spec's ops (fixedpoint/spec.py) x the activity: what IntNetwork.run
    executes -- inference (forward only), or S-TLLR training with the weight write."""
    learning = setup.learning if train else None
    readout = len(layers) - 1
    quantities = [{**act.totals[i], **structural(ly, setup, i == readout)} for i, ly in enumerate(layers)]
    tally = Tally()
    for index, ops in spec.network_spec(layers, learning).items():
        for op in ops:
            n = quantities[readout if op.source == "readout" else index].get(op.count, 0) * op.per
            tally.add(layers[index].name, op.phase, op.kind, op.width, n, op.tensor)
    if train and weight_write:
        for i in setup.learners:
            tally.add_ops(layers[i].name, spec.weight_write_ops(layers[i], setup.etas[i], setup.optimizer),
                          quantities[i])
    return tally


def inference_counts(layers: list[LayerInfo], act: Activity, setup: Setup) -> Tally:
    return spec_counts(layers, act, setup, train=False)


def stllr_counts(layers: list[LayerInfo], act: Activity, setup: Setup, weight_write: bool = True) -> Tally:
    """What IntNetwork.run(train=True) executes (with the weight write when ``weight_write``)."""
    if not act.train:
        raise InputError("activity: measured without training (run.mode inference); S-TLLR needs a training "
                         "run's activity (or use --modes inference)")
    return spec_counts(layers, act, setup, train=True, weight_write=weight_write)


def bptt_counts(layers: list[LayerInfo], act: Activity, setup: Setup) -> Tally:
    """BPTT with a detached reset, in the same formats, the same event-driven convention and
    the same activity as S-TLLR.

    Forward (T steps): the inference forward, plus storing, per step, the layer input
    (``bptt_input``, input format), the membrane u (``bptt_membrane``) and the spikes
    (``bptt_spikes``, 1 bit) of every layer on the backward path (lowest learner up).
    Backward (all T steps, t = T..1: the loss of the last k steps reaches every earlier
    step through the leak), phase ``learning_signal``:
      readout   dy[t] = e[t] + beta dy[t+1]          (e: one subtract per window step)
      hidden    do[t] = W^{l+1 T} du^{l+1}[t] (+ W_rec^T du[t+1])   transposed-weight MACs,
                        only for neurons whose psi[t] != 0 (do is only used times psi)
                psi[t] = Psi(u[t] - theta) from the stored u       surrogate (as S-TLLR's)
                du[t] = psi[t] do[t] + beta du[t+1]                temporal backward
      (``bptt_grad``: the du[t+1] register per neuron, read and written every step).
    Weight gradient (phase ``accumulate``, all T steps): dW += du[t] x[t]^T as one MAC per
    non-zero input operand and non-zero du (the forward's events x outputs x du density),
    one accumulator add per synapse touched in the step; db += du[t]. Then the weight write
    (once per batch).

    Activity, the same as S-TLLR's: Psi's density per layer (``psi`` over all T steps; the
    measured one with a measured activity) masks the W^T pass and counts the ``psi do``
    multiplies; ``act.delta`` is the density of non-zero du over all T steps (measured:
    du[t] is non-zero from the last step where psi do != 0 back to the first step, through
    the leak; rates: ``delta``, else ``signal``).
    Memory accesses follow the integer model's convention: the operand that differs per
    synapse is read once per operation (weights in W^T g as in BP; the stored input per
    weight-gradient MAC, as S-TLLR reads the pre-trace per causal MAC); per-neuron factors
    (du, Psi) sit in registers.
    """
    if not act.train:
        raise InputError("activity: measured without training (run.mode inference); BPTT is costed with a "
                         "training run's activity (or use --modes inference)")
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
    if setup.loss == "ce":  # the same integer softmax error as S-TLLR's, per window step and sample
        for op in spec.softmax_ops(out):
            tally.add(out.name, op.phase, op.kind, op.width, B * k * op.per, op.tensor)
    else:
        tally.add(out.name, "learning_signal", "add", fe.bits, B * k)  # y - onehot in the window
    tally.const(out.name, "learning_signal", out.const.beta, out.fmts.leak, fe, n)
    tally.add(out.name, "learning_signal", "add", fe.bits, n)
    tally.add(out.name, "learning_signal", "read", fe.bits, n, "bptt_grad")
    tally.add(out.name, "learning_signal", "write", fe.bits, n, "bptt_grad")
    for ly in reversed(path[:-1]):
        above, f, name, i = layers[ly.index + 1], ly.fmts, ly.name, ly.index
        fl = f.learning_signal
        g_fmt = fe if above.index == readout else above.fmts.learning_signal
        psi = act.psi_density(i, ly.n_out)  # do[t] is needed where psi[t] != 0 only
        macs = B * T * act.delta[above.index] * psi * above.channels * above.pairs
        tally.add(name, "learning_signal", "mac", f"{above.fmts.weight.bits}x{g_fmt.bits}", macs)
        tally.add(name, "learning_signal", "read", above.fmts.weight.bits, macs, "weight")
        n = B * ly.n_out * T
        if ly.recurrent:
            rec = B * (T - 1) * act.delta[i] * psi * ly.n_out * ly.n_out
            tally.add(name, "learning_signal", "mac", f"{f.weight.bits}x{fl.bits}", rec)
            tally.add(name, "learning_signal", "read", f.weight.bits, rec, "rec_weight")
        tally.add(name, "learning_signal", "read", f.membrane.bits, n, "bptt_membrane")
        tally.add_ops(name, spec.psi_ops(ly, "learning_signal", "neurons", "psi_support"),
                      {"neurons": n, "psi_support": n})
        tally.add(name, "learning_signal", "mul", f"{fl.bits}x{f.psi.bits}", act.get(i, "psi"))  # psi do
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
        tally.add_ops(layers[i].name, spec.weight_write_ops(layers[i], setup.etas[i], setup.optimizer), {"writes": 1})
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
        if mode in ("stllr", "bptt") and ly.index == readout and setup.loss == "ce":
            put("softmax_lut", f.softmax_lut.entries, f.softmax.bits)
        if mode in ("stllr", "bptt") and learner:
            put("update", ly.weight_size, f.update.bits)
            if ly.recurrent:
                put("rec_update", ly.rec_size, f.update.bits)
            if ly.bias:
                put("bias_update", ly.channels, f.update.bits)
            if setup.optimizer.kind == "lion":  # one momentum word per learned parameter
                for tensor, _, size, _ in spec.parameter_sizes(ly):
                    put(f"momentum_{tensor}", size, f.momentum.bits)
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

    def class_per_sample(self, op_class: str) -> float:
        """Operations of one class of :data:`OP_CLASSES` (ac, mul, mac, ac_mul_mac) per sample."""
        return self.ops_per_sample(OP_CLASSES[op_class])

    @property
    def ac_mul_mac_per_sample(self) -> float:
        """Synaptic accumulates + multiplies + multiply-accumulates per sample."""
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
        """Per-sample ops (all, and ac / mul / mac / ac_mul_mac), energy and memory bits of each layer."""
        rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for key, n in self.counts.items():
            row = rows[key.layer]
            if key.kind in COMPUTE_KINDS:
                row["ops"] += n / self.batch
            for op_class, kinds in OP_CLASSES.items():
                if key.kind in kinds:
                    row[op_class] += n / self.batch
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
                "memory": self.banks_of.get((key.layer, key.tensor), "")})
            row["elements"] += n / self.batch
            row["bits"] += n * int(key.width) / self.batch
        out = []
        for row in sorted(rows.values(), key=lambda r: (int(r["layer"][5:]), r["tensor"], r["access"])):
            row["elements_per_step"] = row["elements"] / self.setup.steps
            row["bits_per_step"] = row["bits"] / self.setup.steps
            out.append(row)
        return out

    banks_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (layer, tensor) -> memory


def cost_mode(mode: str, layers: list[LayerInfo], tally: Tally, setup: Setup, hw: HardwareConfig,
              energy: EnergyModel | None = None) -> ModeResult:
    """Memory, banks, energy and latency of one mode from its counts."""
    energy = energy or EnergyModel(hw)
    memory = memory_tensors(layers, setup, mode, hw.samples_in_flight)
    placed = []
    contents: dict[str, int] = defaultdict(int)
    for t in memory:
        name = hw.memory_of(t.tensor, t.layer)
        placed.append(TensorMemory(t.layer, t.tensor, t.elements, t.bits_per_element, t.per_step, name))
        contents[name] += t.bits
    counts = dict(tally.counts)
    tensors = {(key.layer, key.tensor) for key in counts if key.kind in ("read", "write")}
    banks_of = {(layer, tensor): hw.memory_of(tensor, layer) for layer, tensor in tensors}
    banks = {}
    for name, m in hw.memories.items():
        size = m.size_kb * 8192 if m.size_kb is not None else None
        banks[name] = Bank(name, m.kind, contents.get(name, 0), size, energy.pj_per_bit(name, contents.get(name, 0)))
    compute_pj, memory_pj = {}, {}
    for key, n in counts.items():
        if key.kind in ("read", "write"):
            bank = banks[banks_of[(key.layer, key.tensor)]]
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
    from core.hardware import ActivityRates

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
    dense: dict[str, dict[str, float]]  # mode -> op class -> per sample, every operand non-zero

    def ratio(self, metric: str, a: str = "bptt", b: str = "stllr") -> float:
        x, y = getattr(self.results[a], metric), getattr(self.results[b], metric)
        return x / y if y else math.inf

    @property
    def setup(self) -> Setup:
        return next(iter(self.results.values())).setup

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the integer model would refuse but the estimate costs anyway (an eta that
        quantizes to 0), and an activity file without BPTT deltas."""
        out = list(self.setup.warnings)
        if self.activity.measured and self.activity.delta_source != "measured" and "bptt" in self.results:
            out.append(f"{self.activity.source}: no BPTT deltas in this activity file (written before "
                       "bptt_delta was measured): BPTT is costed with the rates' delta density "
                       f"({', '.join(f'{d:g}' for d in self.activity.delta)}); measure again for the measured one")
        return tuple(out)


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
        dense_counts = mode_counts(mode, layers, dense_act, setup).counts
        dense[mode] = {op_class: sum(n for key, n in dense_counts.items() if key.kind in kinds) / setup.batch
                       for op_class, kinds in OP_CLASSES.items()}
    return Estimate(inputs, layers, activity, results, dense)


# ------------------------------------------------------------------ other (T, k) points


def truncated_activity(act: Activity, window: int) -> Activity:
    """A measured activity of window K seen as one of window k <= K at the same T: the
    learning quantities of the last k steps only. Exact for ``update: batch`` (the weights
    do not change within the batch, so steps T-k..T-1 learn the same in either run) and one
    batch; for the mean of N > 1 batches only the first batch is exact (the later ones ran
    on weights that the window K wrote)."""
    if not act.measured or act.per_step is None or window > act.window:
        raise ValueError("truncation needs a measured activity with a window >= k")
    start = act.steps - window
    totals = []
    for t, series in zip(act.totals, act.per_step):
        new = dict(t)
        for q in LEARN_QUANTITIES:
            if q in series:
                new[q] = sum(series[q][start:])
        totals.append(new)
    per_step = [{q: (v if q not in LEARN_QUANTITIES else [0] * start + v[start:]) for q, v in s.items()}
                for s in act.per_step]
    return Activity(act.batch, act.steps, window, act.train, True, totals, list(act.delta), list(act.input_rates),
                    list(act.output_rates), per_step, act.source, act.overflow_events, act.delta_source,
                    act.batches)


def rates_of(act: Activity, layers: list[LayerInfo]):
    """ActivityRates with every density of a measured activity (input and spike rates, Psi,
    learning signal, BPTT delta, pre- and post-trace), for costing it at another T or k.
    The trace densities are read back from the pair counts (the inverse of
    :func:`expected_activity`'s formulas)."""
    from core.hardware import ActivityRates, LayerActivity

    B, T, k = act.batch, act.steps, act.window
    k_prev = k - (1 if k == T else 0)

    def clamp(x: float) -> float:
        return min(1.0, max(0.0, x))

    per_layer = {}
    for i, ly in enumerate(layers):
        entry = {"delta": clamp(act.delta[i])}
        if ly.spiking:
            entry["output"] = clamp(act.output_rates[i])
        if act.train:
            if ly.spiking:
                entry["psi"] = clamp(act.psi_density(i, ly.n_out))
            signal = act.get(i, "signal")
            if signal:
                entry["signal"] = clamp(signal / (B * ly.n_out * k))
                causal = act.get(i, "causal_mod") if ly.spiking else signal
                if causal and ly.pairs:
                    entry["pre_trace"] = clamp(act.get(i, "causal_pairs") * ly.positions / (causal * ly.pairs))
                noncausal = act.get(i, "noncausal_mod")
                if noncausal and k_prev:
                    entry["post_trace"] = clamp(noncausal / (signal * k_prev / k))
        per_layer[i] = LayerActivity(**entry)
    return ActivityRates(input=clamp(act.input_rates[0]), layers=per_layer)


def estimate_at(est: Estimate, steps: int, window: int, modes=("stllr", "bptt")) -> tuple[Estimate, str]:
    """``est`` costed at another (T, k), and where its activity comes from.

    The configured (T, k) is ``est`` itself, so a sweep row there and the estimate agree.
    A measured activity is used as measured at its own (T, k); at the same T with a smaller
    k (``update: batch``) it is truncated to the last k window steps (exact for S-TLLR);
    elsewhere its densities (:func:`rates_of`) are used as rates. Rates stay rates."""
    act = est.activity
    if steps == act.steps and window == act.window:
        return est, "measured" if act.measured else "rates"
    inputs = est.inputs
    config = inputs.config.model_copy(update={"learning": inputs.config.learning.model_copy(
        update={"window": window})})
    at = ModelInputs(config, inputs.quant, inputs.hardware, inputs.rates, steps, inputs.source,
                     inputs.hardware_source)
    if not act.measured:
        return estimate(at, None, modes), "rates"
    if steps == act.steps and window < act.window and config.learning.update == "batch":
        return estimate(at, truncated_activity(act, window), modes), "measured, last k steps"
    setup = make_setup(est.layers, config, steps, act.batch)
    derived = expected_activity(est.layers, rates_of(act, est.layers), setup)
    derived.source = f"rates from {act.described}"
    derived.delta_source = act.delta_source
    return estimate(at, derived, modes), "rates from measured"
