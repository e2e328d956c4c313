"""The bit-accurate integer S-TLLR model: functional core plus a thin training shell.

Core (pure functions of integer arrays; formats and constants travel in the params)::

    int_layer_step(layer_params, layer_state, x, ctx) -> (layer_state, record)
    int_step(params, state, x_t, ctx)                 -> (state, records)
    int_learn_step(params, state, records, target, ctx) -> state   (window steps)
    int_weight_write(params, state, scales, ctx)      -> (params, state)

Shell: :class:`IntNetwork` (``from_float``, ``to_float``, ``infer``, ``train_batch``).

Every value is an int64 code in its declared format (``fixedpoint.config``; the update
accumulators are stored as int32 where their format fits, :func:`acc_dtype`); every state
update is ONE rounding of an exact int64 sum of aligned terms, in the rounding mode of
the destination format, followed by the destination's overflow policy (counted per
``layer<i>.<tensor>`` in an OverflowCounter). docs/fixedpoint_model.md has the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import NamedTuple

import numpy as np

from core.quant import QuantConfig
from fixedpoint.config import (
    LayerConstants,
    LayerFormats,
    check_exact,
    check_layer_indices,
    check_learning,
    eta_code,
    layer_constants,
    layer_formats,
    psi_lut_index,
    update_scale,
)
from core.counters import OpCounter
from core.formats import FixedFormat
from fixedpoint.kernels import (
    accumulate_update,
    accumulate_update_dense,
    grid_codes,
    grid_codes_time_major,
    lif_forward,
    lion_direction,
    psi_lookup,
    round_overflow,
    synaptic_current,
    synaptic_current_dense,
    trace_step,
    trace_steps,
    transpose_mac,
    weight_write,
    weight_write_overflow,
)
from core.overflow import OverflowCounter, apply_overflow, overflow_code
from core.rng import next_states, seed_lanes
from core.rounding import mode_code, shift_right_round
from fixedpoint.softmax import SoftmaxConstants, int_softmax, softmax_constants
from fixedpoint.spec import (Learning, LayerShape, Optimizer, check_widths, datapath_widths, network_shifts, network_spec,
                             optimizer_spec, weight_write_ops)
from core.errors import InputError

# ------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Synapse map of one layer: W[o, tap] reads input idx[tap, p] for output (o, p)."""

    n_in: int  # flat input size (C*H*W for conv)
    channels: int  # output channels (= outputs of a dense layer)
    positions: int  # output positions P (1 for a dense layer)
    idx: np.ndarray  # (taps, P) int64 input index, -1 = zero padding

    @property
    def taps(self) -> int:
        return self.idx.shape[0]

    @property
    def n_out(self) -> int:
        return self.channels * self.positions


def dense_geometry(n_in: int, n_out: int) -> Geometry:
    return Geometry(n_in, n_out, 1, np.arange(n_in, dtype=np.int64).reshape(n_in, 1))


_DENSE: dict[int, Geometry] = {}


def _dense_geometry(n: int) -> Geometry:
    """dense_geometry(n, n), built once per size (the recurrent synapses); private: only
    the kernels read it, nothing writes it."""
    geometry = _DENSE.get(n)
    if geometry is None:
        geometry = _DENSE[n] = dense_geometry(n, n)
    return geometry


def conv_geometry(in_shape, out_shape, kernel: int, stride: int, padding: int) -> Geometry:
    """im2col map; tap order (c, ky, kx) = torch's weight layout, position (oy, ox)."""
    c_in, height, width_ = in_shape
    c_out, h_out, w_out = out_shape
    t = np.arange(c_in * kernel * kernel)
    c, ky, kx = t // (kernel * kernel), (t // kernel) % kernel, t % kernel
    p = np.arange(h_out * w_out)
    oy, ox = p // w_out, p % w_out
    iy = oy[None, :] * stride + ky[:, None] - padding
    ix = ox[None, :] * stride + kx[:, None] - padding
    valid = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width_)
    idx = np.where(valid, c[:, None] * height * width_ + iy * width_ + ix, -1).astype(np.int64)
    return Geometry(c_in * height * width_, c_out, h_out * w_out, idx)


# ------------------------------------------------------------------------- params/state


@dataclass(frozen=True)
class IntLayerParams:
    """One layer: integer weights and the formats/constants they are read with."""

    index: int
    kind: str  # linear | recurrent | conv2d | readout
    geometry: Geometry
    fmts: LayerFormats
    const: LayerConstants
    reset: str  # soft | hard | none (readout)
    weight: np.ndarray  # (C_out, taps) int64, weight format
    rec_weight: np.ndarray | None  # (N, N) int64, weight format (recurrent)
    bias: np.ndarray | None  # (C_out,) int64, bias format
    feedback: np.ndarray | None  # (n_out, classes) int64, feedback format (DFA/sDFA)
    shifts: dict = field(default_factory=dict, compare=False)  # name -> bits (fixedpoint.spec.layer_shifts)

    @cached_property
    def name(self) -> str:
        return f"layer{self.index}"

    @property
    def spiking(self) -> bool:
        return self.kind != "readout"


@dataclass(frozen=True)
class IntParams:
    layers: tuple[IntLayerParams, ...]
    learning_signal: str  # bp | dfa | sdfa
    bias_update: str  # reference | exact
    update: str  # batch | online
    window: int | None
    learners: tuple[int, ...]  # indices of layers whose weights learn
    num_classes: int
    loss: str = "mse"  # mse: error = y - onehot; ce: error = softmax(y) - onehot (integer softmax)
    softmax: SoftmaxConstants | None = None  # loss ce
    optimizer: Optimizer = Optimizer()  # sgd, or lion with its beta shifts


class IntLayerState(NamedTuple):
    """Plain int64 arrays (the accumulators: acc_dtype, int32 for an update format within
    int32); None where a layer does not track the value."""

    membrane: np.ndarray  # (B, n_out) v[t] (spiking, after reset) or y[t] (readout)
    pre_trace: np.ndarray | None  # (B, n_in) q[t]
    post_trace: np.ndarray | None  # (B, n_out) p[t]
    bias_trace: np.ndarray | None  # () q_b[t], trace of the constant input 1
    prev_spikes: np.ndarray | None  # (B, n_out) o[t-1] (recurrent)
    rec_pre_trace: np.ndarray | None  # (B, n_out) q_rec[t] (recurrent)
    acc: dict | None  # {"weight", "rec_weight", "bias"}: update-format accumulators (acc_dtype)


class IntState(NamedTuple):
    layers: tuple[IntLayerState, ...]
    lanes: np.ndarray  # uint32 xorshift32 states, one per weight (see lane_layout)
    #: lion: (layer, tensor) -> int64 momentum codes, shaped as the parameter; carried
    #: across batches like the lanes (optimizer state, not per-sample state)
    momentum: dict | None = None


class IntRecord(NamedTuple):
    """What one layer computed at step t (int64 codes)."""

    input: np.ndarray  # x[t] (B, n_in)
    current: np.ndarray  # current format (B, n_out)
    u: np.ndarray  # membrane format, u[t] (= y[t] for the readout)
    output: np.ndarray  # spikes o[t] (0/1) or y[t]
    psi: np.ndarray | None
    pre_trace: np.ndarray | None
    post_trace_prev: np.ndarray | None
    bias_trace: np.ndarray | None
    rec_input: np.ndarray | None
    rec_pre_trace: np.ndarray | None


