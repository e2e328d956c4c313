"""Rendering an :class:`~hwmodel.estimate.Estimate`: rich tables, JSON, CSV and plots.

Everything shown is per sample (batch totals / B) unless a column says "per step"
(per sample / T). Units, one convention everywhere: energies in J with SI prefixes
(pJ, nJ, uJ); memory sizes in binary units, B / KiB / MiB / GiB (1 KiB = 1024 bytes = 8192
bits, the unit of ``size_kb`` and of the SRAM anchors); JSON and CSV carry bits and pJ.
Operations are split by class: AC (synaptic accumulate, ``syn_add``), MUL (``mul``),
MAC (``mac``) and their sum AC+MUL+MAC.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace

from hwmodel.estimate import (
    OP_CLASS_NAMES,
    OP_CLASSES,
    Estimate,
    estimate_at,
    memory_tensors,
    structural,
)

MODE_NAMES = {"inference": "inference", "stllr": "S-TLLR", "bptt": "BPTT"}
PHASE_ORDER = ("forward", "traces", "learning_signal", "eligibility_causal", "eligibility_noncausal", "accumulate",
               "weight_write")
#: Columns of a ratio table: (key of :func:`ratios`, title).
RATIO_COLUMNS = (("state_memory", "state memory"), ("learning_memory", "state + grad acc"),
                 ("total_memory", "total memory"), ("ac", "AC"), ("mul", "MUL"), ("mac", "MAC"),
                 ("ac_mul_mac", "AC+MUL+MAC"), ("ac_mul_mac_dense", "AC+MUL+MAC dense"), ("energy", "energy"),
                 ("latency", "latency"))


# ------------------------------------------------------------------------------ numbers


def si(value: float, unit: str = "") -> str:
    """3 significant digits with an SI prefix: 1.23 k, 4.56 M."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}{' ' + unit if unit else ''}"
    prefixes = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"),
                (1e-12, "p"), (1e-15, "f")]
    for scale, prefix in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def energy_str(pj: float) -> str:
    return si(pj * 1e-12, "J")


def bits_str(bits: float) -> str:
    """A memory size in binary units: 920 B, 7.99 KiB, 1.5 MiB (1 KiB = 1024 bytes)."""
    size = bits / 8
    if not math.isfinite(size):
        return f"{size:g} B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} B" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} TiB"  # not reached


def kib(bits: float) -> float:
    return bits / 8192


def ratio_str(x: float) -> str:
    if math.isnan(x):
        return "-"
    return "inf" if not math.isfinite(x) else f"{x:.2f}x"


# ------------------------------------------------------------------------------ summary


def _div(x: float, y: float) -> float:
    """x / y; inf when only y is 0, nan when both are (null in JSON; "inf" and "-" in the tables)."""
    if not y:
        return math.nan if not x else math.inf
    return x / y


def ratios(est: Estimate) -> dict[str, float]:
    """BPTT / S-TLLR (> 1: S-TLLR needs less)."""
    if "bptt" not in est.results or "stllr" not in est.results:
        return {}
    b, s = est.results["bptt"], est.results["stllr"]
    out = {
        "state_memory": _div(b.state_bits, s.state_bits),
        "learning_memory": _div(b.state_bits + b.gradient_bits, s.state_bits + s.gradient_bits),
        "total_memory": _div(b.memory_bits, s.memory_bits),
    }
    for op_class in OP_CLASSES:
        out[op_class] = _div(b.class_per_sample(op_class), s.class_per_sample(op_class))
    out["ac_mul_mac_dense"] = _div(est.dense["bptt"]["ac_mul_mac"], est.dense["stllr"]["ac_mul_mac"])
    out["ops"] = _div(b.compute_ops_per_sample, s.compute_ops_per_sample)
    out["energy"] = _div(b.energy_pj, s.energy_pj)
    out["latency"] = _div(b.latency_s, s.latency_s)
    return out


