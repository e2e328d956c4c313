"""Measured activity: the per-step counts of one integer-model run, as a JSON file.

File format (``format: hwmodel-activity``, ``version: 1``)::

    {
      "format": "hwmodel-activity", "version": 1,
      "fingerprint": "<sha256 of the network + quant sections>",
      "run": {"mode": "stllr" | "inference", "batch": B, "steps": T, "window": k,
              "rule": "stllr", "learning_signal": "bp", "update": "batch",
              "bias_update": "reference"},
      "layers": {
        "layer0": {"events": [T integers], "spikes": [...], ...},
        ...
      }
    }

Every series has one non-negative integer per step, summed over the batch; the quantity
names and meanings are :data:`hwmodel.estimate.QUANTITY_HELP` (docs/hwmodel.md has the
table). Learning quantities are zero outside the window. The fingerprint ties the file to
one network and one set of formats: activity from another network is refused, and so is
a file whose run (T, k, learning signal, update, bias update, rule) differs from the config.

:func:`measure_activity` writes such a file from a run of :class:`fixedpoint.network.IntNetwork`:
it reads the arrays the model logs (spikes, Psi, traces, errors, learning signals,
modulation factors) and counts non-zero operands with numpy -- it never reads the
model's operation counters, which the estimate is tested against.
"""

from __future__ import annotations

import json
from pathlib import Path

from hwmodel.config import fingerprint, window_of
from hwmodel.estimate import QUANTITIES, Activity, LayerInfo
from stllr.errors import InputError

FORMAT = "hwmodel-activity"
VERSION = 1
RUN_FIELDS = ("rule", "learning_signal", "update", "bias_update")


# ------------------------------------------------------------------------------ file i/o


def load_activity(path: str | Path, inputs, layers: list[LayerInfo]) -> Activity:
    """Read and check an activity file against the model; one-line InputError on mismatch."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: activity file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON") from None
    return parse_activity(data, str(path), inputs, layers)


def parse_activity(data, path: str, inputs, layers: list[LayerInfo]) -> Activity:
    """Check an activity mapping (see the module docstring) and total it per layer."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: format: expected {FORMAT!r}")
    if data.get("version") != VERSION:
        raise InputError(f"{path}: version: expected {VERSION}, got {data.get('version')!r}")
    want = fingerprint(inputs.config, inputs.quant)
    if data.get("fingerprint") != want:
        raise InputError(f"{path}: fingerprint: activity was measured on another network or other formats "
                         f"(file {str(data.get('fingerprint'))[:12]}..., config {want[:12]}...)")
    run = data.get("run")
    if not isinstance(run, dict):
        raise InputError(f"{path}: run: missing")
    for name in ("batch", "steps", "window"):
        value = run.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(f"{path}: run.{name}: expected a positive integer, got {value!r}")
    if run.get("mode") not in ("stllr", "inference"):
        raise InputError(f"{path}: run.mode: expected 'stllr' or 'inference', got {run.get('mode')!r}")
    steps = run["steps"]
    if steps != inputs.steps:
        raise InputError(f"{path}: run.steps: activity has T = {steps}, the estimate asks for T = {inputs.steps}")
    learning = inputs.config.learning
    train = run["mode"] == "stllr"
    if train:
        k = window_of(inputs.config, steps)
        if run["window"] != k:
            raise InputError(f"{path}: run.window: activity has k = {run['window']}, config has k = {k}")
        for name in RUN_FIELDS:
            if run.get(name) != getattr(learning, name):
                raise InputError(f"{path}: run.{name}: activity has {run.get(name)!r}, "
                                 f"config has learning.{name} = {getattr(learning, name)!r}")
    series = data.get("layers")
    if not isinstance(series, dict):
        raise InputError(f"{path}: layers: missing")
    names = [ly.name for ly in layers]
    for name in series:
        if name not in names:
            raise InputError(f"{path}: layers.{name}: no such layer (network has {len(layers)})")
    totals, per_step = [], []
    for ly in layers:
        entry = series.get(ly.name, {})
        if not isinstance(entry, dict):
            raise InputError(f"{path}: layers.{ly.name}: expected a mapping of quantity -> per-step counts")
        t, s = {}, {}
        for quantity, values in entry.items():
            where = f"{path}: layers.{ly.name}.{quantity}"
            if quantity not in QUANTITIES:
                raise InputError(f"{where}: unknown quantity (known: {', '.join(QUANTITIES)})")
            if (not isinstance(values, list) or len(values) != steps
                    or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in values)):
                raise InputError(f"{where}: expected {steps} non-negative integers (one per step)")
            t[quantity] = sum(values)
            s[quantity] = values
        if "events" not in t:
            raise InputError(f"{path}: layers.{ly.name}.events: missing")
        totals.append(t)
        per_step.append(s)
    batch = run["batch"]
    in_rates = [t["events"] / (batch * steps * ly.pairs) if ly.pairs else 0.0 for t, ly in zip(totals, layers)]
    out_rates = [t.get("spikes", 0) / (batch * steps * ly.n_out) if ly.spiking else 0.0
                 for t, ly in zip(totals, layers)]
    rates = inputs.rates
    delta = [1.0] * len(layers) if rates is None else [rates.layer(i)["signal"] for i in range(len(layers))]
    return Activity(batch, steps, run["window"], train, True, totals, delta, in_rates, out_rates, per_step,
                    source=path)


