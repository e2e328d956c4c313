"""``stllr sweep``: specs, the Dask engine, the parquet store, the Pareto front.

Real Dask, no mocks, loopback only: an embedded LocalCluster with 2 worker processes, and
an external cluster (``dask scheduler`` + two ``dask worker`` subprocesses on 127.0.0.1)
for the --scheduler form, a worker killed mid-task, NSGA-II and Ctrl-C. The networks are
tiny (moving-edge 2x4x4 frames, 16 hidden neurons, one epoch) so every run takes about a
second once a worker has imported torch and loaded the numba cache.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from apps.stllr import main
from core.errors import InputError
from sweep.pareto import dominates, pareto_front
from sweep.spec import Constraint, Objective, apply_path, load_spec
from sweep.store import RESULTS, Store
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).parent / "dask"

TINY = {
    "network": {"input_shape": [2, 4, 4], "psi": {"kind": "triangle", "scale": 0.5, "width": 1.0},
                "layers": [{"kind": "linear", "size": 16}, {"kind": "readout", "size": 4, "beta": 0.75}]},
    "learning": {"rule": "stllr", "window": 3, "loss": "mse"},
    "train": {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.0625, "seed": 0},
    "data": {"kind": "moving_edge", "num_train": 48, "num_test": 16, "num_steps": 6, "size": 4, "seed": 0},
    "quant": {"input": "u1.0", "weight": "s8.7 stochastic", "bias": "s16.10 stochastic",
              "learning_rate": "u16.16"},
}
#: Four points: weight width x write rounding.
FOUR = {"quant.weight": [{"bits": 6, "frac": 5}, {"bits": 8, "frac": 7}],
        "quant.weight.rounding, quant.bias.rounding": ["floor", "stochastic"]}


def _spec(folder: Path, axes: dict, seeds=(0,), name: str = "spec.yaml", config: dict = TINY, **extra) -> Path:
    """A spec over ``config`` (written as base.yaml beside it); ``extra``: further spec fields."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(config))
    spec = {"base": "base.yaml", "axes": axes, "seeds": list(seeds), **extra}
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _rows(out: Path, kind: str) -> list[dict]:
    return [r for r in pq.read_table(out / RESULTS).to_pylist() if r["kind"] == kind]