@dataclass
class StepContext:
    """Where we are (for messages), and where counts go (both optional).

    The kernels report *activity quantities* (``observe``: active inputs, spikes, non-zero
    products, ...; the names of :data:`fixedpoint.spec.QUANTITIES`); ``flush_counts``
    turns them into operation counts with the datapath spec (``spec``: layer index ->
    ops), the same list ``hwmodel`` multiplies by measured or expected activity."""

    t: int = 0
    overflow: OverflowCounter | None = None
    ops: OpCounter | None = None
    traces: bool = True
    log: dict | None = None  # (t, layer, tensor) -> int64 array, when recording
    spec: dict | None = field(default=None, repr=False, compare=False)
    observed: dict = field(default_factory=dict, repr=False, compare=False)  # (layer, quantity) -> n
    #: (layer, tensor) -> (weight, W^T narrow, max |W|) of dense layers, for the synaptic
    #: kernel; None: not cached. Only a context whose weights nobody edits in place while it
    #: lives may hold one (IntNetwork.run builds one per run; a weight write makes new arrays).
    columns: dict | None = field(default=None, repr=False, compare=False)
    #: weight writes of this context: (layer, key) -> [ops, times]; the ops of one write
    #: depend only on the layer, eta and optimizer, so they are built once and multiplied
    #: out by flush_counts (an online run writes every window step)
    writes: dict = field(default_factory=dict, repr=False, compare=False)
    #: kernel constants derived once from a layer's formats, shifts and constants (what
    #: _trace_plan and _lif_constants build), checked by identity on every use
    constants: dict = field(default_factory=dict, repr=False, compare=False)

    def observe(self, layer: str, quantity: str, n) -> None:
        if self.ops is not None:
            key = (layer, quantity)
            self.observed[key] = self.observed.get(key, 0) + int(n)

    def add_ops(self, layer: str, ops, times: int = 1) -> None:
        """Ops that ran ``per`` x ``times`` (the weight write: its eta decides the op kinds)."""
        if self.ops is not None:
            for op in ops:
                self.ops.add(layer, op.phase, op.kind, op.width, op.per * times, op.tensor)

    def count_write(self, layer: str, key, make_ops) -> None:
        """One weight write of ``layer``; ``make_ops()`` gives its ops (built once per key)."""
        if self.ops is not None:
            entry = self.writes.get((layer, key))
            if entry is None:
                entry = self.writes[(layer, key)] = [make_ops(), 0]
            entry[1] += 1

    def flush_counts(self) -> None:
        """Multiply the observed quantities and the writes out through the spec into ``ops``."""
        if self.ops is None:
            return
        for (layer, _), (ops, times) in self.writes.items():
            self.add_ops(layer, ops, times)
        self.writes.clear()
        if not self.observed:
            return
        readout = f"layer{max(self.spec)}"
        for index, ops in self.spec.items():
            layer = f"layer{index}"
            for op in ops:
                n = self.observed.get((readout if op.source == "readout" else layer, op.count), 0)
                if n:
                    self.ops.add(layer, op.phase, op.kind, op.width, n * op.per, op.tensor)
        self.observed.clear()

    def put(self, layer: str, tensor: str, value) -> None:
        if self.log is not None and value is not None:
            self.log[(self.t, layer, tensor)] = np.array(value, dtype=np.int64, copy=True)


# ------------------------------------------------------------------------- helpers


def _requant(values: np.ndarray, shift: int, fmt: FixedFormat, tensor: str, ctx: StepContext) -> np.ndarray:
    """round(values / 2**shift) in fmt's rounding, then fmt's overflow policy (counted)."""
    v = values if isinstance(values, np.ndarray) else np.asarray(values)
    if (v.ndim and v.dtype == np.int64 and fmt.rounding != "stochastic" and isinstance(shift, (int, np.integer))
            and not isinstance(shift, bool) and -62 <= shift <= 62):
        # one numba pass; the numpy path below stays for what it reports (raise, bad values)
        out = np.empty(v.shape, np.int64)
        events, ok = round_overflow(np.ascontiguousarray(v).reshape(-1), int(shift), mode_code(fmt.rounding),
                                    fmt.min_int, fmt.max_int, overflow_code(fmt.overflow), fmt.bits, fmt.signed,
                                    out.reshape(-1))
        if ok and not (events and fmt.overflow == "raise"):
            if ctx.overflow is not None:
                ctx.overflow.record(tensor, fmt, events=int(events), elements=int(v.size))
            return out
    rounded = shift_right_round(values, shift, fmt.rounding) if shift else np.asarray(values, np.int64)
    out, _ = apply_overflow(rounded, fmt, tensor=tensor, step=ctx.t, counter=ctx.overflow)
    return out


def _weight_columns(ctx: StepContext, lp: IntLayerParams, tensor: str, weight: np.ndarray, geometry: Geometry):
    """(W^T, max |W|) for :func:`synaptic_current_dense`: W^T C-contiguous in the narrowest
    integer dtype that holds every code (the same integers), built once per weight array
    and run. None where it does not apply: no cache in ctx, or not a dense map (P > 1, or
    an input index map other than the identity)."""
    if ctx.columns is None or weight.dtype != np.int64 or weight.ndim != 2:
        return None
    key = (lp.name, tensor)
    entry = ctx.columns.get(key)
    if entry is None or entry[0] is not weight:
        columns, bound = None, 0
        if _identity_map(geometry) and weight.shape[1] == geometry.n_in:
            low, high = (int(weight.min()), int(weight.max())) if weight.size else (0, 0)
            bound = max(-low, high)
            dtype = next(d for d in (np.int8, np.int16, np.int32, np.int64)
                         if np.iinfo(d).min <= low and high <= np.iinfo(d).max)
            columns = weight.T.astype(dtype, order="C")
        entry = ctx.columns[key] = (weight, columns, bound)
    return None if entry[1] is None else entry[1:]


_EMPTY2 = np.zeros((0, 0), np.int64)  # an absent (B, n) operand of a kernel


def _identity_map(geometry: Geometry) -> bool:
    """True for a dense layer's map: one position, tap j reads input j."""
    return (geometry.positions == 1 and geometry.taps == geometry.n_in
            and np.array_equal(geometry.idx[:, 0], np.arange(geometry.n_in)))


def _synaptic_current(ctx: StepContext, lp: IntLayerParams, tensor: str, x: np.ndarray, geometry: Geometry
                      ) -> tuple[int, np.ndarray]:
    """(input events, exact int64 sum W x (B, C_out * P)) of lp.<tensor> (weight or
    rec_weight) over the inputs x (B, n_in) int64."""
    weight = getattr(lp, tensor)
    batch = x.shape[0]
    dense = _weight_columns(ctx, lp, tensor, weight, geometry)
    if dense is not None and x.dtype == np.int64 and x.ndim == 2 and x.shape[1] == dense[0].shape[0]:
        out = np.empty((batch, geometry.channels), np.int64)
        return synaptic_current_dense(dense[0], dense[1], x, out), out
    out = np.zeros((batch, geometry.channels, geometry.positions), np.int64)
    events = synaptic_current(weight, x, geometry.idx, out)
    return events, out.reshape(batch, geometry.n_out)


def _shl(values, shift: int) -> np.ndarray:
    """Exact left shift by ``shift`` >= 0 bits (aligning a term of an exact sum)."""
    return np.asarray(values, np.int64) << np.int64(shift)


#: trace -> (shift of lambda * trace, shift of the value, rounding shift) in layer_shifts
_TRACE_SHIFTS = {"post_trace": ("SH_P_DEC", "SH_P_IN", "SH_P"), "pre_trace": ("SH_Q_DEC", "SH_Q_IN", "SH_Q"),
                 "bias_trace": ("SH_QB_DEC", "SH_QB_IN", "SH_QB"), "rec_pre_trace": ("SH_QB_DEC", "SH_QB_IN", "SH_QB")}