# ------------------------------------------------------------------------- measurement


def _nz(a) -> int:
    import numpy as np

    return int(np.count_nonzero(a))


def _valid_nonzero(values, idx):
    """(B, taps, P) bool: input operand valid (not padding) and non-zero."""
    import numpy as np

    valid = idx >= 0
    gathered = values[:, np.where(valid, idx, 0)]  # (B, taps, P)
    return (gathered != 0) & valid[None]


def measure_activity(model, config, quant, x, target=None, train: bool = True, apply: bool = True):
    """Run ``model`` (an IntNetwork) on one batch with logging; return (activity dict, result).

    x: (B, T, *input_shape) floats on the input grid; target: (B,) class indices (train).
    The counts come from the logged arrays, never from ``model.ops``.
    """
    import numpy as np

    from fixedpoint.network import StepContext, _scale_signal, dense_geometry
    from stllr.learning import window_start

    x = np.asarray(x, np.float64)
    batch, steps = x.shape[0], x.shape[1]
    params = model.params
    codes = params.layers[0].fmts.input.quantize(x.reshape(batch, steps, -1))
    result = model.run(x, target, train=train, log=True, apply=apply)
    log = result.log
    layers = params.layers
    readout = len(layers) - 1
    start = window_start(steps, params.window) if train else steps
    learners = set(params.learners)
    out = {lp.name: {} for lp in layers}

    def series(name, quantity):
        return out[name].setdefault(quantity, [0] * steps)

    for i, lp in enumerate(layers):
        g, f, c, name = lp.geometry, lp.fmts, lp.const, lp.name
        rec_geometry = dense_geometry(g.n_out, g.n_out) if lp.kind == "recurrent" else None
        for t in range(steps):
            xt = codes[:, t] if i == 0 else log[(t, layers[i - 1].name, "spikes")]
            x_nz = _valid_nonzero(xt, g.idx)
            series(name, "events")[t] = int(x_nz.sum())
            prev = log[(t - 1, name, "spikes")] if (lp.kind == "recurrent" and t > 0) else np.zeros((batch, g.n_out))
            if lp.kind == "recurrent":
                series(name, "rec_events")[t] = _nz(prev)
            if lp.spiking:
                series(name, "spikes")[t] = _nz(log[(t, name, "spikes")])
            if not train:
                continue
            series(name, "inputs")[t] = _nz(xt)
            if lp.spiking:
                psi = log[(t, name, "psi")]
                series(name, "psi")[t] = _nz(psi)
                if c.psi_kind == "triangle":
                    z = log[(t, name, "u")] - c.theta
                    series(name, "psi_support")[t] = int((np.abs(z) < c.psi_width).sum())
            if t < start or i not in learners:
                continue
            sig_fmt = f.learning_signal if lp.spiking else f.error
            signal = log[(t, name, "error" if i == readout else "learning_signal")]
            series(name, "signal")[t] = _nz(signal)
            if lp.spiking:
                psi = log[(t, name, "psi")]
                series(name, "signal_psi")[t] = _nz(signal * psi)
            if params.learning_signal == "bp" and i < readout:
                above = layers[i + 1]
                ga = above.geometry
                grad = log[(t, above.name, "error" if i + 1 == readout else "grad")]  # g of the layer above
                g_nz = (grad.reshape(batch, ga.channels, ga.positions) != 0).sum(axis=1)  # (B, P)
                series(name, "bp_pairs")[t] = int((g_nz * (ga.idx >= 0).sum(axis=0)[None]).sum())
            ctx = StepContext()  # no counters: only the value round(alpha * L) is wanted
            causal = log[(t, name, "causal")].reshape(batch, g.channels, g.positions)
            noncausal = None
            if lp.spiking:
                a_pre = _scale_signal(lp, c.alpha_pre, signal, sig_fmt, "eligibility_causal", ctx)
                series(name, "causal_mod")[t] = _nz(a_pre * log[(t, name, "psi")])
                if c.alpha_post != 0:
                    a_post = _scale_signal(lp, c.alpha_post, signal, sig_fmt, "eligibility_noncausal", ctx)
                    p_prev = log[(t - 1, name, "post_trace")] if t > 0 else np.zeros((batch, g.n_out), np.int64)
                    series(name, "noncausal_mod")[t] = _nz(a_post * p_prev)
                    noncausal = log[(t, name, "noncausal")].reshape(batch, g.channels, g.positions)

            def pairs(geometry, pre, inp, nc, prefix):
                q_nz = _valid_nonzero(pre, geometry.idx)  # (B, taps, P)
                i_nz = _valid_nonzero(inp, geometry.idx)
                shape = (batch, geometry.channels, geometry.positions)
                c_nz = (causal.reshape(shape) != 0).astype(np.int64)
                n_c = int((c_nz.sum(axis=1) * q_nz.sum(axis=1)).sum())
                touched = np.einsum("bop,btp->bot", c_nz, q_nz.astype(np.int64)) > 0
                n_nc = 0
                if nc is not None:
                    n_nz = (nc.reshape(shape) != 0).astype(np.int64)
                    n_nc = int((n_nz.sum(axis=1) * i_nz.sum(axis=1)).sum())
                    touched |= np.einsum("bop,btp->bot", n_nz, i_nz.astype(np.int64)) > 0
                series(name, f"{prefix}causal_pairs")[t] = n_c
                series(name, f"{prefix}noncausal_pairs")[t] = n_nc
                series(name, f"{prefix}contrib")[t] = int(touched.sum())

            pairs(g, log[(t, name, "pre_trace")], xt, noncausal, "")
            if rec_geometry is not None:
                pairs(rec_geometry, log[(t, name, "rec_pre_trace")], prev, noncausal, "rec_")
            if lp.bias is not None:
                series(name, "bias_causal")[t] = _nz(causal.reshape(batch, -1) * log[(t, name, "bias_trace")])
                if noncausal is not None:
                    series(name, "bias_noncausal")[t] = _nz(noncausal)
    run = {"mode": "stllr" if train else "inference", "batch": batch, "steps": steps,
           "window": steps - window_start(steps, params.window) if train else window_of(config, steps)}
    for name in RUN_FIELDS:
        run[name] = getattr(config.learning, name)
    payload = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint(config, quant), "run": run,
               "layers": {name: {q: v for q, v in s.items()} for name, s in out.items()}}
    return payload, result