def network_line(est: Estimate) -> str:
    cfg = est.inputs.config
    shapes = " -> ".join(["x".join(map(str, est.layers[0].in_shape))] +
                         [f"{ly.kind}:{'x'.join(map(str, ly.out_shape))}" for ly in est.layers])
    setup = est.setup
    return (f"{shapes} | T={setup.steps} k={setup.window} B={setup.batch} | {cfg.learning.learning_signal}, "
            f"{cfg.learning.update} update | activity: {est.activity.described}")


def mode_summary(est: Estimate, mode: str) -> dict:
    r = est.results[mode]
    T = r.setup.steps
    out = {op_class: r.class_per_sample(op_class) for op_class in OP_CLASSES}
    out.update({f"{op_class}_dense": n for op_class, n in est.dense[mode].items()})
    out.update({
        "ops": r.compute_ops_per_sample,
        "energy_compute_pj": r.energy_compute_pj,
        "energy_memory_pj": r.energy_memory_pj,
        "energy_pj": r.energy_pj,
        "energy_compute_fp32_pj": r.fp32_compute_pj(est.inputs.hardware.energy.fp32),
        "latency_s": r.latency_s,
        "ac_mul_mac_per_step": r.ac_mul_mac_per_sample / T,
        "energy_pj_per_step": r.energy_pj / T,
        "latency_s_per_step": r.latency_s / T,
        "state_bits": r.state_bits,
        "gradient_bits": r.gradient_bits,
        "parameter_bits": r.parameter_bits,
        "memory_bits": r.memory_bits,
        "onchip_bits": r.onchip_bits,
        "bound": "compute" if r.cycles == r.compute_cycles else
                 max(r.bank_cycles, key=r.bank_cycles.get),
    })
    return out


# ---------------------------------------------------------------- formats and the spec


FORMAT_NAMES = ("input", "weight", "bias", "current", "membrane", "leak", "decay", "factor", "pre_trace",
                "post_trace", "psi", "psi_slope", "error", "learning_signal", "modulation", "feedback", "update",
                "learning_rate")


def formats_of(est: Estimate) -> dict[str, dict[str, str]]:
    """layer -> tensor -> format (``s16.10 nearest_even saturate``), plus the Psi table and leak mode."""
    out = {}
    for ly in est.layers:
        f = ly.fmts
        row = {name: getattr(f, name).describe() for name in FORMAT_NAMES}
        row["psi_lut"] = (f"{f.psi_lut.kind} {f.psi_lut.entries} entries, index_shift {f.psi_lut.index_shift}"
                          + (f", mantissa_bits {f.psi_lut.mantissa_bits}" if f.psi_lut.kind == "segmented" else ""))
        row["leak_mode"] = f.leak_mode
        out[ly.name] = row
    return out


def _layer_groups(per_layer: dict[str, dict]) -> list[tuple[str, dict]]:
    """Consecutive layers with equal rows merged: [('layer0', row), ('layer1-3', row)]."""
    groups: list[tuple[list[str], dict]] = []
    for name, row in per_layer.items():
        if groups and groups[-1][1] == row:
            groups[-1][0].append(name)
        else:
            groups.append(([name], row))
    return [(names[0] if len(names) == 1 else f"{names[0]}-{names[-1][5:]}", row) for names, row in groups]