def _trace_update(ctx, lp: IntLayerParams, decay: int, trace: np.ndarray, trace_fmt: FixedFormat,
                  value: np.ndarray, tensor: str, nonzero_quantity: str | None) -> np.ndarray:
    """trace = round(decay * trace + value) into trace_fmt: one rounding of the exact sum
    (shifts from the spec). ``nonzero_quantity``: the activity quantity its non-zero
    values are (None: already observed elsewhere this step)."""
    decay_shift, value_shift, shift = (lp.shifts[key] for key in _TRACE_SHIFTS[tensor])
    name = f"{lp.name}.{tensor}"
    out = None
    block, block_value = trace, value
    if trace.ndim == 0 and isinstance(value, np.int64):  # the bias trace q_b: a 1 x 1 block
        block, block_value = trace.reshape(1, 1), np.full((1, 1), value)
    if (block.ndim == 2 and isinstance(block_value, np.ndarray) and block_value.shape == block.shape
            and block.dtype == np.int64 and block_value.dtype == np.int64 and trace_fmt.rounding != "stochastic"
            and -62 <= shift <= 62):
        # one numba pass (exact sum, rounding, overflow); the numpy path below reports what it raises
        out = np.empty(block.shape, np.int64)
        events, ok, nonzero = trace_step(block, decay, decay_shift, block_value, value_shift, shift,
                                         mode_code(trace_fmt.rounding), trace_fmt.min_int, trace_fmt.max_int,
                                         overflow_code(trace_fmt.overflow), trace_fmt.bits, trace_fmt.signed, out)
        if ok and not (events and trace_fmt.overflow == "raise"):
            if ctx.overflow is not None:
                ctx.overflow.record(name, trace_fmt, events=int(events), elements=int(out.size))
            out = out.reshape(trace.shape)
        else:
            out = None
    if out is None:
        wide = _shl(decay * trace, decay_shift) + _shl(value, value_shift)
        out = _requant(wide, shift, trace_fmt, name, ctx)
        nonzero = np.count_nonzero(value)
    if nonzero_quantity is not None:
        ctx.observe(lp.name, nonzero_quantity, nonzero)
    return out


def _trace_plan(ctx: StepContext, lp: IntLayerParams, updates) -> tuple:
    """(spec, record names, formats) of kernels.trace_steps for these updates of ``lp``
    (see _trace_updates), built once per layer and set of traces: each row holds decay,
    trace_left, value_left, shift, mode, lo, hi, policy, bits, signed (the TRACE_*
    columns). Checked on use against the formats and decays passed, and the layer's shifts
    (a layer rebuilt by a weight write keeps them)."""
    key = ("traces", lp.name, *(update[4] for update in updates))
    plan = ctx.constants.get(key)
    if (plan is None or plan[0] is not lp.shifts
            or any(fmt is not update[2] or decay != update[0] for fmt, decay, update in zip(plan[3], plan[4], updates))):
        rows = []
        for decay, _, trace_fmt, _, tensor, _ in updates:
            decay_shift, value_shift, shift = (lp.shifts[k] for k in _TRACE_SHIFTS[tensor])
            rows.append([decay, decay_shift, value_shift, *_format_args(trace_fmt, shift)])
        plan = ctx.constants[key] = (lp.shifts, np.array(rows, np.int64),
                                     tuple(f"{lp.name}.{update[4]}" for update in updates),
                                     tuple(update[2] for update in updates), tuple(update[0] for update in updates))
    return plan[1:4]


_ONE_BLOCK = np.ones((1, 1), np.int64)  # the bias trace's input 1 as a 1 x 1 block (only read)


def _trace_updates(ctx, lp: IntLayerParams, updates) -> list:
    """Every trace update of one layer and step, in order: ``updates`` holds the arguments
    of :func:`_trace_update` after ``lp`` (decay, trace, trace_fmt, value, tensor,
    nonzero_quantity). One kernels.trace_steps call where every update qualifies for
    trace_step and none reports anything (an overflow under `raise`, a value out of the
    rounding contract); otherwise each runs through _trace_update, which reports it.
    Overflow records and observed quantities as _trace_update makes them, in order."""
    spec, names, formats = _trace_plan(ctx, lp, updates)
    blocks, values = [], []
    for (_, trace, trace_fmt, value, _, _), shift in zip(updates, spec[:, 3].tolist()):
        if trace.ndim == 0 and isinstance(value, np.int64):  # the bias trace q_b: a 1 x 1 block
            trace, value = trace.reshape(1, 1), _ONE_BLOCK if value == 1 else np.full((1, 1), value)
        if not (isinstance(value, np.ndarray) and trace.ndim == 2 and value.shape == trace.shape
                and trace.dtype == np.int64 and value.dtype == np.int64 and trace.flags.c_contiguous
                and value.flags.c_contiguous and trace_fmt.rounding != "stochastic" and -62 <= shift <= 62):
            return [_trace_update(ctx, lp, *update) for update in updates]
        blocks.append(trace)
        values.append(value)
    outs = tuple(np.empty(trace.shape, np.int64) for trace in blocks)
    results = np.zeros((len(blocks), 3), np.int64)  # ok = 0 until the kernel writes it
    trace_steps(tuple(blocks), tuple(values), spec, outs, results)
    results = results.tolist()
    if not all(ok and not (events and fmt.overflow == "raise") for (events, ok, _), fmt in zip(results, formats)):
        return [_trace_update(ctx, lp, *update) for update in updates]
    for (events, _, nonzero), name, fmt, out, update in zip(results, names, formats, outs, updates):
        if ctx.overflow is not None:
            ctx.overflow.record(name, fmt, events=events, elements=out.size)
        if update[5] is not None:
            ctx.observe(lp.name, update[5], nonzero)
    return [out.reshape(update[1].shape) for out, update in zip(outs, updates)]


def _fusable(fmt: FixedFormat, shift: int) -> bool:
    return fmt.rounding != "stochastic" and -62 <= shift <= 62


def _format_args(fmt: FixedFormat, shift: int) -> tuple:
    """(shift, mode, lo, hi, policy, bits, signed): how the kernels round into ``fmt``."""
    return (shift, mode_code(fmt.rounding), fmt.min_int, fmt.max_int, overflow_code(fmt.overflow), fmt.bits,
            fmt.signed)


def _lif_constants(ctx: StepContext, lp: IntLayerParams) -> tuple:
    """(fusable, current args, membrane args, record names) of _lif_fused, built once per
    layer (a layer rebuilt by a weight write keeps its formats, constants and shifts)."""
    key = ("lif", lp.name)
    entry = ctx.constants.get(key)
    if entry is None or entry[0] is not lp.fmts or entry[1] is not lp.shifts or entry[2] is not lp.const:
        f, sh = lp.fmts, lp.shifts
        fusable = _fusable(f.current, sh["SH_CUR"]) and _fusable(f.membrane, sh["SH_MEM"])
        entry = ctx.constants[key] = (lp.fmts, lp.shifts, lp.const, fusable, _format_args(f.current, sh["SH_CUR"]),
                                      _format_args(f.membrane, sh["SH_MEM"]),
                                      (f"{lp.name}.current", f"{lp.name}.membrane"))
    return entry[3:]


_EMPTY1 = np.zeros(0, np.int64)  # an absent (n,) operand of a kernel


def _lif_fused(lp: IntLayerParams, state: IntLayerState, syn, rec, bias, ctx: StepContext):
    """current, u (and spikes, v, spike count) of int_layer_step in one numba pass
    (kernels.lif_forward), or None where the numpy path must run: an unusual dtype or
    shift, stochastic rounding, or anything that path reports (an overflow under
    `raise`, a value out of the rounding contract). Records the overflow events as
    the numpy path does: current, membrane (u), membrane (v)."""
    f, c, sh = lp.fmts, lp.const, lp.shifts
    fusable, cur_args, mem_args, (cur_name, mem_name) = _lif_constants(ctx, lp)
    membrane = state.membrane
    if (not fusable or syn.dtype != np.int64 or membrane.dtype != np.int64 or membrane.shape != syn.shape
            or (rec is not None and rec.dtype != np.int64) or (bias is not None and bias.dtype != np.int64)):
        return None
    shape = syn.shape
    current, u = np.empty(shape, np.int64), np.empty(shape, np.int64)
    spiking = lp.spiking
    spikes = np.empty(shape if spiking else (0, 0), np.int64)
    v = np.empty(shape if spiking else (0, 0), np.int64)
    cur_events, u_events, v_events, n_spikes, ok = lif_forward(
        syn, sh["SH_W_CUR"], _EMPTY2 if rec is None else rec, sh["SH_REC_CUR"],
        _EMPTY1 if bias is None else bias, sh["SH_B_CUR"], *cur_args, c.beta, membrane, sh["SH_BV"], sh["SH_CM"],
        *mem_args, c.theta, spiking, lp.reset == "soft", current, u, spikes, v)
    if not ok or (cur_events and f.current.overflow == "raise") or (
            (u_events or v_events) and f.membrane.overflow == "raise"):
        return None
    if ctx.overflow is not None:
        n = current.size
        ctx.overflow.record(cur_name, f.current, events=cur_events, elements=n)
        ctx.overflow.record(mem_name, f.membrane, events=u_events, elements=n)
        if spiking:
            ctx.overflow.record(mem_name, f.membrane, events=v_events, elements=n)
    if not spiking:
        return current, u, None, None, None
    return current, u, spikes, v, n_spikes


