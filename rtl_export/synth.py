"""Synthesis and place-and-route of the generated core on a Lattice iCE40 UP5K (``rtl-export synth``).

Flow: the core of ``rtl_export.netgen`` inside a pin wrapper (``stllr_net_ice40``: the
core's wide ports behind two shift registers, so that no logic is optimised away and the
design fits the sg48 package's pins), Yosys ``synth_ice40 -dsp`` and
``nextpnr-ice40 --up5k --package sg48``. ``DIR/report.json`` holds the cell counts
(LUT4, carry, flip-flops, block RAM, SPRAM, DSP), nextpnr's utilisation and Fmax when the
design was placed and routed, or the reason it was not (the first resource that does not
fit, with what the design needs and the device has), and the memory bits the core's
memories need (the same memories ``hwmodel`` estimates).

UP5K: 5280 logic cells (LUT4 + flip-flop + carry), 30 block RAMs of 4 kbit
(SB_RAM40_4K, 120 kbit), 4 SPRAMs of 256 kbit (SB_SPRAM256KA, single-port; the core's
memories read and write in the same clock, so they map to block RAM or flip-flops, never
to SPRAM), 8 DSPs (SB_MAC16, 16 x 16), 39 user I/O on sg48.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from core.errors import InputError
from rtl_export.netgen import NetGen, clog2
from rtl_export.netsim import RTL_DIR, RTL_FILES

DEVICE = {"name": "iCE40 UP5K", "package": "sg48", "logic_cells": 5280, "bram_blocks": 30, "bram_bits": 30 * 4096,
          "spram_blocks": 4, "spram_bits": 4 * 262144, "dsp": 8, "io": 39}


def wrapper(gen: NetGen) -> str:
    lp0 = gen.layers[0]
    aw, ib, tb = clog2(lp0.geometry.n_in), lp0.fmts.input.bits, gen.tgt_bits
    kw = clog2(len(gen.ovf) + 1)
    tw = clog2(gen.T + 1)
    yiw, yb = clog2(gen.p.num_classes), gen.layers[-1].fmts.membrane.bits
    iw = 1 + aw + ib + 1 + 1 + tb + kw
    ow = 1 + yiw + yb + tb + 1 + 32 + tw
    return f"""// stllr_net_ice40: pin wrapper of {gen.top} for place and route (generated; do not edit).