def datapath_rows(est: Estimate) -> dict[str, dict]:
    """Per layer, the datapath spec of the costed run (fixedpoint.spec): every op in step
    order with its phase, kind, operand widths, tensor and memory, what it computes, and how
    many times it runs per sample (the quantity per sample x per); the shift table; the
    exact intermediate widths."""
    from fixedpoint import spec

    setup = est.setup
    train = any(m != "inference" for m in est.results) and est.activity.train
    shapes = est.layers  # LayerInfo is the spec's LayerShape
    learning = setup.learning if train else None
    readout = len(est.layers) - 1
    quantities = [{**est.activity.totals[i], **structural(ly, setup, i == readout)}
                  for i, ly in enumerate(est.layers)]
    ops = spec.network_spec(shapes, learning)
    shifts = spec.network_shifts(shapes, setup.learning_signal)
    hw = est.inputs.hardware
    out = {}
    for ly, shape in zip(est.layers, shapes):
        layer_ops = list(ops[ly.index])
        if train and ly.index in setup.learners:
            layer_ops += spec.weight_write_ops(shape, setup.etas[ly.index])
        rows = []
        for step, op in enumerate(layer_ops, 1):
            source = readout if op.source == "readout" else ly.index
            quantity = quantities[source].get(op.count, 0) / setup.batch
            rows.append({"step": step, "phase": op.phase, "kind": op.kind, "width": op.width, "tensor": op.tensor,
                         "memory": hw.memory_of(op.tensor, ly.name) if op.tensor else "",
                         "what": op.what, "quantity": op.count + (" (readout)" if op.source == "readout" else ""),
                         "quantity_per_sample": quantity, "per": op.per, "runs_per_sample": quantity * op.per})
        out[ly.name] = {
            "ops": rows,
            "shifts": [{"name": s.name, "value": s.value, "meaning": s.meaning} for s in shifts[ly.index].values()],
            "widths": [{"phase": phase, "intermediate": what, "bits": bits}
                       for phase, what, bits in _widths(spec, shape, est.layers[-1].n_out)],
        }
    return out


def _widths(spec, shape, classes: int):
    """spec.datapath_widths(shape[, classes]) -- its signature gained ``classes`` (DFA's fan-in)."""
    import inspect

    if len(inspect.signature(spec.datapath_widths).parameters) >= 2:
        return spec.datapath_widths(shape, classes)
    return spec.datapath_widths(shape)


# ---------------------------------------------------------------------------------- JSON


def to_dict(est: Estimate, detail: bool = True) -> dict:
    hw = est.inputs.hardware
    setup = est.setup
    out = {
        "config": est.inputs.source,
        "network": [{"layer": ly.name, "kind": ly.kind, "in_shape": list(ly.in_shape),
                     "out_shape": list(ly.out_shape), "weights": ly.weight_size + ly.rec_size} for ly in est.layers],
        "setup": {"batch": setup.batch, "steps": setup.steps, "window": setup.window,
                  "learning_signal": setup.learning_signal, "update": setup.update,
                  "learners": [est.layers[i].name for i in setup.learners]},
        "warnings": list(est.warnings),
        "activity": {"source": est.activity.source, "measured": est.activity.measured,
                     "batches": est.activity.batches,  # measured: the totals are the mean of this many
                     "input_rates": est.activity.input_rates, "output_rates": est.activity.output_rates,
                     "bptt_delta": est.activity.delta, "bptt_delta_source": est.activity.delta_source,
                     "overflow_events": est.activity.overflow_events},
        "hardware": {"name": hw.name, "clock_mhz": hw.clock_mhz, "lanes": hw.lanes,
                     "samples_in_flight": hw.samples_in_flight, "energy_source": hw.energy.source},
        "units": {"counts": "per sample (batch totals / batch)", "energy": "pJ", "memory": "bits",
                  "latency": "s", "op_classes": {OP_CLASS_NAMES[c]: list(k) for c, k in OP_CLASSES.items()}},
        "formats": formats_of(est),
        "modes": {},
        "ratios_bptt_over_stllr": ratios(est),
    }
    for mode, r in est.results.items():
        B, T = r.batch, r.setup.steps
        entry = {"summary": mode_summary(est, mode), "layers": r.per_layer(), "phases": r.energy_by_phase(),
                 "memory": [{"layer": t.layer, "tensor": t.tensor, "elements": t.elements,
                             "bits_per_element": t.bits_per_element, "bits": t.bits, "memory": t.memory,
                             "category": t.category, "grows_with_T": t.per_step} for t in r.memory],
                 "banks": [{"name": b.name, "kind": b.kind, "contents_bits": b.contents_bits,
                            "size_bits": b.size_bits, "fits": b.fits, "pj_per_bit": b.pj_per_bit,
                            "accessed_bits_per_sample": b.accessed_bits / B}
                           for b in r.banks.values() if b.contents_bits or b.accessed_bits],
                 "latency": {"compute_cycles_per_sample": r.compute_cycles / B,
                             "bank_cycles_per_sample": {k: v / B for k, v in r.bank_cycles.items()},
                             "seconds_per_sample": r.latency_s},
                 "traffic": r.traffic()}
        if detail:
            entry["ops"] = [{"layer": k.layer, "phase": k.phase, "kind": k.kind, "width": k.width,
                             "tensor": k.tensor, "per_sample": n / B, "per_step": n / B / T,
                             "per_batch": n,
                             "energy_pj_per_sample": (r.compute_pj.get(k) or r.memory_pj.get(k, 0.0)) / B}
                            for k, n in sorted(r.counts.items())]
        out["modes"][mode] = entry
    if detail:
        out["datapath"] = datapath_rows(est)
    return finite(out)