# ------------------------------------------------------------------------- layer step


def int_layer_step(lp: IntLayerParams, state: IntLayerState, x: np.ndarray, ctx: StepContext
                   ) -> tuple[IntLayerState, IntRecord]:
    """One time step of one layer on int64 codes (STLLR.md, "One spiking layer").

    x: (B, n_in) codes in ``fmts.input`` (spikes 0/1 for every layer after the first).
    """
    f, c, g, name = lp.fmts, lp.const, lp.geometry, lp.name
    batch = x.shape[0]
    n_out = g.n_out
    # -- synaptic current: exact sum of W x (+ W_rec o[t-1]) (+ b), one requantization
    sh = lp.shifts
    events, syn = _synaptic_current(ctx, lp, "weight", x, g)
    ctx.observe(name, "events", events)
    ctx.observe(name, "neurons", batch * n_out)
    rec = bias = None
    if lp.kind == "recurrent":
        rec_events, rec = _synaptic_current(ctx, lp, "rec_weight", state.prev_spikes, _dense_geometry(n_out))
        ctx.observe(name, "rec_events", rec_events)
    if lp.bias is not None:
        bias = lp.bias if g.positions == 1 else np.repeat(lp.bias, g.positions)
    fused = _lif_fused(lp, state, syn, rec, bias, ctx)
    if fused is not None:
        current, u, spikes, v, n_spikes = fused
    else:  # the reference numpy path (also what reports an overflow under `raise`)
        wide = _shl(syn, sh["SH_W_CUR"])
        if rec is not None:
            wide = wide + _shl(rec, sh["SH_REC_CUR"])
        if bias is not None:
            wide = wide + _shl(bias, sh["SH_B_CUR"])[None, :]
        current = _requant(wide, sh["SH_CUR"], f.current, f"{name}.current", ctx)
        # -- membrane: u = round(beta * v + current), one rounding into the membrane format
        wide = _shl(c.beta * state.membrane, sh["SH_BV"]) + _shl(current, sh["SH_CM"])
        u = _requant(wide, sh["SH_MEM"], f.membrane, f"{name}.membrane", ctx)
        spikes = v = n_spikes = None
    ctx.put(name, "current", current)
    ctx.put(name, "u", u)
    if not lp.spiking:
        new = state._replace(membrane=u)
        record = IntRecord(x, current, u, u, None, None, None, None, None, None)
        if ctx.traces:
            updates = [(c.lambda_pre, state.pre_trace, f.pre_trace, x, "pre_trace", "inputs")]
            if lp.bias is not None:
                updates.append((c.lambda_pre, state.bias_trace, f.pre_trace, np.int64(1), "bias_trace", "steps"))
            q, *rest = _trace_updates(ctx, lp, updates)
            ctx.observe(name, "input_elements", x.size)
            qb = rest[0] if rest else state.bias_trace
            new = new._replace(pre_trace=q, bias_trace=qb)
            record = record._replace(pre_trace=q, bias_trace=qb)
            ctx.put(name, "pre_trace", q)
            if lp.bias is not None:
                ctx.put(name, "bias_trace", qb)
        return new, record
    # -- spike, reset
    if spikes is None:
        z = u - c.theta  # exact, one bit wider than the membrane; no overflow possible
        spikes = (z > 0).astype(np.int64)
        n_spikes = int(spikes.sum())
        if lp.reset == "soft":
            v = u - c.theta * spikes
        else:
            v = np.where(spikes == 1, 0, u)
        v = _requant(v, 0, f.membrane, f"{name}.membrane", ctx)  # overflow only (no shift)
    ctx.observe(name, "spikes", n_spikes)
    ctx.put(name, "spikes", spikes)
    ctx.put(name, "membrane", v)
    new = state._replace(membrane=v, prev_spikes=spikes if lp.kind == "recurrent" else None)
    if not ctx.traces:
        return new, IntRecord(x, current, u, spikes, None, None, None, None, state.prev_spikes, None)
    # -- Psi(z), z = u - theta
    if c.psi_kind == "triangle":
        d = np.maximum(c.psi_width - np.abs(u - c.theta), 0)  # membrane format
        wide = c.psi_slope * d  # frac psi_slope + membrane
        psi = _requant(wide, sh["SH_PSI_TRI"], f.psi, f"{name}.psi", ctx)
        ctx.observe(name, "psi_support", np.count_nonzero(d))
    else:
        lut = f.psi_lut
        psi = np.empty(u.shape, np.int64)
        if not (u.ndim == 2 and u.dtype == np.int64 and c.psi_lut.dtype == np.int64
                and psi_lookup(u, c.theta, c.psi_lut, lut.index_shift,
                               lut.mantissa_bits if lut.kind == "segmented" else -1, psi)):
            psi = c.psi_lut[psi_lut_index(np.abs(u - c.theta), lut)]
    ctx.put(name, "psi", psi)
    # -- traces
    updates = [(c.lambda_post, state.post_trace, f.post_trace, psi, "post_trace", "psi"),
               (c.lambda_pre, state.pre_trace, f.pre_trace, x, "pre_trace", "inputs")]
    if lp.bias is not None:
        updates.append((c.lambda_pre, state.bias_trace, f.pre_trace, np.int64(1), "bias_trace", "steps"))
    rec_in = rec_q = None
    if lp.kind == "recurrent":
        rec_in = state.prev_spikes
        # its non-zero inputs are the forward's rec_events, already observed
        updates.append((c.lambda_pre, state.rec_pre_trace, f.pre_trace, rec_in, "rec_pre_trace", None))
    p, q, *rest = _trace_updates(ctx, lp, updates)
    ctx.observe(name, "input_elements", x.size)
    qb = rest.pop(0) if lp.bias is not None else state.bias_trace
    if lp.kind == "recurrent":
        rec_q = rest.pop(0)
        ctx.put(name, "rec_pre_trace", rec_q)
    for key, value in (("post_trace", p), ("pre_trace", q), ("bias_trace", qb if lp.bias is not None else None)):
        ctx.put(name, key, value)
    new = new._replace(pre_trace=q, post_trace=p, bias_trace=qb, rec_pre_trace=rec_q)
    return new, IntRecord(x, current, u, spikes, psi, q, state.post_trace, qb, rec_in, rec_q)


def int_step(params: IntParams, state: IntState, x_t: np.ndarray, ctx: StepContext
             ) -> tuple[IntState, tuple[IntRecord, ...]]:
    """Advance every layer by one step; x_t (B, n_in0) int64 codes in quant.input."""
    layers, records = [], []
    x = x_t
    for lp, ls in zip(params.layers, state.layers):
        ls, record = int_layer_step(lp, ls, x, ctx)
        layers.append(ls)
        records.append(record)
        x = record.output
    return state._replace(layers=tuple(layers)), tuple(records)


# ------------------------------------------------------------------------- learning


