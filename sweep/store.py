"""The results of a sweep folder: ``OUT/results.parquet`` and ``OUT/runs.json``.

``results.parquet`` (pyarrow) holds two kinds of rows, one schema (:data:`COLUMNS`):

- ``kind = "run"``: one (point, seed) run; ``key`` is the sha256 of its resolved config
  (canonical JSON, in ``config``), ``point_key`` the point it belongs to;
- ``kind = "point"``: the aggregate of a point over its seeds (means, sample standard
  deviation of the accuracy); ``key`` is the sha256 of the point config (train.seed left
  out) and the seed list.

Every row carries the axis values (``axes``, JSON), the package versions, the wall time
and the Dask worker. A run whose key is stored is not run again: a successful run (with
the float accuracy when the spec asks for it) or one that failed on its input
(``error_kind = "input"``: deterministic); a crash (``"crash"``: a lost worker, a bug) is
retried by the next run. The client process is the only writer; every save writes the
whole table through a temp file and a rename (:mod:`core.atomic`), so a reader or a
crash sees the previous table or the new one.

``runs.json`` lists every ``stllr sweep run`` on the folder: spec, cluster, objectives and
constraints, and the points computed, cached and failed (:class:`RunLog`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model

from core.errors import InputError
from core.schema import StrictModel, format_validation_error
from sweep.spec import METRICS, MODE_METRICS, MODES, Constraint, Objective

RESULTS = "results.parquet"
RUN_LOG = "runs.json"
PLOTS = "plots"
STORE_VERSION = 1

# name -> (arrow type name, python type); every column may be null except those in REQUIRED
COLUMNS: dict[str, tuple[str, Any]] = {
    "kind": ("string", str),  # run | point
    "key": ("string", str),
    "point_key": ("string", str),
    "sweep_run": ("int64", int),  # index in runs.json of the last run that planned this row
    "grid_index": ("int64", int),  # position in the spec's grid (first axis slowest)
    "trial": ("int64", int),  # nsga2 trial number
    "seed": ("int64", int),
    "seeds": ("string", str),  # JSON list (point rows)
    "status": ("string", str),  # ok | failed
    "error": ("string", str),
    "error_kind": ("string", str),  # input | crash
    "axes": ("string", str),  # JSON object: axis -> value
    "config": ("string", str),  # JSON of the resolved config (point rows: without train.seed)
    "accuracy": ("double", float),
    "accuracy_std": ("double", float),
    "float_accuracy": ("double", float),
    "float_accuracy_std": ("double", float),
    "accuracy_gap": ("double", float),
    "epochs": ("int64", int),
    "overflow_train_events": ("double", float),
    "overflow_test_events": ("double", float),
    "overflow_events": ("double", float),
    "spike_rates": ("string", str),  # JSON list, measured output spike rate per spiking layer
    **{f"{mode}_{name}": ("double", float) for mode in MODES for name in MODE_METRICS},
    "train_wall_s": ("double", float),
    "wall_s": ("double", float),
    "worker": ("string", str),
    "finished_at": ("string", str),
    "versions": ("string", str),  # JSON object: package -> version
    "feasible": ("bool", bool),
    "on_front": ("bool", bool),
}
REQUIRED = ("kind", "key", "point_key", "status", "axes", "config")
assert set(METRICS) <= set(COLUMNS)


def _row_field(name: str, python_type):
    if name == "kind":
        return (Literal["run", "point"], ...)
    if name == "status":
        return (Literal["ok", "failed"], ...)
    if name in REQUIRED:
        return (python_type, ...)
    if python_type is float:  # integers are accepted where a real number is expected
        return (float | None, None)
    return (python_type | None, None)


#: One row of results.parquet (validated when added and when read back).
ResultRow = create_model("ResultRow", __base__=StrictModel,
                         **{name: _row_field(name, kind) for name, (_, kind) in COLUMNS.items()})


def _arrow_schema():
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_()}
    fields = [pa.field(name, types[kind], nullable=name not in REQUIRED) for name, (kind, _) in COLUMNS.items()]
    return pa.schema(fields, metadata={"format": "stllr-sweep-results", "version": str(STORE_VERSION)})


def _check_row(row: dict, source: str) -> dict:
    try:
        return ResultRow.model_validate(row).model_dump()
    except ValidationError as error:
        raise InputError(format_validation_error(error, source, row)) from None


# ----------------------------------------------------------------------------- run log


class SweepRunRecord(StrictModel):
    """One ``stllr sweep run`` on a folder (updated as the run goes)."""

    model_config = ConfigDict(frozen=False)
    index: Annotated[int, Field(ge=0)]
    started_at: str
    finished_at: str | None = None
    spec: str
    spec_sha256: str
    method: str
    cluster: str  # "local, N workers" or the scheduler address
    workers: Annotated[int, Field(ge=0)]  # worker threads when the sweep started
    axes: list[str]
    seeds: list[int]
    planned_points: Annotated[int, Field(ge=0)]
    computed: Annotated[int, Field(ge=0)] = 0
    cached: Annotated[int, Field(ge=0)] = 0
    failed: Annotated[int, Field(ge=0)] = 0
    interrupted: bool = False
    wall_s: Annotated[float, Field(ge=0.0)] = 0.0
    objectives: list[Objective]
    constraints: list[Constraint]


class RunLog(StrictModel):
    format: Literal["stllr-sweep-runs"] = "stllr-sweep-runs"
    version: Literal[1] = 1
    runs: list[SweepRunRecord] = []


# ------------------------------------------------------------------------------- store


class Store:
    """The rows of ``OUT/results.parquet`` in memory, keyed by (kind, key)."""

    def __init__(self, folder: Path, rows: list[dict] | None = None, log: RunLog | None = None):
        self.folder = Path(folder)
        self.rows: dict[tuple[str, str], dict] = {(r["kind"], r["key"]): r for r in rows or []}
        self.log = log or RunLog()

    @property
    def path(self) -> Path:
        return self.folder / RESULTS

    @classmethod
    def open(cls, folder: str | Path, must_exist: bool = False) -> "Store":
        """Read the folder's results and run log (none yet: an empty store)."""
        folder = Path(folder)
        path = folder / RESULTS
        if must_exist and not path.is_file():
            raise InputError(f"{folder}: no {RESULTS} (run 'stllr sweep run SPEC --out {folder}' first)")
        rows = read_results(path) if path.exists() else []
        log_path = folder / RUN_LOG
        log = RunLog()
        if log_path.exists():
            from core.schema import validate

            try:
                data = json.loads(log_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise InputError(f"{log_path}: not a readable run log ({type(error).__name__})") from None
            log = validate(RunLog, data, str(log_path))
        return cls(folder, rows, log)

    # -- rows ------------------------------------------------------------------------
    def run(self, key: str) -> dict | None:
        return self.rows.get(("run", key))

    def point(self, key: str) -> dict | None:
        return self.rows.get(("point", key))

    def cached_run(self, key: str, float_reference: bool) -> dict | None:
        """The stored run of ``key`` if it need not run again (see the module docstring)."""
        row = self.run(key)
        if row is None:
            return None
        if row["status"] == "failed":
            return row if row["error_kind"] == "input" else None
        if float_reference and row["float_accuracy"] is None:
            return None
        return row

    def put(self, row: dict) -> dict:
        row = _check_row(row, f"{self.path}: new {row.get('kind', 'row')} row")
        self.rows[(row["kind"], row["key"])] = row
        return row

    def points(self, sweep_run: int | None = None) -> list[dict]:
        """Point rows (of one sweep run when given), in grid order."""
        rows = [r for (kind, _), r in self.rows.items() if kind == "point"
                and (sweep_run is None or r["sweep_run"] == sweep_run)]
        return sorted(rows, key=lambda r: (r["sweep_run"] if r["sweep_run"] is not None else -1,
                                           r["grid_index"] if r["grid_index"] is not None else -1,
                                           r["trial"] if r["trial"] is not None else -1, r["key"]))

    def runs_of(self, point_key: str) -> list[dict]:
        return sorted((r for (kind, _), r in self.rows.items() if kind == "run" and r["point_key"] == point_key),
                      key=lambda r: r["seed"] if r["seed"] is not None else -1)

    # -- files -----------------------------------------------------------------------
    def save(self) -> None:
        """Write results.parquet whole (temp file + rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from core.atomic import atomic_path

        self.folder.mkdir(parents=True, exist_ok=True)
        ordered = sorted(self.rows.values(), key=lambda r: (r["kind"] != "point", r["point_key"],
                                                            r["seed"] if r["seed"] is not None else -1))
        table = pa.Table.from_pylist(ordered, schema=_arrow_schema())
        with atomic_path(self.path) as tmp:
            pq.write_table(table, str(tmp))

    def save_log(self) -> None:
        from core.atomic import atomic_write_text

        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / RUN_LOG, self.log.model_dump_json(indent=1) + "\n")


def read_results(path: Path) -> list[dict]:
    """Rows of a results.parquet, each checked against :data:`COLUMNS`; one-line errors."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a results file")
    try:
        table = pq.read_table(str(path))
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        first = (str(error).splitlines() or [""])[0][:80]
        raise InputError(f"{path}: not a readable results file ({type(error).__name__}: {first})") from None
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise InputError(f"{path}: not a sweep results file (missing column {missing[0]!r})")
    rows = table.select(list(COLUMNS)).to_pylist()
    return [_check_row(row, f"{path}: row {index}") for index, row in enumerate(rows)]


