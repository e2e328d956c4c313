"""The sweep spec: which config paths vary, over which values, with which seeds.

YAML (``configs/sweep_digits_int.yaml`` is a complete example; docs/sweep.md)::

    base: digits_int.yaml              # a project config; relative to the spec's folder
    set:                               # dotted config paths applied to every point
      train.epochs: 8
    axes:                              # dotted config path -> values (the grid)
      learning.window: [1, 5, 20]
      quant.weight: [{bits: 4, frac: 5}, {bits: 8, frac: 9}]   # a mapping updates the keys it names
      quant.weight.rounding, quant.bias.rounding: [floor, stochastic]   # linked paths: one axis
      network.layers.0.size: [64, 128]                        # list entries by index
    seeds: [0, 1]                      # train.seed of each run of a point
    method: grid                       # grid | random (samples: N) | nsga2 (trials: N)
    objectives:                        # default: the three below
      - {metric: accuracy, goal: max}
      - {metric: stllr_energy_pj, goal: min}
      - {metric: stllr_state_bits, goal: min}
    constraints:                       # optional bounds; a point outside is not on the front
      - {metric: stllr_memory_bits, max: 2000000}
    float_reference: false             # also train the float model per run

Paths address the config after the schema filled in every default (so ``quant.weight``
is the mapping ``{signed, bits, frac, rounding, overflow}`` even when the base config
wrote ``s8.9 stochastic``, and an absent ``quant:``/``hardware:`` section holds its
defaults). A mapping value is merged into a mapping at its path (keys it does not name
keep their value); any other value replaces. Axes apply in the order written, after
``set``.

Checked before anything runs (bad spec: one line naming the field, exit 2): the spec's
own fields; the base config; ``set`` on the base; every axis value on the base with
``set`` (schema, plus the integer trainer's static checks); ``train.seed`` is refused as
a path (``seeds:`` sets it). A *combination* of valid values that fails (e.g. a window
longer than the steps of another axis) is a failed point, stored with its error.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

from pydantic import Field, model_validator

from core.errors import InputError
from core.schema import FilePath, Seed, StrictModel, read_yaml, validate

#: Hardware costs are read for these hwmodel modes.
MODES = ("inference", "stllr", "bptt")
#: Per-mode cost metrics (hwmodel, per sample unless the name says otherwise) and their units.
MODE_METRICS = {
    "energy_pj": "energy per sample, pJ",
    "state_bits": "on-chip neuron + learning state (membranes, traces; BPTT: stored activations), bits",
    "memory_bits": "all stored tensors (state, parameters, gradient accumulators), bits",
    "onchip_bits": "stored tensors placed in on-chip memories (SRAM, registers; not DRAM), bits",
    "macs": "multiply-class operations per sample (synaptic adds, multiplies, multiply-accumulates)",
    "latency_s_per_step": "latency per time step, s",
}
#: Every metric a point has: objective / constraint names and columns of results.parquet.
METRICS: dict[str, str] = {
    "accuracy": "integer-model test accuracy, mean over seeds (0..1)",
    "accuracy_std": "integer-model test accuracy, standard deviation over seeds",
    "float_accuracy": "float-model test accuracy, mean over seeds (float_reference)",
    "accuracy_gap": "float_accuracy - accuracy",
    "overflow_events": "saturate/wrap events of the integer model, training and test, mean over seeds",
    **{f"{mode}_{name}": f"{mode}: {text}" for mode in MODES for name, text in MODE_METRICS.items()},
}
MetricName = Literal[tuple(METRICS)]  # type: ignore[valid-type]

MAX_AXES = 32
MAX_AXIS_VALUES = 10_000
MAX_SEEDS = 1_000
#: Largest grid a ``grid`` sweep enumerates (``random`` and ``nsga2`` draw from any size).
MAX_POINTS = 100_000
MAX_TRIALS = 100_000

_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*"
PathKey = Annotated[str, Field(pattern=rf"^{_PATH}$")]
#: One axis: a dotted path, or several joined by commas (they take the same value).
AxisKey = Annotated[str, Field(pattern=rf"^\s*{_PATH}(?:\s*,\s*{_PATH})*\s*$")]
AxisValues = Annotated[list[Any], Field(min_length=1, max_length=MAX_AXIS_VALUES)]


class Objective(StrictModel):
    """One objective of the Pareto front: a metric (see :data:`METRICS`) and its goal."""

    metric: MetricName
    goal: Literal["max", "min"]


class Constraint(StrictModel):
    """Bounds on a metric; a point outside them is infeasible (never on the front)."""

    metric: MetricName
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "Constraint":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self


DEFAULT_OBJECTIVES = (
    Objective(metric="accuracy", goal="max"),
    Objective(metric="stllr_energy_pj", goal="min"),
    Objective(metric="stllr_state_bits", goal="min"),
)


class SweepSpec(StrictModel):
    """A sweep spec file (see the module docstring)."""

    base: FilePath
    set: dict[PathKey, Any] = {}
    axes: Annotated[dict[AxisKey, AxisValues], Field(min_length=1, max_length=MAX_AXES)]
    seeds: Annotated[list[Seed], Field(min_length=1, max_length=MAX_SEEDS)]
    method: Literal["grid", "random", "nsga2"] = "grid"
    samples: Annotated[int, Field(gt=0, le=MAX_POINTS)] | None = None
    trials: Annotated[int, Field(gt=0, le=MAX_TRIALS)] | None = None
    population: Annotated[int, Field(ge=2, le=MAX_TRIALS)] | None = None
    sampler_seed: Seed = 0
    objectives: Annotated[list[Objective], Field(min_length=1, max_length=8)] = list(DEFAULT_OBJECTIVES)
    constraints: Annotated[list[Constraint], Field(max_length=32)] = []
    float_reference: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        repeated = next((s for i, s in enumerate(self.seeds) if s in self.seeds[:i]), None)
        if repeated is not None:
            raise ValueError(f"seeds: {repeated} given twice")
        needs = {"grid": (), "random": ("samples",), "nsga2": ("trials",)}[self.method]
        for name in ("samples", "trials", "population"):
            given = getattr(self, name) is not None
            if name in needs and not given:
                raise ValueError(f"{name}: method {self.method} needs {name}")
            if given and name not in needs and not (name == "population" and self.method == "nsga2"):
                raise ValueError(f"{name}: only for method {'random' if name == 'samples' else 'nsga2'}")
        metrics = [o.metric for o in self.objectives]
        repeated = next((m for i, m in enumerate(metrics) if m in metrics[:i]), None)
        if repeated is not None:
            raise ValueError(f"objectives: {repeated} given twice")
        seen: dict[str, str] = {}
        for axis in self.axes:
            for path in axis_paths(axis):
                if path in seen:
                    raise ValueError(f"axes: {path} is set by two axes ({seen[path]!r} and {axis!r})")
                seen[path] = axis
        return self


def axis_paths(axis: str) -> list[str]:
    """The dotted paths of one axis key (``"a.b, c.d"`` -> ``["a.b", "c.d"]``)."""
    return [part.strip() for part in axis.split(",")]


# ------------------------------------------------------------------------ dotted paths


def _child_key(node: dict, part: str):
    """The key of ``node`` that ``part`` names: itself, or the integer it spells
    (``quant.layers`` and ``activity.layers`` are keyed by layer index)."""
    if part in node:
        return part
    if part.isdecimal() and int(part) in node:
        return int(part)
    return None


def _merge(old, new):
    """``new`` merged into ``old``: mappings key by key (recursively), anything else replaces."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for key, value in new.items():
            existing = _child_key(out, str(key)) if isinstance(key, (str, int)) else None
            out[existing if existing is not None else key] = _merge(out.get(existing), value)
        return out
    return copy.deepcopy(new)


