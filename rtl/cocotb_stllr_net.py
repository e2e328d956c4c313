"""cocotb testbench of the generated whole-network core ``stllr_net`` (Icarus).

Drives the core through its ports only (input buffer, step_start, train, target) and
checks, against what the integer model computed for the same samples (a JSON file written
by :func:`rtl_export.netsim.run_cocotb`): the readout membrane y of every class at every
step (the ``y_valid`` stream), the prediction after each sample (``pred_valid``), and
every overflow counter at the end (``ovf_sel`` / ``ovf_count``). The number of y values
must be exactly samples x steps x classes.

Driving and sampling happen at the falling clock edge in one loop. A mismatch fails the
test (results.xml) and the summary JSON lists it.

Environment: STLLR_NET_EXPECTED (the JSON file), STLLR_SUMMARY (where to write the summary).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

MAX_ERRORS = 10


def _signed(value, bits: int) -> int:
    v = int(value)
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


@cocotb.test()
async def replay(dut):
    spec = json.loads(Path(os.environ["STLLR_NET_EXPECTED"]).read_text())
    summary_path = Path(os.environ["STLLR_SUMMARY"])
    samples, steps, n0 = spec["samples"], spec["steps"], spec["n_in"]
    y_bits, classes = spec["y_bits"], spec["classes"]
    errors: list[str] = []
    started = time.perf_counter()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("in_we", "in_addr", "in_data", "step_start", "train", "target", "ovf_sel"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    cycles = checks = 0
    for s in range(samples):
        for t in range(steps):
            words = spec["inputs"][s][t]
            for j in range(n0):
                await FallingEdge(dut.clk)
                dut.in_we.value = 1
                dut.in_addr.value = j
                dut.in_data.value = int(words[j])
            await FallingEdge(dut.clk)
            dut.in_we.value = 0
            dut.step_start.value = 1
            dut.train.value = int(spec["modes"][s])
            dut.target.value = int(spec["labels"][s])
            ys: dict[int, int] = {}
            done = False
            while not done:
                await FallingEdge(dut.clk)
                dut.step_start.value = 0
                cycles += 1
                if int(dut.y_valid.value):
                    ys[int(dut.y_idx.value)] = _signed(dut.y_val.value, y_bits)
                done = bool(int(dut.step_done.value))
            want = spec["y"][s][t]
            for c in range(classes):
                checks += 1
                if ys.get(c) != want[c] and len(errors) < MAX_ERRORS:
                    errors.append(f"sample {s} step {t} readout y[{c}]: RTL {ys.get(c)}, integer model {want[c]}")
            if len(ys) != classes and len(errors) < MAX_ERRORS:
                errors.append(f"sample {s} step {t}: {len(ys)} y values, expected {classes}")
            if t == steps - 1:
                checks += 1
                got = int(dut.pred.value) if int(dut.pred_valid.value) else None
                if got != spec["predictions"][s] and len(errors) < MAX_ERRORS:
                    errors.append(f"sample {s} prediction: RTL {got}, integer model {spec['predictions'][s]}")
    for k, (name, want) in enumerate(spec["overflow"]):
        dut.ovf_sel.value = k
        await FallingEdge(dut.clk)
        checks += 1
        got = int(dut.ovf_count.value)
        if got != want and len(errors) < MAX_ERRORS:
            errors.append(f"overflow counter {name}: RTL {got}, integer model {want}")
    summary_path.write_text(json.dumps({"cycles": cycles, "checks": checks, "errors": errors,
                                        "seconds": round(time.perf_counter() - started, 2)}))
    assert not errors, "\n".join(errors)
