"""Generate the whole-network S-TLLR core (``stllr_net``) from an integer model.

The core is one Verilog-2005 module per network, written from the integer model's own
values: formats and constants (``lp.fmts``, ``lp.const``), the alignment shifts of the
datapath spec (``lp.shifts`` = :func:`fixedpoint.spec.layer_shifts`, the ``RTL_SHIFTS``
of ``rtl-export params``), weights, lanes, etas. Every state update is one
``stllr_requant`` (one rounding of an exact sum sized from its operands, then the
destination's overflow policy with an overflow flag), so the RTL computes what
docs/fixedpoint_model.md section 8 states, operation by operation.

Memories are ``stllr_ram`` instances (one write port, one registered read port: block
RAM), one per tensor and layer: weight, update accumulator, xorshift32 lanes, bias and
its accumulator/lanes, membrane, post_trace, post_trace of the previous step, psi,
learning_signal, grad (BP), pre_trace, spikes, readout error, DFA feedback (a ROM) and
the first layer's input buffer.

One time step, in the integer model's order (section 8.3):

    forward, layer 0 up to the readout:  [PRE] pre-traces q_j and q_b (training only)
                                         [CUR] per neuron: sum_j W[o,j] x_j (one synapse per clock)
                                         [NEU] current, u, spike, reset, Psi, p (one clock)
    learning signals (window steps):     [ERR] e_c = y_c - onehot
                                         [BPL/BPF] BP: L^l_j = sum_o W^{l+1}[o,j] g^{l+1}_o, g^l = L psi
                                                   DFA/sDFA: L^l_j = sum_c B[j,c] e_c / sign(e_c)
    eligibility and accumulation:        [AS/AF] a_pre, m, a_post, n per neuron
                                         [AL] acc[o,j] += round(m q_j + n x_j)   [AB] bias
    weight write (batch: t = T-1,        [WL] W = round(W - eta acc) (stochastic from the
                  online: window steps)       lane), acc = 0     [WBL] bias

Loops are pipelined by one clock (address, then data), so a loop over n elements takes
n + 1 clocks. Overflow flags are counted per tensor (the integer model's names,
``layer<i>.<tensor>``) in saturating counters (32 bits unless asked otherwise) read through
``ovf_sel``/``ovf_count``.
With ``+define+STLLR_TRACE`` the core prints every value it writes
(``TR sample t layer tensor index value``), the trace ``rtl_export.netsim`` compares with
the integer model's log.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError
from core.rounding import mode_code
from core.overflow import overflow_code

#: Tensor names of the overflow counters, per layer, in the integer model's spelling.
SPIKING_TENSORS = ("current", "membrane", "psi", "post_trace", "pre_trace", "bias_trace", "learning_signal",
                   "modulation", "update", "bias_update", "weight", "bias")
RECURRENT_TENSORS = ("rec_pre_trace", "rec_update", "rec_weight")
READOUT_TENSORS = ("current", "membrane", "pre_trace", "bias_trace", "error", "modulation", "update",
                   "bias_update", "weight", "bias")


def clog2(n: int) -> int:
    """Address bits of n words (at least 1).

    >>> [clog2(n) for n in (1, 2, 3, 8, 9, 128)]
    [1, 1, 2, 3, 4, 7]
    """
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


@dataclass
class V:
    """A signed wire of the generated datapath."""

    name: str
    w: int


@dataclass
class Mem:
    name: str
    width: int
    depth: int
    init: str = ""
    reads: list = field(default_factory=list)  # (state condition, CW-bit address expression)
    writes: list = field(default_factory=list)  # (condition, address expression, data expression)

    @property
    def aw(self) -> int:
        return clog2(self.depth)


def hex_words(values, bits: int) -> str:
    """$readmemh text: one word per line, two's complement masked to ``bits``.

    >>> hex_words([3, -1, -128], 8)
    '03\\nff\\n80\\n'
    """
    digits = (bits + 3) // 4
    mask = (1 << bits) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in np.asarray(values).reshape(-1))


def rtl_network_support(model) -> str:
    """'' when the generated core implements this integer model, else the reason."""
    p = model.params
    if p.loss != "mse":
        return f"learning.loss = {p.loss!r} (the core computes the mse error y - onehot)"
    if p.optimizer.kind != "sgd":
        return f"train.optimizer = {p.optimizer.kind!r} (the core writes W - eta acc, sgd)"
    for lp in p.layers:
        if lp.spiking and lp.const.psi_kind == "rational" and lp.fmts.psi_lut.kind != "uniform":
            return (f"layer {lp.index}: psi_lut kind {lp.fmts.psi_lut.kind!r} (the core indexes a uniform table: "
                    "set quant.psi_lut: {kind: uniform, ...})")
        if lp.kind not in ("linear", "recurrent", "readout"):
            return f"layer {lp.index}: kind {lp.kind} (the core has dense, recurrent and readout layers)"
        for name in ("weight", "bias", "current", "membrane", "pre_trace", "post_trace", "psi", "update",
                     "modulation", "learning_signal", "error"):
            fmt = getattr(lp.fmts, name)
            if fmt.bits > 32:
                return f"layer {lp.index}: {name} format wider than 32 bits"
        for name in ("current", "membrane", "pre_trace", "post_trace", "psi", "update", "modulation",
                     "learning_signal", "error"):
            if getattr(lp.fmts, name).rounding == "stochastic":
                return f"layer {lp.index}: stochastic rounding of {name}"
    if p.layers[-1].kind != "readout":
        return "the last layer is not a readout"
    return ""


class NetGen:
    """Builds the Verilog text of ``stllr_net`` and its memory files for one model."""

    def __init__(self, model, steps: int, window: int, *, top: str = "stllr_net", ovf_bits: int = 32) -> None:
        reason = rtl_network_support(model)
        if reason:
            raise InputError(f"the RTL core does not support this network: {reason}")
        self.model = model
        self.p = model.params
        self.layers = self.p.layers
        self.R = len(self.layers) - 1
        self.T = steps
        self.k = window
        self.ws = steps - window
        self.top = top
        if not 4 <= ovf_bits <= 32:
            raise InputError(f"overflow counter width {ovf_bits} must lie in 4..32 bits")
        self.ovf_bits = ovf_bits  # saturating overflow counters
        self.learners = tuple(self.p.learners)
        self.lowest = min(self.learners) if self.learners else self.R
        self.online = self.p.update == "online"
        self.etas = model.etas(1, window)
        # loop counters and addresses: wide enough for the largest loop (the weight write)
        largest = max([lp.geometry.n_out * lp.geometry.n_in for lp in self.layers] + [self.p.num_classes])
        self.cw = clog2(largest + 1) + 1
        self.decl: list[str] = []
        self.body: list[str] = []
        self.mems: dict[str, Mem] = {}
        self.ovf: dict[str, list] = {}
        self.trace: list = []
        self.files: dict[str, str] = {}
        self.n = 0
        self.states: list[str] = ["S_IDLE"]
        self.seq: dict[str, list[str]] = {}
        self.phases: list[tuple[str, str]] = []  # (first state, condition)
        for lp in self.layers:
            for t in (SPIKING_TENSORS if lp.spiking else READOUT_TENSORS):
                self.ovf[f"{lp.name}.{t}"] = []
            if lp.kind == "recurrent":
                for t in RECURRENT_TENSORS:
                    self.ovf[f"{lp.name}.{t}"] = []

    # ---------------------------------------------------------------- datapath helpers
    def _new(self, prefix: str = "n") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def wire(self, expr: str, w: int, prefix: str = "n") -> V:
        name = self._new(prefix)
        self.decl.append(f"    wire signed [{w - 1}:0] {name} = {expr};")
        return V(name, w)

    @staticmethod
    def ext(a: V, w: int) -> str:
        if w == a.w:
            return a.name
        return f"$signed({{{{{w - a.w}{{{a.name}[{a.w - 1}]}}}}, {a.name}}})"

    def const(self, value: int, w: int | None = None) -> V:
        w = w or (int(value).bit_length() + 1)
        lit = f"{w}'sd{abs(int(value))}"
        return self.wire(f"-{lit}" if value < 0 else lit, w, "k")

    def sx(self, raw: str, fmt) -> V:
        """Signed view of a stored word of ``fmt``."""
        if fmt.signed:
            return self.wire(f"$signed({raw})", fmt.bits)
        return self.wire(f"$signed({{1'b0, {raw}}})", fmt.bits + 1)

    def mul(self, a: V, b: V) -> V:
        return self.wire(f"{a.name} * {b.name}", a.w + b.w)

    def add(self, a: V, b: V, op: str = "+") -> V:
        w = max(a.w, b.w) + 1
        return self.wire(f"{self.ext(a, w)} {op} {self.ext(b, w)}", w)

    def mulc(self, value: int, a: V) -> V:
        """value * a for a constant code, as shifts and adds of a (canonical signed digits):
        no multiplier (the iCE40 has 8), the same exact product."""
        value = int(value)
        w = a.w + max(1, abs(value).bit_length()) + 1
        if value == 0:
            return self.const(0)
        digits, n, k = [], abs(value), 0
        while n:
            if n & 1:
                d = 2 - (n & 3)  # +1 or -1 (non-adjacent form)
                digits.append((d, k))
                n -= d
            n >>= 1
            k += 1
        if value < 0:
            digits = [(-d, k) for d, k in digits]
        terms = []
        for d, k in digits:
            shifted = self.ext(self.shl(a, k), w)
            terms.append(("+ " if d > 0 else "- ") + shifted)
        expr = " ".join(terms)
        expr = expr[2:] if expr.startswith("+ ") else f"{w}'sd0 {expr}"
        return self.wire(expr, w)

    def acc_add(self, reg: V, term: V) -> V:
        """reg + term at reg's width (the register is sized for the whole sum)."""
        return self.wire(f"{reg.name} + {self.ext(term, reg.w)}", reg.w)

    def shl(self, a: V, s: int) -> V:
        if s < 0:
            raise ValueError("alignment shifts are >= 0")
        if s == 0:
            return a
        return self.wire(f"$signed({{{a.name}, {s}'d0}})", a.w + s)

    def mux(self, cond: str, a: V, b: V) -> V:
        w = max(a.w, b.w)
        return self.wire(f"({cond}) ? {self.ext(a, w)} : {self.ext(b, w)}", w)

    def req(self, a: V, shift: int, fmt, tensor: str | None, en: str, word: str = "32'd0") -> str:
        """ovf(round(a / 2**shift)) into fmt: the stored word; its flag counted under tensor when en."""
        q = self._new("q")
        flag = self._new("f")
        mode = mode_code(fmt.rounding)
        self.decl.append(f"    wire [{fmt.bits - 1}:0] {q};")
        self.decl.append(f"    wire {flag};")
        self.body.append(
            f"    stllr_requant #(.IW({a.w}), .SHIFT({shift}), .MODE({mode}), .OB({fmt.bits}), "
            f".OSIGNED({int(fmt.signed)}), .OVF({overflow_code(fmt.overflow)})) u_{q} "
            f"(.v({a.name}), .word({word}), .q({q}), .ovf({flag}));")
        if tensor is not None:
            self.ovf[tensor].append((flag, en))
        else:
            self.decl.append(f"    wire unused_{flag} = {flag};")
        return q

    def rnd(self, a: V, shift: int, mode: str) -> V:
        """round(a / 2**shift) with no overflow (the contribution before the accumulator)."""
        w = a.w + 1 - shift if shift > 0 else a.w - shift
        q = self._new("q")
        flag = self._new("f")
        self.decl.append(f"    wire [{w - 1}:0] {q};")
        self.decl.append(f"    wire {flag};")
        self.decl.append(f"    wire unused_{flag} = {flag};")
        self.body.append(
            f"    stllr_requant #(.IW({a.w}), .SHIFT({shift}), .MODE({mode_code(mode)}), .OB({w}), "
            f".OSIGNED(1), .OVF(1)) u_{q} (.v({a.name}), .word(32'd0), .q({q}), .ovf({flag}));")
        return self.wire(f"$signed({q})", w)

    def mem(self, name: str, width: int, depth: int, init=None) -> Mem:
        m = Mem(name, width, max(depth, 2))
        if init is not None:
            values = np.zeros(m.depth, np.int64)
            values[:np.asarray(init).size] = np.asarray(init).reshape(-1)
            m.init = f"{name}.hex"
            self.files[m.init] = hex_words(values, width)
        self.mems[name] = m
        return m

    def tr(self, cond: str, layer: int, tensor: str, index: str, raw: str, signed: bool) -> None:
        self.trace.append((cond, layer, tensor, index, raw, signed))

    def state(self, name: str) -> str:
        self.states.append(name)
        self.seq[name] = []
        return name

    # ---------------------------------------------------------------- build
    def build(self) -> tuple[str, dict[str, str]]:
        L = self.layers
        # ------------------------------------------------ memories
        for lp in L:
            i, f, g = lp.index, lp.fmts, lp.geometry
            n_in, n_out = g.n_in, g.n_out
            self.mem(f"l{i}_w", f.weight.bits, n_out * n_in, lp.weight)
            if lp.bias is not None:
                self.mem(f"l{i}_b", f.bias.bits, n_out, lp.bias)
            self.mem(f"l{i}_v", f.membrane.bits, n_out)
            self.mem(f"l{i}_q", f.pre_trace.bits, n_in)
            if lp.spiking:
                self.mem(f"l{i}_p", f.post_trace.bits, n_out)
                if i in self.learners and lp.const.alpha_post != 0:  # p[t-1] of the non-causal term
                    self.mem(f"l{i}_pp", f.post_trace.bits, n_out)
                self.mem(f"l{i}_psi", f.psi.bits, n_out)
                self.mem(f"l{i}_s", 1, n_out)
            if lp.kind == "recurrent":  # W_rec, o[t-1] for the whole step, q_rec
                self.mem(f"l{i}_rw", f.weight.bits, n_out * n_out, lp.rec_weight)
                self.mem(f"l{i}_sp", 1, n_out)
                self.mem(f"l{i}_qr", f.pre_trace.bits, n_out)
            if i in self.learners:
                self.mem(f"l{i}_acc", f.update.bits, n_out * n_in, np.zeros(n_out * n_in))
                if lp.kind == "recurrent":
                    self.mem(f"l{i}_racc", f.update.bits, n_out * n_out, np.zeros(n_out * n_out))
                if lp.bias is not None:
                    self.mem(f"l{i}_accb", f.update.bits, n_out, np.zeros(n_out))
                from fixedpoint.network import lane_layout
                layout = lane_layout(self.p)
                if f.weight.rounding == "stochastic":
                    first, count = layout[(i, "weight")]
                    self.mem(f"l{i}_lane", 32, count, self.model.lanes[first:first + count].astype(np.int64))
                    if lp.kind == "recurrent":
                        first, count = layout[(i, "rec_weight")]
                        self.mem(f"l{i}_rlane", 32, count, self.model.lanes[first:first + count].astype(np.int64))
                if lp.bias is not None and f.bias.rounding == "stochastic":
                    first, count = layout[(i, "bias")]
                    self.mem(f"l{i}_blane", 32, count, self.model.lanes[first:first + count].astype(np.int64))
                if lp.spiking and i < self.R:
                    self.mem(f"l{i}_sig", f.learning_signal.bits, n_out)
                    if self.p.learning_signal == "bp" and i > self.lowest:
                        self.mem(f"l{i}_g", f.learning_signal.bits, n_out)
                    if self.p.learning_signal in ("dfa", "sdfa"):
                        self.mem(f"l{i}_fb", f.feedback.bits, n_out * self.p.num_classes, lp.feedback)
        f0 = L[0].fmts
        self.mem("x0", f0.input.bits, L[0].geometry.n_in)
        self.mem("err", L[-1].fmts.error.bits, self.p.num_classes)
        self.mems["x0"].writes.append(("in_we", "in_addr_w", "in_data"))

        # ------------------------------------------------ phases
        for lp in L:
            if lp.kind == "recurrent":
                self.phase_copy_spikes(lp)
            self.phase_pre(lp)
            if lp.kind == "recurrent":
                self.phase_rec_pre(lp)
            self.phase_forward(lp)
        if self.learners:
            self.phase_error()
            if self.p.learning_signal == "bp":
                for i in range(self.R - 1, self.lowest - 1, -1):
                    self.phase_signal(L[i])
            else:
                for i in self.learners:
                    if i != self.R:
                        self.phase_signal(L[i])
            for i in self.learners:
                self.phase_accumulate(L[i])
            for i in self.learners:
                self.phase_write(L[i])
        self.states.append("S_END")
        return self.render(), self.files

    # x_j of layer lp: its stored input at address cnt_j (read data valid one clock later)
    def layer_input(self, lp, addr: str, cond: str) -> tuple[V, object]:
        i = lp.index
        if i == 0:
            self.mems["x0"].reads.append((cond, addr))
            return self.sx("x0_rd", lp.fmts.input), lp.fmts.input
        self.mems[f"l{i - 1}_s"].reads.append((cond, addr))
        return self.wire(f"$signed({{1'b0, l{i - 1}_s_rd}})", 2), lp.fmts.input

    def phase_pre(self, lp) -> None:
        """Pre-traces q_j = round(lambda_pre q_j + x_j) and q_b (training only)."""
        i, f, c, sh = lp.index, lp.fmts, lp.const, lp.shifts
        st = self.state(f"S_PRE{i}")
        self.phases.append((st, "tr"))
        cond = f"(state == {st})"
        x, _ = self.layer_input(lp, "cnt_j", cond)
        self.mems[f"l{i}_q"].reads.append((cond, "cnt_j"))
        q_old = self.sx(f"(t_is0 ? {f.pre_trace.bits}'d0 : l{i}_q_rd)", f.pre_trace)
        wide = self.add(self.shl(self.mulc(c.lambda_pre, q_old), sh["SH_Q_DEC"]), self.shl(x, sh["SH_Q_IN"]))
        en = f"({cond} && pv)"
        q = self.req(wide, sh["SH_Q"], f.pre_trace, f"{lp.name}.pre_trace", en)
        self.mems[f"l{i}_q"].writes.append((en, "jd", q))
        self.tr(en, i, "pre_trace", "jd", q, False)
        self.seq[st] = [f"if (cnt_j == {self.cw}'d{lp.geometry.n_in} && pv) begin", "  @NEXT", f"end else @LOOP:{lp.geometry.n_in}"]
        if lp.bias is not None:
            self.decl.append(f"    reg [{f.pre_trace.bits - 1}:0] l{i}_qb;")
            qb_old = self.sx(f"(t_is0 ? {f.pre_trace.bits}'d0 : l{i}_qb)", f.pre_trace)
            one = self.const(1)
            wide = self.add(self.shl(self.mulc(c.lambda_pre, qb_old), sh["SH_QB_DEC"]), self.shl(one, sh["SH_QB_IN"]))
            en_b = f"({cond} && cnt_j == {self.cw}'d0 && !pv)"
            qb = self.req(wide, sh["SH_QB"], f.pre_trace, f"{lp.name}.bias_trace", en_b)
            self.seq[st].insert(0, f"if (cnt_j == {self.cw}'d0 && !pv) l{i}_qb <= {qb};")
            self.tr(en_b, i, "bias_trace", f"{self.cw}'d0", qb, False)

    def phase_copy_spikes(self, lp) -> None:
        """o[t-1] of a recurrent layer into its own memory before this step overwrites the spikes
        (zero at t = 0): the recurrent current, q_rec and the non-causal term read it."""
        i, n = lp.index, lp.geometry.n_out
        st = self.state(f"S_CPY{i}")
        self.phases.append((st, "1'b1"))
        cond = f"(state == {st})"
        self.mems[f"l{i}_s"].reads.append((cond, "cnt_j"))
        en = f"({cond} && pv)"
        self.mems[f"l{i}_sp"].writes.append((en, "jd", f"(t_is0 ? 1'b0 : l{i}_s_rd)"))
        self.seq[st] = [f"if (cnt_j == {self.cw}'d{n} && pv) begin", "  @NEXT", f"end else @LOOP:{n}"]

    def phase_rec_pre(self, lp) -> None:
        """q_rec_k = round(lambda_pre q_rec_k + o_k[t-1]) (training only; the bias-trace shifts)."""
        i, f, c, sh, n = lp.index, lp.fmts, lp.const, lp.shifts, lp.geometry.n_out
        st = self.state(f"S_PRER{i}")
        self.phases.append((st, "tr"))
        cond = f"(state == {st})"
        for name in ("qr", "sp"):
            self.mems[f"l{i}_{name}"].reads.append((cond, "cnt_j"))
        old = self.sx(f"(t_is0 ? {f.pre_trace.bits}'d0 : l{i}_qr_rd)", f.pre_trace)
        spike = self.wire(f"$signed({{1'b0, l{i}_sp_rd}})", 2)
        wide = self.add(self.shl(self.mulc(c.lambda_pre, old), sh["SH_QB_DEC"]), self.shl(spike, sh["SH_QB_IN"]))
        en = f"({cond} && pv)"
        q = self.req(wide, sh["SH_QB"], f.pre_trace, f"{lp.name}.rec_pre_trace", en)
        self.mems[f"l{i}_qr"].writes.append((en, "jd", q))
        self.tr(en, i, "rec_pre_trace", "jd", q, False)
        self.seq[st] = [f"if (cnt_j == {self.cw}'d{n} && pv) begin", "  @NEXT", f"end else @LOOP:{n}"]

    def phase_forward(self, lp) -> None:
        i, f, c, sh, g = lp.index, lp.fmts, lp.const, lp.shifts, lp.geometry
        n_in, n_out = g.n_in, g.n_out
        cur_st = self.state(f"S_CUR{i}")
        neu_st = self.state(f"S_NEU{i}")
        self.phases.append((cur_st, "1'b1"))
        cur, neu = f"(state == {cur_st})", f"(state == {neu_st})"
        both = f"({cur} || {neu})"
        # synaptic sum, one synapse per clock
        self.mems[f"l{i}_w"].reads.append((cur, f"cnt_o * {self.cw}'d{n_in} + cnt_j"))
        x, xf = self.layer_input(lp, "cnt_j", cur)
        w = self.sx(f"l{i}_w_rd", f.weight)
        if f.binary_input:
            self.decl.append(f"    wire l{i}_xbit = {'x0_rd' if i == 0 else f'l{i - 1}_s_rd'}[0];")
            term = self.mux(f"l{i}_xbit", w, self.const(0))
        else:
            term = self.mul(w, x)
        sw = term.w + clog2(n_in) + 1
        self.decl.append(f"    reg signed [{sw - 1}:0] l{i}_sum;")
        nxt = self.acc_add(V(f"l{i}_sum", sw), term)
        rec = lp.kind == "recurrent"
        after_cur = neu_st
        if rec:
            rcur_st = self.state(f"S_RCUR{i}")
            after_cur = rcur_st
            rc = f"(state == {rcur_st})"
            both = f"({cur} || {rc} || {neu})"
            self.mems[f"l{i}_rw"].reads.append((rc, f"cnt_o * {self.cw}'d{n_out} + cnt_j"))
            self.mems[f"l{i}_sp"].reads.append((rc, "cnt_j"))
            rterm = self.mux(f"l{i}_sp_rd", self.sx(f"l{i}_rw_rd", f.weight), self.const(0))
            rsw = rterm.w + clog2(n_out) + 1
            self.decl.append(f"    reg signed [{rsw - 1}:0] l{i}_rsum;")
            rnxt = self.acc_add(V(f"l{i}_rsum", rsw), rterm)
            self.seq[rcur_st] = [
                f"if (pv) l{i}_rsum <= {rnxt.name};",
                f"if (cnt_j == {self.cw}'d{n_out} && pv) begin state <= {neu_st}; pv <= 1'b0; end "
                f"else @LOOP:{n_out}"]
        self.seq[cur_st] = [
            f"if (pv) l{i}_sum <= {nxt.name};",
            f"if (cnt_j == {self.cw}'d{n_in} && pv) begin state <= {after_cur}; pv <= 1'b0; cnt_j <= {self.cw}'d0; "
            f"end else @LOOP:{n_in}",
        ]
        # neuron update, three clocks: A current; B membrane, spike, reset; C Psi, post-trace
        neu_b = self.state(f"S_NEUB{i}")
        neu_c = self.state(f"S_NEUC{i}") if lp.spiking else None
        nb = f"(state == {neu_b})"
        nc = f"(state == {neu_c})" if neu_c else "1'b0"
        both = f"({both} || {nb} || {nc})"
        for name in ("v", "b", "p"):
            if f"l{i}_{name}" in self.mems:
                self.mems[f"l{i}_{name}"].reads.append((both, "cnt_o"))
        wide = self.shl(V(f"l{i}_sum", sw), sh["SH_W_CUR"])
        if rec:
            wide = self.add(wide, self.shl(V(f"l{i}_rsum", rsw), sh["SH_REC_CUR"]))
        if lp.bias is not None:
            wide = self.add(wide, self.shl(self.sx(f"l{i}_b_rd", f.bias), sh["SH_B_CUR"]))
        curq = self.req(wide, sh["SH_CUR"], f.current, f"{lp.name}.current", neu)
        self.decl.append(f"    reg [{f.current.bits - 1}:0] l{i}_cur;")
        self.tr(neu, i, "current", "cnt_o", curq, True)
        self.seq[neu_st] = [f"l{i}_cur <= {curq};", f"state <= {neu_b};"]
        cur_v = self.sx(f"l{i}_cur", f.current)
        v_old = self.sx(f"(t_is0 ? {f.membrane.bits}'d0 : l{i}_v_rd)", f.membrane)
        wide = self.add(self.shl(self.mulc(c.beta, v_old), sh["SH_BV"]), self.shl(cur_v, sh["SH_CM"]))
        neu = nb  # stage B from here
        uq = self.req(wide, sh["SH_MEM"], f.membrane, f"{lp.name}.membrane", neu)
        u = self.sx(uq, f.membrane)
        self.tr(neu, i, "u", "cnt_o", uq, True)
        last_o = f"cnt_o == {self.cw}'d{n_out - 1}"
        next_o = [f"if ({last_o}) begin", "  @NEXT", "end else begin",
                  f"  cnt_o <= cnt_o + 1'b1; cnt_j <= {self.cw}'d0; pv <= 1'b0; l{i}_sum <= 0; state <= {cur_st};"
                  + (f" l{i}_rsum <= 0;" if rec else ""),
                  "end"]
        if not lp.spiking:
            self.mems[f"l{i}_v"].writes.append((neu, "cnt_o", uq))
            self.decl.append(f"    wire [{f.membrane.bits - 1}:0] y_now = {uq};")
            self.seq[neu_b] = ["y_valid <= 1'b1;", "y_idx <= cnt_o[YIW-1:0];", f"y_val <= {uq};",
                               "@PRED"] + next_o
            self.y_bits = f.membrane.bits
            return
        z = self.add(u, self.const(c.theta), "-")
        spike = f"l{i}_spike"
        self.decl.append(f"    wire {spike} = ({z.name} > {z.w}'sd0);")
        if lp.reset == "soft":
            v_new = self.mux(spike, z, u)
        else:
            v_new = self.mux(spike, self.const(0), u)
        vq = self.req(v_new, 0, f.membrane, f"{lp.name}.membrane", neu)
        self.mems[f"l{i}_v"].writes.append((neu, "cnt_o", vq))
        self.mems[f"l{i}_s"].writes.append((neu, "cnt_o", spike))
        self.tr(neu, i, "spikes", "cnt_o", spike, False)
        self.tr(neu, i, "membrane", "cnt_o", vq, True)
        self.decl.append(f"    reg [{f.membrane.bits - 1}:0] l{i}_u;")
        self.seq[neu_b] = [f"l{i}_u <= {uq};", f"state <= {neu_c};"]
        neu = nc  # stage C: Psi and the post-trace from the registered u
        z = self.add(self.sx(f"l{i}_u", f.membrane), self.const(c.theta), "-")
        ntr = f"({neu} && tr)"
        absz = self.mux(f"{z.name}[{z.w - 1}]", self.wire(f"-{self.ext(z, z.w + 1)}", z.w + 1), z)
        if c.psi_kind == "triangle":
            d = self.add(self.const(c.psi_width), absz, "-")
            d = self.mux(f"{d.name}[{d.w - 1}]", self.const(0), d)
            psiq = self.req(self.mulc(c.psi_slope, d), sh["SH_PSI_TRI"], f.psi, f"{lp.name}.psi", ntr)
        else:
            entries, shift = f.psi_lut.entries, f.psi_lut.index_shift
            idx_w = absz.w
            sel = self.wire(f"{absz.name} >>> {shift}", idx_w)
            iw = clog2(entries)
            last = self.const(entries - 1, max(idx_w, iw + 1))
            capped = self.mux(f"{self.ext(sel, last.w)} > {last.name}", last, sel)
            psiq = self._new("lut")
            self.decl.append(f"    reg [{f.psi.bits - 1}:0] {psiq};")
            cases = "\n".join(f"            {iw}'d{j}: {psiq} = {f.psi.bits}'d{int(v)};"
                              for j, v in enumerate(c.psi_lut))
            self.body.append(f"    always @* begin\n        case ({capped.name}[{iw - 1}:0])\n{cases}\n"
                             f"            default: {psiq} = {f.psi.bits}'d0;\n        endcase\n    end")
            self.decl.append(f"    wire unused_{psiq} = ^{capped.name};")
        psi = self.sx(psiq, f.psi)
        p_old_raw = f"(t_is0 ? {f.post_trace.bits}'d0 : l{i}_p_rd)"
        p_old = self.sx(p_old_raw, f.post_trace)
        wide = self.add(self.shl(self.mulc(c.lambda_post, p_old), sh["SH_P_DEC"]),
                        self.shl(psi, sh["SH_P_IN"]))
        pq = self.req(wide, sh["SH_P"], f.post_trace, f"{lp.name}.post_trace", ntr)
        self.mems[f"l{i}_psi"].writes.append((ntr, "cnt_o", psiq))
        self.mems[f"l{i}_p"].writes.append((ntr, "cnt_o", pq))
        if f"l{i}_pp" in self.mems:
            self.mems[f"l{i}_pp"].writes.append((ntr, "cnt_o", p_old_raw))
        self.tr(ntr, i, "psi", "cnt_o", psiq, False)
        self.tr(ntr, i, "post_trace", "cnt_o", pq, False)
        self.seq[neu_c] = next_o

    def phase_error(self) -> None:
        lp = self.layers[-1]
        f, sh = lp.fmts, lp.shifts
        st = self.state("S_ERR")
        self.phases.append((st, "tr && win"))
        cond = f"(state == {st})"
        self.mems[f"l{self.R}_v"].reads.append((cond, "cnt_j"))
        y = self.sx(f"l{self.R}_v_rd", f.membrane)
        hot = self.const(1 << f.membrane.frac)
        onehot = self.mux(f"jd == {{{{{self.cw - self.tgt_bits}{{1'b0}}}}, tgt}}", hot, self.const(0))
        en = f"({cond} && pv)"
        e = self.req(self.add(y, onehot, "-"), sh["SH_ERR"], f.error, f"{lp.name}.error", en)
        self.mems["err"].writes.append((en, "jd", e))
        self.tr(en, self.R, "error", "jd", e, True)
        self.seq[st] = [f"if (cnt_j == {self.cw}'d{self.p.num_classes} && pv) begin", "  @NEXT", f"end else @LOOP:{self.p.num_classes}"]

    @property
    def tgt_bits(self) -> int:
        return clog2(self.p.num_classes)

    def phase_signal(self, lp) -> None:
        """BP: L_j = round(sum_o W^{l+1}[o, j] g_o); DFA/sDFA: L_j = round(sum_c B[j, c] e_c)."""
        i, f, sh = lp.index, lp.fmts, lp.shifts
        n = lp.geometry.n_out
        loop, fin = self.state(f"S_BPL{i}"), self.state(f"S_BPF{i}")
        self.phases.append((loop, "tr && win"))
        lc, fc = f"(state == {loop})", f"(state == {fin})"
        if self.p.learning_signal == "bp":
            above = self.layers[i + 1]
            inner = above.geometry.n_out
            self.mems[f"l{i + 1}_w"].reads.append((lc, f"cnt_j * {self.cw}'d{n} + cnt_o"))
            a = self.sx(f"l{i + 1}_w_rd", above.fmts.weight)
            src = "err" if i + 1 == self.R else f"l{i + 1}_g"
            sfmt = above.fmts.error if i + 1 == self.R else above.fmts.learning_signal
            self.mems[src].reads.append((lc, "cnt_j"))
            b = self.sx(f"{src}_rd", sfmt)
        else:
            inner = self.p.num_classes
            self.mems[f"l{i}_fb"].reads.append((lc, f"cnt_o * {self.cw}'d{inner} + cnt_j"))
            a = self.sx(f"l{i}_fb_rd", f.feedback)
            self.mems["err"].reads.append((lc, "cnt_j"))
            e = self.sx("err_rd", self.layers[-1].fmts.error)
            if self.p.learning_signal == "sdfa":
                b = None
                minus = self.wire(f"-{self.ext(a, a.w + 1)}", a.w + 1)
                term = self.mux(f"{e.name}[{e.w - 1}]", minus, self.mux(f"{e.name} != {e.w}'sd0", a, self.const(0)))
            else:
                b = e
        if b is not None:
            term = self.mul(a, b)
        sw = term.w + clog2(inner) + 1
        self.decl.append(f"    reg signed [{sw - 1}:0] l{i}_bsum;")
        nxt = self.acc_add(V(f"l{i}_bsum", sw), term)
        self.seq[loop] = [f"if (pv) l{i}_bsum <= {nxt.name};",
                          f"if (cnt_j == {self.cw}'d{inner} && pv) begin state <= {fin}; pv <= 1'b0; end else @LOOP:{inner}"]
        sig = self.req(V(f"l{i}_bsum", sw), sh["SH_SIG"], f.learning_signal, f"{lp.name}.learning_signal", fc)
        self.mems[f"l{i}_sig"].writes.append((fc, "cnt_o", sig))
        self.tr(fc, i, "learning_signal", "cnt_o", sig, True)
        if self.p.learning_signal == "bp" and i > self.lowest:
            self.mems[f"l{i}_psi"].reads.append((f"({lc} || {fc})", "cnt_o"))
            prod = self.mul(self.sx(sig, f.learning_signal), self.sx(f"l{i}_psi_rd", f.psi))
            gq = self.req(prod, sh["SH_G"], f.learning_signal, f"{lp.name}.learning_signal", fc)
            self.mems[f"l{i}_g"].writes.append((fc, "cnt_o", gq))
            self.tr(fc, i, "grad", "cnt_o", gq, True)
        self.seq[fin] = [f"if (cnt_o == {self.cw}'d{n - 1}) begin", "  @NEXT", "end else begin",
                         f"  cnt_o <= cnt_o + 1'b1; cnt_j <= {self.cw}'d0; pv <= 1'b0; l{i}_bsum <= 0; state <= {loop};",
                         "end"]

    def phase_accumulate(self, lp) -> None:
        i, f, c, sh, g = lp.index, lp.fmts, lp.const, lp.shifts, lp.geometry
        n_in, n_out = g.n_in, g.n_out
        s_set, s_fac, s_loop = self.state(f"S_AS{i}"), self.state(f"S_AF{i}"), self.state(f"S_AL{i}")
        s_rec = self.state(f"S_ALR{i}") if lp.kind == "recurrent" else None
        s_bias = self.state(f"S_AB{i}") if lp.bias is not None else None
        self.phases.append((s_set, "tr && win"))
        c_set, c_fac, c_loop = (f"(state == {s})" for s in (s_set, s_fac, s_loop))
        c_bias = f"(state == {s_bias})" if s_bias else "1'b0"
        c_rec = f"(state == {s_rec})" if s_rec else "1'b0"
        whole = f"({c_set} || {c_fac} || {c_loop} || {c_rec} || {c_bias})"
        sig_mem = "err" if not lp.spiking else f"l{i}_sig"
        sig_fmt = f.error if not lp.spiking else f.learning_signal
        self.mems[sig_mem].reads.append((whole, "cnt_o"))
        sig = self.sx(f"{sig_mem}_rd", sig_fmt)
        a_pre_q = self.req(self.mulc(c.alpha_pre, sig), sh["SH_A"], f.modulation,
                           f"{lp.name}.modulation", c_fac)
        a_pre = self.sx(a_pre_q, f.modulation)
        mb = f.modulation.bits
        self.decl.append(f"    reg [{mb - 1}:0] l{i}_m;")
        noncausal = lp.spiking and c.alpha_post != 0
        if lp.spiking:
            for name in ("psi", "pp"):
                if f"l{i}_{name}" in self.mems:
                    self.mems[f"l{i}_{name}"].reads.append((whole, "cnt_o"))
            psi = self.sx(f"l{i}_psi_rd", f.psi)
            m_q = self.req(self.mul(a_pre, psi), sh["SH_M"], f.modulation, f"{lp.name}.modulation", c_fac)
        else:
            m_q = a_pre_q
        fac = [f"l{i}_m <= {m_q};"]
        self.tr(c_fac, i, "causal", "cnt_o", m_q, True)
        if noncausal:
            self.decl.append(f"    reg [{mb - 1}:0] l{i}_n;")
            a_post = self.sx(self.req(self.mulc(c.alpha_post, sig), sh["SH_A"], f.modulation,
                                      f"{lp.name}.modulation", c_fac), f.modulation)
            n_q = self.req(self.mul(a_post, self.sx(f"l{i}_pp_rd", f.post_trace)), sh["SH_N"], f.modulation,
                           f"{lp.name}.modulation", c_fac)
            fac.append(f"l{i}_n <= {n_q};")
            self.tr(c_fac, i, "noncausal", "cnt_o", n_q, True)
        self.seq[s_set] = [f"state <= {s_fac};"]
        self.seq[s_fac] = fac + [f"state <= {s_loop}; cnt_j <= {self.cw}'d0; pv <= 1'b0;"]
        # synapses
        m = self.sx(f"l{i}_m", f.modulation)
        self.mems[f"l{i}_acc"].reads.append((c_loop, f"cnt_o * {self.cw}'d{n_in} + cnt_j"))
        self.mems[f"l{i}_q"].reads.append((c_loop, "cnt_j"))
        x, _ = self.layer_input(lp, "cnt_j", c_loop)
        q = self.sx(f"l{i}_q_rd", f.pre_trace)
        contrib = self.shl(self.mul(m, q), sh["SH_EC"])
        if noncausal:
            n_v = self.sx(f"l{i}_n", f.modulation)
            xbit = f"{'x0_rd' if i == 0 else f'l{i - 1}_s_rd'}[0]"
            nx = self.mux(xbit, n_v, self.const(0)) if f.binary_input else self.mul(n_v, x)
            contrib = self.add(contrib, self.shl(nx, sh["SH_EN"]))
        self.accumulate(lp, "acc", c_loop, n_in, contrib, sh["SH_U"], "update", "acc_weight")
        done_o = [f"if (cnt_o == {self.cw}'d{n_out - 1}) begin", "  @NEXT", "end else begin",
                  f"  cnt_o <= cnt_o + 1'b1; cnt_j <= {self.cw}'d0; pv <= 1'b0; state <= {s_set};", "end"]
        after_bias = f"state <= {s_bias}; pv <= 1'b0;" if s_bias else None
        after_loop = f"state <= {s_rec}; pv <= 1'b0; cnt_j <= {self.cw}'d0;" if s_rec else after_bias
        self.seq[s_loop] = [f"if (cnt_j == {self.cw}'d{n_in} && pv) begin",
                            *([f"  {after_loop}"] if after_loop else [f"  {line}" for line in done_o]),
                            f"end else @LOOP:{n_in}"]
        if s_rec:  # recurrent synapses: pre-synaptic o[t-1] and q_rec
            self.mems[f"l{i}_racc"].reads.append((c_rec, f"cnt_o * {self.cw}'d{n_out} + cnt_j"))
            for name in ("qr", "sp"):
                self.mems[f"l{i}_{name}"].reads.append((c_rec, "cnt_j"))
            contrib = self.shl(self.mul(m, self.sx(f"l{i}_qr_rd", f.pre_trace)), sh["SH_EC_REC"])
            if noncausal:
                nx = self.mux(f"l{i}_sp_rd", self.sx(f"l{i}_n", f.modulation), self.const(0))
                contrib = self.add(contrib, self.shl(nx, sh["SH_EN_REC"]))
            self.accumulate(lp, "racc", c_rec, n_out, contrib, sh["SH_U_REC"], "rec_update", "acc_rec_weight")
            self.seq[s_rec] = [f"if (cnt_j == {self.cw}'d{n_out} && pv) begin",
                               *([f"  {after_bias}"] if after_bias else [f"  {line}" for line in done_o]),
                               f"end else @LOOP:{n_out}"]
        if s_bias:
            self.mems[f"l{i}_accb"].reads.append((whole, "cnt_o"))
            if self.p.bias_update == "reference":
                if lp.spiking:
                    term = self.mul(sig, self.sx(f"l{i}_psi_rd", f.psi))
                else:
                    term = sig
                shift = sh["SH_DB"]
            else:
                term = self.mul(m, self.sx(f"l{i}_qb", f.pre_trace))
                if noncausal:
                    term = self.add(term, self.shl(self.sx(f"l{i}_n", f.modulation), sh["SH_DBN"]))
                shift = sh["SH_DBX"]
            r = self.rnd(term, shift, f.update.rounding)
            old = self.sx(f"(t_is_ws ? {f.update.bits}'d0 : l{i}_accb_rd)", f.update)
            bq = self.req(self.add(old, r), 0, f.update, f"{lp.name}.bias_update", c_bias)
            self.mems[f"l{i}_accb"].writes.append((c_bias, "cnt_o", bq))
            self.tr(c_bias, i, "acc_bias", "cnt_o", bq, True)
            self.seq[s_bias] = done_o

    def accumulate(self, lp, mem: str, cond: str, stride: int, contrib: V, shift: int, tensor: str,
                   trace: str) -> None:
        """acc[o, j] += round(contrib >> shift) into the update format, in the cycle after
        ``cond`` (pv); the accumulator reads as 0 in the window's first step (t_is_ws)."""
        f, i = lp.fmts, lp.index
        r = self.rnd(contrib, shift, f.update.rounding)
        old = self.sx(f"(t_is_ws ? {f.update.bits}'d0 : l{i}_{mem}_rd)", f.update)
        en = f"({cond} && pv)"
        q = self.req(self.add(old, r), 0, f.update, f"{lp.name}.{tensor}", en)
        address = f"cnt_o * {self.cw}'d{stride} + jd"
        self.mems[f"l{i}_{mem}"].writes.append((en, address, q))
        self.tr(en, i, trace, address, q, True)

    def phase_write(self, lp) -> None:
        i, f, sh, g = lp.index, lp.fmts, lp.shifts, lp.geometry
        for tensor, fmt, size, wsh, ash, mem, acc, lane, st_name in (
                ("weight", f.weight, g.n_out * g.n_in, "SH_WW", "SH_WA", f"l{i}_w", f"l{i}_acc", f"l{i}_lane", "WL"),
                ("rec_weight", f.weight, g.n_out * g.n_out, "SH_WW", "SH_WA", f"l{i}_rw", f"l{i}_racc",
                 f"l{i}_rlane", "WRL"),
                ("bias", f.bias, g.n_out, "SH_BW", "SH_BA", f"l{i}_b", f"l{i}_accb", f"l{i}_blane", "WBL")):
            if (tensor == "bias" and lp.bias is None) or (tensor == "rec_weight" and lp.kind != "recurrent"):
                continue
            st = self.state(f"S_{st_name}{i}")
            self.phases.append((st, "tr && wrs"))
            cond = f"(state == {st})"
            en = f"({cond} && pv)"
            for name in (mem, acc):
                self.mems[name].reads.append((cond, "cnt_j"))
            word = "32'd0"
            if fmt.rounding == "stochastic":
                self.mems[lane].reads.append((cond, "cnt_j"))
                word = self._new("lane")
                self.decl.append(f"    wire [31:0] {word};")
                self.body.append(f"    stllr_xorshift32 u_{word} (.s({lane}_rd), .n({word}));")
                self.mems[lane].writes.append((en, "jd", word))
            w_old = self.sx(f"{mem}_rd", fmt)
            a = self.sx(f"{acc}_rd", f.update)
            wide = self.add(self.shl(w_old, sh[wsh]), self.shl(self.mulc(self.etas[i], a), sh[ash]), "-")
            new = self.req(wide, sh[wsh], fmt, f"{lp.name}.{tensor}", en, word)
            self.mems[mem].writes.append((en, "jd", new))
            self.mems[acc].writes.append((en, "jd", f"{f.update.bits}'d0"))
            self.tr(en, i, f"new_{tensor}", "jd", new, True)
            self.seq[st] = [f"if (cnt_j == {self.cw}'d{size} && pv) begin", "  @NEXT", f"end else @LOOP:{size}"]

    # ---------------------------------------------------------------- text
    def render(self) -> str:
        L = self.layers
        sw = clog2(len(self.states) + 1)
        tw = clog2(self.T + 1)
        ovf_names = list(self.ovf)
        kw = clog2(len(ovf_names) + 1)
        n0 = L[0].geometry.n_in
        classes = self.p.num_classes
        out = [f"// {self.top}: generated by rtl_export.netgen from the integer model; do not edit.",
               "// " + " -> ".join(f"{lp.name} {lp.kind} {lp.geometry.n_in}x{lp.geometry.n_out}" for lp in L),
               f"// T = {self.T}, window k = {self.k}, update {self.p.update}, learning signal "
               f"{self.p.learning_signal}, bias update {self.p.bias_update}, learners {list(self.learners)}",
               "// overflow counters (ovf_sel): " + ", ".join(f"{k} {n}" for k, n in enumerate(ovf_names)),
               "`timescale 1ns / 1ps", "",
               f"module {self.top} (",
               "    input  wire clk,",
               "    input  wire rst,",
               "    input  wire in_we,                  // write one first-layer input word (while idle)",
               f"    input  wire [{clog2(n0) - 1}:0] in_addr,",
               f"    input  wire [{L[0].fmts.input.bits - 1}:0] in_data,",
               "    input  wire step_start,             // run one time step (inputs written)",
               "    input  wire train,                  // 1: traces, learning and writes; 0: inference",
               f"    input  wire [{self.tgt_bits - 1}:0] target,  // class label of the sample",
               "    output wire busy,",
               "    output reg  step_done,              // pulse: the step is finished",
               f"    output reg  [{tw - 1}:0] t_now,     // step of the sample (0-based)",
               "    output reg  y_valid,                // readout membrane y of one class",
               f"    output reg  [{clog2(classes) - 1}:0] y_idx,",
               f"    output reg  [{L[-1].fmts.membrane.bits - 1}:0] y_val,",
               "    output reg  pred_valid,             // pulse after the last step: argmax of the window sum of y",
               f"    output reg  [{self.tgt_bits - 1}:0] pred,",
               f"    input  wire [{kw - 1}:0] ovf_sel,",
               "    output reg  [31:0] ovf_count",
               ");",
               f"    localparam integer YIW = {clog2(classes)};"]
        for k, name in enumerate(self.states):
            out.append(f"    localparam [{sw - 1}:0] {name} = {sw}'d{k};")
        out += [f"    reg [{sw - 1}:0] state;",
                f"    reg [{self.cw - 1}:0] cnt_o, cnt_j, jd;",
                "    reg pv, tr;",
                f"    reg [{self.tgt_bits - 1}:0] tgt;",
                f"    wire t_is0 = (t_now == {tw}'d0);",
                f"    wire t_is_ws = (t_now == {tw}'d{self.ws});",
                f"    wire win = (t_now >= {tw}'d{self.ws});",
                f"    wire wrs = {'win' if self.online else f'(t_now == {tw}' + chr(39) + f'd{self.T - 1})'};",
                "    assign busy = (state != S_IDLE);",
                f"    wire [{self.cw - 1}:0] in_addr_w = {{{{{self.cw - clog2(n0)}{{1'b0}}}}, in_addr}};"]
        for m in self.mems.values():
            out.append(f"    wire [{m.width - 1}:0] {m.name}_rd;")
            out.append(f"    reg  [{m.width - 1}:0] {m.name}_wd;")
            out.append(f"    reg  [{self.cw - 1}:0] {m.name}_ra, {m.name}_wa;")
            out.append(f"    reg  {m.name}_we;")
        out += self.decl
        out += self.body
        for m in self.mems.values():
            init = f'"{m.init}"' if m.init else '""'
            out.append(f"    stllr_ram #(.WIDTH({m.width}), .DEPTH({m.depth}), .INIT({init})) u_{m.name} "
                       f"(.clk(clk), .we({m.name}_we), .wa({m.name}_wa[{m.aw - 1}:0]), .wd({m.name}_wd), "
                       f".ra({m.name}_ra[{m.aw - 1}:0]), .rd({m.name}_rd));")
            out.append(f"    wire unused_{m.name} = ^{{{m.name}_ra[{self.cw - 1}:{m.aw}], {m.name}_wa[{self.cw - 1}:{m.aw}]}};"
                       if m.aw < self.cw else "")
            out.append("    always @* begin")
            out.append(f"        {m.name}_ra = {self.cw}'d0;")
            for cond, addr in m.reads:
                out.append(f"        if ({cond}) {m.name}_ra = {addr};")
            out.append(f"        {m.name}_we = 1'b0; {m.name}_wa = {self.cw}'d0; {m.name}_wd = {m.width}'d0;")
            for cond, addr, data in m.writes:
                out.append(f"        if ({cond}) begin {m.name}_we = 1'b1; {m.name}_wa = {addr}; "
                           f"{m.name}_wd = {data}; end")
            out.append("    end")
        # overflow counters
        for k, name in enumerate(ovf_names):
            flags = self.ovf[name]
            ob = self.ovf_bits
            out.append(f"    reg [{ob - 1}:0] ovf_{k};  // {name}")
            terms = " + ".join(f"{{2'd0, {fl} & ({en})}}" for fl, en in flags) or "3'd0"
            out.append(f"    wire [2:0] ovf_inc_{k} = {terms};")
            out.append(f"    wire [{ob}:0] ovf_sum_{k} = {{1'b0, ovf_{k}}} + {{{ob - 2}'d0, ovf_inc_{k}}};")
        out.append("    always @* begin")
        out.append("        case (ovf_sel)")
        for k in range(len(ovf_names)):
            out.append(f"            {kw}'d{k}: ovf_count = {{{32 - self.ovf_bits}'d0, ovf_{k}}};"
                       if self.ovf_bits < 32 else f"            {kw}'d{k}: ovf_count = ovf_{k};")
        out.append("            default: ovf_count = 32'd0;")
        out.append("        endcase")
        out.append("    end")
        # prediction: window sum of y, argmax (first maximum)
        yb = self.y_bits
        ysw = yb + clog2(self.k) + 1
        out += [f"    reg signed [{ysw - 1}:0] ysum [0:{classes - 1}];",
                f"    reg signed [{ysw - 1}:0] ybest;",
                f"    wire signed [{ysw - 1}:0] ysum_old = t_is_ws ? {ysw}'sd0 : ysum[cnt_o[YIW-1:0]];",
                f"    wire signed [{ysw - 1}:0] ysum_new = ysum_old + $signed({{{{{ysw - yb}{{y_now[{yb - 1}]}}}}, y_now}});"]
        pred = [f"if (win) ysum[cnt_o[YIW-1:0]] <= ysum_new;",
                f"if (t_now == {tw}'d{self.T - 1} && (cnt_o == {self.cw}'d0 || ysum_new > ybest)) begin",
                "  ybest <= ysum_new; pred <= cnt_o[YIW-1:0];", "end"]
        # sequential control
        first_cond = self.phases
        out += ["    always @(posedge clk) begin",
                "        step_done <= 1'b0;",
                "        y_valid <= 1'b0;",
                "        pred_valid <= 1'b0;",
                # saturating: a full counter reads all ones ("at least"), never wraps to a small count
                *[f"        if (ovf_inc_{k} != 3'd0) ovf_{k} <= ovf_sum_{k}[{self.ovf_bits}] ? "
                  f"{{{self.ovf_bits}{{1'b1}}}} : ovf_sum_{k}[{self.ovf_bits - 1}:0];" for k in range(len(ovf_names))],
                "        if (rst) begin",
                "            state <= S_IDLE; t_now <= 0; cnt_o <= 0; cnt_j <= 0; jd <= 0; pv <= 1'b0; tr <= 1'b0;",
                "            tgt <= 0; y_idx <= 0; y_val <= 0; pred <= 0; ybest <= 0;",
                *[f"            ovf_{k} <= {self.ovf_bits}'d0;" for k in range(len(ovf_names))],
                "        end else begin",
                "            case (state)",
                "                S_IDLE: if (step_start) begin",
                "                    tr <= train; tgt <= target;",
                f"                    {self.goto(0, first_cond, '                    ').replace('(tr', '(train')}",
                "                end"]
        for idx, (first, _) in enumerate(self.phases):
            # states of this phase: from first up to the next phase's first
            start = self.states.index(first)
            stop = self.states.index(self.phases[idx + 1][0]) if idx + 1 < len(self.phases) else len(self.states) - 1
            for st in self.states[start:stop]:
                lines = []
                for line in self.seq[st]:
                    if "@NEXT" in line:
                        lines.append(line.replace("@NEXT", self.goto(idx + 1, first_cond, "")))
                    elif "@LOOP:" in line:
                        head, lim = line.split("@LOOP:")
                        lines.append(head + self.loop_line(int(lim)))
                    elif line == "@PRED":
                        lines += pred
                    else:
                        lines.append(line)
                out.append(f"                {st}: begin")
                out += [f"                    {ln}" for ln in lines]
                out.append("                end")
        out += ["                S_END: begin",
                "                    step_done <= 1'b1; state <= S_IDLE;",
                f"                    if (t_now == {tw}'d{self.T - 1}) begin t_now <= 0; pred_valid <= 1'b1; end",
                "                    else t_now <= t_now + 1'b1;",
                "                end",
                "                default: state <= S_IDLE;",
                "            endcase",
                "        end",
                "    end"]
        # trace
        out += ["`ifdef STLLR_TRACE", "    integer sample_no = 0;", "    always @(posedge clk) begin",
                f"        if (state == S_END && t_now == {tw}'d{self.T - 1}) sample_no <= sample_no + 1;"]
        for cond, layer, tensor, index, raw, signed in self.trace:
            val = f"$signed({raw})" if signed else raw
            out.append(f'        if ({cond}) $display("TR %0d %0d {layer} {tensor} %0d %0d", sample_no, t_now, '
                       f"{index}, {val});")
        out += ["    end", "`endif", "endmodule", ""]
        text = "\n".join(line for line in out if line != "") + "\n"
        return drop_unused(text)

    def loop_line(self, limit: int) -> str:
        """Issue the next address (cnt_j), its data arrive next clock (pv, jd)."""
        return (f"begin if (cnt_j != {self.cw}'d{limit}) begin cnt_j <= cnt_j + 1'b1; pv <= 1'b1; jd <= cnt_j; end "
                "else pv <= 1'b0; end")

    def goto(self, idx: int, phases, indent: str) -> str:
        """Transition to the first phase at or after ``idx`` whose condition holds (else S_END)."""
        expr = "S_END"
        for first, cond in reversed(phases[idx:]):
            expr = first if cond == "1'b1" else f"({cond}) ? {first} : {expr}"
        return (f"begin state <= {expr}; cnt_o <= {self.cw}'d0; cnt_j <= {self.cw}'d0; pv <= 1'b0; "
                + " ".join(f"l{lp.index}_sum <= 0;" for lp in self.layers)
                + "".join(f" l{lp.index}_rsum <= 0;" for lp in self.layers if lp.kind == "recurrent")
                + " ".join(f" l{i}_bsum <= 0;" for i in self.bsum_layers()) + " end")

    def bsum_layers(self):
        return [int(s[len("S_BPL"):]) for s in self.states if s.startswith("S_BPL")]


_DECL = re.compile(r"^    wire signed \[\d+:0\] ([nk]\d+) = .*;$", re.M)


def drop_unused(text: str) -> str:
    """Remove datapath wires nothing reads (views made for one layer kind and not used)."""
    while True:
        words = re.findall(r"\b[nk]\d+\b", text)
        counts: dict = {}
        for w in words:
            counts[w] = counts.get(w, 0) + 1
        dead = {m.group(1) for m in _DECL.finditer(text) if counts.get(m.group(1)) == 1}
        if not dead:
            return text
        text = "\n".join(line for line in text.split("\n")
                         if not ((m := _DECL.match(line)) and m.group(1) in dead))
