#!/usr/bin/env python3
"""Peak training memory and epoch time of S-TLLR vs BPTT as the sequence length T grows.

STLLR.md ("Memory and work"): S-TLLR keeps traces and weight-shaped accumulators, so
its memory must not grow with T; BPTT keeps every step's activations for the backward
pass, so its memory grows linearly with T. This script measures both on the same
network (700 -> recurrent 256 -> linear 256 -> readout 20, the SHD shape), the same
windowed loss (last k = 5 steps; BPTT's memory does not depend on k), the same Adam
optimizer and the same random spike data (uint8, 10 % density, fixed seed).

Every (rule, T) is measured in fresh worker processes, torch pinned to 1 thread. In
each worker: build network, optimizer and data; train one warm-up batch through
``stllr.train.run_epoch`` (optimizer state, lazily loaded library pages, allocator and
thread start-up now exist and are excluded); then measure.

Peak memory ("peak MB", the figure the checks use): one epoch of ``run_epoch`` in which
each rule call (``stllr_batch`` / ``bptt_batch``, optimizer step included) is measured
on its own: ``gc.collect()`` + glibc ``malloc_trim(0)``, baseline = VmRSS (the batch's
uint8 input is already in memory), VmHWM reset to it by writing ``5`` to
``/proc/self/clear_refs``, call, peak = VmHWM - baseline; the max over the batches.
(If clear_refs is refused, a thread samples VmRSS every 1 ms instead; the header says
which.) These workers run with ``MALLOC_MMAP_THRESHOLD_=16384`` so that RSS follows the
live tensors rather than glibc's heap reuse (+-1 MB noise otherwise). Each of the
``--repeats`` repeats is one fresh interpreter (a "zygote") that imports torch once and
forks one fresh child process per (rule, T), so start-up is paid once per repeat.

Also per cell: "autograd MB", the peak bytes autograd holds for backward (unique
storages, parameters excluded, via ``torch.autograd.graph.saved_tensors_hooks``, one
batch); and, from the timing worker with the default allocator: "glibc MB" (the same
per-call peak) and "epoch MB" (peak of a whole epoch, input batches included).

Time: a separate fresh interpreter per (rule, T), default allocator, run alone one
after another; ``--epochs`` timed epochs after the warm-up, median wall ("epoch s") and
CPU seconds ("cpu s"). The time check compares CPU seconds, which another tenant's
load on a shared machine does not stretch; both ratios are printed.

Usage:
    .venv/bin/python bench/memory_vs_T.py                     # the default sweep (~2-3 min)
    .venv/bin/python bench/memory_vs_T.py --check --json out.json
    .venv/bin/python bench/memory_vs_T.py --steps 25 200 --repeats 1 --epochs 1
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RULES = ("stllr", "bptt")
RULE_NAMES = {"stllr": "S-TLLR", "bptt": "BPTT"}
MB = 2**20

# --------------------------------------------------------------------------- /proc


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS; True if the kernel did it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    # Check that it took: HWM must now be close to the current RSS.
    return _status_kb("VmHWM") - _status_kb("VmRSS") < 1024


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


# glibc settings of the memory workers (environment, read by glibc at process start):
# every block >= 16 KiB is its own mmap, returned to the OS on free, with no dynamic
# threshold. Set at start-up on purpose: switched later with mallopt, the heap already
# holds free chunks that glibc reuses first, and the figure wanders by +-1 MB.
MMAP_THRESHOLD = 16 * 1024
TRIM_THRESHOLD = 128 * 1024


class _RssSampler:
    """Fallback peak meter: max VmRSS sampled every 1 ms in a background thread."""

    def __init__(self) -> None:
        self.peak_kb = _status_kb("VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with open("/proc/self/statm") as handle:
            page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
            while not self._stop.is_set():
                handle.seek(0)
                self.peak_kb = max(self.peak_kb, int(handle.read().split()[1]) * page_kb)
                time.sleep(0.001)

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))


# --------------------------------------------------------------------------- worker


def make_config(rule: str, args: dict):
    from core.config import parse_config

    hidden = args["hidden"]
    return parse_config({
        "network": {
            "input_shape": [args["inputs"]],
            "layers": [
                {"kind": "recurrent", "size": hidden},
                {"kind": "linear", "size": hidden},
                {"kind": "readout", "size": args["classes"]},
            ],
        },
        "learning": {"rule": rule, "window": args["window"], "learning_signal": "bp"},
        "train": {"epochs": 1, "batch_size": args["batch"], "optimizer": "adam", "seed": 0, "threads": 1},
        # never loaded: the benchmark builds its data set in memory
        "data": {"kind": "npz", "train": "unused.npz", "test": "unused.npz"},
    }, "bench")


def make_dataset(num_samples: int, num_steps: int, inputs: int, classes: int, density: float, seed: int):
    import numpy as np

    from stllr.data import EventDataset

    rng = np.random.default_rng(seed)
    x = np.empty((num_samples, num_steps, inputs), dtype=np.uint8)
    for n in range(num_samples):  # per sample: no (N, T, F) float temporary
        x[n] = rng.random((num_steps, inputs), dtype=np.float32) < density
    y = rng.integers(0, classes, num_samples).astype(np.int64)
    return EventDataset(x=x, y=y, classes=tuple(str(c) for c in range(classes)), name="random-spikes")


class _SavedBytes:
    """Live bytes of the (unique, non-parameter) storages autograd saves for backward."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.counts: dict[int, list[int]] = {}
        self.live = 0
        self.peak = 0

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.exclude or key == 0:
            return tensor
        return _Saved(self, key, storage.nbytes(), tensor)

    @staticmethod
    def unpack(packed):
        return packed.tensor if isinstance(packed, _Saved) else packed


