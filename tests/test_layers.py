"""The package layering of docs/ARCHITECTURE (shared): imports flow one way.

    core  <-  stllr  <-  fixedpoint  <-  hwmodel, rtl_export, interop  <-  sweep, apps

A module may import from its own package and the ones listed below it, never above
(lazy imports inside functions count too). And the float model costs torch alone:
importing it loads neither numba nor the cost model.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "core": set(),
    "stllr": {"core"},
    "fixedpoint": {"core", "stllr"},
    "hwmodel": {"core", "stllr", "fixedpoint"},
    "rtl_export": {"core", "stllr", "fixedpoint"},
    "interop": {"core", "stllr"},
    "sweep": {"core", "stllr", "fixedpoint", "hwmodel"},
    "apps": {"core", "stllr", "fixedpoint", "hwmodel", "rtl_export", "interop", "sweep"},
}


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def test_imports_flow_one_way():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for top, line in _imports(path):
                if top in ALLOWED and top != package and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_float_model_loads_neither_numba_nor_the_cost_model():
    loaded = _loaded_after("import stllr.network, stllr.learning, stllr.train, core.config")
    assert "torch" in loaded
    assert not loaded & {"numba", "hwmodel", "fixedpoint", "rtl_export", "sweep"}


def test_the_schema_loads_neither_torch_nor_numba():
    loaded = _loaded_after("import core.config, core.formats, core.hardware")
    assert not loaded & {"torch", "numba", "stllr", "fixedpoint", "hwmodel"}
