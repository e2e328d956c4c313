"""Pinned golden vectors: an unintended change of any golden bit fails here.

The vectors themselves are checked against the RTL and the float64 emulation elsewhere;
this pins their exact bytes (every hex and npz file, not the manifest, whose metadata
may grow) for two small sets, so a refactor of the integer model, the spec or the writer
that changes one bit cannot pass silently. To change the bits ON PURPOSE, run
``STLLR_REPIN=1 .venv/bin/python -m pytest -q tests/test_golden_pin.py -s`` and paste the
printed digests here, saying why in the commit. (Pinned from the code of 2026-12-06; the
vectors of the code before the datapath-spec refactor have the same digests.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rtl_export.cli import main

ROOT = Path(__file__).resolve().parent.parent
PINS = {
    # one dense layer, rational Psi LUT, stochastic write, online update, exact bias, leak shift
    "layer_w4_m12": (["--net", ROOT / "rtl/configs/layer_w4_m12.yaml", "--samples", 2, "--steps", 5,
                      "--random-density", 0.4, "--seed", 3],
                     "915ae47a09042b05ecb3386cadb29201b89c3c40722d1e562c20850b35145cb4"),
    # the digits on-chip recipe (64-128-10, BP, triangle Psi) on real data
    "digits_int": (["--net", ROOT / "configs/digits_int.yaml", "--samples", 2, "--steps", 6],
                   "e705618f19f27086273b458d579df321b1b5fbece075f6e3bfc2a4110342432c"),
}


def data_digest(folder: Path) -> str:
    """sha256 over (relative path, sha256 of the bytes) of every file but manifest.json."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"):
        digest.update(f"{path.relative_to(folder).as_posix()} {hashlib.sha256(path.read_bytes()).hexdigest()}\n"
                      .encode())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(PINS))
def test_golden_bits_are_pinned(tmp_path, capsys, name):
    argv, pinned = PINS[name]
    out = tmp_path / name
    assert main(["golden", *map(str, argv), "--out", str(out)]) == 0, capsys.readouterr().err
    digest = data_digest(out)
    if os.environ.get("STLLR_REPIN") == "1":
        print(f"\n{name}: {digest}")
        return
    assert digest == pinned, f"{name}: golden bits changed ({digest}); see the module docstring"