class _Saved:
    __slots__ = ("meter", "key", "tensor")

    def __init__(self, meter: _SavedBytes, key: int, nbytes: int, tensor) -> None:
        self.meter, self.key, self.tensor = meter, key, tensor
        entry = meter.counts.setdefault(key, [0, nbytes])
        if entry[0] == 0:
            meter.live += nbytes
            meter.peak = max(meter.peak, meter.live)
        entry[0] += 1

    def __del__(self) -> None:
        entry = self.meter.counts[self.key]
        entry[0] -= 1
        if entry[0] == 0:
            self.meter.live -= entry[1]
            del self.meter.counts[self.key]


def _measure(function, method: str) -> tuple[object, int]:
    """Run ``function()``; return (its result, peak RSS in kB above the RSS just before).

    Before: gc + malloc_trim, so memory freed earlier is not silently reused and is not
    in the baseline; then VmHWM is reset to the current RSS (or the 1 ms sampler runs).
    """
    gc.collect()
    _malloc_trim()
    base = _status_kb("VmRSS")
    if method == "VmHWM" and _reset_hwm():
        result = function()
        return result, _status_kb("VmHWM") - base
    with _RssSampler() as sampler:
        result = function()
    return result, sampler.peak_kb - base


def rule_peaks(net, optimizer, dataset, config, method: str, epoch: int) -> list[int]:
    """One untimed epoch of run_epoch in which every rule call (stllr_batch/bptt_batch,
    optimizer step included) is measured by :func:`_measure`; peak kB per batch. The
    batch's uint8 input already exists when the call starts, so it is in the baseline."""
    import stllr.train as train_module

    peaks: list[int] = []

    def measured(function):
        def call(*args, **kwargs):
            result, peak = _measure(lambda: function(*args, **kwargs), method)
            peaks.append(peak)
            return result
        return call

    saved = train_module.stllr_batch, train_module.bptt_batch
    train_module.stllr_batch, train_module.bptt_batch = measured(saved[0]), measured(saved[1])
    try:
        train_module.run_epoch(net, optimizer, dataset, config, epoch=epoch)
    finally:
        train_module.stllr_batch, train_module.bptt_batch = saved
    return peaks


