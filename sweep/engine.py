"""Run a sweep on Dask: plan the points, skip the stored ones, submit the rest, store
every run as it finishes, aggregate each point when its seeds are done.

Cluster: by default an embedded ``LocalCluster`` (one worker process per core, one
thread each, no dashboard); ``--scheduler tcp://HOST:PORT`` uses an existing cluster
(``dask scheduler`` + ``dask worker``) and changes nothing else. One task = one (point,
seed) run (:func:`sweep.evaluate.evaluate_run`), so the seeds of a point run in parallel.
A worker that dies mid-task is replaced by Dask and its task rescheduled (after
``distributed.scheduler.allowed-failures`` deaths the run is stored as a crash).

This process is the only writer of the store: results arrive here through
``as_completed`` and each one rewrites ``results.parquet`` atomically, so a Ctrl-C
(or a SIGTERM) keeps every finished run; the rerun computes only what is missing. Ctrl-C
is taken between results (see :func:`_stop_requests`): the pending runs are cancelled,
the store and the run log written, the cluster closed.

``nsga2``: Optuna's NSGA-II sampler proposes points through ask/tell; a point's result
is told as soon as its seeds finish, and as many trials are kept in flight as the
cluster has worker threads (divided by the seeds per point). ``trials`` counts distinct
points: a repeated proposal is told the known result. Stored points of the same axes and
seeds are told to the study first and count toward ``trials``, so a rerun computes only
what is missing.
"""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.errors import InputError
from sweep.spec import Point, Run, SweepPlan, canonical_json, sha256
from sweep.store import Store, SweepRunRecord, aggregate

SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
#: Exit status after Ctrl-C (128 + SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130
#: How often the loop looks for finished runs and stop requests (s).
POLL_S = 0.1
#: Least time between two rewrites of results.parquet while runs finish (s).
SAVE_INTERVAL_S = 1.0
#: nsga2 stops asking after this many proposals per trial (a converged study repeats itself).
MAX_PROPOSALS_PER_TRIAL = 20


def check_scheduler_address(address: str) -> str:
    match = SCHEDULER_ADDRESS.match(address)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise InputError(f"--scheduler {address!r:.80}: expected tcp://HOST:PORT (or tls://HOST:PORT)")
    return address


def default_workers() -> int:
    """One worker per core this process may use."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, timeout_s: float = 10.0):
    """A Client on a new LocalCluster (``workers`` processes x 1 thread, no dashboard)
    or on the scheduler at ``scheduler``; an unreachable scheduler is an InputError."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        check_scheduler_address(scheduler)
        try:
            client = Client(scheduler, timeout=timeout_s)
        except (OSError, TimeoutError) as error:
            reason = " ".join(str(error).split())[:120] or type(error).__name__
            raise InputError(f"--scheduler {scheduler}: no Dask scheduler answers ({reason})") from None
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except (OSError, TimeoutError):
            client.close()
            raise InputError(f"--scheduler {scheduler}: no worker joined the scheduler within {timeout_s:g} s "
                             "(start some with: dask worker " + scheduler + " --nthreads 1)") from None
        try:
            yield client
        finally:
            client.close()
        return
    # dashboard off; the scheduler's remaining HTTP routes (health, metrics) on a free
    # loopback port instead of 8787, which another cluster or a second sweep may hold
    with _workers_ignore_ctrl_c():
        cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                               dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                               silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        with _quiet_logs():
            client.close()
            cluster.close()


@contextmanager
def _workers_ignore_ctrl_c():
    """Start worker processes with SIGINT ignored (inherited through spawn and exec; Python
    and asyncio leave an ignored SIGINT alone). A terminal's Ctrl-C reaches the whole
    process group: the workers would die printing tracebacks while this process stops
    the sweep in order and closes them. A Ctrl-C during these seconds is ignored too."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _quiet_logs():
    """Shutting a cluster down after Ctrl-C logs expected connection errors: hide them."""
    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def _stop_requests():
    """Ctrl-C (SIGINT) and SIGTERM (a batch system ending the job) set an event that the
    loop checks between results, instead of raising KeyboardInterrupt wherever the main
    thread is: inside a Dask call (its ``sync`` wait) that leaves a callback failing in
    Dask's event loop with a traceback. A second Ctrl-C raises KeyboardInterrupt at once.
    Outside the main thread (no signal handlers there) the event never fires."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ------------------------------------------------------------------------------ engine


@dataclass
class _PointState:
    point: Point
    rows: dict[int, dict] = field(default_factory=dict)  # seed -> run row
    computed: bool = False  # at least one run executed (not from the store) in this sweep
    trials: list = field(default_factory=list)  # optuna trials waiting for this point
    done: bool = False
    row: dict | None = None


