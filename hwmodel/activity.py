"""Measured activity: the per-step counts of an integer-model run (one or N batches), as a JSON file.

File format (``format: hwmodel-activity``, ``version: 1``)::

    {
      "format": "hwmodel-activity", "version": 1,
      "fingerprint": "<sha256 of the network + quant sections>",
      "run": {"mode": "stllr" | "inference", "batch": B, "steps": T, "window": k,
              "rule": "stllr", "learning_signal": "bp", "update": "batch",
              "bias_update": "reference", "batches": N},
      "layers": {
        "layer0": {"events": [T integers], "spikes": [...], ...},
        ...
      },
      "overflow": {"tensors": {"layer0.membrane": {"format": "...", "events": n, "elements": m}, ...},
                   "total_events": N}
    }

:class:`ActivityFile` is the schema; ``measure_activity`` writes through it and
``load_activity`` reads through it (strict: no unknown keys, no bool or float as a
count, no NaN, no duplicate keys, at most :data:`MAX_ACTIVITY_BYTES`).

``run.batches`` (optional; absent means 1, and a one-batch file leaves it out): the file
sums N consecutive batches of B samples each (:func:`measure_batches`); the estimate
costs their mean, one typical batch (:func:`parse_activity` divides every total by N).

Every series has one non-negative integer per step, summed over the batch (over the N
batches' samples when ``run.batches`` is N); the quantity
names and meanings are :data:`hwmodel.estimate.QUANTITY_HELP` (docs/hwmodel.md has the
table). ``bptt_delta`` (optional; training runs, every layer on BPTT's backward path) is
the one quantity that is not the integer model's: the non-zero BPTT membrane gradients
du[t] of the same run, propagated from its errors and Psi (:func:`bptt_delta_series`),
so that BPTT is costed with the same activity as S-TLLR. A count is at most what the layer can hold in one step (e.g. ``spikes`` <= B x
neurons, ``events`` <= B x valid input operands); learning quantities are zero outside
the window and exist only for learning layers; an inference run has forward quantities
only; with N batches every bound is N times one batch's. The fingerprint ties the file to one network and one set of formats: activity from
another network is refused, and so is a file whose run (T, k, learning signal, update,
bias update, rule) differs from the config. ``overflow`` is the integer model's overflow
counter after the run (saturate/wrap events per tensor, weight quantization included),
so a measurement taken on saturated values is never mistaken for a clean one (with N
batches: the counter after the last, i.e. over all N runs).

:func:`measure_activity` writes such a file from a run of :class:`fixedpoint.network.IntNetwork`:
it reads the arrays the model logs (spikes, Psi, traces, errors, learning signals,
modulation factors) and counts non-zero operands with numpy -- it never reads the
model's operation counters, which the estimate is tested against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from core.hardware import MAX_BATCH, MAX_NAME, first_error
from hwmodel.config import fingerprint, window_of
from hwmodel.estimate import FORWARD_QUANTITIES, LEARN_QUANTITIES, QUANTITIES, Activity, LayerInfo
from core.errors import InputError
from core.schema import Steps, StrictModel, read_json

FORMAT = "hwmodel-activity"
VERSION = 1
RUN_FIELDS = ("rule", "learning_signal", "update", "bias_update")
#: Largest activity file read (a 20-layer network at T = 10 000 takes a few MB).
MAX_ACTIVITY_BYTES = 64 * 2**20
#: Largest count in a file: integers above 2**53 are not exact in float64 JSON readers.
MAX_COUNT = 2**53
#: Most consecutive batches one measurement runs (``hwmodel measure --batches``).
MAX_BATCHES = 10_000

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Word = Annotated[str, Field(max_length=MAX_NAME)]


# ------------------------------------------------------------------------ file format


class ActivityRun(StrictModel):
    """The run the counts come from."""

    mode: Literal["stllr", "inference"]
    batch: Annotated[int, Field(gt=0, le=MAX_BATCH)]
    steps: Steps
    window: Steps
    rule: Word
    learning_signal: Word
    update: Word
    bias_update: Word
    #: consecutive batches summed in the series (None: a one-batch file, written without it)
    batches: Annotated[int, Field(ge=1, le=MAX_BATCHES)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _batches_not_null(cls, data):
        if isinstance(data, dict) and "batches" in data and data["batches"] is None:
            raise ValueError("batches: null; leave it out for a one-batch file")
        return data

    @model_validator(mode="after")
    def _window_within_steps(self) -> "ActivityRun":
        if self.window > self.steps:
            raise ValueError(f"window: k = {self.window} exceeds steps T = {self.steps}")
        return self


class _SeriesBase(StrictModel):
    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data):
        # a quantity the run did not have is left out; null would pass for zero counts unnoticed
        if isinstance(data, dict):
            for quantity, values in data.items():
                if values is None:
                    raise ValueError(f"{quantity}: null; leave a quantity out when the run has none")
        return data


#: Quantities measured for the BPTT estimate only (not executed by the integer model).
BPTT_QUANTITIES = ("bptt_delta",)
BPTT_QUANTITY_HELP = {"bptt_delta": "non-zero BPTT membrane gradients du[t] (every step; layers on the backward path)"}

#: Per-step series of one layer: one optional field per quantity (events required), so an
#: unknown quantity is an error naming it.
LayerSeries = create_model(
    "LayerSeries", __base__=_SeriesBase,
    **{q: ((list[Count], ...) if q == "events" else (list[Count] | None, None))
       for q in QUANTITIES + BPTT_QUANTITIES})


class OverflowTensor(StrictModel):
    """Saturate/wrap events of one tensor of the integer model (``format``: its fixed-point format)."""

    format: Word
    events: Count
    elements: Count

    @model_validator(mode="after")
    def _events_within_elements(self) -> "OverflowTensor":
        if self.events > self.elements:
            raise ValueError(f"events: {self.events} overflow events among {self.elements} elements")
        return self


class OverflowCounts(StrictModel):
    """The integer model's overflow counter after the measured run (weight quantization included)."""

    tensors: dict[Word, OverflowTensor]
    total_events: Count

    @model_validator(mode="after")
    def _total(self) -> "OverflowCounts":
        total = sum(t.events for t in self.tensors.values())
        if self.total_events != total:
            raise ValueError(f"total_events: {self.total_events}, but the tensors sum to {total}")
        return self