// Inputs arrive through a serial shift register (sdi), outputs leave through one (sdo),
// so every port of the core stays live and the design needs 7 pins.
`timescale 1ns / 1ps

module stllr_net_ice40 (
    input  wire clk,
    input  wire rst,
    input  wire sdi,
    input  wire sload,
    output wire sdo,
    output wire busy,
    output wire step_done
);
    reg [{iw - 1}:0] sin;
    reg [{ow - 1}:0] sout;
    wire y_valid, pred_valid;
    wire [{yiw - 1}:0] y_idx;
    wire [{yb - 1}:0] y_val;
    wire [{tb - 1}:0] pred;
    wire [31:0] ovf_count;
    wire [{tw - 1}:0] t_now;
    {gen.top} core (.clk(clk), .rst(rst), .in_we(sin[0] & sload), .in_addr(sin[{aw}:1]),
        .in_data(sin[{aw + ib}:{aw + 1}]), .step_start(sin[{aw + ib + 1}] & sload), .train(sin[{aw + ib + 2}]),
        .target(sin[{aw + ib + 2 + tb}:{aw + ib + 3}]), .busy(busy), .step_done(step_done), .t_now(t_now),
        .y_valid(y_valid), .y_idx(y_idx), .y_val(y_val), .pred_valid(pred_valid), .pred(pred),
        .ovf_sel(sin[{iw - 1}:{iw - kw}]), .ovf_count(ovf_count));
    always @(posedge clk) begin
        sin <= {{sin[{iw - 2}:0], sdi}};
        if (sload) sout <= {{y_valid, y_idx, y_val, pred, pred_valid, ovf_count, t_now}};
        else sout <= {{1'b0, sout[{ow - 1}:1]}};
    end
    assign sdo = sout[0];
endmodule
"""


def _tool(name: str) -> None:
    if shutil.which(name) is None:
        raise InputError(f"{name} is not installed: apt-get install -y yosys nextpnr-ice40 fpga-icestorm")


def _stat(log: str) -> dict:
    """Cell counts of the last ``stat`` in a Yosys log."""
    block = log[log.rfind("Number of cells:"):]
    cells = {}
    for name, count in re.findall(r"^\s+(SB_\w+)\s+(\d+)$", block, re.M):
        cells[name] = int(count)
    return cells


def _nextpnr(log: str) -> tuple[dict, float | None, str]:
    util = {}
    for name, used, avail in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log, re.M):
        util[name] = {"used": int(used), "available": int(avail)}
    fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", log)
    errors = re.findall(r"^ERROR: (.*)$", log, re.M)
    return util, (float(fmax[-1]) if fmax else None), (errors[0] if errors else "")


def memory_bits(gen: NetGen) -> dict:
    """Bits of every memory of the core, by tensor kind."""
    out: dict = {}
    for m in gen.mems.values():
        kind = m.name.split("_", 1)[1] if m.name.startswith("l") and "_" in m.name else m.name
        out[kind] = out.get(kind, 0) + m.width * m.depth
    return out


def synthesize(model, steps: int, window: int, work: Path, freq: float = 12.0, timeout: float = 3600,
               ovf_bits: int = 32) -> dict:
    """Run the flow in ``work``; returns the report (a dict)."""
    _tool("yosys")
    _tool("nextpnr-ice40")
    gen = NetGen(model, steps, window, ovf_bits=ovf_bits)
    text, files = gen.build()
    work.mkdir(parents=True, exist_ok=True)
    (work / "stllr_net.v").write_text(text)
    (work / "stllr_net_ice40.v").write_text(wrapper(gen))
    for name, payload in files.items():
        (work / name).write_text(payload)
    for name in RTL_FILES:
        shutil.copy(RTL_DIR / name, work / name)
    script = (f"read_verilog {' '.join(RTL_FILES)} stllr_net.v stllr_net_ice40.v\n"
              "synth_ice40 -dsp -top stllr_net_ice40 -json net.json\nstat\n")
    (work / "synth.ys").write_text(script)
    started = time.perf_counter()
    proc = subprocess.run(["yosys", "-q", "-l", "yosys.log", "synth.ys"], cwd=work, capture_output=True, text=True,
                          timeout=timeout)
    synth_s = time.perf_counter() - started
    ylog = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"yosys failed: {(proc.stderr or ylog)[-800:]}")
    cells = _stat(ylog)
    ff = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    mem = memory_bits(gen)
    report = {
        "device": DEVICE,
        "network": [{"layer": lp.index, "kind": lp.kind, "n_in": lp.geometry.n_in, "n_out": lp.geometry.n_out}
                    for lp in gen.layers],
        "steps": steps, "window": window, "overflow_counter_bits": ovf_bits,
        "yosys": {"cells": cells, "lut4": cells.get("SB_LUT4", 0), "carry": cells.get("SB_CARRY", 0), "ff": ff,
                  "bram_blocks": cells.get("SB_RAM40_4K", 0), "bram_bits": 4096 * cells.get("SB_RAM40_4K", 0),
                  "spram_bits": 262144 * cells.get("SB_SPRAM256KA", 0), "dsp": cells.get("SB_MAC16", 0),
                  "seconds": round(synth_s, 1)},
        "memory_bits": {"by_tensor": mem, "total": sum(mem.values())},
    }
    started = time.perf_counter()
    proc = subprocess.run(["nextpnr-ice40", "--up5k", "--package", "sg48", "--json", "net.json", "--asc", "net.asc",
                           "--freq", str(freq), "--pcf-allow-unconstrained", "--timing-allow-fail", "--log", "nextpnr.log"],
                          cwd=work, capture_output=True, text=True, timeout=timeout)
    plog = (work / "nextpnr.log").read_text() if (work / "nextpnr.log").exists() else ""
    plog += proc.stderr
    util, fmax, error = _nextpnr(plog)
    placed = proc.returncode == 0 and (work / "net.asc").exists()
    report["nextpnr"] = {"placed_and_routed": placed, "utilisation": util, "fmax_mhz": fmax,
                         "target_mhz": freq, "timing_met": bool(fmax and fmax >= freq),
                         "seconds": round(time.perf_counter() - started, 1)}
    report["fits"] = placed
    report["reason"] = "" if placed else (error or f"nextpnr exit {proc.returncode}")
    if not placed:
        need = []
        if report["yosys"]["dsp"] > DEVICE["dsp"]:
            need.append(f"{report['yosys']['dsp']} DSPs (SB_MAC16) of {DEVICE['dsp']}")
        if report["yosys"]["bram_blocks"] > DEVICE["bram_blocks"]:
            need.append(f"{report['yosys']['bram_blocks']} block RAMs of {DEVICE['bram_blocks']}")
        lc = util.get("ICESTORM_LC", {}).get("used") or max(report["yosys"]["lut4"], ff)
        if lc > DEVICE["logic_cells"]:
            need.append(f"about {lc} logic cells of {DEVICE['logic_cells']}")
        if need:
            report["reason"] = "needs " + ", ".join(need) + (f" (nextpnr: {error})" if error else "")
    return report