def finite(value):
    """``value`` with every non-finite float replaced by None: JSON has no NaN or Infinity
    (a ratio with a zero denominator, or fp32 energy without an fp32 table, is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(payload) -> str:
    """Strict JSON text (non-finite numbers as null, never NaN/Infinity)."""
    import json

    return json.dumps(finite(payload), indent=1, allow_nan=False) + "\n"


# ----------------------------------------------------------------------------------- CSV


CSV_FIELDS = ["mode", "record", "layer", "phase", "kind", "width", "tensor", "memory", "per_sample", "per_step",
              "bits", "energy_pj_per_sample"]


def to_csv(est: Estimate) -> str:
    """One row per operation key and per stored tensor, for every mode."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for mode, r in est.results.items():
        B, T = r.batch, r.setup.steps
        for k, n in sorted(r.counts.items()):
            energy = (r.compute_pj.get(k) or r.memory_pj.get(k, 0.0)) / B
            memory = r.banks_of.get((k.layer, k.tensor), "") if k.kind in ("read", "write") else ""
            bits = n * int(k.width) / B if k.kind in ("read", "write") else ""
            writer.writerow({"mode": mode, "record": "op", "layer": k.layer, "phase": k.phase, "kind": k.kind,
                             "width": k.width, "tensor": k.tensor, "memory": memory, "per_sample": n / B,
                             "per_step": n / B / T, "bits": bits, "energy_pj_per_sample": energy})
        for t in r.memory:
            writer.writerow({"mode": mode, "record": "memory", "layer": t.layer, "phase": "", "kind": t.category,
                             "width": t.bits_per_element, "tensor": t.tensor, "memory": t.memory,
                             "per_sample": t.elements, "per_step": "", "bits": t.bits, "energy_pj_per_sample": ""})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------- rich


def render_warnings(warnings, console) -> None:
    for warning in warnings:
        console.print(f"warning: {warning}")