class ActivityFile(StrictModel):
    """An activity file (see the module docstring); used to write and to read it."""

    format: Literal["hwmodel-activity"]
    version: int
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    run: ActivityRun
    layers: dict[Word, LayerSeries]
    overflow: OverflowCounts | None = None  # absent in files written before overflow was recorded

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != VERSION:
            raise ValueError(f"expected {VERSION}, got {value}")
        return value


def to_payload(data: dict) -> dict:
    """Validate an activity mapping against :class:`ActivityFile`; the JSON-ready dict."""
    return ActivityFile.model_validate(data).model_dump(mode="json", exclude_none=True)


# ------------------------------------------------------------------------------ file i/o


def read_activity_json(path: str | Path):
    """Parse an activity file as JSON (size, UTF-8, duplicate keys, NaN checked); one-line InputError."""
    return read_json(path, "activity file", MAX_ACTIVITY_BYTES)


def load_activity(path: str | Path, inputs, layers: list[LayerInfo]) -> Activity:
    """Read and check an activity file against the model; one-line InputError on mismatch."""
    return parse_activity(read_activity_json(path), str(path), inputs, layers)


def _per_step_limit(quantity: str, ly: LayerInfo, above: LayerInfo | None, samples: int) -> int | None:
    """Largest count of ``quantity`` in one step summed over ``samples`` samples (B, or N x B
    for a file of N batches); None: the layer has no such quantity."""
    spiking = ly.n_out if ly.spiking else None
    recurrent = ly.n_out * ly.n_out if ly.recurrent else None
    per_sample = {
        "events": ly.pairs, "inputs": ly.n_in, "signal": ly.n_out,
        "spikes": spiking, "psi": spiking, "psi_support": spiking, "signal_psi": spiking,
        "causal_mod": spiking, "noncausal_mod": spiking,
        "rec_events": ly.n_out if ly.recurrent else None,
        "bp_pairs": above.channels * above.pairs if above is not None else None,
        "causal_pairs": ly.channels * ly.pairs, "noncausal_pairs": ly.channels * ly.pairs,
        "contrib": ly.weight_size,
        "rec_causal_pairs": recurrent, "rec_noncausal_pairs": recurrent, "rec_contrib": recurrent,
        "bias_causal": ly.n_out if ly.bias else None, "bias_noncausal": ly.n_out if ly.bias else None,
        "bptt_delta": ly.n_out,
    }[quantity]
    return None if per_sample is None else samples * per_sample