def apply_path(data: dict, path: str, value, where: str) -> None:
    """Set ``path`` (dotted; list entries by index) of ``data`` to ``value`` in place.

    A missing or null mapping on the way is created (the schema then names an unknown
    key); a list index out of range, or a path through a number or a string, is an
    InputError naming ``where``."""
    parts = path.split(".")
    node, walked = data, []
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(walked) or "the config"
        if isinstance(node, list):
            if not part.isdecimal() or int(part) >= len(node):
                raise InputError(f"{where}: {here} has {len(node)} entries (indices 0..{len(node) - 1}), "
                                 f"no entry {part!r}")
            key = int(part)
        elif isinstance(node, dict):
            key = _child_key(node, part)
            if key is None:
                key = part
                if not last:
                    node[key] = {}
        else:
            raise InputError(f"{where}: {here} is {type(node).__name__} {node!r:.40}, not a mapping or list")
        if last:
            node[key] = _merge(node[key] if (isinstance(node, list) or key in node) else None, value)
            return
        if node[key] is None:  # an optional section left out (e.g. a layer's psi: null)
            node[key] = {}
        node = node[key]
        walked.append(part)


def describe_value(value) -> str:
    """An axis value as short text: scalars as written, mappings as ``k=v`` pairs."""
    if isinstance(value, dict):
        return ",".join(f"{k}={describe_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ",".join(describe_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def canonical_json(payload) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


#: Part of every cache key. The key hashes the config without the fields at their schema
#: default, so a release that adds a config field (with a default that keeps the old
#: behaviour) keeps every stored run; a release that changes a default, or what a config
#: computes, must bump this.
KEY_VERSION = 2


def config_key(config) -> str:
    """The cache key of a validated config: sha256 of its non-default fields and KEY_VERSION."""
    return sha256(canonical_json({"key_version": KEY_VERSION,
                                  "config": config.model_dump(mode="json", exclude_defaults=True)}))


# ------------------------------------------------------------------------------ points


@dataclass(frozen=True)
class Run:
    """One training run of a point: its seed, resolved config and cache key."""

    seed: int
    key: str  # config_key of the config: its non-default fields (config_json holds them all)
    config: dict  # python-mode dump of the validated config (what the worker re-validates)
    config_json: str  # canonical JSON of the validated config


@dataclass(frozen=True)
class Point:
    """One design point: axis values, resolved config, one run per seed.

    ``error`` is set when the combination does not validate (a failed point); its runs
    then carry the raw data and a key of it, so the failure is stored and cached."""

    index: int  # position in the grid (mixed radix, first axis slowest)
    axes: dict[str, Any]  # axis key -> value
    key: str  # sha256 of the point config (train.seed left out) and the seeds
    config_json: str
    runs: tuple[Run, ...]
    error: str | None = None
    trial: int | None = None  # nsga2 trial number

    @property
    def label(self) -> str:
        return "; ".join(f"{axis.replace(' ', '')}={describe_value(v)}" for axis, v in self.axes.items())


@dataclass
class SweepPlan:
    """A validated spec with its base config: resolves grid indices to points."""

    spec: SweepSpec
    path: Path
    base: dict  # python-mode config with set applied (validated)
    axes: list[tuple[str, list]]  # (axis key, values), spec order
    _points: dict[int, Point] = field(default_factory=dict)

    @property
    def sizes(self) -> list[int]:
        return [len(values) for _, values in self.axes]

    @property
    def grid_size(self) -> int:
        return math.prod(self.sizes)

    def indices_of(self, index: int) -> tuple[int, ...]:
        """Mixed-radix digits of a grid index (the last axis varies fastest)."""
        digits = []
        for size in reversed(self.sizes):
            index, digit = divmod(index, size)
            digits.append(digit)
        return tuple(reversed(digits))

    def index_of(self, digits: tuple[int, ...]) -> int:
        index = 0
        for digit, size in zip(digits, self.sizes):
            index = index * size + digit
        return index

    def point(self, index: int, trial: int | None = None) -> Point:
        """The point at grid ``index`` (validated; a failing combination has ``error``)."""
        if trial is None and index in self._points:
            return self._points[index]
        digits = self.indices_of(index)
        data = copy.deepcopy(self.base)
        values = {}
        for (axis, choices), digit in zip(self.axes, digits):
            values[axis] = choices[digit]
            for path in axis_paths(axis):
                apply_path(data, path, choices[digit], f"axes.{axis}")
        point = self._resolve(index, values, data, trial)
        if trial is None:
            self._points[index] = point
        return point

    def _resolve(self, index: int, values: dict, data: dict, trial: int | None) -> Point:
        from core.config import parse_config

        seeds = self.spec.seeds
        try:
            config = parse_config(data, "", base_dir=self.path.parent)
            check_point(config)
        except InputError as error:
            # a combination that does not validate: stored as a failed point, keyed by its data
            raw = canonical_json(_strip_seed(_jsonable(data)))
            runs = []
            for seed in seeds:
                run_data = copy.deepcopy(data)
                run_data.setdefault("train", {})["seed"] = seed
                text = canonical_json(_jsonable(run_data))
                runs.append(Run(seed, sha256(text), run_data, text))
            key = sha256(canonical_json({"config": raw, "seeds": seeds}))
            return Point(index, values, key, raw, tuple(runs), error=" ".join(str(error).split()), trial=trial)
        runs = []
        for seed in seeds:
            run_config = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})
            text = canonical_json(run_config.model_dump(mode="json"))
            runs.append(Run(seed, config_key(run_config), run_config.model_dump(), text))
        point_json = canonical_json(_strip_seed(config.model_dump(mode="json")))
        unseeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": 0})})
        key = sha256(canonical_json({"config": config_key(unseeded), "seeds": seeds}))
        return Point(index, values, key, point_json, tuple(runs), trial=trial)

    def grid(self) -> Iterator[Point]:
        for index in range(self.grid_size):
            yield self.point(index)

    def initial_points(self) -> list[Point]:
        """The points of a grid or random sweep (nsga2 proposes its own as it goes)."""
        if self.spec.method == "grid":
            return list(self.grid())
        if self.spec.method == "random":
            draw = random.Random(self.spec.sampler_seed).sample(range(self.grid_size), self.spec.samples)
            return [self.point(index) for index in draw]
        return []