def int_learning_signals(params: IntParams, records, target: np.ndarray, ctx: StepContext) -> dict[int, np.ndarray]:
    """L[t] per learning layer (int64 codes; error format for the readout, else learning_signal).

    error = y - onehot (mse) or p - onehot with p the integer softmax of y (ce,
    fixedpoint/softmax.py); the 1/(B k) of the float loss is folded into eta.
    BP: L^l = round(W^{l+1 T} g^{l+1}), g = round(L^{l+1} psi^{l+1}) (= error above the
    readout); DFA: L^l = round(B^l error); sDFA: L^l = round(B^l sign(error)).
    """
    out_lp = params.layers[-1]
    readout = len(params.layers) - 1
    f_out = out_lp.fmts
    y = records[-1].output
    if f_out.membrane.frac < 0:
        raise InputError("quant.membrane: the readout needs frac >= 0 to hold the target 1.0")
    onehot = np.zeros_like(y)
    rows = np.arange(y.shape[0])
    if params.loss == "ce":
        _, products = int_softmax(y, params.softmax, out_lp.shifts["SH_SM_IDX"])
        prob = _requant(products, out_lp.shifts["SH_SM_P"], f_out.softmax, f"{out_lp.name}.softmax", ctx)
        ctx.put(out_lp.name, "softmax", prob)
        onehot[rows, target] = np.int64(1) << np.int64(f_out.softmax.frac)
        error = _requant(prob - onehot, out_lp.shifts["SH_SM_ERR"], f_out.error, f"{out_lp.name}.error", ctx)
    else:
        onehot[rows, target] = np.int64(1) << np.int64(f_out.membrane.frac)
        error = _requant(y - onehot, out_lp.shifts["SH_ERR"], f_out.error, f"{out_lp.name}.error", ctx)
    ctx.observe(out_lp.name, "window_samples", y.shape[0])
    ctx.put(out_lp.name, "error", error)
    signals = {readout: error}
    wanted = set(params.learners)
    lowest = min(wanted)
    if params.learning_signal == "bp":
        grad = error  # g of the layer above
        for i in range(readout - 1, lowest - 1, -1):
            above, lp = params.layers[i + 1], params.layers[i]
            batch = grad.shape[0]
            back = np.zeros((batch, above.geometry.n_in), np.int64)
            macs = transpose_mac(above.weight, grad.reshape(batch, above.geometry.channels, above.geometry.positions),
                                 above.geometry.idx, back)
            ctx.observe(lp.name, "bp_pairs", macs)
            fl = lp.fmts.learning_signal
            signal = _requant(back, lp.shifts["SH_SIG"], fl, f"{lp.name}.learning_signal", ctx)
            signals[i] = signal
            ctx.put(lp.name, "learning_signal", signal)
            if i == lowest:
                break
            psi = records[i].psi
            prod = signal * psi  # its non-zeros: signal_psi, observed in int_learn_step
            grad = _requant(prod, lp.shifts["SH_G"], fl, f"{lp.name}.learning_signal", ctx)
            ctx.put(lp.name, "grad", grad)
        return {i: signals[i] for i in wanted}
    sign = np.sign(error) if params.learning_signal == "sdfa" else None
    for i in wanted:
        if i == readout:
            continue
        lp = params.layers[i]
        fl = lp.fmts.learning_signal
        if sign is None:
            wide = error @ lp.feedback.T  # exact int64
            signal = _requant(wide, lp.shifts["SH_SIG"], fl, f"{lp.name}.learning_signal", ctx)
        else:
            wide = sign @ lp.feedback.T
            signal = _requant(wide, lp.shifts["SH_SIG"], fl, f"{lp.name}.learning_signal", ctx)
        # counted by the readout's non-zero errors (its "signal", observed in int_learn_step)
        signals[i] = signal
        ctx.put(lp.name, "learning_signal", signal)
    return {i: signals[i] for i in wanted}


def _modulate(lp: IntLayerParams, a: np.ndarray, b: np.ndarray, shift: str, quantity: str,
              ctx: StepContext) -> np.ndarray:
    """round(a * b) into the modulation format (a a modulation code, b psi or p[t-1];
    ``shift`` names the spec's shift); its non-zero products are ``quantity``."""
    prod = a * b
    ctx.observe(lp.name, quantity, np.count_nonzero(prod))
    return _requant(prod, lp.shifts[shift], lp.fmts.modulation, f"{lp.name}.modulation", ctx)


def _scale_signal(lp: IntLayerParams, alpha: int, signal: np.ndarray, ctx: StepContext) -> np.ndarray:
    """round(alpha * L) into the modulation format (one per neuron: window_neurons)."""
    return _requant(alpha * signal, lp.shifts["SH_A"], lp.fmts.modulation, f"{lp.name}.modulation", ctx)


def acc_dtype(update: FixedFormat) -> type:
    """Storage dtype of the update-format accumulators: int32 where it holds every code of
    the format (each stored value has had the format's overflow applied), else int64. Half
    the memory traffic of int64 in the per-window-step pass over them; every sum is still
    formed exactly in int64."""
    int32 = np.iinfo(np.int32)
    return np.int32 if int32.min <= update.min_int and update.max_int <= int32.max else np.int64


def int_accumulate(lp: IntLayerParams, acc: dict, record: IntRecord, signal: np.ndarray, bias_mode: str,
                   ctx: StepContext) -> dict:
    """acc += sum_b round(L_i e_ij) for this step (STLLR.md update), new dict returned.

    Per-neuron factors (modulation format): causal m = round(round(alpha_pre L) psi)
    (readout: round(alpha_pre L)), non-causal n = round(round(alpha_post L) p[t-1]).
    Per synapse: c = m q_j + n x_j exact, rounded once into the update format per sample,
    summed over the batch exactly, added to the accumulator, overflow of ``update``.
    """
    f, c, g, name = lp.fmts, lp.const, lp.geometry, lp.name
    fu = f.update
    store = acc_dtype(fu)
    batch = signal.shape[0]
    shape3 = (batch, g.channels, g.positions)
    a_pre = _scale_signal(lp, c.alpha_pre, signal, ctx)
    causal = a_pre if not lp.spiking else _modulate(lp, a_pre, record.psi, "SH_M", "causal_mod", ctx)
    noncausal = np.zeros((0, 0, 0), np.int64)
    if lp.spiking and c.alpha_post != 0:
        a_post = _scale_signal(lp, c.alpha_post, signal, ctx)
        noncausal = _modulate(lp, a_post, record.post_trace_prev, "SH_N", "noncausal_mod", ctx).reshape(shape3)
        ctx.put(name, "noncausal", noncausal)
    ctx.put(name, "causal", causal)
    new = {}

    def correlate(geometry, pre, x, tensor, acc_name, prefix, shifts):
        """Weight-shaped sum over the batch of round(m q_j + n x_j), into acc[tensor]."""
        shape = (batch, geometry.channels, geometry.positions)
        shift_bits = [lp.shifts[key] for key in shifts]
        old = acc[tensor]
        fused = False  # overflow of the update format applied (and counted) by the kernel
        if (_identity_map(geometry) and old.dtype in (np.int64, np.int32)
                and old.shape == (geometry.channels, geometry.n_in) and pre.dtype == np.int64
                and x.dtype == np.int64 and pre.shape == x.shape == (batch, geometry.n_in)):
            # dense layer: overflow(acc + this step's rounded contributions) in one pass
            args = (causal.reshape(batch, -1), pre, noncausal.reshape(batch, -1) if noncausal.size else _EMPTY2, x,
                    *shift_bits, mode_code(fu.rounding), old, fu.min_int, fu.max_int, overflow_code(fu.overflow),
                    fu.bits, fu.signed)
            total = np.empty(old.shape, store)
            n_c, n_nc, n_contrib, events = accumulate_update_dense(*args, total)
            fused = not (events and fu.overflow == "raise")
            if not fused and store != np.int64:  # only int64 holds the exact sums that _requant reports
                total = np.empty(old.shape, np.int64)
                accumulate_update_dense(*args, total)
        else:
            # the kernel adds this step's rounded contributions onto a copy of the accumulator
            # (the same exact int64 sum as acc + (0 + contributions))
            total = np.array(old, dtype=np.int64, order="C", copy=True)
            n_c, n_nc, n_contrib = accumulate_update(
                causal.reshape(shape), pre, noncausal.reshape(shape) if noncausal.size else noncausal, x,
                geometry.idx, *shift_bits, mode_code(fu.rounding), total)
        ctx.observe(name, f"{prefix}causal_pairs", n_c)
        ctx.observe(name, f"{prefix}noncausal_pairs", n_nc)
        ctx.observe(name, f"{prefix}contrib", n_contrib)
        if fused:
            out = total
            if ctx.overflow is not None:
                ctx.overflow.record(f"{name}.{acc_name}", fu, events=int(events), elements=int(out.size))
        else:
            out = _requant(total, 0, fu, f"{name}.{acc_name}", ctx).astype(store, copy=False)
        ctx.put(name, f"acc_{tensor}", out)
        return out

    new["weight"] = correlate(g, record.pre_trace, record.input, "weight", "update", "", ("SH_EC", "SH_EN", "SH_U"))
    if lp.kind == "recurrent":  # recurrent synapses: pre-synaptic spikes o[t-1] and q_rec
        new["rec_weight"] = correlate(_dense_geometry(g.n_out), record.rec_pre_trace, record.rec_input,
                                      "rec_weight", "rec_update", "rec_", ("SH_EC_REC", "SH_EN_REC", "SH_U_REC"))
    if lp.bias is not None:
        if bias_mode == "reference":
            # counted by signal_psi (spiking) or signal (readout), observed in int_learn_step
            term = signal * record.psi if lp.spiking else signal  # db = L psi, or L (readout)
            shift = lp.shifts["SH_DB"]
        else:  # exact: b is a weight on a constant input 1 with pre-trace q_b
            shift = lp.shifts["SH_DBX"]
            term = causal * record.bias_trace
            ctx.observe(name, "bias_causal", np.count_nonzero(term))
            if noncausal.size:
                nc = noncausal.reshape(batch, -1)
                term = term + _shl(nc, lp.shifts["SH_DBN"])
                ctx.observe(name, "bias_noncausal", np.count_nonzero(nc))
        per_sample = term.reshape(shape3).sum(axis=2)  # exact sum over positions
        rounded = shift_right_round(per_sample, shift, fu.rounding)
        new["bias"] = _requant(acc["bias"] + rounded.sum(axis=0), 0, fu, f"{name}.bias_update", ctx).astype(
            store, copy=False)
        ctx.put(name, "acc_bias", new["bias"])
    return new