def parse_activity(data, path: str, inputs, layers: list[LayerInfo]) -> Activity:
    """Check an activity mapping (see the module docstring) and total it per layer.

    A file of N batches (``run.batches``) is returned as its mean batch: every total and
    every per-step value divided by N (floats when N > 1), so that the estimate costs one
    typical batch of B samples (one weight write, eta = lr / (B k)) and its per-sample
    figures are per sample, not N times too high. N = 1 keeps the integer counts."""
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with format {FORMAT!r}")
    # format, version and fingerprint first: a file of another kind is named as such
    if data.get("format") != FORMAT:
        raise InputError(f"{path}: format: expected {FORMAT!r}, got {data.get('format')!r:.40}")
    try:
        parsed = ActivityFile.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{path}: {first_error(error)}") from None
    want = fingerprint(inputs.config, inputs.quant)
    if parsed.fingerprint != want:
        raise InputError(f"{path}: fingerprint: activity was measured on another network or other formats "
                         f"(file {parsed.fingerprint[:12]}..., config {want[:12]}...)")
    run = parsed.run
    steps = run.steps
    if steps != inputs.steps:
        raise InputError(f"{path}: run.steps: activity has T = {steps}, the estimate asks for T = {inputs.steps}")
    learning = inputs.config.learning
    train = run.mode == "stllr"
    if train:
        k = window_of(inputs.config, steps)
        if run.window != k:
            raise InputError(f"{path}: run.window: activity has k = {run.window}, config has k = {k}")
        for name in RUN_FIELDS:
            if getattr(run, name) != getattr(learning, name):
                raise InputError(f"{path}: run.{name}: activity has {getattr(run, name)!r:.40}, "
                                 f"config has learning.{name} = {getattr(learning, name)!r}")
    names = [ly.name for ly in layers]
    for name in parsed.layers:
        if name not in names:
            raise InputError(f"{path}: layers.{name}: no such layer (network has {len(layers)})")
    learners = set(range(len(layers))) if learning.rule != "readout_only" else {len(layers) - 1}
    lowest = min(learners)
    start = steps - run.window
    batch = run.batch
    batches = run.batches or 1
    samples = batches * batch  # the series sum this many samples
    within = f"N = {batches} batches of B = {batch} samples" if batches > 1 else f"B = {batch} samples"
    totals, per_step = [], []
    for ly in layers:
        entry = parsed.layers.get(ly.name)
        if entry is None:
            raise InputError(f"{path}: layers.{ly.name}: missing")
        above = layers[ly.index + 1] if ly.index + 1 < len(layers) else None
        t, s = {}, {}
        for quantity in QUANTITIES + BPTT_QUANTITIES:
            values = getattr(entry, quantity)
            if values is None:
                continue
            where = f"{path}: layers.{ly.name}.{quantity}"
            if len(values) != steps:
                raise InputError(f"{where}: expected {steps} non-negative integers (one per step), got {len(values)}")
            limit = _per_step_limit(quantity, ly, above, samples)
            if limit is None:
                raise InputError(f"{where}: a {ly.kind} layer{' without bias' if 'bias' in quantity else ''} "
                                 "has no such quantity")
            if not train and quantity not in FORWARD_QUANTITIES:
                raise InputError(f"{where}: a training quantity in an inference run (run.mode inference)")
            for step, value in enumerate(values):
                if value > limit:
                    raise InputError(f"{where}: {value} at step {step}, more than the {limit} possible "
                                     f"({within} of this layer)")
            if quantity in BPTT_QUANTITIES and ly.index < lowest:
                raise InputError(f"{where}: {ly.name} is below the lowest learning layer (not on BPTT's "
                                 "backward path)")
            if quantity in LEARN_QUANTITIES and any(values):
                if ly.index not in learners:
                    raise InputError(f"{where}: {ly.name} does not learn (learning.rule {learning.rule})")
                early = next((i for i, v in enumerate(values[:start]) if v), None)
                if early is not None:
                    raise InputError(f"{where}: non-zero at step {early}, before the learning window "
                                     f"(the last k = {run.window} of T = {steps} steps)")
            t[quantity] = sum(values) / batches if batches > 1 else sum(values)
            s[quantity] = [v / batches for v in values] if batches > 1 else list(values)
        totals.append(t)
        per_step.append(s)
    in_rates = [t["events"] / (batch * steps * ly.pairs) if ly.pairs else 0.0 for t, ly in zip(totals, layers)]
    out_rates = [t.get("spikes", 0) / (batch * steps * ly.n_out) if ly.spiking else 0.0
                 for t, ly in zip(totals, layers)]
    rates = inputs.rates
    delta = [1.0] * len(layers) if rates is None else [rates.layer(i)["delta"] for i in range(len(layers))]
    backward = [ly for ly in layers if ly.index >= lowest]  # BPTT's backward path
    measured_delta = train and all("bptt_delta" in totals[ly.index] for ly in backward)
    if train and not measured_delta and any("bptt_delta" in totals[ly.index] for ly in backward):
        missing = next(ly.name for ly in backward if "bptt_delta" not in totals[ly.index])
        raise InputError(f"{path}: layers.{missing}.bptt_delta: missing (other layers of BPTT's backward "
                         "path have it)")
    if measured_delta:
        for ly in backward:
            delta[ly.index] = totals[ly.index]["bptt_delta"] / (batch * ly.n_out * steps)
    overflow = parsed.overflow.total_events if parsed.overflow is not None else None
    return Activity(batch, steps, run.window, train, True, totals, delta, in_rates, out_rates, per_step,
                    source=path, overflow_events=overflow,
                    delta_source="measured" if measured_delta else "rates", batches=batches)


