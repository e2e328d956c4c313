"""The exact rules and the worked example of docs/fixedpoint_model.md, section 8, checked.

``DocModel`` below is a re-implementation of the integer S-TLLR model written from the
rules of docs/fixedpoint_model.md section 8 alone (plain int64 arithmetic with its own
rounding and overflow functions; it imports nothing from ``fixedpoint`` but the format
parser, for its fields). The tests check that

1. every ``key = value`` line of the worked example (section 8.13, between the
   ``worked-example`` markers) equals what ``DocModel`` computes, and, for every tensor
   the integer model logs, what ``fixedpoint.network.IntNetwork`` computes (so the doc
   cannot drift from the code);
2. ``DocModel`` equals ``IntNetwork`` on every logged tensor of every step for drawn
   configurations (formats, rounding modes, overflow, bp / dfa / sdfa, batch / online,
   reference / exact bias, triangle / rational Psi, non-binary input, two hidden layers);
3. golden vectors (``rtl_export.golden.simulate``) hold the online accumulators before
   their reset, ``grad`` only where BP passes a signal down, and ``target`` as documented;
4. the format grammar examples of docs/fixedpoint_formats.md parse or are refused as stated.

Run alone: ``.venv/bin/python -m pytest -q -p no:xdist tests/test_docs_example.py``.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from core.formats import FixedFormat

DOCS = Path(__file__).resolve().parent.parent / "docs"
I64 = np.int64

# ------------------------------------------------------------------ rules of section 8 (docs only)

DEFAULTS = {  # docs/fixedpoint_model.md section 2
    "input": "u8.0", "weight": "s8.6", "bias": "s16.10", "current": "s32.10", "membrane": "s16.10",
    "leak": "u12.12", "decay": "u12.11", "factor": "s12.8", "pre_trace": "u16.8", "post_trace": "u16.12",
    "psi": "u8.7", "psi_slope": "u16.12", "error": "s16.10", "learning_signal": "s16.10",
    "modulation": "s16.10", "feedback": "s8.6", "update": "s32.16", "learning_rate": "u16.24",
}


def lo_hi(f):
    return (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1) if f.signed else (0, (1 << f.bits) - 1)


def rnd(v, s, mode):
    """round(v / 2**s) (8.0): s <= 0 an exact left shift."""
    v = np.asarray(v, I64)
    if s <= 0:
        return v << I64(-s)
    q = v >> I64(s)
    rem = v - (q << I64(s))
    half = I64(1) << I64(s - 1)
    if mode == "floor":
        return q
    tie_up = (q & 1) == 1 if mode == "nearest_even" else q >= 0
    assert mode in ("nearest_even", "nearest_away"), mode
    return q + ((rem > half) | ((rem == half) & tie_up)).astype(I64)


def ovf(v, f):
    v = np.asarray(v, I64)
    lo, hi = lo_hi(f)
    if f.overflow == "saturate":
        return np.clip(v, lo, hi)
    if f.overflow == "wrap":
        w = v & I64((1 << f.bits) - 1)
        return np.where(w > hi, w - I64(1 << f.bits), w) if f.signed else w
    assert ((v >= lo) & (v <= hi)).all(), "raise"
    return v


def req(v, s, f):
    return ovf(rnd(v, s, f.rounding), f)


def code(value, frac):
    """Constants (8.1): nearest_even of value * 2**frac."""
    return int(round(math.ldexp(value, frac)))


class DocModel:
    """Dense layers (linear) and the readout, batch B, from docs/fixedpoint_model.md section 8."""

    def __init__(self, network, learning, quant, weights, biases, feedback, lr, batch, steps):
        self.L = len(network["layers"])
        self.R = self.L - 1
        self.learning = {"learning_signal": "bp", "update": "batch", "bias_update": "reference",
                         "rule": "stllr", "window": None, **learning}
        q = dict(quant)
        self.f = []
        for i in range(self.L):
            over = q.get("layers", {}).get(i, {})
            fm = {k: FixedFormat.parse(over.get(k, q.get(k, DEFAULTS[k]))) for k in DEFAULTS}
            if i > 0:
                fm["input"] = FixedFormat.parse("u1.0")
            self.f.append(fm)
        # 8.6: no psi_lut -> the segmented default; a mapping without kind -> uniform
        lut = ({"kind": "uniform", "entries": 64, "index_shift": 3, **q["psi_lut"]} if "psi_lut" in q
               else {"kind": "segmented", "entries": 48, "mantissa_bits": 3, "index_shift": 0})
        neuron = {"beta": 0.9, "theta": 0.6, "reset": "soft", **network.get("neuron", {})}
        psi_net = {"kind": "rational", "gamma": 100.0, "scale": 0.3, "width": 1.0, **network.get("psi", {})}
        self.c = []
        for i, ly in enumerate(network["layers"]):
            f, readout = self.f[i], ly["kind"] == "readout"
            default = ({"lambda_post": 0.0, "lambda_pre": None, "alpha_post": 0.0, "alpha_pre": 1.0} if readout
                       else {"lambda_post": 0.5, "lambda_pre": None, "alpha_post": -0.2, "alpha_pre": 1.0})
            base = {"lambda_post": 0.5, "lambda_pre": None, "alpha_post": -0.2, "alpha_pre": 1.0}
            factors = ({**base, **ly["factors"]} if "factors" in ly
                       else {**default, **learning.get("readout_factors" if readout else "factors", {})})
            beta = ly.get("beta", neuron["beta"])
            lam_pre = beta if factors["lambda_pre"] is None else factors["lambda_pre"]
            c = {"beta": code(beta, f["leak"].frac), "lambda_pre": code(lam_pre, f["decay"].frac),
                 "alpha_pre": code(factors["alpha_pre"], f["factor"].frac), "theta": 0, "lambda_post": 0,
                 "alpha_post": 0, "reset": ly.get("reset", neuron["reset"])}
            if not readout:
                psi = {**psi_net, **ly.get("psi", {})}
                c.update(theta=code(ly.get("theta", neuron["theta"]), f["membrane"].frac),
                         lambda_post=code(factors["lambda_post"], f["decay"].frac),
                         alpha_post=code(factors["alpha_post"], f["factor"].frac), psi_kind=psi["kind"])
                if psi["kind"] == "triangle":
                    c.update(width=code(psi["width"], f["membrane"].frac),
                             slope=code(psi["scale"] / psi["width"], f["psi_slope"].frac))
                else:
                    c["psi_lut"] = lut

                    def rational(z, g=psi["gamma"]):
                        return 1.0 / (1.0 + g * z) ** 2

                    _, hi = lo_hi(f["psi"])
                    s_, fm = lut["index_shift"], f["membrane"].frac
                    if lut["kind"] == "uniform":
                        values = [rational(math.ldexp(j + 0.5, s_ - fm)) for j in range(lut["entries"])]
                    else:  # bin of entry j: the a whose index is j; Psi averaged over its first and last |z|
                        m, values = lut["mantissa_bits"], []
                        for j in range(lut["entries"]):
                            k = max(j // 2 ** m - 1, 0)
                            first = (j - k * 2 ** m) * 2 ** k
                            last = first + 2 ** k - 1
                            values.append((rational(math.ldexp(first * 2 ** s_, -fm))
                                           + rational(math.ldexp((last + 1) * 2 ** s_ - 1, -fm))) / 2)
                    c["lut"] = np.array([min(code(v, f["psi"].frac), hi) for v in values], I64)
            self.c.append(c)
        self.W = [np.array(w, I64) for w in weights]
        self.b = [None if b is None else np.array(b, I64) for b in biases]
        self.B_fb = [None if fb is None else np.array(fb, I64) for fb in feedback]
        self.batch, self.steps = batch, steps
        k = steps if self.learning["window"] is None else self.learning["window"]
        self.start = steps - k
        self.learners = [self.R] if self.learning["rule"] == "readout_only" else list(range(self.L))
        self.eta = {}
        for i in self.learners:
            unscaled = self.learning["learning_signal"] == "sdfa" and i != self.R
            self.eta[i] = code(lr if unscaled else lr / (batch * k), self.f[i]["learning_rate"].frac)
        self.log = {}
        self.sh = [self.shifts(i) for i in range(self.L)]

    def shifts(self, i):
        """The shift table of 8.5-8.9 (names as fixedpoint.spec.layer_shifts / the RTL)."""
        F = {k: v.frac for k, v in self.f[i].items()}
        spiking = i != self.R
        fsig = F["learning_signal"] if spiking else F["error"]
        frac0 = max([F["weight"] + F["input"]] + ([F["bias"]] if self.b[i] is not None else []))
        frac1 = max(F["leak"] + F["membrane"], F["current"])
        fpp = max(F["decay"] + F["post_trace"], F["psi"])
        fqq = max(F["decay"] + F["pre_trace"], F["input"])
        fqb = max(F["decay"] + F["pre_trace"], 0)
        frac_e = F["modulation"] + max(F["pre_trace"], F["input"])
        fw_write = max(F["weight"], F["learning_rate"] + F["update"])
        fb_write = max(F["bias"], F["learning_rate"] + F["update"])
        sh = {"SH_W_CUR": frac0 - F["weight"] - F["input"], "SH_B_CUR": frac0 - F["bias"],
              "SH_CUR": frac0 - F["current"], "SH_BV": frac1 - F["leak"] - F["membrane"],
              "SH_CM": frac1 - F["current"], "SH_MEM": frac1 - F["membrane"],
              "SH_P_DEC": fpp - F["decay"] - F["post_trace"], "SH_P_IN": fpp - F["psi"], "SH_P": fpp - F["post_trace"],
              "SH_Q_DEC": fqq - F["decay"] - F["pre_trace"], "SH_Q_IN": fqq - F["input"], "SH_Q": fqq - F["pre_trace"],
              "SH_QB_DEC": fqb - F["decay"] - F["pre_trace"], "SH_QB_IN": fqb, "SH_QB": fqb - F["pre_trace"],
              "SH_A": F["factor"] + fsig - F["modulation"], "SH_M": F["psi"] if spiking else 0,
              "SH_EC": frac_e - F["modulation"] - F["pre_trace"], "SH_EN": frac_e - F["modulation"] - F["input"],
              "SH_U": frac_e - F["update"], "SH_DB": fsig + (F["psi"] if spiking else 0) - F["update"],
              "SH_DBX": F["modulation"] + F["pre_trace"] - F["update"], "SH_DBN": F["pre_trace"],
              "SH_WW": fw_write - F["weight"], "SH_WA": fw_write - F["learning_rate"] - F["update"],
              "SH_BW": fb_write - F["bias"], "SH_BA": fb_write - F["learning_rate"] - F["update"]}
        if spiking:
            sh.update(SH_PSI_TRI=F["psi_slope"] + F["membrane"] - F["psi"], SH_G=F["psi"], SH_N=F["post_trace"])
            mode, up = self.learning["learning_signal"], self.f[i + 1]
            if mode == "bp":
                g = up["error" if i + 1 == self.R else "learning_signal"].frac
                sh["SH_SIG"] = up["weight"].frac + g - fsig
            else:
                e = self.f[self.R]["error"].frac if mode == "dfa" else 0
                sh["SH_SIG"] = F["feedback"] + e - fsig
        else:
            sh["SH_ERR"] = F["membrane"] - F["error"]
        return sh

    def put(self, t, i, name, value):
        self.log[(t, f"layer{i}", name)] = np.array(value, I64)

    # -- 8.5: forward of one layer
    def forward(self, t, i, x, st):
        f, c, W, b, sh = self.f[i], self.c[i], self.W[i], self.b[i], self.sh[i]
        wx = x @ W.T
        wide = wx << I64(sh["SH_W_CUR"])
        if b is not None:
            wide = wide + (b << I64(sh["SH_B_CUR"]))[None, :]
        cur = req(wide, sh["SH_CUR"], f["current"])
        u_wide = ((c["beta"] * st["v"]) << I64(sh["SH_BV"])) + (cur << I64(sh["SH_CM"]))
        u = req(u_wide, sh["SH_MEM"], f["membrane"])
        for name, value in (("x", x), ("wx", wx), ("current_wide", wide), ("current", cur), ("u_wide", u_wide),
                            ("u", u)):
            self.put(t, i, name, value)
        out = u
        if i != self.R:
            z = u - c["theta"]
            o = (z > 0).astype(I64)
            v = u - c["theta"] * o if c["reset"] == "soft" else np.where(o == 1, 0, u)
            v = ovf(v, f["membrane"])
            if c["psi_kind"] == "triangle":
                d = np.maximum(c["width"] - np.abs(z), 0)
                psi = req(c["slope"] * d, sh["SH_PSI_TRI"], f["psi"])
                self.put(t, i, "d", d)
            else:
                lut = c["psi_lut"]
                a = np.abs(z) >> I64(lut["index_shift"])
                if lut["kind"] == "segmented":  # k = max(0, msb(a) - m), index = (k << m) + (a >> k)
                    m = lut["mantissa_bits"]
                    k = np.array([max(int(v).bit_length() - 1 - m, 0) for v in a.ravel()], I64).reshape(a.shape)
                    a = (k << I64(m)) + (a >> k)
                index = np.minimum(a, len(c["lut"]) - 1)
                psi = c["lut"][index]
                self.put(t, i, "lut_index", index)
            st["p_prev"] = st["p"]
            st["p"] = self.trace(c["lambda_post"], st["p"], psi, f["post_trace"], sh, "P")
            st["psi"], out = psi, o
            for name, value in (("z", z), ("spikes", o), ("membrane", v), ("psi", psi), ("post_trace", st["p"])):
                self.put(t, i, name, value)
            st["v"] = v
        else:
            st["v"] = u
        st["x"] = x
        st["q"] = self.trace(c["lambda_pre"], st["q"], x, f["pre_trace"], sh, "Q")
        self.put(t, i, "pre_trace", st["q"])
        if b is not None:
            st["qb"] = self.trace(c["lambda_pre"], st["qb"], I64(1), f["pre_trace"], sh, "QB")
            self.put(t, i, "bias_trace", st["qb"])
        return out

    @staticmethod
    def trace(decay, tr, value, tf, sh, name):  # 8.5 traces
        wide = ((decay * tr) << I64(sh[f"SH_{name}_DEC"])) + (np.asarray(value, I64) << I64(sh[f"SH_{name}_IN"]))
        return req(wide, sh[f"SH_{name}"], tf)

    # -- 8.3 / 8.10: learning signals
    def signals(self, t, st, target):
        fR = self.f[self.R]
        y = st[self.R]["v"]
        onehot = np.zeros_like(y)
        onehot[np.arange(len(target)), target] = 1 << fR["membrane"].frac
        e = req(y - onehot, self.sh[self.R]["SH_ERR"], fR["error"])
        self.put(t, self.R, "error", e)
        sig = {self.R: e}
        lowest = min(self.learners)
        mode = self.learning["learning_signal"]
        if mode == "bp":
            g = e
            for i in range(self.R - 1, lowest - 1, -1):
                fL = self.f[i]["learning_signal"]
                wide = g @ self.W[i + 1]
                sig[i] = req(wide, self.sh[i]["SH_SIG"], fL)
                self.put(t, i, "bp_wide", wide)
                self.put(t, i, "learning_signal", sig[i])
                if i == lowest:
                    break
                g = req(sig[i] * st[i]["psi"], self.sh[i]["SH_G"], fL)
                self.put(t, i, "grad", g)
        else:
            for i in self.learners:
                if i == self.R:
                    continue
                fL = self.f[i]["learning_signal"]
                source = e if mode == "dfa" else np.sign(e)
                sig[i] = req(source @ self.B_fb[i].T, self.sh[i]["SH_SIG"], fL)
                self.put(t, i, "learning_signal", sig[i])
        return sig

    # -- 8.7 / 8.8: eligibility and accumulation
    def accumulate(self, t, i, L, st, acc):
        f, c, sh = self.f[i], self.c[i], self.sh[i]
        fmod, fu, spiking = f["modulation"], f["update"], i != self.R
        a_pre = req(c["alpha_pre"] * L, sh["SH_A"], fmod)
        m = req(a_pre * st["psi"], sh["SH_M"], fmod) if spiking else a_pre
        n = None
        self.put(t, i, "a_pre", a_pre)
        if spiking and c["alpha_post"] != 0:
            a_post = req(c["alpha_post"] * L, sh["SH_A"], fmod)
            n = req(a_post * st["p_prev"], sh["SH_N"], fmod)
            self.put(t, i, "a_post", a_post)
            self.put(t, i, "noncausal", n)
        self.put(t, i, "causal", m)
        contrib = (m[:, :, None] * st["q"][:, None, :]) << I64(sh["SH_EC"])
        if n is not None:
            contrib = contrib + ((n[:, :, None] * st["x"][:, None, :]) << I64(sh["SH_EN"]))
        self.put(t, i, "contrib_wide", contrib)
        acc["weight"] = ovf(acc["weight"] + rnd(contrib, sh["SH_U"], fu.rounding).sum(0), fu)
        self.put(t, i, "acc_weight", acc["weight"])
        if self.b[i] is not None:
            if self.learning["bias_update"] == "reference":
                term, shift = (L * st["psi"] if spiking else L), sh["SH_DB"]
            else:
                term, shift = m * st["qb"], sh["SH_DBX"]
                if n is not None:
                    term = term + (n << I64(sh["SH_DBN"]))
            self.put(t, i, "bias_wide", term)
            acc["bias"] = ovf(acc["bias"] + rnd(term, shift, fu.rounding).sum(0), fu)
            self.put(t, i, "acc_bias", acc["bias"])

    # -- 8.9: the weight write
    def write(self, t, acc):
        for i in self.learners:
            f, sh = self.f[i], self.sh[i]
            for name, value, fmt, (sw, sa) in (("weight", self.W[i], f["weight"], ("SH_WW", "SH_WA")),
                                               ("bias", self.b[i], f["bias"], ("SH_BW", "SH_BA"))):
                if value is None:
                    continue
                wide = (value << I64(sh[sw])) - ((self.eta[i] * acc[i][name]) << I64(sh[sa]))
                new = req(wide, sh[sw], fmt)
                self.put(t, i, f"write_{name}_wide", wide)
                self.put(t, i, f"new_{name}", new)
                if name == "weight":
                    self.W[i] = new
                else:
                    self.b[i] = new
                acc[i][name] = np.zeros_like(acc[i][name])

    # -- 8.3: one sample batch, in the documented order
    def run(self, x_codes, target):
        B = self.batch
        st = [{"v": np.zeros((B, W.shape[0]), I64), "p": np.zeros((B, W.shape[0]), I64),
               "q": np.zeros((B, W.shape[1]), I64), "qb": I64(0)} for W in self.W]
        acc = {i: {"weight": np.zeros_like(self.W[i]),
                   "bias": None if self.b[i] is None else np.zeros_like(self.b[i])} for i in self.learners}
        for t in range(self.steps):
            x = np.asarray(x_codes[:, t], I64)
            for i in range(self.L):  # 1. forward + traces, layer by layer, bottom up
                x = self.forward(t, i, x, st[i])
            if t >= self.start:  # 2. window: all signals, then accumulation per learner
                sig = self.signals(t, st, target)
                for i in self.learners:
                    self.accumulate(t, i, sig[i], st[i], acc[i])
                if self.learning["update"] == "online":  # 3. online write, every window step
                    self.write(t, acc)
        if self.learning["update"] == "batch":
            self.write(self.steps - 1, acc)
        return self.log


# ------------------------------------------------------------------ the integer model, for comparison


def build_net(network, learning, weights=None, biases=None, scale=1.0):
    from core.config import LearningConfig, NetworkConfig
    from stllr.network import SpikingNetwork

    net = SpikingNetwork(NetworkConfig(**network), LearningConfig(**learning)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
        for layer, w, b in zip(net.layers, weights or [], biases or []):
            layer.weight.copy_(torch.tensor(w, dtype=torch.float64))
            layer.bias.copy_(torch.tensor(b, dtype=torch.float64))
    return net


def int_model(network, learning, quant, weights=None, biases=None, lr=0.25, scale=1.0):
    from core.quant import QuantConfig
    from fixedpoint.network import IntNetwork

    return IntNetwork.from_float(build_net(network, learning, weights, biases, scale), QuantConfig(**quant), lr=lr)


# the model's log -> DocModel's key names and shapes
MODEL_KEYS = ("current", "u", "spikes", "membrane", "psi", "post_trace", "pre_trace", "bias_trace", "error",
              "learning_signal", "grad", "causal", "noncausal", "acc_weight", "acc_bias", "new_weight", "new_bias")


def compare_logs(model_log, doc_log):
    keys = {k for k in model_log if k[2] in MODEL_KEYS}
    assert keys == {k for k in doc_log if k[2] in MODEL_KEYS}
    for key in sorted(keys):
        a = np.asarray(model_log[key])
        b = np.asarray(doc_log[key])
        assert np.array_equal(a.reshape(b.shape), b), (key, a.ravel().tolist(), b.ravel().tolist())


# ------------------------------------------------------------------ the worked example (section 8.13)

EX_NETWORK = {"input_shape": [2], "neuron": {"beta": 0.75, "theta": 0.5, "reset": "soft"},
              "psi": {"kind": "triangle", "scale": 0.5, "width": 1.0},
              "layers": [{"kind": "linear", "size": 2}, {"kind": "readout", "size": 2, "beta": 0.5}]}
EX_LEARNING = {"loss": "mse", "window": 2, "learning_signal": "bp", "update": "online", "bias_update": "exact",
               "factors": {"lambda_post": 0.5, "lambda_pre": None, "alpha_post": -0.5, "alpha_pre": 1.0}}
EX_QUANT = {"input": "u2.0", "weight": "s8.5", "bias": "s10.7", "current": "s16.6", "membrane": "s12.6",
            "leak": "u8.8", "decay": "u8.6", "factor": "s8.4", "pre_trace": "u10.4", "post_trace": "u10.6",
            "psi": "u8.6", "psi_slope": "u8.6", "error": "s12.6", "learning_signal": "s12.6",
            "modulation": "s12.6", "update": "s20.8", "learning_rate": "u16.12"}
EX_W = [[[0.75, -0.25], [0.5, 0.40625]], [[0.5, -0.75], [0.25, 0.625]]]
EX_B = [[0.0390625, -0.1015625], [0.125, -0.0625]]
EX_LR = 0.25
EX_X = np.array([[[1, 2], [2, 0]]], np.int64)  # (B = 1, T = 2, 2) input codes (u2.0: the counts)
EX_TARGET = np.array([1])


def doc_block(path: Path, name: str) -> list[tuple[str, str]]:
    text = path.read_text()
    match = re.search(rf"<!-- {name}:begin -->(.*?)<!-- {name}:end -->", text, re.S)
    assert match, f"{path.name}: no {name} block"
    lines = []
    for line in match.group(1).splitlines():
        line = line.split("#", 1)[0].rstrip()
        if "=" in line and not line.startswith("```"):
            key, value = (s.strip() for s in line.split("=", 1))
            lines.append((key, value))
    return lines


def example_values(update="online"):
    """Every key of the worked example: constants, codes and (t, layer, name) intermediates."""
    learning = {**EX_LEARNING, "update": update}
    model = int_model(EX_NETWORK, learning, EX_QUANT, EX_W, EX_B, EX_LR)
    weights = [lp.weight.copy() for lp in model.params.layers]
    biases = [lp.bias.copy() for lp in model.params.layers]
    doc = DocModel(EX_NETWORK, learning, EX_QUANT, weights, biases, [None, None], EX_LR, 1, 2)
    values = {}
    for i, c in enumerate(doc.c):
        for name in ("beta", "theta", "lambda_pre", "lambda_post", "alpha_pre", "alpha_post", "width", "slope"):
            if name in c and (i == 0 or name in ("beta", "lambda_pre", "alpha_pre")):
                values[f"layer{i}.{name}"] = c[name]
                assert c[name] == getattr(model.params.layers[i].const, {"width": "psi_width",
                                                                          "slope": "psi_slope"}.get(name, name))
        values[f"layer{i}.weight"] = weights[i].tolist()
        values[f"layer{i}.bias"] = biases[i].tolist()
        values[f"layer{i}.eta"] = doc.eta[i]
        for name, value in doc.sh[i].items():  # the shift table, as the model derives it
            assert model.params.layers[i].shifts[name] == value, (i, name)
            values[f"layer{i}.{name}"] = value
    result = model.run(EX_X.astype(float), EX_TARGET, train=True, log=True)
    assert {int(k): int(v) for k, v in result.etas.items()} == doc.eta
    log = doc.run(EX_X, EX_TARGET)
    compare_logs(result.log, log)
    for (t, layer, name), value in log.items():
        v = np.asarray(value)
        if v.ndim and name not in ("new_weight", "new_bias", "acc_weight", "acc_bias", "write_weight_wide",
                                   "write_bias_wide"):
            v = v[0]  # B = 1: drop the batch
        values[f"t{t}.{layer}.{name}"] = v.tolist()
    return values


def test_worked_example_config_is_the_docs():
    """The YAML of section 8.13 is the configuration the example runs."""
    import yaml

    text = (DOCS / "fixedpoint_model.md").read_text()
    section = text[text.index("### 8.13 Worked example"):]
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    assert config["network"] == EX_NETWORK
    assert config["learning"] == EX_LEARNING
    assert config["quant"] == EX_QUANT
    assert config["train"] == {"lr": EX_LR}
    weights = ("`W0 = [[0.75, -0.25], [0.5, 0.40625]]`, `b0 = [0.0390625,\n-0.1015625]`, "
               "`W1 = [[0.5, -0.75], [0.25, 0.625]]`, `b1 = [0.125, -0.0625]`")
    assert weights in section and str(EX_W[0]) in weights and str(EX_B[1]) in weights
    assert "`x[0] = [1, 2]`, `x[1] = [2, 0]`; target class 1" in section
    assert EX_X.tolist() == [[[1, 2], [2, 0]]] and EX_TARGET.tolist() == [1]


def test_worked_example_matches_doc():
    stated = doc_block(DOCS / "fixedpoint_model.md", "worked-example")
    values = example_values("online")
    batch = {f"batch.{k}": v for k, v in example_values("batch").items()}
    values.update(batch)
    assert len(stated) > 60
    seen = set()
    for key, text in stated:
        assert key not in seen, f"{key} stated twice"
        seen.add(key)
        assert key in values, f"doc states {key}, which the example does not compute"
        assert ast.literal_eval(text) == values[key], (key, text, values[key])
    # every logged tensor of the online run is stated
    logged = {k for k in values if re.match(r"t\d\.layer\d\.", k) and k.split(".")[2] in MODEL_KEYS}
    assert logged <= seen, sorted(logged - seen)


def test_constants_example():
    """8.1: lambda_pre: null quantizes the float beta in decay, apart from the leak code; 8.6: the default LUT."""
    stated = {k: ast.literal_eval(v) for k, v in doc_block(DOCS / "fixedpoint_model.md", "constants-example")}
    network = {"input_shape": [2], "neuron": {"beta": 0.95},
               "layers": [{"kind": "linear", "size": 2}, {"kind": "readout", "size": 2, "beta": 0.95}]}
    learning = {"loss": "mse"}
    model = int_model(network, learning, {}, lr=0.25)
    layers = model.params.layers
    doc = DocModel(network, learning, {}, [lp.weight for lp in layers], [lp.bias for lp in layers], [None, None],
                   0.25, 1, 2)
    values = {"beta_0.95.leak_code": layers[0].const.beta, "beta_0.95.lambda_pre_code": layers[0].const.lambda_pre,
              "readout.alpha_pre_code": layers[1].const.alpha_pre,
              "readout.lambda_post_code": layers[1].const.lambda_post,
              "default_lut[0:8]": layers[0].const.psi_lut[:8].tolist(),
              "default_lut[8:16]": layers[0].const.psi_lut[8:16].tolist(),
              "default_lut[47]": int(layers[0].const.psi_lut[47])}
    assert doc.c[0]["beta"] == values["beta_0.95.leak_code"]
    assert doc.c[0]["lambda_pre"] == values["beta_0.95.lambda_pre_code"]
    assert (doc.c[1]["alpha_pre"], doc.c[1]["lambda_post"]) == (256, 0)
    assert np.array_equal(doc.c[0]["lut"], layers[0].const.psi_lut)
    assert stated == values


def test_example_golden_vectors():
    """8.4, 8.11: acc_* in the golden set are after the step's contribution, before the reset;
    target.hex is one 0-based class index per sample in u<ceil(log2 classes)>.0."""
    from rtl_export import hexio
    from rtl_export.golden import simulate

    model = int_model(EX_NETWORK, EX_LEARNING, EX_QUANT, EX_W, EX_B, EX_LR)
    vectors = simulate(model, EX_X.astype(float), EX_TARGET)
    values = example_values("online")
    for t in (0, 1):
        assert vectors.arrays["layer0/acc_weight"][0, t].tolist() == values[f"t{t}.layer0.acc_weight"]
        assert vectors.arrays["layer1/acc_bias"][0, t].tolist() == values[f"t{t}.layer1.acc_bias"]
        assert vectors.arrays["layer1/error"][0, t].tolist() == values[f"t{t}.layer1.error"]
    assert vectors.write_steps == [0, 1]
    assert "layer0/grad" not in vectors.arrays and "layer1/grad" not in vectors.arrays
    target = next(e for e in vectors.entries if e.key == "target")
    assert (target.fmt.signed, target.fmt.bits, target.fmt.frac, target.dims) == (False, 1, 0, ("sample",))
    assert hexio.encode_hex(vectors.arrays["target"], target.fmt, "target.hex") == b"1\n"
    # ten classes, three samples: u4.0, one hex digit per line
    fmt = FixedFormat(signed=False, bits=max(1, (10 - 1).bit_length()), frac=0)
    assert hexio.encode_hex(np.array([3, 0, 9]), fmt, "target.hex") == b"3\n0\n9\n"


def test_grad_only_where_bp_passes_down():
    """8.10: a 2-2-2-2 network: layer1 has grad, layer0 (the lowest learner) does not."""
    from rtl_export.golden import simulate

    network = {**EX_NETWORK, "layers": [{"kind": "linear", "size": 2}, {"kind": "linear", "size": 2},
                                        {"kind": "readout", "size": 2, "beta": 0.5}]}
    torch.manual_seed(3)
    model = int_model(network, EX_LEARNING, EX_QUANT, lr=EX_LR)
    x = np.array([[[1, 2], [2, 1], [0, 3]]], float)
    vectors = simulate(model, x, EX_TARGET)
    assert "layer1/grad" in vectors.arrays and "layer0/grad" not in vectors.arrays
    assert "layer0/learning_signal" in vectors.arrays and "layer2/error" in vectors.arrays
    ro = dict(EX_LEARNING, rule="readout_only")
    model = int_model(network, ro, EX_QUANT, lr=EX_LR)
    vectors = simulate(model, x, EX_TARGET)
    assert not any(k.endswith(("/grad", "/learning_signal")) for k in vectors.arrays)


# ------------------------------------------------------------------ drawn configurations


def draw_case(seed):
    rng = np.random.default_rng(seed)
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    modes = ["floor", "nearest_even", "nearest_away"]

    def fmt(signed, frac, ints, overflow=("saturate",)):
        return f"{'s' if signed else 'u'}{frac + ints + signed}.{frac} {pick(modes)} {pick(overflow)}"

    hidden = [{"kind": "linear", "size": int(rng.integers(1, 4))} for _ in range(int(rng.integers(1, 3)))]
    for ly in hidden:
        ly["bias"] = bool(rng.integers(2))
    psi = pick([{"kind": "triangle", "scale": 0.5, "width": 1.0}, {"kind": "triangle", "scale": 0.3, "width": 0.5},
                {"kind": "rational", "gamma": 10.0}, {"kind": "rational", "gamma": 100.0}])
    network = {"input_shape": [int(rng.integers(1, 4))],
               "neuron": {"beta": pick([0.5, 0.75, 0.9]), "theta": pick([0.3, 0.5, 1.0]),
                          "reset": pick(["soft", "hard"])},
               "psi": psi, "layers": hidden + [{"kind": "readout", "size": int(rng.integers(2, 4)),
                                                "bias": bool(rng.integers(2)), "beta": pick([0.5, 0.875])}]}
    learning = {"loss": "mse", "window": int(rng.integers(1, 4)),
                "learning_signal": pick(["bp", "bp", "dfa", "sdfa"]), "update": pick(["batch", "online"]),
                "bias_update": pick(["reference", "exact"]), "rule": pick(["stllr", "stllr", "readout_only"]),
                "factors": {"lambda_post": pick([0.0, 0.5]), "lambda_pre": pick([None, 0.75, 1.0]),
                            "alpha_post": pick([0.0, -0.5, 0.25]), "alpha_pre": pick([1.0, 0.75])},
                "readout_factors": {"lambda_pre": pick([None, 0.5]), "alpha_pre": pick([1.0, 0.5]),
                                    "lambda_post": 0.0, "alpha_post": 0.0}}
    m = int(rng.integers(5, 9))
    quant = {"input": pick(["u1.0", "u2.0", "u4.1"]), "weight": fmt(True, int(rng.integers(4, 8)), 2),
             "bias": fmt(True, int(rng.integers(4, 10)), 2),
             "current": fmt(True, int(rng.integers(4, 10)), pick([2, 6]), ("saturate", "wrap")),
             "membrane": fmt(True, m, pick([1, 5]), ("saturate", "wrap")),
             "leak": fmt(False, int(rng.integers(6, 10)), 0),
             "decay": fmt(False, int(rng.integers(5, 8)), 1), "factor": fmt(True, int(rng.integers(3, 6)), 2),
             "pre_trace": fmt(False, int(rng.integers(3, 8)), pick([1, 4]), ("saturate", "wrap")),
             "post_trace": fmt(False, int(rng.integers(4, 8)), pick([0, 3]), ("saturate", "wrap")),
             "psi": fmt(False, int(rng.integers(5, 8)), 1), "psi_slope": fmt(False, int(rng.integers(5, 9)), 2),
             "error": fmt(True, int(rng.integers(4, 8)), pick([1, 5]), ("saturate", "wrap")),
             "learning_signal": fmt(True, int(rng.integers(4, 8)), pick([0, 5]), ("saturate", "wrap")),
             "modulation": fmt(True, int(rng.integers(4, 8)), pick([0, 5]), ("saturate", "wrap")),
             "feedback": fmt(True, 5, 1),
             "update": fmt(True, int(rng.integers(5, 10)), pick([2, 8]), ("saturate", "wrap")),
             "learning_rate": "u16.14",
             "psi_lut": pick([{"entries": int(rng.integers(4, 20)), "index_shift": int(rng.integers(0, 3))},
                              {"kind": "segmented", "entries": int(rng.integers(4, 40)),
                               "mantissa_bits": int(rng.integers(0, 3)), "index_shift": int(rng.integers(0, 3))}])}
    if rng.integers(2):  # one per-layer override
        quant["layers"] = {0: {"membrane": fmt(True, m + 1, 5), "learning_signal": fmt(True, 6, 5)}}
    steps, batch = int(rng.integers(learning["window"], 5)), int(rng.integers(1, 4))
    shape = (batch, steps, network["input_shape"][0])
    x = (rng.random(shape) < 0.6).astype(np.int64) * rng.integers(1, 4, shape)
    if quant["input"] == "u1.0":
        x = np.minimum(x, 1)
    target = rng.integers(0, network["layers"][-1]["size"], batch)
    return network, learning, quant, x, target, pick([2.0 ** -3, 0.1, 0.5])


@pytest.mark.parametrize("seed", range(40))
def test_doc_rules_reproduce_the_integer_model(seed):
    from core.errors import InputError

    network, learning, quant, x, target, lr = draw_case(seed)
    torch.manual_seed(seed)
    try:  # weights x 3 so that neurons spike
        model = int_model(network, learning, quant, lr=lr, scale=3.0)
    except InputError:
        pytest.skip("a drawn constant does not fit its drawn format")
    layers = model.params.layers
    doc = DocModel(network, learning, quant, [lp.weight.copy() for lp in layers],
                   [None if lp.bias is None else lp.bias.copy() for lp in layers],
                   [lp.feedback for lp in layers], lr, x.shape[0], x.shape[1])
    for i, lp in enumerate(layers):  # 8.1: constants and the LUT
        c = doc.c[i]
        for name in ("beta", "theta", "lambda_pre", "lambda_post", "alpha_pre", "alpha_post"):
            assert c[name] == getattr(lp.const, name), (i, name)
        if lp.const.psi_kind == "triangle":
            assert (c["width"], c["slope"]) == (lp.const.psi_width, lp.const.psi_slope)
        elif lp.const.psi_kind == "rational":
            assert np.array_equal(c["lut"], lp.const.psi_lut)
    for i, lp in enumerate(layers):
        for name, value in doc.sh[i].items():
            assert lp.shifts[name] == value, (i, name)
    try:
        result = model.run(x.astype(float) * 2.0 ** -layers[0].fmts.input.frac, target, train=True, log=True)
    except InputError:
        pytest.skip("eta does not fit")
    assert {int(k): int(v) for k, v in result.etas.items()} == doc.eta
    compare_logs(result.log, doc.run(x, target))


# ------------------------------------------------------------------ the format grammar (fixedpoint_formats.md)


def test_format_grammar_examples():
    for text, outcome in doc_block(DOCS / "fixedpoint_formats.md", "grammar-examples"):
        text = ast.literal_eval(text)
        if outcome == "refused":
            with pytest.raises(ValueError):
                FixedFormat.parse(text)
        else:
            assert FixedFormat.parse(text).describe() == outcome, text