def _numbers(out: Path) -> dict[str, tuple]:
    """Per run key: the numbers a run computes (not its wall time or worker)."""
    return {r["key"]: (r["status"], r["accuracy"], r["stllr_energy_pj"], r["bptt_energy_pj"], r["stllr_state_bits"],
                       r["stllr_memory_bits"], r["overflow_events"], r["spike_rates"]) for r in _rows(out, "run")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------- spec, pure parts


def test_apply_path_merges_mappings_indexes_lists_and_names_bad_paths():
    data = {"quant": {"weight": {"signed": True, "bits": 8, "frac": 9, "rounding": "stochastic"}},
            "network": {"layers": [{"kind": "linear", "size": 128, "psi": None}, {"kind": "readout"}]}}
    apply_path(data, "quant.weight", {"bits": 4, "frac": 5}, "axes.quant.weight")
    assert data["quant"]["weight"] == {"signed": True, "bits": 4, "frac": 5, "rounding": "stochastic"}
    apply_path(data, "network.layers.0.size", 64, "axes")
    apply_path(data, "network.layers.0.psi.kind", "triangle", "axes")  # through a null section
    assert data["network"]["layers"][0] == {"kind": "linear", "size": 64, "psi": {"kind": "triangle"}}
    with pytest.raises(InputError, match=r"axes.x: network.layers has 2 entries \(indices 0..1\), no entry '5'"):
        apply_path(data, "network.layers.5.size", 8, "axes.x")
    with pytest.raises(InputError, match="quant.weight.rounding is str 'floor', not a mapping"):
        apply_path({"quant": {"weight": {"rounding": "floor"}}}, "quant.weight.rounding.mode", 1, "set")


def test_grid_points_carry_the_axis_values_and_stable_keys(tmp_path):
    spec = _spec(tmp_path, {**FOUR, "learning.window": [1, 3]}, seeds=[0, 1], set={"train.epochs": 2})
    plan = load_spec(spec)
    assert plan.grid_size == 8
    points = list(plan.grid())
    last = points[-1]  # first axis slowest: bits 8, stochastic, k = 3
    assert last.axes == {"quant.weight": {"bits": 8, "frac": 7},
                         "quant.weight.rounding, quant.bias.rounding": "stochastic", "learning.window": 3}
    config = json.loads(last.runs[1].config_json)
    assert config["quant"]["weight"] == {"signed": True, "bits": 8, "frac": 7, "rounding": "stochastic",
                                         "overflow": "saturate"}
    assert config["quant"]["bias"]["rounding"] == "stochastic" and config["learning"]["window"] == 3
    assert config["train"]["epochs"] == 2 and config["train"]["seed"] == 1
    assert points[0].runs[0].key != points[0].runs[1].key  # one key per seed
    assert len({p.key for p in points}) == 8
    assert [p.key for p in load_spec(spec).grid()] == [p.key for p in points]  # stable across loads


def test_keys_leave_out_schema_defaults(tmp_path):
    """A config that spells out defaults (as a newer schema adds fields) keeps its keys;
    a changed value gets new ones."""
    implicit = [p.key for p in load_spec(_spec(tmp_path / "a", FOUR)).grid()]
    spelled = dict(TINY, train={**TINY["train"], "lr_halve_at": [], "betas": None, "threads": None},
                   learning={**TINY["learning"], "update": "batch", "learning_signal": "bp"})
    assert [p.key for p in load_spec(_spec(tmp_path / "b", FOUR, config=spelled)).grid()] == implicit
    halved = dict(TINY, train={**TINY["train"], "lr_halve_at": [0.5]})
    changed = [p.key for p in load_spec(_spec(tmp_path / "c", FOUR, config=halved)).grid()]
    assert not set(changed) & set(implicit)


def test_random_method_draws_distinct_grid_points_reproducibly(tmp_path):
    axes = {"quant.weight.bits": [6, 7, 8, 9, 10], "learning.window": [1, 2, 3, 4, 5, 6]}
    plan = load_spec(_spec(tmp_path, axes, method="random", samples=7, sampler_seed=11))
    points = plan.initial_points()
    assert len(points) == 7 and len({p.index for p in points}) == 7
    assert all(0 <= p.index < 30 for p in points)
    assert [p.index for p in load_spec(_spec(tmp_path, axes, method="random", samples=7,
                                             sampler_seed=11)).initial_points()] == [p.index for p in points]
    other = load_spec(_spec(tmp_path, axes, method="random", samples=7, sampler_seed=12)).initial_points()
    assert [p.index for p in other] != [p.index for p in points]


def test_pareto_front_keeps_the_non_dominated_feasible_points():
    objectives = [Objective(metric="accuracy", goal="max"), Objective(metric="stllr_energy_pj", goal="min")]
    rows = [{"key": "a", "status": "ok", "accuracy": 0.90, "stllr_energy_pj": 100.0, "stllr_memory_bits": 10.0},
            {"key": "b", "status": "ok", "accuracy": 0.95, "stllr_energy_pj": 200.0, "stllr_memory_bits": 50.0},
            {"key": "c", "status": "ok", "accuracy": 0.85, "stllr_energy_pj": 150.0, "stllr_memory_bits": 10.0},
            {"key": "d", "status": "ok", "accuracy": 0.97, "stllr_energy_pj": 400.0, "stllr_memory_bits": 90.0},
            {"key": "e", "status": "failed", "accuracy": None, "stllr_energy_pj": None}]
    assert [r["key"] for r in pareto_front(rows, objectives)] == ["d", "b", "a"]  # c: worse than a in both
    bound = [Constraint(metric="stllr_memory_bits", max=60.0)]
    assert [r["key"] for r in pareto_front(rows, objectives, bound)] == ["b", "a"]
    assert dominates((-0.9, 100.0), (-0.85, 150.0)) and not dominates((-0.9, 100.0), (-0.9, 100.0))


def test_a_diverged_loss_is_a_one_line_input_error():
    from sweep.evaluate import _check_losses

    epochs = [{"epoch": 0, "train_loss": 1.5, "test_loss": 1.2}, {"epoch": 1, "train_loss": math.nan, "test_loss": 1.0}]
    with pytest.raises(InputError, match=r"^float reference training: train loss is nan at epoch 1 \(diverged\)"):
        _check_losses(epochs, "float reference training")
    _check_losses(epochs[:1], "integer training")


# ----------------------------------------------------------------------------- bad specs

BAD_SPECS = [
    ({"axes": {"learning.windw": [1, 2]}}, "axes.learning.windw = 1: learning.windw: unknown key"),
    ({"axes": {"learning.window": [0, 2]}}, "axes.learning.window = 0: learning.window: Input should be greater than 0"),
    ({"axes": {"quant.weight.bits": [8, 40]}}, "axes.quant.weight.bits = 40: quant.weight.bits: bits = 40 is outside"),
    ({"axes": {"network.layers.5.size": [8]}}, "axes.network.layers.5.size = 8: network.layers has 2 entries"),
    ({"axes": {"learning.window": [2, 9]}}, "axes.learning.window = 9: learning.window: k = 9 exceeds data.num_steps T = 6"),
    ({"axes": {"learning.window": []}}, "axes.learning.window: List should have at least 1 item"),
    ({"seeds": []}, "seeds: List should have at least 1 item"),
    ({"seeds": [0, 0]}, "seeds: 0 given twice"),
    ({"base": "missing.yaml"}, "base: config file"),
    ({"axes": {"train.seed": [1, 2]}}, "axes.train.seed: train.seed is set by 'seeds:'"),
    ({"set": {"train.optimizer": "adam"}}, "set: train.optimizer = 'adam': the integer model trains with sgd, signum or lion"),
    ({"method": "random"}, "samples: method random needs samples"),
    ({"method": "nsga2", "trials": 50}, "trials: 50 exceeds the 2 points of the grid"),
    ({"objectives": [{"metric": "joules", "goal": "min"}]}, "objectives.0.metric: Input should be"),
    ({"colour": "red"}, "colour: unknown key"),
]


@pytest.mark.parametrize("change,expected", BAD_SPECS, ids=[e[:40] for _, e in BAD_SPECS])
def test_bad_spec_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, change, expected):
    fields = {"axes": {"learning.window": [1, 2]}, "seeds": [0], **change}
    spec = _spec(tmp_path, fields.pop("axes"), seeds=fields.pop("seeds"), **fields)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(main, capsys, "sweep", "run", spec, "--out", out)
    assert code == 2
    assert stderr.count("\n") == 1 and expected in stderr, stderr
    assert not out.exists()