# ------------------------------------------------------------------------- measurement


def bptt_delta_series(params, log, batch: int, steps: int, start: int) -> dict[str, list[int]]:
    """Non-zero BPTT membrane gradients du[t] per step (summed over the batch) of every layer
    on BPTT's backward path, for the run that ``log`` recorded (same weights, same Psi):

    * readout: dy[t] = e[t] + beta dy[t+1] is non-zero where e[t'] != 0 for a window step
      t' >= t (through the leak; e is the logged error);
    * hidden layer l, top down: do[t] = W^{l+1 T} du^{l+1}[t] (+ W_rec^T du[t+1]) is
      non-zero where a non-zero du of the layer above reaches it through a non-zero weight;
      du[t] = psi[t] do[t] + beta du[t+1] is non-zero where psi[t] != 0 and do[t] != 0, or
      where du[t+1] != 0 (psi: the logged Psi of every step).

    Zero operands are skipped as the datapath skips them; exact cancellation in a sum and
    beta du decaying to 0 in a narrow format are not modelled (both only make du sparser)."""
    import numpy as np

    from fixedpoint.network import dense_geometry

    layers = params.layers
    readout = len(layers) - 1
    lowest = min(params.learners)

    def chained(lp) -> bool:  # beta != 0: the gradient flows back through the membrane
        return lp.fmts.leak_mode == "shift" or lp.const.beta != 0

    def reach(du, geometry, weight) -> np.ndarray:
        """(B, n_in) bool: inputs of a layer that a non-zero du (B, n_out) reaches through W."""
        d = du.reshape(batch, geometry.channels, geometry.positions).astype(np.int64)
        hit = np.einsum("bop,ot->btp", d, (weight != 0).astype(np.int64)) > 0  # (B, taps, P)
        hit &= (geometry.idx >= 0)[None]
        out = np.zeros((batch, geometry.n_in), bool)
        b, tap, p = np.nonzero(hit)
        out[b, geometry.idx[tap, p]] = True
        return out

    out = {}
    top = layers[readout]
    du_above = np.zeros((steps, batch, top.geometry.n_out), bool)
    running = np.zeros((batch, top.geometry.n_out), bool)
    for t in reversed(range(steps)):
        error = log[(t, top.name, "error")] != 0 if t >= start else False
        running = error | (running if chained(top) else False)
        du_above[t] = running
    out[top.name] = [int(du_above[t].sum()) for t in range(steps)]
    for i in range(readout - 1, lowest - 1, -1):
        lp, above = layers[i], layers[i + 1]
        n = lp.geometry.n_out
        rec = dense_geometry(n, n) if lp.kind == "recurrent" else None
        du = np.zeros((steps, batch, n), bool)
        after = np.zeros((batch, n), bool)  # du[t+1]
        for t in reversed(range(steps)):
            do = reach(du_above[t], above.geometry, above.weight)
            if rec is not None and t + 1 < steps:
                do |= reach(after, rec, lp.rec_weight)
            after = ((log[(t, lp.name, "psi")] != 0) & do) | (after if chained(lp) else False)
            du[t] = after
        out[lp.name] = [int(du[t].sum()) for t in range(steps)]
        du_above = du
    return out


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
    (:func:`measure_batches` runs several and sums them.)

    x: (B, T, *input_shape) floats on the input grid; target: (B,) class indices (train).
    The counts come from the logged arrays, never from ``model.ops``.
    """
    import numpy as np

    from fixedpoint.network import StepContext, _requant, dense_geometry
    from core.config import window_start

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

            def scaled(alpha):
                """round(alpha * L) into the modulation format, as the model's eligibility step."""
                shift = f.factor.frac + sig_fmt.frac - f.modulation.frac
                return _requant(alpha * signal, shift, f.modulation, f"{name}.modulation", ctx)

            causal = log[(t, name, "causal")].reshape(batch, g.channels, g.positions)
            noncausal = None
            if lp.spiking:
                a_pre = scaled(c.alpha_pre)
                series(name, "causal_mod")[t] = _nz(a_pre * log[(t, name, "psi")])
                if c.alpha_post != 0:
                    a_post = scaled(c.alpha_post)
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
    if train:
        for name, values in bptt_delta_series(params, log, batch, steps, start).items():
            out[name]["bptt_delta"] = values
    run = {"mode": "stllr" if train else "inference", "batch": batch, "steps": steps,
           "window": steps - window_start(steps, params.window) if train else window_of(config, steps)}
    for name in RUN_FIELDS:
        run[name] = getattr(config.learning, name)
    from fixedpoint.train import overflow_dict

    payload = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint(config, quant), "run": run,
               "layers": {name: {q: v for q, v in s.items()} for name, s in out.items()},
               "overflow": overflow_dict(model.overflow)}
    return to_payload(payload), result