def render(est: Estimate, console, detail: bool = False, warnings: bool = True) -> None:
    """The tables of ``hwmodel estimate`` on ``console`` (:mod:`hwmodel.textout`: plain text
    for a file or a pipe, rich for a terminal). ``warnings``: also print the estimate's
    warnings, for a file that must stand alone (the CLI prints them to stderr)."""
    Table = console.table
    console.print(f"hwmodel {est.inputs.source}: {network_line(est)}")
    hw = est.inputs.hardware
    console.print(f"hardware: {hw.name}, {hw.lanes} lanes at {hw.clock_mhz:g} MHz, "
                  f"{hw.samples_in_flight} sample(s) in flight; energy: {hw.energy.source}")
    console.print("units: per sample; memory in KiB/MiB (1 KiB = 1024 bytes); AC = synaptic accumulate "
                  "(syn_add), MUL = multiply, MAC = multiply-accumulate")
    if est.activity.overflow_events:
        runs = f" ({est.activity.batches} batches)" if est.activity.batches > 1 else ""
        console.print(f"warning: the measured run{runs} had {est.activity.overflow_events} overflow events "
                      "(saturate/wrap): its counts are of clipped values")
    if warnings:
        render_warnings(est.warnings, console)

    formats = Table(title="Formats (sign bits.fraction rounding overflow)")
    formats.add_column("tensor")
    groups = _layer_groups(formats_of(est))
    for name, _ in groups:
        formats.add_column(name)
    for tensor in (*FORMAT_NAMES, "psi_lut", "leak_mode"):
        formats.add_row(tensor, *(row[tensor] for _, row in groups))
    console.print(formats)

    summary = Table(title="Per sample (per step = per sample / T)")
    summary.add_column("")
    modes = list(est.results)
    for mode in modes:
        summary.add_column(MODE_NAMES[mode], justify="right")
    sums = {m: mode_summary(est, m) for m in modes}
    rows = [("AC (syn_add)", "ac", si), ("MUL (mul)", "mul", si), ("MAC (mac)", "mac", si),
            ("AC+MUL+MAC", "ac_mul_mac", si), ("AC+MUL+MAC, dense", "ac_mul_mac_dense", si),
            ("all compute ops", "ops", si),
            ("energy, compute", "energy_compute_pj", energy_str), ("energy, memory", "energy_memory_pj", energy_str),
            ("energy, total", "energy_pj", energy_str), ("energy per step", "energy_pj_per_step", energy_str),
            ("compute if all fp32", "energy_compute_fp32_pj", energy_str),
            ("latency", "latency_s", lambda v: si(v, "s")), ("bound by", "bound", str),
            ("state memory", "state_bits", bits_str), ("update accumulators", "gradient_bits", bits_str),
            ("parameters", "parameter_bits", bits_str), ("on-chip total", "onchip_bits", bits_str)]
    for label, key, fmt in rows:
        summary.add_row(label, *(fmt(sums[m][key]) for m in modes))
    console.print(summary)

    layers = Table(title="Per layer, per sample")
    for column in ("layer", "mode", "AC", "MUL", "MAC", "AC+MUL+MAC", "state", "energy"):
        layers.add_column(column, justify="left" if column in ("layer", "mode") else "right")
    per_layer = {mode: est.results[mode].per_layer() for mode in modes}
    for ly in est.layers:
        for m in modes:
            row = per_layer[m].get(ly.name, {})
            layers.add_row(f"{ly.name} {ly.kind} {'x'.join(map(str, ly.out_shape))}", MODE_NAMES[m],
                           *(si(row.get(c, 0.0)) for c in OP_CLASSES),
                           bits_str(row.get("state_bits", 0)),
                           energy_str(row.get("compute_pj", 0.0) + row.get("memory_pj", 0.0)))
    console.print(layers)

    phases = Table(title="Energy by phase, per sample (compute / memory)")
    phases.add_column("phase")
    for mode in modes:
        phases.add_column(MODE_NAMES[mode], justify="right")
    by_phase = {m: est.results[m].energy_by_phase() for m in modes}
    for p in (p for p in PHASE_ORDER if any(p in by_phase[m] for m in modes)):
        cells = []
        for m in modes:
            e = by_phase[m].get(p)
            cells.append("" if e is None else f"{energy_str(e['compute_pj'])} / {energy_str(e['memory_pj'])}")
        phases.add_row(p, *cells)
    console.print(phases)

    banks = Table(title="Memories (contents per mode; pJ/bit from size)")
    banks.add_column("mode")
    banks.add_column("memory")
    banks.add_column("contents", justify="right")
    banks.add_column("pJ/bit", justify="right")
    banks.add_column("accessed / sample", justify="right")
    banks.add_column("tensors")
    for m in modes:
        r = est.results[m]
        for b in r.banks.values():
            if not (b.contents_bits or b.accessed_bits):
                continue
            fits = "" if b.fits else " (over size)"
            banks.add_row(MODE_NAMES[m], b.name, bits_str(b.contents_bits) + fits, f"{b.pj_per_bit:.4f}",
                          bits_str(b.accessed_bits / r.batch), ", ".join(_bank_tensors(r, b.name)))
    console.print(banks)

    rat = ratios(est)
    if rat:
        console.print(ratio_table(console, rat, "BPTT / S-TLLR (> 1: S-TLLR needs less)"))

    if detail:
        render_datapath(est, console)
        for mode, r in est.results.items():
            traffic = Table(title=f"{MODE_NAMES[mode]}: memory traffic per sample (per step)")
            for column in ("layer", "tensor", "access", "memory", "elements", "bits", "bits / step"):
                traffic.add_column(column, justify="right" if column in ("elements", "bits", "bits / step") else "left")
            for row in r.traffic():
                traffic.add_row(row["layer"], row["tensor"], row["access"], row["memory"], si(row["elements"]),
                                si(row["bits"]), si(row["bits_per_step"]))
            console.print(traffic)
        for mode, r in est.results.items():
            ops = Table(title=f"{MODE_NAMES[mode]}: operations per sample")
            for column in ("layer", "phase", "kind", "width", "tensor", "per sample", "per step", "energy"):
                ops.add_column(column, justify="right" if column in ("per sample", "per step", "energy") else "left")
            for k, n in sorted(r.counts.items()):
                energy = (r.compute_pj.get(k) or r.memory_pj.get(k, 0.0)) / r.batch
                ops.add_row(k.layer, k.phase, k.kind, k.width, k.tensor, f"{n / r.batch:.6g}",
                            f"{n / r.batch / r.setup.steps:.6g}", energy_str(energy))
            console.print(ops)


