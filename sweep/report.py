"""``stllr sweep report``: the Pareto front and every point of a sweep folder, as a rich
table, CSV or JSON; and the PNG plots (accuracy vs energy with the front, accuracy vs
weight bits per rounding, memory vs window).

Units: accuracy in % in the tables (0..1 in CSV/JSON), energy per sample in J with an
SI prefix in the tables (pJ in CSV/JSON), memory in bytes with an SI prefix in the
tables (bits in CSV/JSON).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from hwmodel.report import bits_str, energy_str
from sweep.pareto import feasible, pareto_front
from sweep.spec import DEFAULT_OBJECTIVES, METRICS, describe_value
from sweep.store import PLOTS, Store

#: Per-point fields of the JSON and CSV reports, after the axis values.
POINT_FIELDS = ("status", "accuracy", "accuracy_std", "float_accuracy", "stllr_energy_pj", "stllr_state_bits",
                "stllr_memory_bits", "bptt_energy_pj", "bptt_state_bits", "inference_energy_pj", "stllr_macs",
                "stllr_latency_s_per_step", "overflow_events", "feasible", "on_front", "seeds", "error")
PLOT_FILES = ("accuracy_vs_energy.png", "accuracy_vs_weight_bits.png", "memory_vs_window.png")


@dataclass
class Report:
    folder: Path
    store: Store
    objectives: list
    constraints: list
    points: list[dict]  # shown points, grid order, with feasible / on_front set
    front: list[dict]  # front points, best first objective first
    axes: list[str]  # axis keys, in order of first appearance


def load_report(folder: str | Path, all_points: bool = False) -> Report:
    """The points of the folder's last sweep run (``all_points``: every stored point),
    ranked with that run's objectives and constraints."""
    store = Store.open(folder, must_exist=True)
    last = store.log.runs[-1] if store.log.runs else None
    objectives = list(last.objectives) if last else list(DEFAULT_OBJECTIVES)
    constraints = list(last.constraints) if last else []
    rows = store.points(None if all_points or last is None else last.index)
    front = pareto_front(rows, objectives, constraints)
    front_keys = {row["key"] for row in front}
    points = [{**row, "feasible": row["status"] == "ok" and feasible(row, constraints),
               "on_front": row["key"] in front_keys} for row in rows]
    axes: list[str] = []
    for row in points:
        for axis in json.loads(row["axes"]):
            if axis not in axes:
                axes.append(axis)
    by_key = {row["key"]: row for row in points}
    return Report(Path(folder), store, objectives, constraints, points, [by_key[r["key"]] for r in front], axes)


# ------------------------------------------------------------------------------- text


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _acc(row: dict) -> str:
    if row["accuracy"] is None:
        return "-"
    std = row["accuracy_std"]
    return f"{100 * row['accuracy']:.2f}" + (f" ± {100 * std:.2f}" if std else "")


def _energy(value) -> str:
    return "-" if value is None else energy_str(value)


def _bits(value) -> str:
    return "-" if value is None else bits_str(value)


def _runs_line(report: Report) -> list[str]:
    lines = []
    for run in report.store.log.runs:
        state = "interrupted" if run.interrupted else ("running or killed" if run.finished_at is None else "done")
        lines.append(f"run {run.index} ({run.started_at}, {run.method}, {run.cluster}): {run.planned_points} points "
                     f"planned, {run.computed} computed, {run.cached} cached, {run.failed} failed, "
                     f"{run.wall_s:.0f} s, {state}")
    return lines