def int_learn_step(params: IntParams, state: IntState, records, target: np.ndarray, ctx: StepContext) -> IntState:
    """One window step: learning signals, eligibility, accumulation into the update format."""
    signals = int_learning_signals(params, records, target, ctx)
    layers = list(state.layers)
    for i in params.learners:
        lp = params.layers[i]
        # per-neuron quantities of this window step, observed once (several ops read them)
        signal, batch = signals[i], signals[i].shape[0]
        ctx.observe(lp.name, "signal", np.count_nonzero(signal))
        if lp.spiking:
            ctx.observe(lp.name, "signal_psi", np.count_nonzero(signal * records[i].psi))
        ctx.observe(lp.name, "window_neurons", batch * lp.geometry.n_out)
        ctx.observe(lp.name, "window_channels", batch * lp.geometry.channels)
        acc = int_accumulate(lp, layers[i].acc, records[i], signals[i], params.bias_update, ctx)
        layers[i] = layers[i]._replace(acc=acc)
    return state._replace(layers=tuple(layers))


def layer_shape(lp: IntLayerParams) -> LayerShape:
    """What the datapath spec needs of one layer."""
    g = lp.geometry
    return LayerShape(lp.index, lp.kind, g.n_in, g.channels, g.positions, g.taps, lp.bias is not None, lp.reset,
                      lp.fmts, lp.const)


def params_spec(params: IntParams, train: bool) -> dict:
    """The datapath spec of a run: forward only (inference) or with traces and learning."""
    learning = Learning(params.learning_signal, params.bias_update, params.learners, params.loss) if train else None
    return network_spec([layer_shape(lp) for lp in params.layers], learning)


def lane_layout(params: IntParams) -> dict[tuple[int, str], tuple[int, int]]:
    """(layer, tensor) -> (first lane, count): layers in order; weight (row-major, torch
    layout), rec_weight, bias. One xorshift32 lane per stored weight."""
    layout, start = {}, 0
    for lp in params.layers:
        for tensor in ("weight", "rec_weight", "bias"):
            value = getattr(lp, tensor)
            if value is not None:
                layout[(lp.index, tensor)] = (start, value.size)
                start += value.size
    return layout


def int_weight_write(params: IntParams, state: IntState, etas: dict[int, int], ctx: StepContext
                     ) -> tuple[IntParams, IntState]:
    """The write of every learning layer; accumulators back to 0 (signum: decayed).

    sgd: W <- round(W - eta acc); signum: W <- round(W - eta sign(acc)) and the
    accumulator decays (acc <- acc - (acc >> n)) instead of going back to 0; lion:
    W <- round(W - eta sign(m + (d >> n1))), m <- m + (d >> n2), d = g - m, g = acc in the
    momentum format (spec.Optimizer). etas: layer index -> eta code in the learning_rate
    format (sgd: lr / (B k), signum and lion: lr; see IntNetwork.etas).
    """
    lanes = state.lanes.copy()
    momentum = dict(state.momentum or {})
    lion = params.optimizer.kind == "lion"
    layout = lane_layout(params)
    new_layers, new_states = list(params.layers), list(state.layers)
    for i in params.learners:
        lp, ls = params.layers[i], state.layers[i]
        f = lp.fmts
        changes, acc = {}, {}
        for tensor, fmt, shift_names in (("weight", f.weight, ("SH_WW", "SH_WA", "SH_LW", "SH_LA")),
                                         ("rec_weight", f.weight, ("SH_WW", "SH_WA", "SH_LW", "SH_LA")),
                                         ("bias", f.bias, ("SH_BW", "SH_BA", "SH_LBW", "SH_LBA"))):
            value = getattr(lp, tensor)
            if value is None:
                continue
            step = ls.acc[tensor]  # acc_dtype: the write kernels widen each element to int64
            if lion:
                step = _lion_direction(lp, tensor, step, momentum, params.optimizer, ctx)
            elif params.optimizer.kind == "signum":
                step = np.sign(step)
            if params.optimizer.kind != "sgd":
                w_shift, a_shift = lp.shifts[shift_names[2]], lp.shifts[shift_names[3]]
            else:
                w_shift, a_shift = lp.shifts[shift_names[0]], lp.shifts[shift_names[1]]
            first, count = layout[(i, tensor)]
            changes[tensor] = _write_tensor(f"{lp.name}.{tensor}", value, step, etas[i], w_shift, a_shift, fmt,
                                            lanes[first:first + count], ctx)
            if params.optimizer.kind == "signum":  # the accumulator is the momentum: decay it
                old = ls.acc[tensor]
                decay = shift_right_round(old, params.optimizer.momentum_shift, f.update.rounding)
                acc[tensor] = _requant(old - decay, 0, f.update, f"{lp.name}.update", ctx)
                momentum[(i, tensor)] = acc[tensor]  # carried into the next batch's accumulator
                ctx.put(lp.name, f"decayed_acc_{tensor}", acc[tensor])
            else:
                acc[tensor] = np.zeros_like(ls.acc[tensor])
            ctx.put(lp.name, f"new_{tensor}", changes[tensor])
        ctx.count_write(lp.name, (etas[i], params.optimizer),
                        lambda lp=lp, eta=etas[i]: weight_write_ops(layer_shape(lp), eta, params.optimizer))
        new_layers[i] = replace(lp, **changes)
        new_states[i] = ls._replace(acc=acc)
    return (replace(params, layers=tuple(new_layers)),
            IntState(tuple(new_states), lanes, momentum if params.optimizer.kind != "sgd" else state.momentum))


