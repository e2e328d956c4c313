"""Every docstring example in the packages runs (and every module that shows one is found).

A module whose source shows ``>>>`` must run at least one example: a doctest that
silently collects nothing (an indentation slip, a module dropped from a list) fails.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "stllr", "fixedpoint", "hwmodel", "rtl_export", "interop", "apps")


def _modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>> " in path.read_text():
                names.append(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    return names


MODULES = _modules_with_examples()


def test_the_documented_modules_are_found():
    # the format legend, the rounding/overflow/RNG specs and the RTL renderers show examples
    assert {"fixedpoint", "core.formats", "core.rounding", "core.overflow", "core.rng",
            "rtl_export.render", "rtl_export.hexio"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} shows '>>>' but no example ran"
    assert result.failed == 0