@pytest.mark.parametrize("argv,expected", [
    (["--scheduler", "localhost:8786"], "--scheduler 'localhost:8786': expected tcp://HOST:PORT"),
    (["--scheduler", "tcp://127.0.0.1:PORT", "--timeout", "1"], "no Dask scheduler answers"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not allowed with argument"),
])
def test_bad_cluster_argument_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, argv, expected):
    spec = _spec(tmp_path, {"learning.window": [1, 2]})
    argv = [a.replace("PORT", str(_free_port())) for a in argv]  # nothing listens there
    out = tmp_path / "out"
    try:
        code, _, stderr = run_cli(main, capsys, "sweep", "run", spec, "--out", out, *argv)
    except SystemExit as stop:  # argparse's own refusals exit from parse_args
        code, stderr = stop.code, capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1 and expected in stderr, stderr
    assert not out.exists()


def test_report_of_a_folder_without_results_is_one_line(tmp_path, capsys):
    code, _, stderr = run_cli(main, capsys, "sweep", "report", tmp_path)
    assert code == 2 and stderr.count("\n") == 1 and "no results.parquet" in stderr


# ------------------------------------------------------------------------ local cluster


def test_local_cluster_stores_a_failing_point_and_a_rerun_computes_nothing(tmp_path, capsys):
    # lr 1e-9: eta = lr / (B k) quantizes to 0 in quant.learning_rate: that point fails, the rest run
    spec = _spec(tmp_path, {"train.lr": [0.0625, 0.125, 0.03125, 1.0e-9]}, seeds=[0, 1], float_reference=True)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(main, capsys, "sweep", "run", spec, "--out", out, "--workers", "2")
    assert code == 0, stderr
    summary = _summary(stdout)
    assert (summary["points"], summary["computed"], summary["cached"], summary["failed"]) == (4, 4, 0, 1)
    assert summary["workers"] == 2 and summary["runs_computed"] == 8
    runs, points = _rows(out, "run"), _rows(out, "point")
    assert len(runs) == 8 and len(points) == 4
    assert len({r["worker"] for r in runs if r["status"] == "ok"}) == 2  # both worker processes trained
    failed = [p for p in points if p["status"] == "failed"]
    assert len(failed) == 1 and json.loads(failed[0]["axes"]) == {"train.lr": 1.0e-9}
    assert "quantizes to 0 in quant.learning_rate u16.16" in failed[0]["error"]
    assert failed[0]["error_kind"] == "input"
    for point in (p for p in points if p["status"] == "ok"):
        seeds = [r for r in runs if r["point_key"] == point["key"]]
        assert sorted(r["seed"] for r in seeds) == [0, 1]
        assert point["accuracy"] == pytest.approx(sum(r["accuracy"] for r in seeds) / 2)
        assert 0.0 <= point["accuracy"] <= 1.0 and point["stllr_energy_pj"] > 0
        # BPTT keeps every step's activations: more state than S-TLLR's traces
        assert point["bptt_state_bits"] > point["stllr_state_bits"] > 0
        assert point["stllr_memory_bits"] > point["stllr_state_bits"]
        assert 0.0 <= point["float_accuracy"] <= 1.0
        assert point["accuracy_gap"] == pytest.approx(point["float_accuracy"] - point["accuracy"])
        assert json.loads(point["versions"])["dask"] == "2026.8.0"
        assert json.loads(point["config"])["train"]["lr"] == json.loads(point["axes"])["train.lr"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "accuracy_vs_energy.png", "accuracy_vs_weight_bits.png", "memory_vs_window.png"]
    before = _numbers(out)

    code, stdout, _ = run_cli(main, capsys, "sweep", "run", spec, "--out", out, "--workers", "2")
    summary = _summary(stdout)
    assert code == 0 and (summary["computed"], summary["cached"], summary["failed"]) == (0, 4, 1)
    assert summary["workers"] == 0  # nothing to compute: no cluster started
    assert _numbers(out) == before

    code, stdout, _ = run_cli(main, capsys, "sweep", "report", out, "--json")
    report = json.loads(stdout)
    assert [(r["computed"], r["cached"], r["failed"]) for r in report["runs"]] == [(4, 0, 1), (0, 4, 1)]
    assert len(report["points"]) == 4 and set(report["front"]) <= {p["key"] for p in report["points"]}
    assert all(p["on_front"] == (p["key"] in report["front"]) for p in report["points"])
    code, stdout, _ = run_cli(main, capsys, "sweep", "report", out)
    assert code == 0 and "Pareto front" in stdout and "quantizes to 0" in stdout
    code, stdout, _ = run_cli(main, capsys, "sweep", "report", out, "--csv")
    assert stdout.splitlines()[0].startswith("key,train.lr,status,accuracy") and len(stdout.splitlines()) == 5


