"""Float64 emulation of the integer S-TLLR model, in torch, in real units.

An independent path to the same bits: values are float64 tensors in real units (each
an exact multiple of its format's lsb), the synapses are torch's own ``F.linear`` /
``F.conv2d`` / ``conv_transpose`` / ``F.unfold``, constants and the Psi table are
quantized here again, and every rounding is :func:`round_tensor` (the torch twin of
:func:`core.rounding.round_float`). Nothing here calls the integer kernels.
Agreement with :mod:`fixedpoint.network` is exact because float64 holds every
intermediate exactly (the config keeps them within 53 bits, ``fixedpoint.config``).

Stochastic rounding uses the same xorshift32 lanes (``core.rng``) with the offset
``u = word / 2**32``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core.quant import QuantConfig
from fixedpoint.config import check_layer_indices, check_learning, layer_formats
from core.formats import FixedFormat
from core.overflow import FixedOverflowError, OverflowCounter, overflow_message
from core.rng import next_states, seed_lanes
from core.errors import InputError

D = torch.float64


def round_tensor(x: torch.Tensor, frac: int, mode: str, u: torch.Tensor | None = None) -> torch.Tensor:
    """Round float64 ``x`` to the grid 2**-frac (``round_float`` semantics, in torch)."""
    s = torch.ldexp(x, torch.tensor(float(frac), dtype=D))
    f = torch.floor(s)
    if mode == "floor":
        up = torch.zeros_like(s, dtype=torch.bool)
    else:
        r = s - f
        if mode == "stochastic":
            up = r >= 1.0 - u
        elif mode == "nearest_even":
            up = (r > 0.5) | ((r == 0.5) & (torch.remainder(f, 2.0) == 1.0))
        elif mode == "nearest_away":
            up = (r > 0.5) | ((r == 0.5) & (f >= 0.0))
        else:
            raise ValueError(f"unknown rounding mode {mode!r}")
    return torch.ldexp(f + up.to(D), torch.tensor(float(-frac), dtype=D))


def _ldexp(x, e: int) -> torch.Tensor:
    return torch.ldexp(torch.as_tensor(x, dtype=D), torch.tensor(float(e), dtype=D))


class Emulator:
    """Formats applied at every operation; overflow events go to ``self.overflow``."""

    def __init__(self) -> None:
        self.overflow = OverflowCounter()
        self.t = 0

    def fit(self, x: torch.Tensor, fmt: FixedFormat, name: str) -> torch.Tensor:
        """Overflow policy of fmt on real values already on its grid."""
        lo, hi = fmt.min_value, fmt.max_value
        bad = (x < lo) | (x > hi)
        events = int(bad.sum())
        self.overflow.record(name, fmt, events=events, elements=x.numel())
        if not events:
            return x
        if fmt.overflow == "raise":
            first = tuple(int(i) for i in torch.nonzero(bad)[0])
            code = int(_ldexp(x[first], fmt.frac))
            msg = overflow_message(name, self.t, first, code, fmt)
            if events > 1:
                msg += f" ({events} of {x.numel()} elements out of range)"
            raise FixedOverflowError(msg)
        if fmt.overflow == "saturate":
            return x.clamp(lo, hi)
        period = math.ldexp(1.0, fmt.bits - fmt.frac)
        return x - torch.floor((x - lo) / period) * period

    def q(self, x: torch.Tensor, fmt: FixedFormat, name: str, u=None) -> torch.Tensor:
        """Round into fmt (its rounding mode), then its overflow policy."""
        return self.fit(round_tensor(x, fmt.frac, fmt.rounding, u), fmt, name)


def _const(value: float, fmt: FixedFormat) -> float:
    return float(round_tensor(torch.tensor(value, dtype=D), fmt.frac, "nearest_even"))


def _emulated_lut(f, gamma: float) -> dict:
    """The rational-Psi table in real units (docs/fixedpoint_model.md 8.6) and the real
    width of one step of ``a = |z| >> index_shift``."""
    lut, lsb = f.psi_lut, math.ldexp(1.0, -f.membrane.frac)
    step = math.ldexp(1.0, lut.index_shift - f.membrane.frac)
    i = torch.arange(lut.entries, dtype=D)
    if lut.kind == "uniform":
        table = 1.0 / (1.0 + gamma * (i + 0.5) * step) ** 2
    else:
        width = torch.clamp(torch.floor(i / 2.0 ** lut.mantissa_bits) - 1.0, min=0.0)  # octave shift k
        first = (i - width * 2.0 ** lut.mantissa_bits) * torch.pow(2.0, width)  # first a of the bin
        lo, hi = first * step, (first + torch.pow(2.0, width)) * step - lsb  # first and last |z| of the bin
        table = (1.0 / (1.0 + gamma * lo) ** 2 + 1.0 / (1.0 + gamma * hi) ** 2) / 2.0
    return {"lut": round_tensor(table, f.psi.frac, "nearest_even").clamp(f.psi.min_value, f.psi.max_value),
            "lut_step": step}


def _emulated_lut_index(z: torch.Tensor, lut, step: float) -> torch.Tensor:
    """Index of ``|z|`` (real units): ``a`` = whole steps in ``|z|``; segmented: ``k`` counted
    as the octaves ``a >= 2**(mantissa_bits + j)`` (a thermometer, not a leading-one search),
    capped one past the table's last octave (beyond it the index saturates anyway)."""
    a = torch.floor(z.abs() / step)
    if lut.kind == "segmented":
        m = lut.mantissa_bits
        last = min(max(0, ((lut.entries - 1) >> m) - 1) + 1, 64 - m)  # a < 2**63: no octave beyond
        k = sum((a >= 2.0 ** (m + j)).to(D) for j in range(1, last + 1))
        a = k * 2.0 ** m + torch.floor(a / torch.pow(2.0, k))
    return torch.clamp(a, max=lut.entries - 1).long()