def _bank_tensors(r, bank: str) -> list[str]:
    """Tensors in ``bank``: the tensor name when all its layers are there, else layerN.tensor."""
    where: dict[str, dict[str, str]] = {}
    for t in r.memory:
        where.setdefault(t.tensor, {})[t.layer] = t.memory
    for (layer, tensor), name in r.banks_of.items():
        where.setdefault(tensor, {})[layer] = name
    out = []
    for tensor in sorted(where):
        layers = where[tensor]
        if all(name == bank for name in layers.values()):
            out.append(tensor)
        else:
            out += [f"{layer}.{tensor}" for layer, name in sorted(layers.items()) if name == bank]
    return out


def ratio_table(console, rat: dict, title: str):
    table = console.table(title=title)
    for _, column in RATIO_COLUMNS:
        table.add_column(column, justify="right")
    table.add_row(*(ratio_str(rat[key]) for key, _ in RATIO_COLUMNS))
    return table


def render_datapath(est: Estimate, console) -> None:
    """The datapath spec per layer (``--detail``): ops in step order, shifts, widths."""
    Table = console.table

    setup = est.setup
    train = any(m != "inference" for m in est.results) and est.activity.train
    run = "S-TLLR training step" if train else "inference step"
    for name, data in datapath_rows(est).items():
        ops = Table(title=f"{name}: datapath spec, one {run} in order (runs per sample for the costed run: "
                          f"T = {setup.steps}, k = {setup.window}, B = {setup.batch})")
        for column in ("#", "phase", "kind", "operand bits", "tensor", "memory", "computes", "quantity",
                       "per sample", "x per", "= runs / sample"):
            ops.add_column(column, justify="right" if column in ("#", "per sample", "x per", "= runs / sample")
                           else "left")
        for row in data["ops"]:
            ops.add_row(str(row["step"]), row["phase"], row["kind"], row["width"], row["tensor"], row["memory"],
                        row["what"], row["quantity"], f"{row['quantity_per_sample']:.6g}",
                        str(row["per"]), f"{row['runs_per_sample']:.6g}")
        console.print(ops)
        shifts = Table(title=f"{name}: shifts (fixedpoint.spec.layer_shifts; right shift into the destination "
                             "format, 'left' = alignment of an exact sum, negative = exact left shift)")
        for column in ("name", "bits", "meaning"):
            shifts.add_column(column, justify="right" if column == "bits" else "left")
        for row in data["shifts"]:
            shifts.add_row(row["name"], str(row["value"]), row["meaning"])
        console.print(shifts)
        widths = Table(title=f"{name}: exact intermediate widths (fixedpoint.spec.datapath_widths)")
        for column in ("phase", "intermediate", "bits"):
            widths.add_column(column, justify="right" if column == "bits" else "left")
        for row in data["widths"]:
            widths.add_row(row["phase"], row["intermediate"], str(row["bits"]))
        console.print(widths)