def _jsonable(data):
    return json.loads(canonical_json(data))


def _strip_seed(config: dict) -> dict:
    """The point config without train.seed (each run of the point sets its own)."""
    out = dict(config)
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k != "seed"}
    return out


def check_point(config) -> None:
    """Static checks of the integer trainer that need no data and no network build: SGD,
    the mse loss, a rule the integer model trains, quant layer indices, k <= T."""
    from core.quant import QuantConfig
    from fixedpoint.config import check_layer_indices, check_learning
    from fixedpoint.train import check_int_config

    check_int_config(config)
    check_learning(config.learning)
    check_layer_indices(config.network, config.quant or QuantConfig())
    steps, window = config.data.num_steps, config.learning.window
    if steps is not None and window is not None and window > steps:
        raise InputError(f"learning.window: k = {window} exceeds data.num_steps T = {steps}")


# ----------------------------------------------------------------------------- loading


def _normalised_base(path: Path) -> dict:
    """The base config validated, every default filled in, as a python-mode mapping.

    An absent ``quant:`` or ``hardware:`` section holds its defaults (what the integer
    model and the cost model use anyway), so its fields can be swept."""
    from core.config import load_config
    from core.hardware import HardwareConfig
    from core.quant import QuantConfig

    config = load_config(path)
    update = {}
    if config.quant is None:
        update["quant"] = QuantConfig()
    if config.hardware is None:
        update["hardware"] = HardwareConfig()
    return config.model_copy(update=update).model_dump()


