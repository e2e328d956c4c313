"""Golden vectors: every state of the integer model, per layer and time step, as files.

``rtl-export golden`` runs :class:`fixedpoint.network.IntNetwork` in training mode on N
samples, ONE SAMPLE AT A TIME (batch 1, weights and RNG lanes carried from one sample to
the next, as a time-multiplexed accelerator processes them), and writes every logged
state. ``rtl-export verify`` reads a set back, checks it, re-runs the model and compares.

Directory layout (``docs/rtl_export.md`` has the full description)::

    DIR/manifest.json          what is in the set (schema below), sha256 of every file
    DIR/golden.npz             every array, key = file path without ".hex" (int64)
    DIR/target.hex             class label per sample
    DIR/layer<i>/<tensor>.hex  one file per layer and tensor

Tensors and their dimensions (row-major / C order over the dims, one word per line):

* per step ``(sample, step, ...)``: ``input`` (layer 0: codes in quant.input; else the
  spikes of layer i-1), ``current``, ``u`` (membrane before the spike/reset; the readout's
  y), ``spikes``, ``membrane`` (after reset), ``psi``, ``post_trace`` (p[t]),
  ``pre_trace`` (q[t]), ``bias_trace`` (q_b[t]), ``rec_input`` (o[t-1]), ``rec_pre_trace``;
* per window step ``(sample, window_step, ...)``, window step w = t - (T - k):
  ``learning_signal`` (``error`` for the readout), ``grad`` (BP: L psi sent down),
  ``causal`` (m = round(round(alpha_pre L) psi)), ``noncausal`` (n = round(round(alpha_post
  L) p[t-1])), ``acc_weight`` / ``acc_rec_weight`` / ``acc_bias`` (accumulators after the
  step's contribution);
* per weight write ``(sample, write, ...)`` (batch update: one write after the last step;
  online: one per window step): ``weight`` / ``weight_next`` (before / after the write),
  ``weight_lanes`` / ``weight_lanes_next`` (xorshift32 states, only when the tensor's
  rounding is stochastic), ``momentum_weight`` / ``momentum_weight_next`` (optimizer lion:
  the momentum words before / after), ``acc_weight_carried`` (signum: the decayed
  accumulator the write leaves), the same for ``rec_weight`` and ``bias``;
* layers that do not learn: ``weight``, ``rec_weight``, ``bias`` once, ``(out, in)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.formats import FixedFormat
from core.overflow import OverflowCounter
from core.rng import next_states
from rtl_export import hexio
from rtl_export.manifest import (
    ELEMENT_ORDER,
    GOLDEN_SCHEMA,
    HEX_RULE,
    MANIFEST,
    NPZ,
    GoldenFile,
    GoldenFormat,
    GoldenManifest,
    OverflowInfo,
    RandomInput,
    dump,
    inside,
    read_listed,
    read_manifest,
)
from rtl_export.model import LANE_FORMAT, RTL_MAX_BITS, SPIKE_FORMAT, Source, build_model
from rtl_export.outdir import write_tree
from core.errors import InputError

SCHEMA = GOLDEN_SCHEMA

# (file name, log key, format field of LayerFormats, meaning)
STEP_TENSORS = (
    ("input", None, "input", "x[t]: layer input (codes in the input format; spikes 0/1 above layer 0)"),
    ("current", "current", "current", "I[t] = W x[t] (+ W_rec o[t-1]) + b"),
    ("u", "u", "membrane", "u[t] = beta v[t-1] + I[t], membrane before spike and reset (readout: y[t])"),
    ("spikes", "spikes", "spikes", "o[t] = (u[t] - theta > 0)"),
    ("membrane", "membrane", "membrane", "v[t], membrane after reset"),
    ("psi", "psi", "psi", "Psi(u[t] - theta)"),
    ("post_trace", "post_trace", "post_trace", "p[t] = lambda_post p[t-1] + psi[t]"),
    ("pre_trace", "pre_trace", "pre_trace", "q[t] = lambda_pre q[t-1] + x[t]"),
    ("bias_trace", "bias_trace", "pre_trace", "q_b[t] = lambda_pre q_b[t-1] + 1"),
    ("rec_input", None, "spikes", "o[t-1]: the recurrent synapses' input"),
    ("rec_pre_trace", "rec_pre_trace", "pre_trace", "q_rec[t] = lambda_pre q_rec[t-1] + o[t-1]"),
)
WINDOW_TENSORS = (
    ("learning_signal", "learning_signal", "learning_signal", "L[t], learning signal per neuron"),
    ("softmax", "softmax", "softmax", "readout p[t] = integer softmax(y[t]) (loss ce, fixedpoint/softmax.py)"),
    ("error", "error", "error", "readout error y[t] - onehot, or p[t] - onehot (ce): its learning signal"),
    ("grad", "grad", "learning_signal", "BP: g = round(L psi), sent to the layer below"),
    ("causal", "causal", "modulation", "m = round(round(alpha_pre L) psi) (readout: round(alpha_pre L))"),
    ("noncausal", "noncausal", "modulation", "n = round(round(alpha_post L) p[t-1])"),
    ("acc_weight", "acc_weight", "update", "dW accumulator after this step"),
    ("acc_rec_weight", "acc_rec_weight", "update", "dW_rec accumulator after this step"),
    ("acc_bias", "acc_bias", "update", "db accumulator after this step"),
)
WRITE_TENSORS = (("weight", "weight"), ("rec_weight", "weight"), ("bias", "bias"))


@dataclass
class Entry:
    """One tensor of a vector set (one hex file, one npz array)."""

    layer: int | None  # None: network-wide (target)
    tensor: str
    phase: str  # step | window | write | static | sample
    dims: tuple[str, ...]
    fmt: FixedFormat
    meaning: str

    @property
    def key(self) -> str:
        return self.tensor if self.layer is None else f"layer{self.layer}/{self.tensor}"

    @property
    def path(self) -> str:
        return f"{self.key}.hex"


@dataclass
class Vectors:
    """What one run produced: entries (file order) and their arrays, plus run facts."""

    entries: list[Entry]
    arrays: dict[str, np.ndarray]
    samples: int
    steps: int
    window: int
    update: str
    write_steps: list[int]
    etas: dict[int, int]
    overflow: OverflowCounter = field(default_factory=OverflowCounter)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- running


def _fmt(lp, name: str) -> FixedFormat:
    if name == "spikes":
        return SPIKE_FORMAT
    if name == "lanes":
        return LANE_FORMAT
    return getattr(lp.fmts, name)


def _elem_dims(lp, tensor: str) -> tuple[str, ...]:
    conv = lp.kind == "conv2d"
    if tensor in ("input", "pre_trace"):
        return ("in",)
    if tensor == "bias_trace":
        return ()
    if tensor.startswith("acc_"):
        tensor = tensor[4:]
    if tensor.startswith("rec_weight"):
        return ("out", "in_rec")
    if tensor.startswith("weight"):
        return ("channel", "tap") if conv else ("out", "in")
    if tensor.startswith("bias"):
        return ("channel",) if conv else ("out",)
    return ("out",)  # per neuron (conv: channel-major over positions), rec_input/rec_pre_trace too


def _drop_batch(value: np.ndarray, batched: bool) -> np.ndarray:
    value = np.asarray(value, np.int64)
    return value.reshape(value.shape[1:]).reshape(-1) if batched else value


def simulate(model, x: np.ndarray, y: np.ndarray) -> Vectors:
    """Run ``model`` (an IntNetwork) in training mode sample by sample and collect every state.

    x: (N, T, *input_shape) floats on the input grid; y: (N,) labels. The model's weights
    and lanes advance as in training; every tensor's element shape is the model's own.
    """
    from fixedpoint.network import lane_layout
    from core.config import window_start

    samples, steps = int(x.shape[0]), int(x.shape[1])
    params = model.params
    try:
        start = window_start(steps, params.window)
    except ValueError as error:
        raise InputError(str(error)) from None
    write_steps = list(range(start, steps)) if params.update == "online" else [steps - 1]
    outer = model.overflow
    model.overflow = OverflowCounter()  # the codes of the "input" tensor; the run counts them itself
    codes = model.quantize_input(x.reshape(samples, steps, -1))
    # this run's saturate / wrap events alone (not the float -> int conversion's): they go
    # into the manifest and verify's re-run must count the same
    model.overflow = counter = OverflowCounter()
    try:
        vectors = _collect(model, x, y, codes, start, write_steps, lane_layout(params))
    finally:
        outer.merge(counter)
        model.overflow = outer
    vectors.overflow = counter
    return vectors


def _collect(model, x, y, codes, start: int, write_steps: list[int], layout: dict) -> Vectors:
    samples, steps = int(x.shape[0]), int(x.shape[1])
    params = model.params
    window = steps - start
    entries: list[Entry] = []
    arrays: dict[str, np.ndarray] = {}
    etas: dict[int, int] = {}

    def put(entry: Entry, s: int, i: int, value: np.ndarray, lead: int) -> None:
        if entry.key not in arrays:
            entries.append(entry)
            arrays[entry.key] = np.zeros((samples, lead) + value.shape, np.int64)
        arrays[entry.key][s, i] = value

    for s in range(samples):
        before = model.params
        lanes_before = model.lanes.copy()
        lion = model.params.optimizer.kind == "lion"
        momentum_before = {k: v.copy() for k, v in model.momentum.items()} if lion else None
        result = model.run(x[s:s + 1], y[s:s + 1], train=True, log=True, apply=True)
        log = result.log
        etas.update({int(k): int(v) for k, v in result.etas.items()})
        for lp in before.layers:
            i, name = lp.index, lp.name
            for tensor, key, fmt_name, meaning in STEP_TENSORS:
                for t in range(steps):
                    if tensor == "input":
                        value = codes[s, t] if i == 0 else log[(t, f"layer{i - 1}", "spikes")].reshape(-1)
                    elif tensor == "rec_input":
                        if lp.kind != "recurrent":
                            break
                        value = (log[(t - 1, name, "spikes")].reshape(-1) if t
                                 else np.zeros(lp.geometry.n_out, np.int64))
                    elif (t, name, key) in log:
                        value = _drop_batch(log[(t, name, key)], tensor != "bias_trace")
                    else:
                        break
                    fmt = lp.fmts.input if tensor == "input" else _fmt(lp, fmt_name)
                    put(Entry(i, tensor, "step", ("sample", "step") + _elem_dims(lp, tensor), fmt, meaning),
                        s, t, np.asarray(value, np.int64), steps)
            for tensor, key, fmt_name, meaning in WINDOW_TENSORS:
                for w, t in enumerate(range(start, steps)):
                    if (t, name, key) not in log:
                        break
                    value = _drop_batch(log[(t, name, key)], not tensor.startswith("acc_"))
                    put(Entry(i, tensor, "window", ("sample", "window_step") + _elem_dims(lp, tensor),
                              _fmt(lp, fmt_name), meaning), s, w, value, window)
            learns = i in before.learners
            for tensor, fmt_name in WRITE_TENSORS:
                current = getattr(lp, tensor)
                if current is None:
                    continue
                fmt = _fmt(lp, fmt_name)
                dims = _elem_dims(lp, tensor)
                if not learns:
                    if s == 0:
                        entries.append(Entry(i, tensor, "static", dims, fmt, f"{tensor} (this layer does not learn)"))
                        arrays[f"layer{i}/{tensor}"] = np.asarray(current, np.int64).copy()
                    continue
                first, count = layout[(i, tensor)]
                lanes = lanes_before[first:first + count]
                stochastic = fmt.rounding == "stochastic"
                momentum = None if momentum_before is None else momentum_before[(i, tensor)]
                for w, t in enumerate(write_steps):
                    new = np.asarray(log[(t, name, f"new_{tensor}")], np.int64)
                    wd = ("sample", "write") + dims
                    put(Entry(i, tensor, "write", wd, fmt, f"{tensor} before the write"), s, w, current,
                        len(write_steps))
                    put(Entry(i, f"{tensor}_next", "write", wd, fmt, f"{tensor} after the write"), s, w, new,
                        len(write_steps))
                    if (t, name, f"decayed_acc_{tensor}") in log:  # signum: the accumulator carried on
                        put(Entry(i, f"acc_{tensor}_carried", "write", wd, lp.fmts.update,
                                  f"signum: acc_{tensor} - (acc_{tensor} >> n) after the write, carried into "
                                  "the next window step or sample"),
                            s, w, np.asarray(log[(t, name, f"decayed_acc_{tensor}")], np.int64), len(write_steps))
                    if momentum is not None:
                        new_momentum = np.asarray(log[(t, name, f"momentum_{tensor}")], np.int64)
                        put(Entry(i, f"momentum_{tensor}", "write", wd, lp.fmts.momentum,
                                  f"lion momentum of {tensor} before the write"), s, w, momentum, len(write_steps))
                        put(Entry(i, f"momentum_{tensor}_next", "write", wd, lp.fmts.momentum,
                                  f"lion momentum of {tensor} after the write"), s, w, new_momentum,
                            len(write_steps))
                        momentum = new_momentum
                    if stochastic:
                        nxt = next_states(lanes)
                        put(Entry(i, f"{tensor}_lanes", "write", wd, LANE_FORMAT,
                                  f"xorshift32 lane states of {tensor} before the write"),
                            s, w, lanes.reshape(current.shape), len(write_steps))
                        put(Entry(i, f"{tensor}_lanes_next", "write", wd, LANE_FORMAT,
                                  f"xorshift32 lane states of {tensor} after the write (one step per weight)"),
                            s, w, nxt.reshape(current.shape), len(write_steps))
                        lanes = nxt
                    current = new
                if not np.array_equal(model.lanes[first:first + count], lanes):
                    raise RuntimeError(f"layer{i}.{tensor}: lane states derived for the vectors differ from "
                                       "the model's (one xorshift32 step per stochastic write assumed)")
                if not np.array_equal(getattr(model.params.layers[i], tensor), current):
                    raise RuntimeError(f"layer{i}.{tensor}: logged writes do not end at the model's weights")
    # network-wide: the class label per sample
    classes = int(params.num_classes)
    label_fmt = FixedFormat(signed=False, bits=max(1, (classes - 1).bit_length()), frac=0)
    entries.append(Entry(None, "target", "sample", ("sample",), label_fmt, "class label (0-based)"))
    arrays["target"] = np.asarray(y, np.int64).reshape(samples)
    return Vectors(entries, arrays, samples, steps, window, params.update, write_steps, etas)


# ----------------------------------------------------------------------------- writing


def layer_info(model) -> list[dict]:
    """The manifest's ``layers`` section: what the config's model is, layer by layer."""
    layers = []
    for lp in model.params.layers:
        g = lp.geometry
        layers.append({
            "index": lp.index, "name": lp.name, "kind": lp.kind, "n_in": g.n_in, "n_out": g.n_out,
            "channels": g.channels, "positions": g.positions, "taps": g.taps,
            "reset": lp.reset, "psi": lp.const.psi_kind, "learns": lp.index in model.params.learners,
            "binary_input": lp.fmts.binary_input,
        })
    return layers


def render_golden(vectors: Vectors, model, config_dict: dict, source: Source, inputs: dict
                  ) -> dict[str, bytes]:
    """Every file of the vector set (path -> bytes), range-checked; nothing touches the disk.

    The manifest is validated by :class:`~rtl_export.manifest.GoldenManifest` before it is
    written: ``verify`` reads it back through the same model."""
    files: dict[str, bytes] = {}
    listing = []
    for entry in vectors.entries:
        array = vectors.arrays[entry.key]
        check_rtl_width(entry.fmt, entry.path)
        payload = hexio.encode_hex(array, entry.fmt, entry.path)
        files[entry.path] = payload
        listing.append({
            "path": entry.path, "npz_key": entry.key, "layer": entry.layer, "tensor": entry.tensor,
            "phase": entry.phase, "dims": list(entry.dims), "shape": list(array.shape),
            "words": int(array.size), "format": GoldenFormat.of(entry.fmt), "digits": hexio.digits(entry.fmt.bits),
            "order": ELEMENT_ORDER, "meaning": entry.meaning, "sha256": hexio.sha256(payload),
        })
    npz = hexio.encode_npz({e.key: vectors.arrays[e.key] for e in vectors.entries})
    files[NPZ] = npz
    manifest = {
        "schema": SCHEMA,
        "kind": "golden",
        "samples": vectors.samples, "steps": vectors.steps, "window": vectors.window,
        "window_start": vectors.steps - vectors.window, "batch": 1, "update": vectors.update,
        "write_steps": vectors.write_steps, "etas": {str(k): v for k, v in sorted(vectors.etas.items())},
        "learning_signal": model.params.learning_signal, "bias_update": model.params.bias_update,
        "input": inputs, "source": source.to_json(), "layers": layer_info(model),
        "element_order": ELEMENT_ORDER,
        "hex": HEX_RULE,
        "files": listing,
        "npz": {"path": NPZ, "sha256": hexio.sha256(npz), "keys": [e.key for e in vectors.entries],
                "dtype": "int64"},
        "overflow": OverflowInfo.of(vectors.overflow),
        "config": config_dict,
    }
    files[MANIFEST] = dump(GoldenManifest, manifest, MANIFEST)
    return files


def check_rtl_width(fmt: FixedFormat, where: str) -> None:
    if fmt.bits > RTL_MAX_BITS:
        raise InputError(f"{where}: format {fmt.describe_short()} is wider than the RTL supports "
                         f"({RTL_MAX_BITS} bits)")


def golden(config, config_dict: dict, out: Path, samples: int, steps: int, checkpoint: Path | None = None,
           density: float | None = None, seed: int = 0) -> Vectors:
    """Build the model, run it, write the set atomically into ``out``. Returns the vectors.

    Every bound (``--samples``, ``--steps``, ``--seed``, ``--random-density``, the size
    of the set) is checked before the model is built or anything is allocated."""
    from rtl_export.model import check_run_args, check_set_size, load_inputs, window_of
    from rtl_export.outdir import check_target

    check_target(out)
    check_run_args(samples, steps, density, seed)
    window_of(config, steps)
    check_set_size(config, samples, steps)
    model, source = build_model(config, checkpoint)
    x, y, inputs = load_inputs(config, samples, steps, density, seed)
    vectors = simulate(model, x, y)
    write_tree(out, render_golden(vectors, model, config_dict, source, inputs))
    return vectors


# ----------------------------------------------------------------------------- reading


@dataclass
class VectorSet:
    """A vector set read back and checked (hashes, word counts, widths, npz == hex)."""

    root: Path
    manifest: GoldenManifest
    arrays: dict[str, np.ndarray]
    entries: list[GoldenFile]

    def array(self, key: str) -> np.ndarray:
        return self.arrays[key]


def read_golden_manifest(root: Path) -> GoldenManifest:
    return read_manifest(root, GoldenManifest, SCHEMA, "manifest")


def load_vectors(root: Path) -> VectorSet:
    """Read a vector set; every problem is an InputError naming the file or manifest field.

    Only files inside ``root`` are read (symlinks resolved), each at most as large as its
    manifest entry says, and the npz headers are checked before an array is allocated."""
    root = Path(root)
    manifest = read_golden_manifest(root)
    mpath = root / MANIFEST
    arrays: dict[str, np.ndarray] = {}
    for n, entry in enumerate(manifest.files):
        where = f"{mpath}: files[{n}] ({entry.path})"
        path = inside(root, entry.path, f"{where}.path")
        payload = read_listed(path, entry.words * (entry.digits + 1))
        if hexio.sha256(payload) != entry.sha256:
            raise InputError(f"{path}: sha256 mismatch (file changed since the manifest was written)")
        fmt = entry.format.fixed()
        arrays[entry.npz_key] = hexio.decode_hex(payload, fmt, entry.words, str(path)).reshape(entry.shape)
    npz_path = inside(root, manifest.npz.path, f"{mpath}: npz.path")
    # int64 data plus the zip and .npy headers of every member
    limit = 8 * sum(e.words for e in manifest.files) + 1024 * len(manifest.files) + 4096
    payload = read_listed(npz_path, limit)
    if hexio.sha256(payload) != manifest.npz.sha256:
        raise InputError(f"{npz_path}: sha256 mismatch (file changed since the manifest was written)")
    stored = hexio.decode_npz(payload, str(npz_path), {key: value.shape for key, value in arrays.items()})
    for key, value in arrays.items():
        if not np.array_equal(stored[key], value):
            raise InputError(f"{npz_path}: array '{key}' differs from {key}.hex")
    return VectorSet(root, manifest, arrays, list(manifest.files))


# ----------------------------------------------------------------------------- verifying


@dataclass
class Mismatch:
    key: str
    sample: int
    step: int | None
    index: tuple[int, ...]
    stored: int | None
    model: int | None

    def describe(self) -> str:
        where = f"sample {self.sample} step {self.step}" if self.step is not None else "initial"
        if self.stored is None or self.model is None:
            return f"{self.key}: {where}: {self.index}"
        return (f"{self.key}.hex: {where} index {self.index}: vectors {self.stored}, "
                f"integer model {self.model}")


def _step_of(entry: GoldenFile, manifest: GoldenManifest, lead: int) -> int | None:
    if entry.phase == "step":
        return lead
    if entry.phase == "window":
        return manifest.window_start + lead
    if entry.phase == "write":
        return manifest.write_steps[lead]
    return None


def first_mismatch(vs: VectorSet, vectors: Vectors) -> Mismatch | None:
    """Earliest difference by (sample, step, layer, tensor order, index), or None."""
    manifest = vs.manifest
    expected = {e.key: e for e in vectors.entries}
    best, best_rank = None, None
    order = {key: n for n, key in enumerate(expected)}
    for key in list(expected) + [k for k in vs.arrays if k not in expected]:
        if key not in vs.arrays or key not in expected:
            rank = (-1, -1, -1, order.get(key, -1))
            mismatch = Mismatch(key, 0, None, ("present in the model" if key in expected else "not in the model",),
                                None, None)
        else:
            stored, model = vs.arrays[key], vectors.arrays[key]
            entry = next(e for e in vs.entries if e.npz_key == key)
            if stored.shape != model.shape:
                rank = (-1, -1, -1, order[key])
                mismatch = Mismatch(key, 0, None, (f"shape {list(stored.shape)} vs model {list(model.shape)}",),
                                    None, None)
            else:
                diff = stored != model
                if not diff.any():
                    continue
                first = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(diff)[0]), diff.shape))
                phase = entry.phase
                if phase in ("step", "window", "write"):
                    # earliest (sample, lead) with a difference, then its first element
                    per = diff.reshape(diff.shape[0], diff.shape[1], -1).any(axis=2)
                    s, lead = (int(i) for i in np.argwhere(per)[0])
                    sub = diff[s, lead]
                    index = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(sub)[0]), sub.shape))
                    step = _step_of(entry, manifest, lead)
                    full = (s, lead) + index
                    # a write happens after the step's other tensors
                    rank = (s, step, 1 if phase == "write" else 0, entry.layer or 0, order[key])
                    mismatch = Mismatch(key, s, step, index, int(stored[full]), int(model[full]))
                else:
                    s = first[0] if phase == "sample" else 0
                    index = first[1:] if phase == "sample" else first
                    rank = (s if phase == "sample" else -1, -1, -1, order[key])
                    mismatch = Mismatch(key, s, None, index, int(stored[first]), int(model[first]))
        if best_rank is None or rank < best_rank:
            best, best_rank = mismatch, rank
    return best


def check_overflow(vs: VectorSet, vectors: Vectors) -> None:
    """The manifest's overflow rows must be the re-run's (tensor, format, events, elements).

    Called once every value matched: the same values with other counts means the
    manifest was edited, so the difference is bad input naming the row (exit 2)."""
    mpath = vs.root / MANIFEST
    stored = vs.manifest.overflow.tensors
    model = vectors.overflow.rows()
    for n, (row, (name, fmt, events, elements)) in enumerate(zip(stored, model)):
        for field_name, have, want in (("tensor", row.tensor, name), ("format", row.format, fmt),
                                       ("events", row.events, events), ("elements", row.elements, elements)):
            if have != want:
                raise InputError(f"{mpath}: overflow.tensors[{n}] ({row.tensor}).{field_name} = {have} but the "
                                 f"integer model re-run gives {want}")
    if len(stored) != len(model):
        raise InputError(f"{mpath}: overflow.tensors lists {len(stored)} tensors, the integer model re-run "
                         f"records {len(model)}")


def _expect(mpath: Path, name: str, stored, wanted) -> None:
    if stored != wanted:
        raise InputError(f"{mpath}: {name} = {stored!s:.80} but the config gives {wanted!s:.80}")


def _check_run_facts(vs: VectorSet, model) -> None:
    """Manifest fields the config decides (window, writes, etas, layers): equal or refused."""
    from core.config import window_start

    m, mpath = vs.manifest, vs.root / MANIFEST
    params = model.params
    try:
        start = window_start(m.steps, params.window)
    except ValueError as error:
        raise InputError(f"{mpath}: config: {error}") from None
    _expect(mpath, "window", m.window, m.steps - start)
    _expect(mpath, "update", m.update, params.update)
    _expect(mpath, "learning_signal", m.learning_signal, params.learning_signal)
    _expect(mpath, "bias_update", m.bias_update, params.bias_update)
    etas = {str(k): int(v) for k, v in sorted(model.etas(1, m.window).items())}
    _expect(mpath, "etas", dict(m.etas), etas)
    if not isinstance(m.input, RandomInput):
        _expect(mpath, "input.kind", m.input.kind, vs.manifest.config.data.kind)
    wanted = layer_info(model)
    if len(m.layers) != len(wanted):
        _expect(mpath, "layers (count)", len(m.layers), len(wanted))
    for n, (layer, want) in enumerate(zip(m.layers, wanted)):
        for name, value in layer.model_dump().items():
            _expect(mpath, f"layers[{n}].{name}", value, want[name])


def _check_entries(vs: VectorSet, vectors: Vectors) -> None:
    """Per-file facts the config decides (format, dims, phase, meaning): equal or refused."""
    mpath = vs.root / MANIFEST
    expected = {e.key: e for e in vectors.entries}
    for n, entry in enumerate(vs.entries):
        want = expected.get(entry.npz_key)
        if want is None:
            continue  # reported as a mismatch (a tensor the model does not produce)
        fmt = entry.format.fixed()
        if fmt != want.fmt:
            text = fmt.describe_short() if fmt.describe_short() != want.fmt.describe_short() else fmt.describe()
            other = want.fmt.describe_short() if text == fmt.describe_short() else want.fmt.describe()
            raise InputError(f"{mpath}: files[{n}]: {entry.path}.format = {text} but the config's model stores it "
                             f"as {other}")
        for name, stored, wanted in (("phase", entry.phase, want.phase), ("dims", entry.dims, list(want.dims)),
                                     ("meaning", entry.meaning, want.meaning)):
            if stored != wanted:
                raise InputError(f"{mpath}: files[{n}] ({entry.path}).{name} = {stored!s:.60} but the config's "
                                 f"model gives {wanted!s:.60}")


def _check_random_input(vs: VectorSet, model, config) -> None:
    """A set of random spikes: its density and seed must give its input and labels again."""
    from rtl_export.model import load_inputs

    spec = vs.manifest.input
    if not isinstance(spec, RandomInput):
        return  # the data files live outside the set: verify reads nothing there
    m, mpath = vs.manifest, vs.root / MANIFEST
    x, y, _ = load_inputs(config, m.samples, m.steps, spec.density, spec.seed)
    codes = model.quantize_input(x.reshape(m.samples, m.steps, -1))
    stored = vs.arrays.get("layer0/input")
    if stored is None or stored.shape != codes.shape or not np.array_equal(stored, codes) \
            or not np.array_equal(vs.arrays.get("target"), y):
        raise InputError(f"{mpath}: input: density {spec.density} and seed {spec.seed} do not give the set's "
                         "layer0/input.hex and target.hex (input.density or input.seed edited?)")


def rerun_model(vs: VectorSet, checkpoint: Path | None = None) -> tuple[Vectors, list[str]]:
    """Re-run the integer model of a vector set from its stored initial state.

    The model is rebuilt from the manifest's config; its initial integer weights and
    stochastic lanes are replaced by the set's (hash-checked) first values, so a set made
    from a checkpoint can be re-run without it. When the weights are reproducible (no
    checkpoint, or ``checkpoint`` given), the rebuilt model's own initial codes must equal
    the stored ones too. Manifest fields the config decides are checked before the run.
    """
    from dataclasses import replace

    from fixedpoint.network import lane_layout

    manifest = vs.manifest
    mpath = vs.root / MANIFEST
    config = manifest.config
    src = manifest.source
    notes = []
    if checkpoint is not None:
        from rtl_export.model import file_sha256

        if not Path(checkpoint).is_file():
            raise InputError(f"{checkpoint}: checkpoint not found")
        # the hash decides before anything is unpickled: a file that is not the one the
        # set was made from is never loaded
        if src.checkpoint_sha256 != file_sha256(Path(checkpoint)):
            raise InputError(f"{checkpoint}: not the checkpoint these vectors were made from (sha256 differs)")
        model, source = build_model(config, checkpoint)
        reproducible = True
    else:
        model, source = build_model(config, None)
        reproducible = src.weights == "init"
        if not reproducible:
            notes.append("initial weights taken from the vectors (pass --checkpoint to check them too)")
    _check_run_facts(vs, model)
    params = model.params
    first_layer = params.layers[0]
    codes = vs.arrays.get("layer0/input")
    if codes is None or "target" not in vs.arrays:
        raise InputError(f"{mpath}: the set has no layer0/input or target")
    shape = tuple(config.network.input_shape)
    if codes.ndim != 3 or codes.shape[2] != int(np.prod(shape)):
        raise InputError(f"{mpath}: 'layer0/input' has shape {list(codes.shape)}, the config's network needs "
                         f"[samples, steps, {int(np.prod(shape))}]")
    target = vs.arrays["target"]
    classes = params.num_classes
    if target.shape != (codes.shape[0],) or target.min() < 0 or target.max() >= classes:
        raise InputError(f"{mpath}: 'target' must hold one label in 0..{classes - 1} per sample")
    _check_random_input(vs, model, config)
    layout = lane_layout(params)
    lanes = model.lanes.copy()
    layers = []
    for lp in params.layers:
        changes = {}
        for tensor in ("weight", "rec_weight", "bias"):
            value = getattr(lp, tensor)
            if value is None:
                continue
            key = f"{lp.name}/{tensor}"
            if key not in vs.arrays:
                raise InputError(f"{mpath}: no '{key}' in the set (initial {tensor} of {lp.name})")
            stored = vs.arrays[key]
            initial = stored[0, 0] if stored.ndim == value.ndim + 2 else stored
            if initial.shape != value.shape:
                raise InputError(f"{mpath}: '{key}' has shape {list(initial.shape)}, the config's network needs "
                                 f"{list(value.shape)}")
            if reproducible and not np.array_equal(initial, value):
                where = np.argwhere(initial != value)[0]
                raise InputError(f"{key}.hex: initial {tensor} at {tuple(int(i) for i in where)} is "
                                 f"{int(initial[tuple(where)])}, the config's quantized weights give "
                                 f"{int(value[tuple(where)])}")
            changes[tensor] = initial.astype(np.int64)
            lane_key = f"{key}_lanes"
            if lane_key in vs.arrays:
                first, count = layout[(lp.index, tensor)]
                stored_lanes = vs.arrays[lane_key][0, 0].reshape(-1)
                if stored_lanes.size != count:
                    raise InputError(f"{mpath}: '{lane_key}' has {stored_lanes.size} lanes, the config's network "
                                     f"needs {count}")
                if reproducible and not np.array_equal(stored_lanes, lanes[first:first + count]):
                    raise InputError(f"{lane_key}.hex: initial lane states differ from quant.seed's")
                lanes[first:first + count] = stored_lanes.astype(np.uint32)
        layers.append(replace(lp, **changes))
    model.params = replace(params, layers=tuple(layers))
    model.lanes = lanes
    lion = model.params.optimizer.kind == "lion"
    for (index, tensor), value in (model.momentum if lion else {}).items():  # the first write's momentum
        key = f"layer{index}/momentum_{tensor}"
        if key not in vs.arrays or vs.arrays[key].shape[2:] != value.shape:
            raise InputError(f"{mpath}: no '{key}' of shape {list(value.shape)} in the set (optimizer lion)")
        initial = vs.arrays[key][0, 0]
        if reproducible and initial.any():
            raise InputError(f"{key}.hex: the initial momentum must be 0 (a fresh optimizer)")
        model.momentum[(index, tensor)] = initial.astype(np.int64)
    x = first_layer.fmts.input.to_float(codes).reshape(codes.shape[:2] + shape)
    vectors = simulate(model, x, target)
    _check_entries(vs, vectors)
    return vectors, notes


def verify(root: Path, checkpoint: Path | None = None) -> tuple[Mismatch | None, VectorSet, Vectors, list[str]]:
    """Load and check a set, re-run the model; (first mismatch or None, set, re-run, notes).

    Bad files or manifest fields raise InputError (exit 2); a sound set that the model
    computes differently gives a mismatch (exit 1). When every value matches, the
    overflow counts must match too (:func:`check_overflow`)."""
    vs = load_vectors(root)
    vectors, notes = rerun_model(vs, checkpoint)
    mismatch = first_mismatch(vs, vectors)
    if mismatch is None:
        check_overflow(vs, vectors)
    return mismatch, vs, vectors, notes