# --------------------------------------------------------------------------- aggregates


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.fmean(values)) if values else None


def _std(values: list) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return float(statistics.stdev(values)) if len(values) > 1 else 0.0


def aggregate(point, runs: list[dict], sweep_run: int) -> dict:
    """The point row of ``point`` (a :class:`sweep.spec.Point`) from its run rows."""
    failed = [r for r in runs if r["status"] != "ok"]
    row = {
        "kind": "point", "key": point.key, "point_key": point.key, "sweep_run": sweep_run,
        "grid_index": point.index, "trial": point.trial, "seed": None,
        "seeds": json.dumps([r["seed"] for r in runs]), "axes": json.dumps(point.axes, default=str),
        "config": point.config_json, "status": "failed" if failed else "ok",
        "error": None, "error_kind": None,
        "wall_s": sum(r["wall_s"] or 0.0 for r in runs),
        "worker": ",".join(sorted({r["worker"] for r in runs if r["worker"]})) or None,
        "finished_at": max((r["finished_at"] for r in runs if r["finished_at"]), default=None),
        "versions": runs[0]["versions"] if runs else None,
    }
    if failed:
        first = failed[0]
        prefix = f"seed {first['seed']}: " if len(runs) > 1 else ""
        row["error"] = prefix + (first["error"] or "failed")
        row["error_kind"] = "crash" if any(r["error_kind"] == "crash" for r in failed) else "input"
        return row
    for name in ("accuracy", "float_accuracy", "overflow_train_events", "overflow_test_events",
                 "overflow_events", "train_wall_s", *(f"{m}_{n}" for m in MODES for n in MODE_METRICS)):
        row[name] = _mean([r[name] for r in runs])
    row["accuracy_std"] = _std([r["accuracy"] for r in runs])
    row["float_accuracy_std"] = _std([r["float_accuracy"] for r in runs])
    if row["float_accuracy"] is not None and row["accuracy"] is not None:
        row["accuracy_gap"] = row["float_accuracy"] - row["accuracy"]
    epochs = {r["epochs"] for r in runs}
    row["epochs"] = epochs.pop() if len(epochs) == 1 else None
    rates = [json.loads(r["spike_rates"]) for r in runs if r["spike_rates"]]
    if rates:
        row["spike_rates"] = json.dumps([round(statistics.fmean(col), 6) for col in zip(*rates)])
    return row