@dataclass
class Summary:
    """Counts of one sweep run (points)."""

    planned: int = 0
    computed: int = 0
    cached: int = 0
    failed: int = 0
    runs_computed: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    workers: int = 0
    front: int = 0


class SweepEngine:
    """One ``stllr sweep run``: see the module docstring."""

    def __init__(self, plan: SweepPlan, out: Path, log: Callable[[str], None] = print):
        self.plan = plan
        self.spec = plan.spec
        self.out = Path(out)
        self.log = log
        self.store = Store.open(self.out)
        self.states: dict[str, _PointState] = {}
        self.futures: dict = {}  # future -> (point key, Run)
        self.summary = Summary()
        self.started = time.perf_counter()
        self.record: SweepRunRecord | None = None
        self.study = None
        self.trials_left = 0
        self.trials_in_flight = 0
        self.proposals = 0
        self.parallel = 1
        self.saved_at = -math.inf
        self._initial: list[Point] = []
        self.stop = threading.Event()  # replaced by the signal-driven one while a sweep runs

    # -- planning ----------------------------------------------------------------------
    def _needs_compute(self, point: Point) -> bool:
        return point.error is None and any(
            self.store.cached_run(run.key, self.spec.float_reference) is None for run in point.runs)

    def _record(self, cluster: str, workers: int) -> None:
        spec_text = self.plan.path.read_bytes()
        self.record = SweepRunRecord(
            index=len(self.store.log.runs), started_at=_now(), spec=str(self.plan.path),
            spec_sha256=sha256(spec_text.decode("utf-8", "replace")), method=self.spec.method, cluster=cluster,
            workers=workers, axes=list(self.spec.axes), seeds=list(self.spec.seeds),
            planned_points=self._planned(), objectives=list(self.spec.objectives),
            constraints=list(self.spec.constraints))
        self.store.log.runs.append(self.record)

    def _planned(self) -> int:
        return self.spec.trials if self.spec.method == "nsga2" else len(self._initial)

    def run(self, workers: int | None = None, scheduler: str | None = None, timeout_s: float = 10.0) -> Summary:
        """Run the sweep to the end (or to Ctrl-C); returns the counts."""
        self._initial = self.plan.initial_points()
        self.summary.planned = self._planned()
        if self.spec.method == "nsga2":
            self._start_study()
            compute = self.trials_left > 0
        else:
            todo = sum(self._needs_compute(p) for p in self._initial)
            compute = todo > 0
            self.log(f"{len(self._initial)} points x {len(self.spec.seeds)} seeds: {len(self._initial) - todo} "
                     f"points stored or failing validation, {todo} to compute")
        with _stop_requests() as self.stop:
            if not compute:  # everything is stored: no cluster to start
                self._record("none (all points stored)", 0)
                self._loop(None)
            else:
                with dask_client(workers, scheduler, timeout_s) as client:
                    threads = sum(client.nthreads().values())
                    cluster = scheduler or f"local, {len(client.nthreads())} workers"
                    self._record(cluster, threads)
                    self.summary.workers = threads
                    self.parallel = max(1, math.ceil(threads / len(self.spec.seeds)))
                    self._loop(client)
        return self.summary

    # -- the loop ------------------------------------------------------------------------
    def _loop(self, client) -> None:
        from distributed import as_completed

        self.client = client
        self.completed = as_completed([], with_results=False) if client is not None else None
        try:
            self._save(log=True)
            if self.stop.is_set():  # Ctrl-C while the cluster started: submit nothing
                raise KeyboardInterrupt
            for point in self._initial:
                self._add(point)
            self._ask()
            if self.completed is not None:
                while self.futures:
                    if self.stop.is_set():
                        raise KeyboardInterrupt
                    if not self.completed.has_ready():
                        self.stop.wait(POLL_S)
                        continue
                    self._finished(next(self.completed))
                    self._ask()
        except KeyboardInterrupt:
            self.summary.interrupted = True
            if self.futures:
                with _quiet_logs():
                    client.cancel(list(self.futures), force=True)
            self.log(f"interrupted: {self._done_runs()} runs stored; {len(self.futures)} not finished "
                     "(rerun the same command to continue)")
            self.futures.clear()
        finally:
            self._close()

    def _add(self, point: Point, trial=None) -> None:
        """Plan one point: stored runs are taken from the store, the rest submitted."""
        state = self.states.get(point.key)
        if state is not None:  # proposed again (nsga2) or a duplicate configuration
            if trial is not None:
                state.trials.append(trial)
                if state.done:
                    self._tell(state)
            return
        state = self.states[point.key] = _PointState(point, trials=[trial] if trial is not None else [])
        for run in point.runs:
            cached = self.store.cached_run(run.key, self.spec.float_reference)
            if cached is not None:
                state.rows[run.seed] = cached
            elif point.error is not None:  # a combination that does not validate: no task to run
                state.computed = True
                state.rows[run.seed] = self.store.put(self._run_row(point, run, {
                    "status": "failed", "error": point.error, "error_kind": "input", "wall_s": 0.0,
                    "finished_at": _now()}))
            else:
                from sweep.evaluate import evaluate_run

                state.computed = True
                future = self.client.submit(evaluate_run, run.config, run.key, self.spec.float_reference,
                                            key=f"stllr-sweep-{run.key}")
                self.futures[future] = (point.key, run)
                self.completed.add(future)
        if len(state.rows) == len(point.runs):
            self._point_done(state)
            self._save()

    def _finished(self, future) -> None:
        point_key, run = self.futures.pop(future)
        state = self.states[point_key]
        if future.status == "finished":
            result = future.result()
        else:  # the task failed outside evaluate_run (e.g. KilledWorker after repeated worker deaths)
            if future.status == "error":
                error = future.exception()
                first = (str(error).strip().splitlines() or [""])[0]
                message = f"{type(error).__name__}: {first}"[:500]
            else:
                message = f"the task was {future.status} by the cluster"
            result = {"status": "failed", "error": message, "error_kind": "crash", "wall_s": 0.0,
                      "finished_at": _now()}
        row = self.store.put(self._run_row(state.point, run, result))
        state.rows[run.seed] = row
        self.summary.runs_computed += 1
        if len(state.rows) == len(state.point.runs):
            self._point_done(state)
        self._save()
        self._progress(state, row)

    def _run_row(self, point: Point, run: Run, result: dict) -> dict:
        row = dict(result)
        for name in ("versions", "spike_rates"):
            if isinstance(row.get(name), (dict, list)):
                row[name] = json.dumps(row[name])
        row.update(kind="run", key=run.key, point_key=point.key, sweep_run=self.record.index,
                   grid_index=point.index, trial=point.trial, seed=run.seed,
                   axes=json.dumps(point.axes, default=str), config=run.config_json)
        return row

    def _point_done(self, state: _PointState) -> None:
        runs = [state.rows[run.seed] for run in state.point.runs]
        # rows taken from the store are re-labelled with this sweep run (the report's default view)
        for row in runs:
            if row["sweep_run"] != self.record.index:
                self.store.put({**row, "sweep_run": self.record.index})
        state.row = self.store.put(aggregate(state.point, runs, self.record.index))
        state.done = True
        if state.computed:
            self.summary.computed += 1
        else:
            self.summary.cached += 1
        if state.row["status"] != "ok":
            self.summary.failed += 1
        self._tell(state)

    # -- nsga2 -------------------------------------------------------------------------
    def _start_study(self) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution

        from sweep.pareto import violations

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec = self.spec
        constraints = list(spec.constraints)
        sampler = optuna.samplers.NSGAIISampler(population_size=spec.population or min(10, max(2, spec.trials)),
                                                seed=spec.sampler_seed)
        self.study = optuna.create_study(
            directions=["maximize" if o.goal == "max" else "minimize" for o in spec.objectives], sampler=sampler)
        self.distributions = {axis: CategoricalDistribution(list(range(len(values))))
                              for axis, values in self.plan.axes}
        # Optuna's trial constraints (<= 0: holds); NSGA-II ranks infeasible trials last
        self._violations = lambda row: {f"{i}:{c.metric}": v
                                        for i, (c, v) in enumerate(zip(constraints, violations(row, constraints)))}
        preloaded = self._preload()
        self.trials_left = max(0, spec.trials - preloaded)
        if preloaded:
            self.log(f"nsga2: {preloaded} stored points of these axes and seeds told to the study")

    def _preload(self) -> int:
        """Tell the study every stored point of the same axes and seeds (resume, warm start)."""
        import optuna

        lookup = [{canonical_json(v): i for i, v in enumerate(values)} for _, values in self.plan.axes]
        count = 0
        for row in self.store.points():
            axes = json.loads(row["axes"])
            if list(axes) != [axis for axis, _ in self.plan.axes]:
                continue
            digits = tuple(table.get(canonical_json(axes[axis])) for table, axis in zip(lookup, axes))
            if None in digits:
                continue
            point = self.plan.point(self.plan.index_of(digits))
            if point.key != row["key"] or (row["status"] == "failed" and row["error_kind"] != "input"):
                continue
            if self._needs_compute(point):
                continue
            params = {axis: digit for (axis, _), digit in zip(self.plan.axes, digits)}
            values = self._objective_values(row)
            state = optuna.trial.TrialState.COMPLETE if values is not None else optuna.trial.TrialState.FAIL
            self.study.add_trial(optuna.trial.create_trial(
                state=state, values=values, params=params, distributions=self.distributions,
                constraints=self._violations(row) if values is not None else None))
            count += 1
            if count >= self.spec.trials:
                break
        return count

    def _objective_values(self, row: dict) -> list[float] | None:
        if row["status"] != "ok":
            return None
        values = [row.get(o.metric) for o in self.spec.objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values]

    def _ask(self) -> None:
        """Keep ``parallel`` trials in flight while new points remain to be found (nsga2).

        A proposal of a point already evaluated (NSGA-II repeats itself as its population
        converges) is told the known result and does not count toward ``trials``; the
        number of proposals is capped, so a converged study cannot loop forever."""
        if self.study is None:
            return
        while self.trials_left > 0 and self.trials_in_flight < self.parallel:
            if self.proposals >= MAX_PROPOSALS_PER_TRIAL * self.spec.trials:
                self.log(f"nsga2: stopped after {self.proposals} proposals: the sampler keeps proposing "
                         f"evaluated points ({self.trials_left} new points not found)")
                self.trials_left = 0
                break
            trial = self.study.ask(self.distributions)
            self.proposals += 1
            digits = tuple(trial.params[axis] for axis, _ in self.plan.axes)
            point = self.plan.point(self.plan.index_of(digits), trial=trial.number)
            if point.key not in self.states:
                self.trials_left -= 1
            self.trials_in_flight += 1
            self._add(point, trial)

    def _tell(self, state: _PointState) -> None:
        import optuna

        if self.study is None:
            return
        values = self._objective_values(state.row)
        for trial in state.trials:
            if values is not None:
                for name, violation in self._violations(state.row).items():
                    trial.set_constraint(name, violation)
            if values is None:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, values)
            self.trials_in_flight -= 1
        state.trials.clear()

    # -- output ------------------------------------------------------------------------
    def _done_runs(self) -> int:
        return sum(len(s.rows) for s in self.states.values())

    def _save(self, log: bool = False) -> None:
        """Rewrite the store; between forced saves (``log``) at most every SAVE_INTERVAL_S,
        so a sweep of many short runs does not spend its time rewriting the table (a killed
        client loses at most that much: those runs are recomputed by the rerun)."""
        now = time.perf_counter()
        if not log and now - self.saved_at < SAVE_INTERVAL_S:
            return
        self.record.computed, self.record.cached = self.summary.computed, self.summary.cached
        self.record.failed = self.summary.failed
        self.record.wall_s = now - self.started
        self.store.save()
        self.saved_at = now
        if log:
            self.store.save_log()

    def _progress(self, state: _PointState, row: dict) -> None:
        s = self.summary
        total_runs = self._planned() * len(self.spec.seeds)
        done_runs = self._done_runs()
        elapsed = time.perf_counter() - self.started
        remaining = max(0, total_runs - done_runs)
        eta = "-" if s.runs_computed == 0 else _duration(elapsed / s.runs_computed * remaining)
        what = (f"acc {100 * row['accuracy']:.2f} %, S-TLLR {_energy(row['stllr_energy_pj'])}/sample"
                if row["status"] == "ok" else f"FAILED: {row['error']}")
        self.log(f"[{done_runs:>{len(str(total_runs))}}/{total_runs} runs] points done {s.computed + s.cached}"
                 f"/{s.planned} (computed {s.computed}, cached {s.cached}, failed {s.failed}) ETA {eta} | "
                 f"{state.point.label} seed {row['seed']}: {what} ({_duration(row['wall_s'] or 0.0)})")

    def _close(self) -> None:
        from sweep.pareto import feasible, pareto_front

        points = [s.row for s in self.states.values() if s.row is not None]
        front = {row["key"] for row in pareto_front(points, self.spec.objectives, self.spec.constraints)}
        for row in points:
            self.store.put({**row, "feasible": row["status"] == "ok" and feasible(row, self.spec.constraints),
                            "on_front": row["key"] in front})
        self.summary.front = len(front)
        self.summary.wall_s = time.perf_counter() - self.started
        self.record.finished_at = _now()
        self.record.interrupted = self.summary.interrupted
        self._save(log=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _energy(pj: float | None) -> str:
    from hwmodel.report import energy_str

    return "-" if pj is None else energy_str(pj)


def run_sweep(plan: SweepPlan, out: Path, workers: int | None = None, scheduler: str | None = None,
              timeout_s: float = 10.0, log: Callable[[str], None] = print) -> Summary:
    """Run ``plan`` into ``out`` (see :class:`SweepEngine`)."""
    return SweepEngine(plan, out, log).run(workers, scheduler, timeout_s)