def _write_tensor(name: str, value: np.ndarray, step: np.ndarray, eta: int, w_shift: int, a_shift: int,
                  fmt: FixedFormat, lanes: np.ndarray, ctx: StepContext) -> np.ndarray:
    """The written codes of one tensor: round((W << w_shift) - (eta step << a_shift)) in
    the weight format's rounding (``lanes``, a view, advance in place), then its overflow.
    One fused numba pass, except under ``raise``, which the numpy path reports."""
    flat_step = np.ascontiguousarray(step).reshape(-1)
    out = np.empty(value.size, np.int64)
    where = f"{name} weight write (quant.learning_rate, update, weight)"
    if fmt.overflow != "raise":
        events, top_weight, top_step = weight_write_overflow(
            value.reshape(-1), flat_step, np.int64(eta), w_shift, a_shift, mode_code(fmt.rounding), lanes,
            fmt.min_int, fmt.max_int, overflow_code(fmt.overflow), fmt.bits, fmt.signed, out)
        # the exactness check of the unfused path, on the same operands: out is discarded if it fails
        check_exact(where, max(int(top_weight) << w_shift, eta * int(top_step) << a_shift).bit_length() + 2)
        if ctx.overflow is not None:
            ctx.overflow.record(name, fmt, events=int(events), elements=int(value.size))
        return out.reshape(value.shape)
    flat_step = flat_step.astype(np.int64, copy=False)
    top = max(int(np.abs(value).max(initial=0)) << w_shift, eta * int(np.abs(flat_step).max(initial=0)) << a_shift)
    check_exact(where, top.bit_length() + 2)
    weight_write(value.reshape(-1), flat_step, np.int64(eta), w_shift, a_shift, mode_code(fmt.rounding), lanes, out)
    written, _ = apply_overflow(out.reshape(value.shape), fmt, tensor=name, step=ctx.t, counter=ctx.overflow)
    return written


def _lion_direction(lp: IntLayerParams, tensor: str, acc: np.ndarray, momentum: dict, optimizer: Optimizer,
                    ctx: StepContext) -> np.ndarray:
    """sign(m + (d >> n1)) of one tensor (int64 -1/0/+1), and m <- m + (d >> n2) in
    ``momentum`` (d = g - m, g = acc in the momentum format; shifts round in its mode)."""
    fmt = lp.fmts.momentum
    key = (lp.index, tensor)
    m = momentum[key]
    if fmt.rounding != "stochastic" and fmt.overflow != "raise":  # one fused pass (kernels.lion_direction)
        direction = np.empty(acc.size, np.int64)
        new_m = np.empty(acc.size, np.int64)
        g_events, m_events, ok = lion_direction(
            np.ascontiguousarray(acc).reshape(-1), np.ascontiguousarray(m, np.int64).reshape(-1),
            lp.shifts["SH_MOM"], optimizer.direction_shift, optimizer.momentum_shift, mode_code(fmt.rounding),
            fmt.min_int, fmt.max_int, overflow_code(fmt.overflow), fmt.bits, fmt.signed, direction, new_m)
        if ok:  # else the numpy path below raises with its message
            if ctx.overflow is not None:
                for events in (g_events, m_events):
                    ctx.overflow.record(f"{lp.name}.momentum", fmt, events=int(events), elements=int(acc.size))
            momentum[key] = new_m.reshape(m.shape)
            ctx.put(lp.name, f"momentum_{tensor}", momentum[key])
            return direction.reshape(acc.shape)
    g = _requant(acc.astype(np.int64, copy=False), lp.shifts["SH_MOM"], fmt, f"{lp.name}.momentum", ctx)
    d = g - m
    direction = np.sign(m + shift_right_round(d, optimizer.direction_shift, fmt.rounding))
    # m + round(d / 2^n) lies between m and g: inside the format (counted all the same)
    momentum[key] = _requant(m + shift_right_round(d, optimizer.momentum_shift, fmt.rounding), 0, fmt,
                             f"{lp.name}.momentum", ctx)
    ctx.put(lp.name, f"momentum_{tensor}", momentum[key])
    return direction


def initial_momentum(params: IntParams) -> dict | None:
    """Zero momentum for every learned parameter (None for sgd): lion's momentum words, or
    signum's accumulator carried from one batch to the next."""
    if params.optimizer.kind == "sgd":
        return None
    return {(i, tensor): np.zeros_like(getattr(params.layers[i], tensor))
            for i in params.learners for tensor in ("weight", "rec_weight", "bias")
            if getattr(params.layers[i], tensor) is not None}


# ------------------------------------------------------------------------- shell





def initial_state(params: IntParams, batch: int, lanes: np.ndarray, traces: bool = True,
                  momentum: dict | None = None) -> IntState:
    """All-zero layer states for a batch (accumulators included); lanes and the optimizer's
    momentum carried over."""
    layers = []
    for lp in params.layers:
        g = lp.geometry
        z = lambda n: np.zeros((batch, n), np.int64)  # noqa: E731
        acc = None
        if lp.index in params.learners:
            store = acc_dtype(lp.fmts.update)
            acc = {"weight": np.zeros(lp.weight.shape, store)}
            if lp.rec_weight is not None:
                acc["rec_weight"] = np.zeros(lp.rec_weight.shape, store)
            if lp.bias is not None:
                acc["bias"] = np.zeros(lp.bias.shape, store)
            if params.optimizer.kind == "signum" and momentum is not None:  # the accumulator is the momentum
                acc = {tensor: momentum[(lp.index, tensor)].astype(store) for tensor in acc}
        layers.append(IntLayerState(
            membrane=z(g.n_out),
            pre_trace=z(g.n_in) if traces else None,
            post_trace=z(g.n_out) if traces and lp.spiking else None,
            bias_trace=np.zeros((), np.int64) if traces else None,
            prev_spikes=z(g.n_out) if lp.kind == "recurrent" else None,
            rec_pre_trace=z(g.n_out) if traces and lp.kind == "recurrent" else None,
            acc=acc,
        ))
    return IntState(tuple(layers), lanes, momentum)


@dataclass
class IntResult:
    """Outcome of one batch; ``log`` holds (t, layer, tensor) -> codes when requested."""

    readout: np.ndarray  # (B, T, classes) membrane codes of y
    spikes: list  # per spiking layer (B, T, n_out) 0/1
    prediction: np.ndarray  # (B,) argmax of y summed over the window
    etas: dict = field(default_factory=dict)  # layer -> eta code used by the write
    log: dict | None = None


def _float_to_codes(name: str, values: np.ndarray, fmt: FixedFormat, lanes: np.ndarray | None,
                    counter: OverflowCounter) -> tuple[np.ndarray, np.ndarray | None]:
    words = None
    if fmt.rounding == "stochastic":
        lanes = next_states(lanes)
        words = lanes
    codes = fmt.quantize(np.asarray(values, np.float64).reshape(-1), rng_bits=words, tensor=name, counter=counter)
    return codes.reshape(np.shape(values)), lanes