def worker(args: dict) -> dict:
    """One (rule, T) in a fresh process. mode "memory": peak per rule call (run with the
    fixed glibc mmap threshold from the environment) and autograd's saved bytes;
    mode "time": timed epochs with the default allocator, plus its RSS figures."""
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    from stllr.data import EventDataset
    from stllr.train import build_network, build_optimizer, run_epoch

    rule, num_steps, batch = args["rule"], args["T"], args["batch"]
    config = make_config(rule, args)
    dataset = make_dataset(args["samples"], num_steps, args["inputs"], args["classes"], args["density"], args["seed"])
    net = build_network(config)
    optimizer = build_optimizer(net, config)
    method = "VmHWM" if _reset_hwm() else "sampled 1 ms"

    # Warm-up: one batch through the same code path, so the optimizer state, lazily
    # loaded library pages, allocator arenas and thread pools exist before any baseline.
    first = EventDataset(x=dataset.x[:batch], y=dataset.y[:batch], classes=dataset.classes, name="warm-up")
    run_epoch(net, optimizer, first, config, epoch=0)
    del first
    out = {"rule": rule, "T": num_steps, "mode": args["mode"], "method": method,
           "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
           "input_mb": min(batch, args["samples"]) * num_steps * args["inputs"] / MB}  # one uint8 batch

    if args["mode"] == "time":
        seconds, cpu_seconds, epoch_peaks = [], [], []
        for epoch in range(1, args["epochs"] + 1):
            def timed(epoch=epoch):
                wall, cpu = time.perf_counter(), time.process_time()
                run_epoch(net, optimizer, dataset, config, epoch=epoch)
                return time.perf_counter() - wall, time.process_time() - cpu
            (elapsed, cpu), peak = _measure(timed, method)
            seconds.append(elapsed)
            cpu_seconds.append(cpu)
            epoch_peaks.append(peak / 1024)
        glibc = rule_peaks(net, optimizer, dataset, config, method, epoch=args["epochs"] + 1)
        out.update(epoch_s=seconds, cpu_s=cpu_seconds, epoch_peak_mb=epoch_peaks,
                   glibc_batch_peaks_mb=[kb / 1024 for kb in glibc])
        return out

    peaks = rule_peaks(net, optimizer, dataset, config, method, epoch=1)
    out.update(batch_peaks_mb=[kb / 1024 for kb in peaks], rule_mb=max(peaks) / 1024, saved_mb=None)
    if args["saved"]:
        params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        meter = _SavedBytes(params)
        one = EventDataset(x=dataset.x[:batch], y=dataset.y[:batch], classes=dataset.classes, name="saved")
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
            run_epoch(net, optimizer, one, config, epoch=2)
        out["saved_mb"] = meter.peak / MB
    return out


# --------------------------------------------------------------------------- driver


THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def run_worker(args: dict) -> dict:
    """A fresh interpreter (``python this-script --worker``) with the default allocator."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(args)],
                          env=_env(malloc=False), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"worker {args['mode']} {args['rule']} T={args['T']} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env(malloc: bool) -> dict:
    env = dict(os.environ, **THREAD_ENV)
    for name in MALLOC_ENV:
        env.pop(name, None)
    if malloc:
        env.update(MALLOC_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def zygote(tasks: list[dict]) -> int:
    """Import torch and stllr once, then fork one fresh child per task (one after
    another); each child runs :func:`worker` and prints its JSON line. Started by
    :func:`run_zygote` with MALLOC_ENV, so every child has the fixed mmap threshold from
    the zygote's first malloc on, and ~3 s of interpreter start-up is paid once."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (imported by the first Optimizer; keep it out of the children)
    import stllr.train  # noqa: F401

    sys.stdout.flush()
    for task in tasks:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sys.stdout.write(json.dumps(worker(task)) + "\n")
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"worker {task['rule']} T={task['T']} failed (status {status})", file=sys.stderr)
            return 1
    return 0