def measure_batches(model, config, quant, batches, train: bool = True, apply: bool = True):
    """Run ``model`` on consecutive batches, in the order given, with :func:`measure_activity`
    each; return (activity dict summing them, list of results).

    batches: a sequence of (x, target) of B samples each (the same B). A training run
    (``train`` and ``apply``) writes the weights after every batch, so batch n + 1 is
    measured on the weights batch n left, as on chip; an inference run writes nothing.
    Every per-step series is the sum over the batches (step t of each batch added), and
    ``run.batches`` says how many (left out for one, so that a one-batch file is what
    :func:`measure_activity` writes). ``overflow`` is the model's counter after the last
    batch (it accumulates over the runs). The file is the same as measuring each batch
    with :func:`measure_activity` on the same model, one after the other, and adding
    their series."""
    batches = list(batches)
    if not 1 <= len(batches) <= MAX_BATCHES:
        raise ValueError(f"measure_batches: 1..{MAX_BATCHES} batches, got {len(batches)}")
    payload, results = None, []
    for x, target in batches:
        one, result = measure_activity(model, config, quant, x, target, train=train, apply=apply)
        results.append(result)
        if payload is None:
            payload = one
            continue
        if one["run"]["batch"] != payload["run"]["batch"]:
            raise ValueError(f"measure_batches: batches of {payload['run']['batch']} and "
                             f"{one['run']['batch']} samples; every batch needs the same B")
        for name, series in one["layers"].items():
            total = payload["layers"][name]
            for quantity, values in series.items():
                total[quantity] = [a + b for a, b in zip(total[quantity], values)]
        payload["overflow"] = one["overflow"]  # cumulative: the counter after the last batch
    if len(batches) > 1:
        payload["run"]["batches"] = len(batches)
    return to_payload(payload), results