# --------------------------------------------------------------------------------- sweep


def sweep(est: Estimate, ks: list[int], steps_list: list[int]) -> list[dict]:
    """BPTT / S-TLLR for each (T, k) with k <= T: each row is :func:`ratios` of
    :func:`hwmodel.estimate.estimate_at`, so the row at the configured (T, k) is the
    estimate's own answer (a measured activity is used as measured there)."""
    rows = []
    for T in steps_list:
        for k in ks:
            if k > T:
                continue
            point, source = estimate_at(est, T, k)
            s, b = point.results["stllr"], point.results["bptt"]
            row = {"steps": T, "window": k, "activity": source, **ratios(point),
                   "stllr_state_bits": s.state_bits, "bptt_state_bits": b.state_bits,
                   "stllr_ac_mul_mac": s.ac_mul_mac_per_sample, "bptt_ac_mul_mac": b.ac_mul_mac_per_sample,
                   "stllr_ac_mul_mac_dense": point.dense["stllr"]["ac_mul_mac"],
                   "bptt_ac_mul_mac_dense": point.dense["bptt"]["ac_mul_mac"],
                   "stllr_energy_pj": s.energy_pj, "bptt_energy_pj": b.energy_pj,
                   "warnings": list(point.warnings)}
            rows.append(row)
    return rows


SWEEP_CSV_FIELDS = ["steps", "window", "activity", *(key for key, _ in RATIO_COLUMNS), "ops", "stllr_state_bits",
                    "bptt_state_bits", "stllr_ac_mul_mac", "bptt_ac_mul_mac", "stllr_ac_mul_mac_dense",
                    "bptt_ac_mul_mac_dense", "stllr_energy_pj", "bptt_energy_pj", "warnings"]