class EmulatedNetwork:
    """Float64 mirror of :class:`fixedpoint.network.IntNetwork` (same public runs)."""

    def __init__(self, net, quant: QuantConfig | None = None, lr: float = 1e-3, rule: str | None = None,
                 optimizer: str = "sgd", betas: tuple[float, float] | None = None) -> None:
        from core.config import DEFAULT_BETAS, resolve_layer
        from stllr.learning import learning_layers

        quant = quant or QuantConfig()
        self.net, self.quant, self.lr = net, quant, float(lr)
        self.optimizer = optimizer
        self.betas = tuple(betas) if betas is not None else DEFAULT_BETAS.get(optimizer)
        network, learning = net.network_config, net.learning_config
        check_learning(learning)
        check_layer_indices(network, quant)
        self.learning = learning
        self.learners = tuple(learning_layers(net, rule or learning.rule))
        self.em = Emulator()
        self.lanes = seed_lanes(quant.seed, sum(p.numel() for p in net.parameters()))
        self.layers = []
        lane = 0
        for index, layer in enumerate(net.layers):
            f = layer_formats(quant, index)
            r = resolve_layer(network, learning, index)
            spec = {"f": f, "kind": layer.kind, "layer": layer, "name": f"layer{index}",
                    "beta": _const(r.beta, f.leak), "lambda_pre": _const(r.lambda_pre, f.decay),
                    "alpha_pre": _const(r.alpha_pre, f.factor), "index": index}
            if layer.kind != "readout":
                spec.update(theta=_const(r.theta, f.membrane), lambda_post=_const(r.lambda_post, f.decay),
                            alpha_post=_const(r.alpha_post, f.factor), psi_kind=r.psi.kind,
                            reset=r.reset)
                if r.psi.kind == "triangle":
                    spec.update(width=_const(r.psi.width, f.membrane),
                                slope=_const(r.psi.scale / r.psi.width, f.psi_slope))
                else:
                    spec.update(_emulated_lut(f, r.psi.gamma))
                if learning.learning_signal in ("dfa", "sdfa"):
                    spec["feedback"] = self.em.q(net.feedback(index).to(D), f.feedback, f"layer{index}.feedback")
            for tensor, fmt in (("weight", f.weight), ("rec_weight", f.weight), ("bias", f.bias)):
                param = getattr(layer, tensor, None)
                if param is None:
                    spec[tensor] = None
                    continue
                u = None
                n = param.numel()
                if fmt.rounding == "stochastic":
                    words = next_states(self.lanes[lane:lane + n])
                    self.lanes[lane:lane + n] = words
                    u = torch.from_numpy(words.astype(np.float64) / 2.0 ** 32).reshape(param.shape)
                spec[tensor] = self.em.q(param.detach().to(D), fmt, f"layer{index}.{tensor}", u)
                spec[f"{tensor}_lanes"] = (lane, n)
                spec[f"{tensor}_momentum"] = torch.zeros_like(spec[tensor])  # lion
                lane += n
            self.layers.append(spec)

    # ------------------------------------------------------------------ forward
    def _synapses(self, s, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        layer = s["layer"]
        if s["kind"] == "conv2d":
            return F.conv2d(x.reshape(x.shape[0], *layer.in_shape), weight, None, layer.stride,
                            layer.padding).reshape(x.shape[0], -1)
        return F.linear(x, weight)

    def _bias_flat(self, s) -> torch.Tensor:
        layer = s["layer"]
        positions = math.prod(layer.out_shape[1:]) if s["kind"] == "conv2d" else 1
        return s["bias"].repeat_interleave(positions)

    def _trace(self, s, decay, trace, fmt, value, tensor):
        return self.em.q(decay * trace + value, fmt, f"{s['name']}.{tensor}")

    def neuron(self, s, st: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None,
                                                               torch.Tensor]:
        """The forward of one layer on flat (B, n) real values: (current I, u, spikes o,
        membrane v after reset); readout: (I, y, None, y). Overridden by the QAT learning
        path (``fixedpoint.qat``), which takes these from the Brevitas forward instead."""
        f, name, em = s["f"], s["name"], self.em
        cur = self._synapses(s, x, s["weight"])
        if s["kind"] == "recurrent":
            cur = cur + F.linear(st["prev_spikes"], s["rec_weight"])
        if s["bias"] is not None:
            cur = cur + self._bias_flat(s)
        current = em.q(cur, f.current, f"{name}.current")
        u = em.q(s["beta"] * st["membrane"] + current, f.membrane, f"{name}.membrane")
        if s["kind"] == "readout":
            return current, u, None, u
        spikes = (u - s["theta"] > 0).to(D)
        v = u - s["theta"] * spikes if s["reset"] == "soft" else u * (1.0 - spikes)
        return current, u, spikes, em.fit(v, f.membrane, f"{name}.membrane")

    def layer_step(self, s, st: dict, x: torch.Tensor, train: bool, log) -> dict:
        """One layer, one step: the forward (:meth:`neuron`), then with ``train`` the
        learning path's per-step state (:meth:`trace_step`: Psi and the traces)."""
        f, name = s["f"], s["name"]
        current, u, spikes, v = self.neuron(s, st, x)
        rec = {"input": x, "current": current, "u": u}
        self._put(log, name, "current", current, f.current)
        self._put(log, name, "u", u, f.membrane)
        new = dict(st)
        new["membrane"] = v
        if s["kind"] == "readout":
            rec["output"] = u
        else:
            self._put(log, name, "spikes", spikes, FixedFormat.parse("u1.0"))
            self._put(log, name, "membrane", v, f.membrane)
            rec["output"] = spikes
            rec["rec_input"] = st.get("prev_spikes")
            if s["kind"] == "recurrent":
                new["prev_spikes"] = spikes
        if train:
            self.trace_step(s, st, new, rec, log)
        return new, rec

    def trace_step(self, s, st: dict, new: dict, rec: dict, log) -> None:
        """Psi(u - theta) and the traces of one step, into ``new`` (state) and ``rec``
        (the record the eligibility reads), each rounded into its format (pre_trace,
        post_trace, psi)."""
        f, name, em = s["f"], s["name"], self.em
        x = rec["input"]
        if s["kind"] == "readout":
            new["pre_trace"] = self._trace(s, s["lambda_pre"], st["pre_trace"], f.pre_trace, x, "pre_trace")
            rec["pre_trace"] = new["pre_trace"]
            self._put(log, name, "pre_trace", new["pre_trace"], f.pre_trace)
            if s["bias"] is not None:
                new["bias_trace"] = self._trace(s, s["lambda_pre"], st["bias_trace"], f.pre_trace,
                                                torch.ones((), dtype=D), "bias_trace")
                self._put(log, name, "bias_trace", new["bias_trace"], f.pre_trace)
            rec["bias_trace"] = new["bias_trace"]
            return
        z = rec["u"] - s["theta"]
        if s["psi_kind"] == "triangle":
            d = torch.clamp(s["width"] - z.abs(), min=0.0)
            psi = em.q(s["slope"] * d, f.psi, f"{name}.psi")
        else:
            psi = s["lut"][_emulated_lut_index(z, f.psi_lut, s["lut_step"])]
        self._put(log, name, "psi", psi, f.psi)
        rec["psi"] = psi
        rec["post_trace_prev"] = st["post_trace"]
        new["post_trace"] = self._trace(s, s["lambda_post"], st["post_trace"], f.post_trace, psi, "post_trace")
        new["pre_trace"] = self._trace(s, s["lambda_pre"], st["pre_trace"], f.pre_trace, x, "pre_trace")
        if s["bias"] is not None:
            new["bias_trace"] = self._trace(s, s["lambda_pre"], st["bias_trace"], f.pre_trace,
                                            torch.ones((), dtype=D), "bias_trace")
        rec["pre_trace"], rec["bias_trace"] = new["pre_trace"], new["bias_trace"]
        if s["kind"] == "recurrent":
            new["rec_pre_trace"] = self._trace(s, s["lambda_pre"], st["rec_pre_trace"], f.pre_trace,
                                               st["prev_spikes"], "rec_pre_trace")
            rec["rec_pre_trace"] = new["rec_pre_trace"]
            self._put(log, name, "rec_pre_trace", new["rec_pre_trace"], f.pre_trace)
        for key, fmt in (("post_trace", f.post_trace), ("pre_trace", f.pre_trace), ("bias_trace", f.pre_trace)):
            if key != "bias_trace" or s["bias"] is not None:
                self._put(log, name, key, new[key], fmt)

    # ------------------------------------------------------------------ learning
    def _signals(self, recs, target, log) -> dict:
        em = self.em
        out = self.layers[-1]
        fo = out["f"]
        y = recs[-1]["output"]
        onehot = F.one_hot(target, y.shape[1]).to(D)
        if self.learning.loss == "ce":
            prob = em.q(self._softmax_products(y, fo), fo.softmax, f"{out['name']}.softmax")
            self._put(log, out["name"], "softmax", prob, fo.softmax)
            error = em.q(prob - onehot, fo.error, f"{out['name']}.error")
        else:
            error = em.q(y - onehot, fo.error, f"{out['name']}.error")
        self._put(log, out["name"], "error", error, fo.error)
        readout = len(self.layers) - 1
        signals = {readout: error}
        lowest = min(self.learners)
        mode = self.learning.learning_signal
        if mode == "bp":
            grad = error
            for i in range(readout - 1, lowest - 1, -1):
                above, s = self.layers[i + 1], self.layers[i]
                layer = above["layer"]
                if above["kind"] == "conv2d":
                    g4 = grad.reshape(grad.shape[0], *layer.out_shape)
                    back = torch.nn.grad.conv2d_input((grad.shape[0], *layer.in_shape), above["weight"], g4,
                                                      layer.stride, layer.padding).reshape(grad.shape[0], -1)
                else:
                    back = grad @ above["weight"]
                fl = s["f"].learning_signal
                signal = em.q(back, fl, f"{s['name']}.learning_signal")
                signals[i] = signal
                self._put(log, s["name"], "learning_signal", signal, fl)
                if i == lowest:
                    break
                grad = em.q(signal * recs[i]["psi"], fl, f"{s['name']}.learning_signal")
                self._put(log, s["name"], "grad", grad, fl)
        else:
            base = torch.sign(error) if mode == "sdfa" else error
            for i in self.learners:
                if i == readout:
                    continue
                s = self.layers[i]
                fl = s["f"].learning_signal
                signals[i] = em.q(base @ s["feedback"].T, fl, f"{s['name']}.learning_signal")
                self._put(log, s["name"], "learning_signal", signals[i], fl)
        return {i: signals[i] for i in self.learners}

    @staticmethod
    def _softmax_products(y: torch.Tensor, f) -> torch.Tensor:
        """e R of the integer softmax (fixedpoint/softmax.py) in real units, from y (B, C):
        2^-(d log2 e) as a table of 2^-r at bin centres and a floor shift, 1/S floored."""
        frac, entries = f.softmax.frac, f.softmax_lut.entries
        log2e = _const(1.0 / math.log(2.0), f.softmax)
        table = round_tensor(torch.exp2(-(torch.arange(entries, dtype=D) + 0.5) / entries), frac, "nearest_even")
        d = y.max(dim=-1, keepdim=True).values - y
        t = torch.floor(d * log2e * entries)  # integer part and table index of d log2(e)
        whole = torch.clamp(torch.floor(t / entries), max=frac + 1)
        e = round_tensor(table[torch.remainder(t, entries).long()] * torch.exp2(-whole), frac, "floor")
        total = e.sum(dim=-1, keepdim=True)
        reciprocal = torch.floor(_ldexp(1.0, frac) / total) * _ldexp(1.0, -frac)
        return e * reciprocal

    def _columns(self, s, values: torch.Tensor) -> torch.Tensor:
        """(B, n_in) -> (B, taps, P) as the synapses see them (torch unfold for conv)."""
        layer = s["layer"]
        if s["kind"] == "conv2d":
            return F.unfold(values.reshape(values.shape[0], *layer.in_shape), layer.weight.shape[-1],
                            padding=layer.padding, stride=layer.stride)
        return values.unsqueeze(-1)

    def _accumulate(self, s, st: dict, rec: dict, signal: torch.Tensor, log) -> dict:
        f, name, em = s["f"], s["name"], self.em
        fm, fu = f.modulation, f.update
        mod = f"{name}.modulation"
        a_pre = em.q(s["alpha_pre"] * signal, fm, mod)
        causal = a_pre if s["kind"] == "readout" else em.q(a_pre * rec["psi"], fm, mod)
        noncausal = None
        if s["kind"] != "readout" and s["alpha_post"] != 0.0:
            a_post = em.q(s["alpha_post"] * signal, fm, mod)
            noncausal = em.q(a_post * rec["post_trace_prev"], fm, mod)
            self._put(log, name, "noncausal", noncausal, fm)
        self._put(log, name, "causal", causal, fm)
        batch = signal.shape[0]
        layer = s["layer"]
        channels = layer.out_shape[0] if s["kind"] == "conv2d" else causal.shape[1]
        c3 = causal.reshape(batch, channels, -1)
        n3 = None if noncausal is None else noncausal.reshape(batch, channels, -1)
        acc = dict(st["acc"])

        def correlate(pre_cols, x_cols, c3, n3, key, acc_name):
            contrib = torch.einsum("bop,btp->bot", c3, pre_cols)
            if n3 is not None:
                contrib = contrib + torch.einsum("bop,btp->bot", n3, x_cols)
            rounded = round_tensor(contrib, fu.frac, fu.rounding).sum(0)
            out = em.fit(acc[key] + rounded.reshape(acc[key].shape), fu, f"{name}.{acc_name}")
            self._put(log, name, f"acc_{key}", out, fu)
            return out

        acc["weight"] = correlate(self._columns(s, rec["pre_trace"]), self._columns(s, rec["input"]), c3, n3,
                                  "weight", "update")
        if s["kind"] == "recurrent":
            acc["rec_weight"] = correlate(rec["rec_pre_trace"].unsqueeze(-1), rec["rec_input"].unsqueeze(-1),
                                          causal.unsqueeze(-1), None if noncausal is None else noncausal.unsqueeze(-1),
                                          "rec_weight", "rec_update")
        if s["bias"] is not None:
            if self.learning.bias_update == "reference":
                term = signal * rec["psi"] if s["kind"] != "readout" else signal
            else:
                term = causal * rec["bias_trace"]
                if noncausal is not None:
                    term = term + noncausal
            per_sample = term.reshape(batch, channels, -1).sum(2)
            rounded = round_tensor(per_sample, fu.frac, fu.rounding).sum(0)
            acc["bias"] = em.fit(acc["bias"] + rounded, fu, f"{name}.bias_update")
            self._put(log, name, "acc_bias", acc["bias"], fu)
        return acc

    def _eta(self, i: int, batch: int, window: int) -> float:
        readout = len(self.layers) - 1
        unscaled = self.optimizer != "sgd" or (self.learning.learning_signal == "sdfa" and i != readout)
        value = self.lr if unscaled else self.lr / (batch * window)
        fmt = self.layers[i]["f"].learning_rate
        eta = _const(value, fmt)
        if eta == 0.0 or eta > fmt.max_value:
            raise InputError(f"train.lr / (batch * window) = {value!r} does not fit quant.learning_rate")
        return eta

    def _write(self, etas: dict, log) -> None:
        for i in self.learners:
            s = self.layers[i]
            f = s["f"]
            for tensor, fmt in (("weight", f.weight), ("rec_weight", f.weight), ("bias", f.bias)):
                if s[tensor] is None:
                    continue
                u = None
                if fmt.rounding == "stochastic":
                    first, n = s[f"{tensor}_lanes"]
                    words = next_states(self.lanes[first:first + n])
                    self.lanes[first:first + n] = words
                    u = torch.from_numpy(words.astype(np.float64) / 2.0 ** 32).reshape(s[tensor].shape)
                step = s["state_acc"][tensor].reshape(s[tensor].shape)
                if self.optimizer == "lion":
                    step = self._lion_direction(s, tensor, step, log)
                elif self.optimizer == "signum":
                    step = torch.sign(step)
                exact = s[tensor] - etas[i] * step
                s[tensor] = self.em.q(exact, fmt, f"{s['name']}.{tensor}", u)
                if self.optimizer == "signum":  # the accumulator decays by beta instead of clearing
                    old, fu = s["state_acc"][tensor], f.update
                    decayed = old - round_tensor(old * (1.0 - self.betas[0]), fu.frac, fu.rounding)
                    s["state_acc"][tensor] = self.em.fit(decayed, fu, f"{s['name']}.update")
                    s[f"{tensor}_carried"] = s["state_acc"][tensor]
                    self._put(log, s["name"], f"decayed_acc_{tensor}", s["state_acc"][tensor], fu)
                else:
                    s["state_acc"][tensor] = torch.zeros_like(s["state_acc"][tensor])
                self._put(log, s["name"], f"new_{tensor}", s[tensor].reshape(s["state_acc"][tensor].shape), fmt)

    def _lion_direction(self, s, tensor: str, acc: torch.Tensor, log) -> torch.Tensor:
        """sign(beta1 m + (1 - beta1) g) and m <- beta2 m + (1 - beta2) g, each EMA as
        m + round((g - m) (1 - beta)) in the momentum format, g = acc in that format."""
        fmt, name = s["f"].momentum, s["name"]
        m = s[f"{tensor}_momentum"]
        d = self.em.q(acc, fmt, f"{name}.momentum") - m
        beta1, beta2 = self.betas
        direction = torch.sign(m + round_tensor(d * (1.0 - beta1), fmt.frac, fmt.rounding))
        m = self.em.q(m + round_tensor(d * (1.0 - beta2), fmt.frac, fmt.rounding), fmt, f"{name}.momentum")
        s[f"{tensor}_momentum"] = m
        self._put(log, name, f"momentum_{tensor}", m.reshape(s["state_acc"][tensor].shape), fmt)
        return direction

    # ------------------------------------------------------------------ runs
    @staticmethod
    def _put(log, layer, tensor, value, fmt: FixedFormat) -> None:
        if log is not None and value is not None:
            log[(log["_t"], layer, tensor)] = (value.detach().clone(), fmt.frac)

    def _zero_state(self, batch: int) -> list[dict]:
        states = []
        for s in self.layers:
            layer = s["layer"]
            n_out, n_in = math.prod(layer.out_shape), math.prod(layer.in_shape)
            st = {"membrane": torch.zeros(batch, n_out, dtype=D), "pre_trace": torch.zeros(batch, n_in, dtype=D),
                  "post_trace": torch.zeros(batch, n_out, dtype=D), "bias_trace": torch.zeros((), dtype=D),
                  "prev_spikes": torch.zeros(batch, n_out, dtype=D),
                  "rec_pre_trace": torch.zeros(batch, n_out, dtype=D), "acc": {}}
            if s["index"] in self.learners:
                for tensor in ("weight", "rec_weight", "bias"):
                    if s[tensor] is not None:
                        shape = s[tensor].reshape(s[tensor].shape[0], -1).shape if tensor == "weight" else s[tensor].shape
                        # signum: the accumulator carried from the last write (its momentum)
                        carried = s.get(f"{tensor}_carried")
                        st["acc"][tensor] = carried.clone() if carried is not None else torch.zeros(shape, dtype=D)
            states.append(st)
        return states

    def run(self, x, target=None, train: bool = False, log: bool = False):
        """Same as IntNetwork.run; returns (readout y (B, T, classes) real, spikes list, log)."""
        from core.config import window_start

        x = torch.as_tensor(np.asarray(x), dtype=D)
        batch, steps = x.shape[0], x.shape[1]
        self.em.t = 0
        xq = self.em.q(x.reshape(batch, steps, -1), self.layers[0]["f"].input, "input")
        start = window_start(steps, self.learning.window) if train else steps
        k = steps - start
        etas = {i: self._eta(i, batch, k) for i in self.learners} if train else {}
        target = None if target is None else torch.as_tensor(np.asarray(target), dtype=torch.long)
        states = self._zero_state(batch)
        book = {"_t": 0} if log else None
        ys, spikes = [], [[] for _ in self.layers[:-1]]
        for t in range(steps):
            self.em.t = t
            if book is not None:
                book["_t"] = t
            inp = xq[:, t]
            recs = []
            for j, s in enumerate(self.layers):
                states[j], rec = self.layer_step(s, states[j], inp, train, book)
                recs.append(rec)
                inp = rec["output"]
            ys.append(recs[-1]["output"])
            for store, rec in zip(spikes, recs[:-1]):
                store.append(rec["output"])
            if train and t >= start:
                signals = self._signals(recs, target, book)
                for i in self.learners:
                    states[i]["acc"] = self._accumulate(self.layers[i], states[i], recs[i], signals[i], book)
                if self.learning.update == "online":
                    self._flush(states, etas, book)
        if train and self.learning.update == "batch":
            self._flush(states, etas, book)
        self.etas = etas
        return torch.stack(ys, 1), [torch.stack(s, 1) for s in spikes], book

    def _flush(self, states, etas, log) -> None:
        for i in self.learners:
            self.layers[i]["state_acc"] = states[i]["acc"]
        self._write(etas, log)
        for i in self.learners:
            states[i]["acc"] = self.layers[i]["state_acc"]
