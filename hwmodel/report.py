"""Rendering an :class:`~hwmodel.estimate.Estimate`: rich tables, JSON, CSV and a plot.

Everything shown is per sample (batch totals / B) unless a column says "per step"
(per sample / T). Energies in pJ (nJ / uJ in the tables), memories in bits (KiB shown).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace

from hwmodel.estimate import (
    MAC_KINDS,
    EnergyModel,
    Estimate,
    cost_mode,
    dense_activity,
    expected_activity,
    make_setup,
    memory_tensors,
    mode_counts,
)

MODE_NAMES = {"inference": "inference", "stllr": "S-TLLR", "bptt": "BPTT"}


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
    return si(bits / 8, "B")


def ratio_str(x: float) -> str:
    return "inf" if not math.isfinite(x) else f"{x:.2f}x"


# ------------------------------------------------------------------------------ summary


def _div(x: float, y: float) -> float:
    """x / y, inf when y is 0 (null in JSON, "inf" in the tables)."""
    return x / y if y else math.inf


def ratios(est: Estimate) -> dict[str, float]:
    """BPTT / S-TLLR (> 1: S-TLLR needs less)."""
    if "bptt" not in est.results or "stllr" not in est.results:
        return {}
    b, s = est.results["bptt"], est.results["stllr"]
    return {
        "state_memory": _div(b.state_bits, s.state_bits),
        "learning_memory": _div(b.state_bits + b.gradient_bits, s.state_bits + s.gradient_bits),
        "total_memory": _div(b.memory_bits, s.memory_bits),
        "macs": _div(b.macs_per_sample, s.macs_per_sample),
        "macs_dense": _div(est.dense_macs["bptt"], est.dense_macs["stllr"]),
        "ops": _div(b.compute_ops_per_sample, s.compute_ops_per_sample),
        "energy": _div(b.energy_pj, s.energy_pj),
        "latency": _div(b.latency_s, s.latency_s),
    }


def network_line(est: Estimate) -> str:
    cfg = est.inputs.config
    shapes = " -> ".join(["x".join(map(str, est.layers[0].in_shape))] +
                         [f"{ly.kind}:{'x'.join(map(str, ly.out_shape))}" for ly in est.layers])
    setup = next(iter(est.results.values())).setup
    return (f"{shapes} | T={setup.steps} k={setup.window} B={setup.batch} | {cfg.learning.learning_signal}, "
            f"{cfg.learning.update} update | activity: {est.activity.source}")


def mode_summary(est: Estimate, mode: str) -> dict:
    r = est.results[mode]
    T = r.setup.steps
    return {
        "macs": r.macs_per_sample,
        "macs_dense": est.dense_macs[mode],
        "ops": r.compute_ops_per_sample,
        "energy_compute_pj": r.energy_compute_pj,
        "energy_memory_pj": r.energy_memory_pj,
        "energy_pj": r.energy_pj,
        "energy_compute_fp32_pj": r.fp32_compute_pj(est.inputs.hardware.energy.fp32),
        "latency_s": r.latency_s,
        "macs_per_step": r.macs_per_sample / T,
        "energy_pj_per_step": r.energy_pj / T,
        "latency_s_per_step": r.latency_s / T,
        "state_bits": r.state_bits,
        "gradient_bits": r.gradient_bits,
        "parameter_bits": r.parameter_bits,
        "memory_bits": r.memory_bits,
        "onchip_bits": r.onchip_bits,
        "bound": "compute" if r.cycles == r.compute_cycles else
                 max(r.bank_cycles, key=r.bank_cycles.get),
    }


# ---------------------------------------------------------------------------------- JSON


def to_dict(est: Estimate, detail: bool = True) -> dict:
    hw = est.inputs.hardware
    setup = next(iter(est.results.values())).setup
    out = {
        "config": est.inputs.source,
        "network": [{"layer": ly.name, "kind": ly.kind, "in_shape": list(ly.in_shape),
                     "out_shape": list(ly.out_shape), "weights": ly.weight_size + ly.rec_size} for ly in est.layers],
        "setup": {"batch": setup.batch, "steps": setup.steps, "window": setup.window,
                  "learning_signal": setup.learning_signal, "update": setup.update,
                  "learners": [est.layers[i].name for i in setup.learners]},
        "activity": {"source": est.activity.source, "measured": est.activity.measured,
                     "input_rates": est.activity.input_rates, "output_rates": est.activity.output_rates,
                     "overflow_events": est.activity.overflow_events},
        "hardware": {"name": hw.name, "clock_mhz": hw.clock_mhz, "lanes": hw.lanes,
                     "samples_in_flight": hw.samples_in_flight, "energy_source": hw.energy.source},
        "units": {"counts": "per sample (batch totals / batch)", "energy": "pJ", "memory": "bits",
                  "latency": "s"},
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
            memory = r.banks_of.get(k.tensor, "") if k.kind in ("read", "write") else ""
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


def render(est: Estimate, console, detail: bool = False) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]hwmodel[/bold] {escape(est.inputs.source)}: {escape(network_line(est))}")
    hw = est.inputs.hardware
    console.print(f"hardware: {hw.name}, {hw.lanes} lanes at {hw.clock_mhz:g} MHz, "
                  f"{hw.samples_in_flight} sample(s) in flight; energy: {hw.energy.source}", markup=False)
    if est.activity.overflow_events:
        console.print(f"warning: the measured run had {est.activity.overflow_events} overflow events "
                      "(saturate/wrap): its counts are of clipped values", markup=False)
    summary = Table(title="Per sample (per step = per sample / T)")
    summary.add_column("")
    modes = list(est.results)
    for mode in modes:
        summary.add_column(MODE_NAMES[mode], justify="right")
    sums = {m: mode_summary(est, m) for m in modes}
    rows = [("MACs (mac+mul+syn_add)", "macs", si), ("MACs, dense", "macs_dense", si), ("all compute ops", "ops", si),
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
    layers.add_column("layer")
    for mode in modes:
        layers.add_column(f"{MODE_NAMES[mode]} MACs", justify="right")
    for mode in modes:
        if mode != "inference":
            layers.add_column(f"{MODE_NAMES[mode]} state", justify="right")
            layers.add_column(f"{MODE_NAMES[mode]} energy", justify="right")
    rows = {mode: est.results[mode].per_layer() for mode in modes}
    for ly in est.layers:
        cells = [f"{ly.name} {ly.kind} {'x'.join(map(str, ly.out_shape))}"]
        cells += [si(rows[m].get(ly.name, {}).get("macs", 0.0)) for m in modes]
        for m in modes:
            if m != "inference":
                row = rows[m].get(ly.name, {})
                cells += [bits_str(row.get("state_bits", 0)),
                          energy_str(row.get("compute_pj", 0.0) + row.get("memory_pj", 0.0))]
        layers.add_row(*cells)
    console.print(layers)

    phases = Table(title="Energy by phase, per sample (compute / memory)")
    phases.add_column("phase")
    for mode in modes:
        phases.add_column(MODE_NAMES[mode], justify="right")
    by_phase = {m: est.results[m].energy_by_phase() for m in modes}
    names = [p for p in ("forward", "traces", "learning_signal", "eligibility_causal", "eligibility_noncausal",
                         "accumulate", "weight_write") if any(p in by_phase[m] for m in modes)]
    for p in names:
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
            tensors = sorted({t.tensor for t in r.memory if t.memory == b.name} |
                             {t for t, name in r.banks_of.items() if name == b.name})
            fits = "" if b.fits else " (over size)"
            banks.add_row(MODE_NAMES[m], b.name, bits_str(b.contents_bits) + fits, f"{b.pj_per_bit:.4f}",
                          bits_str(b.accessed_bits / r.batch), ", ".join(tensors))
    console.print(banks)

    rat = ratios(est)
    if rat:
        table = Table(title="BPTT / S-TLLR (> 1: S-TLLR needs less)")
        for column in ("state memory", "state + grad acc", "total memory", "MACs", "MACs dense", "energy",
                       "latency"):
            table.add_column(column, justify="right")
        table.add_row(*(ratio_str(rat[k]) for k in ("state_memory", "learning_memory", "total_memory", "macs",
                                                      "macs_dense", "energy", "latency")))
        console.print(table)

    if detail:
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


# --------------------------------------------------------------------------------- sweep


def sweep(est: Estimate, ks: list[int], steps_list: list[int]) -> list[dict]:
    """BPTT / S-TLLR ratios for each (T, k) with k <= T, from the estimate's rates.

    A measured activity is turned into rates first (its mean input and spike rates)."""
    from hwmodel.config import ActivityRates, LayerActivity

    inputs = est.inputs
    rates = inputs.rates
    if est.activity.measured:
        layers = {i: LayerActivity(output=r) for i, r in enumerate(est.activity.output_rates)
                  if est.layers[i].spiking}
        rates = ActivityRates(input=est.activity.input_rates[0], layers=layers,
                              default=rates.default if rates else LayerActivity())
    energy = EnergyModel(inputs.hardware, inputs.hardware_source)
    rows = []
    for T in steps_list:
        for k in ks:
            if k > T:
                continue
            config = inputs.config.model_copy(update={"learning": inputs.config.learning.model_copy(
                update={"window": k})})
            setup = make_setup(est.layers, config, T, est.activity.batch if est.activity.measured else None)
            act = expected_activity(est.layers, rates, setup)
            res = {m: cost_mode(m, est.layers, mode_counts(m, est.layers, act, setup), setup, inputs.hardware, energy)
                   for m in ("stllr", "bptt")}
            s, b = res["stllr"], res["bptt"]
            dense_act = dense_activity(est.layers, setup)
            dense = {m: sum(mode_counts(m, est.layers, dense_act, setup).get(kind=kind) for kind in MAC_KINDS)
                     for m in ("stllr", "bptt")}
            rows.append({"steps": T, "window": k,
                         "state_memory": _div(b.state_bits, s.state_bits),
                         "total_memory": _div(b.memory_bits, s.memory_bits),
                         "macs": _div(b.macs_per_sample, s.macs_per_sample),
                         "macs_dense": _div(dense["bptt"], dense["stllr"]),
                         "energy": _div(b.energy_pj, s.energy_pj),
                         "stllr_state_bits": s.state_bits, "bptt_state_bits": b.state_bits,
                         "stllr_macs": s.macs_per_sample, "bptt_macs": b.macs_per_sample})
    return rows


def render_sweep(rows: list[dict], console) -> None:
    from rich.table import Table

    table = Table(title="BPTT / S-TLLR vs T and k (rates)")
    for column in ("T", "k", "state memory", "total memory", "MACs", "MACs dense", "energy", "S-TLLR state",
                   "BPTT state"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["steps"]), str(r["window"]), ratio_str(r["state_memory"]), ratio_str(r["total_memory"]),
                      ratio_str(r["macs"]), ratio_str(r["macs_dense"]), ratio_str(r["energy"]),
                      bits_str(r["stllr_state_bits"]),
                      bits_str(r["bptt_state_bits"]))
    console.print(table)


# ---------------------------------------------------------------------------------- plot


def memory_vs_steps(est: Estimate, steps_list: list[int]) -> dict[str, list[int]]:
    """State memory (bits) of S-TLLR and BPTT for each T (only BPTT's grows)."""
    setup = next(iter(est.results.values())).setup
    samples = est.inputs.hardware.samples_in_flight
    out = {"steps": list(steps_list), "stllr": [], "bptt": []}
    for T in steps_list:
        s = replace(setup, steps=T, window=min(setup.window, T))
        for mode in ("stllr", "bptt"):
            out[mode].append(sum(t.bits for t in memory_tensors(est.layers, s, mode, samples) if t.state))
    return out


def plot(est: Estimate, path: str) -> None:
    """Write :func:`plot_png` to ``path`` (whole or not at all)."""
    from stllr.atomic import atomic_write_bytes

    atomic_write_bytes(path, plot_png(est))


def plot_png(est: Estimate) -> bytes:
    """Energy per mode stacked by phase (solid: compute, hatched: memory) and state memory vs T, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    modes = list(est.results)
    phases = ["forward", "traces", "learning_signal", "eligibility_causal", "eligibility_noncausal", "accumulate",
              "weight_write"]
    names = [MODE_NAMES[m] for m in modes]
    by_phase = {m: est.results[m].energy_by_phase() for m in modes}
    bottom = [0.0] * len(modes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, phase in enumerate(phases):
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
    setup = next(iter(est.results.values())).setup
    top = max(2 * setup.steps, 10)
    steps_list = sorted({max(1, round(top * i / 20)) for i in range(1, 21)} | {setup.steps})
    mem = memory_vs_steps(est, steps_list)
    right.plot(mem["steps"], [b / 8192 for b in mem["stllr"]], label="S-TLLR (flat)")
    right.plot(mem["steps"], [b / 8192 for b in mem["bptt"]], label="BPTT (linear in T)")
    right.axvline(setup.steps, color="gray", linestyle=":", label=f"T = {setup.steps}")
    right.set_xlabel("time steps T")
    right.set_ylabel("state memory (KiB)")
    right.set_title("Learning state vs T")
    right.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buffer.getvalue()


__all__ = ["finite", "plot", "plot_png", "ratios", "render", "render_sweep", "sweep", "to_csv", "to_dict"]
