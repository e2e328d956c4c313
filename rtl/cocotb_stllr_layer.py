"""cocotb testbench: replay a golden vector set through ``stllr_layer_top`` (Icarus).

Every observation record of the DUT is compared bit for bit with the vector set
(``rtl-export golden``): pre-traces, bias trace, per-neuron current / u / v / spike /
psi / post-trace, modulation factors m and n, every accumulator, every written weight
and bias and their xorshift32 lane states, and the spike vector of each step. The
number of records of each kind must equal what the vectors hold (a missing record is a
failure, not a pass).

Driving and sampling both happen at the falling clock edge, in ONE loop: the DUT's
registered outputs are stable there and no ordering between coroutines matters.

A mismatch fails the test (results.xml) AND makes the simulator process exit with 1
once cocotb has written its results (cocotb itself exits 0 after a failing test), so
whoever runs the bench sees the failure in the exit status too.

Environment (set by :func:`rtl_export.sim.run_icarus`):

    STLLR_GOLDEN   the vector set directory
    STLLR_LAYER    layer index (default 0)
    STLLR_SUMMARY  where to write a JSON summary (cycles, checks, wall time)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

MAX_ERRORS = 10


def exit_nonzero_at_shutdown(failed) -> None:
    """Make the simulator exit with status 1 after cocotb has written results.xml, when
    ``failed()`` says so then (registered first, so a crash of the test counts too)."""
    try:
        from cocotb import _shutdown  # cocotb 2.x: callbacks run after the results are written
    except ImportError:  # another cocotb: results.xml and the summary still say FAIL
        return

    def stop() -> None:
        import ctypes

        if not failed():
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            ctypes.CDLL(None).fflush(None)  # the simulator's own buffered log lines
        except (OSError, AttributeError):
            pass
        os._exit(1)

    _shutdown.register(stop)


@cocotb.test()
async def replay_golden(dut):
    verdict = {"passed": False}
    exit_nonzero_at_shutdown(lambda: not verdict["passed"])
    golden = Path(os.environ["STLLR_GOLDEN"])
    layer = int(os.environ.get("STLLR_LAYER", "0"))
    manifest = json.loads((golden / "manifest.json").read_text())
    with np.load(golden / "golden.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    signed = {e["npz_key"]: e["format"]["signed"] for e in manifest["files"]}
    pre = f"layer{layer}/"
    S, T, K = manifest["samples"], manifest["steps"], manifest["window"]
    t0 = T - K
    online = manifest["update"] == "online"
    n_in = arrays[pre + "input"].shape[2]
    n_out = arrays[pre + "current"].shape[2]
    has_bias = (pre + "bias_trace") in arrays
    has_nc = (pre + "noncausal") in arrays
    lanes_w = (pre + "weight_lanes_next") in arrays
    lanes_b = (pre + "bias_lanes_next") in arrays
    sig_bits = len(dut.lsig.value) // n_out

    checks: Counter = Counter()
    errors: list[str] = []

    def read(signal, key: str) -> int:
        value = signal.value
        if not hasattr(value, "to_unsigned"):  # a 1-bit signal reads as a Logic
            return int(value)
        return value.to_signed() if signed.get(key, False) else value.to_unsigned()

    def expect(kind: str, key: str, index: tuple, got: int, where: str) -> None:
        checks[kind] += 1
        want = int(arrays[key][index])
        if got != want and len(errors) < MAX_ERRORS:
            errors.append(f"{key} {where} index {index[2:]}: rtl {got}, vectors {want}")

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.step_start.value = 0
    dut.learn_start.value = 0
    dut.x.value = 0
    dut.lsig.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    started = time.perf_counter()
    s = t = 0  # the step being processed
    issued = False  # step_start given for (s, t)
    learned = False
    cycles = 0
    limit = 200 * S * T * (n_in + 8) * (n_out + 2)
    while s < S:
        await FallingEdge(dut.clk)
        cycles += 1
        if cycles > limit:
            raise AssertionError(f"timeout after {cycles} cycles at sample {s} step {t}")
        dut.step_start.value = 0
        dut.learn_start.value = 0
        w = t - t0
        wi = w if online else 0
        where = f"sample {s} step {t}"
        # ---- records registered at the last rising edge
        if dut.pre_valid.value:
            j = int(dut.pre_idx.value)
            expect("pre_trace", pre + "pre_trace", (s, t, j), read(dut.pre_q, pre + "pre_trace"), where)
        if dut.qb_valid.value:
            checks["bias_trace"] += 1
            want = int(arrays[pre + "bias_trace"][s, t])
            got = read(dut.qb_q, pre + "bias_trace")
            if got != want and len(errors) < MAX_ERRORS:
                errors.append(f"{pre}bias_trace {where}: rtl {got}, vectors {want}")
        if dut.neu_valid.value:
            o = int(dut.neu_idx.value)
            for sig, key in ((dut.neu_current, "current"), (dut.neu_u, "u"), (dut.neu_v, "membrane"),
                             (dut.neu_spike, "spikes"), (dut.neu_psi, "psi"), (dut.neu_p, "post_trace")):
                expect("neuron", pre + key, (s, t, o), read(sig, pre + key), where)
        if dut.mod_valid.value:
            o = int(dut.mod_idx.value)
            expect("modulation", pre + "causal", (s, w, o), read(dut.mod_m, pre + "causal"), where)
            n = read(dut.mod_n, pre + "causal")
            if has_nc:
                expect("modulation", pre + "noncausal", (s, w, o), n, where)
            elif n != 0 and len(errors) < MAX_ERRORS:
                errors.append(f"{pre}noncausal {where} index ({o},): rtl {n}, expected 0 (alpha_post = 0)")
        if dut.syn_valid.value:
            a = int(dut.syn_idx.value)
            expect("accumulator", pre + "acc_weight", (s, w, a // n_in, a % n_in),
                   read(dut.syn_acc, pre + "acc_weight"), where)
        if dut.accb_valid.value:
            o = int(dut.accb_idx.value)
            expect("accumulator", pre + "acc_bias", (s, w, o), read(dut.accb_acc, pre + "acc_bias"), where)
        if dut.wr_valid.value:
            a = int(dut.wr_idx.value)
            expect("weight_write", pre + "weight_next", (s, wi, a // n_in, a % n_in),
                   read(dut.wr_w, pre + "weight_next"), where)
            if lanes_w:
                expect("lanes", pre + "weight_lanes_next", (s, wi, a // n_in, a % n_in),
                       dut.wr_lane.value.to_unsigned(), where)
        if dut.wrb_valid.value:
            o = int(dut.wrb_idx.value)
            expect("weight_write", pre + "bias_next", (s, wi, o), read(dut.wrb_b, pre + "bias_next"), where)
            if lanes_b:
                expect("lanes", pre + "bias_lanes_next", (s, wi, o), dut.wrb_lane.value.to_unsigned(), where)
        if dut.fwd_done.value:
            checks["spike_vector"] += 1
            got = dut.spikes.value.to_unsigned()
            want = sum(int(v) << o for o, v in enumerate(arrays[pre + "spikes"][s, t]))
            if got != want and len(errors) < MAX_ERRORS:
                errors.append(f"{pre}spikes {where}: rtl vector {got:#x}, vectors {want:#x}")
        # ---- control
        if dut.step_done.value:
            if int(dut.t_step.value) != (t + 1) % T and len(errors) < MAX_ERRORS:
                errors.append(f"t_step {where}: rtl {int(dut.t_step.value)}, expected {(t + 1) % T}")
            t, issued, learned = t + 1, False, False
            if t == T:
                s, t = s + 1, 0
            continue
        if not issued and dut.ready_step.value:
            dut.x.value = sum(int(v) << j for j, v in enumerate(arrays[pre + "input"][s, t]))
            dut.step_start.value = 1
            issued = True
        elif issued and not learned and dut.ready_learn.value:
            ls = arrays[pre + "learning_signal"][s, w]
            mask = (1 << sig_bits) - 1
            dut.lsig.value = sum((int(v) & mask) << (o * sig_bits) for o, v in enumerate(ls))
            dut.learn_start.value = 1
            learned = True
    wall = time.perf_counter() - started

    n_syn = n_out * n_in
    writes = K if online else 1
    expected = {
        "pre_trace": S * T * n_in,
        "bias_trace": S * T if has_bias else 0,
        "neuron": 6 * S * T * n_out,
        "modulation": (2 if has_nc else 1) * S * K * n_out,
        "accumulator": S * K * (n_syn + (n_out if has_bias else 0)),
        "weight_write": S * writes * (n_syn + (n_out if has_bias else 0)),
        "lanes": S * writes * ((n_syn if lanes_w else 0) + (n_out if lanes_b else 0)),
        "spike_vector": S * T,
    }
    for kind, count in expected.items():
        if checks[kind] != count:
            errors.append(f"{kind}: {checks[kind]} values checked, the vectors hold {count}")
    summary = {"simulator": "icarus+cocotb", "cycles": cycles, "checks": sum(checks.values()),
               "by_kind": dict(checks), "sim_wall_s": round(wall, 3), "errors": errors}
    if os.environ.get("STLLR_SUMMARY"):
        Path(os.environ["STLLR_SUMMARY"]).write_text(json.dumps(summary, indent=1))
    dut._log.info("cycles %d, values checked %d, %.2f s", cycles, sum(checks.values()), wall)
    verdict["passed"] = not errors
    assert not errors, "RTL differs from the golden vectors:\n" + "\n".join(errors)