def sweep_csv(rows: list[dict]) -> str:
    """The sweep, one row per (T, k): ratios BPTT / S-TLLR and both rules' figures (bits, pJ)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SWEEP_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in finite(rows):
        writer.writerow({**{k: row[k] for k in SWEEP_CSV_FIELDS if k != "warnings"},
                         "warnings": " | ".join(row["warnings"])})
    return buffer.getvalue()


def render_sweep(rows: list[dict], console) -> None:
    table = console.table(title="BPTT / S-TLLR vs T and k (> 1: S-TLLR needs less)")
    for column in ("T", "k", "activity", *(title for _, title in RATIO_COLUMNS if title != "latency"),
                   "S-TLLR state", "BPTT state"):
        table.add_column(column, justify="left" if column == "activity" else "right")
    for r in rows:
        table.add_row(str(r["steps"]), str(r["window"]), r["activity"],
                      *(ratio_str(r[key]) for key, title in RATIO_COLUMNS if title != "latency"),
                      bits_str(r["stllr_state_bits"]), bits_str(r["bptt_state_bits"]))
    console.print(table)


def sweep_warnings(est: Estimate, rows: list[dict]) -> list[str]:
    """The estimate's warnings and those of the sweep's rows, each once."""
    out = list(est.warnings)
    for row in rows:
        out += [w for w in row["warnings"] if w not in out]
    return out


# ---------------------------------------------------------------------------------- plot


def memory_vs_steps(est: Estimate, steps_list: list[int]) -> dict[str, list[int]]:
    """State memory (bits) of S-TLLR and BPTT for each T (only BPTT's grows)."""
    setup = est.setup
    samples = est.inputs.hardware.samples_in_flight
    out = {"steps": list(steps_list), "stllr": [], "bptt": []}
    for T in steps_list:
        s = replace(setup, steps=T, window=min(setup.window, T))
        for mode in ("stllr", "bptt"):
            out[mode].append(sum(t.bits for t in memory_tensors(est.layers, s, mode, samples) if t.state))
    return out


def plot(est: Estimate, path: str) -> None:
    """Write :func:`plot_png` to ``path`` (whole or not at all)."""
    from core.atomic import atomic_write_bytes

    atomic_write_bytes(path, plot_png(est))


def _figure(width: float, height: float, panels: int = 2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(width, height))
    return plt, fig, axes


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def plot_png(est: Estimate) -> bytes:
    """Energy per mode stacked by phase (solid: compute, hatched: memory) and state memory vs T, as PNG."""
    plt, fig, (left, right) = _figure(11, 4.2)
    modes = list(est.results)
    names = [MODE_NAMES[m] for m in modes]
    by_phase = {m: est.results[m].energy_by_phase() for m in modes}
    bottom = [0.0] * len(modes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, phase in enumerate(PHASE_ORDER):
        color = colors[index % len(colors)]
        for part, hatch in (("compute_pj", None), ("memory_pj", "//")):
            values = [by_phase[m].get(phase, {}).get(part, 0.0) * 1e-6 for m in modes]
            if not any(values):
                continue
            label = phase if part == "compute_pj" or not any(
                by_phase[m].get(phase, {}).get("compute_pj", 0.0) for m in modes) else None
            left.bar(names, values, bottom=bottom, color=color, hatch=hatch, edgecolor="white" if hatch else None,
                     label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
    left.bar([names[0]], [0.0], color="white", edgecolor="gray", hatch="//", label="(hatched: memory access)")
    left.set_ylabel("energy per sample (uJ)")
    left.set_title("Energy breakdown")
    left.legend(fontsize=7)
    setup = est.setup
    top = max(2 * setup.steps, 10)
    steps_list = sorted({max(1, round(top * i / 20)) for i in range(1, 21)} | {setup.steps})
    mem = memory_vs_steps(est, steps_list)
    right.plot(mem["steps"], [kib(b) for b in mem["stllr"]], label="S-TLLR (flat)")
    right.plot(mem["steps"], [kib(b) for b in mem["bptt"]], label="BPTT (linear in T)")
    right.axvline(setup.steps, color="gray", linestyle=":", label=f"T = {setup.steps}")
    right.set_xlabel("time steps T")
    right.set_ylabel("state memory (KiB)")
    right.set_title("Learning state vs T")
    right.legend(fontsize=8)
    return _png(plt, fig)


def sweep_png(rows: list[dict], title: str = "") -> bytes:
    """The sweep as PNG: AC+MUL+MAC (event-driven and dense) and energy ratios BPTT / S-TLLR
    vs k, one line per T (left); state memory of both rules vs T (right, KiB)."""
    plt, fig, (left, right) = _figure(11, 4.2)
    steps = sorted({r["steps"] for r in rows})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, T in enumerate(steps):
        color = colors[index % len(colors)]
        mine = sorted((r for r in rows if r["steps"] == T), key=lambda r: r["window"])
        ks = [r["window"] for r in mine]
        for key, style, name in (("ac_mul_mac", "-", "AC+MUL+MAC"), ("ac_mul_mac_dense", ":", "dense"),
                                 ("energy", "--", "energy")):
            values = [r[key] if r[key] is not None and math.isfinite(r[key]) else math.nan for r in mine]
            left.plot(ks, values, style, color=color, marker="o", markersize=3, label=f"{name}, T = {T}")
    left.axhline(1.0, color="gray", linewidth=0.8)
    left.set_xlabel("learning window k (steps)")
    left.set_ylabel("BPTT / S-TLLR (> 1: S-TLLR needs less)")
    left.set_title(title or "BPTT / S-TLLR vs k")
    left.legend(fontsize=7)
    by_T = {r["steps"]: r for r in rows}
    right.plot(steps, [kib(by_T[T]["stllr_state_bits"]) for T in steps], marker="o", label="S-TLLR")
    right.plot(steps, [kib(by_T[T]["bptt_state_bits"]) for T in steps], marker="o", label="BPTT")
    right.set_xlabel("time steps T")
    right.set_ylabel("state memory (KiB)")
    right.set_title("Learning state vs T")
    right.legend(fontsize=8)
    return _png(plt, fig)


__all__ = ["bits_str", "energy_str", "finite", "plot", "plot_png", "ratios", "render", "render_sweep", "sweep",
           "sweep_csv", "sweep_png", "to_csv", "to_dict"]