def run_zygote(tasks: list[dict], report) -> None:
    """One zygote process (a fresh interpreter) for a list of memory tasks; ``report``
    gets each worker's figures as the line arrives."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--zygote", json.dumps(tasks)],
                            env=_env(malloc=True), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = 0
    for line in proc.stdout:
        if line.startswith("{"):
            report(json.loads(line), tasks[done])
            done += 1
    errors = proc.stderr.read()
    if proc.wait() != 0 or done != len(tasks):
        sys.stderr.write(errors)
        raise SystemExit(f"memory workers failed (exit {proc.returncode}, {done}/{len(tasks)} done)")


def summarize(runs: list[dict], steps: list[int]) -> list[dict]:
    """One row per (rule, T): medians over the memory repeats and the timed epochs."""
    rows = []
    for rule in RULES:
        for num_steps in steps:
            memory = [r for r in runs if r["mode"] == "memory" and r["rule"] == rule and r["T"] == num_steps]
            timing = next(r for r in runs if r["mode"] == "time" and r["rule"] == rule and r["T"] == num_steps)
            peaks = [r["rule_mb"] for r in memory]
            saved = [r["saved_mb"] for r in memory if r["saved_mb"] is not None]
            rows.append({
                "rule": rule, "T": num_steps, "repeats": len(memory), "method": memory[0]["method"],
                "peak_mb": statistics.median(peaks), "peak_spread_mb": max(peaks) - min(peaks),
                "saved_mb": saved[0] if saved else None,
                "glibc_peak_mb": max(timing["glibc_batch_peaks_mb"]),
                "epoch_peak_mb": statistics.median(timing["epoch_peak_mb"]),
                "input_mb": timing["input_mb"],
                "epoch_s": statistics.median(timing["epoch_s"]),
                "epoch_s_spread": max(timing["epoch_s"]) - min(timing["epoch_s"]),
                "cpu_s": statistics.median(timing["cpu_s"]),
            })
    for row in rows:
        first = next(r for r in rows if r["rule"] == row["rule"] and r["T"] == steps[0])
        row["peak_ratio"] = row["peak_mb"] / first["peak_mb"] if first["peak_mb"] > 0 else float("nan")
        bptt = next(r for r in rows if r["rule"] == "bptt" and r["T"] == row["T"])
        row["time_ratio"] = row["epoch_s"] / bptt["epoch_s"]
        row["cpu_ratio"] = row["cpu_s"] / bptt["cpu_s"]
    return rows


def checks(rows: list[dict], steps: list[int]) -> list[tuple[str, bool, str]]:
    get = lambda rule, t: next(r for r in rows if r["rule"] == rule and r["T"] == t)  # noqa: E731
    lo, hi = steps[0], steps[-1]
    st = [get("stllr", t)["peak_mb"] for t in steps]
    flat = min(st) > 0 and max(st) / min(st) <= 1.10
    bp = [get("bptt", t)["peak_mb"] for t in steps]
    grows = all(b > a for a, b in zip(bp, bp[1:]))
    later = [t for t in steps if t >= 50]
    # CPU seconds of the single-threaded worker: the machine may be shared, and another
    # tenant's load stretches wall time of one worker but not the CPU time it used.
    slow = [t for t in later if get("stllr", t)["cpu_s"] > get("bptt", t)["cpu_s"]]
    return [
        (f"S-TLLR memory flat within 10 % (T={lo}..{hi})", flat,
         f"peak MB {', '.join(f'{v:.2f}' for v in st)}; max/min = {max(st) / min(st):.3f}"
         if min(st) > 0 else "non-positive peak"),
        ("BPTT memory grows with T", grows,
         f"peak MB {', '.join(f'{v:.1f}' for v in bp)}; T={hi}/T={lo} = {bp[-1] / bp[0]:.2f}x"),
        ("S-TLLR epoch time <= BPTT at T >= 50", not slow,
         "S-TLLR/BPTT CPU s " + ", ".join(f"T={t}: {get('stllr', t)['cpu_ratio']:.2f}" for t in later)
         + "; wall s " + ", ".join(f"{get('stllr', t)['time_ratio']:.2f}" for t in later)
         if later else "no T >= 50 in --steps"),
    ]


COLUMNS = ["T", "rule", "peak MB", "spread", "vs T={lo}", "autograd MB", "glibc MB", "epoch MB",
           "input MB", "epoch s", "cpu s", "S-TLLR/BPTT s", "cpu"]


def table_rows(rows: list[dict], steps: list[int]) -> list[list[str]]:
    out = []
    for t in steps:
        for rule in RULES:
            r = next(x for x in rows if x["rule"] == rule and x["T"] == t)
            out.append([
                str(t), RULE_NAMES[rule], f"{r['peak_mb']:.2f}", f"{r['peak_spread_mb']:.2f}", f"{r['peak_ratio']:.3f}",
                "-" if r["saved_mb"] is None else f"{r['saved_mb']:.2f}", f"{r['glibc_peak_mb']:.1f}",
                f"{r['epoch_peak_mb']:.1f}", f"{r['input_mb']:.2f}", f"{r['epoch_s']:.3f}", f"{r['cpu_s']:.3f}",
                f"{r['time_ratio']:.2f}" if rule == "stllr" else "", f"{r['cpu_ratio']:.2f}" if rule == "stllr" else "",
            ])
    return out


def render(rows: list[dict], steps: list[int], results: list[tuple[str, bool, str]], header: str,
           plain: bool = False) -> None:
    columns = [c.format(lo=steps[0]) for c in COLUMNS]
    body = table_rows(rows, steps)
    try:
        if plain:
            raise ImportError
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(header)
        widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(columns)]
        print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
        for row in body:
            print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
        for name, ok, detail in results:
            print(f"{'PASS' if ok else 'FAIL'}  {name}  ({detail})")
        return
    table = Table(title=header)
    for name in columns:
        table.add_column(name, justify="left" if name == "rule" else "right")
    for row in body:
        table.add_row(*row)
    console = Console(width=max(140, Console().width))
    console.print(table)
    for name, ok, detail in results:
        console.print(f"[{'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/]  {name}  ({detail})",
                      highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--zygote", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200], help="sequence lengths T")
    parser.add_argument("--samples", type=int, default=256, help="samples in the random data set (one epoch)")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--hidden", type=int, default=256, help="size of the recurrent and the linear layer")
    parser.add_argument("--inputs", type=int, default=700, help="input channels (SHD: 700)")
    parser.add_argument("--classes", type=int, default=20, help="readout size (SHD: 20)")
    parser.add_argument("--window", type=int, default=5, help="learning window k (both rules' loss)")
    parser.add_argument("--density", type=float, default=0.10, help="spike probability per input and step")
    parser.add_argument("--repeats", type=int, default=3,
                        help="independent memory measurements per (rule, T), each in a fresh process; "
                             "the median is shown")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per (rule, T); the median is shown")
    parser.add_argument("--jobs", type=int, default=2,
                        help="memory repeats run at once (timed workers always run alone, one after another)")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument("--json", type=Path, help="save settings, every worker's figures and the summary here")
    parser.add_argument("--plain", action="store_true", help="plain-text table even if rich is installed")
    parser.add_argument("--check", action="store_true", help="exit 1 if a check fails")
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.zygote:
        return zygote(json.loads(args.zygote))
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")

    steps = sorted(set(args.steps))
    if len(steps) < 2:
        parser.error("--steps needs at least two values of T")
    if steps[0] < args.window:
        parser.error(f"every T must be >= the window k = {args.window}")
    if args.repeats < 1 or args.epochs < 1 or args.samples < 1 or args.batch < 1:
        parser.error("--repeats, --epochs, --samples and --batch must be >= 1")
    settings = {k: getattr(args, k) for k in ("samples", "batch", "hidden", "inputs", "classes", "window",
                                                "density", "seed", "epochs")}
    runs, begun = [], time.perf_counter()
    timed = [{**settings, "mode": "time", "rule": rule, "T": t, "saved": False, "repeat": 0}
             for t in steps for rule in RULES]
    repeats = [[{**settings, "mode": "memory", "rule": rule, "T": t, "saved": repeat == 0, "repeat": repeat}
                for t in steps for rule in RULES] for repeat in range(args.repeats)]
    total = len(timed) + sum(len(tasks) for tasks in repeats)
    lock = threading.Lock()

    def report(run: dict, item: dict) -> None:
        with lock:
            run["repeat"] = item["repeat"]
            runs.append(run)
            figure = (f"epoch {statistics.median(run['epoch_s']):6.3f} s" if run["mode"] == "time"
                      else f"peak {run['rule_mb']:7.2f} MB  (repeat {item['repeat'] + 1})")
            print(f"  [{len(runs):2d}/{total}] {run['mode']:6s} {RULE_NAMES[run['rule']]:6s} T={run['T']:<4d} "
                  f"{figure}", file=sys.stderr, flush=True)

    # Timed workers: fresh interpreters, strictly one after another, nothing else of ours running.
    for item in timed:
        report(run_worker(item), item)
    # Memory workers: one zygote per repeat (a fresh interpreter, so the repeats are
    # independent), forking one child per (rule, T). They measure their own RSS only,
    # so up to --jobs zygotes may run at once.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(run_zygote, tasks, report) for tasks in repeats]:
            future.result()
    rows = summarize(runs, steps)
    results = checks(rows, steps)
    header = (f"S-TLLR vs BPTT, memory and time vs T: {args.inputs} -> recurrent {args.hidden} -> linear "
              f"{args.hidden} -> readout {args.classes}, batch {args.batch}, {args.samples} samples, "
              f"k = {args.window}, BP signal, 1 thread; peak: median of {args.repeats} repeats "
              f"({rows[0]['method']}); epoch s: median of {args.epochs} epochs")
    render(rows, steps, results, header, plain=args.plain)
    print(f"total {time.perf_counter() - begun:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"settings": {**settings, "steps": steps, "repeats": args.repeats},
                                         "runs": runs, "summary": rows,
                                         "checks": [{"name": n, "pass": ok, "detail": d} for n, ok, d in results]},
                                        indent=2))
    return 1 if args.check and not all(ok for _, ok, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