class IntNetwork:
    """Stateful shell over the integer core: weights, lanes and counters of one model.

    ``from_float(net, quant, lr)`` quantizes a :class:`stllr.network.SpikingNetwork`;
    ``infer(x)`` and ``train_batch(x, target)`` run whole samples (x: (B, T, *input_shape)
    floats on the input grid, target: (B,) class indices); ``to_float()`` gives the
    weights back as float tensors in a copy of the float network.
    """

    def __init__(self, params: IntParams, lanes: np.ndarray, net, lr: float) -> None:
        self.params = params
        self.lanes = lanes
        self.momentum = initial_momentum(params)  # lion's optimizer state (None for sgd)
        self.net = net
        self.lr = float(lr)
        self.overflow = OverflowCounter()
        self.ops = OpCounter()
        self._codes: np.ndarray | None = None  # run's input codes (T, B, n), reused by the next run

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_float(cls, net, quant: QuantConfig | None = None, lr: float = 1e-3, rule: str | None = None,
                   optimizer: str = "sgd", betas: tuple[float, float] | None = None) -> "IntNetwork":
        from core.config import layer_shapes, resolve_layer
        from stllr.learning import learning_layers

        quant = quant or QuantConfig()
        network, learning = net.network_config, net.learning_config
        check_learning(learning)
        check_layer_indices(network, quant)
        overflow = OverflowCounter()
        layers = []
        shapes = layer_shapes(network)
        total = sum(p.numel() for p in net.parameters())
        lanes = seed_lanes(quant.seed, total)
        lane = 0
        for index, (cfg, layer, (in_shape, out_shape)) in enumerate(zip(network.layers, net.layers, shapes)):
            fmts = layer_formats(quant, index)
            const = layer_constants(network, learning, quant, index, fmts)
            if cfg.kind == "conv2d":
                geometry = conv_geometry(in_shape, out_shape, cfg.kernel, cfg.stride, cfg.padding)
            else:
                geometry = dense_geometry(math.prod(in_shape), math.prod(out_shape))
            name = f"layer{index}"
            arrays = {}
            for tensor, fmt in (("weight", fmts.weight), ("rec_weight", fmts.weight), ("bias", fmts.bias)):
                param = getattr(layer, tensor, None)
                if param is None:
                    arrays[tensor] = None
                    continue
                values = param.detach().double().numpy()
                if tensor == "weight":
                    values = values.reshape(values.shape[0], -1)
                sub = lanes[lane:lane + values.size]
                codes, sub = _float_to_codes(f"{name}.{tensor}", values, fmt, sub, overflow)
                lanes[lane:lane + values.size] = sub
                lane += values.size
                arrays[tensor] = codes
            feedback = None
            if cfg.kind != "readout" and learning.learning_signal in ("dfa", "sdfa"):
                feedback = fmts.feedback.quantize(net.feedback(index).double().numpy(), tensor=f"{name}.feedback",
                                                  counter=overflow)
            lp = IntLayerParams(index, cfg.kind, geometry, fmts, const, resolve_layer(network, learning, index).reset,
                                arrays["weight"], arrays["rec_weight"], arrays["bias"], feedback)
            layers.append(lp)
        shifts = network_shifts([layer_shape(lp) for lp in layers], learning.learning_signal)
        layers = [replace(lp, shifts={name: sh.value for name, sh in shifts[lp.index].items()}) for lp in layers]
        for lp in layers:
            check_widths(datapath_widths(layer_shape(lp), network.layers[-1].size), f"quant (layer {lp.index})")
        out = layers[-1].fmts
        softmax = softmax_constants(out.softmax, out.membrane, out.softmax_lut)  # checked with mse too
        params = IntParams(tuple(layers), learning.learning_signal, learning.bias_update, learning.update,
                           learning.window, tuple(learning_layers(net, rule or learning.rule)),
                           network.layers[-1].size, learning.loss, softmax, optimizer_spec(optimizer, betas))
        model = cls(params, lanes, net, lr)
        model.overflow.merge(overflow)
        return model

    def momentum_format(self, index: int) -> FixedFormat:
        """Format of layer ``index``'s optimizer state: lion's momentum words, or signum's
        carried accumulator (the update format)."""
        fmts = self.params.layers[index].fmts
        return fmts.update if self.params.optimizer.kind == "signum" else fmts.momentum

    # -- runs ---------------------------------------------------------------------------
    def quantize_input(self, x) -> np.ndarray:
        fmt = self.params.layers[0].fmts.input
        values = np.asarray(x, np.float64)
        if fmt.rounding != "stochastic":
            # fast path: inputs already on the grid and in range (spikes, event counts) quantize
            # to themselves with no overflow event, whatever the rounding mode
            codes = np.empty(values.shape, np.int64)
            if grid_codes(np.ascontiguousarray(values).reshape(-1), math.ldexp(1.0, fmt.frac),
                          math.ldexp(1.0, -fmt.frac), fmt.min_int, fmt.max_int, codes.reshape(-1)):
                self.overflow.record("input", fmt, events=0, elements=int(values.size))
                return codes
        return fmt.quantize(values, tensor="input", counter=self.overflow)

    def _step_codes(self, x: np.ndarray) -> np.ndarray:
        """quantize_input(x) for x (B, T, n), time-major and C-contiguous (T, B, n), so each
        step's block is contiguous for the kernels; the same codes and overflow records."""
        fmt = self.params.layers[0].fmts.input
        if fmt.rounding != "stochastic" and x.dtype in (np.float32, np.float64):
            shape = (x.shape[1], x.shape[0], x.shape[2])
            # the buffer of the previous run is reused: only run reads the codes, and nothing
            # it returns or keeps refers to them (a fresh 9 MB here costs page faults each batch)
            codes = self._codes if self._codes is not None and self._codes.shape == shape else np.empty(shape, np.int64)
            if grid_codes_time_major(x, math.ldexp(1.0, fmt.frac), math.ldexp(1.0, -fmt.frac), fmt.min_int,
                                     fmt.max_int, codes):
                self._codes = codes
                self.overflow.record("input", fmt, events=0, elements=int(x.size))
                return codes
        return np.ascontiguousarray(np.swapaxes(self.quantize_input(x), 0, 1))

    def etas(self, batch: int, window: int, lr: float | None = None) -> dict[int, int]:
        """eta code per learning layer: lr / (B k), or lr for sDFA hidden layers (the float
        sDFA signal sign(error) carries no 1/(B k)) and for signum and lion (a step of lr
        whatever the scale of the accumulator). Quantized nearest_even into learning_rate.
        ``lr``: another rate than the model's (the checks of an lr schedule)."""
        lr = self.lr if lr is None else lr
        out = {}
        readout = len(self.params.layers) - 1
        signs = self.params.optimizer.kind != "sgd"
        for i in self.params.learners:
            unscaled = signs or (self.params.learning_signal == "sdfa" and i != readout)
            out[i] = eta_code(self.params.layers[i].fmts.learning_rate, lr, batch, window, unscaled)
        return out

    def update_scale(self, index: int, batch: int, window: int) -> float:
        """Factor from the integer accumulator (real units) to the float model's grad
        (:func:`fixedpoint.config.update_scale`, which the QAT learning path uses too)."""
        return update_scale(self.params.learning_signal, index == len(self.params.layers) - 1, batch, window)

    def run(self, x, target=None, train: bool = False, log: bool = False, apply: bool = True) -> IntResult:
        """One batch: inference, or S-TLLR training with the weight write (if ``apply``)."""
        from core.config import learning_window, window_start

        x = np.asarray(x)
        batch, steps = x.shape[0], x.shape[1]
        codes = self._step_codes(x.reshape(batch, steps, -1))  # (T, B, n)
        params = self.params
        k = learning_window(steps, params.window)
        start = steps - k if train else steps
        etas = self.etas(batch, k) if train else {}
        ctx = StepContext(overflow=self.overflow, ops=self.ops, traces=train, log={} if log else None,
                          spec=params_spec(params, train), columns={})
        state = initial_state(params, batch, self.lanes, traces=train, momentum=self.momentum)
        target = None if target is None else np.asarray(target, np.int64)
        ys, spikes = [], [[] for _ in params.layers[:-1]]
        try:
            for t in range(steps):
                ctx.t = t
                state, records = int_step(params, state, codes[t], ctx)
                ys.append(records[-1].output)
                for store, record in zip(spikes, records[:-1]):
                    store.append(record.output)
                if train and t >= start:
                    state = int_learn_step(params, state, records, target, ctx)
                    if params.update == "online" and apply:
                        params, state = int_weight_write(params, state, etas, ctx)
            if train and params.update == "batch" and apply:
                params, state = int_weight_write(params, state, etas, ctx)
        finally:
            ctx.flush_counts()  # also when an overflow under `raise` stops the run
        self.params, self.lanes, self.momentum = params, state.lanes, state.momentum
        self.last_state = state
        readout = np.stack(ys, 1)
        win = window_start(steps, params.window)
        prediction = readout[:, win:].sum(1).argmax(-1)
        return IntResult(readout, [np.stack(s, 1) for s in spikes], prediction, etas, ctx.log)

    def infer(self, x, log: bool = False) -> IntResult:
        return self.run(x, train=False, log=log)

    def train_batch(self, x, target, log: bool = False) -> IntResult:
        return self.run(x, target, train=True, log=log)

    # -- back to float ------------------------------------------------------------------
    def to_float(self):
        """A deep copy of the float network holding the integer weights' real values."""
        import copy

        import torch

        net = copy.deepcopy(self.net)
        with torch.no_grad():
            for lp, layer in zip(self.params.layers, net.layers):
                for tensor, fmt in (("weight", lp.fmts.weight), ("rec_weight", lp.fmts.weight),
                                    ("bias", lp.fmts.bias)):
                    codes = getattr(lp, tensor)
                    if codes is not None:
                        param = getattr(layer, tensor)
                        param.copy_(torch.from_numpy(fmt.to_float(codes)).reshape(param.shape))
        return net

    def summary(self) -> str:
        """Overflow table (saturate/wrap events per tensor) of everything run so far."""
        return self.overflow.summary()