# --------------------------------------------------------------------- external cluster


@pytest.fixture(scope="module")
def cluster():
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1: (address, processes)."""
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                               "--dashboard-address", "127.0.0.1:0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_scheduler_runs_a_four_point_sweep_on_external_workers(tmp_path, capsys, cluster):
    from distributed import Client

    spec = _spec(tmp_path, FOUR)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(main, capsys, "sweep", "run", spec, "--out", out, "--scheduler", cluster)
    assert code == 0, stderr
    summary = _summary(stdout)
    assert (summary["computed"], summary["failed"], summary["workers"]) == (4, 0, 2)
    with Client(cluster, timeout=10) as client:
        workers = set(client.scheduler_info()["workers"])
    runs = _rows(out, "run")
    assert len(runs) == 4 and all(r["status"] == "ok" for r in runs)
    assert {r["worker"] for r in runs} <= workers
    weights = {(json.loads(r["config"])["quant"]["weight"]["bits"], json.loads(r["config"])["quant"]["weight"]["rounding"])
               for r in runs}
    assert weights == {(6, "floor"), (6, "stochastic"), (8, "floor"), (8, "stochastic")}
    assert Store.open(out).log.runs[-1].cluster == cluster


def test_worker_killed_mid_task_gives_the_same_results(tmp_path, capsys, cluster):
    from distributed import Client

    slow = {**TINY, "train": {**TINY["train"], "epochs": 6},
            "data": {**TINY["data"], "num_train": 160, "num_test": 32}}
    spec = _spec(tmp_path, {"quant.weight.rounding": ["floor", "stochastic"]}, config=slow)
    undisturbed, disturbed = tmp_path / "a", tmp_path / "b"
    assert run_cli(main, capsys, "sweep", "run", spec, "--out", undisturbed, "--scheduler", cluster)[0] == 0

    result = {}
    thread = threading.Thread(target=lambda: result.update(
        code=main(["sweep", "run", str(spec), "--out", str(disturbed), "--scheduler", cluster, "--quiet"])))
    with Client(cluster, timeout=10) as client:
        thread.start()
        victim, deadline = None, time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            busy = {w: keys for w, keys in client.processing().items() if any("stllr-sweep" in str(k) for k in keys)}
            victim = next(iter(busy), None)
            time.sleep(0.05)
        assert victim is not None, "no sweep task reached a worker"
        time.sleep(0.3)  # inside the training loop (a run takes ~2 s)
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=120)
        client.wait_for_workers(2, timeout=60)  # the nanny has restarted the worker
    assert result.get("code") == 0
    runs = _rows(disturbed, "run")
    assert all(r["status"] == "ok" for r in runs) and victim not in {r["worker"] for r in runs}
    assert _numbers(disturbed) == _numbers(undisturbed)


def test_nsga2_sweep_of_a_few_trials(tmp_path, capsys, cluster):
    axes = {"quant.weight.bits": [6, 8, 10], "learning.window": [1, 3, 6]}
    spec = _spec(tmp_path, axes, method="nsga2", trials=5, population=2, sampler_seed=3,
                 constraints=[{"metric": "stllr_memory_bits", "max": 1.0e7}])
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(main, capsys, "sweep", "run", spec, "--out", out, "--scheduler", cluster)
    assert code == 0, stderr
    summary = _summary(stdout)
    assert summary["computed"] == 5 and summary["failed"] == 0
    points = _rows(out, "point")
    assert len(points) == 5 and all(p["trial"] is not None for p in points)
    assert len({(json.loads(p["axes"])["quant.weight.bits"], json.loads(p["axes"])["learning.window"])
                for p in points}) == 5
    assert any(p["on_front"] for p in points) and all(p["feasible"] for p in points)
    code, stdout, _ = run_cli(main, capsys, "sweep", "run", spec, "--out", out, "--scheduler", cluster)
    assert code == 0 and _summary(stdout)["computed"] == 0  # the stored trials are told, none recomputed


def test_ctrl_c_keeps_finished_runs_and_the_rerun_completes(tmp_path, capsys, cluster):
    slow = {**TINY, "train": {**TINY["train"], "epochs": 6}, "data": {**TINY["data"], "num_train": 160}}
    spec = _spec(tmp_path, {"train.lr": [0.0625, 0.125, 0.25, 0.03125, 0.015625, 0.5]}, config=slow)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sweep.cli", "sweep", "run", str(spec), "--out", str(out),
                             "--scheduler", cluster], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    for line in proc.stdout:  # Ctrl-C right after the first run is reported (each takes ~1.5 s)
        seen.append(line)
        if "runs] points done" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, stderr = proc.communicate(timeout=60)
    stdout = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout
    assert "Traceback" not in stderr, stderr
    finished = _rows(out, "run")
    assert 1 <= len(finished) < 6 and all(r["status"] == "ok" for r in finished)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert Store.open(out).log.runs[-1].interrupted

    code, stdout, _ = run_cli(main, capsys, "sweep", "run", spec, "--out", out, "--scheduler", cluster)
    summary = _summary(stdout)
    assert code == 0 and summary["cached"] == len(finished) and summary["computed"] == 6 - len(finished)
    assert len(_rows(out, "point")) == 6