def load_spec(path: str | Path) -> SweepPlan:
    """Read and check a sweep spec (see the module docstring); one-line InputError."""
    from core.config import parse_config

    path = Path(path)
    data = read_yaml(path, "sweep spec")
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be a mapping with base, axes and seeds")
    spec = validate(SweepSpec, data, str(path))
    base_path = spec.base if spec.base.is_absolute() else path.parent / spec.base
    if not base_path.is_file():
        raise InputError(f"{path}: base: config file {base_path} not found")
    try:
        base = _normalised_base(base_path)
    except InputError as error:
        raise InputError(f"{path}: base: {error}") from None
    for name in list(spec.set) + [p for axis in spec.axes for p in axis_paths(axis)]:
        if name == "train.seed":
            raise InputError(f"{path}: {'set' if name in spec.set else 'axes'}.{name}: train.seed is set by "
                             "'seeds:' (one run per seed); list the seeds there")
    for name, value in spec.set.items():
        apply_path(base, name, value, f"{path}: set.{name}")
    try:
        check_point(parse_config(base, f"{path}: set", base_dir=path.parent))
    except InputError as error:
        text = str(error)
        raise InputError(text if text.startswith(f"{path}: set") else f"{path}: set: {text}") from None
    for axis, values in spec.axes.items():
        for value in values:
            trial = copy.deepcopy(base)
            where = f"{path}: axes.{axis} = {describe_value(value)!s:.60}"
            for name in axis_paths(axis):
                apply_path(trial, name, value, where)
            try:
                check_point(parse_config(trial, where, base_dir=path.parent))
            except InputError as error:
                text = str(error)
                raise InputError(text if text.startswith(where) else f"{where}: {text}") from None
    plan = SweepPlan(spec, path, base, list(spec.axes.items()))
    if spec.method == "grid" and plan.grid_size > MAX_POINTS:
        raise InputError(f"{path}: axes: the grid has {plan.grid_size} points, more than {MAX_POINTS}; "
                         "use method: random (samples: N) or nsga2 (trials: N)")
    if spec.method == "nsga2" and spec.trials > plan.grid_size:
        raise InputError(f"{path}: trials: {spec.trials} exceeds the {plan.grid_size} points of the grid "
                         "(trials counts distinct points)")
    if spec.method == "random" and spec.samples > plan.grid_size:
        raise InputError(f"{path}: samples: {spec.samples} exceeds the {plan.grid_size} points of the grid")
    return plan