def render(report: Report, console) -> None:
    """The front first, then every point (rich tables)."""
    from rich.markup import escape
    from rich.table import Table

    goals = ", ".join(f"{o.goal} {o.metric}" for o in report.objectives)
    bounds = "; ".join(f"{c.metric} in [{'' if c.min is None else c.min}, {'' if c.max is None else c.max}]"
                       for c in report.constraints)
    console.print(f"[bold]stllr sweep report[/bold] {escape(str(report.folder))}: {len(report.points)} points, "
                  f"{sum(r['status'] == 'ok' for r in report.points)} ok, "
                  f"{sum(r['status'] != 'ok' for r in report.points)} failed; objectives: {escape(goals)}"
                  + (f"; constraints: {escape(bounds)}" if bounds else ""))

    floats = any(r["float_accuracy"] is not None for r in report.points)

    def table(title: str, rows: list[dict], errors: bool) -> Table:
        t = Table(title=title, title_justify="left")
        t.add_column("front", justify="center")
        for axis in report.axes:
            t.add_column(escape(axis))
        for name, justify in (("status", "left"), ("int acc %", "right"), ("float acc %", "right"),
                              ("S-TLLR energy/sample", "right"), ("S-TLLR state", "right"),
                              ("S-TLLR memory", "right"), ("BPTT state", "right"), ("overflow", "right")):
            if name != "float acc %" or floats:
                t.add_column(name, justify=justify)
        if errors:
            t.add_column("error", overflow="fold", max_width=60)
        for row in rows:
            axes = json.loads(row["axes"])
            cells = ["*" if row["on_front"] else ("" if row["feasible"] or row["status"] != "ok" else "x")]
            cells += [escape(describe_value(axes[a])) if a in axes else "" for a in report.axes]
            cells += [row["status"], _acc(row)] + ([_pct(row["float_accuracy"])] if floats else [])
            cells += [_energy(row["stllr_energy_pj"]), _bits(row["stllr_state_bits"]), _bits(row["stllr_memory_bits"]),
                      _bits(row["bptt_state_bits"]),
                      "-" if row["overflow_events"] is None else f"{row['overflow_events']:.0f}"]
            if errors:
                cells.append(escape(row["error"] or ""))
            t.add_row(*cells)
        return t

    console.print(table(f"Pareto front ({len(report.front)} points; * on the front)", report.front, False))
    errors = any(r["status"] != "ok" for r in report.points)
    console.print(table("Every point (x: outside the constraints)", report.points, errors))
    for line in _runs_line(report):
        console.print(escape(line))


def _point_dict(row: dict) -> dict:
    out = {"key": row["key"], "axes": json.loads(row["axes"])}
    for name in POINT_FIELDS:
        out[name] = json.loads(row[name]) if name == "seeds" and row[name] else row[name]
    return out


def to_json(report: Report) -> str:
    payload = {
        "folder": str(report.folder),
        "objectives": [o.model_dump() for o in report.objectives],
        "constraints": [c.model_dump() for c in report.constraints],
        "units": {"accuracy": "fraction 0..1", "energy": "pJ per sample", "memory": "bits",
                  "latency": "s per step"},
        "metrics": METRICS,
        "runs": [{"index": r.index, "started_at": r.started_at, "finished_at": r.finished_at, "spec": r.spec,
                  "method": r.method, "cluster": r.cluster, "workers": r.workers,
                  "planned_points": r.planned_points, "computed": r.computed, "cached": r.cached,
                  "failed": r.failed, "interrupted": r.interrupted, "wall_s": r.wall_s}
                 for r in report.store.log.runs],
        "front": [row["key"] for row in report.front],
        "points": [_point_dict(row) for row in report.points],
    }
    return json.dumps(payload, indent=1) + "\n"


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["key", *report.axes, *POINT_FIELDS])
    for row in report.points:
        axes = json.loads(row["axes"])
        values = [json.dumps(axes[a]) if isinstance(axes.get(a), (dict, list)) else axes.get(a, "")
                  for a in report.axes]
        writer.writerow([row["key"], *values, *("" if row[n] is None else row[n] for n in POINT_FIELDS)])
    return buffer.getvalue()


# ------------------------------------------------------------------------------- plots


def _config(row: dict) -> dict:
    return json.loads(row["config"])


def _weight(row: dict) -> tuple[int | None, str | None]:
    """(bits, write rounding) of the network-wide weight format of a point."""
    weight = (_config(row).get("quant") or {}).get("weight")
    if isinstance(weight, dict):
        return weight.get("bits"), weight.get("rounding")
    return None, None


def _window(row: dict) -> int | None:
    config = _config(row)
    k = (config.get("learning") or {}).get("window")
    return k if k is not None else (config.get("data") or {}).get("num_steps")


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def plot_pngs(report: Report) -> dict[str, bytes]:
    """The three plots as PNG bytes, by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report.points if r["status"] == "ok" and r["accuracy"] is not None
          and r["stllr_energy_pj"] is not None]
    out = {}

    # accuracy vs S-TLLR energy: every point, the front of the objectives, and the 2-D front
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rest = [r for r in ok if not r["on_front"] and r["feasible"]]
    outside = [r for r in ok if not r["feasible"]]
    front = [r for r in ok if r["on_front"]]
    ax.scatter([r["stllr_energy_pj"] * 1e-6 for r in rest], [100 * r["accuracy"] for r in rest], s=18,
               color="0.6", label="point")
    if outside:
        ax.scatter([r["stllr_energy_pj"] * 1e-6 for r in outside], [100 * r["accuracy"] for r in outside], s=18,
                   marker="x", color="0.7", label="outside the constraints")
    ax.scatter([r["stllr_energy_pj"] * 1e-6 for r in front], [100 * r["accuracy"] for r in front], s=36,
               color="C3", label="on the Pareto front (all objectives)", zorder=3)
    staircase, best = [], -math.inf
    for r in sorted((r for r in ok if r["feasible"]), key=lambda r: (r["stllr_energy_pj"], -r["accuracy"])):
        if r["accuracy"] > best:
            best = r["accuracy"]
            staircase.append((r["stllr_energy_pj"] * 1e-6, 100 * r["accuracy"]))
    if staircase:
        xs, ys = zip(*staircase)
        ax.step(xs, ys, where="post", color="C3", linewidth=1, label="front: accuracy vs energy")
    ax.set_xlabel("S-TLLR energy per training sample (uJ)")
    ax.set_ylabel("integer test accuracy (%)")
    ax.set_title("Accuracy vs energy")
    if ok:
        ax.legend(fontsize=8, loc="lower right")
    out[PLOT_FILES[0]] = _png(fig)

    # accuracy vs weight bits, one line per write rounding (best over the other axes)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[str, dict[int, list[float]]] = {}
    for r in ok:
        bits, rounding = _weight(r)
        if bits is not None:
            groups.setdefault(str(rounding), {}).setdefault(bits, []).append(100 * r["accuracy"])
    for index, (rounding, by_bits) in enumerate(sorted(groups.items())):
        xs = sorted(by_bits)
        color = f"C{index}"
        ax.plot(xs, [max(by_bits[x]) for x in xs], marker="o", color=color, label=f"{rounding} (best)")
        ax.plot(xs, [sum(by_bits[x]) / len(by_bits[x]) for x in xs], linestyle="--", color=color,
                label=f"{rounding} (mean over the other axes)")
        for x in xs:
            ax.scatter([x] * len(by_bits[x]), by_bits[x], s=8, color=color, alpha=0.4)
    widths = sorted({bits for by_bits in groups.values() for bits in by_bits})
    if widths:
        ax.set_xticks(widths)
    ax.set_xlabel("weight bits (quant.weight, sign included)")
    ax.set_ylabel("integer test accuracy (%)")
    ax.set_title("Accuracy vs weight width, per write rounding")
    if groups:
        ax.legend(fontsize=8, loc="lower right")
    out[PLOT_FILES[1]] = _png(fig)

    # memory vs window k: state memory (lines) and all stored tensors (markers), S-TLLR vs BPTT
    fig, ax = plt.subplots(figsize=(7, 4.5))
    with_k = [(r, _window(r)) for r in ok if _window(r) is not None]
    for index, (mode, name) in enumerate((("stllr", "S-TLLR"), ("bptt", "BPTT"))):
        by_k: dict[int, list[dict]] = {}
        for r, k in with_k:
            if r[f"{mode}_state_bits"] is not None:
                by_k.setdefault(k, []).append(r)
        ks = sorted(by_k)
        if not ks:
            continue
        color = f"C{index}"
        ax.plot(ks, [sum(r[f"{mode}_state_bits"] for r in by_k[k]) / len(by_k[k]) / 8192 for k in ks],
                marker="o", color=color, label=f"{name} state")
        for k in ks:
            ax.scatter([k] * len(by_k[k]), [r[f"{mode}_memory_bits"] / 8192 for r in by_k[k]], marker="x", s=20,
                       color=color, alpha=0.6, label=f"{name} all tensors" if k == ks[0] else None)
    if with_k:
        ax.set_xticks(sorted({k for _, k in with_k}))
    ax.set_xlabel("learning window k (steps)")
    ax.set_ylabel("memory (KiB)")
    ax.set_title("On-chip memory vs window")
    if with_k:
        ax.legend(fontsize=8)
    out[PLOT_FILES[2]] = _png(fig)
    return out


def write_plots(report: Report, folder: str | Path | None = None) -> list[Path]:
    """Write the plots (each whole or not at all) into ``folder`` (default OUT/plots)."""
    from core.atomic import atomic_write_bytes

    folder = Path(folder) if folder is not None else report.folder / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, payload in plot_pngs(report).items():
        atomic_write_bytes(folder / name, payload)
        paths.append(folder / name)
    return paths
